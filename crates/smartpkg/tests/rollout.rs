//! `smartpkg rollout` against a real server: a fleet where some audits fail by a rule of the
//! automatic audit, the server restarts mid-run, and the rollout itself is killed and resumed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use smartpkg_server::config::AuditMode;
use smartpkg_testkit::sandbox::{Sandbox, AES_KEY, MSG_TOKEN};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smartpkg"));
    c.env("XDG_CONFIG_HOME", "/nonexistent-smartpkg-test")
        .env_remove("SPKG_TP_TOKEN");
    c
}

/// A sandbox whose audits decide themselves: pass after 100 ms, unless the mini program's
/// name is longer than 10 characters.
async fn auto_audit(tune: impl FnOnce(&mut smartpkg_server::Settings)) -> Sandbox {
    Sandbox::start_with(|s| {
        s.audit_mode = AuditMode::Auto;
        s.auto_audit_delay_ms = 100;
        s.auto_audit_max_name_chars = 10;
        tune(s);
    })
    .await
}

struct App {
    app_id: i64,
    access: String,
    refresh: String,
}

async fn apps(s: &Sandbox, n: usize, long_name: impl Fn(usize) -> bool) -> Vec<App> {
    let mut out = vec![];
    for i in 0..n {
        let name = if long_name(i) {
            format!("一个名字很长很长的小程序 {i}")
        } else {
            format!("shop {i}")
        };
        let (app_id, access, refresh) = s.new_app(&name).await;
        out.push(App {
            app_id,
            access,
            refresh,
        });
    }
    out
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A plan; every third mini program is given by its refresh token only.
fn plan(s: &Sandbox, apps: &[App], extra: &str) -> String {
    let mut p = format!(
        r#"base_url = "{base}"
template_id = {template}
version = "2.0.0"
description = "spring menu"
concurrency = 16
poll_max_ms = 200
retry_for_s = 60
ext_json = '{{"extEnable":true,"extAppid":{{{{app_id}}}},"ext":{{"shop":"{{{{shop}}}}"}}}}'
{extra}

[tp]
tp_token = "{tp}"
"#,
        base = s.base_url,
        template = s.template_id,
        tp = s.tp_token,
    );
    for (i, a) in apps.iter().enumerate() {
        let cred = if i % 3 == 2 {
            format!("refresh_token = \"{}\"", a.refresh)
        } else {
            format!("access_token = \"{}\"", a.access)
        };
        p.push_str(&format!(
            "\n[[apps]]\napp_id = {}\n{cred}\nvars = {{ shop = \"Shop \\\"{i}\\\"\" }}\n",
            a.app_id
        ));
    }
    p
}

/// Every package of the sandbox's third party, grouped by mini program.
async fn packages_by_app(s: &Sandbox) -> HashMap<i64, Vec<Value>> {
    let (st, body) = s
        .admin(
            reqwest::Method::GET,
            &format!("/packages?tp_id={}&limit=1000", s.tp_id),
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let mut by: HashMap<i64, Vec<Value>> = HashMap::new();
    for p in body["packages"].as_array().expect("packages") {
        by.entry(p["app_id"].as_i64().expect("app"))
            .or_default()
            .push(p.clone());
    }
    by
}

fn output(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn a_fleet_of_200_survives_a_server_restart_and_a_killed_rollout_with_the_right_report() {
    let s = auto_audit(|_| {}).await;
    // Every tenth one (not among the first five, the canaries) fails its audit by name.
    let fleet = apps(&s, 200, |i| i >= 5 && i % 10 == 7).await;
    let listen = free_port();
    s.set_event_url(&format!("http://127.0.0.1:{listen}/"))
        .await;
    let extra = format!(
        "release = \"canary\"\ncanaries = 5\n\n[events]\nlisten = \"127.0.0.1:{listen}\"\ntoken = \"{MSG_TOKEN}\"\naes_key = \"{AES_KEY}\"\nclient_id = \"{}\"\n",
        s.client_id
    );
    let dir = s.dir.path().join("fleet");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("spring.toml");
    std::fs::write(&plan_path, plan(&s, &fleet, &extra)).expect("plan");

    // The first run is killed (SIGKILL) once 60 uploads went through.
    let mut child = bin()
        .arg("rollout")
        .arg(&plan_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let killed = tokio::task::spawn_blocking(move || {
        let mut uploaded = 0;
        for line in BufReader::new(err).lines() {
            let line = line.unwrap_or_default();
            if line.contains("→ uploaded") {
                uploaded += 1;
            }
            if uploaded == 60 {
                let _ = child.kill();
                let _ = child.wait();
                return true;
            }
        }
        let _ = child.wait();
        false
    })
    .await
    .expect("join");
    assert!(killed, "the first run ended before 60 uploads");

    // The second run continues; the server restarts under it once it is under way.
    let mut child = bin()
        .arg("rollout")
        .arg(&plan_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let (under_way, started) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut all = vec![];
        for line in BufReader::new(err).lines() {
            all.push(line.unwrap_or_default());
            if all.len() == 20 {
                let _ = under_way.send(());
            }
        }
        all.join("\n")
    });
    tokio::task::spawn_blocking(move || started.recv().expect("the second run made progress"))
        .await
        .expect("join");
    s.restart(Duration::from_secs(2)).await;
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().expect("waits"))
        .await
        .expect("join");
    let stderr = lines.join().expect("stderr");
    assert!(
        stderr.contains("retrying after"),
        "no transient failure was met:\n{stderr}\n{}",
        output(&o)
    );
    // Some mini programs missed the goal (their audits failed): exit status 1.
    assert_eq!(o.status.code(), Some(1), "{}", output(&o));

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("spring.report.json")).expect("report"),
    )
    .expect("report JSON");
    assert_eq!(report["total"], 200);
    assert_eq!(report["reached_goal"], 180, "{}", report["counts"]);
    assert_eq!(report["counts"]["online"], 180);
    assert_eq!(report["counts"]["audit_failed"], 20);
    for (i, (a, r)) in fleet
        .iter()
        .zip(report["apps"].as_array().expect("apps"))
        .enumerate()
    {
        assert_eq!(r["app_id"], a.app_id);
        if i >= 5 && i % 10 == 7 {
            assert_eq!(r["state"], "audit_failed", "{r}");
            assert!(
                r["reason"].as_str().unwrap_or("").contains("名称过长"),
                "{r}"
            );
        } else {
            assert_eq!(r["state"], "online", "{r}");
            assert!(r["package_id"].is_i64(), "{r}");
        }
    }

    // No mini program was uploaded twice, and the platform agrees with the report.
    let by_app = packages_by_app(&s).await;
    for (a, r) in fleet.iter().zip(report["apps"].as_array().expect("apps")) {
        let pkgs = &by_app[&a.app_id];
        assert_eq!(
            pkgs.len(),
            1,
            "app {} has {} packages: {pkgs:?}",
            a.app_id,
            pkgs.len()
        );
        assert_eq!(pkgs[0]["package_id"], r["package_id"]);
        let want = if r["state"] == "online" { 1 } else { 5 };
        assert_eq!(pkgs[0]["status"], want, "{}", pkgs[0]);
        // The rendered ext_json carried the mini program's own variables.
        let (_, detail) = s
            .admin(
                reqwest::Method::GET,
                &format!("/packages/{}", pkgs[0]["package_id"]),
                None,
            )
            .await;
        let ext: Value =
            serde_json::from_str(detail["ext_json"].as_str().expect("ext_json")).expect("json");
        assert_eq!(ext["extAppid"], a.app_id);
        assert!(ext["ext"]["shop"]
            .as_str()
            .expect("shop")
            .starts_with("Shop \""));
    }

    // The check above can fail: a second upload of the same version shows as two packages.
    let c = smartpkg_client::Client::new(&s.base_url).expect("client");
    for _ in 0..2 {
        c.upload(
            &s.app_token,
            &smartpkg_client::types::UploadRequest {
                template_id: s.template_id,
                ext_json: "{}".into(),
                user_version: "2.0.0".into(),
                user_desc: "d".into(),
                test_account: None,
                test_password: None,
            },
        )
        .await
        .expect("upload");
    }
    assert_eq!(packages_by_app(&s).await[&s.app_id].len(), 2);

    // Running it again changes nothing and says so.
    let plan_arg = plan_path.clone();
    let again = tokio::task::spawn_blocking(move || {
        bin().arg("rollout").arg(&plan_arg).output().expect("runs")
    })
    .await
    .expect("join");
    assert_eq!(again.status.code(), Some(1), "{}", output(&again));
    let total: usize = packages_by_app(&s).await.values().map(Vec::len).sum();
    assert_eq!(total, 200 + 2);
    s.stop().await;
}

async fn rollout_json(plan_path: &std::path::Path) -> (Output, Value) {
    let p = plan_path.to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        bin()
            .arg("rollout")
            .arg(&p)
            .arg("--json")
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let report = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {}", output(&o)));
    (o, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_canary_holds_the_rest() {
    let s = auto_audit(|_| {}).await;
    let fleet = apps(&s, 6, |i| i == 0).await;
    let dir = s.dir.path().join("c");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("p.toml");
    std::fs::write(
        &plan_path,
        plan(&s, &fleet, "release = \"canary\"\ncanaries = 2"),
    )
    .expect("plan");
    let (o, report) = rollout_json(&plan_path).await;
    assert_eq!(o.status.code(), Some(1), "{}", output(&o));
    // Canary 0 failed; canary 1 went online; the other four passed and were held.
    assert_eq!(report["counts"]["audit_failed"], 1, "{report}");
    assert_eq!(report["counts"]["online"], 1, "{report}");
    assert_eq!(report["counts"]["held"], 4, "{report}");
    assert_eq!(report["apps"][1]["state"], "online", "{report}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_audit_quota_stops_cleanly_and_says_when_it_renews() {
    let s = auto_audit(|st| st.audit_quota_per_week = 4).await;
    let fleet = apps(&s, 6, |_| false).await;
    let dir = s.dir.path().join("q");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("p.toml");
    std::fs::write(
        &plan_path,
        plan(&s, &fleet, "release = \"all\"\non_quota = \"stop\""),
    )
    .expect("plan");
    let (o, report) = rollout_json(&plan_path).await;
    // Four audits fit the week's quota; the other two wait for it to renew.
    assert_eq!(o.status.code(), Some(3), "{}", output(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("renews at"), "{stderr}");
    assert_eq!(report["counts"]["online"], 4, "{report}");
    assert_eq!(report["counts"]["waiting_quota"], 2, "{report}");
    assert!(report["quota_renews_at"]
        .as_str()
        .expect("renewal")
        .ends_with("+08:00"));
    // The two waiting ones were built and never submitted: nothing was lost.
    let waiting: Vec<&Value> = report["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .filter(|a| a["state"] == "waiting_quota")
        .collect();
    assert!(waiting
        .iter()
        .all(|a| a["package_id"].is_i64() && a["errno"] == 69013));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_renders_every_ext_json_and_calls_nothing_and_a_bad_plan_lists_every_problem() {
    let s = Sandbox::start().await;
    let fleet = apps(&s, 3, |_| false).await;
    let dir = s.dir.path().join("d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("p.toml");
    std::fs::write(&plan_path, plan(&s, &fleet, "release = \"all\"")).expect("plan");
    let o = bin()
        .arg("rollout")
        .arg(&plan_path)
        .args(["--dry-run", "--json"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", output(&o));
    let rendered: Value = serde_json::from_slice(&o.stdout).expect("json");
    for (a, r) in fleet.iter().zip(rendered.as_array().expect("list")) {
        let ext: Value = serde_json::from_str(r["ext_json"].as_str().expect("text")).expect("json");
        assert_eq!(ext["extAppid"], a.app_id);
    }
    assert!(
        !dir.join("p.state.sqlite").exists(),
        "a dry run keeps no state"
    );
    assert!(
        packages_by_app(&s).await.is_empty(),
        "a dry run uploads nothing"
    );

    let bad = plan(&s, &fleet, "release = \"canary\"")
        .replace("concurrency = 16", "concurrency = 0")
        .replace("vars = { shop = \"Shop \\\"1\\\"\" }", "");
    std::fs::write(&plan_path, bad).expect("plan");
    let o = bin()
        .arg("rollout")
        .arg(&plan_path)
        .arg("--dry-run")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "concurrency is 1 to 256",
        "canaries between 1",
        "do not set",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    let _ = json!(null);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_token_belongs_to_another_mini_program_is_refused_before_anything_is_written(
) {
    let s = auto_audit(|_| {}).await;
    // Entry 0 is right; entry 1 carries mini program 0's access token, entry 2 mini program
    // 0's refresh token (`plan` gives every third entry by its refresh token).
    let fleet = apps(&s, 3, |_| false).await;
    let mut swapped = Vec::new();
    for (i, a) in fleet.iter().enumerate() {
        swapped.push(App {
            app_id: a.app_id,
            access: if i == 1 {
                fleet[0].access.clone()
            } else {
                a.access.clone()
            },
            refresh: if i == 2 {
                fleet[0].refresh.clone()
            } else {
                a.refresh.clone()
            },
        });
    }
    let dir = s.dir.path().join("w");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("p.toml");
    std::fs::write(&plan_path, plan(&s, &swapped, "release = \"all\"")).expect("plan");
    let (o, report) = rollout_json(&plan_path).await;
    assert_eq!(o.status.code(), Some(1), "{}", output(&o));
    let rows = report["apps"].as_array().expect("apps");
    assert_eq!(rows[0]["state"], "online", "{report}");
    assert_eq!(rows[0]["token_app_id"], fleet[0].app_id, "{report}");
    for r in &rows[1..] {
        assert_eq!(r["state"], "error", "{r}");
        assert_eq!(r["token_app_id"], fleet[0].app_id, "{r}");
        assert!(r["package_id"].is_null(), "{r}");
        let reason = r["reason"].as_str().expect("reason");
        assert!(
            reason.contains(&format!("belongs to mini program {}", fleet[0].app_id)),
            "{reason}"
        );
    }
    // The platform agrees: mini program 0 has its own one package (with its own ext_json),
    // the other two have none.
    let by_app = packages_by_app(&s).await;
    assert_eq!(by_app[&fleet[0].app_id].len(), 1, "{by_app:?}");
    assert!(!by_app.contains_key(&fleet[1].app_id), "{by_app:?}");
    assert!(!by_app.contains_key(&fleet[2].app_id), "{by_app:?}");
    let (_, detail) = s
        .admin(
            reqwest::Method::GET,
            &format!("/packages/{}", by_app[&fleet[0].app_id][0]["package_id"]),
            None,
        )
        .await;
    let ext: Value =
        serde_json::from_str(detail["ext_json"].as_str().expect("ext_json")).expect("json");
    assert_eq!(ext["extAppid"], fleet[0].app_id);

    // The state file says the same; once the plan gives entry 1 its own token, the next run
    // starts it afresh, and entry 2 stays refused.
    let fixed: Vec<App> = swapped
        .iter()
        .enumerate()
        .map(|(i, a)| App {
            app_id: a.app_id,
            access: if i == 1 {
                fleet[1].access.clone()
            } else {
                a.access.clone()
            },
            refresh: a.refresh.clone(),
        })
        .collect();
    std::fs::write(&plan_path, plan(&s, &fixed, "release = \"all\"")).expect("plan");
    let (o, report) = rollout_json(&plan_path).await;
    assert_eq!(o.status.code(), Some(1), "{}", output(&o));
    let rows = report["apps"].as_array().expect("apps");
    assert_eq!(rows[1]["state"], "online", "{report}");
    assert_eq!(rows[1]["token_app_id"], fleet[1].app_id, "{report}");
    assert_eq!(rows[2]["state"], "error", "{report}");
    assert_eq!(packages_by_app(&s).await[&fleet[1].app_id].len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_escape_sequences_in_plan_values_escaped_never_raw() {
    let s = Sandbox::start().await;
    let fleet = apps(&s, 1, |_| false).await;
    let dir = s.dir.path().join("e");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("p.toml");
    // An escape in the template (JSON-escaped already), and a C1 CSI and a right-to-left
    // override in a value, which JSON leaves as they are.
    let p = plan(&s, &fleet, "release = \"all\"")
        .replace(
            r#""extEnable":true"#,
            r#""extEnable":true,"note":"\u001b[2J""#,
        )
        .replace(
            "vars = { shop = \"Shop \\\"0\\\"\" }",
            "vars = { shop = \"Shop \\u009b31m \\u202Etxt\" }",
        );
    assert!(p.contains("\\u202E"), "{p}");
    std::fs::write(&plan_path, p).expect("plan");
    let raw = ['\u{1b}', '\u{9b}', '\u{202e}'];
    let table = bin()
        .arg("rollout")
        .arg(&plan_path)
        .arg("--dry-run")
        .output()
        .expect("runs");
    assert!(table.status.success(), "{}", output(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(!text.contains(raw), "raw escape on the terminal: {text:?}");
    assert!(
        text.contains(r"\u001b[2J") && text.contains(r"\u{9b}31m") && text.contains(r"\u{202e}"),
        "{text}"
    );
    let json = bin()
        .arg("rollout")
        .arg(&plan_path)
        .args(["--dry-run", "--json"])
        .output()
        .expect("runs");
    assert!(json.status.success(), "{}", output(&json));
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(!text.contains(raw), "raw escape on the terminal: {text:?}");
    // Still the same values once parsed.
    let rendered: Value = serde_json::from_str(&text).expect("json");
    let ext: Value =
        serde_json::from_str(rendered[0]["ext_json"].as_str().expect("ext")).expect("ext json");
    assert_eq!(ext["note"], "\u{1b}[2J");
    assert_eq!(ext["ext"]["shop"], "Shop \u{9b}31m \u{202e}txt");
    s.stop().await;
}

/// A WeChat-dialect mini program of a sandbox: its wx appid and refresh token.
struct WxApp {
    appid: String,
    refresh: String,
}

async fn wx_apps(s: &Sandbox, n: usize) -> Vec<WxApp> {
    let mut out = vec![];
    for i in 0..n {
        let (app_id, _, refresh) = s.new_app(&format!("wx shop {i}")).await;
        let (_, app) = s
            .admin(reqwest::Method::GET, &format!("/apps/{app_id}"), None)
            .await;
        out.push(WxApp {
            appid: app["wx_appid"].as_str().expect("wx_appid").to_string(),
            refresh,
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn a_rollout_across_baidu_and_wechat_killed_and_resumed_releases_every_mini_program_once() {
    // Two platforms, one per dialect, each a smartpkg instance of its own.
    let baidu = auto_audit(|_| {}).await;
    let wx = auto_audit(|_| {}).await;
    let fleet = apps(&baidu, 100, |_| false).await;
    let wx_fleet = wx_apps(&wx, 100).await;
    let (_, tp) = wx
        .admin(reqwest::Method::GET, &format!("/tps/{}", wx.tp_id), None)
        .await;
    let component_appid = tp["component_appid"].as_str().expect("component_appid");
    let mut text = plan(&baidu, &fleet, "release = \"canary\"\ncanaries = 3\n");
    text.push_str(&format!(
        "\n[[platforms]]\nname = \"wechat\"\ndialect = \"wechat\"\nbase_url = \"{}\"\ntemplate_id = {}\ncomponent_appid = \"{component_appid}\"\ncomponent_token = \"{}\"\ncanaries = 2\n",
        wx.base_url, wx.template_id, wx.tp_token
    ));
    for (i, a) in wx_fleet.iter().enumerate() {
        text.push_str(&format!(
            "\n[[platforms.apps]]\nappid = \"{}\"\nrefresh_token = \"{}\"\nvars = {{ shop = \"WeChat shop {i}\" }}\n",
            a.appid, a.refresh
        ));
    }
    let dir = baidu.dir.path().join("both");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("both.toml");
    std::fs::write(&plan_path, text).expect("plan");

    // The first run is killed (SIGKILL) once 80 commits and uploads went through.
    let mut child = bin()
        .arg("rollout")
        .arg(&plan_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let killed = tokio::task::spawn_blocking(move || {
        let (mut baidu_up, mut wx_up) = (0, 0);
        for line in BufReader::new(err).lines() {
            let line = line.unwrap_or_default();
            if line.contains("→ uploaded") {
                if line.starts_with("wechat ") {
                    wx_up += 1;
                } else {
                    baidu_up += 1;
                }
            }
            if baidu_up + wx_up >= 80 && wx_up > 0 && baidu_up > 0 {
                let _ = child.kill();
                let _ = child.wait();
                return true;
            }
        }
        let _ = child.wait();
        false
    })
    .await
    .expect("join");
    assert!(
        killed,
        "the first run ended before 80 uploads on both platforms"
    );

    let p = plan_path.clone();
    let o =
        tokio::task::spawn_blocking(move || bin().arg("rollout").arg(&p).output().expect("runs"))
            .await
            .expect("join");
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("both.report.json")).expect("report"),
    )
    .expect("report JSON");
    assert_eq!(
        (report["total"].as_u64(), report["reached_goal"].as_u64()),
        (Some(200), Some(200)),
        "{}",
        report["counts"]
    );
    assert_eq!(report["counts"]["online"], 200);
    let wx_report = &report["platforms"][0];
    assert_eq!(wx_report["name"], "wechat");
    assert_eq!(wx_report["reached_goal"], 100);
    for (a, r) in wx_fleet
        .iter()
        .zip(wx_report["apps"].as_array().expect("apps"))
    {
        assert_eq!(r["appid"], a.appid.as_str());
        assert_eq!(r["state"], "online", "{r}");
        assert!(r["auditid"].is_i64(), "{r}");
    }

    // Each platform released every mini program exactly once: one online package each,
    // nothing ever replaced online (a second release would have left a former version), and
    // no audit submitted twice.
    for (s, n) in [(&baidu, 100), (&wx, 100)] {
        let by_app = packages_by_app(s).await;
        let mut released = 0;
        for pkgs in by_app.values().filter(|p| !p.is_empty()) {
            let online = pkgs.iter().filter(|p| p["status"] == 1).count();
            assert_eq!(online, 1, "{pkgs:?}");
            assert!(
                pkgs.iter().all(|p| p["state"] != "history"),
                "released twice: {pkgs:?}"
            );
            released += 1;
        }
        // The sandbox's own mini program has nothing; every other one was released once.
        assert_eq!(released, n);
    }
    // The WeChat mini programs' ext.json named them by their wx appid.
    let by_app = packages_by_app(&wx).await;
    let any = by_app
        .values()
        .flatten()
        .find(|p| p["status"] == 1)
        .expect("an online package");
    let (_, detail) = wx
        .admin(
            reqwest::Method::GET,
            &format!("/packages/{}", any["package_id"]),
            None,
        )
        .await;
    let ext: Value =
        serde_json::from_str(detail["ext_json"].as_str().expect("ext_json")).expect("json");
    assert!(
        ext["extAppid"]
            .as_str()
            .is_some_and(|a| a.starts_with("wx")),
        "{ext}"
    );
    baidu.stop().await;
    wx.stop().await;
}

/// Devices of every mini program in `apps` reporting on its staged package until `stop`:
/// 60 launching devices each round, half of them crashing on the mini programs in `broken`.
fn reporting_fleet(
    s: &Sandbox,
    apps: Vec<i64>,
    broken: Vec<i64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    host: (String, String),
) -> tokio::task::JoinHandle<()> {
    let (base, admin) = (s.base_url.clone(), s.admin_token.clone());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut round = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            round += 1;
            for app in &apps {
                let h: Value = match http
                    .get(format!("{base}/admin/v1/apps/{app}/health"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => continue,
                };
                let Some(package) = h["staged"]["package_id"].as_i64() else {
                    continue;
                };
                let mut reports = vec![];
                for d in 0..60 {
                    let device = format!("{app}-{round}-{d}");
                    reports.push(json!({"device_id": device, "app_id": app, "package_id": package, "event": "launched"}));
                    if broken.contains(app) && d % 2 == 0 {
                        reports.push(json!({"device_id": device, "app_id": app, "package_id": package, "event": "crashed"}));
                    }
                }
                let _ = http
                    .post(format!("{base}/runtime/v1/reports"))
                    .basic_auth(&host.0, Some(&host.1))
                    .json(&json!({ "reports": reports }))
                    .send()
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_waits_for_each_plan_and_stops_where_one_halts() {
    let s = auto_audit(|st| {
        st.report_flush_interval_s = 1;
        st.health_eval_interval_s = 1;
        st.health_min_devices = 50;
        st.health_step_min_s = 0;
    })
    .await;
    let fleet = apps(&s, 3, |_| false).await;
    let (st, host) = s
        .admin(
            reqwest::Method::POST,
            "/host-apps",
            Some(json!({"name": "phones"})),
        )
        .await;
    assert_eq!(st, 201, "{host}");
    let host = (
        host["host_key"].as_str().expect("key").to_string(),
        host["host_secret"].as_str().expect("secret").to_string(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ids: Vec<i64> = fleet.iter().map(|a| a.app_id).collect();
    let reporter = reporting_fleet(&s, ids.clone(), vec![ids[1]], stop.clone(), host);
    let dir = s.dir.path().join("staged");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan_path = dir.join("p.toml");
    std::fs::write(
        &plan_path,
        plan(
            &s,
            &fleet,
            "release = \"canary\"\ncanaries = 1\n\n[staged]\nsteps = \"20,100\"",
        ),
    )
    .expect("plan");
    let (o, report) = rollout_json(&plan_path).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reporter.await.expect("reporter");
    // The canary's plan finished before the others were staged; the broken one halted and
    // stopped there; the last finished too.
    assert_eq!(o.status.code(), Some(1), "{}", output(&o));
    assert_eq!(report["counts"]["online"], 2, "{report}");
    assert_eq!(report["counts"]["halted"], 1, "{report}");
    assert_eq!(report["apps"][1]["state"], "halted", "{report}");
    let by_app = packages_by_app(&s).await;
    let staged_of = |app: i64| {
        by_app[&app]
            .iter()
            .find(|p| p["version"] == "2.0.0")
            .cloned()
            .expect("the rollout's package")
    };
    assert_eq!(staged_of(ids[0])["gray_status"], "finished");
    assert_eq!(staged_of(ids[2])["gray_status"], "finished");
    assert_eq!(staged_of(ids[1])["gray_status"], "halted");
    s.stop().await;
}
