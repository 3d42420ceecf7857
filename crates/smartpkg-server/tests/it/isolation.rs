//! Tenant isolation as a matrix: every route of spec §3–4, called with another tenant's
//! token against this tenant's resources, is refused — and nothing of this tenant changed.

use serde_json::{json, Value};

use crate::helpers::{Style, TestApp};
use crate::tp::{tp_app, tp_token};

async fn form(app: &TestApp, path: &str, token: &str, params: &[(&str, &str)]) -> Value {
    app.client
        .post(format!("{}{path}", app.base))
        .query(&[("access_token", token)])
        .form(params)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// A route, its parameters, and the errno another tenant must get.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, i64);

/// Everything of tenant A an outsider could disturb, as the operator and A itself see it.
async fn snapshot(app: &TestApp, tp_token_a: &str) -> Value {
    let (_, packages) = app
        .admin_get(&format!("/packages?app_id={}&limit=1000", app.app_id))
        .await;
    let (_, deliveries) = app
        .admin_get(&format!("/deliveries?tp_id={}", app.tp_id))
        .await;
    let (_, a) = app.admin_get(&format!("/apps/{}", app.app_id)).await;
    let templates = form(
        app,
        "/rest/2.0/smartapp/template/gettemplatelist",
        tp_token_a,
        &[("page_size", "100")],
    )
    .await;
    let drafts = form(
        app,
        "/rest/2.0/smartapp/template/gettemplatedraftlist",
        tp_token_a,
        &[("page_size", "100")],
    )
    .await;
    let get = app
        .call_as(Style::QueryAndForm, &app.token, "get", &[])
        .await;
    json!({"packages": packages, "deliveries": deliveries, "app": a, "templates": templates, "drafts": drafts, "get": get})
}

#[tokio::test]
async fn another_tenants_tokens_are_refused_on_every_route_and_change_nothing() {
    let app = tp_app().await;
    // Tenant A: an online version with a rollback target, one being audited, one in development.
    app.online("1.0.0").await;
    let online = app.online("1.1.0").await;
    let auditing = app.built("1.2.0").await;
    app.call(
        "submitaudit",
        &[("package_id", &auditing.to_string()), ("content", "c")],
    )
    .await;
    let dev = app.built("1.3.0").await;
    let token_a = tp_token(&app, app.tp_id).await;
    let (_, grant_a) = app
        .admin_post(
            &format!("/tps/{}/authorizations", app.tp_id),
            json!({"app_id": app.app_id}),
        )
        .await;
    let refresh_a = grant_a["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let access_a = grant_a["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    let code_a = form(
        &app,
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
        &token_a,
        &[("app_id", &app.app_id.to_string())],
    )
    .await;
    let code_a = code_a["data"]["authorization_code"]
        .as_str()
        .expect("code")
        .to_string();
    let drafts = form(
        &app,
        "/rest/2.0/smartapp/template/gettemplatedraftlist",
        &token_a,
        &[],
    )
    .await;
    let draft_a = drafts["data"]["list"][0]["draft_id"].to_string();

    // Tenant B: its own third party, token and mini program.
    let (_, tp_b) = app.admin_post("/tps", json!({"name": "tenant b"})).await;
    let tp_b = tp_b["tp_id"].as_i64().expect("tp_id");
    let token_b = tp_token(&app, tp_b).await;
    let (_, app_b) = app.admin_post("/apps", json!({"name": "shop b"})).await;
    let app_b = app_b["app_id"].as_i64().expect("app_id");
    let (_, grant_b) = app
        .admin_post(
            &format!("/tps/{tp_b}/authorizations"),
            json!({"app_id": app_b}),
        )
        .await;
    let app_token_b = grant_b["access_token"].as_str().expect("token").to_string();

    let before = snapshot(&app, &token_a).await;
    let (t, on, aud, dv) = (
        app.template_id.to_string(),
        online.to_string(),
        auditing.to_string(),
        dev.to_string(),
    );
    let p = "/rest/2.0/smartapp/package";
    let errno = |v: &Value| v["errno"].as_i64();

    // Spec §3 with B's app token against A's packages and template.
    let cases: Vec<Case> = vec![
        (
            format!("{p}/upload"),
            vec![
                ("template_id", &t),
                ("ext_json", "{}"),
                ("user_version", "9"),
                ("user_desc", "x"),
            ],
            69008,
        ),
        (
            format!("{p}/submitaudit"),
            vec![("package_id", &dv), ("content", "c")],
            69005,
        ),
        (format!("{p}/release"), vec![("package_id", &aud)], 69005),
        (format!("{p}/rollback"), vec![("package_id", &on)], 69005),
        (format!("{p}/withdraw"), vec![("package_id", &aud)], 69005),
        (format!("{p}/getdetail"), vec![("package_id", &on)], 69005),
        (format!("{p}/gettrial"), vec![], 69005),
        (
            "/rest/2.0/smartapp/app/qrcode".to_string(),
            vec![("package_id", &on)],
            470019,
        ),
    ];
    for (path, params, want) in &cases {
        let v = form(&app, path, &app_token_b, params).await;
        assert_eq!(
            errno(&v),
            Some(*want),
            "{path} with another tenant's app token: {v}"
        );
    }
    let listed = form(&app, &format!("{p}/get"), &app_token_b, &[]).await;
    assert_eq!(listed["data"], json!([]), "B sees none of A's packages");
    let info = form(&app, "/rest/2.0/smartapp/app/info", &app_token_b, &[]).await;
    assert_eq!(
        info["data"]["app_id"], app_b,
        "app/info answers for the token's own app only"
    );

    // Spec §4 with B's TP token against A's library, app and codes.
    let tpl = "/rest/2.0/smartapp/template";
    let v = form(
        &app,
        &format!("{tpl}/addtotemplate"),
        &token_b,
        &[("draft_id", &draft_a), ("user_desc", "stolen")],
    )
    .await;
    assert_eq!(errno(&v), Some(40001), "{v}");
    let v = form(
        &app,
        &format!("{tpl}/deltemplate"),
        &token_b,
        &[("template_id", &t)],
    )
    .await;
    assert_eq!(errno(&v), Some(69008), "{v}");
    for list in ["gettemplatelist", "gettemplatedraftlist"] {
        let v = form(&app, &format!("{tpl}/{list}"), &token_b, &[]).await;
        assert_eq!(v["data"]["count"], 0, "{list} shows nothing of A: {v}");
    }
    let v = form(
        &app,
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
        &token_b,
        &[("app_id", &app.app_id.to_string())],
    )
    .await;
    assert_eq!(errno(&v), Some(50032), "{v}");
    let v = form(
        &app,
        "/rest/2.0/oauth/token",
        &token_b,
        &[
            ("code", &code_a),
            ("grant_type", "app_to_tp_authorization_code"),
        ],
    )
    .await;
    assert_eq!(v["error"], "invalid_grant", "{v}");
    let v = form(
        &app,
        "/rest/2.0/oauth/token",
        &token_b,
        &[
            ("refresh_token", &refresh_a),
            ("grant_type", "app_to_tp_refresh_token"),
        ],
    )
    .await;
    assert_eq!(v["error"], "invalid_grant", "{v}");

    // Tokens of the wrong kind get the gateway error everywhere.
    let invalid =
        json!({"error_code": 110, "error_msg": "Access token invalid or no longer valid"});
    for path in [
        format!("{tpl}/gettemplatelist"),
        "/rest/2.0/smartapp/tp/createpreauthcode".into(),
        "/rest/2.0/smartapp/auth/retrieve/authorizationcode".into(),
    ] {
        assert_eq!(
            form(&app, &path, &app_token_b, &[]).await,
            invalid,
            "{path} with an app token"
        );
    }
    // oauth/token carries the gateway's fields (Go SDK) and OAuth's (PHP SDK reads only
    // `error`): both see the failure.
    let mut with_oauth = invalid.clone();
    with_oauth["error"] = json!("invalid_client");
    with_oauth["error_description"] = invalid["error_msg"].clone();
    assert_eq!(
        form(&app, "/rest/2.0/oauth/token", &app_token_b, &[]).await,
        with_oauth,
        "oauth/token with an app token"
    );
    for path in [
        format!("{p}/get"),
        format!("{p}/upload"),
        "/rest/2.0/smartapp/app/info".into(),
        "/rest/2.0/smartapp/app/qrcode".into(),
    ] {
        assert_eq!(
            form(&app, &path, &token_b, &[]).await,
            invalid,
            "{path} with a TP token"
        );
    }

    let after = snapshot(&app, &token_a).await;
    assert_eq!(before, after, "tenant A changed");
    // A's own credentials still work: its code and refresh token were not consumed by B.
    let v = form(
        &app,
        "/rest/2.0/oauth/token",
        &token_a,
        &[
            ("refresh_token", &refresh_a),
            ("grant_type", "app_to_tp_refresh_token"),
        ],
    )
    .await;
    assert!(v["access_token"].is_string(), "{v}");
    let v = form(
        &app,
        "/rest/2.0/oauth/token",
        &token_a,
        &[
            ("code", &code_a),
            ("grant_type", "app_to_tp_authorization_code"),
        ],
    )
    .await;
    assert!(v["access_token"].is_string(), "{v}");
    assert_eq!(
        app.call_as(Style::QueryAndForm, &access_a, "getdetail", &[])
            .await["data"]["package_id"],
        online
    );
    app.stop().await;
}
