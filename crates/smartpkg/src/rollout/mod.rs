//! `smartpkg rollout PLAN.toml`: one template version to many mini programs, resumable, with
//! progress and a report. See docs/rollout.md for the plan format.

mod engine;
mod plan;
mod progress;
mod state;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;
use smartpkg_client::{Client, RetryPolicy};
use smartpkg_types::push::PushEvent;

use engine::{Engine, Verdict};
use plan::Plan;
use progress::Progress;
use state::{AppState, StateFile, Step};

/// Exit status when some mini programs missed the goal.
const EXIT_MISSED: u8 = 1;
/// Exit status when the run stopped on the spent audit quota (run again after it renews).
const EXIT_QUOTA: u8 = 3;
/// Exit status after Ctrl-C (the state is saved; run again to continue).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  smartpkg rollout spring.toml --dry-run
  smartpkg rollout spring.toml
  smartpkg rollout spring.toml --report spring.report.json

The state lives in PLAN.state.sqlite beside the plan: after Ctrl-C or a crash, the same
command continues where it stopped, and never uploads twice for a mini program.
Exit status: 0 every mini program reached the goal, 1 some did not, 3 stopped on the weekly
audit quota (run again after it renews), 130 interrupted.")]
pub struct RolloutArgs {
    /// The plan (TOML; see docs/rollout.md).
    pub plan: PathBuf,
    /// Render every ext_json and check the plan without calling anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the JSON report goes [default: PLAN.report.json beside the plan].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The state file [default: PLAN.state.sqlite beside the plan].
    #[arg(long)]
    pub state: Option<PathBuf>,
}

#[derive(Serialize)]
struct AppReport {
    app_id: i64,
    package_id: Option<i64>,
    state: Step,
    /// The mini program `app/info` said the entry's token belongs to (`null`: never asked).
    /// Anything but `app_id` means nothing was written for this entry.
    token_app_id: Option<i64>,
    reached_goal: bool,
    errno: Option<i64>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct Report {
    template_id: i64,
    version: String,
    release: String,
    goal: Step,
    total: usize,
    reached_goal: usize,
    missed_goal: usize,
    counts: std::collections::BTreeMap<&'static str, usize>,
    quota_renews_at: Option<String>,
    elapsed_ms: u128,
    /// The rollout process's peak resident memory (Linux), in KiB.
    peak_rss_kib: Option<u64>,
    apps: Vec<AppReport>,
}

/// `VmHWM` of /proc/self/status: the peak resident set of this process.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(args: RolloutArgs, globals: &crate::tool::Globals) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.plan)
        .with_context(|| format!("cannot read the plan {}", args.plan.display()))?;
    let mut plan = Plan::parse(&text)?;
    if plan.tp.tp_token.is_none() {
        plan.tp.tp_token = globals.tp_token.clone();
    }
    let problems = plan.problems(false);
    if !problems.is_empty() {
        bail!(
            "the plan has {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    if args.dry_run {
        return dry_run(&plan, globals.json);
    }
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| state::path_for(&args.plan));
    let report_path = args.report.clone().unwrap_or_else(|| {
        let stem = args
            .plan
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rollout".into());
        args.plan.with_file_name(format!("{stem}.report.json"))
    });
    let state = StateFile::open(&state_path, plan.template_id, &plan.version)?;
    let client = Client::builder(&plan.base_url)
        // The engine retries itself, so that each retry is seen (and told) where it happens.
        .retry(RetryPolicy::NONE)
        .user_agent(concat!("smartpkg-rollout/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let goal = plan.goal();
    let progress = Progress::new(plan.apps.len(), goal, std::io::stderr().is_terminal());
    let tp_token = plan.tp.tp_token.clone();
    let events = plan.events.clone();
    let total = plan.apps.len();
    let engine = Arc::new(Engine::new(plan, client, state, progress, tp_token));
    let _receiver = match events {
        Some(ev) => Some(start_receiver(ev, engine.clone()).await?),
        None => None,
    };
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..total {
        let e = engine.clone();
        tasks.spawn(async move { (idx, e.drive(idx).await) });
    }
    let mut finals: Vec<Option<AppState>> = vec![None; total];
    let interrupted = loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => break false,
                Some(Ok((idx, Ok(s)))) => finals[idx] = Some(s),
                Some(Ok((idx, Err(e)))) => {
                    engine.progress.finish();
                    return Err(e.context(format!("app {}: the state file failed", engine.plan.apps[idx].app_id)));
                }
                Some(Err(e)) => {
                    engine.progress.finish();
                    bail!("a rollout task failed: {e}");
                }
            },
            _ = tokio::signal::ctrl_c() => break true,
        }
    };
    engine.progress.finish();
    if interrupted {
        tasks.abort_all();
        eprintln!(
            "interrupted: progress is saved in {}; run the same command to continue",
            engine.state.path.display()
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    let apps: Vec<AppReport> = finals
        .into_iter()
        .zip(engine.plan.apps.iter())
        .map(|(s, entry)| {
            let s = s.unwrap_or(AppState {
                app_id: entry.app_id,
                step: Step::Error,
                package_id: None,
                errno: None,
                reason: Some("not driven".into()),
                access_token: None,
                refresh_token: None,
                token_app_id: None,
                given: String::new(),
            });
            AppReport {
                app_id: s.app_id,
                package_id: s.package_id,
                state: s.step,
                token_app_id: s.token_app_id,
                reached_goal: s.step == goal,
                errno: s.errno,
                reason: s.reason,
            }
        })
        .collect();
    let reached = apps.iter().filter(|a| a.reached_goal).count();
    let mut counts = std::collections::BTreeMap::new();
    for a in &apps {
        *counts.entry(a.state.name()).or_insert(0) += 1;
    }
    let quota = *engine
        .quota_stopped_until
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let report = Report {
        template_id: engine.plan.template_id,
        version: engine.plan.version.clone(),
        release: format!("{:?}", engine.plan.release).to_lowercase(),
        goal,
        total,
        reached_goal: reached,
        missed_goal: total - reached,
        counts,
        quota_renews_at: quota.map(|q| q.to_rfc3339()),
        elapsed_ms: started.elapsed().as_millis(),
        peak_rss_kib: peak_rss_kib(),
        apps,
    };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&report_path, &json)
        .with_context(|| format!("cannot write the report {}", report_path.display()))?;
    summary(&report, globals.json, &report_path)?;
    if let Some(q) = quota {
        eprintln!(
            "stopped: the weekly audit quota is spent; it renews at {q}. Run the same command after that to continue."
        );
        return Ok(ExitCode::from(EXIT_QUOTA));
    }
    Ok(if reached == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_MISSED)
    })
}

fn summary(r: &Report, json: bool, path: &std::path::Path) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            crate::tool::terminal_safe_json(serde_json::to_string(r)?)
        );
        return Ok(());
    }
    let counts: Vec<Vec<String>> = r
        .counts
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.to_string()])
        .collect();
    crate::tool::print_table(&["STATE", "MINI PROGRAMS"], &counts);
    let missed: Vec<Vec<String>> = r
        .apps
        .iter()
        .filter(|a| !a.reached_goal)
        .map(|a| {
            vec![
                a.app_id.to_string(),
                a.package_id.map(|p| p.to_string()).unwrap_or_default(),
                a.state.name().to_string(),
                a.errno.map(|e| e.to_string()).unwrap_or_default(),
                a.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !missed.is_empty() {
        println!();
        println!("missed the goal ({}):", r.goal.name());
        crate::tool::print_table(&["APP", "PACKAGE", "STATE", "ERRNO", "REASON"], &missed);
    }
    println!();
    println!(
        "{} of {} reached {} in {:.1} s; report: {}",
        r.reached_goal,
        r.total,
        r.goal.name(),
        r.elapsed_ms as f64 / 1000.0,
        path.display()
    );
    Ok(())
}

fn dry_run(plan: &Plan, json: bool) -> anyhow::Result<ExitCode> {
    let rendered: Vec<(i64, String)> = plan
        .apps
        .iter()
        .map(|a| Ok((a.app_id, plan.render(a)?)))
        .collect::<anyhow::Result<_>>()?;
    if json {
        let list: Vec<_> = rendered
            .iter()
            .map(|(id, ext)| serde_json::json!({"app_id": id, "ext_json": ext}))
            .collect();
        println!(
            "{}",
            crate::tool::terminal_safe_json(serde_json::to_string_pretty(&list)?)
        );
    } else {
        let rows: Vec<Vec<String>> = rendered
            .iter()
            .map(|(id, ext)| vec![id.to_string(), ext.clone()])
            .collect();
        crate::tool::print_table(&["APP", "EXT_JSON"], &rows);
        println!();
        println!(
            "plan OK: template {} version {} to {} mini programs, release {:?}{}; nothing was called",
            plan.template_id,
            plan.version,
            plan.apps.len(),
            plan.release,
            if plan.release == plan::ReleasePolicy::Canary {
                format!(" ({} canaries)", plan.canaries)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The rollout's own push receiver: audit results wake the mini programs waiting for them.
async fn start_receiver(
    ev: plan::EventsConfig,
    engine: Arc<Engine>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::body::Bytes;
    use axum::http::StatusCode;
    let listener = tokio::net::TcpListener::bind(ev.listen)
        .await
        .with_context(|| format!("cannot listen for pushes on {}", ev.listen))?;
    let ev = Arc::new(ev);
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let ev = ev.clone();
        let engine = engine.clone();
        async move {
            let Ok(msg) = serde_json::from_slice::<smartpkg_push::SignedMessage>(&body) else {
                return (StatusCode::BAD_REQUEST, "bad message");
            };
            let opened = match &ev.client_id {
                Some(id) => smartpkg_push::open(&msg, &ev.aes_key, &ev.token, id),
                None => smartpkg_push::open_any_client(&msg, &ev.aes_key, &ev.token),
            };
            let Ok(opened) = opened else {
                return (StatusCode::BAD_REQUEST, "refused");
            };
            if let Ok(PushEvent::AuditResult(a)) = PushEvent::parse(&opened.msg) {
                engine.verdict(
                    a.package_id,
                    Verdict {
                        passed: a.passed(),
                        reason: a.reason.clone(),
                    },
                );
            }
            (StatusCode::OK, "success")
        }
    });
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}
