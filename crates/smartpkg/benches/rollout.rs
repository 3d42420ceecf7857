//! `cargo bench -p smartpkg --bench rollout`: is the rollout tool ever the bottleneck?
//!
//! One server (embedded SQLite, every delay 0, automatic audit) serves three fleets of
//! `SPKG_BENCH_APPS` (default 1,000) mini programs. The baseline drives a fleet through the
//! whole lifecycle (upload → built → submit → audited → release) with the typed client in this
//! process, as fast as the server allows; `smartpkg rollout` (the release binary, a process of
//! its own) ships the next fleet from a plan; the baseline runs again on the third. All at the
//! same concurrency (calls in flight). The figure is the rollout's throughput over the mean of
//! the two baselines (goal ≥ 0.8), and the rollout's peak memory (goal ≤ 64 MiB), from its own
//! report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smartpkg_client::types::{GetDetailRequest, SubmitAuditRequest, UploadRequest};
use smartpkg_client::{Client, WireStatus};
use smartpkg_server::config::AuditMode;
use smartpkg_testkit::sandbox::Sandbox;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CONCURRENCY: usize = 16;

async fn fleet(s: &Sandbox, n: usize, tag: &str) -> Vec<(i64, String)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (id, access, _) = s.new_app(&format!("{tag}{i}")).await;
        out.push((id, access));
    }
    out
}

/// Polls `check` from 20 ms, doubling to 200 ms, as the rollout does.
async fn until<F, Fut>(mut check: F) -> Res<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<bool>>,
{
    let mut wait = Duration::from_millis(20);
    for _ in 0..2000 {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
    Err("gave up waiting".into())
}

async fn lifecycle(
    c: &Client,
    permits: &tokio::sync::Semaphore,
    token: &str,
    template_id: i64,
    app_id: i64,
) -> Res<()> {
    // Every call holds one of CONCURRENCY permits while it is in flight, as the rollout's
    // calls do; the waits between polls hold none.
    let _p = permits.acquire().await?;
    c.upload(
        token,
        &UploadRequest {
            template_id,
            ext_json: format!(r#"{{"extEnable":true,"extAppid":{app_id}}}"#),
            user_version: "2.0.0".into(),
            user_desc: "bench".into(),
            test_account: None,
            test_password: None,
        },
    )
    .await?;
    drop(_p);
    let mut wait = Duration::from_millis(20);
    let mut package = None;
    for _ in 0..2000 {
        let rows = {
            let _p = permits.acquire().await?;
            c.get(token).await?
        };
        package = rows
            .iter()
            .find(|r| r.status == Some(WireStatus::Development))
            .and_then(|r| r.package_id);
        if package.is_some() {
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
    let package_id = package.ok_or("no package")?;
    let p = permits.acquire().await?;
    c.submit_audit(
        token,
        &SubmitAuditRequest {
            package_id,
            content: "bench".into(),
            remark: String::new(),
            test_account: None,
            test_password: None,
        },
    )
    .await?;
    drop(p);
    until(|| async {
        let _p = permits.acquire().await?;
        let d = c
            .get_detail(
                token,
                &GetDetailRequest {
                    status: None,
                    package_id: Some(package_id),
                },
            )
            .await?;
        Ok(d.status == Some(WireStatus::AuditPassed))
    })
    .await?;
    let _p = permits.acquire().await?;
    c.release(token, package_id).await?;
    Ok(())
}

async fn baseline(s: &Sandbox, apps: Vec<(i64, String)>) -> Res<f64> {
    let c = Client::new(&s.base_url)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let n = apps.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (app_id, token) in apps {
        let c = c.clone();
        let permits = permits.clone();
        let template_id = s.template_id;
        tasks.spawn(async move { lifecycle(&c, &permits, &token, template_id, app_id).await });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn rollout(s: &Sandbox, apps: &[(i64, String)]) -> Res<(f64, u64)> {
    let dir = s.dir.path().join("bench-rollout");
    std::fs::create_dir_all(&dir)?;
    let mut plan = format!(
        "base_url = \"{}\"\ntemplate_id = {}\nversion = \"2.0.0\"\ndescription = \"bench\"\nrelease = \"all\"\nconcurrency = {CONCURRENCY}\npoll_max_ms = 200\next_json = '{{\"extEnable\":true,\"extAppid\":{{{{app_id}}}}}}'\n",
        s.base_url, s.template_id
    );
    for (id, token) in apps {
        plan.push_str(&format!(
            "\n[[apps]]\napp_id = {id}\naccess_token = \"{token}\"\n"
        ));
    }
    let path = dir.join("bench.toml");
    std::fs::write(&path, plan)?;
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smartpkg"))
        .arg("rollout")
        .arg(&path)
        .arg("--json")
        .stderr(std::process::Stdio::null())
        .output()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "the rollout failed: {}",
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if report["reached_goal"].as_u64() != Some(apps.len() as u64) {
        return Err(format!("not every mini program went online: {}", report["counts"]).into());
    }
    let rss = report["peak_rss_kib"]
        .as_u64()
        .ok_or("no peak memory in the report")?;
    Ok((apps.len() as f64 / secs, rss))
}

async fn run() -> Res<()> {
    let n: usize = std::env::var("SPKG_BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let s = Sandbox::start_with(|st| {
        st.build_delay_ms = 0;
        st.rollback_delay_ms = 0;
        st.audit_mode = AuditMode::Auto;
        st.auto_audit_delay_ms = 0;
        // One third party shipping to its whole fleet at full speed: the per-TP write limit
        // would make this a benchmark of the limit.
        st.tp_writes_per_minute = 1_000_000;
    })
    .await;
    eprintln!("seeding 3 × {n} mini programs…");
    let a = fleet(&s, n, "base").await;
    let b = fleet(&s, n, "roll").await;
    let c = fleet(&s, n, "again").await;
    // Baseline, rollout, baseline: the database grows between runs, so the rollout is
    // compared with the mean of the runs before and after it.
    let before = baseline(&s, a).await?;
    println!(
        "baseline: {before:.1} lifecycles/s (typed client in-process, concurrency {CONCURRENCY})"
    );
    let (roll, rss) = rollout(&s, &b).await?;
    println!("rollout:  {roll:.1} mini programs/s ({n} online, concurrency {CONCURRENCY})");
    let after = baseline(&s, c).await?;
    println!("baseline: {after:.1} lifecycles/s (again, after the rollout)");
    let ratio = roll / ((before + after) / 2.0);
    println!(
        "rollout / baseline = {ratio:.2} (goal ≥ 0.8) {}",
        if ratio >= 0.8 { "met" } else { "MISSED" }
    );
    let mib = rss as f64 / 1024.0;
    println!(
        "rollout peak memory = {mib:.1} MiB (goal ≤ 64) {}",
        if mib <= 64.0 { "met" } else { "MISSED" }
    );
    s.stop().await;
    Ok(())
}

fn main() -> Res<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
