//! Pushes never go through a proxy named in the environment: a proxy resolves names itself, so
//! it would carry a push past the target rules.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use smartpkg_testkit::{Answer, Keys, Receiver};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

#[tokio::test]
async fn pushes_ignore_http_proxy_from_the_environment() {
    // A "proxy" that only counts who connects to it.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = proxy.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_demo(
        dir.path(),
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("http_proxy", proxy_url.as_str()),
            ("ALL_PROXY", proxy_url.as_str()),
            ("SMARTPKG_ALLOW_PRIVATE_TARGETS", "true"),
            ("SMARTPKG_BUILD_DELAY_MS", "0"),
        ],
    );
    let tp_id = server
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("Demo data: third party "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse::<i64>().ok())
        .expect("tp id");
    let tp = server
        .admin(reqwest::Method::GET, &format!("/tps/{tp_id}"), None)
        .await;
    let keys = Keys {
        encoding_aes_key: KEY.into(),
        token: "tok".into(),
        client_id: tp["client_id"].as_str().expect("client_id").into(),
    };
    let r = Receiver::start("127.0.0.1:0".parse().expect("addr"), keys, |_| {
        Answer::Success
    })
    .await
    .expect("receiver");
    server
        .admin(
            reqwest::Method::PATCH,
            &format!("/tps/{tp_id}"),
            Some(json!({"event_url": r.url(), "msg_token": "tok", "encoding_aes_key": KEY})),
        )
        .await;
    server.release("2.0.0").await;
    let got = r.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(
        got[0].event.as_ref().map(|e| e["event"].clone()),
        Some(json!("PACKAGE_AUDIT_PASS"))
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a push went through the proxy"
    );
    server.stop();
}
