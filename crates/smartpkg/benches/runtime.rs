//! `cargo bench -p smartpkg --bench runtime`: the runtime channel, the path millions of
//! devices call. Everything is a ratio against a baseline of the same run (these machines are
//! noisy), on 127.0.0.1, with bounded loops.
//!
//! 1. Update checks per second at 64 connections — each a device holding 10 mini programs out
//!    of 10,000 — ÷ a trivial handler (`/healthz`) on the same server stack (goal ≥ 0.7):
//!    the median of nine rounds' ratios, each round measuring all three loads back to back
//!    (in an order that turns from round to round).
//! 2. The single-app form answering 304 (the device already has the answer) ÷ the same
//!    trivial handler (goal ≥ 0.9).
//! 3. The memory that 10,000 mini programs take in the update-check cache (goal ≤ 8 MiB).
//! 4. A 5 MB archive downloaded over and over: MB/s (goal ≥ 500) and the process's resident
//!    memory before and after 1 GB of downloads (flat).
//! 5. Device reports (docs/release-health.md): batches of 100 events at 64 connections ÷ the
//!    trivial handler (goal ≥ 0.5, so ≥ 50× its event rate), rounds as in 1.
//! 6. Update checks while reports flow (16 more connections posting batches): their ratio to
//!    the trivial handler under the same reports, beside [1]'s (goal: unchanged).
//! 7. The memory of report aggregates for 10,000 packages: one flush interval's in this
//!    process, filled as a busy fleet fills it, and filled adversarially to its budget (goal
//!    ≤ 64 MiB resident); and what 30 days of hourly aggregates take in the store.
//!
//! `SPKG_BENCH_ONLY=reports` runs 5–7 alone (with the setup they need).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use rand::Rng;
use reqwest::header::HeaderValue;
use reqwest::{Client, Url};
use serde_json::{json, Value};
use smartpkg_server::{Running, Settings};

mod common;
use common::{big_template, contains, seed_apps, Ratios, Res};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADMIN: &str = "bench-admin-token-0123456789";
const APPS: usize = 10_000;
const HELD: usize = 10;
const CONNECTIONS: usize = 64;
const LOAD_SECONDS: u64 = 2;
const ROUNDS: usize = 9;
const ETAG_APPS: usize = 2_000;

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        admin_token: Some(ADMIN.into()),
        build_delay_ms: 0,
        rollback_delay_ms: 0,
        app_writes_per_minute: 0,
        tp_writes_per_minute: 0,
        max_template_ratio: 1000,
        // The load generator is one address standing for many clients.
        max_connections_per_client: 4096,
        // SPKG_BENCH_TTL_MS measures another cache lifetime than the default.
        runtime_cache_ttl_ms: std::env::var("SPKG_BENCH_TTL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Settings::default().runtime_cache_ttl_ms),
        // The harness's test settings underneath (tests and benchmarks start alike).
        ..smartpkg_testkit::platform::test_settings(dir)
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Bench {
    base: String,
    client: Client,
    key: String,
    secret: String,
    /// Written once, as a device keeps it, and every URL parsed once: the client's own work
    /// stays small, as for the trivial handler (reqwest parses a URL given as text on every
    /// request, which is the client's cost, not the server's).
    authorization: HeaderValue,
    healthz: Url,
    check_url: Url,
    apps: Vec<i64>,
    /// Update-check bodies: a random device holding 10 random mini programs each.
    bodies: Vec<bytes::Bytes>,
    /// (the single-app URL of device "etag-device", the ETag of its answer).
    etags: Vec<(Url, HeaderValue)>,
    reports_url: Url,
    /// Report batches of [`REPORTS_PER_BATCH`] events, written before the load.
    report_bodies: Vec<bytes::Bytes>,
}

/// Events per report batch in [5] and [6].
const REPORTS_PER_BATCH: usize = 100;

#[derive(Clone, Copy)]
enum Kind {
    Trivial,
    Check,
    NotModified,
    Reports,
}

async fn once(b: &Bench, kind: Kind) -> bool {
    // Drawn before any await: the generator is not Send.
    let (body_pick, etag_pick) = {
        let mut rng = rand::thread_rng();
        let etag_pick = if b.etags.is_empty() {
            0
        } else {
            rng.gen_range(0..b.etags.len())
        };
        let body_pick = match kind {
            Kind::Reports => rng.gen_range(0..b.report_bodies.len()),
            _ => rng.gen_range(0..b.bodies.len()),
        };
        (body_pick, etag_pick)
    };
    match kind {
        Kind::Trivial => match b.client.get(b.healthz.clone()).send().await {
            Ok(r) => r.bytes().await.is_ok_and(|x| &x[..] == b"ok"),
            Err(_) => false,
        },
        Kind::Check => {
            match b
                .client
                .post(b.check_url.clone())
                .header("authorization", &b.authorization)
                .header("content-type", "application/json")
                .body(b.bodies[body_pick].clone())
                .send()
                .await
            {
                // Every one of the ten must be told to update with a package: the answer is
                // really computed (the bodies were written before the load, so the client's
                // own work stays small, as for the trivial handler).
                Ok(r) => r.bytes().await.is_ok_and(|x| {
                    memchr::memmem::find_iter(&x, br#""status":"update""#).count() == HELD
                        && memchr::memmem::find_iter(&x, br#""sha256":""#).count() == HELD
                }),
                Err(_) => false,
            }
        }
        Kind::Reports => {
            match b
                .client
                .post(b.reports_url.clone())
                .header("authorization", &b.authorization)
                .header("content-type", "application/json")
                .body(b.report_bodies[body_pick].clone())
                .send()
                .await
            {
                // Every event of the batch accepted: counted, not just parsed.
                Ok(r) => r
                    .bytes()
                    .await
                    .is_ok_and(|x| contains(&x, br#""accepted":100,"ignored":0"#)),
                Err(_) => false,
            }
        }
        Kind::NotModified => {
            let (url, etag) = &b.etags[etag_pick];
            match b
                .client
                .get(url.clone())
                .header("authorization", &b.authorization)
                .header("if-none-match", etag)
                .send()
                .await
            {
                Ok(r) => r.status() == 304 && r.bytes().await.is_ok_and(|x| x.is_empty()),
                Err(_) => false,
            }
        }
    }
}

/// Requests per second of one kind over `LOAD_SECONDS` from `CONNECTIONS` callers.
async fn load(b: &Arc<Bench>, kind: Kind) -> Res<common::Load> {
    let b = b.clone();
    common::measure(CONNECTIONS, LOAD_SECONDS, move || {
        let b = b.clone();
        async move { once(&b, kind).await }
    })
    .await
}

async fn admin(client: &Client, base: &str, path: &str, body: Value) -> Res<Value> {
    Ok(client
        .post(format!("{base}/admin/v1{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await?
        .json()
        .await?)
}

async fn template(client: &Client, base: &str, tp_id: i64, zip: Vec<u8>) -> Res<i64> {
    let v: Value = client
        .post(format!(
            "{base}/admin/v1/tps/{tp_id}/templates?user_version=1&user_desc=bench"
        ))
        .bearer_auth(ADMIN)
        .header("content-type", "application/zip")
        .body(zip)
        .send()
        .await?
        .json()
        .await?;
    v["template_id"]
        .as_i64()
        .ok_or_else(|| format!("template upload failed: {v}").into())
}

async fn run() -> Res<()> {
    let dir = tempfile::tempdir_in(std::env::var("SPKG_BENCH_DIR").unwrap_or_else(|_| ".".into()))?;
    let client = Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;

    // --- setup: 10,000 mini programs with an online package each, one with a 5 MB one ---
    let server = smartpkg_server::start(settings(dir.path())).await?;
    let base = format!("http://{}", server.addr);
    let tp = admin(&client, &base, "/tps", json!({"name": "bench"})).await?;
    let tp_id = tp["tp_id"].as_i64().ok_or("tp")?;
    let small = template(
        &client,
        &base,
        tp_id,
        smartpkg_core::archive::sample_template(&["pages/index/index"])?,
    )
    .await?;
    let big = template(&client, &base, tp_id, big_template()?).await?;
    server.stop().await;
    let db = dir.path().join("smartpkg.db");
    let apps: Vec<i64> = seed_apps(&db, tp_id, small, APPS)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let big_app = seed_apps(&db, tp_id, big, 1)?[0].0;

    let server: Running = smartpkg_server::start(settings(dir.path())).await?;
    let host = admin(
        &client,
        &base_of(&server),
        "/host-apps",
        json!({"name": "bench host"}),
    )
    .await?;
    let key: String = host["host_key"].as_str().ok_or("key")?.into();
    let secret: String = host["host_secret"].as_str().ok_or("secret")?.into();
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    );
    let mut b = Bench {
        base: base_of(&server),
        client: client.clone(),
        healthz: Url::parse(&format!("{}/healthz", base_of(&server)))?,
        check_url: Url::parse(&format!("{}/runtime/v1/update-check", base_of(&server)))?,
        authorization: HeaderValue::from_str(&authorization)?,
        key,
        secret,
        bodies: vec![],
        apps,
        etags: vec![],
        reports_url: Url::parse(&format!("{}/runtime/v1/reports", base_of(&server)))?,
        report_bodies: vec![],
    };
    {
        let mut rng = rand::thread_rng();
        for _ in 0..4096 {
            let held: Vec<Value> = (0..HELD)
                .map(|_| json!({"app_id": b.apps[rng.gen_range(0..b.apps.len())]}))
                .collect();
            let device = format!("device-{}", rng.gen_range(0..1_000_000));
            let body = json!({"device_id": device, "runtime_version": "3.140.0", "apps": held});
            b.bodies.push(serde_json::to_vec(&body)?.into());
        }
    }

    // Every archive is made on first demand; make them all before measuring (and learn each
    // mini program's online package, which devices report on).
    let t = Instant::now();
    let mut packages: Vec<(i64, i64)> = Vec::with_capacity(APPS);
    for chunk in b.apps.chunks(100) {
        let held: Vec<Value> = chunk.iter().map(|a| json!({"app_id": a})).collect();
        let v: Value = b
            .client
            .post(format!("{}/runtime/v1/update-check", b.base))
            .basic_auth(&b.key, Some(&b.secret))
            .json(&json!({"device_id": "warm", "runtime_version": "3.140.0", "apps": held}))
            .send()
            .await?
            .json()
            .await?;
        if v["apps"].as_array().map(Vec::len) != Some(chunk.len()) {
            return Err(format!("warm-up answer: {v}").into());
        }
        for a in v["apps"].as_array().into_iter().flatten() {
            let app = a["app_id"].as_i64().ok_or("app id")?;
            let package = a["package"]["package_id"].as_i64().ok_or("package id")?;
            packages.push((app, package));
        }
    }
    {
        // A batch is what one host sends: 100 events of devices of random mini programs.
        let events = [
            "launched",
            "launched",
            "launched",
            "downloaded",
            "installed",
            "crashed",
        ];
        let mut rng = rand::thread_rng();
        for _ in 0..2048 {
            let reports: Vec<Value> = (0..REPORTS_PER_BATCH)
                .map(|_| {
                    let (app, package) = packages[rng.gen_range(0..packages.len())];
                    json!({"device_id": format!("device-{}", rng.gen_range(0..1_000_000)),
                           "app_id": app, "package_id": package,
                           "event": events[rng.gen_range(0..events.len())]})
                })
                .collect();
            b.report_bodies
                .push(serde_json::to_vec(&json!({ "reports": reports }))?.into());
        }
    }
    println!(
        "made the archives of {APPS} packages in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for app in b.apps.iter().take(ETAG_APPS) {
        let url = format!(
            "{}/runtime/v1/apps/{app}?device_id=etag-device&runtime_version=3.140.0",
            b.base
        );
        let r = b
            .client
            .get(&url)
            .basic_auth(&b.key, Some(&b.secret))
            .send()
            .await?;
        let etag = r.headers()["etag"].clone();
        b.etags.push((Url::parse(&url)?, etag));
    }
    let b = Arc::new(b);
    let only_reports = std::env::var("SPKG_BENCH_ONLY").as_deref() == Ok("reports");
    if only_reports {
        reports(&b, &server, &packages, None).await?;
        server.stop().await;
        return Ok(());
    }

    // --- 1 and 2: rounds of baseline, update checks, 304s; a ratio per round ---
    let (mut trivial, mut check, mut not_modified) = (0.0, 0.0, 0.0);
    let (mut check_ratios, mut nm_ratios) = (Ratios::default(), Ratios::default());
    let (mut cpu_trivial, mut cpu_check, mut cpu_nm) = (0.0, 0.0, 0.0);
    for round in 0..ROUNDS {
        // The order turns each round, so that no load always follows the same one (the 304s
        // measured right after the update checks ran ~0.9x; on their own, the same CPU per
        // request as the trivial handler).
        let mut order = [Kind::Trivial, Kind::Check, Kind::NotModified];
        order.rotate_left(round % 3);
        let (mut t, mut c, mut n) = (0.0, 0.0, 0.0);
        for kind in order {
            let got = load(&b, kind).await?;
            let (rate, cpu) = match kind {
                Kind::Trivial => (&mut t, &mut cpu_trivial),
                Kind::Check => (&mut c, &mut cpu_check),
                Kind::NotModified | Kind::Reports => (&mut n, &mut cpu_nm),
            };
            *rate = got.per_second;
            *cpu += got.cpu_us_per_request / ROUNDS as f64;
        }
        check_ratios.push(c, t);
        nm_ratios.push(n, t);
        trivial += t / ROUNDS as f64;
        check += c / ROUNDS as f64;
        not_modified += n / ROUNDS as f64;
    }
    println!(
        "[1] update checks ({HELD} of {APPS} mini programs each), {CONNECTIONS} connections: {check:.0}/s; trivial handler {trivial:.0}/s (means); ratio {} (goal >= 0.7)",
        check_ratios.describe()
    );
    println!(
        "[2] single-app 304s: {not_modified:.0}/s; ratio {} (goal >= 0.9)",
        nm_ratios.describe()
    );
    println!(
        "    CPU of the whole process (server and load) per request, means: trivial {cpu_trivial:.1} us, update check {cpu_check:.1} us, 304 {cpu_nm:.1} us"
    );

    // --- 3: the cache's memory for 10,000 mini programs ---
    let (entries, bytes) = server.runtime_cache.footprint();
    println!(
        "[3] update-check cache: {entries} mini programs in {:.2} MiB, {:.2} MiB per 10,000 (goal <= 8)",
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / (1024.0 * 1024.0) * 10_000.0 / entries.max(1) as f64
    );

    // --- 4: a 5 MB archive, downloaded again and again ---
    let v: Value = b
        .client
        .post(format!("{}/runtime/v1/update-check", b.base))
        .basic_auth(&b.key, Some(&b.secret))
        .json(&json!({"device_id": "big", "runtime_version": "3.140.0", "apps": [{"app_id": big_app}]}))
        .send()
        .await?
        .json()
        .await?;
    let url = v["apps"][0]["package"]["url"]
        .as_str()
        .ok_or_else(|| format!("no package for the big app: {v}"))?
        .to_string();
    let size = v["apps"][0]["package"]["size"].as_u64().ok_or("size")?;
    // A few downloads first, so buffers and connections exist before memory is read.
    for _ in 0..8 {
        b.client.get(&url).send().await?.bytes().await?;
    }
    let rss_before = rss_kib("VmRSS:");
    let total = 1u64 << 30;
    let rounds = (total / size).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..4 {
        let (client, url, next) = (b.client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < rounds {
                let mut r = client.get(&url).send().await?;
                while let Some(chunk) = r.chunk().await? {
                    got += chunk.len() as u64;
                }
            }
            Ok::<u64, reqwest::Error>(got)
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    if bytes != rounds * size {
        return Err(format!("downloaded {bytes} bytes, expected {}", rounds * size).into());
    }
    let rss_after = rss_kib("VmRSS:");
    println!(
        "[4] {:.1} MB archive x {rounds}: {:.0} MB/s (goal >= 500); resident memory {:.0} MiB before, {:.0} MiB after {:.1} GB of downloads",
        size as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        bytes as f64 / 1e9
    );
    reports(&b, &server, &packages, Some(check_ratios.median())).await?;
    server.stop().await;
    Ok(())
}

/// [5]–[7]: device reports. `check_ratio`: [1]'s median, to print beside [6].
async fn reports(
    b: &Arc<Bench>,
    server: &Running,
    packages: &[(i64, i64)],
    check_ratio: Option<f64>,
) -> Res<()> {
    // --- 5: report batches against the trivial handler ---
    let (mut ratios, mut trivial, mut rate, mut cpu) = (Ratios::default(), 0.0, 0.0, 0.0);
    let mut cpu_trivial = 0.0;
    for round in 0..ROUNDS {
        let mut order = [Kind::Trivial, Kind::Reports];
        order.rotate_left(round % 2);
        let (mut t, mut r) = (0.0, 0.0);
        for kind in order {
            let got = load(b, kind).await?;
            match kind {
                Kind::Trivial => {
                    t = got.per_second;
                    cpu_trivial += got.cpu_us_per_request / ROUNDS as f64;
                }
                _ => {
                    r = got.per_second;
                    cpu += got.cpu_us_per_request / ROUNDS as f64;
                }
            }
        }
        ratios.push(r, t);
        trivial += t / ROUNDS as f64;
        rate += r / ROUNDS as f64;
    }
    println!(
        "[5] report batches of {REPORTS_PER_BATCH} events, {CONNECTIONS} connections: {rate:.0}/s ({:.0} events/s); trivial handler {trivial:.0}/s (means); ratio {} (goal >= 0.5); CPU of the process (server and load) per batch {cpu:.0} us, per trivial request {cpu_trivial:.0} us",
        rate * REPORTS_PER_BATCH as f64,
        ratios.describe()
    );

    // --- 6: update checks with reports flowing beside them ---
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut background = vec![];
    for _ in 0..16 {
        let (b, stop, sent) = (b.clone(), stop.clone(), sent.clone());
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if !once(&b, Kind::Reports).await {
                    return Err("a report batch failed during [6]".to_string());
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let mut flowing = Ratios::default();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut order = [Kind::Trivial, Kind::Check];
        order.rotate_left(round % 2);
        let (mut t, mut c) = (0.0, 0.0);
        for kind in order {
            let got = load(b, kind).await?;
            match kind {
                Kind::Trivial => t = got.per_second,
                _ => c = got.per_second,
            }
        }
        flowing.push(c, t);
    }
    stop.store(true, Ordering::Relaxed);
    for t in background {
        t.await??;
    }
    let batches = sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "[6] update checks ÷ trivial handler with {batches:.0} report batches/s flowing beside them: ratio {}{}",
        flowing.describe(),
        match check_ratio {
            Some(alone) => format!(" (without reports, [1]: {alone:.2}; goal: unchanged)"),
            None => String::new(),
        }
    );

    // --- 7: the aggregates' memory ---
    // A flush every interval keeps only one interval in memory. Filled as a busy fleet fills
    // it: 10,000 packages, each of the six events from 50 devices, in the current hour.
    let hour = smartpkg_server::clock::now_ms() / smartpkg_core::health::HOUR_MS;
    let aggregates = smartpkg_server::reports::Reports::default();
    let rss_before = rss_kib("VmRSS:");
    let mut batch = Vec::with_capacity(500);
    for (i, (app, package)) in packages.iter().enumerate() {
        for event in smartpkg_core::health::ReportEvent::ALL {
            for d in 0..50u64 {
                batch.push(smartpkg_server::reports::Accepted {
                    app_id: *app,
                    package_id: *package,
                    hour,
                    event,
                    device_hash: smartpkg_core::sketch::hash(&format!("d{i}-{d}")),
                });
            }
            if batch.len() >= 500 {
                aggregates.add(&batch);
                batch.clear();
            }
        }
    }
    aggregates.add(&batch);
    let busy = aggregates.bytes();
    let rss_busy = rss_kib("VmRSS:");
    // Adversarial: every package, every event, each of the last 169 hours (as far back as a
    // report may go), 2,000 devices each — far past the budget: it stops at the budget.
    let mut batch = Vec::with_capacity(500);
    'fill: for back in 0..169 {
        for (app, package) in packages {
            for event in smartpkg_core::health::ReportEvent::ALL {
                for d in 0..2000u64 {
                    batch.push(smartpkg_server::reports::Accepted {
                        app_id: *app,
                        package_id: *package,
                        hour: hour - back,
                        event,
                        device_hash: d.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    });
                }
                aggregates.add(&batch);
                batch.clear();
                if aggregates.dropped.load(Ordering::Relaxed) > 1_000_000 {
                    break 'fill;
                }
            }
        }
    }
    let full = aggregates.bytes();
    let rss_full = rss_kib("VmRSS:");
    let cells = aggregates.take();
    println!(
        "[7] aggregates of 10,000 packages in memory (one flush interval): busy fleet {:.1} MiB (resident +{:.1} MiB); adversarial fill {:.1} MiB (resident +{:.1} MiB) with {} reports dropped at the budget (goal <= 64 MiB)",
        busy as f64 / 1048576.0,
        rss_busy.saturating_sub(rss_before) as f64 / 1024.0,
        full as f64 / 1048576.0,
        rss_full.saturating_sub(rss_before) as f64 / 1024.0,
        aggregates.dropped.load(Ordering::Relaxed)
    );
    drop(cells);
    // 30 days of hourly aggregates live in the store, not in memory: a cell is a row of about
    // 60 bytes plus its sketch (base64; 4 bytes a device while sparse, 16 KiB dense at most).
    let per_cell_50 = 60 + (1 + 4 * 50) * 4 / 3;
    println!(
        "    30 days in the store (on disk, not resident): 10,000 packages x 720 hours x 3 events the gate reads = 21.6 M rows; at 50 devices a cell ~{per_cell_50} B, ~{:.1} GiB (an estimate from the row layout, not measured)",
        21.6e6 * per_cell_50 as f64 / (1u64 << 30) as f64,
    );
    let _ = server;
    Ok(())
}

fn base_of(r: &Running) -> String {
    format!("http://{}", r.addr)
}

fn main() -> Res<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
