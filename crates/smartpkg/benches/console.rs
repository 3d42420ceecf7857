//! The console's pages at scale: the audit queue with 10,000 waiting packages and the
//! mini-program search over 100,000 mini programs, p99 of 200 requests each (goal ≤ 50 ms at
//! the server; measured on loopback, so the figure includes the client's side too). The
//! trivial handler's p99 in the same run is printed beside them as the floor of this machine.
//!
//! `cargo bench -p smartpkg --bench console`

mod common;

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Client;
use serde_json::json;
use smartpkg_server::{Running, Settings};

use common::Res;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADMIN: &str = "bench-admin-token-0123456789";
const APPS: i64 = 100_000;
const WAITING: i64 = 10_000;
const REQUESTS: usize = 200;
const GOAL_MS: f64 = 50.0;
const PW: &str = "correct horse battery";

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        admin_token: Some(ADMIN.into()),
        // The harness's test settings underneath (tests and benchmarks start alike).
        ..smartpkg_testkit::platform::test_settings(dir)
    }
}

/// 100,000 mini programs of one third party; the first 10,000 each with a package waiting
/// for its audit (submitted one second apart), in one transaction.
fn seed(db: &std::path::Path, tp_id: i64, template_id: i64) -> Res<()> {
    let mut conn = rusqlite::Connection::open(db)?;
    let tx = conn.transaction()?;
    for app_id in 1..=APPS {
        tx.execute(
            "INSERT INTO apps (app_id, app_key, name, name_audited, category_audited, authenticity_certified, tp_id, created_at, wx_appid) VALUES (?1, ?2, ?3, 1, 1, 1, ?4, 0, ?5)",
            rusqlite::params![app_id, format!("key{app_id}"), format!("bench shop {app_id}"), tp_id, format!("wx{app_id:016x}")],
        )?;
        if app_id <= WAITING {
            tx.execute(
                "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, version_desc, ext_json, built_ext_json, direct_commit, test_account, commit_time, updated_at) \
                 VALUES (?1, ?1, ?2, ?3, 'auditing', '1.0.0', 'seeded', '{}', '{}', 0, 'tester', 0, ?4)",
                rusqlite::params![app_id, tp_id, template_id, 1_700_000_000_000i64 + app_id * 1000],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

async fn admin(
    c: &Client,
    base: &str,
    path: &str,
    body: serde_json::Value,
) -> Res<serde_json::Value> {
    Ok(c.post(format!("{base}/admin/v1{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await?
        .json()
        .await?)
}

fn cookie_of(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().find_map(|v| {
        let s = v.to_str().ok()?;
        let (kv, _) = s.split_once(';')?;
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

async fn sign_in(c: &Client, base: &str) -> Res<String> {
    let r = c.get(format!("{base}/console/login")).send().await?;
    let pre = cookie_of(&r, "spkg_pre").ok_or("no pre-session cookie")?;
    let html = r.text().await?;
    let at = html.find("name=\"csrf\" value=\"").ok_or("no csrf")? + 19;
    let csrf = &html[at..at + 64];
    let r = c
        .post(format!("{base}/console/login"))
        .header("cookie", format!("spkg_pre={pre}"))
        .form(&[
            ("csrf", csrf),
            ("name", "olga"),
            ("password", PW),
            ("next", "/console"),
        ])
        .send()
        .await?;
    let session = cookie_of(&r, "spkg_session").ok_or("sign-in failed")?;
    Ok(format!("spkg_session={session}"))
}

/// Latencies in ms of `REQUESTS` sequential GETs of URLs from `url`, each checked by `ok`.
async fn measure(
    c: &Client,
    cookie: &str,
    mut url: impl FnMut() -> String,
    ok: impl Fn(&str) -> bool,
) -> Res<Vec<f64>> {
    let mut out = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS + 20 {
        let u = url();
        let start = Instant::now();
        let r = c.get(&u).header("cookie", cookie).send().await?;
        let status = r.status();
        let body = r.text().await?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() || !ok(&body) {
            return Err(format!("{u}: HTTP {status}, unexpected page").into());
        }
        // The first twenty warm connections and caches up; they are not counted.
        if i >= 20 {
            out.push(ms);
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(name: &str, sorted: &[f64], goal: Option<f64>) {
    let p99 = pct(sorted, 0.99);
    let verdict = match goal {
        Some(g) if p99 <= g => format!(" (goal ≤ {g} ms) met"),
        Some(g) => format!(" (goal ≤ {g} ms) NOT met"),
        None => String::new(),
    };
    println!(
        "{name:<44} p50 {:>6.2} ms  p99 {:>6.2} ms{verdict}",
        pct(sorted, 0.5),
        p99
    );
}

#[tokio::main]
async fn main() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let running: Running = smartpkg_server::start(settings(dir.path())).await?;
    let base = format!("http://{}", running.addr);
    let c = Client::new();
    let tp = admin(&c, &base, "/tps", json!({"name": "bench tp"})).await?;
    let tp_id = tp["tp_id"].as_i64().ok_or("tp_id")?;
    let zip = smartpkg_core::archive::sample_template(&["pages/index/index"])?;
    let t: serde_json::Value = c
        .post(format!(
            "{base}/admin/v1/tps/{tp_id}/templates?user_version=1.0.0&user_desc=b"
        ))
        .bearer_auth(ADMIN)
        .header("content-type", "application/zip")
        .body(zip)
        .send()
        .await?
        .json()
        .await?;
    let template_id = t["template_id"].as_i64().ok_or("template_id")?;
    running.stop().await;
    let seeding = Instant::now();
    seed(&dir.path().join("smartpkg.db"), tp_id, template_id)?;
    println!(
        "seeded {APPS} mini programs, {WAITING} waiting audits in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let running = smartpkg_server::start(settings(dir.path())).await?;
    let base = format!("http://{}", running.addr);
    // Redirects are not followed: the sign-in's session cookie comes with its 303.
    let c = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    admin(
        &c,
        &base,
        "/accounts",
        json!({"name": "olga", "role": "operator", "password": PW}),
    )
    .await?;
    let cookie = sign_in(&c, &base).await?;

    let trivial = measure(&c, "", || format!("{base}/healthz"), |b| b == "ok").await?;
    report("trivial handler (/healthz)", &trivial, None);
    let pages = WAITING / 50;
    let queue = measure(
        &c,
        &cookie,
        || {
            format!(
                "{base}/console/queue?page={}",
                rand::thread_rng().gen_range(1..=pages)
            )
        },
        |b| b.contains("10000 package(s) waiting"),
    )
    .await?;
    report(
        "audit queue, 10,000 waiting (random page)",
        &queue,
        Some(GOAL_MS),
    );
    let first = measure(
        &c,
        &cookie,
        || format!("{base}/console/queue"),
        |b| b.contains("#1<"),
    )
    .await?;
    report("audit queue, first page", &first, Some(GOAL_MS));
    let search = measure(
        &c,
        &cookie,
        || {
            format!(
                "{base}/console/apps?q=shop+{}",
                rand::thread_rng().gen_range(1..=APPS)
            )
        },
        |b| b.contains("bench shop"),
    )
    .await?;
    report(
        "search over 100,000 mini programs (by name)",
        &search,
        Some(GOAL_MS),
    );
    let listing = measure(
        &c,
        &cookie,
        || {
            format!(
                "{base}/console/apps?page={}",
                rand::thread_rng().gen_range(1..=100)
            )
        },
        |b| b.contains("bench shop"),
    )
    .await?;
    report(
        "mini programs, newest first (random page)",
        &listing,
        Some(GOAL_MS),
    );
    running.stop().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
