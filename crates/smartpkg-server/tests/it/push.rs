//! Audit result pushes against a real local receiver that decrypts and verifies them with
//! its own code (smartpkg-testkit).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use smartpkg_testkit::{Answer, Keys, Receiver};

use crate::helpers::{spawn_with, TestApp};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const TOKEN: &str = "tp_msg_token_123";
const WAIT: Duration = Duration::from_secs(20);

async fn pushing_app(schedule_ms: Vec<u64>, timeout_ms: u64) -> TestApp {
    spawn_with(move |s| {
        // The receiver listens on 127.0.0.1, so these tests allow private targets.
        s.allow_private_targets = true;
        s.push_retry_schedule_ms = schedule_ms;
        s.push_timeout_ms = timeout_ms;
    })
    .await
}

async fn keys(app: &TestApp) -> Keys {
    let (_, tp) = app.admin_get(&format!("/tps/{}", app.tp_id)).await;
    Keys {
        encoding_aes_key: KEY.into(),
        token: TOKEN.into(),
        client_id: tp["client_id"].as_str().expect("client_id").into(),
    }
}

async fn point_at(app: &TestApp, url: &str) {
    let body = json!({"event_url": url, "msg_token": TOKEN, "encoding_aes_key": KEY});
    let (st, v) = app
        .admin(Method::PATCH, &format!("/tps/{}", app.tp_id), Some(body))
        .await;
    assert_eq!(st, 200, "{v}");
}

pub(crate) async fn receiver(
    app: &TestApp,
    script: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> Receiver {
    let r = Receiver::start(
        "127.0.0.1:0".parse().expect("addr"),
        keys(app).await,
        script,
    )
    .await
    .expect("receiver");
    point_at(app, &r.url()).await;
    r
}

/// Uploads, builds and submits `version`, then decides it; returns the package id.
async fn decided(app: &TestApp, version: &str, pass: bool) -> i64 {
    let id = app.built(version).await;
    assert_eq!(
        app.call(
            "submitaudit",
            &[("package_id", &id.to_string()), ("content", "c")]
        )
        .await["errno"],
        0
    );
    app.decide(
        id,
        pass,
        if pass {
            ""
        } else {
            "名称过长（名称控制在10个字以内）。"
        },
    )
    .await;
    id
}

async fn only_delivery(app: &TestApp) -> Value {
    let (_, v) = app
        .admin_get(&format!("/deliveries?tp_id={}", app.tp_id))
        .await;
    let list = v["deliveries"].as_array().expect("list").clone();
    assert_eq!(list.len(), 1, "{v}");
    list[0].clone()
}

async fn wait_delivery(app: &TestApp, id: i64, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (_, v) = app.admin_get(&format!("/deliveries/{id}")).await;
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < WAIT, "delivery never settled: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pass_and_fail_events_arrive_encrypted_signed_and_complete() {
    let app = pushing_app(vec![200], 2000).await;
    let r = receiver(&app, |_| Answer::Success).await;
    let passed = decided(&app, "1.0.0", true).await;
    let got = r.wait_for(1, WAIT).await;
    assert!(got[0].signature_ok && got[0].client_id_ok, "{got:?}");
    let mut pass = got[0].event.clone().expect("decrypted");
    let time = pass["eventTime"].as_str().expect("eventTime").to_string();
    assert!(
        time.len() == 19 && &time[4..5] == "-" && &time[10..11] == " ",
        "{time}"
    );
    pass["eventTime"] = json!("T");
    assert_eq!(
        pass,
        json!({"appId": app.app_id, "tpAppId": app.tp_id, "eventTime": "T", "event": "PACKAGE_AUDIT_PASS", "packageId": passed, "packageVersion": "1.0.0"})
    );
    let failed = decided(&app, "1.0.1", false).await;
    let got = r.wait_for(2, WAIT).await;
    let mut fail = got[1].event.clone().expect("decrypted");
    fail["eventTime"] = json!("T");
    assert_eq!(
        fail,
        json!({"appId": app.app_id, "tpAppId": app.tp_id, "eventTime": "T", "event": "PACKAGE_AUDIT_FAIL", "reason": "名称过长（名称控制在10个字以内）。", "packageId": failed, "packageVersion": "1.0.1"})
    );
    // The receiver has the event a moment before the server records the answer.
    let start = std::time::Instant::now();
    let list = loop {
        let (_, list) = app
            .admin_get(&format!("/deliveries?tp_id={}&state=delivered", app.tp_id))
            .await;
        let list = list["deliveries"].as_array().expect("list").clone();
        if list.len() == 2 {
            break list;
        }
        assert!(start.elapsed() < WAIT, "never both delivered: {list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (
            list[0]["attempts"].as_i64(),
            list[0]["last_status"].as_i64()
        ),
        (Some(1), Some(200))
    );
    assert_eq!(
        got[1].event_id.as_deref(),
        list[0]["event_id"].as_str(),
        "the event id header"
    );
    app.stop().await;
}

#[tokio::test]
async fn two_500s_then_success_is_exactly_three_attempts_with_one_event_id() {
    let app = pushing_app(vec![100, 100, 100, 100], 2000).await;
    let r = receiver(&app, |n| {
        if n < 2 {
            Answer::Status(500, "boom")
        } else {
            Answer::Success
        }
    })
    .await;
    decided(&app, "1.0.0", true).await;
    let id = only_delivery(&app).await["id"].as_i64().expect("id");
    let d = wait_delivery(&app, id, |v| v["state"] == "delivered").await;
    assert_eq!(d["attempts"], 3);
    let statuses: Vec<i64> = d["attempt_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|a| a["status"].as_i64())
        .collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    assert_eq!(d["attempt_log"][0]["body"], "boom");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = r.received();
    assert_eq!(got.len(), 3, "nothing after the acknowledgement");
    assert!(got
        .iter()
        .all(|g| g.event_id == got[0].event_id && g.event_id.is_some()));
    // Each attempt is freshly encrypted.
    app.stop().await;
}

#[tokio::test]
async fn an_answer_other_than_success_or_a_redirect_is_retried_until_the_schedule_ends() {
    let app = pushing_app(vec![50, 50], 2000).await;
    let r = receiver(&app, |n| {
        if n == 0 {
            Answer::Redirect
        } else {
            Answer::Body("ok")
        }
    })
    .await;
    decided(&app, "1.0.0", true).await;
    let id = only_delivery(&app).await["id"].as_i64().expect("id");
    let d = wait_delivery(&app, id, |v| v["state"] == "failed").await;
    assert_eq!(d["attempts"], 3, "one attempt and two retries: {d}");
    let errors: Vec<&str> = d["attempt_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|a| a["error"].as_str())
        .collect();
    assert!(
        errors[0].contains("redirects are not followed"),
        "{errors:?}"
    );
    assert!(errors[1].contains("not `success`"), "{errors:?}");
    assert_eq!(r.received().len(), 3);
    // Replay on purpose: delivered again under the same event id.
    let (st, _) = app
        .admin_post(&format!("/deliveries/{id}/redeliver"), json!({}))
        .await;
    assert_eq!(st, 202);
    wait_delivery(&app, id, |v| v["attempts"] == 4).await;
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retried() {
    let app = pushing_app(vec![50, 50], 300).await;
    let _r = receiver(&app, |n| {
        if n == 0 {
            Answer::SleepThenSuccess(Duration::from_secs(2))
        } else {
            Answer::Success
        }
    })
    .await;
    decided(&app, "1.0.0", true).await;
    let id = only_delivery(&app).await["id"].as_i64().expect("id");
    let d = wait_delivery(&app, id, |v| v["state"] == "delivered").await;
    assert_eq!(d["attempts"], 2);
    assert!(
        d["attempt_log"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{d}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_the_event() {
    let app = pushing_app(vec![200, 200, 200, 200, 200, 200], 1000).await;
    // Reserve a port, then free it: nothing listens there for the first attempt.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    point_at(&app, &format!("http://127.0.0.1:{port}/events")).await;
    decided(&app, "1.0.0", true).await;
    let id = only_delivery(&app).await["id"].as_i64().expect("id");
    let d = wait_delivery(&app, id, |v| v["attempts"].as_i64() >= Some(1)).await;
    assert_eq!(d["state"], "pending", "{d}");
    let r = Receiver::start(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        keys(&app).await,
        |_| Answer::Success,
    )
    .await
    .expect("receiver");
    wait_delivery(&app, id, |v| v["state"] == "delivered").await;
    assert_eq!(r.received().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn targets_on_non_public_networks_are_refused_without_a_connection() {
    let app = spawn_with(|s| s.push_retry_schedule_ms = vec![]).await;
    // A receiver on loopback that must never be reached.
    let r = Receiver::start(
        "127.0.0.1:0".parse().expect("addr"),
        keys(&app).await,
        |_| Answer::Success,
    )
    .await
    .expect("receiver");
    point_at(&app, &r.url()).await;
    decided(&app, "1.0.0", true).await;
    let id = only_delivery(&app).await["id"].as_i64().expect("id");
    wait_delivery(&app, id, |v| v["state"] == "failed").await;
    let port = r.addr.port();
    let cases = [
        (r.url(), "loopback"),
        (format!("http://localhost:{port}/events"), "loopback"),
        (format!("http://[::1]:{port}/events"), "loopback"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/events"),
            "loopback",
        ),
        ("http://10.1.2.3/events".to_string(), "private"),
        ("http://172.16.0.1/events".to_string(), "private"),
        ("http://192.168.0.1/events".to_string(), "private"),
        ("http://169.254.169.254/latest".to_string(), "link-local"),
        ("http://100.64.0.1/".to_string(), "CGNAT"),
        ("http://224.0.0.1/".to_string(), "multicast"),
        ("http://0.0.0.0/".to_string(), "unspecified"),
        ("http://192.0.2.1/".to_string(), "documentation"),
        ("http://[fd00::1]/".to_string(), "unique local"),
        ("http://[fe80::1]/".to_string(), "link-local"),
        ("http://[2001:db8::1]/".to_string(), "documentation"),
    ];
    // Schemes other than http(s) never get this far: the admin API refuses them (400).
    for (n, (url, class)) in cases.iter().enumerate() {
        point_at(&app, url).await;
        app.admin_post(&format!("/deliveries/{id}/redeliver"), json!({}))
            .await;
        let d = wait_delivery(&app, id, |v| {
            v["state"] == "failed" && v["attempts"].as_i64() == Some(n as i64 + 2)
        })
        .await;
        let err = d["last_error"].as_str().unwrap_or("");
        assert!(
            err.contains("refused target") && err.contains(class),
            "{url}: {err}"
        );
    }
    assert_eq!(r.received().len(), 0, "a refused target was contacted");
    app.stop().await;
}

#[tokio::test]
async fn a_third_party_without_an_event_url_gets_a_failed_delivery_saying_why() {
    let app = spawn_with(|_| {}).await;
    decided(&app, "1.0.0", true).await;
    let d = only_delivery(&app).await;
    assert_eq!(
        (d["state"].as_str(), d["last_error"].as_str()),
        (Some("failed"), Some("the third party has no event_url"))
    );
    app.stop().await;
}

#[tokio::test]
async fn push_metrics_count_attempts_and_outcomes() {
    let app = pushing_app(vec![50], 2000).await;
    let r = receiver(&app, |n| {
        if n == 0 {
            Answer::Status(503, "")
        } else {
            Answer::Success
        }
    })
    .await;
    decided(&app, "1.0.0", true).await;
    r.wait_for(2, WAIT).await;
    let id = only_delivery(&app).await["id"].as_i64().expect("id");
    wait_delivery(&app, id, |v| v["state"] == "delivered").await;
    let text = app.metrics().await;
    for line in [
        "smartpkg_push_attempts_total 2",
        "smartpkg_push_delivered_total 1",
        "smartpkg_push_failed_attempts_total 1",
        "smartpkg_push_latency_seconds_count 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_back_another_third_party() {
    let app = pushing_app(vec![100], 10_000).await;
    let slow = receiver(&app, |_| Answer::SleepThenSuccess(Duration::from_secs(3))).await;
    // A second third party with its own fast receiver, mini program and template.
    let (_, tp2) = app
        .admin_post(
            "/tps",
            json!({"name": "tp two", "msg_token": TOKEN, "encoding_aes_key": KEY}),
        )
        .await;
    let tp2_id = tp2["tp_id"].as_i64().expect("tp_id");
    let keys2 = Keys {
        encoding_aes_key: KEY.into(),
        token: TOKEN.into(),
        client_id: tp2["client_id"].as_str().expect("cid").into(),
    };
    let fast = Receiver::start("127.0.0.1:0".parse().expect("addr"), keys2, |_| {
        Answer::Success
    })
    .await
    .expect("receiver");
    app.admin(
        Method::PATCH,
        &format!("/tps/{tp2_id}"),
        Some(json!({"event_url": fast.url()})),
    )
    .await;
    let (_, app2) = app
        .admin_post("/apps", json!({"name": "shop of tp two"}))
        .await;
    let app2_id = app2["app_id"].as_i64().expect("app_id");
    let (_, grant) = app
        .admin_post(
            &format!("/tps/{tp2_id}/authorizations"),
            json!({"app_id": app2_id}),
        )
        .await;
    let token2 = grant["access_token"].as_str().expect("token").to_string();
    let zip = smartpkg_core::archive::sample_template(&["pages/index/index"]).expect("zip");
    let (_, t2) = app.upload_template_bytes(tp2_id, zip).await;
    let t2 = t2["template_id"].to_string();

    decided(&app, "1.0.0", true).await;
    slow.wait_for(1, WAIT).await;
    let style = crate::helpers::Style::QueryAndForm;
    app.call_as(
        style,
        &token2,
        "upload",
        &[
            ("template_id", &t2),
            ("ext_json", "{}"),
            ("user_version", "2"),
            ("user_desc", "d"),
        ],
    )
    .await;
    let id2 = app.wait_built(&token2, "2").await;
    app.call_as(
        style,
        &token2,
        "submitaudit",
        &[("package_id", &id2.to_string()), ("content", "c")],
    )
    .await;
    let decided_at = std::time::Instant::now();
    app.decide(id2, true, "").await;
    let got = fast.wait_for(1, WAIT).await;
    assert!(
        slow.received().len() == 1,
        "the slow receiver is still answering its first push"
    );
    assert!(
        got[0].at.duration_since(decided_at) < Duration::from_secs(2),
        "the fast third party waited for the slow one"
    );
    app.stop().await;
}
