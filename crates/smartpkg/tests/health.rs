//! Release health with the real binary: a simulated fleet (`smartpkg device simulate`) halts a
//! broken staged release and lets a healthy one finish; a SIGKILLed instance loses at most
//! the reports of one flush interval and leaves what was stored readable.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{start_demo, Server};
use reqwest::Method;
use serde_json::{json, Value};

const FAST: [(&str, &str); 5] = [
    ("SMARTPKG_REPORT_FLUSH_INTERVAL_S", "1"),
    ("SMARTPKG_HEALTH_EVAL_INTERVAL_S", "1"),
    ("SMARTPKG_HEALTH_MIN_DEVICES", "100"),
    ("SMARTPKG_HEALTH_STEP_MIN_S", "0"),
    ("SMARTPKG_BUILD_DELAY_MS", "100"),
];

/// The demo's host key, secret and mini program, from the fleet's line it prints.
fn fleet_of(server: &Server) -> (String, String, String) {
    let line = server
        .lines
        .iter()
        .find(|l| l.starts_with("smartpkg device simulate"))
        .expect("the fleet's line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .expect("flag")
            .to_string()
    };
    (
        after("--host-key"),
        after("--host-secret"),
        after("--app-id"),
    )
}

/// Uploads, builds, submits and passes `version` (not released); its package id.
async fn passed(server: &Server, version: &str) -> i64 {
    assert_eq!(server.upload(version).await["errno"], 0);
    let v = server
        .wait_detail(&[("type", "3")], |v| {
            v["data"]["version"] == version && v["data"]["package_id"].is_i64()
        })
        .await;
    let id = v["data"]["package_id"].as_i64().expect("id");
    let sid = id.to_string();
    let s = server
        .call("submitaudit", &[("package_id", &sid), ("content", "c")])
        .await;
    assert_eq!(s["errno"], 0, "{s}");
    let a = server
        .admin(
            Method::POST,
            &format!("/packages/{id}/audit"),
            Some(json!({"result": "pass"})),
        )
        .await;
    assert_eq!(a["state"], "audit_passed", "{a}");
    id
}

fn simulate(
    server: &Server,
    fleet: &(String, String, String),
    devices: &str,
    rates: &[&str],
    rounds: &str,
) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smartpkg"));
    cmd.args(["device", "simulate", "--base-url", &server.base])
        .args([
            "--host-key",
            &fleet.0,
            "--host-secret",
            &fleet.1,
            "--app-id",
            &fleet.2,
        ])
        .args(["--devices", devices, "--rounds", rounds, "--every", "300ms"]);
    for r in rates {
        cmd.args(["--fail-rate", r]);
    }
    let out = cmd.output().expect("simulate runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn until(server: &Server, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let sid = id.to_string();
    let start = Instant::now();
    loop {
        let v = server.call("getdetail", &[("package_id", &sid)]).await;
        if done(&v["data"]) {
            return v["data"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_simulated_fleet_halts_a_broken_release_and_lets_a_healthy_one_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_demo(dir.path(), &FAST);
    let fleet = fleet_of(&server);
    server.release("1.0.0").await;
    let broken = passed(&server, "2.0.0").await;
    let sid = broken.to_string();
    let g = server
        .call(
            "grayrelease",
            &[
                ("package_id", &sid),
                ("gray_percentage", "50"),
                ("gray_steps", "50,100"),
                ("gray_auto", "1"),
            ],
        )
        .await;
    assert_eq!(g["errno"], 0, "{g}");
    // 2.0.0 crashes on a quarter of its devices: halted, and every device back on 1.0.0.
    simulate(&server, &fleet, "600", &["2.0.0=0.25", "1.0.0=0.005"], "3");
    let d = until(&server, broken, "halted", |d| d["gray_status"] == "halted").await;
    assert_eq!(d["gray_percentage"], 0, "{d}");
    // Abandoned; a fixed 2.0.1 at the old version's rate finishes its plan.
    let r = server
        .call("revertgrayrelease", &[("package_id", &sid)])
        .await;
    assert_eq!(r["errno"], 0, "{r}");
    let fixed = passed(&server, "2.0.1").await;
    let sfixed = fixed.to_string();
    let g = server
        .call(
            "grayrelease",
            &[
                ("package_id", &sfixed),
                ("gray_percentage", "50"),
                ("gray_steps", "50,100"),
                ("gray_auto", "1"),
            ],
        )
        .await;
    assert_eq!(g["errno"], 0, "{g}");
    simulate(&server, &fleet, "600", &[], "3");
    let d = until(&server, fixed, "finished", |d| {
        d["gray_status"] == "finished"
    })
    .await;
    assert_eq!(d["status"], 1, "online: {d}");
    server.stop();
}

async fn report(
    server: &Server,
    fleet: &(String, String, String),
    package_id: i64,
    devices: std::ops::Range<u32>,
) {
    let app_id: i64 = fleet.2.parse().expect("app id");
    let reports: Vec<Value> = devices
        .map(|d| json!({"device_id": format!("d-{d}"), "app_id": app_id, "package_id": package_id, "event": "launched"}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/runtime/v1/reports", server.base))
        .basic_auth(&fleet.0, Some(&fleet.1))
        .json(&json!({ "reports": reports }))
        .send()
        .await
        .expect("reports");
    assert_eq!(r.status(), 200);
}

/// Launch events and distinct devices stored for `package_id`.
async fn stored(server: &Server, fleet: &(String, String, String), package_id: i64) -> (u64, u64) {
    let h = server
        .admin(Method::GET, &format!("/apps/{}/health", fleet.2), None)
        .await;
    h["hours"]
        .as_array()
        .expect("hours")
        .iter()
        .filter(|r| r["package_id"] == package_id && r["event"] == "launched")
        .fold((0, 0), |(e, d), r| {
            (
                e + r["events"].as_u64().unwrap_or(0),
                d + r["devices"].as_u64().unwrap_or(0),
            )
        })
}

#[tokio::test]
async fn a_killed_instance_loses_at_most_one_interval_and_stored_figures_stay_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("SMARTPKG_REPORT_FLUSH_INTERVAL_S", "2")];
    let server = start_demo(dir.path(), &env);
    let fleet = fleet_of(&server);
    let v1 = server.release("1.0.0").await;
    report(&server, &fleet, v1, 0..300).await;
    // Flushed within an interval.
    let start = Instant::now();
    while stored(&server, &fleet, v1).await.0 < 300 {
        assert!(start.elapsed() < Duration::from_secs(10), "never flushed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sent, then killed before the next flush: at most this interval is lost.
    report(&server, &fleet, v1, 300..400).await;
    server.kill9();
    let server = start_demo(dir.path(), &env);
    let (events, devices) = stored(&server, &fleet, v1).await;
    assert!((300..=400).contains(&events), "{events}");
    assert!((294..=408).contains(&devices), "{devices}");
    // What was stored merges on: the same devices again add events, not devices.
    report(&server, &fleet, v1, 0..300).await;
    let start = Instant::now();
    loop {
        let (e, d) = stored(&server, &fleet, v1).await;
        if e == events + 300 {
            assert_eq!(d, devices, "the same devices counted once");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never flushed: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A graceful stop flushes what it holds.
    report(&server, &fleet, v1, 1000..1100).await;
    server.stop();
    let server = start_demo(dir.path(), &env);
    assert_eq!(stored(&server, &fleet, v1).await.0, events + 400);
    server.stop();
}
