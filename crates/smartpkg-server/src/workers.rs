//! The job runner: claims due jobs with a lease, runs each (a build, the end of a rollback,
//! an automatic audit decision) and completes it in the same transaction as the transition it
//! causes. A job whose package moved on is dropped; a job that hit a transient failure (I/O,
//! a busy database) runs again later with backoff. Nothing is lost on a crash: an unfinished
//! job is still in the table and runs again when its lease ends (at once on restart with SQLite).

use smartpkg_core::dialect::Dialect;
use smartpkg_core::ids::{PackageId, TemplateId};
use std::sync::Arc;
use std::time::Duration;

use smartpkg_core::archive::{self, TemplateManifest};
use smartpkg_core::audit_rules::{self, Rules};
use smartpkg_core::ext::{build_ext_json, parse_ext_json};
use smartpkg_core::lifecycle::{Command, JobKind, PkgState};
use smartpkg_store::{
    AttemptOutcome, DeliveryState, Job, Lane, LaneKind, PackageRecord, Schedule, StoreError,
    TargetVerdict,
};
use smartpkg_types::Errno;
use tokio::sync::{watch, Semaphore};

use crate::state::AppState;
use crate::{clock, push};

/// Why a job did not finish.
enum JobError {
    /// Try again later.
    Transient(String),
    /// The lease ran out and another worker holds the job: leave it to that one.
    LeaseLost,
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost(_) => JobError::LeaseLost,
            other => JobError::Transient(other.to_string()),
        }
    }
}

enum Outcome {
    Done,
    /// The package is no longer where the job expected it (replaced, decided by hand...).
    Obsolete(String),
}

/// A template whose archive cannot be used: builds from it fail with 69010.
pub enum TemplateProblem {
    Broken(String),
    Transient(String),
}

impl std::fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateProblem::Broken(m) | TemplateProblem::Transient(m) => f.write_str(m),
        }
    }
}

async fn read_template(
    state: &AppState,
    template_id: i64,
) -> Result<(Vec<u8>, Arc<TemplateManifest>), TemplateProblem> {
    let t = state
        .store
        .get_template(TemplateId(template_id))
        .await
        .map_err(|e| TemplateProblem::Transient(e.to_string()))?
        .ok_or_else(|| TemplateProblem::Broken(format!("template {template_id} does not exist")))?;
    let bytes = match state.blobs.get(&t.blob_sha256).await {
        Ok(b) => b,
        Err(e @ (StoreError::NotFound(_) | StoreError::Corrupt(_))) => {
            return Err(TemplateProblem::Broken(e.to_string()))
        }
        Err(e) => return Err(TemplateProblem::Transient(e.to_string())),
    };
    let limits = state.settings.archive();
    let (bytes, manifest) = tokio::task::spawn_blocking(move || {
        let m = archive::inspect(&bytes, &limits);
        (bytes, m)
    })
    .await
    .map_err(|e| TemplateProblem::Transient(e.to_string()))?;
    let manifest = Arc::new(manifest.map_err(|e| TemplateProblem::Broken(e.to_string()))?);
    if let Ok(mut cache) = state.verified_templates.lock() {
        cache.insert(t.blob_sha256.clone(), manifest.clone());
    }
    Ok((bytes, manifest))
}

/// The template's manifest, read and verified from its blob once per process.
pub async fn template_manifest(
    state: &AppState,
    template_id: i64,
) -> Result<Arc<TemplateManifest>, TemplateProblem> {
    let t = state
        .store
        .get_template(TemplateId(template_id))
        .await
        .map_err(|e| TemplateProblem::Transient(e.to_string()))?
        .ok_or_else(|| TemplateProblem::Broken(format!("template {template_id} does not exist")))?;
    let cached = state
        .verified_templates
        .lock()
        .ok()
        .and_then(|c| c.get(&t.blob_sha256).cloned());
    match cached {
        Some(m) => Ok(m),
        None => read_template(state, template_id).await.map(|(_, m)| m),
    }
}

/// The template's bytes (checked against their hash) and manifest, for the package archive.
pub async fn template_bytes(
    state: &AppState,
    template_id: i64,
) -> Result<(Vec<u8>, Arc<TemplateManifest>), String> {
    read_template(state, template_id)
        .await
        .map_err(|e| e.to_string())
}

async fn finish(
    state: &AppState,
    app_id: i64,
    cmd: Command,
    job: &Job,
) -> Result<Outcome, JobError> {
    match state
        .execute(
            app_id,
            cmd,
            smartpkg_store::Actor::System,
            Some(job.lease_ref()),
        )
        .await?
    {
        Ok(_) => Ok(Outcome::Done),
        Err(refusal) => Ok(Outcome::Obsolete(refusal.msg)),
    }
}

/// The job's package if it is still in `expected`; otherwise the job has nothing to do.
async fn package_in(
    state: &AppState,
    job: &Job,
    expected: PkgState,
) -> Result<Result<PackageRecord, Outcome>, JobError> {
    Ok(match state.store.get_package(job.package_id).await? {
        None => Err(Outcome::Obsolete("package gone".into())),
        Some(p) if p.state != expected => Err(Outcome::Obsolete(format!(
            "package is {}",
            p.state.as_str()
        ))),
        Some(p) => Ok(p),
    })
}

async fn build(state: &AppState, job: &Job) -> Result<Outcome, JobError> {
    let pkg = match package_in(state, job, PkgState::Building).await? {
        Ok(p) => p,
        Err(obsolete) => return Ok(obsolete),
    };
    let failed = |errno: Errno, msg: String| Command::BuildFailed {
        package_id: pkg.package_id,
        errno,
        msg,
    };
    // extAppid may name the mini program by its wx appid (a WeChat-dialect ext.json): read
    // only when it names something other than the numeric id.
    let ext = parse_ext_json(&pkg.ext_json);
    let names_other = ext
        .as_ref()
        .ok()
        .and_then(|e| e.ext_appid.as_deref())
        .is_some_and(|a| a != pkg.app_id.get().to_string());
    let wx_appid = match names_other {
        true => state
            .store
            .get_app(pkg.app_id)
            .await?
            .map(|a| a.wx_appid)
            .unwrap_or_default(),
        false => String::new(),
    };
    let cmd = match template_manifest(state, pkg.template_id.get()).await {
        Err(TemplateProblem::Transient(e)) => return Err(JobError::Transient(e)),
        Err(TemplateProblem::Broken(e)) => failed(
            Errno::TemplateParseError,
            format!("{}: {e}", Errno::TemplateParseError.default_msg()),
        ),
        Ok(manifest) => match ext {
            Err(e) => failed(e.errno(), e.to_string()),
            Ok(ext) => match build_ext_json(&ext, pkg.app_id.get(), &wx_appid, &manifest) {
                Err(f) => failed(f.errno, f.msg),
                Ok(ext_json) => Command::BuildSucceeded {
                    package_id: pkg.package_id,
                    direct_commit: ext.direct_commit,
                    ext_json,
                },
            },
        },
    };
    if let Command::BuildFailed { msg, .. } = &cmd {
        tracing::info!(package_id = %pkg.package_id, reason = ?msg, "build failed");
    }
    finish(state, pkg.app_id.get(), cmd, job).await
}

async fn auto_audit(state: &AppState, job: &Job) -> Result<Outcome, JobError> {
    let pkg = match package_in(state, job, PkgState::Auditing).await? {
        Ok(p) => p,
        Err(obsolete) => return Ok(obsolete),
    };
    let app = state
        .store
        .get_app(pkg.app_id)
        .await?
        .ok_or_else(|| JobError::Transient(format!("app {} missing", pkg.app_id)))?;
    let max = state.settings.auto_audit_max_name_chars;
    let rules = Rules {
        max_name_chars: (max > 0).then_some(max),
    };
    let verdict = match template_manifest(state, pkg.template_id.get()).await {
        Err(TemplateProblem::Transient(e)) => return Err(JobError::Transient(e)),
        Err(TemplateProblem::Broken(e)) => Err(format!("代码包无法解析：{e}")),
        Ok(manifest) => audit_rules::evaluate(&app.name, &manifest, &rules),
    };
    let cmd = Command::Decide {
        package_id: pkg.package_id,
        pass: verdict.is_ok(),
        reason: verdict.err().unwrap_or_default(),
    };
    finish(state, pkg.app_id.get(), cmd, job).await
}

async fn finish_rollback(state: &AppState, job: &Job) -> Result<Outcome, JobError> {
    let Some(pkg) = state.store.get_package(job.package_id).await? else {
        return Ok(Outcome::Obsolete("package gone".into()));
    };
    let cmd = Command::FinishRollback {
        package_id: pkg.package_id,
    };
    finish(state, pkg.app_id.get(), cmd, job).await
}

/// One delivery attempt; the store logs it and settles the delivery and this job together.
async fn push(state: &AppState, job: &Job) -> Result<Outcome, JobError> {
    let Some(delivery_id) = job.delivery_id else {
        return Ok(Outcome::Obsolete("push job without a delivery".into()));
    };
    let Some(d) = state.store.get_delivery(delivery_id).await? else {
        return Ok(Outcome::Obsolete(format!("delivery {delivery_id} gone")));
    };
    if d.state != DeliveryState::Pending {
        // Acknowledged (or given up) already: never send it again unless replayed.
        return Ok(Outcome::Obsolete(format!(
            "delivery is {}",
            d.state.as_str()
        )));
    }
    let Some(tp) = state.store.get_tp(d.tp_id).await? else {
        return Ok(Outcome::Obsolete(format!("tp {} gone", d.tp_id)));
    };
    // The dialect is decided once here; WeChat-dialect pushes name the mini program by its wx
    // appid (read for those only). An event that does not read back renders as an error in
    // the attempt, whatever the dialect.
    let dialect = match d.event.typed() {
        Ok(e) => push::dialect_of(&tp, &e, d.event.channel),
        Err(_) => Dialect::Baidu,
    };
    let wx_appid = match d.event.app_id.get() {
        0 => String::new(),
        _ if dialect != Dialect::Wechat => String::new(),
        id => state
            .store
            .get_app(smartpkg_core::ids::AppId(id))
            .await?
            .map(|a| a.wx_appid)
            .unwrap_or_default(),
    };
    let s = &state.settings;
    let a = push::attempt(
        &state.push_client,
        &tp,
        dialect,
        &wx_appid,
        &d,
        s.allow_private_targets,
        s.push_proxy.is_some(),
        Duration::from_millis(s.push_timeout_ms),
        s.utc_offset,
    )
    .await;
    let m = &state.metrics;
    m.counter("smartpkg_push_attempts_total", &[]).increment(1);
    if a.record.status.is_some() {
        let latency = Duration::from_millis(a.record.latency_ms.max(0) as u64);
        m.observe("smartpkg_push_latency_seconds", &[], latency);
    }
    let outcome = if a.delivered {
        m.counter("smartpkg_push_delivered_total", &[]).increment(1);
        AttemptOutcome::Delivered
    } else {
        m.counter("smartpkg_push_failed_attempts_total", &[])
            .increment(1);
        match s
            .push_retry_schedule_ms
            .get(d.cycle_attempts.max(0) as usize)
        {
            Some(wait) => AttemptOutcome::RetryAt(clock::now_ms() + *wait as i64),
            None => {
                m.counter("smartpkg_push_gave_up_total", &[]).increment(1);
                AttemptOutcome::GaveUp
            }
        }
    };
    if let Some(e) = &a.record.error {
        tracing::info!(delivery_id, event_id = %d.event.uid, error = ?e, ?outcome, "push attempt failed");
    }
    let verdict = if a.delivered {
        TargetVerdict::Succeeded
    } else {
        TargetVerdict::Failed {
            hold: smartpkg_core::push::HoldPolicy {
                after_failures: s.push_hold_after_failures,
                base_ms: s.push_hold_base_ms as i64,
                max_ms: s.push_hold_max_ms as i64,
                jitter: rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2),
            },
        }
    };
    let held = state
        .store
        .record_attempt(job.lease_ref(), delivery_id, a.record, outcome, verdict)
        .await?;
    if let Some(until) = held {
        m.counter("smartpkg_push_target_holds_total", &[])
            .increment(1);
        tracing::warn!(
            tp_id = %d.tp_id,
            hold_ms = until - clock::now_ms(),
            "push target keeps failing: its deliveries are on hold"
        );
    }
    if let AttemptOutcome::RetryAt(_) = outcome {
        state.jobs_ready.notify_one();
    }
    Ok(Outcome::Done)
}

async fn handle(state: &AppState, job: Job) {
    let result = match job.kind {
        JobKind::Push => push(state, &job).await,
        JobKind::Build => build(state, &job).await,
        JobKind::AutoAudit => auto_audit(state, &job).await,
        JobKind::FinishRollback => finish_rollback(state, &job).await,
    };
    let outcome = match &result {
        Ok(Outcome::Done) => "done",
        Ok(Outcome::Obsolete(_)) => "obsolete",
        Err(JobError::Transient(_)) => "retry",
        Err(JobError::LeaseLost) => "lease_lost",
    };
    state
        .metrics
        .counter(
            "smartpkg_jobs_total",
            &[("kind", job.kind.as_str()), ("outcome", outcome)],
        )
        .increment(1);
    let settle = match result {
        Ok(Outcome::Done) => Ok(()),
        Ok(Outcome::Obsolete(why)) => {
            tracing::debug!(
                job_id = job.job_id,
                kind = job.kind.as_str(),
                ?why,
                "job has nothing to do"
            );
            state.store.drop_job(job.lease_ref()).await
        }
        Err(JobError::LeaseLost) => {
            tracing::info!(
                job_id = job.job_id,
                kind = job.kind.as_str(),
                "lease lost to another worker; leaving the job to it"
            );
            Ok(())
        }
        Err(JobError::Transient(e)) => {
            let backoff = 1000i64
                .saturating_mul(1 << job.attempts.clamp(0, 6))
                .min(60_000);
            tracing::warn!(job_id = job.job_id, kind = job.kind.as_str(), error = ?e, backoff_ms = backoff, "job will run again");
            state
                .store
                .retry_job(job.lease_ref(), clock::now_ms() + backoff, e)
                .await
        }
    };
    if let Err(StoreError::LeaseLost(_)) = settle {
        tracing::info!(
            job_id = job.job_id,
            "lease lost to another worker before settling"
        );
    } else if let Err(e) = settle {
        // The lease runs out and the job is claimed again: nothing is lost.
        tracing::error!(job_id = job.job_id, error = %e, "could not settle job");
    }
}

/// Pushes a fresh ticket to every TP with an authorization-event URL, when the shared
/// schedule says it is time (one instance does it per interval).
async fn push_tickets(state: &AppState) -> Result<(), StoreError> {
    let s = &state.settings;
    let now = clock::now_ms();
    let interval_ms = (s.ticket_interval_s as i64).saturating_mul(1000);
    if !state
        .store
        .take_schedule(Schedule::TicketPush, now, interval_ms)
        .await?
    {
        return Ok(());
    }
    // Each dialect's ticket goes to that dialect's URL, when the third party has set it.
    for tp in state.store.tps_with_auth_url().await? {
        let urls = [
            (Dialect::Baidu, &tp.auth_event_url),
            (Dialect::Wechat, &tp.wechat.auth_event_url),
        ];
        for (dialect, url) in urls {
            if url.trim().is_empty() {
                continue;
            }
            let ticket = crate::secrets::random_alnum(48);
            let expires = now.saturating_add((s.ticket_ttl_s as i64).saturating_mul(1000));
            state
                .store
                .push_ticket(
                    tp.tp_id,
                    dialect,
                    crate::secrets::sha256_hex(&ticket),
                    expires,
                    ticket,
                    now,
                )
                .await?;
        }
    }
    state.jobs_ready.notify_one();
    Ok(())
}

/// Deletes what nobody may use any more, when the shared schedule says it is time.
async fn janitor(state: &AppState) -> Result<(), StoreError> {
    let s = &state.settings;
    let now = clock::now_ms();
    let interval_ms = (s.janitor_interval_s as i64).saturating_mul(1000);
    if !state
        .store
        .take_schedule(Schedule::Janitor, now, interval_ms)
        .await?
    {
        return Ok(());
    }
    let ms = |secs: u64| (secs as i64).saturating_mul(1000);
    let swept = state
        .store
        .sweep(
            now,
            smartpkg_store::SweepPolicy {
                used_credential_retention_ms: ms(s.used_credential_retention_s),
                retired_package_retention_ms: ms(s.retired_package_retention_s),
                report_retention_ms: ms(s.report_retention_days.saturating_mul(24 * 3600)),
            },
        )
        .await?;
    for (what, n) in [
        ("codes", swept.codes),
        ("tickets", swept.tickets),
        ("tokens", swept.tokens),
        ("packages_trimmed", swept.packages_trimmed),
        ("sessions", swept.sessions),
        ("report_hours", swept.report_hours),
    ] {
        state
            .metrics
            .counter("smartpkg_janitor_removed_total", &[("what", what)])
            .increment(n);
    }
    tracing::info!(
        codes = swept.codes,
        tickets = swept.tickets,
        tokens = swept.tokens,
        packages_trimmed = swept.packages_trimmed,
        sessions = swept.sessions,
        "janitor swept"
    );
    Ok(())
}

/// Merges this instance's report aggregates into the store; a failed merge puts them back, so
/// only a killed process loses what it held (at most one interval).
pub async fn flush_reports(state: &AppState) -> Result<usize, StoreError> {
    let dropped = state
        .reports
        .dropped
        .swap(0, std::sync::atomic::Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "device reports dropped: the interval's memory budget was spent before a flush"
        );
        state
            .metrics
            .counter("smartpkg_reports_total", &[("outcome", "dropped")])
            .increment(dropped);
    }
    let cells = state.reports.take();
    if cells.is_empty() {
        return Ok(0);
    }
    let n = cells.len();
    // In chunks, each its own transaction: SQLite's one writer is never held for long by a
    // large interval, and a chunk merged is never sent again. A failed chunk and those after
    // it are put back for the next flush.
    let mut rest = cells;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(FLUSH_CHUNK));
        // The store takes the cells by value; a copy is kept to put back on failure.
        if let Err(e) = state.store.merge_reports(rest.clone()).await {
            rest.extend(tail);
            state.reports.put_back(rest);
            return Err(e);
        }
        rest = tail;
    }
    Ok(n)
}

/// Cells merged per transaction by a flush.
const FLUSH_CHUNK: usize = 1000;

/// The most hours of a step the gate reads: a long step is judged on its last three days
/// (each hour's sketches are read and united on every evaluation).
const GATE_HOURS: i64 = 72;

/// One version's figures since `from_ms`: distinct devices that launched it and distinct
/// devices on which it failed.
async fn sample(
    state: &AppState,
    package_id: smartpkg_core::ids::PackageId,
    from_ms: i64,
    now_ms: i64,
) -> Result<smartpkg_core::health::Sample, StoreError> {
    use smartpkg_core::health::{ReportEvent, Sample, HOUR_MS};
    let to = now_ms.div_euclid(HOUR_MS);
    let from = from_ms.div_euclid(HOUR_MS).max(to - GATE_HOURS + 1);
    let launched = state
        .store
        .report_devices(package_id, vec![ReportEvent::Launched], from, to)
        .await?;
    let failed = state
        .store
        .report_devices(
            package_id,
            vec![ReportEvent::LaunchFailed, ReportEvent::Crashed],
            from,
            to,
        )
        .await?;
    Ok(Sample {
        launched: launched.count(),
        failed: failed.count(),
    })
}

/// Judges every running plan once, when the shared schedule says it is time: a healthy step
/// past its shortest time advances, an unhealthy one halts. Each move is a decision through
/// the core, so an instance that judged late is refused rather than moving a step twice.
pub async fn evaluate_plans(state: &AppState) -> Result<(), StoreError> {
    use smartpkg_core::stage::{next, Next};
    let now = clock::now_ms();
    let interval_ms = (state.settings.health_eval_interval_s as i64).saturating_mul(1000);
    if !state
        .store
        .take_schedule(Schedule::HealthEval, now, interval_ms)
        .await?
    {
        return Ok(());
    }
    for staged in state.store.staged_plans().await? {
        let Some(plan) = &staged.plan else { continue };
        if !plan.auto || plan.status != smartpkg_core::stage::PlanStatus::Running {
            continue;
        }
        // The hours of the step: both versions measured on the devices each served then.
        let from = plan.step_started_ms;
        let new = sample(state, staged.package_id, from, now).await?;
        let old = match staged.online {
            Some(id) => Some(sample(state, id, from, now).await?),
            None => None,
        };
        let cmd = match next(plan, now, new, old) {
            Next::Wait(_) => continue,
            Next::Advance => Command::AdvanceStage {
                package_id: staged.package_id,
                from_step: plan.step,
                at_ms: now,
            },
            Next::Halt(figures) => Command::HaltStage {
                package_id: staged.package_id,
                from_step: plan.step,
                figures,
            },
        };
        let decided = state
            .execute(
                staged.app_id.get(),
                cmd,
                smartpkg_store::Actor::System,
                None,
            )
            .await?;
        match decided {
            Ok(_) => tracing::info!(
                package_id = staged.package_id.get(),
                "staged release plan moved"
            ),
            Err(r) => tracing::info!(
                package_id = staged.package_id.get(),
                reason = %r,
                "staged release plan left as it was"
            ),
        }
    }
    Ok(())
}

/// Runs both lanes and the ticket schedule until `shutdown` turns true, then waits for the
/// jobs in flight.
pub async fn run(state: AppState, shutdown: watch::Receiver<bool>) {
    let s = &state.settings;
    let platform = tokio::spawn(run_lane(
        state.clone(),
        Lane::Platform,
        s.job_concurrency,
        shutdown.clone(),
    ));
    let deliveries = tokio::spawn(run_lane(
        state.clone(),
        Lane::Deliveries {
            per_target: s.push_per_target,
            failing_slots: 0,
        },
        s.push_concurrency,
        shutdown.clone(),
    ));
    let mut shutdown = shutdown;
    let mut next_upkeep = std::time::Instant::now();
    let flush_every = Duration::from_secs(s.report_flush_interval_s);
    let mut next_flush = std::time::Instant::now() + flush_every;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if std::time::Instant::now() >= next_flush || state.reports.pressing() {
            next_flush = std::time::Instant::now() + flush_every;
            if let Err(e) = flush_reports(&state).await {
                tracing::error!(error = %e, "cannot flush reports; kept for the next flush");
            }
        }
        if let Err(e) = evaluate_plans(&state).await {
            tracing::error!(error = %e, "cannot evaluate staged release plans");
        }
        if std::time::Instant::now() >= next_upkeep {
            next_upkeep = std::time::Instant::now() + Duration::from_secs(5);
            state.metrics.upkeep();
        }
        if let Err(e) = push_tickets(&state).await {
            tracing::error!(error = %e, "cannot push tickets");
        }
        if let Err(e) = janitor(&state).await {
            tracing::error!(error = %e, "janitor failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => {}
        }
    }
    // A graceful stop keeps every report received.
    if let Err(e) = flush_reports(&state).await {
        tracing::error!(error = %e, "cannot flush reports at shutdown");
    }
    drop(state);
    let _ = platform.await;
    let _ = deliveries.await;
}

/// Claims and runs the jobs of one lane with `concurrency` slots. In the deliveries lane, at
/// most half the slots go to targets in a failing run, so that slow receivers can never take
/// every slot from healthy ones.
async fn run_lane(
    state: AppState,
    lane: Lane,
    concurrency: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let kind = match lane {
        Lane::Platform => LaneKind::Platform,
        Lane::Deliveries { .. } => LaneKind::Deliveries,
    };
    let lease = state.settings.job_lease_ms as i64;
    let slots = Arc::new(Semaphore::new(concurrency));
    let degraded_slots = Arc::new(Semaphore::new((concurrency / 2).max(1)));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let free = slots.available_permits();
        let lane = match lane {
            Lane::Deliveries { per_target, .. } => Lane::Deliveries {
                per_target,
                failing_slots: degraded_slots.available_permits(),
            },
            other => other,
        };
        let mut wait = Duration::from_secs(1);
        if free > 0 {
            match state
                .store
                .claim_jobs(clock::now_ms(), free, lease, lane)
                .await
            {
                Ok(jobs) => {
                    let full = jobs.len() == free;
                    for job in jobs {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        // The claim stayed within the failing share, so this never waits long.
                        let degraded = match job.degraded {
                            true => match degraded_slots.clone().acquire_owned().await {
                                Ok(p) => Some(p),
                                Err(_) => return,
                            },
                            false => None,
                        };
                        let (st, free_slots) = (state.clone(), slots.clone());
                        tokio::spawn(async move {
                            handle(&st, job).await;
                            let signal = st.jobs_ready.clone();
                            // The state (and with it the store and its lock) is released before
                            // the slot: once the lane has every slot back, no job holds the store.
                            drop(st);
                            drop(degraded);
                            drop(permit);
                            let starved = signal.free(kind) == 0;
                            signal.set_free(kind, free_slots.available_permits());
                            // Only now: a lane woken before the slot is back finds none free
                            // and would sleep on. The platform lane is woken only when it
                            // had no free slot (otherwise new work wakes it, and a wake-up
                            // per finished job cost a claim that found nothing); the
                            // deliveries lane always, since a finished push may lift a
                            // per-target cap that held a due one back.
                            if starved || kind == LaneKind::Deliveries {
                                signal.of(kind).notify_one();
                            }
                        });
                    }
                    if full {
                        // More may be due; claim again once a slot frees.
                        wait = Duration::ZERO;
                    } else if let Ok(Some(due)) = state.store.next_job_due(kind).await {
                        // A job already due that the claim left out is held back by a cap:
                        // a finishing job wakes us for it, so do not spin.
                        let ms = due - clock::now_ms();
                        wait =
                            Duration::from_millis(if ms <= 0 { 1000 } else { ms.min(1000) as u64 });
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot claim jobs"),
            }
        }
        state.jobs_ready.set_free(kind, slots.available_permits());
        if slots.available_permits() == 0 {
            // Every slot is busy: a finishing job wakes us (it notifies), else look again in 1 s.
            wait = Duration::from_secs(1);
        }
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = state.jobs_ready.of(kind).notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
    let _ = slots.acquire_many(concurrency as u32).await;
}

/// Makes the archive of a package (the template's files and the built `ext.json`), stores it
/// as a blob and records it; the archive recorded first wins, so every instance serves the
/// same bytes for a package.
pub async fn make_archive(state: &AppState, package_id: i64) -> Result<(String, i64), String> {
    let _one = state.archive_making.lock().await;
    let p = state
        .store
        .get_package(PackageId(package_id))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("package {package_id} is gone"))?;
    if let (Some(s), Some(n)) = (p.archive_sha256, p.archive_size) {
        return Ok((s, n));
    }
    let ext_json = p
        .built_ext_json
        .ok_or_else(|| format!("package {package_id} was never built"))?;
    let (bytes, manifest) = template_bytes(state, p.template_id.get()).await?;
    let tmp_dir = state.settings.data_dir.join("tmp");
    let archive = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        use std::io::{Read, Seek, SeekFrom};
        std::fs::create_dir_all(&tmp_dir).map_err(|e| e.to_string())?;
        let file = tempfile::tempfile_in(&tmp_dir).map_err(|e| e.to_string())?;
        let mut file = smartpkg_core::archive::write_package(&bytes, &manifest, &ext_json, file)
            .map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        file.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())??;
    let size = archive.len() as i64;
    let sha = state.blobs.put(archive).await.map_err(|e| e.to_string())?;
    state
        .store
        .set_package_archive(PackageId(package_id), sha, size)
        .await
        .map_err(|e| e.to_string())
}
