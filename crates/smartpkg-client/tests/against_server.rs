//! The client against a real smartpkg server on 127.0.0.1: every endpoint, decoded strictly.

use std::time::Duration;

use serde_json::json;
use smartpkg_client::types::{
    AddToTemplateRequest, GetDetailRequest, PageRequest, QrCodeRequest, SubmitAuditRequest,
    TpTokenRequest, UploadRequest,
};
use smartpkg_client::{Client, ClientError, RetryPolicy, WireStatus};
use smartpkg_testkit::sandbox::Sandbox;
use smartpkg_types::Errno;

fn upload_req(template_id: i64, version: &str) -> UploadRequest {
    UploadRequest {
        template_id,
        ext_json: r#"{"extEnable":true,"ext":{"k":"v"}}"#.into(),
        user_version: version.into(),
        user_desc: format!("version {version}"),
        test_account: None,
        test_password: None,
    }
}

fn submit_req(package_id: i64) -> SubmitAuditRequest {
    SubmitAuditRequest {
        package_id,
        content: "please review".into(),
        remark: String::new(),
        test_account: None,
        test_password: None,
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

/// Uploads, builds, audits (passing) and releases `version`; its package id.
async fn ship(c: &Client, s: &Sandbox, version: &str) -> i64 {
    let t = &s.app_token;
    c.upload(t, &upload_req(s.template_id, version))
        .await
        .expect("upload");
    let built = c
        .wait_built(t, version, Duration::from_secs(10))
        .await
        .expect("built");
    let id = built.package_id.expect("package id");
    c.submit_audit(t, &submit_req(id)).await.expect("submit");
    pass(s, id).await;
    c.release(t, id).await.expect("release");
    id
}

#[tokio::test]
async fn the_whole_package_lifecycle_decodes_strictly() {
    let s = Sandbox::start().await;
    let c = Client::new(&s.base_url).expect("client");
    let t = &s.app_token;
    let first = ship(&c, &s, "1.0.0").await;
    let online = c
        .get_detail(t, &GetDetailRequest::default())
        .await
        .expect("online detail");
    assert_eq!(online.status, Some(WireStatus::Online));
    assert_eq!(online.package_id, Some(first));
    let second = ship(&c, &s, "1.1.0").await;
    let rows = c.get(t).await.expect("get");
    assert_eq!(rows[0].status, Some(WireStatus::Online));
    assert_eq!(rows[0].rollback_version.as_deref(), Some("1.0.0"));
    c.rollback(t, second).await.expect("rollback");

    // Withdraw: upload, submit, withdraw; the package is back in development.
    c.upload(t, &upload_req(s.template_id, "1.2.0"))
        .await
        .expect("upload");
    let third = c
        .wait_built(t, "1.2.0", Duration::from_secs(10))
        .await
        .expect("built")
        .package_id
        .expect("id");
    c.submit_audit(t, &submit_req(third)).await.expect("submit");
    let auditing = c
        .get_detail(
            t,
            &GetDetailRequest {
                status: Some(WireStatus::Auditing),
                package_id: None,
            },
        )
        .await
        .expect("auditing");
    assert_eq!(auditing.package_id, Some(third));
    c.withdraw(t, third).await.expect("withdraw");
    let trial = c.get_trial(t).await.expect("trial");
    assert_eq!(trial.package_id, Some(third));

    let quota = c.audit_quota(t).await.expect("quota");
    assert_eq!(quota.quota_type, 2);

    let png = c
        .qrcode(t, &QrCodeRequest::default())
        .await
        .expect("qrcode");
    assert!(png.starts_with(b"\x89PNG"));
    let info = c.app_info(t).await.expect("app info");
    assert_eq!(info.app_id, s.app_id);
    s.stop().await;
}

#[tokio::test]
async fn refusals_carry_their_errno_and_gateway_errors_their_code() {
    let s = Sandbox::start().await;
    let c = Client::builder(&s.base_url)
        .retry(RetryPolicy::NONE)
        .build()
        .expect("client");
    let e = c
        .release(&s.app_token, 999_999)
        .await
        .expect_err("no such package");
    assert_eq!(e.errno(), Some(Errno::PackageNotFound), "{e}");
    assert!(e.to_string().contains("69005"), "{e}");
    let e = c.get("45.not-a-token").await.expect_err("bad token");
    assert!(matches!(e, ClientError::Gateway { code: 110, .. }), "{e:?}");
    assert!(e.is_token_error());
    let e = c
        .qrcode(
            &s.app_token,
            &QrCodeRequest {
                width: Some(5000),
                ..Default::default()
            },
        )
        .await
        .expect_err("width");
    assert_eq!(e.errno(), Some(Errno::QrcodeWidth));
    s.stop().await;
}

#[tokio::test]
async fn the_template_library_and_tokens_work_through_the_client() {
    let s = Sandbox::start().await;
    let c = Client::new(&s.base_url).expect("client");
    let tp = &s.tp_token;
    let drafts = c
        .template_drafts(tp, PageRequest::default())
        .await
        .expect("drafts");
    assert!(drafts.count >= 1);
    let draft = drafts.list[0].draft_id;
    let added = c
        .add_to_template(
            tp,
            &AddToTemplateRequest {
                draft_id: draft,
                user_desc: "again".into(),
            },
        )
        .await
        .expect("add");
    let list = c
        .template_list(tp, PageRequest::default())
        .await
        .expect("list");
    assert!(list.list.iter().any(|t| t.template_id == added.template_id));
    assert_eq!(
        c.delete_template(tp, added.template_id)
            .await
            .expect("delete")
            .result,
        1
    );
    let e = c
        .add_to_template(
            tp,
            &AddToTemplateRequest {
                draft_id: draft,
                user_desc: "x".repeat(31),
            },
        )
        .await
        .expect_err("desc too long");
    assert_eq!(e.errno(), Some(Errno::TemplateDescInvalid));

    // Tokens: a pre-auth code; an authorization code exchanged for a pair; a refresh.
    let pre = c.create_pre_auth_code(tp).await.expect("pre-auth");
    assert_eq!(pre.expires_in, 1200);
    let code = c
        .retrieve_authorization_code(tp, s.app_id)
        .await
        .expect("code");
    let pair = c
        .exchange_code(tp, &code.authorization_code)
        .await
        .expect("exchange");
    c.get(&pair.access_token)
        .await
        .expect("the new token works");
    let next = c
        .refresh_app_token(tp, &pair.refresh_token)
        .await
        .expect("refresh");
    c.get(&next.access_token)
        .await
        .expect("the refreshed token works");
    let e = c
        .tp_token(&TpTokenRequest {
            client_id: s.client_id.clone(),
            ticket: "not-a-ticket".into(),
        })
        .await
        .expect_err("bad ticket");
    assert_eq!(e.errno(), Some(Errno::TicketInvalid));
    s.stop().await;
}

#[tokio::test]
async fn a_connection_refused_is_retried_until_the_server_is_up() {
    // A port that nothing listens on yet; a server comes up on it after two tries' time.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let c = Client::builder(&format!("http://{addr}"))
        .retry(RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(100),
            max: Duration::from_millis(300),
        })
        .build()
        .expect("client");
    let started = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Sandbox::start_with(|st| st.listen = addr).await
    });
    let e = c.get("45.unknown").await.expect_err("gateway error");
    assert!(e.is_token_error(), "the call reached the server: {e:?}");
    started.await.expect("server").stop().await;
}

#[tokio::test]
async fn staged_releases_history_and_runtime_settings_work_through_the_client() {
    let s = Sandbox::start().await;
    let c = Client::new(&s.base_url).expect("client");
    let t = &s.app_token;
    let first = ship(&c, &s, "1.0.0").await;
    let second = ship(&c, &s, "1.1.0").await;
    let history = c.history(t).await.expect("history");
    assert_eq!(history[0].package_id, first);
    // A third version, staged to 30% then reverted, then released.
    c.upload(t, &upload_req(s.template_id, "1.2.0"))
        .await
        .expect("upload");
    let third = c
        .wait_built(t, "1.2.0", Duration::from_secs(10))
        .await
        .expect("built")
        .package_id
        .expect("id");
    c.submit_audit(t, &submit_req(third)).await.expect("submit");
    pass(&s, third).await;
    c.gray_release(t, third, 30).await.expect("staged");
    let staged = c
        .get_detail(
            t,
            &GetDetailRequest {
                status: None,
                package_id: Some(third),
            },
        )
        .await
        .expect("detail");
    assert_eq!(staged.gray_percentage, Some(30));
    let lowered = c.gray_release(t, third, 10).await.expect_err("lowered");
    assert_eq!(lowered.errno(), Some(Errno::StagePercentLowered));
    c.revert_gray_release(t, third).await.expect("reverted");
    c.rollback_to(t, second, first).await.expect("rollback to");

    c.pause(t).await.expect("pause");
    assert_eq!(c.app_info(t).await.expect("info").status, 4);
    c.resume(t).await.expect("resume");
    let domains = c
        .modify_domain(
            t,
            &smartpkg_client::types::ModifyDomainRequest {
                action: Some("add".into()),
                request_domain: Some("https://api.example.com".into()),
                ..Default::default()
            },
        )
        .await
        .expect("domains");
    assert_eq!(domains.request_domain, "https://api.example.com");
    let versions = c.support_versions(t).await.expect("versions");
    let min = versions.items[1].version.clone();
    c.set_support_version(t, &min).await.expect("set");
    assert_eq!(
        c.support_versions(t).await.expect("versions").now_version,
        min
    );
    let tp = c
        .tp_modify_domain(
            &s.tp_token,
            &smartpkg_client::types::ModifyDomainRequest {
                action: Some("set".into()),
                socket_domain: Some("wss://ws.example.com".into()),
                ..Default::default()
            },
        )
        .await
        .expect("tp domains");
    assert_eq!(tp.socket_domain, vec!["wss://ws.example.com".to_string()]);
    s.stop().await;
}
