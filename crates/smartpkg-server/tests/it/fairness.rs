//! One slow receiver must not slow anyone else: deliveries have their own lane, a cap per
//! third party, and targets that keep failing are put on hold until they answer again or an
//! operator resumes them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use smartpkg_testkit::{Answer, Keys, Receiver};
use tokio::net::TcpListener;

use crate::helpers::{spawn_with, TestApp};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// A push target that accepts connections and never answers.
async fn hanging_target() -> (String, Arc<Mutex<Vec<tokio::net::TcpStream>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hang", l.local_addr().expect("addr"));
    let held = Arc::new(Mutex::new(vec![]));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            if let Ok(mut v) = keep.lock() {
                v.push(s);
            }
        }
    });
    (url, held)
}

/// `n` third parties whose authorization-event receiver accepts and never answers (their
/// ticket pushes hang); the connections held.
async fn hanging_third_parties(app: &TestApp, n: usize) -> Arc<Mutex<Vec<tokio::net::TcpStream>>> {
    let (hang_url, held) = hanging_target().await;
    for i in 0..n {
        let (st, v) = app
            .admin_post(
                "/tps",
                json!({"name": format!("slow {i}"), "auth_event_url": hang_url}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    held
}

async fn receiver_for(
    app: &TestApp,
    tp_id: i64,
    field: &str,
    script: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> Receiver {
    let (_, tp) = app.admin_get(&format!("/tps/{tp_id}")).await;
    let keys = Keys {
        encoding_aes_key: KEY.into(),
        token: "tok".into(),
        client_id: tp["client_id"].as_str().expect("client_id").into(),
    };
    let r = Receiver::start("127.0.0.1:0".parse().expect("addr"), keys, script)
        .await
        .expect("receiver");
    let body = json!({field: r.url(), "msg_token": "tok", "encoding_aes_key": KEY});
    let (st, v) = app
        .admin(Method::PATCH, &format!("/tps/{tp_id}"), Some(body))
        .await;
    assert_eq!(st, 200, "{v}");
    r
}

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn forty_hanging_receivers_delay_neither_a_healthy_third_party_nor_a_build() {
    let app = spawn_with(|s| {
        s.allow_private_targets = true;
        s.ticket_interval_s = 1;
        s.push_timeout_ms = 3000;
        s.push_concurrency = 16;
        s.push_per_target = 2;
        s.push_hold_after_failures = 0;
        s.build_delay_ms = 200;
    })
    .await;
    // The healthy third party has answered a push before the crowd arrives (a target never
    // yet answered shares the failing half of the lane, here 8 slots, with the 40).
    let healthy = receiver_for(&app, app.tp_id, "auth_event_url", |_| Answer::Success).await;
    healthy.wait_for(1, Duration::from_secs(10)).await;
    let _held = hanging_third_parties(&app, 40).await;
    // Let the hanging targets fill every delivery slot first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = healthy.received().len();
    let start = Instant::now();

    // A build of 200 ms is not queued behind deliveries.
    let t = app.template_id.to_string();
    let v = app
        .call(
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", "{}"),
                ("user_version", "1.0.0"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    app.wait_built(&app.token, "1.0.0").await;
    let build_took = start.elapsed();
    assert!(
        build_took < Duration::from_secs(2),
        "build took {build_took:?}"
    );

    // The healthy third party gets its tickets about once a second despite the backlog.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(start.elapsed())).await;
    let got = healthy.received().len() - before;
    assert!(
        got >= 5,
        "only {got} tickets in 8 s reached the healthy third party"
    );
    app.stop().await;
}

/// How long a healthy third party's audit result takes to arrive while `hanging` third
/// parties, none of which ever answers, each have several pushes due. With `proven`, the
/// healthy one has answered a push before; without, this is its first.
async fn healthy_push_latency_beside(hanging: usize, proven: bool) -> Duration {
    let app = spawn_with(|s| {
        s.allow_private_targets = true;
        s.ticket_interval_s = 1;
        s.push_hold_after_failures = 0;
        s.build_delay_ms = 10;
    })
    .await;
    let r = receiver_for(&app, app.tp_id, "event_url", |_| Answer::Success).await;
    let mut pushed = 0;
    if proven {
        audit_event(&app, "0.9.0").await;
        pushed += 1;
        r.wait_for(pushed, Duration::from_secs(10)).await;
    }
    let held = hanging_third_parties(&app, hanging).await;
    // A ticket a second each: let several pile up per hanging receiver, and their attempts
    // take what slots they can.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let in_flight = held.lock().map(|v| v.len()).unwrap_or(0);
    assert!(
        in_flight >= hanging.min(40),
        "the hanging receivers hold only {in_flight} connections"
    );
    let id = submitted(&app, "1.0.0").await;
    let start = Instant::now();
    app.decide(id, true, "").await;
    pushed += 1;
    r.wait_for(pushed, Duration::from_secs(15)).await;
    let took = start.elapsed();
    eprintln!("healthy push beside {hanging} hanging receivers (proven: {proven}): {took:?}");
    app.stop().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn forty_new_hanging_receivers_never_delay_even_a_first_push_to_a_healthy_third_party() {
    // 40 × the per-target cap of 4 would be 160 attempts for 128 slots: new targets get one
    // attempt each until they answer, so 40 take 40 slots.
    let took = healthy_push_latency_beside(40, false).await;
    assert!(took < Duration::from_millis(500), "the push took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn four_hundred_new_hanging_receivers_never_delay_a_healthy_third_partys_push() {
    // 400 take half the lane at most (one attempt each); the other half is for targets
    // known to answer.
    let took = healthy_push_latency_beside(400, true).await;
    assert!(took < Duration::from_millis(500), "the push took {took:?}");
}

async fn targets(app: &TestApp) -> Vec<Value> {
    let (st, v) = app.admin_get("/push-targets").await;
    assert_eq!(st, 200, "{v}");
    v["push_targets"].as_array().cloned().unwrap_or_default()
}

/// Uploads, builds and submits one version; its package id.
async fn submitted(app: &TestApp, version: &str) -> i64 {
    let id = app.built(version).await;
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &id.to_string()), ("content", "c")],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    id
}

/// Uploads, builds, submits and passes one version: an audit result push to the TP.
async fn audit_event(app: &TestApp, version: &str) -> i64 {
    let id = submitted(app, version).await;
    app.decide(id, true, "").await;
    id
}

#[tokio::test]
async fn a_target_that_keeps_failing_is_held_shown_and_resumed_by_the_operator() {
    let app = spawn_with(|s| {
        s.allow_private_targets = true;
        s.push_retry_schedule_ms = vec![50; 20];
        s.push_hold_after_failures = 3;
        s.push_hold_base_ms = 60_000;
    })
    .await;
    let r = receiver_for(&app, app.tp_id, "event_url", |n| {
        if n < 3 {
            Answer::Status(500, "down")
        } else {
            Answer::Success
        }
    })
    .await;
    audit_event(&app, "1.0.0").await;
    r.wait_for(3, Duration::from_secs(10)).await;
    // Held: no fourth attempt although the retry schedule says 50 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(r.received().len(), 3);
    let t = targets(&app).await;
    let me = t
        .iter()
        .find(|x| x["tp_id"] == app.tp_id)
        .expect("target listed");
    assert_eq!(me["state"], "on_hold", "{me}");
    assert_eq!(me["consecutive_failures"], 3);
    assert!(
        me["hold_until"].is_string() && me["last_error"].is_string(),
        "{me}"
    );
    let (_, list) = app.admin_get("/deliveries").await;
    assert!(
        list["deliveries"][0]["target_on_hold_until"].is_string(),
        "{list}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("smartpkg_push_target_holds_total 1"),
        "{metrics}"
    );

    // The operator resumes it: the pending delivery goes out at once and succeeds.
    let (st, v) = app
        .admin_post(&format!("/push-targets/{}/resume", app.tp_id), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let got = r.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 4);
    let t = targets(&app).await;
    let me = t.iter().find(|x| x["tp_id"] == app.tp_id).expect("target");
    assert_eq!(me["state"], "healthy", "{me}");
    app.stop().await;
}

#[tokio::test]
async fn a_hold_ends_by_itself_and_one_success_clears_the_failing_run() {
    let app = spawn_with(|s| {
        s.allow_private_targets = true;
        s.push_retry_schedule_ms = vec![50; 20];
        s.push_hold_after_failures = 2;
        s.push_hold_base_ms = 400;
    })
    .await;
    let r = receiver_for(&app, app.tp_id, "event_url", |n| {
        if n < 2 {
            Answer::Status(503, "busy")
        } else {
            Answer::Success
        }
    })
    .await;
    audit_event(&app, "1.0.0").await;
    let got = r.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "delivered after the hold ended");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = targets(&app).await;
        let me = t.iter().find(|x| x["tp_id"] == app.tp_id).cloned();
        if me.as_ref().is_some_and(|m| m["state"] == "healthy") {
            assert_eq!(me.map(|m| m["holds"].clone()), Some(json!(1)));
            break;
        }
        assert!(Instant::now() < deadline, "never healthy again: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
