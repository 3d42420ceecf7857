//! SIGKILL the server while work is pending, start it again, and the lifecycle completes:
//! no job is lost and no transition is applied twice.

mod common;

use common::start_demo;
use reqwest::Method;

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn sigkill_during_a_pending_build_then_restart_builds_the_package_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("SMARTPKG_BUILD_DELAY_MS", "1500")];
    let server = start_demo(dir.path(), &env);
    assert_eq!(server.upload("1.0.0").await["errno"], 0);
    let pending = server.call("get", &[]).await;
    assert_eq!(pending["data"][0]["upload_status"], 1, "{pending}");
    server.kill9();

    let server = start_demo(dir.path(), &env);
    let v = server
        .wait_detail(&[("type", "3")], |v| v["data"]["package_id"].is_i64())
        .await;
    assert_eq!(v["data"]["version"], "1.0.0");
    let all = server.admin(Method::GET, "/packages?app_id=1", None).await;
    let states: Vec<&str> = all["packages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["state"].as_str())
        .collect();
    assert_eq!(
        states,
        vec!["development"],
        "exactly one package, built once"
    );
    server.stop();
}

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn sigkill_during_a_rollback_then_restart_finishes_the_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("SMARTPKG_BUILD_DELAY_MS", "20"),
        ("SMARTPKG_ROLLBACK_DELAY_MS", "1500"),
    ];
    let server = start_demo(dir.path(), &env);
    let first = server.release("1.0.0").await;
    let second = server.release("2.0.0").await;
    assert_eq!(
        server
            .call("rollback", &[("package_id", &second.to_string())])
            .await["errno"],
        0
    );
    assert_eq!(server.call("getdetail", &[]).await["data"]["status"], 8);
    server.kill9();

    let server = start_demo(dir.path(), &env);
    let v = server.wait_detail(&[], |v| v["data"]["status"] == 1).await;
    assert_eq!(
        (
            v["data"]["package_id"].as_i64(),
            v["data"]["version"].as_str()
        ),
        (Some(first), Some("1.0.0"))
    );
    let all = server.admin(Method::GET, "/packages?app_id=1", None).await;
    let mut states: Vec<(i64, String)> = all["packages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| {
            (
                p["package_id"].as_i64().unwrap_or(0),
                p["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            (first, "online".to_string()),
            (second, "retired".to_string())
        ]
    );
    server.stop();
}

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn sigkill_at_arbitrary_moments_of_busy_traffic_leaves_a_consistent_platform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("SMARTPKG_BUILD_DELAY_MS", "0"),
        ("SMARTPKG_ROLLBACK_DELAY_MS", "0"),
    ];
    for round in 0..4u64 {
        let server = start_demo(dir.path(), &env);
        // Keep uploads in flight, then kill after a round-dependent moment.
        let base = server.base.clone();
        let token = server.token.clone();
        let t = server.template_id.to_string();
        let traffic = tokio::spawn(async move {
            let c = reqwest::Client::new();
            for i in 0..200 {
                let v = format!("{round}.{i}");
                let _ = c
                    .post(format!("{base}/rest/2.0/smartapp/package/upload"))
                    .query(&[("access_token", token.as_str())])
                    .form(&[
                        ("template_id", t.as_str()),
                        ("ext_json", "{}"),
                        ("user_version", &v),
                        ("user_desc", "d"),
                    ])
                    .send()
                    .await;
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(40 + 37 * round)).await;
        server.kill9();
        let _ = traffic.await;
    }
    // After the last restart every accepted upload either built or was replaced; nothing is
    // left building and the one-per-slot rule still holds.
    let server = start_demo(dir.path(), &env);
    let v = server
        .wait_detail(&[("type", "3")], |v| v["data"]["package_id"].is_i64())
        .await;
    assert_eq!(v["errno"], 0);
    let all = server
        .admin(Method::GET, "/packages?app_id=1&limit=1000", None)
        .await;
    let list = all["packages"].as_array().expect("list");
    let dev = list.iter().filter(|p| p["state"] == "development").count();
    let building = list.iter().filter(|p| p["state"] == "building").count();
    assert_eq!((dev, building), (1, 0), "{all}");
    server.stop();
}

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn sigkill_with_pushes_pending_then_restart_delivers_each_event_once() {
    use smartpkg_testkit::{Answer, Keys, Receiver};
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("SMARTPKG_BUILD_DELAY_MS", "0"),
        ("SMARTPKG_ALLOW_PRIVATE_TARGETS", "true"),
        (
            "SMARTPKG_PUSH_RETRY_SCHEDULE",
            "0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
        ),
    ];
    let server = start_demo(dir.path(), &env);
    // The receiver is down: pushes stay pending.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let tp = server
        .admin(Method::PATCH, "/tps/1", Some(serde_json::json!({"event_url": format!("http://127.0.0.1:{port}/events"), "msg_token": "tok", "encoding_aes_key": KEY})))
        .await;
    let client_id = tp["client_id"].as_str().expect("client_id").to_string();
    let mut ids = vec![];
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        ids.push(server.release(v).await);
    }
    let pending = server
        .admin(Method::GET, "/deliveries?state=pending", None)
        .await;
    assert_eq!(
        pending["deliveries"].as_array().map(Vec::len),
        Some(3),
        "{pending}"
    );
    server.kill9();

    let keys = Keys {
        encoding_aes_key: KEY.into(),
        token: "tok".into(),
        client_id,
    };
    let receiver = Receiver::start(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        keys,
        |_| Answer::Success,
    )
    .await
    .expect("receiver");
    let server = start_demo(dir.path(), &env);
    let got = receiver
        .wait_for(3, std::time::Duration::from_secs(30))
        .await;
    // Give a duplicate every chance to show up before counting.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let got_after = receiver.received();
    assert_eq!(got_after.len(), 3, "each event exactly once: {got:?}");
    let mut packages: Vec<i64> = got_after
        .iter()
        .filter_map(|g| g.event.as_ref())
        .filter_map(|e| e["packageId"].as_i64())
        .collect();
    packages.sort();
    assert_eq!(packages, ids);
    let delivered = server
        .admin(Method::GET, "/deliveries?state=delivered", None)
        .await;
    assert_eq!(delivered["deliveries"].as_array().map(Vec::len), Some(3));
    server.stop();
}

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn sigterm_with_a_half_sent_request_open_exits_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_demo(
        dir.path(),
        &[
            ("SMARTPKG_HEADER_READ_TIMEOUT_MS", "600000"),
            ("SMARTPKG_IDLE_TIMEOUT_MS", "600000"),
            ("SMARTPKG_SHUTDOWN_GRACE_MS", "500"),
        ],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"POST /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let start = std::time::Instant::now();
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    tokio::time::timeout(std::time::Duration::from_secs(15), stopped)
        .await
        .expect("the process exits despite the half-sent request")
        .expect("join");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}
