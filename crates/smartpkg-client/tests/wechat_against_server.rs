//! The typed WeChat client against a real smartpkg server on 127.0.0.1: every call decoded
//! strictly into its declared fields, refusals typed, and stale tokens refreshed once.

use std::time::Duration;

use serde_json::json;
use smartpkg_client::wechat::{AuthorizerTokens, WechatClient, WechatClientError};
use smartpkg_testkit::sandbox::Sandbox;
use smartpkg_types::wechat::{
    AuthorizerInfoRequest, CommitRequest, Errcode, ModifyDomainRequest, SubmitAuditRequest,
    WebviewDomainRequest,
};

fn commit(template_id: i64, version: &str) -> CommitRequest {
    CommitRequest {
        template_id,
        ext_json: json!({"extEnable": true, "ext": {"shop": "north"}}).to_string(),
        user_version: version.into(),
        user_desc: format!("version {version}"),
    }
}

fn refused(r: Result<impl std::fmt::Debug, WechatClientError>) -> Errcode {
    match r {
        Err(e) => e.errcode().unwrap_or_else(|| panic!("not a refusal: {e}")),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

/// Waits for the trial version of the latest commit to be built.
async fn built(c: &WechatClient, token: &str) {
    let start = std::time::Instant::now();
    loop {
        match c.get_page(token).await {
            Ok(p) if !p.page_list.is_empty() => return,
            Err(e) if e.errcode() == Some(Errcode::NoCodeCommitted) => {}
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never built");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pass(s: &Sandbox, package_id: i64) {
    let (st, body) = s
        .admin(
            reqwest::Method::POST,
            &format!("/packages/{package_id}/audit"),
            Some(json!({"result": "pass"})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
}

#[tokio::test]
async fn every_code_management_call_decodes_into_its_typed_fields() {
    let s = Sandbox::start().await;
    let c = WechatClient::new(&s.base_url).expect("client");
    let t = s.app_token.as_str();
    assert_eq!(
        refused(c.submit_audit(t, &SubmitAuditRequest::default()).await),
        Errcode::CommitFirst
    );
    c.commit(t, &commit(s.template_id, "1.0.0"))
        .await
        .expect("commit");
    built(&c, t).await;
    let jpeg = c
        .get_qrcode(t, Some("pages/index/index"))
        .await
        .expect("qr");
    assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
    let auditid = c
        .submit_audit(t, &SubmitAuditRequest::default())
        .await
        .expect("submit");
    assert_eq!(
        c.get_auditstatus(t, auditid).await.expect("status").status,
        2
    );
    assert_eq!(
        refused(c.submit_audit(t, &SubmitAuditRequest::default()).await),
        Errcode::AuditPending
    );
    c.speed_up_audit(t, auditid).await.expect("speed up");
    let q = c.query_quota(t).await.expect("quota");
    assert_eq!((q.limit, q.rest, q.speedup_rest), (1000, 999, 9));
    pass(&s, auditid).await;
    let latest = c.get_latest_auditstatus(t).await.expect("latest");
    assert_eq!((latest.auditid, latest.status), (auditid, 0));
    assert_eq!(latest.user_version, "1.0.0");
    c.release(t).await.expect("release");
    assert_eq!(refused(c.release(t).await), Errcode::AlreadyReleased);
    // 2.0.0 in gray, then full; back to 1.0.0.
    c.commit(t, &commit(s.template_id, "2.0.0"))
        .await
        .expect("commit");
    built(&c, t).await;
    let second = c
        .submit_audit(t, &SubmitAuditRequest::default())
        .await
        .expect("submit");
    pass(&s, second).await;
    c.gray_release(t, 20).await.expect("gray");
    let plan = c
        .gray_release_plan(t)
        .await
        .expect("plan")
        .gray_release_plan;
    assert_eq!((plan.status, plan.gray_percentage), (1, 20));
    assert_eq!(
        refused(c.gray_release(t, 10).await),
        Errcode::GrayPercentageNotHigher
    );
    assert_eq!(
        refused(c.revert_code_release(t, None).await),
        Errcode::GrayReleaseRunning
    );
    c.release(t).await.expect("full release");
    let history = c.history_versions(t).await.expect("history");
    assert_eq!(history.version_list.len(), 1);
    assert_eq!(history.version_list[0].user_version, "1.0.0");
    c.revert_code_release(t, Some(history.version_list[0].app_version))
        .await
        .expect("revert");
    // Visit status and domains.
    c.change_visit_status(t, false).await.expect("close");
    assert_eq!(c.get_visit_status(t).await.expect("status").status, 0);
    let domains = c
        .modify_domain(
            t,
            &ModifyDomainRequest {
                action: Some("add".into()),
                requestdomain: Some(vec!["https://api.north.example".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("domains");
    assert_eq!(domains.requestdomain, ["https://api.north.example"]);
    assert_eq!(
        refused(
            c.set_webview_domain(
                t,
                &WebviewDomainRequest {
                    action: Some("add".into()),
                    webviewdomain: Some(vec!["https://h5.north.example".into()]),
                }
            )
            .await
        ),
        Errcode::NoComponentWebviewDomain
    );
    let privacy = c.code_privacy_info(t).await.expect("privacy");
    assert!(privacy.without_auth_list.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn the_library_and_authorizer_info_decode_with_the_component_token() {
    let s = Sandbox::start().await;
    let c = WechatClient::new(&s.base_url).expect("client");
    // The sandbox's third-party token is the component token of the same third party.
    let t = s.tp_token.as_str();
    let list = c.template_list(t).await.expect("templates");
    assert!(list
        .template_list
        .iter()
        .any(|x| x.template_id == s.template_id));
    let drafts = c.draft_list(t).await.expect("drafts");
    assert!(!drafts.draft_list.is_empty());
    assert_eq!(
        refused(c.add_to_template(t, 987_654).await),
        Errcode::TemplateNotFound
    );
    let (_, tp) = s
        .admin(reqwest::Method::GET, &format!("/tps/{}", s.tp_id), None)
        .await;
    let (_, app) = s
        .admin(reqwest::Method::GET, &format!("/apps/{}", s.app_id), None)
        .await;
    let info = c
        .authorizer_info(
            t,
            &AuthorizerInfoRequest {
                component_appid: tp["component_appid"].as_str().expect("appid").into(),
                authorizer_appid: app["wx_appid"].as_str().expect("wx appid").into(),
            },
        )
        .await
        .expect("info");
    assert_eq!(info.authorizer_info.nick_name, "sandbox shop");
    // An authorizer token where the component's belongs is 40014, a stale-token code.
    let wrong = c.template_list(&s.app_token).await;
    assert!(matches!(&wrong, Err(e) if e.stale_token()), "{wrong:?}");
    s.stop().await;
}

#[tokio::test]
async fn an_expired_authorizer_token_is_refreshed_once_and_the_call_goes_through() {
    let s = Sandbox::start_with(|st| st.app_token_ttl_s = 1).await;
    let c = WechatClient::new(&s.base_url).expect("client");
    let (_, tp) = s
        .admin(reqwest::Method::GET, &format!("/tps/{}", s.tp_id), None)
        .await;
    let (_, app) = s
        .admin(reqwest::Method::GET, &format!("/apps/{}", s.app_id), None)
        .await;
    let tokens = AuthorizerTokens::new(
        c.clone(),
        tp["component_appid"].as_str().expect("appid"),
        &s.tp_token,
        app["wx_appid"].as_str().expect("wx appid"),
        &s.app_token,
        &s.refresh_token,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Called directly, the stale token is 42001.
    assert_eq!(
        refused(c.get_visit_status(&s.app_token).await),
        Errcode::AccessTokenExpired
    );
    // Through the token source, the client refreshes and the call succeeds.
    let status = c
        .with(&tokens, |c, t| async move { c.get_visit_status(&t).await })
        .await
        .expect("after a refresh");
    assert_eq!(status.status, 1);
    assert_ne!(tokens.refresh_token().await, s.refresh_token);
    s.stop().await;
}
