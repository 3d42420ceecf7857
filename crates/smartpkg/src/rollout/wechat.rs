//! Driving a WeChat-dialect platform's mini programs through the same release: refresh the
//! authorizer token (for the named appid, so no token can be another's) → commit → trial
//! built → submit_audit (within the monthly quota) → audited → released per the policy, with
//! this platform's own canaries. Every step is saved before it is acted on, in the platform's
//! own state file, so a killed rollout continues where it stopped: a submission or release
//! that already happened is recognised (85009, 85052) and never repeated.
//!
//! WeChat cannot say which version the trial version is: a commit whose answer was lost is
//! sent again on resume (the same template and `ext_json`, replacing the trial version with
//! itself) — the one call that may repeat (docs/rollout.md).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use smartpkg_client::wechat::{WechatClient, WechatClientError};
use smartpkg_types::wechat::{
    audit_status, AuthorizerTokenRequest, CommitRequest, Errcode, SubmitAuditRequest,
};
use tokio::sync::Semaphore;

use super::engine::Canaries;
use super::plan::{OnQuota, Plan, PlatformTarget, ReleasePolicy};
use super::progress::Progress;
use super::state::Step;

/// Where one WeChat-dialect mini program stands, as its state file keeps it.
#[derive(Debug, Clone)]
pub struct WxState {
    pub appid: String,
    pub step: Step,
    pub auditid: Option<i64>,
    pub errcode: Option<i64>,
    pub reason: Option<String>,
    pub access_token: Option<String>,
    /// The newest refresh token: a refresh spends the one before.
    pub refresh_token: String,
}

pub struct WxStateFile {
    conn: Mutex<Connection>,
}

/// `plan.toml` and platform `wechat` → `plan.state.wechat.sqlite`.
pub fn state_path(plan: &Path, platform: &str) -> PathBuf {
    super::state::path_with(plan, &format!(".{platform}"))
}

impl WxStateFile {
    pub fn open(path: &Path, template_id: i64, version: &str) -> anyhow::Result<WxStateFile> {
        let conn = super::state::open_db(
            path,
            template_id,
            version,
            "CREATE TABLE IF NOT EXISTS wx_apps (
                 appid TEXT PRIMARY KEY,
                 step TEXT NOT NULL,
                 auditid INTEGER,
                 errcode INTEGER,
                 reason TEXT,
                 access_token TEXT,
                 refresh_token TEXT NOT NULL,
                 updated_at_ms INTEGER NOT NULL
             );",
        )?;
        Ok(WxStateFile {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn load(&self, appid: &str) -> anyhow::Result<Option<WxState>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT step, auditid, errcode, reason, access_token, refresh_token
                 FROM wx_apps WHERE appid = ?1",
                params![appid],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((step, auditid, errcode, reason, access_token, refresh_token)) = row else {
            return Ok(None);
        };
        let step = Step::ALL
            .into_iter()
            .find(|s| s.name() == step)
            .with_context(|| format!("unknown step {step:?} in the state file"))?;
        Ok(Some(WxState {
            appid: appid.to_string(),
            step,
            auditid,
            errcode,
            reason,
            access_token,
            refresh_token,
        }))
    }

    pub fn save(&self, s: &WxState) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO wx_apps (appid, step, auditid, errcode, reason, access_token, refresh_token, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (appid) DO UPDATE SET step = ?2, auditid = ?3, errcode = ?4,
                 reason = ?5, access_token = ?6, refresh_token = ?7, updated_at_ms = ?8",
            params![
                s.appid,
                s.step.name(),
                s.auditid,
                s.errcode,
                s.reason,
                s.access_token,
                s.refresh_token,
                chrono::Utc::now().timestamp_millis()
            ],
        )?;
        Ok(())
    }
}

/// One WeChat-dialect mini program in the report.
#[derive(Debug, Clone, Serialize)]
pub struct WxReport {
    pub appid: String,
    pub auditid: Option<i64>,
    pub state: Step,
    pub reached_goal: bool,
    pub errcode: Option<i64>,
    pub reason: Option<String>,
}

/// Why a mini program's rollout stopped.
enum Stop {
    Fail(Step, Option<i64>, String),
    State(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Stop {
        Stop::State(e)
    }
}

fn fail(e: &WechatClientError) -> Stop {
    Stop::Fail(Step::Error, e.errcode().map(|c| c.code()), e.to_string())
}

/// WeChat's audit quota is monthly: it renews on the 1st, 00:00 Beijing time.
pub fn next_month_renewal(
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::FixedOffset> {
    use chrono::{Datelike, NaiveDate, TimeZone};
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let local = now.with_timezone(&beijing).date_naive();
    let (y, m) = if local.month() == 12 {
        (local.year() + 1, 1)
    } else {
        (local.year(), local.month() + 1)
    };
    let first = NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("the 1st exists");
    beijing
        .from_local_datetime(&first)
        .single()
        .expect("a fixed offset has no gaps")
}

pub struct WxEngine {
    pub target: PlatformTarget,
    plan: Arc<Plan>,
    client: WechatClient,
    pub state: WxStateFile,
    progress: Arc<Progress>,
    component_token: String,
    permits: Semaphore,
    canaries: Canaries,
    pub quota_stopped_until: Mutex<Option<chrono::DateTime<chrono::FixedOffset>>>,
}

impl WxEngine {
    pub fn new(
        plan: Arc<Plan>,
        target: PlatformTarget,
        client: WechatClient,
        state: WxStateFile,
        progress: Arc<Progress>,
        component_token: String,
    ) -> WxEngine {
        WxEngine {
            canaries: Canaries::new(plan.release, target.canaries()),
            permits: Semaphore::new(plan.concurrency),
            target,
            plan,
            client,
            state,
            progress,
            component_token,
            quota_stopped_until: Mutex::new(None),
        }
    }

    fn who(&self, s: &WxState) -> String {
        format!("{} {}", self.target.name, s.appid)
    }

    fn set(
        &self,
        s: &mut WxState,
        step: Step,
        errcode: Option<i64>,
        reason: Option<String>,
    ) -> anyhow::Result<()> {
        let from = s.step;
        s.step = step;
        s.errcode = errcode;
        s.reason = reason;
        self.state.save(s)?;
        let detail = s.auditid.map(|a| format!(" (audit {a})"));
        self.progress
            .moved_as(&self.who(s), from, step, detail, s.reason.as_deref());
        Ok(())
    }

    /// Drives one mini program as far as it can go; its last state.
    pub async fn drive(self: Arc<Self>, idx: usize) -> anyhow::Result<WxState> {
        let entry = &self.target.apps[idx];
        let mut s = match self.state.load(&entry.appid)? {
            Some(s) => s,
            None => {
                let s = WxState {
                    appid: entry.appid.clone(),
                    step: Step::Pending,
                    auditid: None,
                    errcode: None,
                    reason: None,
                    access_token: None,
                    refresh_token: entry.refresh_token.clone(),
                };
                self.state.save(&s)?;
                s
            }
        };
        self.progress.enter(s.step);
        if s.step == Step::Held {
            self.set(&mut s, Step::Passed, None, None)?;
        }
        if s.step == Step::WaitingQuota {
            self.set(&mut s, Step::Built, None, None)?;
        }
        match self.pipeline(idx, &mut s).await {
            Ok(()) => {}
            Err(Stop::Fail(step, code, reason)) => self.set(&mut s, step, code, Some(reason))?,
            Err(Stop::State(e)) => return Err(e),
        }
        self.canaries.finished(idx, s.step);
        Ok(s)
    }

    async fn pipeline(&self, idx: usize, s: &mut WxState) -> Result<(), Stop> {
        loop {
            match s.step {
                Step::Pending | Step::Uploading => self.commit(idx, s).await?,
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
                // A WeChat platform releases at once: it is never staged by the rollout.
                Step::Staged
                | Step::Online
                | Step::BuildFailed
                | Step::AuditFailed
                | Step::Held
                | Step::Halted
                | Step::Error => return Ok(()),
            }
        }
    }

    /// A fresh authorizer token for this appid, the new refresh token kept before it is
    /// used (the old one is spent by the call).
    async fn refresh(&self, s: &mut WxState) -> Result<String, Stop> {
        let req = AuthorizerTokenRequest {
            component_appid: self.target.component_appid.clone(),
            authorizer_appid: s.appid.clone(),
            authorizer_refresh_token: s.refresh_token.clone(),
        };
        let renewed = {
            let _p = self.permits.acquire().await;
            self.client
                .authorizer_token(&self.component_token, &req)
                .await
        };
        match renewed {
            Ok(t) => {
                s.access_token = Some(t.authorizer_access_token.clone());
                s.refresh_token = t.authorizer_refresh_token;
                self.state.save(s)?;
                Ok(t.authorizer_access_token)
            }
            Err(e) if e.errcode() == Some(Errcode::RefreshTokenInvalid) => Err(Stop::Fail(
                Step::Error,
                Some(Errcode::RefreshTokenInvalid.code()),
                "the refresh token was refused (spent, or the mini program's authorization ended): authorize it again and give the new refresh token".into(),
            )),
            Err(e) => Err(fail(&e)),
        }
    }

    /// One call with the mini program's token: a token got for its appid first, refreshed
    /// once on a stale-token answer, and retried while WeChat says nothing happened (-1) or
    /// the connection was never made, for up to the plan's `retry_for_s`.
    async fn call<T, F, Fut>(
        &self,
        s: &mut WxState,
        writes: bool,
        f: F,
    ) -> Result<Result<T, WechatClientError>, Stop>
    where
        F: Fn(WechatClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, WechatClientError>>,
    {
        let started = Instant::now();
        let limit = Duration::from_secs(self.plan.retry_for_s);
        let mut wait = Duration::from_millis(200);
        let mut refreshed = false;
        loop {
            let token = match s.access_token.clone() {
                Some(t) => t,
                None => {
                    refreshed = true;
                    self.refresh(s).await?
                }
            };
            let result = {
                let _p = self.permits.acquire().await;
                f(self.client.clone(), token).await
            };
            match result {
                Err(e) if e.stale_token() && !refreshed => s.access_token = None,
                Err(e) if e.may_retry(writes) && started.elapsed() < limit => {
                    self.progress
                        .note(format!("{}: retrying after {e}", self.who(s)));
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(self.plan.poll_max_ms.max(200)));
                }
                other => return Ok(other),
            }
        }
    }

    async fn commit(&self, idx: usize, s: &mut WxState) -> Result<(), Stop> {
        let entry = &self.target.apps[idx];
        let ext_json = self
            .plan
            .render_wx(entry)
            .map_err(|e| Stop::Fail(Step::Error, None, format!("{e:#}")))?;
        if s.step == Step::Uploading {
            // The last run sent a commit and died before hearing back. A submission of this
            // version means it went through long ago; otherwise it is sent again below.
            if let Some(step) = self.already_submitted(s).await? {
                return Ok(self.set(s, step, None, None)?);
            }
        }
        self.set(s, Step::Uploading, None, None)?;
        let req = CommitRequest {
            template_id: self.target.template_id,
            ext_json,
            user_version: self.plan.version.clone(),
            user_desc: self.plan.description.clone(),
        };
        let result = self
            .call(s, true, |c, t| {
                let req = req.clone();
                async move { c.commit(&t, &req).await }
            })
            .await?;
        match result {
            Ok(()) => Ok(self.set(s, Step::Uploaded, None, None)?),
            // What the build refuses (ext_json, template, package): WeChat answers at once.
            Err(e)
                if e.errcode()
                    .is_some_and(|c| matches!(c.code(), 85013 | 85014 | 85043..=85048)) =>
            {
                Err(Stop::Fail(
                    Step::BuildFailed,
                    e.errcode().map(|c| c.code()),
                    e.to_string(),
                ))
            }
            // Unknown whether it arrived: the next run looks (and commits again if need be).
            Err(e) => Err(fail(&e)),
        }
    }

    /// Where the mini program stands when its latest audit is of this version.
    async fn already_submitted(&self, s: &mut WxState) -> Result<Option<Step>, Stop> {
        let latest = self
            .call(s, false, |c, t| async move {
                c.get_latest_auditstatus(&t).await
            })
            .await?;
        match latest {
            Ok(l) if l.user_version == self.plan.version => {
                s.auditid = Some(l.auditid);
                Ok(Some(match l.status {
                    audit_status::PASSED => Step::Passed,
                    audit_status::REJECTED => Step::AuditFailed,
                    audit_status::WITHDRAWN => Step::Built,
                    _ => Step::Submitted,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.errcode() == Some(Errcode::NoValidAudit) => Ok(None),
            Err(e) => Err(fail(&e)),
        }
    }

    async fn wait_built(&self, s: &mut WxState) -> Result<(), Stop> {
        let mut wait = Duration::from_millis(20);
        loop {
            let pages = self
                .call(s, false, |c, t| async move { c.get_page(&t).await })
                .await?;
            match pages {
                Ok(_) => return Ok(self.set(s, Step::Built, None, None)?),
                // Still building (smartpkg builds after answering; WeChat before).
                Err(e) if e.errcode() == Some(Errcode::NoCodeCommitted) => {
                    if e.to_string().contains("did not build") {
                        return Err(Stop::Fail(
                            Step::BuildFailed,
                            e.errcode().map(|c| c.code()),
                            e.to_string(),
                        ));
                    }
                }
                Err(e) => return Err(fail(&e)),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(self.plan.poll_max_ms));
        }
    }

    fn quota_stop(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        *self
            .quota_stopped_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Submits for audit; false when the monthly quota stops this mini program for now.
    async fn submit(&self, s: &mut WxState) -> Result<bool, Stop> {
        let quota = Errcode::MonthlyAuditLimit.code();
        if let Some(until) = self.quota_stop() {
            self.set(
                s,
                Step::WaitingQuota,
                Some(quota),
                Some(format!(
                    "the monthly audit quota is spent; it renews at {until}"
                )),
            )?;
            return Ok(false);
        }
        let req = SubmitAuditRequest {
            version_desc: Some(self.plan.audit_content().to_string()),
            ..SubmitAuditRequest::default()
        };
        loop {
            // Retried like a read: a second submission of the same version is refused with
            // 85009, which the latest audit then explains.
            let result = self
                .call(s, false, |c, t| {
                    let req = req.clone();
                    async move { c.submit_audit(&t, &req).await }
                })
                .await?;
            match result {
                Ok(auditid) => {
                    s.auditid = Some(auditid);
                    self.set(s, Step::Submitted, None, None)?;
                    return Ok(true);
                }
                Err(e) if e.errcode() == Some(Errcode::MonthlyAuditLimit) => {
                    let renews = next_month_renewal(chrono::Utc::now());
                    match self.plan.on_quota {
                        OnQuota::Stop => {
                            *self
                                .quota_stopped_until
                                .lock()
                                .unwrap_or_else(|p| p.into_inner()) = Some(renews);
                            self.set(
                                s,
                                Step::WaitingQuota,
                                Some(quota),
                                Some(format!(
                                    "the monthly audit quota is spent; it renews at {renews}"
                                )),
                            )?;
                            return Ok(false);
                        }
                        OnQuota::Wait => {
                            self.set(
                                s,
                                Step::WaitingQuota,
                                Some(quota),
                                Some(format!("waiting for the audit quota to renew at {renews}")),
                            )?;
                            let until = (renews.with_timezone(&chrono::Utc) - chrono::Utc::now())
                                .to_std()
                                .unwrap_or_default();
                            tokio::time::sleep(
                                until.min(Duration::from_millis(self.plan.poll_max_ms.max(1000))),
                            )
                            .await;
                            self.set(s, Step::Built, None, None)?;
                        }
                    }
                }
                // Submitted already (a run that died after the call), or another version is
                // under audit: the latest audit says which.
                Err(e) if e.errcode() == Some(Errcode::AuditPending) => {
                    return match self.already_submitted(s).await? {
                        Some(step) => {
                            self.set(s, step, None, None)?;
                            Ok(true)
                        }
                        None => Err(Stop::Fail(
                            Step::Error,
                            e.errcode().map(|c| c.code()),
                            "another version of this mini program is under audit".into(),
                        )),
                    };
                }
                Err(e) => return Err(fail(&e)),
            }
        }
    }

    async fn wait_audit(&self, s: &mut WxState) -> Result<(), Stop> {
        let Some(auditid) = s.auditid else {
            return Err(Stop::Fail(
                Step::Error,
                None,
                "submitted without an auditid".into(),
            ));
        };
        let mut wait = Duration::from_millis(20);
        loop {
            let status = self
                .call(s, false, |c, t| async move {
                    c.get_auditstatus(&t, auditid).await
                })
                .await?
                .map_err(|e| fail(&e))?;
            match status.status {
                audit_status::PASSED => return Ok(self.set(s, Step::Passed, None, None)?),
                audit_status::REJECTED => {
                    return Err(Stop::Fail(Step::AuditFailed, None, status.reason))
                }
                audit_status::WITHDRAWN => {
                    return Err(Stop::Fail(
                        Step::Error,
                        None,
                        "the audit was withdrawn by someone else".into(),
                    ))
                }
                _ => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(self.plan.poll_max_ms));
        }
    }

    async fn release(&self, idx: usize, s: &mut WxState) -> Result<bool, Stop> {
        if self.plan.release == ReleasePolicy::None {
            return Ok(false);
        }
        if !self.canaries.may_release(idx).await {
            self.set(
                s,
                Step::Held,
                None,
                Some(format!(
                    "not released: not every canary of {} went online",
                    self.target.name
                )),
            )?;
            return Ok(false);
        }
        // Retried like a read: a second release is refused with 85052.
        let result = self
            .call(s, false, |c, t| async move { c.release(&t).await })
            .await?;
        match result {
            // 85052: released by a run that died before saving it.
            Ok(()) => {}
            Err(e) if e.errcode() == Some(Errcode::AlreadyReleased) => {}
            Err(e) => return Err(fail(&e)),
        }
        self.set(s, Step::Online, None, None)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_monthly_quota_renews_on_the_first_at_midnight_in_beijing() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 31, 17, 0, 0)
            .single()
            .expect("t");
        // Already 2027-01-01 01:00 in Beijing: renews on February 1st.
        assert_eq!(
            next_month_renewal(now).to_rfc3339(),
            "2027-02-01T00:00:00+08:00"
        );
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 5, 3, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            next_month_renewal(now).to_rfc3339(),
            "2027-01-01T00:00:00+08:00"
        );
    }
}
