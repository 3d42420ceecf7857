//! `smartpkg rollout PLAN.toml`: one template version to many mini programs, resumable, with
//! progress and a report. See docs/rollout.md for the plan format.

mod engine;
mod plan;
mod progress;
mod state;
mod wechat;

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
    /// The plan's own (Baidu-dialect) mini programs.
    apps: Vec<AppReport>,
    /// Every other platform's, each with its own figures (the totals above count them).
    platforms: Vec<PlatformReport>,
}

#[derive(Serialize)]
struct PlatformReport {
    name: String,
    dialect: String,
    template_id: i64,
    total: usize,
    reached_goal: usize,
    counts: std::collections::BTreeMap<&'static str, usize>,
    quota_renews_at: Option<String>,
    apps: Vec<wechat::WxReport>,
}

/// A mini program's rollout ended: which one, and where.
enum Done {
    Baidu(usize, AppState),
    Wechat(usize, usize, wechat::WxState),
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
    let component_token = std::env::var("SPKG_COMPONENT_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    for t in &mut plan.platforms {
        if t.component_token.is_none() {
            t.component_token = component_token.clone();
        }
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
    let total_all = plan.apps.len() + plan.platforms.iter().map(|t| t.apps.len()).sum::<usize>();
    let progress = Arc::new(Progress::new(
        total_all,
        goal,
        std::io::stderr().is_terminal(),
    ));
    let shared_plan = Arc::new(plan.clone());
    let mut wx_engines = vec![];
    for target in &plan.platforms {
        let token = target
            .component_token
            .clone()
            .context("a platform without its component token")?;
        let client =
            smartpkg_client::wechat::WechatClient::with_retry(target.base_url(), RetryPolicy::NONE)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let state_path = wechat::state_path(&args.plan, &target.name);
        let state = wechat::WxStateFile::open(&state_path, target.template_id, &plan.version)?;
        wx_engines.push(Arc::new(wechat::WxEngine::new(
            shared_plan.clone(),
            target.clone(),
            client,
            state,
            progress.clone(),
            token,
        )));
    }
    let tp_token = plan.tp.tp_token.clone();
    let events = plan.events.clone();
    let total = plan.apps.len();
    let engine = Arc::new(Engine::new(plan, client, state, progress.clone(), tp_token));
    let _receiver = match events {
        Some(ev) => Some(start_receiver(ev, engine.clone()).await?),
        None => None,
    };
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..total {
        let e = engine.clone();
        tasks.spawn(async move {
            let who = format!("app {}", e.plan.apps[idx].app_id);
            (who, e.drive(idx).await.map(|s| Done::Baidu(idx, s)))
        });
    }
    for (p, w) in wx_engines.iter().enumerate() {
        for idx in 0..w.target.apps.len() {
            let w = w.clone();
            tasks.spawn(async move {
                let who = format!("{} {}", w.target.name, w.target.apps[idx].appid);
                let r = w.clone().drive(idx).await;
                (who, r.map(|s| Done::Wechat(p, idx, s)))
            });
        }
    }
    let mut finals: Vec<Option<AppState>> = vec![None; total];
    let mut wx_finals: Vec<Vec<Option<wechat::WxState>>> = wx_engines
        .iter()
        .map(|w| vec![None; w.target.apps.len()])
        .collect();
    let interrupted = loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => break false,
                Some(Ok((_, Ok(Done::Baidu(idx, s))))) => finals[idx] = Some(s),
                Some(Ok((_, Ok(Done::Wechat(p, idx, s))))) => wx_finals[p][idx] = Some(s),
                Some(Ok((who, Err(e)))) => {
                    progress.finish();
                    return Err(e.context(format!("{who}: the state file failed")));
                }
                Some(Err(e)) => {
                    progress.finish();
                    bail!("a rollout task failed: {e}");
                }
            },
            _ = tokio::signal::ctrl_c() => break true,
        }
    };
    progress.finish();
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
    let mut reached = apps.iter().filter(|a| a.reached_goal).count();
    let mut counts = std::collections::BTreeMap::new();
    for a in &apps {
        *counts.entry(a.state.name()).or_insert(0) += 1;
    }
    let mut quota = *engine
        .quota_stopped_until
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut platforms = vec![];
    for (w, states) in wx_engines.iter().zip(wx_finals) {
        let apps: Vec<wechat::WxReport> = states
            .into_iter()
            .zip(w.target.apps.iter())
            .map(|(s, entry)| match s {
                Some(s) => wechat::WxReport {
                    appid: s.appid,
                    auditid: s.auditid,
                    state: s.step,
                    reached_goal: s.step == goal,
                    errcode: s.errcode,
                    reason: s.reason,
                },
                None => wechat::WxReport {
                    appid: entry.appid.clone(),
                    auditid: None,
                    state: Step::Error,
                    reached_goal: false,
                    errcode: None,
                    reason: Some("not driven".into()),
                },
            })
            .collect();
        let mut own = std::collections::BTreeMap::new();
        for a in &apps {
            *own.entry(a.state.name()).or_insert(0) += 1;
            *counts.entry(a.state.name()).or_insert(0) += 1;
        }
        let own_reached = apps.iter().filter(|a| a.reached_goal).count();
        reached += own_reached;
        let own_quota = *w
            .quota_stopped_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        quota = quota.or(own_quota);
        platforms.push(PlatformReport {
            name: w.target.name.clone(),
            dialect: w.target.dialect.clone(),
            template_id: w.target.template_id,
            total: apps.len(),
            reached_goal: own_reached,
            counts: own,
            quota_renews_at: own_quota.map(|q| q.to_rfc3339()),
            apps,
        });
    }
    let report = Report {
        template_id: engine.plan.template_id,
        version: engine.plan.version.clone(),
        release: format!("{:?}", engine.plan.release).to_lowercase(),
        goal,
        total: total_all,
        reached_goal: reached,
        missed_goal: total_all - reached,
        counts,
        quota_renews_at: quota.map(|q| q.to_rfc3339()),
        elapsed_ms: started.elapsed().as_millis(),
        peak_rss_kib: peak_rss_kib(),
        apps,
        platforms,
    };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&report_path, &json)
        .with_context(|| format!("cannot write the report {}", report_path.display()))?;
    summary(&report, globals.json, &report_path)?;
    if let Some(q) = quota {
        eprintln!(
            "stopped: an audit quota is spent; it renews at {q}. Run the same command after that to continue."
        );
        return Ok(ExitCode::from(EXIT_QUOTA));
    }
    Ok(if reached == total_all {
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
    let mut rendered: Vec<(String, String)> = plan
        .apps
        .iter()
        .map(|a| Ok((a.app_id.to_string(), plan.render(a)?)))
        .collect::<anyhow::Result<_>>()?;
    for t in &plan.platforms {
        for a in &t.apps {
            rendered.push((format!("{} {}", t.name, a.appid), plan.render_wx(a)?));
        }
    }
    if json {
        let list: Vec<_> = rendered
            .iter()
            .map(|(id, ext)| match id.parse::<i64>() {
                Ok(n) => serde_json::json!({"app_id": n, "ext_json": ext}),
                Err(_) => serde_json::json!({"app": id, "ext_json": ext}),
            })
            .collect();
        println!(
            "{}",
            crate::tool::terminal_safe_json(serde_json::to_string_pretty(&list)?)
        );
    } else {
        let rows: Vec<Vec<String>> = rendered
            .iter()
            .map(|(id, ext)| vec![id.clone(), ext.clone()])
            .collect();
        crate::tool::print_table(&["APP", "EXT_JSON"], &rows);
        println!();
        println!(
            "plan OK: template {} version {} to {} mini programs, release {:?}{}; nothing was called",
            plan.template_id,
            plan.version,
            rendered.len(),
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
