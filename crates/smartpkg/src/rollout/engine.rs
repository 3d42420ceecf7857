//! Driving every mini program of a plan: upload → built → submitted (within the quota) →
//! audited → released per the policy. One task per mini program; a semaphore bounds the calls
//! in flight; every step is saved before it is acted on (see [`super::state`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smartpkg_client::types::{GetDetailRequest, PackageInfo, SubmitAuditRequest, UploadRequest};
use smartpkg_client::{Client, ClientError, WireStatus};
use smartpkg_types::Errno;
use tokio::sync::{watch, Notify, Semaphore};

use super::plan::{AppEntry, OnQuota, Plan, ReleasePolicy};
use super::progress::Progress;
use super::state::{AppState, StateFile, Step};

/// The canaries' verdict, which the other mini programs' releases wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Waiting,
    Open,
    Closed,
}

/// The canary gate of one platform: its first `first` mini programs are released as they
/// pass; the others wait until every canary is online, and are held when one cannot get there
/// in this run.
pub struct Canaries {
    first: usize,
    gate: watch::Sender<Gate>,
    online: Mutex<usize>,
}

impl Canaries {
    /// Without the canary policy everyone may go at once.
    pub fn new(release: ReleasePolicy, first: usize) -> Canaries {
        let canary = release == ReleasePolicy::Canary;
        let (gate, _) = watch::channel(if canary { Gate::Waiting } else { Gate::Open });
        Canaries {
            first: if canary { first } else { 0 },
            gate,
            online: Mutex::new(0),
        }
    }

    /// Mini program `idx` settled in `step` for this run.
    pub fn finished(&self, idx: usize, step: Step) {
        if idx >= self.first {
            return;
        }
        if step == Step::Online {
            let mut n = self.online.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            if *n >= self.first {
                self.gate.send_replace(Gate::Open);
            }
        } else if step.is_final() || step == Step::WaitingQuota {
            // A canary that cannot go online in this run closes the gate for this run; the
            // next run looks again (held mini programs are reconsidered).
            self.gate.send_replace(Gate::Closed);
        }
    }

    /// Whether mini program `idx` may be released: at once for a canary (or without the
    /// policy), else once the canaries' verdict is in.
    pub async fn may_release(&self, idx: usize) -> bool {
        if idx < self.first {
            return true;
        }
        let mut gate = self.gate.subscribe();
        gate.wait_for(|g| *g != Gate::Waiting)
            .await
            .map(|g| *g == Gate::Open)
            .unwrap_or(false)
    }
}

/// An audit result pushed to the rollout's receiver.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub passed: bool,
    pub reason: Option<String>,
}

pub struct Engine {
    pub plan: Plan,
    pub client: Client,
    pub state: StateFile,
    pub progress: Arc<Progress>,
    tp_token: Option<String>,
    permits: Semaphore,
    canaries: Canaries,
    /// When the quota renews, once a submission was refused for it (policy `stop`).
    pub quota_stopped_until: Mutex<Option<chrono::DateTime<chrono::FixedOffset>>>,
    verdicts: Mutex<HashMap<i64, Verdict>>,
    verdict_news: Notify,
}

/// Retries of transient failures for up to the plan's `retry_for_s`, each told, 200 ms
/// doubling up to `poll_max_ms`.
struct Backoff {
    started: Instant,
    limit: Duration,
    wait: Duration,
    max: Duration,
}

impl Backoff {
    /// Whether `e` may be tried again now (for `writes`, only when nothing can have happened).
    fn may_retry(&self, e: &ClientError, writes: bool) -> bool {
        e.may_retry(writes) && self.started.elapsed() < self.limit
    }

    async fn wait(&mut self, engine: &Engine, app_id: i64, e: &ClientError) {
        engine.progress.note_retry(app_id, e);
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(self.max);
    }
}

/// Why a step could not go on.
enum Stop {
    /// A refusal or failure that ends this mini program's rollout.
    Fail(Step, Option<i64>, String),
    /// Storage of the rollout's own state failed: nothing more can be promised.
    State(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Stop {
        Stop::State(e)
    }
}

fn fail(e: &ClientError) -> Stop {
    Stop::Fail(
        Step::Error,
        e.errno().map(|x| x.code()),
        crate::tool::describe(e),
    )
}

/// The credentials the plan gives an entry, as kept in the state file: a refresh replaces the
/// tokens in use, so only this tells whether the plan itself changed since.
fn given_tokens(entry: &AppEntry) -> String {
    serde_json::json!([entry.access_token, entry.refresh_token]).to_string()
}

/// Baidu's audit week starts on Monday, 00:00 Beijing time.
pub fn next_quota_renewal(
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::{Datelike, Duration as D, TimeZone};
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let local = now.with_timezone(&beijing);
    let days = 7 - local.weekday().num_days_from_monday() as i64;
    let monday = (local.date_naive() + D::days(days))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    beijing
        .from_local_datetime(&monday)
        .single()
        .expect("a fixed offset has no gaps")
}

impl Engine {
    pub fn new(
        plan: Plan,
        client: Client,
        state: StateFile,
        progress: Arc<Progress>,
        tp_token: Option<String>,
    ) -> Engine {
        let permits = Semaphore::new(plan.concurrency);
        let canaries = Canaries::new(plan.release, plan.canaries);
        Engine {
            plan,
            client,
            state,
            progress,
            tp_token,
            permits,
            canaries,
            quota_stopped_until: Mutex::new(None),
            verdicts: Mutex::new(HashMap::new()),
            verdict_news: Notify::new(),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            started: Instant::now(),
            limit: Duration::from_secs(self.plan.retry_for_s),
            wait: Duration::from_millis(200),
            max: Duration::from_millis(self.plan.poll_max_ms.max(200)),
        }
    }

    /// A pushed audit result (from the rollout's receiver).
    pub fn verdict(&self, package_id: i64, v: Verdict) {
        if let Ok(mut m) = self.verdicts.lock() {
            m.insert(package_id, v);
        }
        self.verdict_news.notify_waiters();
    }

    /// Sets the canary gate from the states the canaries are in (at start, from the state
    /// file; later, as each finishes).
    fn canary_finished(&self, idx: usize, step: Step) {
        self.canaries.finished(idx, step);
    }

    /// Drives one mini program as far as it can go; its last state.
    pub async fn drive(self: Arc<Self>, idx: usize) -> anyhow::Result<AppState> {
        let entry = &self.plan.apps[idx];
        let (mut s, resumed) = match self.state.load(entry.app_id)? {
            Some(s) => (s, true),
            None => {
                let s = AppState {
                    app_id: entry.app_id,
                    step: Step::Pending,
                    package_id: None,
                    errno: None,
                    reason: None,
                    access_token: entry.access_token.clone(),
                    refresh_token: entry.refresh_token.clone(),
                    token_app_id: None,
                    given: given_tokens(entry),
                };
                self.state.save(&s)?;
                (s, false)
            }
        };
        self.progress.enter(s.step);
        if s.step == Step::Error
            && s.package_id.is_none()
            && s.token_app_id.is_some_and(|owner| owner != s.app_id)
            && s.given != given_tokens(entry)
        {
            // Refused last time for a token of another mini program, and the plan gives other
            // tokens now: nothing was written, so start again with them.
            s.access_token = entry.access_token.clone();
            s.refresh_token = entry.refresh_token.clone();
            s.token_app_id = None;
            s.given = given_tokens(entry);
            self.set(&mut s, Step::Pending, None, None)?;
        }
        if !s.step.is_final() {
            if let Err(stop) = self.check_token(&mut s).await {
                match stop {
                    Stop::Fail(step, errno, reason) => {
                        self.set(&mut s, step, errno, Some(reason))?;
                        self.canary_finished(idx, s.step);
                        return Ok(s);
                    }
                    Stop::State(e) => return Err(e),
                }
            }
        }
        if s.step == Step::Held {
            // Held is only final for the run that decided it: the gate may open this time.
            self.set(&mut s, Step::Passed, None, None)?;
        }
        if s.step == Step::WaitingQuota {
            self.set(&mut s, Step::Built, None, None)?;
        }
        if resumed && !s.step.is_final() {
            match self.reconcile(&mut s).await {
                Ok(()) => {}
                Err(Stop::Fail(step, errno, reason)) => {
                    self.set(&mut s, step, errno, Some(reason))?;
                }
                Err(Stop::State(e)) => return Err(e),
            }
        }
        let result = self.pipeline(idx, entry, &mut s).await;
        match result {
            Ok(()) => {}
            Err(Stop::Fail(step, errno, reason)) => self.set(&mut s, step, errno, Some(reason))?,
            Err(Stop::State(e)) => return Err(e),
        }
        self.canary_finished(idx, s.step);
        Ok(s)
    }

    fn set(
        &self,
        s: &mut AppState,
        step: Step,
        errno: Option<i64>,
        reason: Option<String>,
    ) -> anyhow::Result<()> {
        let from = s.step;
        s.step = step;
        s.errno = errno;
        s.reason = reason;
        self.state.save(s)?;
        self.progress
            .moved(s.app_id, from, step, s.package_id, s.reason.as_deref());
        Ok(())
    }

    async fn pipeline(&self, idx: usize, entry: &AppEntry, s: &mut AppState) -> Result<(), Stop> {
        loop {
            match s.step {
                Step::Pending => self.upload(entry, s).await?,
                Step::Uploading => self.reconcile(s).await?,
                Step::Uploaded => self.wait_built(s).await?,
                Step::Built | Step::WaitingQuota => {
                    if !self.submit(s).await? {
                        return Ok(());
                    }
                }
                Step::Submitted => self.wait_audit(s).await?,
                Step::Passed => {
                    if !self.release(idx, s).await? {
                        return Ok(());
                    }
                }
                Step::Staged => self.wait_plan(s).await?,
                Step::Online
                | Step::BuildFailed
                | Step::AuditFailed
                | Step::Held
                | Step::Halted
                | Step::Error => return Ok(()),
            }
        }
    }

    /// The mini program's access token, got first when only a refresh token is known. The
    /// outer error ends the mini program's rollout (a token of another mini program, or the
    /// state file failing); the inner one is the platform's answer.
    async fn token(&self, s: &mut AppState) -> Result<Result<String, ClientError>, Stop> {
        if let Some(t) = &s.access_token {
            return Ok(Ok(t.clone()));
        }
        self.refresh(s).await
    }

    async fn refresh(&self, s: &mut AppState) -> Result<Result<String, ClientError>, Stop> {
        let Some(tp) = self.tp_token.as_deref() else {
            return Ok(Err(ClientError::Gateway {
                code: 110,
                msg: "the access token was refused and there is no third-party token to renew it"
                    .into(),
            }));
        };
        let refreshed = match s.refresh_token.clone() {
            Some(r) => {
                let _p = self.permits.acquire().await;
                self.client.refresh_app_token(tp, &r).await
            }
            None => Err(ClientError::OAuth {
                error: "invalid_request".into(),
                description: "no refresh token".into(),
            }),
        };
        let pair = match refreshed {
            Ok(p) => p,
            // Spent already — by a run that died before it could keep the new pair — or
            // never given: the third party may ask for a fresh authorization code of an app
            // authorized to it and exchange that.
            Err(ClientError::OAuth { .. }) => {
                let _p = self.permits.acquire().await;
                let code = match self.client.retrieve_authorization_code(tp, s.app_id).await {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e)),
                };
                match self
                    .client
                    .exchange_code(tp, &code.authorization_code)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(e)),
                }
            }
            Err(e) => return Ok(Err(e)),
        };
        // Kept before it is used: the old refresh token is spent now. Whose token it is was
        // not known yet: a refresh token of another mini program gives that one's tokens.
        s.access_token = Some(pair.access_token.clone());
        s.refresh_token = Some(pair.refresh_token);
        s.token_app_id = None;
        self.state.save(s)?;
        if let Err(e) = self.verify(s).await? {
            return Ok(Err(e));
        }
        Ok(Ok(pair.access_token))
    }

    /// Asks the platform which mini program the current access token belongs to (`app/info`),
    /// and ends this mini program's rollout when it is another one: every later call would
    /// write to that other mini program. Called before anything is written, and again for
    /// every token a refresh brings.
    async fn verify(&self, s: &mut AppState) -> Result<Result<(), ClientError>, Stop> {
        let Some(token) = s.access_token.clone() else {
            return Ok(Ok(()));
        };
        // A read: retried on transient failures like any other (a restarting server must not
        // turn into a refused entry).
        let mut backoff = self.backoff();
        let info = loop {
            let result = {
                let _p = self.permits.acquire().await;
                self.client.app_info(&token).await
            };
            match result {
                Err(e) if backoff.may_retry(&e, false) => backoff.wait(self, s.app_id, &e).await,
                other => break other,
            }
        };
        let info = match info {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        s.token_app_id = Some(info.app_id);
        self.state.save(s)?;
        if info.app_id != s.app_id {
            return Err(Stop::Fail(
                Step::Error,
                None,
                format!(
                    "the token given for mini program {} belongs to mini program {}; nothing was written with it",
                    s.app_id, info.app_id
                ),
            ));
        }
        Ok(Ok(()))
    }

    /// One call with the mini program's token: refreshed once on a token error, retried on
    /// transient failures for up to `retry_for_s` — for `writes`, only when a retry cannot
    /// repeat something that happened (see [`ClientError::may_retry`]). The outer error ends
    /// the mini program's rollout whatever the caller would make of the platform's answer.
    async fn call_as<T, F, Fut>(
        &self,
        s: &mut AppState,
        writes: bool,
        f: F,
    ) -> Result<Result<T, ClientError>, Stop>
    where
        F: Fn(Client, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut backoff = self.backoff();
        let mut refreshed = false;
        loop {
            let result = match self.token(s).await? {
                Ok(token) => {
                    let _p = self.permits.acquire().await;
                    f(self.client.clone(), token).await
                }
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_token_error() && !refreshed && self.tp_token.is_some() => {
                    refreshed = true;
                    s.access_token = None;
                }
                Err(e) if backoff.may_retry(&e, writes) => backoff.wait(self, s.app_id, &e).await,
                other => return Ok(other),
            }
        }
    }

    /// [`Engine::call_as`] for calls that are safe to repeat (reads, and writes whose repeat
    /// the platform refuses with an errno that [`Engine::reconcile`] resolves).
    async fn call<T, F, Fut>(&self, s: &mut AppState, f: F) -> Result<Result<T, ClientError>, Stop>
    where
        F: Fn(Client, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.call_as(s, false, f).await
    }

    /// Makes sure the mini program's token is its own before the first write of this run
    /// (a state file of an earlier run may hold a token never checked).
    async fn check_token(&self, s: &mut AppState) -> Result<(), Stop> {
        if s.token_app_id == Some(s.app_id) {
            return Ok(());
        }
        if s.access_token.is_none() {
            // Refreshing checks the token it brings.
            return self.token(s).await?.map(|_| ()).map_err(|e| fail(&e));
        }
        match self.verify(s).await? {
            Ok(()) => Ok(()),
            // An expired token: a refresh brings one, which is checked in turn.
            Err(e) if e.is_token_error() && self.tp_token.is_some() => {
                s.access_token = None;
                self.token(s).await?.map(|_| ()).map_err(|e| fail(&e))
            }
            Err(e) => Err(fail(&e)),
        }
    }

    async fn upload(&self, entry: &AppEntry, s: &mut AppState) -> Result<(), Stop> {
        let ext_json = self
            .plan
            .render(entry)
            .map_err(|e| Stop::Fail(Step::Error, None, format!("{e:#}")))?;
        // The intent first: if we die during the call, the next run checks before uploading.
        self.set(s, Step::Uploading, None, None)?;
        let req = UploadRequest {
            template_id: self.plan.template_id,
            ext_json,
            user_version: self.plan.version.clone(),
            user_desc: self.plan.description.clone(),
            test_account: None,
            test_password: None,
        };
        let result = self
            .call_as(s, true, |c, t| {
                let req = req.clone();
                async move { c.upload(&t, &req).await }
            })
            .await?;
        match result {
            Ok(()) => Ok(self.set(s, Step::Uploaded, None, None)?),
            // The request may or may not have arrived: look before anything else.
            Err(ClientError::Transport { .. }) | Err(ClientError::Status { .. }) => {
                self.reconcile(s).await
            }
            Err(e) => Err(fail(&e)),
        }
    }

    /// Reads the platform's view and puts the mini program where its package of this version
    /// stands. Never uploads: a package that was confirmed uploaded and is now gone is an
    /// error, not a reason to upload again.
    async fn reconcile(&self, s: &mut AppState) -> Result<(), Stop> {
        let rows = self
            .call(s, |c, t| async move { c.get(&t).await })
            .await?
            .map_err(|e| fail(&e))?;
        let ours: Vec<&PackageInfo> = rows
            .iter()
            .filter(|r| r.version.as_deref() == Some(self.plan.version.as_str()))
            .collect();
        let pick = |st: WireStatus| ours.iter().find(|r| r.status == Some(st)).copied();
        let (step, pkg, reason) = if let Some(r) = pick(WireStatus::Online) {
            (Step::Online, r.package_id, None)
        } else if let Some(r) = pick(WireStatus::AuditPassed) {
            (Step::Passed, r.package_id, None)
        } else if let Some(r) = pick(WireStatus::Auditing) {
            (Step::Submitted, r.package_id, None)
        } else if let Some(r) = pick(WireStatus::AuditFailed) {
            (Step::AuditFailed, r.package_id, r.msg.clone())
        } else if let Some(r) = pick(WireStatus::Development) {
            (Step::Built, r.package_id, None)
        } else if let Some(r) = ours.iter().find(|r| r.status.is_none()) {
            if r.upload_status == Some(smartpkg_types::upload_status::FAILED) {
                let errno = r.upload_err_code;
                let msg = r.upload_err_msg.clone().unwrap_or_default();
                return Err(Stop::Fail(Step::BuildFailed, errno, msg));
            }
            (Step::Uploaded, None, None)
        } else if matches!(s.step, Step::Pending | Step::Uploading) {
            // The upload never arrived: it may be sent (once) now.
            s.step = Step::Uploading;
            return Ok(self.set(s, Step::Pending, None, None)?);
        } else {
            return Err(Stop::Fail(
                Step::Error,
                None,
                format!(
                    "the platform no longer shows version {} (replaced by another upload?); not uploading it again",
                    self.plan.version
                ),
            ));
        };
        if pkg.is_some() {
            s.package_id = pkg;
        }
        Ok(self.set(s, step, None, reason)?)
    }

    async fn wait_built(&self, s: &mut AppState) -> Result<(), Stop> {
        let mut wait = Duration::from_millis(20);
        loop {
            let rows = self
                .call(s, |c, t| async move { c.get(&t).await })
                .await?
                .map_err(|e| fail(&e))?;
            let row = rows.iter().find(|r| {
                r.version.as_deref() == Some(self.plan.version.as_str())
                    && r.status.is_none_or(|st| st == WireStatus::Development)
            });
            match row {
                Some(r) if r.package_id.is_some() => {
                    s.package_id = r.package_id;
                    return Ok(self.set(s, Step::Built, None, None)?);
                }
                Some(r) if r.upload_status == Some(smartpkg_types::upload_status::FAILED) => {
                    return Err(Stop::Fail(
                        Step::BuildFailed,
                        r.upload_err_code,
                        r.upload_err_msg.clone().unwrap_or_default(),
                    ));
                }
                Some(_) => {}
                // Not listed: another step already moved it on (resumed), so look again.
                None => return self.reconcile(s).await,
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(self.plan.poll_max_ms));
        }
    }

    /// Submits for audit; false when the quota stops this mini program for now.
    async fn submit(&self, s: &mut AppState) -> Result<bool, Stop> {
        if let Some(until) = *self
            .quota_stopped_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            self.set(
                s,
                Step::WaitingQuota,
                Some(Errno::AuditQuotaExceeded.code()),
                Some(format!(
                    "the weekly audit quota is spent; it renews at {until}"
                )),
            )?;
            return Ok(false);
        }
        let Some(package_id) = s.package_id else {
            return Err(Stop::Fail(
                Step::Error,
                None,
                "built without a package id".into(),
            ));
        };
        let req = SubmitAuditRequest {
            package_id,
            content: self.plan.audit_content().to_string(),
            remark: String::new(),
            test_account: None,
            test_password: None,
        };
        loop {
            let result = self
                .call(s, |c, t| {
                    let req = req.clone();
                    async move { c.submit_audit(&t, &req).await }
                })
                .await?;
            match result {
                Ok(()) => {
                    self.set(s, Step::Submitted, None, None)?;
                    return Ok(true);
                }
                Err(e) if e.errno() == Some(Errno::AuditQuotaExceeded) => {
                    let renews = next_quota_renewal(chrono::Utc::now());
                    match self.plan.on_quota {
                        OnQuota::Stop => {
                            *self
                                .quota_stopped_until
                                .lock()
                                .unwrap_or_else(|p| p.into_inner()) = Some(renews);
                            self.set(
                                s,
                                Step::WaitingQuota,
                                Some(Errno::AuditQuotaExceeded.code()),
                                Some(format!(
                                    "the weekly audit quota is spent; it renews at {renews}"
                                )),
                            )?;
                            return Ok(false);
                        }
                        OnQuota::Wait => {
                            self.set(
                                s,
                                Step::WaitingQuota,
                                Some(Errno::AuditQuotaExceeded.code()),
                                Some(format!("waiting for the audit quota to renew at {renews}")),
                            )?;
                            self.wait_for_quota(s, renews).await?;
                            self.set(s, Step::Built, None, None)?;
                        }
                    }
                }
                // Already submitted (a run that died after the call): look where it is.
                Err(e) if matches!(e.errno(), Some(Errno::WrongState | Errno::AuditInFlight)) => {
                    self.reconcile(s).await?;
                    return Ok(true);
                }
                Err(e) => return Err(fail(&e)),
            }
        }
    }

    async fn wait_for_quota(
        &self,
        s: &mut AppState,
        renews: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<(), Stop> {
        loop {
            let q = self
                .call(s, |c, t| async move { c.audit_quota(&t).await })
                .await?
                .map_err(|e| fail(&e))?;
            if q.remain_times != 0 {
                return Ok(());
            }
            let until = (renews.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            let nap = until.min(Duration::from_millis(self.plan.poll_max_ms.max(1000)));
            tokio::time::sleep(nap).await;
        }
    }

    async fn wait_audit(&self, s: &mut AppState) -> Result<(), Stop> {
        let Some(package_id) = s.package_id else {
            return Err(Stop::Fail(
                Step::Error,
                None,
                "submitted without a package id".into(),
            ));
        };
        let mut wait = Duration::from_millis(20);
        loop {
            let pushed = self
                .verdicts
                .lock()
                .ok()
                .and_then(|m| m.get(&package_id).cloned());
            if let Some(v) = pushed {
                return self.decided(s, v.passed, v.reason);
            }
            match self.detail(s, package_id).await? {
                Ok(p) => match p.status {
                    Some(WireStatus::Auditing) => {}
                    Some(WireStatus::AuditPassed) | Some(WireStatus::Online) => {
                        return self.decided(s, true, None)
                    }
                    Some(WireStatus::AuditFailed) => return self.decided(s, false, p.msg),
                    Some(WireStatus::Development) => {
                        return Err(Stop::Fail(
                            Step::Error,
                            None,
                            "the audit was withdrawn by someone else".into(),
                        ))
                    }
                    other => {
                        return Err(Stop::Fail(
                            Step::Error,
                            None,
                            format!("unexpected status {other:?} while auditing"),
                        ))
                    }
                },
                Err(e) => return Err(fail(&e)),
            }
            // A push wakes us early; polling stays as the fallback (a push may have been
            // sent while this rollout was not running).
            let _ = tokio::time::timeout(wait, self.verdict_news.notified()).await;
            wait = (wait * 2).min(Duration::from_millis(self.plan.poll_max_ms));
        }
    }

    fn decided(&self, s: &mut AppState, passed: bool, reason: Option<String>) -> Result<(), Stop> {
        if passed {
            Ok(self.set(s, Step::Passed, None, None)?)
        } else {
            Err(Stop::Fail(
                Step::AuditFailed,
                None,
                reason.unwrap_or_default(),
            ))
        }
    }

    /// `getdetail` of one package.
    async fn detail(
        &self,
        s: &mut AppState,
        package_id: i64,
    ) -> Result<Result<smartpkg_types::PackageInfo, ClientError>, Stop> {
        self.call(s, |c, t| async move {
            c.get_detail(
                &t,
                &GetDetailRequest {
                    status: None,
                    package_id: Some(package_id),
                },
            )
            .await
        })
        .await
    }

    /// Waits for the staged release's plan: finished → online; halted → stopped there.
    async fn wait_plan(&self, s: &mut AppState) -> Result<(), Stop> {
        let Some(package_id) = s.package_id else {
            return Err(Stop::Fail(
                Step::Error,
                None,
                "staged without a package id".into(),
            ));
        };
        let mut wait = Duration::from_millis(200);
        loop {
            let p = self.detail(s, package_id).await?.map_err(|e| fail(&e))?;
            match (p.status, p.gray_status.as_deref()) {
                (Some(WireStatus::Online), _) | (_, Some("finished")) => {
                    self.set(s, Step::Online, None, None)?;
                    return Ok(());
                }
                (_, Some("halted")) => {
                    return Err(Stop::Fail(
                        Step::Halted,
                        None,
                        "the platform's health gate halted the staged release (its figures are in the console; resume or abandon it there)".into(),
                    ))
                }
                (Some(WireStatus::AuditPassed), Some("running")) => {}
                (status, gray) => {
                    return Err(Stop::Fail(
                        Step::Error,
                        None,
                        format!(
                            "the staged release ended otherwise: status {:?}, gray_status {gray:?} (reverted by hand?)",
                            status.map(|w| w.code())
                        ),
                    ))
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(self.plan.poll_max_ms));
        }
    }

    /// Releases per the policy; false when the mini program stops at "passed".
    async fn release(&self, idx: usize, s: &mut AppState) -> Result<bool, Stop> {
        if self.plan.release == ReleasePolicy::None {
            return Ok(false);
        }
        if !self.canaries.may_release(idx).await {
            self.set(
                s,
                Step::Held,
                None,
                Some("not released: not every canary went online".into()),
            )?;
            return Ok(false);
        }
        let Some(package_id) = s.package_id else {
            return Err(Stop::Fail(
                Step::Error,
                None,
                "passed without a package id".into(),
            ));
        };
        if let Some(staged) = self.plan.staged.clone() {
            let first = staged.first();
            let result = self
                .call(s, |c, t| {
                    let steps = staged.steps.clone();
                    async move {
                        c.gray_release_plan(&t, package_id, steps.as_deref(), first, true)
                            .await
                    }
                })
                .await?;
            return match result {
                // Started now, or by a run that died before saving it: wait for it either way.
                Ok(()) => {
                    self.set(s, Step::Staged, None, None)?;
                    Ok(true)
                }
                Err(e) if e.errno() == Some(Errno::StagedReleaseInProgress) => {
                    self.set(s, Step::Staged, None, None)?;
                    Ok(true)
                }
                Err(e) => Err(fail(&e)),
            };
        }
        let result = self
            .call(s, |c, t| async move { c.release(&t, package_id).await })
            .await?;
        match result {
            Ok(()) => {
                self.set(s, Step::Online, None, None)?;
                Ok(true)
            }
            // Released by a run that died before saving it.
            Err(e) if e.errno() == Some(Errno::WrongState) => {
                self.reconcile(s).await?;
                Ok(true)
            }
            Err(e) => Err(fail(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_quota_renews_on_the_next_monday_at_midnight_in_beijing() {
        // Sunday 2026-11-29 05:00 UTC is Sunday 13:00 in Beijing: renews Monday 00:00 +08.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 5, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            next_quota_renewal(now).to_rfc3339(),
            "2026-11-30T00:00:00+08:00"
        );
        // Sunday 17:00 UTC is already Monday 01:00 in Beijing: the next Monday.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 17, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            next_quota_renewal(now).to_rfc3339(),
            "2026-12-07T00:00:00+08:00"
        );
    }
}
