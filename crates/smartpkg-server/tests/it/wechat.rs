//! The WeChat dialect over HTTP, as a third party's WeChat tooling drives it: the token dance
//! with tickets and the consent page, the template library, the code lifecycle with every
//! refusal a call can produce, pushes opened by the test kit's own decryption, and one mini
//! program worked through both dialects.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smartpkg_testkit::{Keys, WxReceived, WxReceiver};

use crate::helpers::{spawn_with, TestApp};

const WAIT: Duration = Duration::from_secs(20);

/// A WeChat-dialect client of the test server: raw calls, so every field and code is seen
/// as a strict client would see it.
struct Wx<'a> {
    app: &'a TestApp,
}

impl Wx<'_> {
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .app
            .client
            .request(method, format!("{}{path}", self.app.base))
            .query(query);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    /// POST with `token` (as `param`) and a JSON body; the answer (always HTTP 200).
    async fn post(&self, path: &str, param: &str, token: &str, body: Value) -> Value {
        let (st, v) = self
            .send(
                Method::POST,
                path,
                &[(param, token)],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(st, 200, "{path}: {v}");
        v
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let (st, v) = self.send(Method::GET, path, query, None).await;
        assert_eq!(st, 200, "{path}: {v}");
        v
    }

    /// A code-management call with the authorizer's token.
    async fn code(&self, path: &str, token: &str, body: Value) -> Value {
        self.post(path, "access_token", token, body).await
    }
}

/// A Baidu-dialect call (`/rest/2.0/smartapp/{path}`) with `token`, parameters as a form.
async fn baidu(app: &TestApp, path: &str, token: &str, params: &[(&str, &str)]) -> Value {
    app.client
        .post(format!("{}/rest/2.0/smartapp/{path}", app.base))
        .query(&[("access_token", token)])
        .form(params)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

fn errcode(v: &Value) -> i64 {
    v["errcode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errcode: {v}"))
}

/// The errcode of a refusal, checked to carry WeChat's ` rid: ` suffix.
fn refused(v: &Value) -> i64 {
    let msg = v["errmsg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(" rid: "),
        "a refusal's errmsg ends with a rid: {v}"
    );
    errcode(v)
}

struct Component {
    appid: String,
    secret: String,
}

/// The test TP's WeChat identity, a fresh appsecret, and its URLs pointed at `rx`.
async fn component(app: &TestApp, rx: &WxReceiver) -> Component {
    let (st, issued) = app
        .admin_post(&format!("/tps/{}/component-secret", app.tp_id), json!({}))
        .await;
    assert_eq!(st, 200, "{issued}");
    let patch = json!({
        "wechat_auth_event_url": rx.url("auth"),
        "wechat_message_url": rx.url("msg/$APPID$"),
        "redirect_domain": "tp.example.com",
    });
    let (st, tp) = app
        .admin(Method::PATCH, &format!("/tps/{}", app.tp_id), Some(patch))
        .await;
    assert_eq!(st, 200, "{tp}");
    let s = |k: &str| {
        tp[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {tp}"))
            .to_string()
    };
    Component {
        appid: s("component_appid"),
        secret: issued["component_appsecret"]
            .as_str()
            .expect("component_appsecret")
            .to_string(),
    }
}

async fn wechat_app() -> TestApp {
    spawn_with(|s| {
        s.allow_private_targets = true;
        s.ticket_interval_s = 1;
        s.push_retry_schedule_ms = vec![200, 200, 200];
    })
    .await
}

async fn receiver_for(app: &TestApp) -> WxReceiver {
    let (_, tp) = app.admin_get(&format!("/tps/{}", app.tp_id)).await;
    let keys = Keys {
        encoding_aes_key: tp["wechat_encoding_aes_key"].as_str().expect("key").into(),
        token: tp["wechat_token"].as_str().expect("token").into(),
        client_id: tp["component_appid"].as_str().expect("appid").into(),
    };
    WxReceiver::start("127.0.0.1:0".parse().expect("addr"), keys)
        .await
        .expect("receiver")
}

fn is_info(r: &WxReceived, info: &str) -> bool {
    r.field("InfoType") == Some(info)
}

/// The component token bought with the latest pushed ticket.
async fn component_token(wx: &Wx<'_>, rx: &WxReceiver, c: &Component) -> String {
    let ticket = rx
        .wait_for(WAIT, |r| is_info(r, "component_verify_ticket"))
        .await;
    assert!(ticket.signature_ok && ticket.appid_ok, "{ticket:?}");
    assert_eq!(ticket.path, "/wx/auth");
    assert_eq!(
        ticket.addressee,
        Some(("AppId".to_string(), c.appid.clone()))
    );
    assert_eq!(ticket.field("AppId"), Some(c.appid.as_str()));
    let ticket = ticket
        .field("ComponentVerifyTicket")
        .expect("ticket")
        .to_string();
    let v = wx
        .post(
            "/cgi-bin/component/api_component_token",
            "unused",
            "",
            json!({
                "component_appid": c.appid,
                "component_appsecret": c.secret,
                "component_verify_ticket": ticket,
            }),
        )
        .await;
    assert_eq!(v["expires_in"], 7200, "{v}");
    v["component_access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

#[tokio::test]
async fn a_wechat_third_party_gets_its_component_token_from_a_pushed_ticket() {
    let app = wechat_app().await;
    let rx = receiver_for(&app).await;
    let c = component(&app, &rx).await;
    let wx = Wx { app: &app };
    let token = component_token(&wx, &rx, &c).await;
    let ticket = rx
        .wait_for(WAIT, |r| is_info(r, "component_verify_ticket"))
        .await;
    let ticket = ticket.field("ComponentVerifyTicket").expect("ticket");
    let ask = |appid: &str, secret: &str, ticket: &str| json!({"component_appid": appid, "component_appsecret": secret, "component_verify_ticket": ticket});
    let path = "/cgi-bin/component/api_component_token";
    let v = wx.post(path, "x", "", ask(&c.appid, "wrong", ticket)).await;
    assert_eq!(refused(&v), 40125, "a wrong appsecret: {v}");
    let v = wx
        .post(path, "x", "", ask(&c.appid, &c.secret, "forged"))
        .await;
    assert_eq!(refused(&v), 61006, "a ticket never pushed: {v}");
    let v = wx
        .post(path, "x", "", ask("wx0000000000000000", &c.secret, ticket))
        .await;
    assert_eq!(refused(&v), 40013, "an unknown component: {v}");
    // Envelope rules: no body 44002, a body that is not JSON 47001.
    let (st, v) = wx.send(Method::POST, path, &[], None).await;
    assert_eq!((st.as_u16(), refused(&v)), (200, 44002), "{v}");
    let (_, v) = wx.send(Method::POST, path, &[], Some("a=b")).await;
    assert_eq!(refused(&v), 47001, "{v}");
    // The token works under both names WeChat's SDKs use.
    let body = json!({"component_appid": c.appid});
    for name in ["component_access_token", "access_token"] {
        let v = wx
            .post(
                "/cgi-bin/component/api_create_preauthcode",
                name,
                &token,
                body.clone(),
            )
            .await;
        assert_eq!(errcode(&v), 0, "{name}: {v}");
        assert_eq!(v["expires_in"], 1800);
        assert_eq!(v["pre_auth_code"].as_str().map(str::len), Some(40), "{v}");
    }
    // Token errors: none 41001, not ours 40001, another component's appid 40013.
    let (_, v) = wx
        .send(
            Method::POST,
            "/cgi-bin/component/api_create_preauthcode",
            &[],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(refused(&v), 41001, "{v}");
    let v = wx
        .post(
            "/cgi-bin/component/api_create_preauthcode",
            "access_token",
            "nope",
            body,
        )
        .await;
    assert_eq!(refused(&v), 40001, "{v}");
    let v = wx
        .post(
            "/cgi-bin/component/api_create_preauthcode",
            "access_token",
            &token,
            json!({"component_appid": "wx1111111111111111"}),
        )
        .await;
    assert_eq!(refused(&v), 40013, "{v}");
    app.stop().await;
}

/// The owner of `wx_appid` consents on WeChat's page to a fresh pre-auth code of the
/// component: the page's checks, the redirect, and the spent code; the authorization code.
async fn approve(
    app: &TestApp,
    wx: &Wx<'_>,
    c: &Component,
    token: &str,
    wx_appid: &str,
    password: &str,
) -> String {
    let v = wx
        .post(
            "/cgi-bin/component/api_create_preauthcode",
            "component_access_token",
            token,
            json!({"component_appid": c.appid}),
        )
        .await;
    let pre = v["pre_auth_code"]
        .as_str()
        .expect("pre_auth_code")
        .to_string();
    let redirect = "https://tp.example.com/back";
    let page = app
        .client
        .get(format!("{}/cgi-bin/componentloginpage", app.base))
        .query(&[
            ("component_appid", c.appid.as_str()),
            ("pre_auth_code", &pre),
            ("redirect_uri", redirect),
            ("auth_type", "2"),
            ("biz_appid", wx_appid),
        ])
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let html = page.text().await.expect("html");
    assert!(
        html.contains(r#"action="/cgi-bin/componentloginpage""#),
        "{html}"
    );
    assert!(html.contains(r#"name="component_appid""#), "{html}");
    assert!(
        html.contains(&format!(r#"value="{wx_appid}""#)),
        "biz_appid prefills: {html}"
    );
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf")
        .to_string();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let form = [
        ("component_appid", c.appid.as_str()),
        ("pre_auth_code", &pre),
        ("redirect_uri", redirect),
        ("auth_type", "2"),
        ("csrf", &csrf),
        ("app_id", wx_appid),
        ("owner_password", password),
    ];
    let resp = no_redirects
        .post(format!("{}/cgi-bin/componentloginpage", app.base))
        .form(&form)
        .send()
        .await
        .expect("consent");
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let url = reqwest::Url::parse(&location).expect("url");
    assert_eq!(url.host_str(), Some("tp.example.com"));
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    let code = pairs.get("auth_code").expect("auth_code").clone();
    assert_eq!(pairs.get("expires_in").map(String::as_str), Some("3600"));
    // The pre-auth code is spent: the page refuses it now.
    let again = no_redirects
        .post(format!("{}/cgi-bin/componentloginpage", app.base))
        .form(&form)
        .send()
        .await
        .expect("again");
    assert_eq!(again.status(), 400);
    code
}

/// The owner consents on the page; the third party trades the code for authorizer tokens.
/// Returns (wx appid, access token, refresh token, auth code, app id).
async fn consented(
    app: &TestApp,
    wx: &Wx<'_>,
    rx: &WxReceiver,
    c: &Component,
    token: &str,
) -> (String, String, String, String, i64) {
    let (st, created) = app.admin_post("/apps", json!({"name": "wx shop"})).await;
    assert_eq!(st, 201, "{created}");
    let wx_appid = created["wx_appid"].as_str().expect("wx_appid").to_string();
    let password = created["owner_password"]
        .as_str()
        .expect("password")
        .to_string();
    let code = approve(app, wx, c, token, &wx_appid, &password).await;
    // The authorized push carries the same code, in WeChat's XML.
    let pushed = rx
        .wait_for(WAIT, |r| {
            is_info(r, "authorized") && r.field("AuthorizerAppid") == Some(wx_appid.as_str())
        })
        .await;
    assert!(pushed.signature_ok && pushed.appid_ok);
    assert_eq!(pushed.field("AuthorizationCode"), Some(code.as_str()));
    let created_at: i64 = pushed
        .field("CreateTime")
        .expect("CreateTime")
        .parse()
        .expect("n");
    let expires: i64 = pushed
        .field("AuthorizationCodeExpiredTime")
        .expect("expiry")
        .parse()
        .expect("n");
    assert_eq!(expires - created_at, 3600);
    let v = wx
        .post(
            "/cgi-bin/component/api_query_auth",
            "component_access_token",
            token,
            json!({"component_appid": c.appid, "authorization_code": code}),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let info = &v["authorization_info"];
    assert_eq!(info["authorizer_appid"], wx_appid.as_str());
    assert_eq!(
        info["func_info"],
        json!([{"funcscope_category": {"id": 18}}])
    );
    let access = info["authorizer_access_token"]
        .as_str()
        .expect("access")
        .to_string();
    let refresh = info["authorizer_refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let app_id = created["app_id"].as_i64().expect("app_id");
    (wx_appid, access, refresh, code, app_id)
}

#[tokio::test]
async fn an_owner_consents_on_the_wechat_page_and_the_code_buys_authorizer_tokens_once() {
    let app = wechat_app().await;
    let rx = receiver_for(&app).await;
    let c = component(&app, &rx).await;
    let wx = Wx { app: &app };
    let token = component_token(&wx, &rx, &c).await;
    let (wx_appid, access, refresh, code, app_id) = consented(&app, &wx, &rx, &c, &token).await;
    // The authorizer token works for code management.
    let v = wx.code("/wxa/getvisitstatus", &access, json!({})).await;
    assert_eq!(errcode(&v), 0, "{v}");
    // A token of the wrong kind is 40014 both ways.
    let v = wx.code("/wxa/getvisitstatus", &token, json!({})).await;
    assert_eq!(refused(&v), 40014, "{v}");
    let v = wx
        .post(
            "/cgi-bin/component/api_create_preauthcode",
            "component_access_token",
            &access,
            json!({"component_appid": c.appid}),
        )
        .await;
    assert_eq!(refused(&v), 40014, "{v}");
    // The authorizer's information, with its name and original id.
    let v = wx
        .post(
            "/cgi-bin/component/api_get_authorizer_info",
            "component_access_token",
            &token,
            json!({"component_appid": c.appid, "authorizer_appid": wx_appid}),
        )
        .await;
    assert_eq!(v["authorizer_info"]["nick_name"], "wx shop", "{v}");
    let gh = v["authorizer_info"]["user_name"]
        .as_str()
        .expect("user_name");
    assert!(gh.starts_with("gh_") && gh.len() == 15, "{gh}");
    assert_eq!(
        v["authorization_info"]["authorizer_appid"],
        wx_appid.as_str()
    );
    // Another component's mini program is not this one's to read (61007).
    let other_tp = app.platform.create_tp("other component").await;
    let (theirs, _) = app
        .platform
        .authorized_app(other_tp.tp.tp_id, "their shop")
        .await;
    let v = wx
        .post(
            "/cgi-bin/component/api_get_authorizer_info",
            "component_access_token",
            &token,
            json!({"component_appid": c.appid, "authorizer_appid": theirs.app.wx_appid}),
        )
        .await;
    assert_eq!(refused(&v), 61007, "{v}");
    // A refresh: a new pair; the old refresh token, replayed, is refused and its family dies.
    let ask = |rt: &str| json!({"component_appid": c.appid, "authorizer_appid": wx_appid, "authorizer_refresh_token": rt});
    let path = "/cgi-bin/component/api_authorizer_token";
    let v = wx
        .post(path, "component_access_token", &token, ask(&refresh))
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let renewed = v["authorizer_access_token"]
        .as_str()
        .expect("access")
        .to_string();
    let v2 = wx.code("/wxa/getvisitstatus", &renewed, json!({})).await;
    assert_eq!(errcode(&v2), 0, "{v2}");
    let v = wx
        .post(path, "component_access_token", &token, ask(&refresh))
        .await;
    assert_eq!(refused(&v), 61023, "a replayed refresh token: {v}");
    let v = wx.code("/wxa/getvisitstatus", &renewed, json!({})).await;
    assert_eq!(refused(&v), 40001, "the family died with the replay: {v}");
    // The code, presented again, buys nothing.
    let v = wx
        .post(
            "/cgi-bin/component/api_query_auth",
            "component_access_token",
            &token,
            json!({"component_appid": c.appid, "authorization_code": code}),
        )
        .await;
    assert_eq!(refused(&v), 61009, "{v}");
    // The operator ends the authorization: the component hears `unauthorized`, in XML.
    let (st, body) = app
        .admin(
            Method::DELETE,
            &format!("/tps/{}/authorizations/{app_id}", app.tp_id),
            None,
        )
        .await;
    assert!(st.is_success(), "{st} {body}");
    let gone = rx.wait_for(WAIT, |r| is_info(r, "unauthorized")).await;
    assert!(gone.signature_ok && gone.appid_ok);
    assert_eq!(gone.field("AuthorizerAppid"), Some(wx_appid.as_str()));
    app.stop().await;
}

#[tokio::test]
async fn authorizer_tokens_expire_with_42001() {
    let app = spawn_with(|s| s.app_token_ttl_s = 1).await;
    let wx = Wx { app: &app };
    let v = wx.code("/wxa/getvisitstatus", &app.token, json!({})).await;
    assert_eq!(errcode(&v), 0, "{v}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v = wx.code("/wxa/getvisitstatus", &app.token, json!({})).await;
    assert_eq!(refused(&v), 42001, "{v}");
    app.stop().await;
}

/// The trial version's package id once built, waiting through `get_page`'s 86001.
async fn wait_trial(wx: &Wx<'_>, token: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let v = wx.get("/wxa/get_page", &[("access_token", token)]).await;
        if errcode(&v) == 0 {
            return v;
        }
        assert_eq!(refused(&v), 86001, "{v}");
        assert!(start.elapsed() < WAIT, "never built: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn commit_body(template_id: i64, ext: Value, version: &str) -> Value {
    json!({
        "template_id": template_id.to_string(),
        "ext_json": ext.to_string(),
        "user_version": version,
        "user_desc": "desc",
    })
}

#[tokio::test]
async fn a_commit_is_refused_at_once_for_what_its_build_would_refuse() {
    let app = spawn_with(|_| {}).await;
    let wx = Wx { app: &app };
    let t = app.template_id;
    let cases = [
        (
            json!({"template_id": t, "ext_json": "{not json", "user_version": "1", "user_desc": ""}),
            85048,
        ),
        (
            commit_body(
                t,
                json!({"extEnable": true, "extPages": {"pages/nope/nope": {}}}),
                "1",
            ),
            85045,
        ),
        (
            commit_body(
                t,
                json!({"extEnable": true, "extAppid": "wx00000000000000ff"}),
                "1",
            ),
            85013,
        ),
        (commit_body(t + 1000, json!({}), "1"), 85014),
        (json!({"template_id": "abc", "ext_json": "{}"}), 47001),
        (commit_body(t, json!({}), &"9".repeat(65)), 47001),
    ];
    for (body, want) in cases {
        let v = wx.code("/wxa/commit", &app.token, body.clone()).await;
        assert_eq!(refused(&v), want, "{body}: {v}");
    }
    // Nothing was kept of the refused commits.
    let v = wx
        .get("/wxa/get_page", &[("access_token", &app.token)])
        .await;
    assert_eq!(refused(&v), 86001, "{v}");
    let v = wx.code("/wxa/submit_audit", &app.token, json!({})).await;
    assert_eq!(refused(&v), 85086, "{v}");
    // A template id as a number works as well as one as a string; extAppid may be the wx
    // appid.
    let (_, apps) = app.admin_get(&format!("/apps/{}", app.app_id)).await;
    let own = apps["wx_appid"].as_str().expect("wx_appid").to_string();
    let body = json!({"template_id": t, "ext_json": json!({"extAppid": own}).to_string(), "user_version": "1.0.0", "user_desc": "d"});
    let v = wx.code("/wxa/commit", &app.token, body).await;
    assert_eq!(errcode(&v), 0, "{v}");
    let pages = wait_trial(&wx, &app.token).await;
    assert_eq!(
        pages["page_list"],
        json!(["pages/index/index", "pages/about/about"])
    );
    app.stop().await;
}

#[tokio::test]
async fn the_wechat_lifecycle_runs_commit_audit_release_gray_and_revert_with_its_errcodes() {
    let app = wechat_app().await;
    let rx = receiver_for(&app).await;
    component(&app, &rx).await;
    let wx = Wx { app: &app };
    let tok = app.token.clone();
    let t = app.template_id;
    let (_, me) = app.admin_get(&format!("/apps/{}", app.app_id)).await;
    let wx_appid = me["wx_appid"].as_str().expect("wx_appid").to_string();
    // Nothing yet: no audit, nothing to release, nothing to withdraw or revert.
    let v = wx
        .get("/wxa/get_latest_auditstatus", &[("access_token", &tok)])
        .await;
    assert_eq!(refused(&v), 85058, "{v}");
    let v = wx.code("/wxa/release", &tok, json!({})).await;
    assert_eq!(refused(&v), 85019, "{v}");
    let v = wx
        .get("/wxa/undocodeaudit", &[("access_token", &tok)])
        .await;
    assert_eq!(refused(&v), 85019, "{v}");
    let v = wx
        .get("/wxa/revertcoderelease", &[("access_token", &tok)])
        .await;
    assert_eq!(refused(&v), 87012, "{v}");
    // Commit 1.0.0 and submit it.
    let v = wx
        .code("/wxa/commit", &tok, commit_body(t, json!({}), "1.0.0"))
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    wait_trial(&wx, &tok).await;
    let qr = app
        .client
        .get(format!("{}/wxa/get_qrcode", app.base))
        .query(&[
            ("access_token", tok.as_str()),
            ("path", "pages/index/index?x=1"),
        ])
        .send()
        .await
        .expect("qrcode");
    assert_eq!(qr.headers()["content-type"], "image/jpeg");
    let jpeg = qr.bytes().await.expect("bytes");
    assert_eq!(&jpeg[..3], [0xFF, 0xD8, 0xFF]);
    let v = wx
        .code("/wxa/submit_audit", &tok, json!({"item_list": []}))
        .await;
    assert_eq!(refused(&v), 85023, "{v}");
    let v = wx
        .code(
            "/wxa/submit_audit",
            &tok,
            json!({"item_list": [{"address": "pages/index/index", "tag": "shop", "title": "home"}], "version_desc": "first"}),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let audit1 = v["auditid"].as_i64().expect("auditid is a number");
    let v = wx.code("/wxa/submit_audit", &tok, json!({})).await;
    assert_eq!(refused(&v), 85009, "one audit at a time: {v}");
    let v = wx
        .code(
            "/wxa/get_auditstatus",
            &tok,
            json!({"auditid": audit1.to_string()}),
        )
        .await;
    assert_eq!((errcode(&v), v["status"].as_i64()), (0, Some(2)), "{v}");
    let v = wx
        .code("/wxa/get_auditstatus", &tok, json!({"auditid": 999_999}))
        .await;
    assert_eq!(refused(&v), 85012, "{v}");
    let v = wx.code("/wxa/release", &tok, json!({})).await;
    assert_eq!(refused(&v), 85020, "not passed yet: {v}");
    // Speed-up once; a second ask is 89404.
    let v = wx
        .code("/wxa/speedupaudit", &tok, json!({"auditid": audit1}))
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx
        .code("/wxa/speedupaudit", &tok, json!({"auditid": audit1}))
        .await;
    assert_eq!(refused(&v), 89404, "{v}");
    let v = wx.get("/wxa/queryquota", &[("access_token", &tok)]).await;
    assert_eq!(
        (v["limit"].as_i64(), v["rest"].as_i64()),
        (Some(1000), Some(999)),
        "{v}"
    );
    assert_eq!(
        (v["speedup_limit"].as_i64(), v["speedup_rest"].as_i64()),
        (Some(10), Some(9)),
        "{v}"
    );
    // Withdraw and resubmit: the same audit id, withdrawn (3) in between.
    let v = wx
        .get("/wxa/undocodeaudit", &[("access_token", &tok)])
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx
        .code("/wxa/get_auditstatus", &tok, json!({"auditid": audit1}))
        .await;
    assert_eq!(v["status"], 3, "{v}");
    let v = wx.code("/wxa/submit_audit", &tok, json!({})).await;
    assert_eq!(v["auditid"].as_i64(), Some(audit1), "{v}");
    // The reviewer passes it: the push arrives in WeChat's XML at the message URL.
    app.decide(audit1, true, "").await;
    let pushed = rx
        .wait_for(WAIT, |r| r.field("Event") == Some("weapp_audit_success"))
        .await;
    assert!(pushed.signature_ok && pushed.appid_ok, "{pushed:?}");
    assert_eq!(pushed.path, format!("/wx/msg/{wx_appid}"));
    assert_eq!(pushed.content_type.as_deref(), Some("text/xml"));
    let gh = pushed.field("ToUserName").expect("ToUserName").to_string();
    assert_eq!(pushed.addressee, Some(("ToUserName".into(), gh)));
    assert_eq!(pushed.field("MsgType"), Some("event"));
    assert!(pushed.field("SuccTime").is_some());
    // The operator sees which dialect the delivery used, and its XML.
    let (_, list) = app.admin_get("/deliveries").await;
    let passed = list["deliveries"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["event"] == "PACKAGE_AUDIT_PASS"))
        .unwrap_or_else(|| panic!("{list}"));
    let (_, one) = app
        .admin_get(&format!("/deliveries/{}", passed["id"]))
        .await;
    assert_eq!(one["dialect"], "wechat", "{one}");
    assert_eq!(one["attempt_log"][0]["dialect"], "wechat", "{one}");
    let xml = one["payload"].as_str().unwrap_or_else(|| panic!("{one}"));
    assert!(
        xml.contains("<Event><![CDATA[weapp_audit_success]]></Event>"),
        "{xml}"
    );
    let v = wx
        .get("/wxa/get_latest_auditstatus", &[("access_token", &tok)])
        .await;
    assert_eq!(
        (v["auditid"].as_i64(), v["status"].as_i64()),
        (Some(audit1), Some(0)),
        "{v}"
    );
    assert_eq!(v["user_version"], "1.0.0");
    assert!(v.get("ScreenShot").is_some(), "WeChat's casing: {v}");
    // Release: an empty body is 44002; `{}` releases; again is 85052.
    let (_, v) = wx
        .send(
            Method::POST,
            "/wxa/release",
            &[("access_token", &tok)],
            None,
        )
        .await;
    assert_eq!(refused(&v), 44002, "{v}");
    let v = wx.code("/wxa/release", &tok, json!({})).await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx.code("/wxa/release", &tok, json!({})).await;
    assert_eq!(refused(&v), 85052, "{v}");
    // 2.0.0 fails its audit: the push says why.
    wx.code("/wxa/commit", &tok, commit_body(t, json!({}), "2.0.0"))
        .await;
    wait_trial(&wx, &tok).await;
    let audit2 = wx.code("/wxa/submit_audit", &tok, json!({})).await["auditid"]
        .as_i64()
        .expect("auditid");
    app.decide(audit2, false, "名称过长").await;
    let failed = rx
        .wait_for(WAIT, |r| r.field("Event") == Some("weapp_audit_fail"))
        .await;
    assert_eq!(failed.field("Reason"), Some("名称过长"));
    let v = wx
        .code("/wxa/get_auditstatus", &tok, json!({"auditid": audit2}))
        .await;
    assert_eq!(
        (v["status"].as_i64(), v["reason"].as_str()),
        (Some(1), Some("名称过长"))
    );
    let v = wx
        .code("/wxa/grayrelease", &tok, json!({"gray_percentage": 10}))
        .await;
    assert_eq!(refused(&v), 85080, "{v}");
    // 3.0.0 passes and goes out to 10 %, then 30 %; lowering is 85082; a revert of the
    // online version is 87011 while it runs.
    wx.code("/wxa/commit", &tok, commit_body(t, json!({}), "3.0.0"))
        .await;
    wait_trial(&wx, &tok).await;
    let audit3 = wx.code("/wxa/submit_audit", &tok, json!({})).await["auditid"]
        .as_i64()
        .expect("auditid");
    app.decide(audit3, true, "").await;
    for (pct, want) in [(0, 85081), (101, 85081), (10, 0), (30, 0), (20, 85082)] {
        let v = wx
            .code("/wxa/grayrelease", &tok, json!({"gray_percentage": pct}))
            .await;
        assert_eq!(errcode(&v), want, "{pct}: {v}");
    }
    let v = wx
        .get("/wxa/getgrayreleaseplan", &[("access_token", &tok)])
        .await;
    let plan = &v["gray_release_plan"];
    assert_eq!(
        (plan["status"].as_i64(), plan["gray_percentage"].as_i64()),
        (Some(1), Some(30)),
        "{v}"
    );
    let v = wx
        .get("/wxa/revertgrayrelease", &[("access_token", &tok)])
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx
        .get("/wxa/getgrayreleaseplan", &[("access_token", &tok)])
        .await;
    assert_eq!(v["gray_release_plan"]["status"], 0, "{v}");
    let v = wx.code("/wxa/release", &tok, json!({})).await;
    assert_eq!(errcode(&v), 0, "{v}");
    // History holds 1.0.0; reverting goes back to it.
    let v = wx
        .get(
            "/wxa/revertcoderelease",
            &[("access_token", &tok), ("action", "get_history_version")],
        )
        .await;
    let list = v["version_list"].as_array().expect("version_list");
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["user_version"], "1.0.0");
    assert_eq!(list[0]["app_version"].as_i64(), Some(audit1));
    // The platform agrees: 3.0.0 online, 1.0.0 kept as a former version.
    let (_, third) = app.admin_get(&format!("/packages/{audit3}")).await;
    assert_eq!(third["state"], "online", "{third}");
    let (_, first) = app.admin_get(&format!("/packages/{audit1}")).await;
    assert_eq!(first["state"], "history", "{first}");
    // 4.0.0 goes out to 10 %: reverting the online version waits for the gray release.
    wx.code("/wxa/commit", &tok, commit_body(t, json!({}), "4.0.0"))
        .await;
    wait_trial(&wx, &tok).await;
    let audit4 = wx.code("/wxa/submit_audit", &tok, json!({})).await["auditid"]
        .as_i64()
        .expect("auditid");
    app.decide(audit4, true, "").await;
    let v = wx
        .code("/wxa/grayrelease", &tok, json!({"gray_percentage": 10}))
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx
        .get("/wxa/revertcoderelease", &[("access_token", &tok)])
        .await;
    assert_eq!(refused(&v), 87011, "{v}");
    let v = wx
        .get("/wxa/revertgrayrelease", &[("access_token", &tok)])
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let back_to = audit1.to_string();
    let v = wx
        .get(
            "/wxa/revertcoderelease",
            &[("access_token", &tok), ("app_version", &back_to)],
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    // Visit status: close, read, open; a bad action 85022.
    let v = wx
        .code("/wxa/change_visitstatus", &tok, json!({"action": "pause"}))
        .await;
    assert_eq!(refused(&v), 85022, "{v}");
    let v = wx
        .code("/wxa/change_visitstatus", &tok, json!({"action": "close"}))
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx.code("/wxa/getvisitstatus", &tok, json!({})).await;
    assert_eq!(v["status"], 0, "{v}");
    // The Baidu dialect sees the same mini program: one timeline.
    let baidu = app.call("get", &[]).await;
    let versions: Vec<&str> = baidu["data"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["version"].as_str())
        .collect();
    // 4.0.0, committed and passed through WeChat, is the audit version; 3.0.0 is online
    // (rolling back to 1.0.0, the version WeChat's revert chose).
    assert!(versions.contains(&"4.0.0"), "{baidu}");
    let online = baidu["data"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["version"] == "3.0.0"))
        .expect("3.0.0");
    assert_eq!(online["rollback_version"], "1.0.0", "{baidu}");
    app.stop().await;
}

#[tokio::test]
async fn undoing_audits_has_its_own_daily_quota() {
    let app = spawn_with(|s| s.wechat_undo_audit_per_day = 2).await;
    let wx = Wx { app: &app };
    let tok = app.token.clone();
    wx.code(
        "/wxa/commit",
        &tok,
        commit_body(app.template_id, json!({}), "1.0.0"),
    )
    .await;
    wait_trial(&wx, &tok).await;
    for _ in 0..2 {
        assert_eq!(
            errcode(&wx.code("/wxa/submit_audit", &tok, json!({})).await),
            0
        );
        let v = wx
            .get("/wxa/undocodeaudit", &[("access_token", &tok)])
            .await;
        assert_eq!(errcode(&v), 0, "{v}");
    }
    assert_eq!(
        errcode(&wx.code("/wxa/submit_audit", &tok, json!({})).await),
        0
    );
    let v = wx
        .get("/wxa/undocodeaudit", &[("access_token", &tok)])
        .await;
    assert_eq!(refused(&v), 87013, "{v}");
    // Refused, it withdrew nothing: the audit is still running.
    let v = wx
        .get("/wxa/get_latest_auditstatus", &[("access_token", &tok)])
        .await;
    assert_eq!(v["status"], 2, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn the_wechat_monthly_audit_quota_is_counted_apart_from_baidus() {
    let app = spawn_with(|s| {
        s.wechat_audit_quota_per_month = 1;
        s.audit_quota_per_week = 5;
    })
    .await;
    let wx = Wx { app: &app };
    let tok = app.token.clone();
    // A Baidu submission does not draw on WeChat's quota.
    let id = app.built("0.9.0").await;
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &id.to_string()), ("content", "c")],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    app.decide(id, false, "no").await;
    let v = wx.get("/wxa/queryquota", &[("access_token", &tok)]).await;
    assert_eq!(
        (v["limit"].as_i64(), v["rest"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    wx.code(
        "/wxa/commit",
        &tok,
        commit_body(app.template_id, json!({}), "1.0.0"),
    )
    .await;
    wait_trial(&wx, &tok).await;
    assert_eq!(
        errcode(&wx.code("/wxa/submit_audit", &tok, json!({})).await),
        0
    );
    wx.get("/wxa/undocodeaudit", &[("access_token", &tok)])
        .await;
    let v = wx.code("/wxa/submit_audit", &tok, json!({})).await;
    assert_eq!(refused(&v), 85085, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn the_template_library_reads_the_same_in_both_dialects() {
    let app = wechat_app().await;
    let rx = receiver_for(&app).await;
    let c = component(&app, &rx).await;
    let wx = Wx { app: &app };
    let token = component_token(&wx, &rx, &c).await;
    let zip = smartpkg_core::archive::sample_template(&["pages/a/a"]).expect("zip");
    let (st, draft) = app.upload_draft_bytes(app.tp_id, "2.1.0", zip).await;
    assert_eq!(st, 201, "{draft}");
    let q = [("access_token", token.as_str())];
    let v = wx.get("/wxa/gettemplatedraftlist", &q).await;
    let drafts = v["draft_list"].as_array().expect("draft_list");
    let d = drafts
        .iter()
        .find(|d| d["user_version"] == "2.1.0")
        .expect("the draft");
    let draft_id = d["draft_id"].as_i64().expect("draft_id");
    assert!(d["create_time"].as_i64().is_some_and(|t| t > 1_600_000_000));
    let v = wx
        .post(
            "/wxa/addtotemplate",
            "access_token",
            &token,
            json!({"draft_id": draft_id, "template_type": 0}),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx
        .post(
            "/wxa/addtotemplate",
            "access_token",
            &token,
            json!({"draft_id": 987_654}),
        )
        .await;
    assert_eq!(refused(&v), 85064, "{v}");
    let v = wx.get("/wxa/gettemplatelist", &q).await;
    let list = v["template_list"].as_array().expect("template_list");
    let added = list
        .iter()
        .find(|t| t["user_version"] == "2.1.0")
        .expect("the template");
    let template_id = added["template_id"].as_i64().expect("template_id");
    assert_eq!(added["template_type"], 0);
    let v = wx
        .get(
            "/wxa/gettemplatelist",
            &[("access_token", token.as_str()), ("template_type", "1")],
        )
        .await;
    assert_eq!(v["template_list"], json!([]));
    let v = wx
        .post(
            "/wxa/deletetemplate",
            "access_token",
            &token,
            json!({"template_id": template_id.to_string()}),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = wx
        .post(
            "/wxa/deletetemplate",
            "access_token",
            &token,
            json!({"template_id": template_id}),
        )
        .await;
    assert_eq!(refused(&v), 85064, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn baidus_submit_and_wechats_submit_audit_race_and_one_wins() {
    let app = spawn_with(|_| {}).await;
    let wx = Wx { app: &app };
    let id = app.built("1.0.0").await;
    let pid = id.to_string();
    let params = [("package_id", pid.as_str()), ("content", "c")];
    let baidu = app.call("submitaudit", &params);
    let wechat = wx.code("/wxa/submit_audit", &app.token, json!({}));
    let (b, w) = tokio::join!(baidu, wechat);
    let wins = [b["errno"] == 0, errcode(&w) == 0];
    assert_eq!(
        wins.iter().filter(|x| **x).count(),
        1,
        "baidu {b}, wechat {w}"
    );
    if wins[0] {
        assert_eq!(refused(&w), 85009, "{w}");
    } else {
        assert_eq!(b["errno"], 69502, "{b}");
    }
    // One timeline: both dialects see the one audit.
    let v = wx
        .get(
            "/wxa/get_latest_auditstatus",
            &[("access_token", &app.token)],
        )
        .await;
    assert_eq!(
        (v["auditid"].as_i64(), v["status"].as_i64()),
        (Some(id), Some(2)),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn domains_set_through_wechat_are_the_ones_the_baidu_dialect_reads() {
    let app = wechat_app().await;
    let rx = receiver_for(&app).await;
    let c = component(&app, &rx).await;
    let wx = Wx { app: &app };
    // The component token is the third party's token in both dialects.
    let component = component_token(&wx, &rx, &c).await;
    let tok = app.token.clone();
    let v = wx
        .code(
            "/wxa/modify_domain",
            &tok,
            json!({"action": "set", "requestdomain": ["https://api.shop.example"], "wsrequestdomain": ["wss://ws.shop.example"]}),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    assert_eq!(v["requestdomain"], json!(["https://api.shop.example"]));
    assert_eq!(v["wsrequestdomain"], json!(["wss://ws.shop.example"]));
    let v = wx
        .code(
            "/wxa/modify_domain",
            &tok,
            json!({"action": "set", "udpdomain": ["udp://x.example:1"]}),
        )
        .await;
    assert_eq!(refused(&v), 47001, "{v}");
    let v = wx
        .code("/wxa/modify_domain", &tok, json!({"action": "move"}))
        .await;
    assert_eq!(refused(&v), 85022, "{v}");
    let v = wx
        .code("/wxa/modify_domain", &tok, json!({"action": "get"}))
        .await;
    assert_eq!(
        v["requestdomain"],
        json!(["https://api.shop.example"]),
        "{v}"
    );
    // Baidu's dialect reads the same list.
    let b = baidu(&app, "app/modifydomain", &tok, &[("action", "get")]).await;
    assert_eq!(
        b["data"]["request_domain"], "https://api.shop.example",
        "{b}"
    );
    // Web-view domains come from the component's: none registered is 89020.
    let v = wx
        .code(
            "/wxa/setwebviewdomain",
            &tok,
            json!({"action": "add", "webviewdomain": ["https://h5.shop.example"]}),
        )
        .await;
    assert_eq!(refused(&v), 89020, "{v}");
    let b = baidu(
        &app,
        "tp/modifywebviewdomain",
        &component,
        &[
            ("action", "set"),
            ("web_view_domain", "https://h5.shop.example"),
        ],
    )
    .await;
    assert_eq!(b["errno"], 0, "{b}");
    let v = wx
        .code(
            "/wxa/setwebviewdomain",
            &tok,
            json!({"action": "add", "webviewdomain": ["https://other.example"]}),
        )
        .await;
    assert_eq!(refused(&v), 89021, "{v}");
    let v = wx.code("/wxa/setwebviewdomain", &tok, json!({})).await;
    assert_eq!(
        (errcode(&v), &v["webviewdomain"]),
        (0, &json!(["https://h5.shop.example"])),
        "{v}"
    );
    let v = wx.code("/wxa/setwebviewdomain", &tok, json!({})).await;
    assert_eq!(refused(&v), 89019, "unchanged: {v}");
    app.stop().await;
}

#[tokio::test]
async fn a_wechat_gray_release_reaches_the_devices_of_its_share_then_everyone() {
    use crate::runtime::{host, versions_of};
    let app = spawn_with(|_| {}).await;
    let wx = Wx { app: &app };
    let tok = app.token.clone();
    let h = host(&app, "host").await;
    let devices: Vec<String> = (0..400).map(|i| format!("phone-{i}")).collect();
    let v1 = app.online("1.0.0").await;
    let v = wx
        .code(
            "/wxa/commit",
            &tok,
            commit_body(app.template_id, json!({}), "2.0.0"),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    wait_trial(&wx, &tok).await;
    let v2 = wx.code("/wxa/submit_audit", &tok, json!({})).await["auditid"]
        .as_i64()
        .expect("auditid");
    app.decide(v2, true, "").await;
    let v = wx
        .code("/wxa/grayrelease", &tok, json!({"gray_percentage": 20}))
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let at20 = versions_of(&app, &h, &devices).await;
    for (d, got) in devices.iter().zip(&at20) {
        // Exactly the devices of the documented bucket rule run the new version.
        let want = if smartpkg_core::runtime::bucket(app.app_id, d) < 20 {
            v2
        } else {
            v1
        };
        assert_eq!(*got, Some(want), "{d}");
    }
    let moved = at20.iter().filter(|v| **v == Some(v2)).count();
    assert!((40..=120).contains(&moved), "{moved} of 400 at 20%");
    let v = wx.code("/wxa/release", &tok, json!({})).await;
    assert_eq!(errcode(&v), 0, "{v}");
    let all = versions_of(&app, &h, &devices).await;
    assert!(all.iter().all(|v| *v == Some(v2)), "{all:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_remaining_refusals_carry_their_wechat_errcodes() {
    let app = spawn_with(|s| s.wechat_speedup_per_month = 0).await;
    let wx = Wx { app: &app };
    let tok = app.token.clone();
    // No online version: no visit status to change (85021), no gray release (85079).
    let v = wx
        .code("/wxa/change_visitstatus", &tok, json!({"action": "close"}))
        .await;
    assert_eq!(refused(&v), 85021, "{v}");
    let v = wx
        .code("/wxa/grayrelease", &tok, json!({"gray_percentage": 5}))
        .await;
    assert_eq!(refused(&v), 85079, "{v}");
    // Speed-up of an audit that is not running (89402); of a running one past a quota of
    // none (89405).
    let v = wx
        .code("/wxa/speedupaudit", &tok, json!({"auditid": 424242}))
        .await;
    assert_eq!(refused(&v), 89402, "{v}");
    wx.code(
        "/wxa/commit",
        &tok,
        commit_body(app.template_id, json!({}), "1.0.0"),
    )
    .await;
    wait_trial(&wx, &tok).await;
    let audit = wx.code("/wxa/submit_audit", &tok, json!({})).await["auditid"]
        .as_i64()
        .expect("auditid");
    let v = wx
        .code("/wxa/speedupaudit", &tok, json!({"auditid": audit}))
        .await;
    assert_eq!(refused(&v), 89405, "{v}");
    // A mini program whose name is not reviewed yet cannot be submitted (86002).
    let (other, other_token) = app.new_app("unreviewed").await;
    let (st, body) = app
        .admin(
            Method::PATCH,
            &format!("/apps/{other}"),
            Some(json!({"name_audited": false})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    wx.code(
        "/wxa/commit",
        &other_token,
        commit_body(app.template_id, json!({}), "1.0.0"),
    )
    .await;
    wait_trial(&wx, &other_token).await;
    let v = wx.code("/wxa/submit_audit", &other_token, json!({})).await;
    assert_eq!(refused(&v), 86002, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn consenting_again_pushes_updateauthorized_with_the_new_code() {
    let app = wechat_app().await;
    let rx = receiver_for(&app).await;
    let c = component(&app, &rx).await;
    let wx = Wx { app: &app };
    let token = component_token(&wx, &rx, &c).await;
    let (st, created) = app.admin_post("/apps", json!({"name": "twice"})).await;
    assert_eq!(st, 201, "{created}");
    let wx_appid = created["wx_appid"].as_str().expect("wx_appid").to_string();
    let password = created["owner_password"]
        .as_str()
        .expect("password")
        .to_string();
    let first = approve(&app, &wx, &c, &token, &wx_appid, &password).await;
    let second = approve(&app, &wx, &c, &token, &wx_appid, &password).await;
    assert_ne!(first, second);
    let pushed = rx
        .wait_for(WAIT, |r| {
            is_info(r, "updateauthorized") && r.field("AuthorizerAppid") == Some(wx_appid.as_str())
        })
        .await;
    assert!(pushed.signature_ok && pushed.appid_ok, "{pushed:?}");
    assert_eq!(pushed.field("AuthorizationCode"), Some(second.as_str()));
    app.stop().await;
}

#[tokio::test]
async fn writes_past_the_shared_budget_are_45009_and_change_nothing() {
    let app = spawn_with(|s| s.app_writes_per_minute = 2).await;
    let wx = Wx { app: &app };
    let tok = app.token.clone();
    for _ in 0..2 {
        let v = wx
            .code("/wxa/change_visitstatus", &tok, json!({"action": "pause"}))
            .await;
        // Refused for its action, but a write all the same: it draws on the budget.
        assert_eq!(refused(&v), 85022, "{v}");
    }
    let v = wx
        .code(
            "/wxa/commit",
            &tok,
            commit_body(app.template_id, json!({}), "1.0.0"),
        )
        .await;
    assert_eq!(refused(&v), 45009, "{v}");
    let v = wx.get("/wxa/get_page", &[("access_token", &tok)]).await;
    assert_eq!(refused(&v), 86001, "nothing was committed: {v}");
    // Reads are not writes: they still answer.
    let v = wx.code("/wxa/getvisitstatus", &tok, json!({})).await;
    assert_eq!(errcode(&v), 0, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn a_wechat_gray_release_with_a_plan_shows_running_paused_and_finished() {
    use crate::health::{fleet, watched};
    use crate::runtime::host;
    let app = watched().await;
    let wx = Wx { app: &app };
    let tok = app.token.clone();
    let h = host(&app, "host").await;
    let v1 = app.online("1.0.0").await;
    let v = wx
        .code(
            "/wxa/commit",
            &tok,
            commit_body(app.template_id, json!({}), "2.0.0"),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    wait_trial(&wx, &tok).await;
    let v2 = wx.code("/wxa/submit_audit", &tok, json!({})).await["auditid"]
        .as_i64()
        .expect("auditid");
    app.decide(v2, true, "").await;
    // A plan through WeChat's call: its steps must hold the starting percentage.
    let bad = wx
        .code(
            "/wxa/grayrelease",
            &tok,
            json!({"gray_percentage": 10, "gray_steps": "20,100", "gray_auto": true}),
        )
        .await;
    assert_eq!(errcode(&bad), 47001, "{bad}");
    let v = wx
        .code(
            "/wxa/grayrelease",
            &tok,
            json!({"gray_percentage": 20, "gray_steps": "20,100", "gray_auto": true}),
        )
        .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let query = [("access_token", tok.as_str())];
    let plan = || wx.get("/wxa/getgrayreleaseplan", &query);
    let p = plan().await;
    assert_eq!(p["gray_release_plan"]["status"], 1, "running: {p}");
    assert_eq!(p["gray_release_plan"]["gray_percentage"], 20, "{p}");
    // Broken on 5 % against 0.5 %: paused (halted), at 0 %.
    fleet(&app, &h, "wx-new", v2, 600, 30).await;
    fleet(&app, &h, "wx-old", v1, 600, 3).await;
    let start = std::time::Instant::now();
    let paused = loop {
        let p = plan().await;
        if p["gray_release_plan"]["status"] == 2 {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never paused: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        paused["gray_release_plan"]["gray_percentage"], 0,
        "{paused}"
    );
    // The operator resumes and advances it by hand: released, the plan finished.
    let (st, _) = app
        .admin_post(&format!("/packages/{v2}/plan/resume"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, p) = app
        .admin_post(&format!("/packages/{v2}/plan/advance"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let p = plan().await;
    assert_eq!(p["gray_release_plan"]["status"], 3, "finished: {p}");
    assert_eq!(p["gray_release_plan"]["gray_percentage"], 100, "{p}");
    app.stop().await;
}
