//! A third party's whole onboarding, as its real code runs it: ticket → TP token → pre-auth
//! code → the owner approves on the authorization page (submitted as a browser would) →
//! code → app tokens → refresh; then revocation. Parameters are sent as Baidu's Go SDK does.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smartpkg_testkit::{Answer, Keys, Receiver};

use crate::helpers::{Style, TestApp};
use crate::tp::{tp_app, tp_token, KEY};

pub(crate) const REDIRECT: &str = "https://tp.example.com/smartapp/callback?state=xyz";

pub(crate) async fn go_sdk(app: &TestApp, path: &str, token: &str, form: &[(&str, &str)]) -> Value {
    app.client
        .post(format!("{}{path}", app.base))
        .query(&[
            ("access_token", token),
            ("sp_sdk_ver", "1.0.0"),
            ("sp_sdk_lang", "go"),
        ])
        .form(form)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub(crate) async fn page(app: &TestApp, query: &[(&str, &str)]) -> (StatusCode, String) {
    let r = browser()
        .get(format!("{}/mappconsole/tp/authorization", app.base))
        .query(query)
        .send()
        .await
        .expect("page");
    (r.status(), r.text().await.expect("html"))
}

/// The CSRF token the page's form carries.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end of value")].to_string()
}

/// Submits the page's form as a browser would: opens the page, then posts the form with the
/// token it carried.
pub(crate) async fn approve(
    app: &TestApp,
    client_id: &str,
    pre: &str,
    app_id: i64,
    password: &str,
) -> reqwest::Response {
    let (st, html) = page(
        app,
        &[
            ("client_id", client_id),
            ("pre_auth_code", pre),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    let csrf = if st == StatusCode::OK {
        csrf_of(&html)
    } else {
        String::new()
    };
    submit_form(app, client_id, pre, app_id, password, &csrf).await
}

pub(crate) async fn submit_form(
    app: &TestApp,
    client_id: &str,
    pre: &str,
    app_id: i64,
    password: &str,
    csrf: &str,
) -> reqwest::Response {
    browser()
        .post(format!("{}/mappconsole/tp/authorization", app.base))
        .form(&[
            ("client_id", client_id),
            ("pre_auth_code", pre),
            ("redirect_uri", REDIRECT),
            ("app_id", &app_id.to_string()),
            ("owner_password", password),
            ("csrf", csrf),
        ])
        .send()
        .await
        .expect("submit")
}

pub(crate) async fn pre_auth_code(app: &TestApp, tp_token: &str) -> String {
    let v = go_sdk(
        app,
        "/rest/2.0/smartapp/tp/createpreauthcode",
        tp_token,
        &[],
    )
    .await;
    assert_eq!(v["data"]["expires_in"], 1200, "{v}");
    v["data"]["pre_auth_code"]
        .as_str()
        .expect("code")
        .to_string()
}

pub(crate) fn code_from(location: &str) -> String {
    let url = reqwest::Url::parse(location).expect("location");
    assert!(location.starts_with(REDIRECT), "{location}");
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs.get("expires_in").map(String::as_str), Some("3600"));
    assert_eq!(
        pairs.get("state").map(String::as_str),
        Some("xyz"),
        "the TP's own parameters survive"
    );
    pairs["authorization_code"].clone()
}

#[tokio::test]
async fn onboarding_from_ticket_to_refreshed_app_tokens_then_revocation() {
    let app = tp_app().await;
    let (_, tp) = app
        .admin(
            Method::PATCH,
            &format!("/tps/{}", app.tp_id),
            Some(json!({"redirect_domain": "tp.example.com"})),
        )
        .await;
    let client_id = tp["client_id"].as_str().expect("client_id").to_string();
    let token = tp_token(&app, app.tp_id).await; // also points auth_event_url at a receiver
                                                 // Re-point the authorization events at a receiver this test keeps.
    let keys = Keys {
        encoding_aes_key: KEY.into(),
        token: "auth-token".into(),
        client_id: client_id.clone(),
    };
    let events = Receiver::start("127.0.0.1:0".parse().expect("addr"), keys, |_| {
        Answer::Success
    })
    .await
    .expect("receiver");
    app.admin(
        Method::PATCH,
        &format!("/tps/{}", app.tp_id),
        Some(json!({"auth_event_url": events.url()})),
    )
    .await;

    let (_, owner_app) = app
        .admin_post("/apps", json!({"name": "merchant shop"}))
        .await;
    let app_id = owner_app["app_id"].as_i64().expect("app_id");
    let owner_pw = owner_app["owner_password"]
        .as_str()
        .expect("owner_password shown once")
        .to_string();

    let pre = pre_auth_code(&app, &token).await;
    let (st, html) = page(
        &app,
        &[
            ("client_id", &client_id),
            ("pre_auth_code", &pre),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains("tp one")
            && html.contains("<form")
            && html.contains("name=\"owner_password\"")
            && !html.contains("app_key"),
        "{html}"
    );

    // A wrong password re-shows the form and does not use the code up.
    let r = approve(&app, &client_id, &pre, app_id, "not-the-password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r
        .text()
        .await
        .expect("html")
        .contains("owner password is wrong"));
    let r = approve(&app, &client_id, &pre, app_id, &owner_pw).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let code = code_from(
        r.headers()[reqwest::header::LOCATION]
            .to_str()
            .expect("location"),
    );

    // The TP is told, with the same code.
    let got = events.wait_for(1, Duration::from_secs(10)).await;
    let ev = got
        .iter()
        .filter_map(|g| g.event.clone())
        .find(|e| e["event"] == "AUTHORIZED")
        .expect("AUTHORIZED pushed");
    assert_eq!(
        (ev["appId"].as_i64(), ev["tpAppId"].as_i64()),
        (Some(app_id), Some(app.tp_id))
    );
    assert_eq!(
        (
            ev["authorizationCode"].as_str(),
            ev["authorizationCodeExpiresIn"].as_i64()
        ),
        (Some(code.as_str()), Some(3600))
    );

    // The pre-auth code was single-use.
    let (st, html) = page(
        &app,
        &[
            ("client_id", &client_id),
            ("pre_auth_code", &pre),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(html.contains("already used"), "{html}");

    // Code → tokens, unwrapped; the code works once.
    let oauth = |params: Vec<(&'static str, String)>| {
        let app = &app;
        let token = token.clone();
        async move {
            let form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            go_sdk(app, "/rest/2.0/oauth/token", &token, &form).await
        }
    };
    let pair = oauth(vec![
        ("code", code.clone()),
        ("grant_type", "app_to_tp_authorization_code".into()),
    ])
    .await;
    let access = pair["access_token"].as_str().expect("access").to_string();
    let refresh = pair["refresh_token"].as_str().expect("refresh").to_string();
    assert!(
        access.starts_with("45.") && refresh.starts_with("46.") && pair["expires_in"] == 3600,
        "{pair}"
    );
    assert_eq!(
        pair.as_object().map(|o| o.len()),
        Some(3),
        "not wrapped in an envelope: {pair}"
    );
    // (A replayed code is refused and kills its tokens: hardening.rs pins that.)
    assert_eq!(
        oauth(vec![("grant_type", "password".into())]).await["error"],
        "unsupported_grant_type"
    );

    // The app token works on the package API and app/info.
    assert_eq!(
        app.call_as(Style::QueryAndForm, &access, "get", &[]).await,
        json!({"errno": 0, "msg": "success", "data": []})
    );
    let info = go_sdk(&app, "/rest/2.0/smartapp/app/info", &access, &[]).await;
    assert_eq!(
        (
            info["data"]["app_id"].as_i64(),
            info["data"]["app_name"].as_str()
        ),
        (Some(app_id), Some("merchant shop"))
    );

    // Refresh: a new pair; the refresh token is single-use.
    let renewed = oauth(vec![
        ("refresh_token", refresh.clone()),
        ("grant_type", "app_to_tp_refresh_token".into()),
    ])
    .await;
    let access2 = renewed["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    assert_ne!(access2, access);
    let reused = oauth(vec![
        ("refresh_token", refresh.clone()),
        ("grant_type", "app_to_tp_refresh_token".into()),
    ])
    .await;
    assert_eq!(reused["error"], "invalid_grant", "{reused}");
    // A replayed refresh token means it leaked: every token of its authorization dies.
    assert_eq!(
        app.call_as(Style::QueryAndForm, &access2, "get", &[]).await["error_code"],
        110
    );

    // A code for an app already authorized, without the owner.
    let v = go_sdk(
        &app,
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
        &token,
        &[("app_id", &app_id.to_string())],
    )
    .await;
    let code2 = v["data"]["authorization_code"]
        .as_str()
        .expect("code")
        .to_string();
    assert_eq!(v["data"]["expires_in"], 3600);
    let pair2 = oauth(vec![
        ("code", code2),
        ("grant_type", "app_to_tp_authorization_code".into()),
    ])
    .await;
    assert!(pair2["access_token"].is_string(), "{pair2}");
    assert_eq!(
        app.call_as(
            Style::QueryAndForm,
            pair2["access_token"].as_str().unwrap_or(""),
            "get",
            &[]
        )
        .await["errno"],
        0
    );

    // Revocation: every token of the app dies and the TP is told.
    let (st, _) = app
        .admin(
            Method::DELETE,
            &format!("/tps/{}/authorizations/{app_id}", app.tp_id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let dead = json!({"error_code": 110, "error_msg": "Access token invalid or no longer valid"});
    let access3 = pair2["access_token"].as_str().expect("access").to_string();
    assert_eq!(
        app.call_as(Style::QueryAndForm, &access3, "get", &[]).await,
        dead
    );
    let got = events.wait_for(2, Duration::from_secs(10)).await;
    assert!(got
        .iter()
        .filter_map(|g| g.event.as_ref())
        .any(|e| e["event"] == "UNAUTHORIZED" && e["appId"] == app_id));
    let v = go_sdk(
        &app,
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
        &token,
        &[("app_id", &app_id.to_string())],
    )
    .await;
    assert_eq!(v["errno"], 50032, "{v}");
    let refreshed_after = oauth(vec![
        (
            "refresh_token",
            pair2["refresh_token"].as_str().unwrap_or("").into(),
        ),
        ("grant_type", "app_to_tp_refresh_token".into()),
    ])
    .await;
    assert_eq!(refreshed_after["error"], "invalid_grant");

    // Approving again after a revocation is AUTHORIZED; approving once more is UPDATE_AUTHORIZED.
    for expected in ["AUTHORIZED", "UPDATE_AUTHORIZED"] {
        let pre = pre_auth_code(&app, &token).await;
        assert_eq!(
            approve(&app, &client_id, &pre, app_id, &owner_pw)
                .await
                .status(),
            StatusCode::FOUND
        );
        let n = events.received().len() + 1;
        let got = events.wait_for(n, Duration::from_secs(10)).await;
        assert_eq!(
            got.last()
                .and_then(|g| g.event.clone())
                .map(|e| e["event"].clone()),
            Some(json!(expected))
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_authorization_page_refuses_bad_links_with_a_clear_page() {
    let app = tp_app().await;
    let (_, tp) = app
        .admin(
            Method::PATCH,
            &format!("/tps/{}", app.tp_id),
            Some(json!({"redirect_domain": "tp.example.com"})),
        )
        .await;
    let client_id = tp["client_id"].as_str().expect("client_id").to_string();
    let token = tp_token(&app, app.tp_id).await;
    let pre = pre_auth_code(&app, &token).await;
    for (query, needle) in [
        (
            vec![
                ("client_id", "nobody"),
                ("pre_auth_code", pre.as_str()),
                ("redirect_uri", REDIRECT),
            ],
            "Unknown third party",
        ),
        (
            vec![
                ("client_id", client_id.as_str()),
                ("pre_auth_code", "forged"),
                ("redirect_uri", REDIRECT),
            ],
            "expired or was already used",
        ),
        (
            vec![
                ("client_id", client_id.as_str()),
                ("pre_auth_code", pre.as_str()),
                ("redirect_uri", "https://evil.example.org/cb"),
            ],
            "outside",
        ),
        (
            vec![
                ("client_id", client_id.as_str()),
                ("pre_auth_code", pre.as_str()),
                ("redirect_uri", "https://tp.example.com.evil.org/cb"),
            ],
            "outside",
        ),
        (
            vec![
                ("client_id", client_id.as_str()),
                ("pre_auth_code", pre.as_str()),
                ("redirect_uri", "javascript:alert(1)"),
            ],
            "outside",
        ),
    ] {
        let (st, html) = page(&app, &query).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{query:?}");
        assert!(html.contains(needle), "{query:?}: {html}");
    }
    // Another TP's pre-auth code does not open this TP's page.
    let (_, tp2) = app.admin_post("/tps", json!({"name": "tp two"})).await;
    let token2 = tp_token(&app, tp2["tp_id"].as_i64().expect("id")).await;
    let other_pre = pre_auth_code(&app, &token2).await;
    let (st, _) = page(
        &app,
        &[
            ("client_id", &client_id),
            ("pre_auth_code", &other_pre),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    app.stop().await;
}
