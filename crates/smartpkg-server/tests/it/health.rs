//! Release health through HTTP: devices report, the scheduler advances a healthy plan through
//! every step and halts a failing one at once, people resume and abandon, bad batches count
//! nothing.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use smartpkg_testkit::Answer;

use crate::helpers::{spawn_with, TestApp};
use crate::runtime::{host, versions_of, Host};

const WAIT: Duration = Duration::from_secs(30);

/// A platform that flushes reports and judges plans every second.
pub(crate) async fn watched() -> TestApp {
    spawn_with(|s| {
        s.allow_private_targets = true;
        s.report_flush_interval_s = 1;
        s.health_eval_interval_s = 1;
        s.health_step_min_s = 0;
        s.push_retry_schedule_ms = vec![200];
    })
    .await
}

async fn send(app: &TestApp, h: &Host, reports: Vec<Value>) -> (StatusCode, Value) {
    send_raw(app, h, json!({ "reports": reports }).to_string()).await
}

async fn send_raw(app: &TestApp, h: &Host, body: String) -> (StatusCode, Value) {
    let r = app
        .client
        .post(format!("{}/runtime/v1/reports", app.base))
        .basic_auth(&h.key, Some(&h.secret))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// `n` devices named `prefix-i` launching `package_id`, the first `failing` of them crashing.
pub(crate) async fn fleet(
    app: &TestApp,
    h: &Host,
    prefix: &str,
    package_id: i64,
    n: usize,
    failing: usize,
) {
    let mut reports = vec![];
    for i in 0..n {
        let device = format!("{prefix}-{i}");
        reports.push(json!({"device_id": device, "app_id": app.app_id, "package_id": package_id, "event": "launched"}));
        if i < failing {
            reports.push(json!({"device_id": device, "app_id": app.app_id, "package_id": package_id, "event": "crashed"}));
        }
    }
    for chunk in reports.chunks(500) {
        let (st, v) = send(app, h, chunk.to_vec()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["ignored"], 0, "{v}");
    }
}

async fn detail(app: &TestApp, id: i64) -> Value {
    let v = app
        .call("getdetail", &[("package_id", &id.to_string())])
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    v["data"].clone()
}

/// Waits until the package's `getdetail` satisfies `done`.
async fn until(app: &TestApp, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let d = detail(app, id).await;
        if done(&d) {
            return d;
        }
        assert!(start.elapsed() < WAIT, "never {what}: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn passed(app: &TestApp, version: &str) -> i64 {
    let id = app.built(version).await;
    let sid = id.to_string();
    let v = app
        .call("submitaudit", &[("package_id", &sid), ("content", "c")])
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    app.decide(id, true, "").await;
    id
}

#[tokio::test]
async fn a_healthy_version_advances_through_every_step_and_is_released() {
    let app = watched().await;
    let r = crate::push::receiver(&app, |_| Answer::Success).await;
    let h = host(&app, "host").await;
    let v1 = app.online("1.0.0").await;
    let v2 = passed(&app, "2.0.0").await;
    // A plan with a small sample, through the admin API.
    let (st, p) = app
        .admin_post(
            &format!("/packages/{v2}/plan"),
            json!({"steps": "5,20,50,100", "min_devices": 100}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        (p["staged_percent"].as_i64(), p["gray_status"].as_str()),
        (Some(5), Some("running"))
    );
    // Each step: both versions healthy, enough devices; the scheduler moves it on.
    for (step, next) in [(5, 20), (20, 50), (50, 100)] {
        fleet(&app, &h, &format!("new-{step}"), v2, 150, 0).await;
        fleet(&app, &h, &format!("old-{step}"), v1, 150, 0).await;
        let d = until(&app, v2, "advanced", |d| {
            d["gray_percentage"].as_i64() != Some(step)
        })
        .await;
        if next < 100 {
            assert_eq!(d["gray_percentage"], next, "{d}");
            assert_eq!(d["gray_status"], "running", "{d}");
        } else {
            // The last advance releases it to every device; the plan shows finished.
            assert_eq!(d["status"], 1, "online: {d}");
            assert_eq!(d["gray_status"], "finished", "{d}");
            assert!(d.get("gray_percentage").is_none(), "{d}");
        }
    }
    let devices: Vec<String> = (0..200).map(|i| format!("phone-{i}")).collect();
    assert!(versions_of(&app, &h, &devices)
        .await
        .iter()
        .all(|v| *v == Some(v2)));
    // The figures are readable by the operator.
    let (st, health) = app.admin_get(&format!("/apps/{}/health", app.app_id)).await;
    assert_eq!(st, StatusCode::OK, "{health}");
    let launched_v2: u64 = health["hours"]
        .as_array()
        .expect("hours")
        .iter()
        .filter(|r| r["package_id"] == v2 && r["event"] == "launched")
        .map(|r| r["events"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(launched_v2, 450, "{health}");
    // Each move was pushed: the advances to 20 % and 50 %, then the finish at 100 %.
    let start = Instant::now();
    let moves = loop {
        let moves: Vec<(i64, String)> = r
            .received()
            .iter()
            .filter_map(|g| g.event.clone())
            .filter(|e| e["event"] == "PACKAGE_GRAY_ADVANCED")
            .map(|e| {
                (
                    e["grayPercentage"].as_i64().unwrap_or(-1),
                    e["grayStatus"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        if moves.len() >= 3 {
            break moves;
        }
        assert!(start.elapsed() < WAIT, "pushes: {moves:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut moves = moves;
    moves.sort();
    assert_eq!(
        moves,
        vec![
            (20, "running".to_string()),
            (50, "running".to_string()),
            (100, "finished".to_string())
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failing_version_halts_at_once_is_announced_and_can_be_resumed_or_abandoned() {
    let app = watched().await;
    let r = crate::push::receiver(&app, |_| Answer::Success).await;
    let h = host(&app, "host").await;
    let v1 = app.online("1.0.0").await;
    let v2 = passed(&app, "2.0.0").await;
    let s2 = v2.to_string();
    // Through the Baidu extension: steps and automatic, the gate at the defaults but 500
    // devices (the default) — the sample below is past it.
    let v = app
        .call(
            "grayrelease",
            &[
                ("package_id", &s2),
                ("gray_percentage", "10"),
                ("gray_steps", "10,50,100"),
                ("gray_auto", "1"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    // Below the minimum sample nothing is judged, however bad it looks.
    fleet(&app, &h, "early-new", v2, 300, 60).await;
    fleet(&app, &h, "early-old", v1, 300, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(detail(&app, v2).await["gray_status"], "running");
    // 5 % against 0.5 % on 2,000 devices each: halted within an evaluation.
    fleet(&app, &h, "new", v2, 2000, 100).await;
    fleet(&app, &h, "old", v1, 2000, 10).await;
    let d = until(&app, v2, "halted", |d| d["gray_status"] == "halted").await;
    assert_eq!(d["gray_percentage"], 0, "{d}");
    // Every device back on the old version at its next check.
    let devices: Vec<String> = (0..300).map(|i| format!("phone-{i}")).collect();
    assert!(versions_of(&app, &h, &devices)
        .await
        .iter()
        .all(|v| *v == Some(v1)));
    // The operator sees why, with the figures.
    let (_, p) = app.admin_get(&format!("/packages/{v2}")).await;
    let halt = &p["stage_plan"]["halt"];
    assert!(halt["new"]["failed"].as_u64().unwrap_or(0) >= 150, "{p}");
    assert!(halt["old"]["launched"].as_u64().unwrap_or(0) >= 2000, "{p}");
    // The third party is told, sealed like every push.
    let start = Instant::now();
    let halted = loop {
        let got = r.received();
        if let Some(e) = got
            .iter()
            .filter_map(|g| g.event.clone())
            .find(|e| e["event"] == "PACKAGE_GRAY_HALTED")
        {
            break e;
        }
        assert!(start.elapsed() < WAIT, "no halt push: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(halted["packageId"], v2, "{halted}");
    assert_eq!(halted["grayPercentage"], 0, "{halted}");
    assert_eq!(halted["grayStatus"], "halted", "{halted}");
    assert!(
        halted["reason"]
            .as_str()
            .unwrap_or("")
            .contains("launching devices"),
        "{halted}"
    );
    // The third party resumes: its step's share again, a fresh sample.
    let v = app.call("resumegrayrelease", &[("package_id", &s2)]).await;
    assert_eq!(v["errno"], 0, "{v}");
    let d = detail(&app, v2).await;
    assert_eq!(
        (d["gray_percentage"].as_i64(), d["gray_status"].as_str()),
        (Some(10), Some("running")),
        "{d}"
    );
    // Resuming a running plan is refused; abandoning it ends the staged release.
    assert_ne!(
        app.call("resumegrayrelease", &[("package_id", &s2)]).await["errno"],
        0
    );
    let (st, p) = app
        .admin_post(&format!("/packages/{v2}/plan/abandon"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let d = detail(&app, v2).await;
    assert!(
        d.get("gray_percentage").is_none() && d.get("gray_status").is_none(),
        "{d}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_report_batches_are_refused_whole_and_other_hosts_apps_are_ignored() {
    let app = watched().await;
    let h = host(&app, "host").await;
    let v1 = app.online("1.0.0").await;
    let good = |event: &str| json!({"device_id": "d1", "app_id": app.app_id, "package_id": v1, "event": event});
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut future = good("launched");
    future["at"] = json!(now_ms + 3_600_000);
    let mut ancient = good("launched");
    ancient["at"] = json!(now_ms - 8 * 24 * 3_600_000);
    let mut control = good("launched");
    control["device_id"] = json!("d\u{0007}");
    let cases: Vec<(Vec<Value>, &str)> = vec![
        (vec![good("launched"), good("exploded")], "report 1"),
        (vec![good("launched"), future], "future"),
        (vec![ancient], "7 days"),
        (vec![control], "device_id"),
        (vec![good("launched"); 501], "at most 500"),
        (vec![], "empty"),
    ];
    for (batch, why) in cases {
        let (st, v) = send(&app, &h, batch).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(why),
            "{why}: {v}"
        );
    }
    let (st, v) = send_raw(&app, &h, r#"{"reports":[],"extra":1}"#.into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let big = format!(r#"{{"reports":[{}]}}"#, "1".repeat(300 * 1024));
    let (st, _) = send_raw(&app, &h, big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown mini programs, packages it does not serve, and wrong credentials.
    let (other_app, _) = app.new_app("shop two").await;
    let (st, v) = send(
        &app,
        &h,
        vec![
            json!({"device_id": "d1", "app_id": 999_999, "package_id": v1, "event": "launched"}),
            json!({"device_id": "d1", "app_id": other_app, "package_id": v1, "event": "launched"}),
            json!({"device_id": "d1", "app_id": app.app_id, "package_id": v1 + 1000, "event": "launched"}),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["accepted"].as_i64(), v["ignored"].as_i64()),
        (Some(0), Some(3)),
        "{v}"
    );
    let r = app
        .client
        .post(format!("{}/runtime/v1/reports", app.base))
        .basic_auth(&h.key, Some("wrong"))
        .json(&json!({"reports": [good("launched")]}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Nothing of any of it was counted.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, health) = app.admin_get(&format!("/apps/{}/health", app.app_id)).await;
    assert_eq!(health["hours"], json!([]), "{health}");
    // A good batch sent twice: events counted twice, the device once.
    for _ in 0..2 {
        let (st, v) = send(&app, &h, vec![good("launched")]).await;
        assert_eq!(
            (st, v["accepted"].as_i64()),
            (StatusCode::OK, Some(1)),
            "{v}"
        );
    }
    let start = Instant::now();
    loop {
        let (_, health) = app.admin_get(&format!("/apps/{}/health", app.app_id)).await;
        if let Some(row) = health["hours"].as_array().and_then(|a| a.first()) {
            assert_eq!(
                (row["events"].as_u64(), row["devices"].as_u64()),
                (Some(2), Some(1)),
                "{health}"
            );
            break;
        }
        assert!(start.elapsed() < WAIT, "never flushed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
