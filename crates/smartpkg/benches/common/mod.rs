// Each benchmark uses part of this module.
#![allow(dead_code)]

//! What the benchmarks share: bulk seeding and a big template.

use std::path::Path;

use rand::RngCore;
use smartpkg_server::secrets;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Fills the database with `n` authorized apps, each with an online package, in one
/// transaction (the server is stopped meanwhile; its schema is already in place).
pub fn seed_apps(db: &Path, tp_id: i64, template_id: i64, n: usize) -> Res<Vec<(i64, String)>> {
    let mut conn = rusqlite::Connection::open(db)?;
    let tx = conn.transaction()?;
    let mut tokens = Vec::with_capacity(n);
    let first: i64 = tx.query_row("SELECT COALESCE(MAX(app_id), 0) + 1 FROM apps", [], |r| {
        r.get(0)
    })?;
    let first_pkg: i64 = tx.query_row(
        "SELECT COALESCE(MAX(package_id), 0) + 1 FROM packages",
        [],
        |r| r.get(0),
    )?;
    for i in 0..n as i64 {
        let app_id = first + i;
        let token = secrets::access_token("45");
        tx.execute(
            "INSERT INTO apps (app_id, app_key, name, name_audited, category_audited, authenticity_certified, tp_id, created_at, wx_appid) VALUES (?1, ?2, ?3, 1, 1, 1, ?4, 0, ?5)",
            rusqlite::params![app_id, format!("key{app_id}"), format!("bench app {app_id}"), tp_id, format!("wx{app_id:016x}")],
        )?;
        tx.execute(
            "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at) VALUES (?1, 'app', ?2, ?3, ?4, 0)",
            rusqlite::params![secrets::sha256_hex(&token), tp_id, app_id, i64::MAX],
        )?;
        tx.execute(
            "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, version_desc, ext_json, built_ext_json, direct_commit, msg, commit_time, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 'online', '1.0.0', 'seeded', '{}', '{}', 0, '审核通过', 0, 0)",
            rusqlite::params![first_pkg + i, app_id, tp_id, template_id],
        )?;
        tokens.push((app_id, token));
    }
    tx.commit()?;
    Ok(tokens)
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn big_template() -> Res<Vec<u8>> {
    // 500 files, 5 MB in all, incompressible so the zip really is 5 MB.
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "app.json".into(),
        br#"{"pages":["pages/index/index"]}"#.to_vec(),
    )];
    files.push(("pages/index/index.swan".into(), b"<view/>".to_vec()));
    let mut rng = rand::thread_rng();
    for i in 0..498 {
        let mut b = vec![0u8; 5 * 1024 * 1024 / 498];
        rng.fill_bytes(&mut b);
        files.push((format!("static/asset{i}.bin"), b));
    }
    Ok(smartpkg_core::archive::zip_files(
        files.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
    )?)
}

/// Requests per second over `seconds` (after half a second of warm-up) from `connections`
/// callers each running `once` in a loop; any `false` (a failed or wrong answer) fails it.
pub async fn rate<F, Fut>(connections: usize, seconds: u64, once: F) -> Res<f64>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    Ok(measure(connections, seconds, once).await?.per_second)
}

/// What a load measured.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub per_second: f64,
    /// CPU time of this whole process (server and load generator) per request, in µs: unlike
    /// the rate, it does not move when a neighbour takes the machine's cores for a while.
    pub cpu_us_per_request: f64,
}

/// CPU seconds this process has used (user and system, all threads): fields 14 and 15 of
/// `/proc/self/stat`, in Linux's fixed 100 ticks a second.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces: the fields after it start past its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

/// As [`rate`], with the process's CPU time per request.
pub async fn measure<F, Fut>(connections: usize, seconds: u64, once: F) -> Res<Load>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let once = Arc::new(once);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for _ in 0..connections {
        let (once, stop, done, errors) = (once.clone(), stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if once().await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    let start_cpu = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let counted = done.load(Ordering::Relaxed) - start_count;
    let cpu = cpu_seconds() - start_cpu;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        return Err(format!("{e} requests failed or answered wrongly during the load").into());
    }
    Ok(Load {
        per_second: counted as f64 / elapsed,
        cpu_us_per_request: cpu * 1e6 / counted.max(1) as f64,
    })
}

/// Ratios of a load's rate to its baseline's, each measured back to back in one round. The
/// median of paired ratios holds still on a machine whose speed drifts between rounds (a
/// neighbour's burst moves both halves of a pair alike), where a ratio of means does not.
#[derive(Default)]
pub struct Ratios(Vec<f64>);

impl Ratios {
    pub fn push(&mut self, rate: f64, baseline: f64) {
        if baseline > 0.0 {
            self.0.push(rate / baseline);
        }
    }

    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// "median 0.91 (7 rounds, 0.85–0.97)".
    pub fn describe(&self) -> String {
        let lo = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "median {:.2} ({} rounds, {lo:.2}–{hi:.2})",
            self.median(),
            self.0.len()
        )
    }
}
