//! `smartpkg device simulate`: a fleet of devices of one host app, played against a smartpkg
//! server's runtime channel. Each round every device asks which package to run, downloads
//! what is new to it, and reports how it went (downloaded, installed, launched, and — at the
//! failure rate given for the version it runs — crashed), so an operator can watch a staged
//! release advance on a healthy version and halt on a broken one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rand::Rng;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum DeviceCmd {
    /// Play a fleet of devices against a server (its runtime channel, host-app credentials).
    #[command(
        after_help = "Example (a broken version 2.0.0 against a healthy 1.0.0):
  smartpkg device simulate --base-url http://127.0.0.1:8420 \\
    --host-key hk_… --host-secret … --app-id 1 --devices 2000 \\
    --fail-rate 2.0.0=0.05 --fail-rate 1.0.0=0.005 --every 5s"
    )]
    Simulate(SimulateArgs),
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The host app's key (`POST /admin/v1/host-apps` makes one).
    #[arg(long, env = "SPKG_HOST_KEY")]
    host_key: String,
    /// The host app's secret.
    #[arg(long, env = "SPKG_HOST_SECRET", hide_env_values = true)]
    host_secret: String,
    /// Mini programs every device runs (repeat for several).
    #[arg(long = "app-id", required = true)]
    app_ids: Vec<i64>,
    /// Devices in the fleet.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// VERSION=RATE: the share of devices a version crashes on (repeat per version).
    #[arg(long = "fail-rate", value_parser = parse_rate)]
    fail_rates: Vec<(String, f64)>,
    /// The failure rate of versions not named by --fail-rate.
    #[arg(long, default_value_t = 0.005)]
    default_fail_rate: f64,
    /// Time between rounds (`500ms`, `5s`, `1m`).
    #[arg(long, default_value = "5s", value_parser = parse_every)]
    every: Duration,
    /// Rounds to play (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    rounds: u64,
    /// The host runtime version devices run.
    #[arg(long, default_value = "3.140.0")]
    runtime_version: String,
    /// Names devices `PREFIX-0`, `PREFIX-1`, … (two fleets with different prefixes are
    /// different devices).
    #[arg(long, default_value = "sim")]
    prefix: String,
}

fn parse_rate(s: &str) -> Result<(String, f64), String> {
    let (v, r) = s
        .split_once('=')
        .ok_or_else(|| format!("expected VERSION=RATE, got {s:?}"))?;
    let rate: f64 = r
        .trim()
        .parse()
        .map_err(|_| format!("{r:?} is not a rate between 0 and 1"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{rate} is not a rate between 0 and 1"));
    }
    Ok((v.trim().to_string(), rate))
}

fn parse_every(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: the unit is ms, s or m")),
    }
}

pub async fn run(cmd: DeviceCmd, base_url: &str) -> anyhow::Result<()> {
    if base_url.trim_end_matches('/') == smartpkg_client::BAIDU_BASE_URL.trim_end_matches('/') {
        bail!("the runtime channel is smartpkg's own: give --base-url of a smartpkg server");
    }
    match cmd {
        DeviceCmd::Simulate(a) => simulate(a, base_url).await,
    }
}

/// What one device holds of one mini program: the archive it installed.
#[derive(Clone, Default)]
struct Held {
    sha256: Option<String>,
}

/// Reports per request: the platform takes at most 500.
const BATCH: usize = 500;
/// Devices checking at once.
const PARALLEL: usize = 32;

async fn simulate(a: SimulateArgs, base_url: &str) -> anyhow::Result<()> {
    if a.devices == 0 {
        bail!("--devices is at least 1");
    }
    if a.app_ids.len() > 100 {
        bail!("at most 100 --app-id (one update check asks about at most 100)");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = base_url.trim_end_matches('/').to_string();
    let rates: HashMap<String, f64> = a.fail_rates.iter().cloned().collect();
    let mut held: Vec<HashMap<i64, Held>> = vec![HashMap::new(); a.devices];
    // Each archive is fetched once per run: the devices share it (and each still reports its
    // own download), so a large fleet does not download the same bytes a thousand times.
    let mut fetched: HashSet<String> = HashSet::new();
    let mut out = std::io::stdout().lock();
    let mut round = 0u64;
    loop {
        round += 1;
        let mut reports: Vec<Value> = Vec::new();
        let mut running: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for chunk_start in (0..a.devices).step_by(PARALLEL) {
            let chunk_end = (chunk_start + PARALLEL).min(a.devices);
            let mut tasks = Vec::new();
            for (d, holds) in held.iter().enumerate().take(chunk_end).skip(chunk_start) {
                let (http, base) = (http.clone(), base.clone());
                let device = format!("{}-{d}", a.prefix);
                let apps: Vec<Value> = a
                    .app_ids
                    .iter()
                    .map(|id| {
                        let sha = holds.get(id).and_then(|h| h.sha256.clone());
                        json!({"app_id": id, "sha256": sha})
                    })
                    .collect();
                let body = json!({"device_id": device, "runtime_version": a.runtime_version, "apps": apps});
                let (key, secret) = (a.host_key.clone(), a.host_secret.clone());
                tasks.push(tokio::spawn(async move {
                    let r = http
                        .post(format!("{base}/runtime/v1/update-check"))
                        .basic_auth(key, Some(secret))
                        .json(&body)
                        .send()
                        .await?;
                    let status = r.status();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    if !status.is_success() {
                        return Err(anyhow!("update check: HTTP {status}: {v}"));
                    }
                    Ok::<_, anyhow::Error>(v)
                }));
            }
            for (i, t) in tasks.into_iter().enumerate() {
                let d = chunk_start + i;
                let v = t.await.context("a device's task")??;
                let device = format!("{}-{d}", a.prefix);
                for ans in v["apps"].as_array().into_iter().flatten() {
                    let Some(app_id) = ans["app_id"].as_i64() else {
                        continue;
                    };
                    let status = ans["status"].as_str().unwrap_or("");
                    if status != "update" && status != "current" {
                        continue;
                    }
                    let p = &ans["package"];
                    let (Some(package_id), Some(sha)) =
                        (p["package_id"].as_i64(), p["sha256"].as_str())
                    else {
                        continue;
                    };
                    let version = p["version"].as_str().unwrap_or("").to_string();
                    let report = |event: &str| json!({"device_id": device, "app_id": app_id, "package_id": package_id, "event": event});
                    if status == "update" {
                        if fetched.insert(sha.to_string()) {
                            let url = p["url"].as_str().unwrap_or("");
                            let r = http
                                .get(url)
                                .basic_auth(&a.host_key, Some(&a.host_secret))
                                .send()
                                .await
                                .with_context(|| format!("downloading {url}"))?;
                            if !r.status().is_success() {
                                bail!("downloading {url}: HTTP {}", r.status());
                            }
                            r.bytes().await?;
                        }
                        reports.push(report("downloaded"));
                        reports.push(report("installed"));
                        held[d].insert(
                            app_id,
                            Held {
                                sha256: Some(sha.to_string()),
                            },
                        );
                    }
                    let rate = rates.get(&version).copied().unwrap_or(a.default_fail_rate);
                    let failed = rand::thread_rng().gen_bool(rate);
                    reports.push(report("launched"));
                    if failed {
                        reports.push(report("crashed"));
                    }
                    let e = running.entry(format!("{app_id}:{version}")).or_default();
                    e.0 += 1;
                    e.1 += usize::from(failed);
                }
            }
        }
        for batch in reports.chunks(BATCH) {
            let r = http
                .post(format!("{base}/runtime/v1/reports"))
                .basic_auth(&a.host_key, Some(&a.host_secret))
                .json(&json!({ "reports": batch }))
                .send()
                .await?;
            let status = r.status();
            if !status.is_success() {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                bail!("reports refused: HTTP {status}: {v}");
            }
        }
        let summary: Vec<String> = running
            .iter()
            .map(|(k, (n, f))| format!("{k} on {n} devices ({f} crashed)"))
            .collect();
        writeln!(
            out,
            "round {round}: {} reports · {}",
            reports.len(),
            if summary.is_empty() {
                "nothing to run yet".to_string()
            } else {
                summary.join(" · ")
            }
        )?;
        out.flush()?;
        if a.rounds != 0 && round >= a.rounds {
            return Ok(());
        }
        tokio::time::sleep(a.every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_parse_and_nonsense_is_refused() {
        assert_eq!(parse_rate("2.0.0=0.05"), Ok(("2.0.0".into(), 0.05)));
        assert!(parse_rate("2.0.0").is_err());
        assert!(parse_rate("2.0.0=1.5").is_err());
        assert_eq!(parse_every("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_every("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_every("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_every("7"), Ok(Duration::from_secs(7)));
        assert!(parse_every("5h").is_err());
    }
}
