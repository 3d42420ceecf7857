//! The third party's own calls: tickets pushed to its authorization-event URL, its access
//! token from a ticket, and the template library.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use smartpkg_testkit::{Answer, Keys, Receiver};

use crate::helpers::{spawn_with, Style, TestApp};

pub(crate) const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

pub(crate) async fn tp_app() -> TestApp {
    tp_app_with(|_| {}).await
}

/// A server that pushes tickets every second to receivers on 127.0.0.1, tuned further.
async fn tp_app_with(tune: impl FnOnce(&mut smartpkg_server::Settings)) -> TestApp {
    spawn_with(|s| {
        s.allow_private_targets = true;
        s.ticket_interval_s = 1;
        tune(s);
    })
    .await
}

async fn call(app: &TestApp, path: &str, params: &[(&str, &str)]) -> Value {
    app.client
        .post(format!("{}{path}", app.base))
        .form(params)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// Points the TP's authorization-event URL at a receiver and returns the first ticket pushed.
async fn ticket(app: &TestApp, tp_id: i64) -> (String, String) {
    let (_, tp) = app.admin_get(&format!("/tps/{tp_id}")).await;
    let client_id = tp["client_id"].as_str().expect("client_id").to_string();
    let keys = Keys {
        encoding_aes_key: KEY.into(),
        token: "auth-token".into(),
        client_id: client_id.clone(),
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
    let got = r.wait_for(1, Duration::from_secs(10)).await;
    assert!(got[0].signature_ok && got[0].client_id_ok);
    let push = got[0].event.clone().expect("decrypted");
    assert_eq!(
        (
            push["FromUserName"].as_str(),
            push["MsgType"].as_str(),
            push["Event"].as_str()
        ),
        (Some("SmartAPP"), Some("ticket"), Some("push"))
    );
    assert!(push["CreateTime"].is_i64(), "{push}");
    (
        client_id,
        push["Ticket"].as_str().expect("Ticket").to_string(),
    )
}

pub(crate) async fn tp_token(app: &TestApp, tp_id: i64) -> String {
    let (client_id, t) = ticket(app, tp_id).await;
    let v = call(
        app,
        "/public/2.0/smartapp/auth/tp/token",
        &[("client_id", &client_id), ("ticket", &t)],
    )
    .await;
    assert_eq!(v["errno"], 0, "{v}");
    v["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_string()
}

#[tokio::test]
async fn a_pushed_ticket_is_traded_for_a_tp_token_and_bad_ones_are_refused() {
    let app = tp_app().await;
    let (client_id, t) = ticket(&app, app.tp_id).await;
    let v = call(
        &app,
        "/public/2.0/smartapp/auth/tp/token",
        &[("client_id", &client_id), ("ticket", &t)],
    )
    .await;
    let token = v["data"]["access_token"].as_str().expect("token");
    assert!(token.starts_with("42."), "{v}");
    assert_eq!(v["data"]["expires_in"], 2_592_000);
    assert_eq!(v["data"]["scope"], "smartapp_tp_smtapp_common public");
    let v = call(
        &app,
        "/public/2.0/smartapp/auth/tp/token",
        &[("client_id", "nobody"), ("ticket", &t)],
    )
    .await;
    assert_eq!(v["errno"], 50002, "{v}");
    let v = call(
        &app,
        "/public/2.0/smartapp/auth/tp/token",
        &[("client_id", &client_id), ("ticket", "forged")],
    )
    .await;
    assert_eq!(v["errno"], 50003, "{v}");
    let v = call(
        &app,
        "/public/2.0/smartapp/auth/tp/token",
        &[("client_id", &client_id)],
    )
    .await;
    assert_eq!(v["errno"], 40001, "{v}");
    // Another third party's ticket is not this one's.
    let (_, tp2) = app.admin_post("/tps", json!({"name": "tp two"})).await;
    let (client2, _) = ticket(&app, tp2["tp_id"].as_i64().expect("id")).await;
    let v = call(
        &app,
        "/public/2.0/smartapp/auth/tp/token",
        &[("client_id", &client2), ("ticket", &t)],
    )
    .await;
    assert_eq!(v["errno"], 50003, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let app = tp_app_with(|s| s.ticket_ttl_s = 0).await;
    let (client_id, t) = ticket(&app, app.tp_id).await;
    let v = call(
        &app,
        "/public/2.0/smartapp/auth/tp/token",
        &[("client_id", &client_id), ("ticket", &t)],
    )
    .await;
    assert_eq!(v["errno"], 50003, "{v}");
    app.stop().await;
}

async fn library(app: &TestApp, token: &str, endpoint: &str, params: &[(&str, &str)]) -> Value {
    app.client
        .post(format!(
            "{}/rest/2.0/smartapp/template/{endpoint}",
            app.base
        ))
        .query(&[("access_token", token)])
        .form(params)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn draft(app: &TestApp, version: &str) -> i64 {
    let zip = smartpkg_core::archive::sample_template(&["pages/index/index"]).expect("zip");
    let (st, v) = app.upload_draft_bytes(app.tp_id, version, zip).await;
    assert_eq!(st, 201, "{v}");
    v["draft_id"].as_i64().expect("draft_id")
}

#[tokio::test]
async fn the_template_library_goes_from_drafts_to_templates_to_deletion() {
    let app = tp_app().await;
    let token = tp_token(&app, app.tp_id).await;
    let d = draft(&app, "2.0.0").await;
    let v = library(
        &app,
        &token,
        "gettemplatedraftlist",
        &[("page", "1"), ("page_size", "10")],
    )
    .await;
    assert_eq!(
        v["data"]["count"], 2,
        "the contract's template upload made a draft too: {v}"
    );
    let first = v["data"]["list"][0].clone();
    assert!(first["create_time"].is_i64());
    assert_eq!(
        json!({"draft_id": first["draft_id"], "user_version": first["user_version"], "user_desc": first["user_desc"], "web_status": first["web_status"]}),
        json!({"draft_id": d, "user_version": "2.0.0", "user_desc": "d", "web_status": false})
    );

    let long = "一".repeat(31);
    let v = library(
        &app,
        &token,
        "addtotemplate",
        &[("draft_id", &d.to_string()), ("user_desc", &long)],
    )
    .await;
    assert_eq!(v["errno"], 40016, "{v}");
    let v = library(
        &app,
        &token,
        "addtotemplate",
        &[("draft_id", "999999"), ("user_desc", "x")],
    )
    .await;
    assert_eq!(v["errno"], 40001, "{v}");
    let v = library(
        &app,
        &token,
        "addtotemplate",
        &[("draft_id", &d.to_string()), ("user_desc", "shop v2")],
    )
    .await;
    let t = v["data"]["template_id"].as_i64().expect("template_id");
    let v = library(
        &app,
        &token,
        "gettemplatelist",
        &[("page", "1"), ("page_size", "1")],
    )
    .await;
    assert_eq!(
        (
            v["data"]["count"].as_i64(),
            v["data"]["list"][0]["template_id"].as_i64()
        ),
        (Some(2), Some(t))
    );
    assert_eq!(v["data"]["list"][0]["user_desc"], "shop v2");
    let v = library(
        &app,
        &token,
        "gettemplatelist",
        &[("page", "2"), ("page_size", "1")],
    )
    .await;
    assert_eq!(v["data"]["list"][0]["template_id"], app.template_id);
    let v = library(&app, &token, "gettemplatelist", &[("page", "0")]).await;
    assert_eq!(v["errno"], 40001);

    // A package built before the deletion keeps working; new uploads are refused with 69007.
    let built = app.built("1.0.0").await;
    let v = library(
        &app,
        &token,
        "deltemplate",
        &[("template_id", &app.template_id.to_string())],
    )
    .await;
    assert_eq!(
        v,
        json!({"errno": 0, "msg": "success", "data": {"result": 1}})
    );
    assert_eq!(app.upload("1.0.1", "{}").await["errno"], 69007);
    let resp = app
        .client
        .get(format!("{}/admin/v1/packages/{built}/archive", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("archive");
    assert_eq!(resp.status(), 200);
    let v = library(
        &app,
        &token,
        "deltemplate",
        &[("template_id", &app.template_id.to_string())],
    )
    .await;
    assert_eq!(v["errno"], 69008, "deleting twice: {v}");
    app.stop().await;
}

#[tokio::test]
async fn at_most_fifty_templates_then_2003() {
    let app = tp_app().await;
    let token = tp_token(&app, app.tp_id).await;
    let d = draft(&app, "3.0.0").await.to_string();
    // One template exists already (the harness's).
    for i in 0..49 {
        let v = library(
            &app,
            &token,
            "addtotemplate",
            &[("draft_id", &d), ("user_desc", &format!("t{i}"))],
        )
        .await;
        assert_eq!(v["errno"], 0, "{i}: {v}");
    }
    let v = library(
        &app,
        &token,
        "addtotemplate",
        &[("draft_id", &d), ("user_desc", "one too many")],
    )
    .await;
    assert_eq!(v["errno"], 2003, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn tokens_only_open_their_own_doors() {
    let app = tp_app().await;
    let token = tp_token(&app, app.tp_id).await;
    let invalid =
        json!({"error_code": 110, "error_msg": "Access token invalid or no longer valid"});
    // An app token is not a TP token, and the reverse.
    assert_eq!(
        library(&app, &app.token, "gettemplatelist", &[]).await,
        invalid
    );
    assert_eq!(
        app.call_as(Style::QueryAndForm, &token, "get", &[]).await,
        invalid
    );
    // Another TP's token sees none of this TP's library and cannot delete from it.
    let (_, tp2) = app.admin_post("/tps", json!({"name": "tp two"})).await;
    let token2 = tp_token(&app, tp2["tp_id"].as_i64().expect("id")).await;
    assert_eq!(
        library(&app, &token2, "gettemplatelist", &[]).await["data"]["count"],
        0
    );
    let v = library(
        &app,
        &token2,
        "deltemplate",
        &[("template_id", &app.template_id.to_string())],
    )
    .await;
    assert_eq!(v["errno"], 69008);
    assert_eq!(
        library(&app, &token, "gettemplatelist", &[]).await["data"]["count"],
        1,
        "still there"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_expired_tp_token_gets_the_gateway_111() {
    let app = tp_app_with(|s| s.tp_token_ttl_s = 0).await;
    let token = tp_token(&app, app.tp_id).await;
    assert_eq!(
        library(&app, &token, "gettemplatelist", &[]).await,
        json!({"error_code": 111, "error_msg": "Access token expired"})
    );
    app.stop().await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_an_invalid_grant() {
    let app = tp_app_with(|s| s.refresh_token_ttl_s = 0).await;
    let token = tp_token(&app, app.tp_id).await;
    let (_, grant) = app
        .admin_post(
            &format!("/tps/{}/authorizations", app.tp_id),
            json!({"app_id": app.app_id}),
        )
        .await;
    let refresh = grant["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let path = format!("/rest/2.0/oauth/token?access_token={token}");
    let v = call(
        &app,
        &path,
        &[
            ("refresh_token", &refresh),
            ("grant_type", "app_to_tp_refresh_token"),
        ],
    )
    .await;
    assert_eq!(v["error"], "invalid_grant", "{v}");
    app.stop().await;
}
