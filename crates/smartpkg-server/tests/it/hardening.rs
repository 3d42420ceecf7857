//! Attacks found by hostile testing, each pinned as a regression: taking over a mini program
//! with its (public) app_key, a revoked third party re-authorizing itself, cross-site form
//! posts, guessing the owner credential, and replaying used codes and refresh tokens.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smartpkg_testkit::{Answer, Keys, Receiver};

use crate::helpers::{spawn_with, Style, TestApp};
use crate::onboarding::{approve, code_from, go_sdk, page, pre_auth_code, submit_form, REDIRECT};
use crate::tp::{tp_app, tp_token, KEY};

/// A TP with a redirect domain and a TP token, plus its client_id.
async fn tp_with_token(app: &TestApp, tp_id: i64) -> (String, String) {
    let (_, tp) = app
        .admin(
            Method::PATCH,
            &format!("/tps/{tp_id}"),
            Some(json!({"redirect_domain": "tp.example.com"})),
        )
        .await;
    let client_id = tp["client_id"].as_str().expect("client_id").to_string();
    (client_id, tp_token(app, tp_id).await)
}

async fn new_owned_app(app: &TestApp, name: &str) -> (i64, String, String) {
    let (st, v) = app.admin_post("/apps", json!({"name": name})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["app_id"].as_i64().expect("app_id"),
        v["app_key"].as_str().expect("app_key").to_string(),
        v["owner_password"]
            .as_str()
            .expect("owner_password")
            .to_string(),
    )
}

async fn oauth(app: &TestApp, tp_token: &str, form: &[(&str, &str)]) -> Value {
    go_sdk(app, "/rest/2.0/oauth/token", tp_token, form).await
}

async fn exchange(app: &TestApp, tp_token: &str, code: &str) -> Value {
    oauth(
        app,
        tp_token,
        &[
            ("code", code),
            ("grant_type", "app_to_tp_authorization_code"),
        ],
    )
    .await
}

async fn refresh_with(app: &TestApp, tp_token: &str, refresh_token: &str) -> Value {
    oauth(
        app,
        tp_token,
        &[
            ("refresh_token", refresh_token),
            ("grant_type", "app_to_tp_refresh_token"),
        ],
    )
    .await
}

async fn works(app: &TestApp, access: &str) -> bool {
    app.call_as(Style::QueryAndForm, access, "get", &[]).await["errno"] == 0
}

#[tokio::test]
async fn the_app_key_read_from_app_info_or_a_qr_link_authorizes_nothing() {
    let app = tp_app().await;
    let (cid_a, token_a) = tp_with_token(&app, app.tp_id).await;
    let (app_id, app_key, owner_pw) = new_owned_app(&app, "merchant").await;

    // The rightful TP is authorized by the owner and reads the app_key from app/info.
    let pre = pre_auth_code(&app, &token_a).await;
    let r = approve(&app, &cid_a, &pre, app_id, &owner_pw).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let code = code_from(r.headers()["location"].to_str().expect("location"));
    let pair = exchange(&app, &token_a, &code).await;
    let access_a = pair["access_token"].as_str().expect("access").to_string();
    let info = go_sdk(&app, "/rest/2.0/smartapp/app/info", &access_a, &[]).await;
    assert_eq!(
        info["data"]["app_key"],
        app_key.as_str(),
        "Baidu's contract"
    );

    // Another TP, never authorized, tries the key as the owner's credential.
    let (_, tp_b) = app.admin_post("/tps", json!({"name": "intruder"})).await;
    let tp_b_id = tp_b["tp_id"].as_i64().expect("tp_id");
    let (cid_b, token_b) = tp_with_token(&app, tp_b_id).await;
    let pre_b = pre_auth_code(&app, &token_b).await;
    let r = approve(&app, &cid_b, &pre_b, app_id, &app_key).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Nothing changed: the app is still the rightful TP's and its token works.
    let (_, a) = app.admin_get(&format!("/apps/{app_id}")).await;
    assert_eq!(a["tp_id"].as_i64(), Some(app.tp_id));
    assert!(works(&app, &access_a).await);
    // And the owner credential is never read back out.
    assert!(a.get("owner_password").is_none(), "{a}");
    assert_eq!(a["owner_credential_set"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_third_party_cannot_authorize_itself_again() {
    let app = tp_app().await;
    let (cid, token) = tp_with_token(&app, app.tp_id).await;
    let (app_id, app_key, owner_pw) = new_owned_app(&app, "merchant").await;
    let pre = pre_auth_code(&app, &token).await;
    let r = approve(&app, &cid, &pre, app_id, &owner_pw).await;
    let code = code_from(r.headers()["location"].to_str().expect("location"));
    // A code obtained while authorized, kept for later.
    let spare = go_sdk(
        &app,
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
        &token,
        &[("app_id", &app_id.to_string())],
    )
    .await["data"]["authorization_code"]
        .as_str()
        .expect("code")
        .to_string();
    assert!(exchange(&app, &token, &code).await["access_token"].is_string());

    let (st, _) = app
        .admin(
            Method::DELETE,
            &format!("/tps/{}/authorizations/{app_id}", app.tp_id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // With the key it read from app/info: refused.
    let pre = pre_auth_code(&app, &token).await;
    let r = approve(&app, &cid, &pre, app_id, &app_key).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // With the code it kept from before the revocation: refused.
    assert_eq!(
        exchange(&app, &token, &spare).await["error"],
        "invalid_grant"
    );
    // Without the owner: no authorization to retrieve a code from.
    let v = go_sdk(
        &app,
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
        &token,
        &[("app_id", &app_id.to_string())],
    )
    .await;
    assert_eq!(v["errno"], 50032, "{v}");
    let (_, a) = app.admin_get(&format!("/apps/{app_id}")).await;
    assert_eq!(a["tp_id"], Value::Null, "the revocation sticks");
    app.stop().await;
}

#[tokio::test]
async fn the_form_needs_its_csrf_token_and_the_page_forbids_framing_and_caching() {
    let app = tp_app().await;
    let (cid, token) = tp_with_token(&app, app.tp_id).await;
    let (app_id, _, owner_pw) = new_owned_app(&app, "merchant").await;
    let pre = pre_auth_code(&app, &token).await;

    let r = reqwest::Client::new()
        .get(format!("{}/mappconsole/tp/authorization", app.base))
        .query(&[
            ("client_id", cid.as_str()),
            ("pre_auth_code", pre.as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .expect("page");
    let h = r.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-security-policy"]
        .to_str()
        .expect("csp")
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    // The policy docs/authorization.md states, on the page and on every error it shows: a
    // refusal, and malformed requests that never reach the handler's checks.
    const DOCUMENTED_CSP: &str =
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'";
    assert_eq!(h["content-security-policy"], DOCUMENTED_CSP);
    let url = format!("{}/mappconsole/tp/authorization", app.base);
    let http = reqwest::Client::new();
    for r in [
        http.get(&url)
            .query(&[("client_id", "nobody")])
            .send()
            .await,
        http.get(format!("{url}?pre_auth_code=%ZZ&client_id=%"))
            .send()
            .await,
        http.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("app_id=notanumber&client_id=x")
            .send()
            .await,
        http.post(&url)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await,
    ] {
        let r = r.expect("answered");
        assert!(r.status().is_client_error(), "{}", r.status());
        let h = r.headers();
        assert_eq!(
            h["content-security-policy"],
            DOCUMENTED_CSP,
            "{}",
            r.status()
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
    }

    // A post from elsewhere carries no token, or one for another code: refused, and the
    // pre-auth code is not used up.
    for csrf in ["", "0000", "forged-token-value"] {
        let r = submit_form(&app, &cid, &pre, app_id, &owner_pw, csrf).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    let other_pre = pre_auth_code(&app, &token).await;
    let (_, html) = page(
        &app,
        &[
            ("client_id", &cid),
            ("pre_auth_code", &other_pre),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    let other_csrf = crate::onboarding::csrf_of(&html);
    let r = submit_form(&app, &cid, &pre, app_id, &owner_pw, &other_csrf).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = approve(&app, &cid, &pre, app_id, &owner_pw).await;
    assert_eq!(r.status(), StatusCode::FOUND, "the code still works");
    assert_eq!(r.headers()["cache-control"], "no-store");
    app.stop().await;
}

#[tokio::test]
async fn wrong_owner_credentials_are_throttled_per_app_until_the_operator_resets() {
    let app = spawn_with(|s| {
        s.allow_private_targets = true;
        s.ticket_interval_s = 1;
        s.owner_attempts_per_app = 3;
        s.owner_attempts_per_client = 1000;
    })
    .await;
    let (cid, token) = tp_with_token(&app, app.tp_id).await;
    let (app_id, _, owner_pw) = new_owned_app(&app, "merchant").await;
    let pre = pre_auth_code(&app, &token).await;
    for i in 0..3 {
        let r = approve(&app, &cid, &pre, app_id, &format!("guess number {i}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused now, with a clear answer.
    let r = approve(&app, &cid, &pre, app_id, &owner_pw).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r
        .text()
        .await
        .expect("html")
        .contains("Too many wrong attempts"));

    // The operator resets the credential (shown once); the lock goes with the old one.
    let (st, v) = app
        .admin_post(&format!("/apps/{app_id}/owner-password"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let fresh = v["owner_password"].as_str().expect("new password");
    assert_ne!(fresh, owner_pw);
    let r = approve(&app, &cid, &pre, app_id, &owner_pw).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the old one is dead");
    // Four wrong credentials were checked (the locked attempt was never checked).
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("smartpkg_owner_credential_failures_total 4"),
        "{metrics}"
    );
    let r = approve(&app, &cid, &pre, app_id, fresh).await;
    assert_eq!(r.status(), StatusCode::FOUND);

    // An operator-chosen credential must be long enough.
    let (st, v) = app
        .admin_post(
            &format!("/apps/{app_id}/owner-password"),
            json!({"password": "short"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn wrong_owner_credentials_are_throttled_per_client_address_across_apps() {
    let app = spawn_with(|s| {
        s.allow_private_targets = true;
        s.ticket_interval_s = 1;
        s.owner_attempts_per_app = 1000;
        s.owner_attempts_per_client = 4;
    })
    .await;
    let (cid, token) = tp_with_token(&app, app.tp_id).await;
    let pre = pre_auth_code(&app, &token).await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(new_owned_app(&app, &format!("m{i}")).await);
    }
    // One address sprays guesses over many apps: stopped after four.
    for (app_id, _, _) in &ids[..4] {
        let r = approve(&app, &cid, &pre, *app_id, "a wrong guess!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let (app_id, _, pw) = &ids[4];
    let r = approve(&app, &cid, &pre, *app_id, pw).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

#[tokio::test]
async fn moving_an_app_through_the_admin_api_tells_both_third_parties() {
    let app = spawn_with(|s| s.allow_private_targets = true).await;
    let (_, tp_b) = app.admin_post("/tps", json!({"name": "tp two"})).await;
    let tp_b_id = tp_b["tp_id"].as_i64().expect("tp_id");
    let mut receivers = vec![];
    for tp_id in [app.tp_id, tp_b_id] {
        let (_, tp) = app.admin_get(&format!("/tps/{tp_id}")).await;
        let keys = Keys {
            encoding_aes_key: KEY.into(),
            token: "auth-token".into(),
            client_id: tp["client_id"].as_str().expect("cid").to_string(),
        };
        let r = Receiver::start("127.0.0.1:0".parse().expect("addr"), keys, |_| {
            Answer::Success
        })
        .await
        .expect("receiver");
        let body =
            json!({"auth_event_url": r.url(), "msg_token": "auth-token", "encoding_aes_key": KEY});
        app.admin(Method::PATCH, &format!("/tps/{tp_id}"), Some(body))
            .await;
        receivers.push(r);
    }
    // app.app_id is authorized to tp one (by the harness, before the URL was set).
    let (st, grant) = app
        .admin_post(
            &format!("/tps/{tp_b_id}/authorizations"),
            json!({"app_id": app.app_id}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{grant}");
    let find = |r: &Receiver, name: &str| {
        r.received()
            .iter()
            .filter_map(|g| g.event.clone())
            .find(|e| e["event"] == name && e["appId"] == app.app_id)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (find(&receivers[0], "UNAUTHORIZED").is_none()
        || find(&receivers[1], "AUTHORIZED").is_none())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(find(&receivers[0], "UNAUTHORIZED").is_some(), "old TP told");
    let ev = find(&receivers[1], "AUTHORIZED").expect("new TP told");
    assert!(ev["authorizationCode"].is_string(), "{ev}");
    // The old TP's token is dead; the new one's works.
    assert!(!works(&app, &app.token).await);
    assert!(works(&app, grant["access_token"].as_str().expect("token")).await);
    app.stop().await;
}

#[tokio::test]
async fn replaying_a_used_code_or_refresh_token_revokes_what_it_issued() {
    let app = tp_app().await;
    let (cid, token) = tp_with_token(&app, app.tp_id).await;
    let (app_id, _, owner_pw) = new_owned_app(&app, "merchant").await;

    // A code, used once, then replayed: the tokens it gave die.
    let pre = pre_auth_code(&app, &token).await;
    let r = approve(&app, &cid, &pre, app_id, &owner_pw).await;
    let code = code_from(r.headers()["location"].to_str().expect("location"));
    let first = exchange(&app, &token, &code).await;
    let access = first["access_token"].as_str().expect("access").to_string();
    let refresh = first["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert!(works(&app, &access).await);
    let replay = exchange(&app, &token, &code).await;
    assert_eq!(replay["error"], "invalid_grant", "{replay}");
    assert!(
        !works(&app, &access).await,
        "access token of a replayed code"
    );
    let r = refresh_with(&app, &token, &refresh).await;
    assert_eq!(
        r["error"], "invalid_grant",
        "refresh token of a replayed code"
    );

    // A fresh authorization; refresh twice along the chain, then replay the first refresh
    // token: the whole chain dies, the newest pair included.
    let pre = pre_auth_code(&app, &token).await;
    let r = approve(&app, &cid, &pre, app_id, &owner_pw).await;
    let code = code_from(r.headers()["location"].to_str().expect("location"));
    let p0 = exchange(&app, &token, &code).await;
    let refresh0 = p0["refresh_token"].as_str().expect("refresh").to_string();
    let p1 = refresh_with(&app, &token, &refresh0).await;
    let refresh1 = p1["refresh_token"].as_str().expect("refresh").to_string();
    let p2 = refresh_with(&app, &token, &refresh1).await;
    let access2 = p2["access_token"].as_str().expect("access").to_string();
    assert!(works(&app, &access2).await);
    // Another authorization of the same app (its own family) must survive.
    let other = go_sdk(
        &app,
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
        &token,
        &[("app_id", &app_id.to_string())],
    )
    .await["data"]["authorization_code"]
        .as_str()
        .expect("code")
        .to_string();
    let other_pair = exchange(&app, &token, &other).await;
    let other_access = other_pair["access_token"]
        .as_str()
        .expect("access")
        .to_string();

    let replay = refresh_with(&app, &token, &refresh0).await;
    assert_eq!(replay["error"], "invalid_grant");
    assert!(!works(&app, &access2).await, "newest token of the chain");
    let r = refresh_with(&app, &token, p2["refresh_token"].as_str().unwrap_or("")).await;
    assert_eq!(
        r["error"], "invalid_grant",
        "newest refresh token of the chain"
    );
    assert!(
        works(&app, &other_access).await,
        "another family is untouched"
    );
    app.stop().await;
}

#[tokio::test]
async fn control_format_and_separator_characters_in_versions_descriptions_and_names_are_refused() {
    let app = spawn_with(|_| {}).await;
    let t = app.template_id.to_string();
    for (version, desc, kind) in [
        ("1.0\u{1b}[2J", "ok", "control character"),
        ("1.0", "a\r\nforged", "control character"),
        ("1.0", "x\u{202E}y", "format character"),
        ("\u{FEFF}1.0", "ok", "format character"),
        ("1.0", "one\u{2028}two", "separator"),
        ("1.0", "abc\u{200F}.exe", "format character"),
        ("1.0\u{200D}", "ok", "format character"),
    ] {
        let v = app
            .call(
                "upload",
                &[
                    ("template_id", &t),
                    ("ext_json", "{}"),
                    ("user_version", version),
                    ("user_desc", desc),
                ],
            )
            .await;
        assert_eq!(v["errno"], 40001, "{version:?} {desc:?}: {v}");
        assert!(v["msg"].as_str().unwrap_or("").contains(kind), "{v}");
    }
    // Nothing was created by the refused calls.
    assert_eq!(app.call("get", &[]).await["data"], json!([]));
    // Tab and newline are fine in a description.
    let v = app
        .call(
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", "{}"),
                ("user_version", "1.0"),
                ("user_desc", "line one\n\tline two"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    let id = app.wait_built(&app.token, "1.0").await.to_string();
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &id), ("content", "c\u{7}"), ("remark", "")],
        )
        .await;
    assert_eq!(v["errno"], 40001, "{v}");
    for (content, remark, account) in [
        ("c\u{200F}", "", "tester"),
        ("c", "r\u{061C}", "tester"),
        ("c", "", "test\u{200D}er"),
        ("c", "", "\u{FEFF}tester"),
    ] {
        let v = app
            .call(
                "submitaudit",
                &[
                    ("package_id", &id),
                    ("content", content),
                    ("remark", remark),
                    ("test_account", account),
                ],
            )
            .await;
        assert_eq!(v["errno"], 40001, "{content:?} {remark:?} {account:?}: {v}");
    }
    for name in ["shop\nINFO forged", "shop\u{2029}two", "shop\u{202B}"] {
        let (st, v) = app.admin_post("/apps", json!({ "name": name })).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{name:?}: {v}");
    }
    // An emoji sequence in a name is a name, not a hidden joiner.
    let (st, v) = app
        .admin_post("/apps", json!({"name": "家庭 👨\u{200D}👩\u{200D}👧 shop"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn write_calls_beyond_the_per_app_limit_get_50029_and_reads_still_work() {
    let app = spawn_with(|s| {
        s.app_writes_per_minute = 3;
        s.tp_writes_per_minute = 1000;
    })
    .await;
    let t = app.template_id.to_string();
    let upload = |v: &'static str| {
        let t = t.clone();
        let app = &app;
        async move {
            app.call(
                "upload",
                &[
                    ("template_id", &t),
                    ("ext_json", "{}"),
                    ("user_version", v),
                    ("user_desc", "d"),
                ],
            )
            .await
        }
    };
    for v in ["1", "2", "3"] {
        assert_eq!(upload(v).await["errno"], 0);
    }
    let refused = upload("4").await;
    assert_eq!(refused["errno"], 50029, "{refused}");
    let msg = refused["msg"].as_str().unwrap_or("");
    assert!(
        msg.contains("接口调用次数超过限制")
            && msg.contains("per minute")
            && msg.contains("retry in"),
        "{msg}"
    );
    // Other writes of the same app are limited too; reads are not.
    let v = app.call("release", &[("package_id", "1")]).await;
    assert_eq!(v["errno"], 50029, "{v}");
    assert_eq!(app.call("get", &[]).await["errno"], 0);
    // Another mini program of the same third party has its own budget.
    let (_, other_token) = app.new_app("other shop").await;
    let v = app
        .call_as(
            Style::QueryAndForm,
            &other_token,
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", "{}"),
                ("user_version", "1"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("smartpkg_rate_limited_total{scope=\"app\"} 2"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_third_party_minting_pre_auth_codes_without_end_is_limited() {
    let app = spawn_with(|s| {
        s.allow_private_targets = true;
        s.ticket_interval_s = 1;
        s.tp_writes_per_minute = 5;
    })
    .await;
    let (_, token) = tp_with_token(&app, app.tp_id).await;
    let mut refused = 0;
    for _ in 0..8 {
        let v = go_sdk(&app, "/rest/2.0/smartapp/tp/createpreauthcode", &token, &[]).await;
        match v["errno"].as_i64() {
            Some(0) => {}
            Some(50029) => refused += 1,
            _ => panic!("{v}"),
        }
    }
    assert_eq!(refused, 3);
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_with(|_| {}).await;
    let mode = |p: std::path::PathBuf| {
        std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(app.dir.path().to_path_buf()), 0o700);
    if app.database.is_none() {
        assert_eq!(mode(app.dir.path().join("smartpkg.db")), 0o600);
        assert_eq!(mode(app.dir.path().join("smartpkg.db-wal")), 0o600);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_janitor_trims_a_retired_package_on_its_schedule() {
    let app = spawn_with(|s| {
        s.janitor_interval_s = 1;
        s.retired_package_retention_s = 0;
    })
    .await;
    let big = format!(r#"{{"ext":{{"pad":"{}"}}}}"#, "x".repeat(100_000));
    let t = app.template_id.to_string();
    let v = app
        .call(
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", &big),
                ("user_version", "1"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0);
    let first = app.wait_built(&app.token, "1").await;
    let (_, p) = app.admin_get(&format!("/packages/{first}")).await;
    assert_eq!(
        p["ext_json"],
        big.as_str(),
        "kept while it is the development version"
    );
    app.built("2").await; // retires the first
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, p) = app.admin_get(&format!("/packages/{first}")).await;
        if p["ext_json"] == "" {
            assert_eq!(p["state"], "retired");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never trimmed: {}",
            p["state"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// What the database holds, in bytes: the SQLite file and its write-ahead log, or the
/// PostgreSQL database's size.
async fn database_bytes(app: &TestApp) -> u64 {
    match &app.database {
        Some(db) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut c)
                .await
                .expect("size");
            n as u64
        }
        None => ["smartpkg.db", "smartpkg.db-wal"]
            .iter()
            .map(|f| {
                std::fs::metadata(app.dir.path().join(f))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn a_tenant_uploading_as_fast_as_it_may_cannot_grow_the_database_past_its_byte_budget() {
    const MIB: u64 = 1 << 20;
    let app = spawn_with(|s| {
        // The call limits out of the way: only the byte budgets and the size limit bound this.
        s.app_writes_per_minute = 100_000;
        s.tp_writes_per_minute = 100_000;
        // Room for three 0.4 MB uploads per mini program, five per third party.
        s.app_upload_bytes_per_window = 3 * MIB / 2;
        s.tp_upload_bytes_per_window = 2 * MIB;
        s.upload_budget_window_s = 3600;
        s.build_delay_ms = 0;
    })
    .await;
    let (_, second) = app.new_app("shop two").await;
    let t = app.template_id.to_string();
    let upload = |token: String, ext: String, version: String| {
        let app = &app;
        let t = t.clone();
        async move {
            app.call_as(
                Style::QueryAndForm,
                &token,
                "upload",
                &[
                    ("template_id", &t),
                    ("ext_json", &ext),
                    ("user_version", &version),
                    ("user_desc", "d"),
                ],
            )
            .await
        }
    };
    // An ext_json over the stated limit is refused whole.
    let huge = format!(r#"{{"ext":{{"pad":"{}"}}}}"#, "x".repeat(900_000));
    let v = upload(app.token.clone(), huge, "0".into()).await;
    assert_eq!(v["errno"], 40001, "{v}");
    assert!(
        v["msg"].as_str().unwrap_or("").contains("at most 262144"),
        "{v}"
    );

    let before = database_bytes(&app).await;
    let ext = format!(r#"{{"ext":{{"pad":"{}"}}}}"#, "x".repeat(200_000));
    let sent_each = 2 * ext.len() as u64;
    let (mut accepted, mut refused_app, mut refused_tp) = (0u64, 0, 0);
    let started = Instant::now();
    let mut i = 0;
    // Five seconds of uploads from two mini programs of one third party, one after another.
    while started.elapsed() < Duration::from_secs(5) {
        i += 1;
        for token in [&app.token, &second] {
            let v = upload(token.clone(), ext.clone(), format!("{i}")).await;
            match v["errno"].as_i64() {
                Some(0) => accepted += sent_each,
                Some(50029) => {
                    let msg = v["msg"].as_str().unwrap_or("");
                    if msg.contains("app_upload_bytes_per_window") {
                        refused_app += 1;
                    } else if msg.contains("tp_upload_bytes_per_window") {
                        refused_tp += 1;
                    } else {
                        panic!("50029 naming no byte budget: {v}");
                    }
                }
                _ => panic!("unexpected answer {v}"),
            }
        }
    }
    // The third party's budget is all that went through (plus what refilled meanwhile),
    // and both budgets were met and named.
    assert!(accepted <= 2 * MIB, "{accepted} accepted");
    assert!(
        refused_app > 0 && refused_tp > 0,
        "{refused_app} {refused_tp}"
    );
    let grown = database_bytes(&app).await.saturating_sub(before);
    eprintln!(
        "{i} rounds: {accepted} bytes accepted, {refused_app} refused by the app budget, \
         {refused_tp} by the third party's; the database grew by {grown} bytes"
    );
    assert!(
        grown <= 16 * MIB,
        "the database grew by {grown} bytes over {i} rounds of uploads"
    );
    // The mini program still works within its budget for small uploads.
    let v = upload(app.token.clone(), "{}".into(), "small".into()).await;
    assert_eq!(v["errno"], 0, "{v}");
    app.stop().await;
}
