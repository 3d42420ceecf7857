//! Code management in the WeChat dialect (spec §5), with the authorizer's token. WeChat's
//! calls name no package: each acts on the trial version (the development slot), the version
//! under audit (the audit slot) or the online one; the handler finds it, answers WeChat's own
//! code when there is none, and otherwise asks the one lifecycle.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use smartpkg_core::dialect::Dialect;
use smartpkg_core::ids::{AppId, PackageId, TemplateId};
use smartpkg_core::lifecycle::{AuditRequest, Command, PkgState, Slot};
use smartpkg_store::{Actor, AuditVerdict, Domains, Grant, PackageRecord, SpeedUp};
use smartpkg_types::wechat::{
    audit_status, gray_status, ActionRequest, AuditId, AuditIdRequest, AuditStatus, CommitRequest,
    Errcode, GrayReleasePlan, GrayReleasePlanDetail, GrayReleaseRequest, HistoryVersion,
    HistoryVersions, LatestAuditStatus, ModifyDomainRequest, PageList, PrivacyInfo, QueryQuota,
    ServerDomains, SubmitAuditRequest, VisitStatus, WebviewDomainRequest, WebviewDomains,
};

use super::{done, text, Answer, Fail, Reply, Wx};
use crate::application::{self, apply_domains, domain_list, DomainAction, OpError};
use crate::clock;
use crate::state::AppState;

const MAX_VERSION_CHARS: usize = 64;
const MAX_DESC_CHARS: usize = 2048;
/// The side of `get_qrcode`'s image, in pixels (WeChat's trial codes are 430).
const QR_SIDE: u32 = 430;

/// A command through the WeChat dialect, by the third party.
async fn run(state: &AppState, app_id: AppId, cmd: Command) -> Result<(), Fail> {
    application::package_command_in(state, Dialect::Wechat, app_id, cmd, Actor::ThirdParty)
        .await
        .map_err(Fail::from)
}

/// The mini program's packages in their slots, read once per call.
struct Slots(Vec<PackageRecord>);

impl Slots {
    async fn read(state: &AppState, app_id: AppId) -> Result<Slots, Fail> {
        Ok(Slots(state.store.visible_packages(app_id).await?))
    }

    fn get(&self, slot: Slot) -> Option<&PackageRecord> {
        self.0.iter().find(|p| p.state.slot() == Some(slot))
    }

    /// The trial version, built: `missing` while there is none, while it is still building
    /// (spec §7), or when its build failed (with the build's error).
    fn trial(&self, missing: Errcode) -> Result<&PackageRecord, Fail> {
        let p = self
            .get(Slot::Development)
            .ok_or_else(|| Fail::new(missing))?;
        match p.state {
            PkgState::Development => Ok(p),
            PkgState::Building => Err(Fail::detail(
                missing,
                "the trial version is still being built; try again in a moment",
            )),
            _ => Err(Fail::detail(
                missing,
                format!(
                    "the last commit did not build: {}",
                    p.upload_err_msg.as_deref().unwrap_or("unknown error")
                ),
            )),
        }
    }

    /// The latest code the third party committed, for the calls that read it (`get_page`,
    /// `get_qrcode`, the privacy check): the trial version while there is one, else the
    /// version it became (under audit, or online) — WeChat's trial version outlives its
    /// submission.
    fn latest_code(&self) -> Result<&PackageRecord, Fail> {
        if self.get(Slot::Development).is_some() {
            return self.trial(Errcode::NoCodeCommitted);
        }
        self.get(Slot::Audit)
            .or_else(|| self.get(Slot::Online))
            .ok_or_else(|| Fail::new(Errcode::NoCodeCommitted))
    }

    fn under_audit(&self) -> bool {
        self.get(Slot::Audit)
            .is_some_and(|p| p.state == PkgState::Auditing)
    }
}

/// The mini program's package in `slot`, if any (one read).
async fn in_slot(
    state: &AppState,
    app_id: AppId,
    slot: Slot,
) -> Result<Option<PackageRecord>, Fail> {
    Ok(Slots::read(state, app_id).await?.get(slot).cloned())
}

fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

pub async fn commit(State(state): State<AppState>, wx: Wx) -> Reply {
    let grant = wx.authorizer(&state, true).await?;
    let req: CommitRequest = wx.json()?;
    // WeChat's ext_json is a JSON document inside a string: text that does not parse is
    // 85048, a document the platform cannot use 85013.
    if req.ext_json.trim().is_empty() {
        return Err(Fail::detail(
            Errcode::InvalidExtJson,
            "ext_json is required",
        ));
    }
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&req.ext_json) {
        return Err(Fail::detail(Errcode::ExtJsonParseFail, e));
    }
    if req.ext_json.len() > state.settings.max_ext_json_bytes {
        return Err(Fail::detail(
            Errcode::InvalidExtJson,
            format!(
                "ext_json is {} bytes; at most {} are accepted",
                req.ext_json.len(),
                state.settings.max_ext_json_bytes
            ),
        ));
    }
    let version = text("user_version", req.user_version, MAX_VERSION_CHARS, false)?;
    let version_desc = text("user_desc", req.user_desc, MAX_DESC_CHARS, true)?;
    let template_id = TemplateId(req.template_id);
    let upload = application::Upload {
        app_id: grant.app_id,
        tp_id: grant.tp_id,
        template_id,
        ext_json: req.ext_json,
        version,
        version_desc,
        test_account: None,
        test_password: None,
    };
    // What the build would refuse is refused now: the real commit answers at once.
    application::commit(&state, upload, Actor::ThirdParty).await?;
    done()
}

pub async fn get_page(State(state): State<AppState>, wx: Wx) -> Reply<PageList> {
    let grant = wx.authorizer(&state, false).await?;
    let slots = Slots::read(&state, grant.app_id).await?;
    let p = slots.latest_code()?;
    let manifest = crate::workers::template_manifest(&state, p.template_id.get())
        .await
        .map_err(|_| Fail::new(Errcode::Busy))?;
    Ok(Answer(PageList {
        page_list: manifest.pages.clone(),
    }))
}

pub async fn get_qrcode(State(state): State<AppState>, wx: Wx) -> Response {
    match qrcode(&state, &wx).await {
        Ok(jpeg) => ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn qrcode(state: &AppState, wx: &Wx) -> Result<Vec<u8>, Fail> {
    let grant = wx.authorizer(state, false).await?;
    let path = text(
        "path",
        wx.query("path").unwrap_or_default().to_string(),
        1024,
        false,
    )?;
    let slots = Slots::read(state, grant.app_id).await?;
    let p = slots.latest_code()?;
    let app = state
        .store
        .get_app(grant.app_id)
        .await?
        .ok_or_else(|| Fail::new(Errcode::InvalidAppid))?;
    let link = crate::qr::link(state, &app.app_key, &path, p).map_err(|e| {
        tracing::error!(error = %e, "cannot make a QR code link");
        Fail::new(Errcode::Busy)
    })?;
    match tokio::task::spawn_blocking(move || crate::qr::jpeg(&link, QR_SIDE)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(Fail::detail(Errcode::Busy, e)),
        Err(e) => Err(Fail::detail(Errcode::Busy, e)),
    }
}

pub async fn submit_audit(State(state): State<AppState>, wx: Wx) -> Reply<AuditId> {
    let grant = wx.authorizer(&state, true).await?;
    let req: SubmitAuditRequest = wx.json_or_default()?;
    if let Some(items) = &req.item_list {
        if !(1..=5).contains(&items.len()) {
            return Err(Fail::new(Errcode::ItemListSize));
        }
    }
    let content = text(
        "version_desc",
        req.version_desc.unwrap_or_default(),
        MAX_DESC_CHARS,
        true,
    )?;
    let remark = text(
        "feedback_info",
        req.feedback_info.unwrap_or_default(),
        MAX_DESC_CHARS,
        true,
    )?;
    // One version under audit at a time (85009) is said before the trial version is looked
    // for: a submitted trial version has left the trial slot.
    let slots = Slots::read(&state, grant.app_id).await?;
    if slots.under_audit() {
        return Err(Fail::new(Errcode::AuditPending));
    }
    let p = slots.trial(Errcode::CommitFirst)?;
    let cmd = Command::SubmitAudit {
        package_id: p.package_id,
        request: AuditRequest {
            content,
            remark,
            test_account: None,
            test_password: None,
        },
    };
    match application::package_command_in(
        &state,
        Dialect::Wechat,
        grant.app_id,
        cmd,
        Actor::ThirdParty,
    )
    .await
    {
        Ok(()) => {}
        // Submitted meanwhile through the other dialect (or another call of this one): the
        // race's loser hears what it would have heard a moment later.
        Err(OpError::Refused(r)) if r.errno == smartpkg_core::lifecycle::Errno::WrongState => {
            return Err(if Slots::read(&state, grant.app_id).await?.under_audit() {
                Fail::new(Errcode::AuditPending)
            } else {
                Fail::detail(Errcode::CommitFirst, r.msg)
            });
        }
        Err(e) => return Err(e.into()),
    }
    // One audit per submission of a package: its id is the package's.
    Ok(Answer(AuditId {
        auditid: p.package_id.get(),
    }))
}

/// An audit's status, reason and screenshot, from how its latest submission ended.
fn audit_view(verdict: &AuditVerdict) -> (i64, String) {
    match verdict {
        AuditVerdict::Auditing => (audit_status::AUDITING, String::new()),
        AuditVerdict::Passed { .. } => (audit_status::PASSED, String::new()),
        AuditVerdict::Failed { reason, .. } => (audit_status::REJECTED, reason.clone()),
        AuditVerdict::Withdrawn { .. } => (audit_status::WITHDRAWN, String::new()),
    }
}

/// The package an audit id names, when it is this mini program's.
async fn audited_package(
    state: &AppState,
    grant: &Grant,
    auditid: i64,
) -> Result<Option<PackageRecord>, Fail> {
    Ok(state
        .store
        .get_package(PackageId(auditid))
        .await?
        .filter(|p| p.app_id == grant.app_id))
}

pub async fn get_auditstatus(State(state): State<AppState>, wx: Wx) -> Reply<AuditStatus> {
    let grant = wx.authorizer(&state, false).await?;
    let req: AuditIdRequest = wx.json()?;
    let invalid = || Fail::new(Errcode::InvalidAuditId);
    let p = audited_package(&state, &grant, req.auditid)
        .await?
        .ok_or_else(invalid)?;
    let outcome = state
        .store
        .audit_outcome(p.package_id)
        .await?
        .ok_or_else(invalid)?;
    let (status, reason) = audit_view(&outcome.verdict);
    Ok(Answer(AuditStatus {
        status,
        reason,
        screenshot: String::new(),
    }))
}

pub async fn get_latest_auditstatus(
    State(state): State<AppState>,
    wx: Wx,
) -> Reply<LatestAuditStatus> {
    let grant = wx.authorizer(&state, false).await?;
    let none = || Fail::new(Errcode::NoValidAudit);
    let package_id = state
        .store
        .latest_submission(grant.app_id)
        .await?
        .ok_or_else(none)?;
    let p = state
        .store
        .get_package(package_id)
        .await?
        .ok_or_else(none)?;
    let outcome = state
        .store
        .audit_outcome(package_id)
        .await?
        .ok_or_else(none)?;
    let (status, reason) = audit_view(&outcome.verdict);
    Ok(Answer(LatestAuditStatus {
        auditid: package_id.get(),
        status,
        reason,
        screenshot: String::new(),
        user_version: p.version,
        user_desc: p.version_desc,
        submit_audit_time: seconds(outcome.submitted_at_ms),
    }))
}

pub async fn undo_code_audit(State(state): State<AppState>, wx: Wx) -> Reply {
    let grant = wx.authorizer(&state, true).await?;
    let p = in_slot(&state, grant.app_id, Slot::Audit)
        .await?
        .filter(|p| p.state == PkgState::Auditing)
        .ok_or_else(|| Fail::new(Errcode::NothingUnderAudit))?;
    // WeChat's own quota on withdrawals, per mini program: a day's and a month's.
    let s = &state.settings;
    let now = clock::now_ms();
    let windows = [
        (
            clock::day_start_ms(now, s.utc_offset),
            s.wechat_undo_audit_per_day,
            "today",
        ),
        (
            clock::month_start_ms(now, s.utc_offset),
            s.wechat_undo_audit_per_month,
            "this month",
        ),
    ];
    for (since, limit, when) in windows {
        if limit >= 0 && state.store.withdrawals_since(grant.app_id, since).await? >= limit {
            return Err(Fail::detail(
                Errcode::UndoQuota,
                format!("{limit} audits of this mini program were withdrawn {when}"),
            ));
        }
    }
    run(
        &state,
        grant.app_id,
        Command::Withdraw {
            package_id: p.package_id,
        },
    )
    .await?;
    done()
}

pub async fn release(State(state): State<AppState>, wx: Wx) -> Reply {
    let grant = wx.authorizer(&state, true).await?;
    // The body must be a JSON object (`{}`); none at all is 44002.
    let _: serde_json::Map<String, serde_json::Value> = wx.json()?;
    let p = match in_slot(&state, grant.app_id, Slot::Audit).await? {
        Some(p) => p,
        None => {
            // Nothing under audit: released already, when the latest audit passed and its
            // package is online; otherwise there is nothing to release.
            let latest = state.store.latest_submission(grant.app_id).await?;
            let online = in_slot(&state, grant.app_id, Slot::Online).await?;
            return Err(match (latest, online) {
                (Some(l), Some(o)) if l == o.package_id => Fail::new(Errcode::AlreadyReleased),
                _ => Fail::new(Errcode::NothingUnderAudit),
            });
        }
    };
    if p.state != PkgState::AuditPassed {
        return Err(Fail::detail(
            Errcode::AuditNotPassed,
            "the version under audit has not passed",
        ));
    }
    run(
        &state,
        grant.app_id,
        Command::Release {
            package_id: p.package_id,
        },
    )
    .await?;
    done()
}

pub async fn revert_code_release(State(state): State<AppState>, wx: Wx) -> Response {
    match wx.query("action") {
        Some("get_history_version") => history(&state, &wx).await.into_response(),
        Some(other) => Fail::detail(
            Errcode::InvalidAction,
            format!("action is get_history_version or absent, not {other:?}"),
        )
        .into_response(),
        None => revert(&state, &wx).await.into_response(),
    }
}

async fn history(state: &AppState, wx: &Wx) -> Reply<HistoryVersions> {
    let grant = wx.authorizer(state, false).await?;
    let limit = smartpkg_core::lifecycle::ROLLBACK_CHOICES as i64;
    let rows = state.store.recent_history(grant.app_id, limit).await?;
    Ok(Answer(HistoryVersions {
        version_list: rows
            .into_iter()
            .map(|r| HistoryVersion {
                app_version: r.package_id.get(),
                user_version: r.version,
                user_desc: r.version_desc,
                commit_time: seconds(r.commit_time_ms),
            })
            .collect(),
    }))
}

async fn revert(state: &AppState, wx: &Wx) -> Reply {
    let grant = wx.authorizer(state, true).await?;
    let target =
        match wx.query("app_version") {
            None => None,
            Some(v) => Some(v.parse::<i64>().map_err(|_| {
                Fail::detail(Errcode::DataFormatError, "app_version must be a number")
            })?),
        };
    // WeChat's own rule (spec §5): no revert while a gray release runs. Baidu's dialect
    // allows it (the staged version stays staged over the restored one).
    let slots = Slots::read(state, grant.app_id).await?;
    let staged = slots.get(Slot::Audit).and_then(|p| p.staged_percent);
    if let Some(pct) = staged {
        return Err(Fail::detail(
            Errcode::GrayReleaseRunning,
            format!("a gray release is at {pct}%; revert it or release it first"),
        ));
    }
    let online = slots
        .get(Slot::Online)
        .ok_or_else(|| Fail::detail(Errcode::CannotRevert, "there is no online version"))?;
    let cmd = match target {
        None => Command::Rollback {
            package_id: online.package_id,
        },
        Some(v) => Command::RollbackTo {
            package_id: online.package_id,
            target: PackageId(v),
        },
    };
    run(state, grant.app_id, cmd).await?;
    done()
}

pub async fn gray_release(State(state): State<AppState>, wx: Wx) -> Reply {
    let grant = wx.authorizer(&state, true).await?;
    let req: GrayReleaseRequest = wx.json()?;
    if !(1..=100).contains(&req.gray_percentage) {
        return Err(Fail::detail(
            Errcode::InvalidGrayPercentage,
            "gray_percentage is 1 to 100",
        ));
    }
    let slots = Slots::read(&state, grant.app_id).await?;
    if slots.get(Slot::Online).is_none() {
        return Err(Fail::new(Errcode::NoOnlineRelease));
    }
    let p = slots
        .get(Slot::Audit)
        .filter(|p| p.state == PkgState::AuditPassed)
        .ok_or_else(|| Fail::new(Errcode::GrayAuditNotPassed))?;
    let auto = req.gray_auto.unwrap_or(false);
    let cmd = if req.gray_steps.is_some() || auto {
        let spec = crate::application::PlanSpec {
            steps: req.gray_steps.clone(),
            auto,
            start_percent: Some(req.gray_percentage),
            ..Default::default()
        };
        let plan = crate::application::plan_for(&state, spec)
            .map_err(|why| Fail::detail(Errcode::DataFormatError, why))?;
        Command::StartPlan {
            package_id: p.package_id,
            plan,
        }
    } else {
        Command::StageRelease {
            package_id: p.package_id,
            percent: req.gray_percentage,
        }
    };
    run(&state, grant.app_id, cmd).await?;
    done()
}

pub async fn revert_gray_release(State(state): State<AppState>, wx: Wx) -> Reply {
    let grant = wx.authorizer(&state, true).await?;
    // With no gray release running there is nothing to revert: done, as asked.
    let staged = in_slot(&state, grant.app_id, Slot::Audit)
        .await?
        .filter(|p| p.staged_percent.is_some());
    if let Some(p) = staged {
        let cmd = Command::RevertStage {
            package_id: p.package_id,
        };
        run(&state, grant.app_id, cmd).await?;
    }
    done()
}

pub async fn gray_release_plan(State(state): State<AppState>, wx: Wx) -> Reply<GrayReleasePlan> {
    let grant = wx.authorizer(&state, false).await?;
    let slots = Slots::read(&state, grant.app_id).await?;
    let staged = slots
        .get(Slot::Audit)
        .and_then(|p| p.staged_percent.map(|pct| (p, pct)));
    // A plan that released the online version shows finished (smartpkg's plans; a staged
    // release by hand that was released shows nothing, as before).
    let finished = slots
        .get(Slot::Online)
        .filter(|p| p.stage_plan.is_some() && staged.is_none());
    let plan = match (staged, finished) {
        (Some((p, pct)), _) => GrayReleasePlanDetail {
            status: match p.stage_plan.as_ref().map(|pl| pl.status) {
                Some(smartpkg_core::stage::PlanStatus::Halted) => gray_status::PAUSED,
                _ => gray_status::RUNNING,
            },
            create_timestamp: seconds(p.updated_at_ms),
            gray_percentage: pct,
            support_debuger_first: false,
            support_experiencer_first: false,
        },
        (None, Some(p)) => GrayReleasePlanDetail {
            status: gray_status::FINISHED,
            create_timestamp: seconds(p.updated_at_ms),
            gray_percentage: 100,
            support_debuger_first: false,
            support_experiencer_first: false,
        },
        (None, None) => GrayReleasePlanDetail {
            status: gray_status::INITIAL,
            create_timestamp: 0,
            gray_percentage: 0,
            support_debuger_first: false,
            support_experiencer_first: false,
        },
    };
    Ok(Answer(GrayReleasePlan {
        gray_release_plan: plan,
    }))
}

pub async fn speed_up_audit(State(state): State<AppState>, wx: Wx) -> Reply {
    let grant = wx.authorizer(&state, true).await?;
    let req: AuditIdRequest = wx.json()?;
    let p = audited_package(&state, &grant, req.auditid)
        .await?
        .filter(|p| p.state == PkgState::Auditing)
        .ok_or_else(|| Fail::new(Errcode::SpeedupNotQueued))?;
    let s = &state.settings;
    let now = clock::now_ms();
    let limit = Some(s.wechat_speedup_per_month).filter(|l| *l >= 0);
    let since = clock::month_start_ms(now, s.utc_offset);
    match state
        .store
        .speed_up_audit(grant.tp_id, p.package_id, limit, since, now)
        .await?
    {
        SpeedUp::Recorded => done(),
        SpeedUp::AlreadyAsked => Err(Fail::new(Errcode::SpeedupDone)),
        SpeedUp::QuotaUsed => Err(Fail::new(Errcode::SpeedupQuota)),
    }
}

pub async fn query_quota(State(state): State<AppState>, wx: Wx) -> Reply<QueryQuota> {
    let grant = wx.authorizer(&state, false).await?;
    let ctx = state.decision_context_in(Dialect::Wechat, Actor::ThirdParty);
    let q = state.store.audit_quota(grant.tp_id, ctx).await?;
    let s = &state.settings;
    let since = clock::month_start_ms(ctx.now_ms, s.utc_offset);
    let sped = state.store.speed_ups_since(grant.tp_id, since).await?;
    // -1 stands for "unlimited" (a setting of -1), in both figures.
    let speedup_limit = s.wechat_speedup_per_month;
    Ok(Answer(QueryQuota {
        rest: q.remaining().unwrap_or(-1),
        limit: q.limit.unwrap_or(-1),
        speedup_rest: if speedup_limit < 0 {
            -1
        } else {
            (speedup_limit - sped).max(0)
        },
        speedup_limit,
    }))
}

pub async fn change_visit_status(State(state): State<AppState>, wx: Wx) -> Reply {
    let grant = wx.authorizer(&state, true).await?;
    let req: ActionRequest = wx.json()?;
    let paused = match req.action.as_deref().map(str::trim) {
        Some("close") => true,
        Some("open") => false,
        _ => {
            return Err(Fail::detail(
                Errcode::InvalidAction,
                "action is open or close",
            ))
        }
    };
    // Only a mini program with an online version has a visit status to change.
    if in_slot(&state, grant.app_id, Slot::Online).await?.is_none() {
        return Err(Fail::detail(
            Errcode::VisitStatusNotAllowed,
            "the mini program has no online version",
        ));
    }
    application::edit_app_settings(&state, grant.app_id, move |s| {
        s.paused = paused;
        true
    })
    .await?;
    done()
}

pub async fn get_visit_status(State(state): State<AppState>, wx: Wx) -> Reply<VisitStatus> {
    let grant = wx.authorizer(&state, false).await?;
    let s = application::app_settings(&state, grant.app_id).await?;
    Ok(Answer(VisitStatus {
        status: if s.paused { 0 } else { 1 },
    }))
}

fn action(given: Option<&str>) -> Result<DomainAction, Fail> {
    match DomainAction::parse(given) {
        Ok(Some(a)) => Ok(a),
        _ => Err(Fail::detail(
            Errcode::InvalidAction,
            "action is add, delete, set or get",
        )),
    }
}

/// A list of domains as WeChat sends it (an array), checked as the Baidu dialect checks its
/// comma-separated lists.
fn domains(
    given: &Option<Vec<String>>,
    name: &str,
    kind: smartpkg_core::runtime::DomainKind,
) -> Result<Option<Vec<String>>, Fail> {
    let Some(list) = given else {
        return Ok(None);
    };
    if list.iter().any(|d| d.contains(',')) {
        return Err(Fail::detail(
            Errcode::DataFormatError,
            format!("{name}: a domain cannot contain a comma"),
        ));
    }
    Ok(domain_list(Some(&list.join(",")), name, kind)?)
}

fn server_domains(d: &Domains) -> ServerDomains {
    ServerDomains {
        requestdomain: d.request_domain.clone(),
        wsrequestdomain: d.socket_domain.clone(),
        uploaddomain: d.upload_domain.clone(),
        downloaddomain: d.download_domain.clone(),
        udpdomain: vec![],
        tcpdomain: vec![],
    }
}

pub async fn modify_domain(State(state): State<AppState>, wx: Wx) -> Reply<ServerDomains> {
    let grant = wx.authorizer(&state, true).await?;
    let req: ModifyDomainRequest = wx.json()?;
    let action = action(req.action.as_deref())?;
    // Devices here speak HTTPS and WebSocket only: UDP and TCP allow-lists have nothing to
    // allow, and a non-empty one is refused rather than kept and ignored.
    for (name, list) in [("udpdomain", &req.udpdomain), ("tcpdomain", &req.tcpdomain)] {
        if list.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(Fail::detail(
                Errcode::DataFormatError,
                format!("{name}: this platform's devices have no UDP or TCP sockets"),
            ));
        }
    }
    if action == DomainAction::Get {
        let s = application::app_settings(&state, grant.app_id).await?;
        return Ok(Answer(server_domains(&s.domains)));
    }
    use smartpkg_core::runtime::DomainKind::{Https, Socket};
    type Pick = fn(&mut Domains) -> &mut Vec<String>;
    let lists: [(Option<Vec<String>>, Pick); 4] = [
        (domains(&req.requestdomain, "requestdomain", Https)?, |d| {
            &mut d.request_domain
        }),
        (
            domains(&req.wsrequestdomain, "wsrequestdomain", Socket)?,
            |d| &mut d.socket_domain,
        ),
        (domains(&req.uploaddomain, "uploaddomain", Https)?, |d| {
            &mut d.upload_domain
        }),
        (
            domains(&req.downloaddomain, "downloaddomain", Https)?,
            |d| &mut d.download_domain,
        ),
    ];
    let settings = application::edit_app_settings(&state, grant.app_id, move |s| {
        lists.iter().all(|(given, pick)| match given {
            Some(given) => apply_domains(pick(&mut s.domains), action, given),
            None => true,
        })
    })
    .await?;
    Ok(Answer(server_domains(&settings.domains)))
}

pub async fn set_webview_domain(State(state): State<AppState>, wx: Wx) -> Reply<WebviewDomains> {
    let grant = wx.authorizer(&state, true).await?;
    let req: WebviewDomainRequest = wx.json_or_default()?;
    let current = application::app_settings(&state, grant.app_id).await?;
    let action = match req.action.as_deref() {
        None => None,
        given => Some(action(given)?),
    };
    if action == Some(DomainAction::Get) {
        return Ok(Answer(WebviewDomains {
            webviewdomain: current.domains.web_view_domain,
        }));
    }
    let https = smartpkg_core::runtime::DomainKind::Https;
    let given = domains(&req.webviewdomain, "webviewdomain", https)?.unwrap_or_default();
    // A mini program's web-view domains are chosen among its component's (spec §2: 89020,
    // 89021); with no action it gets all of the component's.
    let component = state
        .store
        .tp_domains(grant.tp_id)
        .await?
        .unwrap_or_default()
        .web_view_domain;
    if component.is_empty() && action != Some(DomainAction::Delete) {
        return Err(Fail::new(Errcode::NoComponentWebviewDomain));
    }
    if let Some(outside) = given.iter().find(|d| !component.contains(d)) {
        if action != Some(DomainAction::Delete) {
            return Err(Fail::detail(
                Errcode::WebviewDomainNotAllowed,
                format!("{outside} is not one of the component's web-view domains"),
            ));
        }
    }
    let (action, given) = match action {
        None => (DomainAction::Set, component),
        Some(a) => (a, given),
    };
    let mut next = current.domains.web_view_domain.clone();
    if !apply_domains(&mut next, action, &given) {
        return Err(OpError::Invalid("too many web-view domains".into()).into());
    }
    if next == current.domains.web_view_domain {
        return Err(Fail::new(Errcode::WebviewDomainUnchanged));
    }
    let settings = application::edit_app_settings(&state, grant.app_id, move |s| {
        apply_domains(&mut s.domains.web_view_domain, action, &given)
    })
    .await?;
    Ok(Answer(WebviewDomains {
        webviewdomain: settings.domains.web_view_domain,
    }))
}

pub async fn code_privacy_info(State(state): State<AppState>, wx: Wx) -> Reply<PrivacyInfo> {
    let grant = wx.authorizer(&state, false).await?;
    // Templates here are not scanned for privacy interfaces: the latest code has nothing
    // undeclared to report (docs/wechat.md). Some code must exist, as on WeChat.
    Slots::read(&state, grant.app_id).await?.latest_code()?;
    Ok(Answer(PrivacyInfo::default()))
}
