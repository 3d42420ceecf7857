//! The package state machine: a function from (what the store knows about one mini program,
//! a command) to a plan of changes, or a refusal with its errno. No I/O happens here; the
//! store loads a [`Snapshot`], calls [`decide`], and applies the [`Plan`] in one transaction
//! with conditional updates (`WHERE state = <from>`), so two racing decisions cannot both land.
//!
//! Every rule of the lifecycle lives in this file; `docs/lifecycle.md` lists them with errnos.

use crate::ids::PackageId;
use crate::stage::{HaltFigures, PlanStatus, StagePlan};
pub use smartpkg_types::Errno;
use smartpkg_types::WireStatus;

/// Where a package stands. More precise than the wire `status`: the development slot has three
/// substates (building, failed, built) and two states are never shown on the wire (`History`:
/// a former online version kept for rollback; `Retired`: replaced and gone for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PkgState {
    Building,
    BuildFailed,
    Development,
    Auditing,
    AuditFailed,
    AuditPassed,
    Online,
    RollingBack,
    History,
    Retired,
}

/// The three places a package can occupy; each holds at most one package per mini program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Development,
    Audit,
    Online,
}

impl PkgState {
    pub const ALL: [PkgState; 10] = [
        PkgState::Building,
        PkgState::BuildFailed,
        PkgState::Development,
        PkgState::Auditing,
        PkgState::AuditFailed,
        PkgState::AuditPassed,
        PkgState::Online,
        PkgState::RollingBack,
        PkgState::History,
        PkgState::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PkgState::Building => "building",
            PkgState::BuildFailed => "build_failed",
            PkgState::Development => "development",
            PkgState::Auditing => "auditing",
            PkgState::AuditFailed => "audit_failed",
            PkgState::AuditPassed => "audit_passed",
            PkgState::Online => "online",
            PkgState::RollingBack => "rolling_back",
            PkgState::History => "history",
            PkgState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<PkgState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The `status` the wire shows, or `None` for states the wire never shows.
    pub fn wire_status(self) -> Option<WireStatus> {
        match self {
            PkgState::Building | PkgState::BuildFailed | PkgState::Development => {
                Some(WireStatus::Development)
            }
            PkgState::Auditing => Some(WireStatus::Auditing),
            PkgState::AuditFailed => Some(WireStatus::AuditFailed),
            PkgState::AuditPassed => Some(WireStatus::AuditPassed),
            PkgState::Online => Some(WireStatus::Online),
            PkgState::RollingBack => Some(WireStatus::RollingBack),
            PkgState::History | PkgState::Retired => None,
        }
    }

    pub fn slot(self) -> Option<Slot> {
        match self {
            PkgState::Building | PkgState::BuildFailed | PkgState::Development => {
                Some(Slot::Development)
            }
            PkgState::Auditing | PkgState::AuditFailed | PkgState::AuditPassed => Some(Slot::Audit),
            PkgState::Online | PkgState::RollingBack => Some(Slot::Online),
            PkgState::History | PkgState::Retired => None,
        }
    }
}

/// What the decision needs to know about one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFacts {
    pub package_id: PackageId,
    pub state: PkgState,
    /// The online package it replaced when it was released (its rollback target).
    pub previous_package_id: Option<PackageId>,
    /// It became online through a rollback; it cannot be rolled back itself.
    pub restored: bool,
    /// An audit-passed package released to this percentage of devices (a staged release;
    /// 0 while its plan is halted).
    pub staged_percent: Option<i64>,
    /// The staged release's plan, if it has one (kept, finished, once released).
    pub stage_plan: Option<StagePlan>,
}

/// The mini program's audit gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppFacts {
    pub name_audited: bool,
    pub category_audited: bool,
    pub authenticity_certified: bool,
}

/// The third party's weekly audit quota: `limit` None = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: Option<i64>,
    pub used: i64,
}

impl Quota {
    pub fn remaining(&self) -> Option<i64> {
        self.limit.map(|l| (l - self.used).max(0))
    }
}

/// Everything [`decide`] reads: the packages in the three slots, plus the command's target and
/// the online package's rollback target wherever they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub app: AppFacts,
    pub quota: Quota,
    pub packages: Vec<PackageFacts>,
    /// The last five former online versions (history), most recent first: the targets of a
    /// rollback to a chosen version. Their facts are in `packages` too.
    pub recent_history: Vec<PackageId>,
}

impl Snapshot {
    pub fn package(&self, id: PackageId) -> Option<&PackageFacts> {
        self.packages.iter().find(|p| p.package_id == id)
    }

    pub fn in_slot(&self, slot: Slot) -> Option<&PackageFacts> {
        self.packages.iter().find(|p| p.state.slot() == Some(slot))
    }
}

/// Timing the plan's jobs need; audit mode decides whether a submission schedules an automatic
/// decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub build_delay_ms: u64,
    pub rollback_delay_ms: u64,
    /// `Some(delay)`: the automatic (sandbox) audit decides after `delay`.
    pub auto_audit_delay_ms: Option<u64>,
}

/// What a reviewer is given with a submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRequest {
    pub content: String,
    pub remark: String,
    /// None keeps what the upload gave (`directCommit` keeps the upload's test account).
    pub test_account: Option<String>,
    pub test_password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A new package, already given its id by the store, enters the development slot.
    Upload {
        package_id: PackageId,
    },
    BuildSucceeded {
        package_id: PackageId,
        direct_commit: bool,
        ext_json: String,
    },
    BuildFailed {
        package_id: PackageId,
        errno: Errno,
        msg: String,
    },
    SubmitAudit {
        package_id: PackageId,
        request: AuditRequest,
    },
    Decide {
        package_id: PackageId,
        pass: bool,
        reason: String,
    },
    Release {
        package_id: PackageId,
    },
    Rollback {
        package_id: PackageId,
    },
    FinishRollback {
        package_id: PackageId,
    },
    Withdraw {
        package_id: PackageId,
    },
    /// Release the audit-passed package to `percent` of devices (1–100), or raise it.
    StageRelease {
        package_id: PackageId,
        percent: i64,
    },
    /// Cancel a staged release: every device runs the online version again.
    RevertStage {
        package_id: PackageId,
    },
    /// Roll the online package back to `target`, one of the last five online versions.
    RollbackTo {
        package_id: PackageId,
        target: PackageId,
    },
    /// Start a staged release that follows `plan` (from its first step).
    StartPlan {
        package_id: PackageId,
        plan: StagePlan,
    },
    /// The plan's step `from_step` was healthy: the next step (or, past the last but one,
    /// the release to every device). `from_step` makes a second scheduler's late decision a
    /// refusal rather than a second advance.
    AdvanceStage {
        package_id: PackageId,
        from_step: usize,
        at_ms: i64,
    },
    /// The plan's step `from_step` was unhealthy: its share drops to zero at once.
    HaltStage {
        package_id: PackageId,
        from_step: usize,
        figures: HaltFigures,
    },
    /// A halted plan runs again from the step it halted at, with a fresh sample (from the
    /// next full hour).
    ResumeStage {
        package_id: PackageId,
        at_ms: i64,
    },
}

/// How many former online versions a rollback to a chosen version may pick from.
pub const ROLLBACK_CHOICES: usize = 5;

impl Command {
    /// The existing package the command acts on (None for an upload, which creates one).
    pub fn target(&self) -> Option<PackageId> {
        match self {
            Command::Upload { .. } => None,
            Command::BuildSucceeded { package_id, .. }
            | Command::BuildFailed { package_id, .. }
            | Command::SubmitAudit { package_id, .. }
            | Command::Decide { package_id, .. }
            | Command::Release { package_id }
            | Command::Rollback { package_id }
            | Command::FinishRollback { package_id }
            | Command::Withdraw { package_id }
            | Command::StageRelease { package_id, .. }
            | Command::RevertStage { package_id }
            | Command::RollbackTo { package_id, .. }
            | Command::StartPlan { package_id, .. }
            | Command::AdvanceStage { package_id, .. }
            | Command::HaltStage { package_id, .. }
            | Command::ResumeStage { package_id, .. } => Some(*package_id),
        }
    }

    /// Whether deciding it may submit a package for audit (and so consume audit quota).
    pub fn may_submit(&self) -> bool {
        matches!(
            self,
            Command::SubmitAudit { .. }
                | Command::BuildSucceeded {
                    direct_commit: true,
                    ..
                }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Build,
    FinishRollback,
    AutoAudit,
    /// Deliver an event to the third party (created by the store with the event).
    Push,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Build => "build",
            JobKind::FinishRollback => "finish_rollback",
            JobKind::AutoAudit => "auto_audit",
            JobKind::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        [
            JobKind::Build,
            JobKind::FinishRollback,
            JobKind::AutoAudit,
            JobKind::Push,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub kind: JobKind,
    pub package_id: PackageId,
    pub delay_ms: u64,
}

/// Field updates that ride along with a state change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    /// The audit message (`msg` on the wire).
    pub msg: Option<String>,
    pub upload_error: Option<(Errno, String)>,
    /// The generated `ext.json` of a successful build.
    pub built_ext_json: Option<String>,
    pub audit_request: Option<AuditRequest>,
    /// Set on release (the replaced online package) and cleared on restore.
    pub previous_package_id: Option<Option<PackageId>>,
    pub restored: Option<bool>,
    /// Set by a staged release, cleared by its revert and by the release.
    pub staged_percent: Option<Option<i64>>,
    pub stage_plan: Option<Option<StagePlan>>,
    /// What the timeline says of the change, when the state alone does not say it.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub package_id: PackageId,
    pub from: PkgState,
    pub to: PkgState,
    pub patch: Patch,
}

/// The outcome of a decision, applied in order within one transaction. The order matters:
/// a package leaves a slot before another enters it, so the database's one-per-slot
/// constraints hold after every statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// A new package to insert in `Building` (upload), after the changes.
    pub create: Option<PackageId>,
    pub changes: Vec<Change>,
    pub jobs: Vec<JobRequest>,
    pub consume_quota: bool,
    /// The audit decision that an outbox push will announce: (package_id, pass, reason).
    pub audit_decision: Option<(PackageId, bool, String)>,
    /// A plan's step that an outbox push will announce.
    pub stage_event: Option<StageEvent>,
}

/// The scheduler moved a plan: the third party hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageEvent {
    pub package_id: PackageId,
    pub halted: bool,
    /// The share of devices the new version has now.
    pub percent: i64,
    pub status: PlanStatus,
    pub reason: String,
}

/// A refused command: the errno and a precise message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} (errno {})", errno.code())]
pub struct Refusal {
    pub errno: Errno,
    pub msg: String,
}

impl Refusal {
    pub fn new(errno: Errno, msg: impl Into<String>) -> Self {
        Refusal {
            errno,
            msg: msg.into(),
        }
    }

    /// The errno with its own message.
    pub fn baidu(errno: Errno) -> Self {
        Refusal::new(errno, errno.default_msg())
    }

    /// The errno's message followed by what was wrong.
    pub fn detailed(errno: Errno, detail: impl std::fmt::Display) -> Self {
        Refusal::new(errno, format!("{}: {detail}", errno.default_msg()))
    }
}

pub const AUDIT_PASS_MSG: &str = "审核通过";

fn target(s: &Snapshot, id: PackageId) -> Result<&PackageFacts, Refusal> {
    s.package(id)
        .ok_or_else(|| Refusal::baidu(Errno::PackageNotFound))
}

fn wrong_state(p: &PackageFacts, call: &str) -> Refusal {
    let shown = match p.state.wire_status() {
        Some(w) => format!("status {}", w.code()),
        None => "an old version".to_string(),
    };
    Refusal::new(
        Errno::WrongState,
        format!(
            "{}: package {} is {} ({}), {call} is not allowed",
            Errno::WrongState.default_msg(),
            p.package_id,
            shown,
            p.state.as_str()
        ),
    )
}

/// The online package a rollback starts from.
fn online_to_roll_back(s: &Snapshot, package_id: PackageId) -> Result<&PackageFacts, Refusal> {
    let p = target(s, package_id)?;
    match p.state {
        PkgState::Online => Ok(p),
        PkgState::RollingBack => Err(Refusal::new(
            Errno::Processing,
            format!("处理中，请稍后重试: package {package_id} is already rolling back"),
        )),
        _ => Err(Refusal::new(
            Errno::NotOnlinePackage,
            format!(
                "{}: package {package_id} is {}",
                Errno::NotOnlinePackage.default_msg(),
                p.state.as_str()
            ),
        )),
    }
}

fn change(p: &PackageFacts, to: PkgState) -> Change {
    Change {
        package_id: p.package_id,
        from: p.state,
        to,
        patch: Patch::default(),
    }
}

/// The checks every submission for audit passes, whether called or by `directCommit`.
fn audit_gates(s: &Snapshot) -> Result<(), Refusal> {
    match (s.app.name_audited, s.app.category_audited) {
        (false, false) => return Err(Refusal::baidu(Errno::NameAndCategoryNotAudited)),
        (false, true) => return Err(Refusal::baidu(Errno::NameNotAudited)),
        (true, false) => return Err(Refusal::baidu(Errno::CategoryNotAudited)),
        (true, true) => {}
    }
    if let Some(a) = s.in_slot(Slot::Audit) {
        if let Some(percent) = a.staged_percent {
            return Err(Refusal::new(
                Errno::StagedReleaseInProgress,
                format!(
                    "{}: package {} is released to {percent}% of devices",
                    Errno::StagedReleaseInProgress.default_msg(),
                    a.package_id
                ),
            ));
        }
        if a.state == PkgState::Auditing {
            return Err(Refusal::new(
                Errno::AuditInFlight,
                format!(
                    "{}: package {} is being audited; withdraw it first",
                    Errno::AuditInFlight.default_msg(),
                    a.package_id
                ),
            ));
        }
    }
    if s.quota.remaining() == Some(0) {
        return Err(Refusal::baidu(Errno::AuditQuotaExceeded));
    }
    Ok(())
}

/// Moves `p` into the audit slot: the old audit version (failed or passed) is retired first.
fn submit(s: &Snapshot, p: &PackageFacts, request: AuditRequest, policy: &Policy, plan: &mut Plan) {
    if let Some(old) = s.in_slot(Slot::Audit) {
        plan.changes.push(change(old, PkgState::Retired));
    }
    let mut c = change(p, PkgState::Auditing);
    c.patch.msg = Some(String::new());
    c.patch.audit_request = Some(request);
    plan.changes.push(c);
    plan.consume_quota = true;
    if let Some(delay_ms) = policy.auto_audit_delay_ms {
        plan.jobs.push(JobRequest {
            kind: JobKind::AutoAudit,
            package_id: p.package_id,
            delay_ms,
        });
    }
}

/// Releases the audit-passed `p` to every device: the online package (if any) becomes
/// history. A staged plan is kept, finished, at `last_step` (or where it stood).
fn release(
    s: &Snapshot,
    p: &PackageFacts,
    last_step: Option<usize>,
    plan: &mut Plan,
) -> Result<(), Refusal> {
    if !s.app.authenticity_certified {
        return Err(Refusal::baidu(Errno::NotCertified));
    }
    let online = s.in_slot(Slot::Online);
    if let Some(o) = online {
        not_rolling_back(o)?;
        plan.changes.push(change(o, PkgState::History));
    }
    let mut c = change(p, PkgState::Online);
    c.patch.previous_package_id = Some(online.map(|o| o.package_id));
    c.patch.restored = Some(false);
    c.patch.staged_percent = Some(None);
    if let Some(mut stage) = p.stage_plan.clone() {
        stage.status = PlanStatus::Finished;
        stage.step = last_step.unwrap_or(stage.step);
        stage.halt = None;
        c.patch.stage_plan = Some(Some(stage));
    }
    plan.changes.push(c);
    Ok(())
}

/// A release of any kind waits for a rollback in flight to finish.
fn not_rolling_back(online: &PackageFacts) -> Result<(), Refusal> {
    if online.state == PkgState::RollingBack {
        return Err(Refusal::new(
            Errno::Processing,
            format!(
                "处理中，请稍后重试: package {} is rolling back",
                online.package_id
            ),
        ));
    }
    Ok(())
}

/// The plan is at the step a scheduler judged: a second scheduler that judged the same step
/// late is refused, so a step moves once.
fn at_step(stage: &StagePlan, from_step: usize, package_id: PackageId) -> Result<(), Refusal> {
    if stage.step == from_step {
        return Ok(());
    }
    Err(Refusal::new(
        Errno::Processing,
        format!(
            "处理中，请稍后重试: the plan of package {package_id} is at step {}, not {}",
            stage.step + 1,
            from_step + 1
        ),
    ))
}

/// The package's running or halted plan, for the scheduler's and people's plan commands.
fn staged_plan(p: &PackageFacts, expect: PlanStatus) -> Result<&StagePlan, Refusal> {
    let plan = p
        .stage_plan
        .as_ref()
        .filter(|_| p.state == PkgState::AuditPassed && p.staged_percent.is_some());
    match plan {
        Some(pl) if pl.status == expect => Ok(pl),
        Some(pl) => Err(Refusal::new(
            Errno::WrongState,
            format!(
                "{}: the staged release of package {} is {}, not {}",
                Errno::WrongState.default_msg(),
                p.package_id,
                pl.status.as_str(),
                expect.as_str()
            ),
        )),
        None => Err(Refusal::new(
            Errno::NotStaged,
            format!(
                "{}: package {} has no staged release with a plan",
                Errno::NotStaged.default_msg(),
                p.package_id
            ),
        )),
    }
}

pub fn decide(s: &Snapshot, cmd: &Command, policy: &Policy) -> Result<Plan, Refusal> {
    let mut plan = Plan::default();
    match cmd {
        Command::Upload { package_id } => {
            // One development version per mini program (as WeChat): a new upload replaces it,
            // even one still building; that build's job then finds nothing to do.
            if let Some(old) = s.in_slot(Slot::Development) {
                plan.changes.push(change(old, PkgState::Retired));
            }
            plan.create = Some(*package_id);
            plan.jobs.push(JobRequest {
                kind: JobKind::Build,
                package_id: *package_id,
                delay_ms: policy.build_delay_ms,
            });
        }
        Command::BuildSucceeded {
            package_id,
            direct_commit,
            ext_json,
        } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::Building {
                return Err(wrong_state(p, "finishing a build"));
            }
            let gates = if *direct_commit {
                Some(audit_gates(s))
            } else {
                None
            };
            match gates {
                Some(Ok(())) => {
                    let request = AuditRequest::default();
                    submit(s, p, request, policy, &mut plan);
                    if let Some(c) = plan.changes.last_mut() {
                        c.patch.built_ext_json = Some(ext_json.clone());
                    }
                }
                other => {
                    let mut c = change(p, PkgState::Development);
                    c.patch.built_ext_json = Some(ext_json.clone());
                    if let Some(Err(r)) = other {
                        // The package is built; only the automatic submission failed. The
                        // reason stays readable in `msg` and the TP may submit by hand.
                        c.patch.msg = Some(format!("自动送审失败：{}", r.msg));
                    }
                    plan.changes.push(c);
                }
            }
        }
        Command::BuildFailed {
            package_id,
            errno,
            msg,
        } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::Building {
                return Err(wrong_state(p, "failing a build"));
            }
            let mut c = change(p, PkgState::BuildFailed);
            c.patch.upload_error = Some((*errno, msg.clone()));
            plan.changes.push(c);
        }
        Command::SubmitAudit {
            package_id,
            request,
        } => {
            let p = target(s, *package_id)?;
            match p.state {
                PkgState::Development => {}
                PkgState::Building => {
                    return Err(Refusal::new(
                        Errno::Processing,
                        format!("处理中，请稍后重试: package {package_id} is still building"),
                    ))
                }
                _ => return Err(wrong_state(p, "submitaudit")),
            }
            audit_gates(s)?;
            submit(s, p, request.clone(), policy, &mut plan);
        }
        Command::Decide {
            package_id,
            pass,
            reason,
        } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::Auditing {
                return Err(wrong_state(p, "an audit decision"));
            }
            let (to, msg) = if *pass {
                (PkgState::AuditPassed, AUDIT_PASS_MSG.to_string())
            } else {
                (PkgState::AuditFailed, reason.clone())
            };
            let mut c = change(p, to);
            c.patch.msg = Some(msg);
            plan.changes.push(c);
            plan.audit_decision = Some((*package_id, *pass, reason.clone()));
        }
        Command::Release { package_id } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::AuditPassed {
                return Err(wrong_state(p, "release"));
            }
            release(s, p, None, &mut plan)?;
        }
        Command::StageRelease {
            package_id,
            percent,
        } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::AuditPassed {
                return Err(wrong_state(p, "a staged release"));
            }
            if !(1..=100).contains(percent) {
                return Err(Refusal::new(
                    Errno::ParamError,
                    format!("参数错误: percentage is 1 to 100, not {percent}"),
                ));
            }
            if !s.app.authenticity_certified {
                return Err(Refusal::baidu(Errno::NotCertified));
            }
            if let Some(o) = s.in_slot(Slot::Online) {
                not_rolling_back(o)?;
            }
            if let Some(current) = p.staged_percent {
                if *percent < current {
                    return Err(Refusal::new(
                        Errno::StagePercentLowered,
                        format!(
                            "{}: package {package_id} is at {current}%, not lowered to {percent}%; revert to start again",
                            Errno::StagePercentLowered.default_msg()
                        ),
                    ));
                }
            }
            let mut c = change(p, PkgState::AuditPassed);
            c.patch.staged_percent = Some(Some(*percent));
            // A percentage set by hand ends any plan: from here a person drives it.
            if p.stage_plan.is_some() {
                c.patch.stage_plan = Some(None);
            }
            plan.changes.push(c);
        }
        Command::RevertStage { package_id } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::AuditPassed || p.staged_percent.is_none() {
                return Err(Refusal::new(
                    Errno::NotStaged,
                    format!(
                        "{}: package {package_id} is not in a staged release",
                        Errno::NotStaged.default_msg()
                    ),
                ));
            }
            let mut c = change(p, PkgState::AuditPassed);
            c.patch.staged_percent = Some(None);
            if p.stage_plan.is_some() {
                c.patch.stage_plan = Some(None);
                c.patch.note = Some("staged release abandoned".into());
            }
            plan.changes.push(c);
        }
        Command::StartPlan {
            package_id,
            plan: stage,
        } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::AuditPassed {
                return Err(wrong_state(p, "a staged release"));
            }
            if let Some(current) = p.staged_percent {
                return Err(Refusal::new(
                    Errno::StagedReleaseInProgress,
                    format!(
                        "{}: package {package_id} is already released to {current}% of devices; revert it to start a plan",
                        Errno::StagedReleaseInProgress.default_msg()
                    ),
                ));
            }
            if !s.app.authenticity_certified {
                return Err(Refusal::baidu(Errno::NotCertified));
            }
            if let Some(o) = s.in_slot(Slot::Online) {
                not_rolling_back(o)?;
            }
            let mut c = change(p, PkgState::AuditPassed);
            c.patch.staged_percent = Some(Some(stage.percent()));
            c.patch.note = Some(format!(
                "{}% of devices, plan {} ({})",
                stage.percent(),
                stage
                    .steps
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                if stage.auto { "automatic" } else { "by hand" }
            ));
            c.patch.stage_plan = Some(Some(stage.clone()));
            plan.changes.push(c);
        }
        Command::AdvanceStage {
            package_id,
            from_step,
            at_ms,
        } => {
            let p = target(s, *package_id)?;
            let stage = staged_plan(p, PlanStatus::Running)?;
            at_step(stage, *from_step, *package_id)?;
            let percent;
            if stage.last_step_next() {
                let last = stage.steps.len() - 1;
                release(s, p, Some(last), &mut plan)?;
                percent = 100;
                if let Some(c) = plan.changes.last_mut() {
                    c.patch.note = Some("plan finished: released to every device".into());
                }
            } else {
                if let Some(o) = s.in_slot(Slot::Online) {
                    not_rolling_back(o)?;
                }
                let mut next = stage.clone();
                next.step += 1;
                next.step_started_ms = *at_ms;
                percent = next.percent();
                let mut c = change(p, PkgState::AuditPassed);
                c.patch.staged_percent = Some(Some(percent));
                c.patch.note = Some(format!(
                    "plan advanced to {percent}% of devices (step {} of {})",
                    next.step + 1,
                    next.steps.len()
                ));
                c.patch.stage_plan = Some(Some(next));
                plan.changes.push(c);
            }
            plan.stage_event = Some(StageEvent {
                package_id: *package_id,
                halted: false,
                percent,
                status: if percent == 100 {
                    PlanStatus::Finished
                } else {
                    PlanStatus::Running
                },
                reason: String::new(),
            });
        }
        Command::HaltStage {
            package_id,
            from_step,
            figures,
        } => {
            let p = target(s, *package_id)?;
            let stage = staged_plan(p, PlanStatus::Running)?;
            at_step(stage, *from_step, *package_id)?;
            let mut halted = stage.clone();
            halted.status = PlanStatus::Halted;
            halted.halt = Some(figures.clone());
            let reason = figures.describe();
            let mut c = change(p, PkgState::AuditPassed);
            c.patch.staged_percent = Some(Some(0));
            c.patch.note = Some(format!("plan halted at {}%: {reason}", stage.percent()));
            c.patch.stage_plan = Some(Some(halted));
            plan.changes.push(c);
            plan.stage_event = Some(StageEvent {
                package_id: *package_id,
                halted: true,
                percent: 0,
                status: PlanStatus::Halted,
                reason,
            });
        }
        Command::ResumeStage { package_id, at_ms } => {
            let p = target(s, *package_id)?;
            let stage = staged_plan(p, PlanStatus::Halted)?;
            if let Some(o) = s.in_slot(Slot::Online) {
                not_rolling_back(o)?;
            }
            let mut resumed = stage.clone();
            resumed.status = PlanStatus::Running;
            // Reports are kept by the hour: the fresh sample starts at the next full hour, so
            // the failures that halted it are not judged again.
            let hour = crate::health::HOUR_MS;
            resumed.step_started_ms = (at_ms.div_euclid(hour) + 1).saturating_mul(hour);
            resumed.halt = None;
            let mut c = change(p, PkgState::AuditPassed);
            c.patch.staged_percent = Some(Some(resumed.percent()));
            c.patch.note = Some(format!("plan resumed at {}% of devices", resumed.percent()));
            c.patch.stage_plan = Some(Some(resumed));
            plan.changes.push(c);
        }
        Command::RollbackTo {
            package_id,
            target: to,
        } => {
            let p = online_to_roll_back(s, *package_id)?;
            let chosen = s
                .recent_history
                .iter()
                .take(ROLLBACK_CHOICES)
                .find(|id| **id == *to)
                .and_then(|id| s.package(*id))
                .filter(|t| t.state == PkgState::History);
            if chosen.is_none() {
                return Err(Refusal::new(
                    Errno::RollbackTargetInvalid,
                    format!(
                        "{}: package {to} is not one of them ({})",
                        Errno::RollbackTargetInvalid.default_msg(),
                        s.recent_history
                            .iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            // The rollback finishes as a plain one does, towards the chosen version.
            let mut c = change(p, PkgState::RollingBack);
            c.patch.previous_package_id = Some(Some(*to));
            plan.changes.push(c);
            plan.jobs.push(JobRequest {
                kind: JobKind::FinishRollback,
                package_id: *package_id,
                delay_ms: policy.rollback_delay_ms,
            });
        }
        Command::Rollback { package_id } => {
            let p = online_to_roll_back(s, *package_id)?;
            if p.restored {
                return Err(Refusal::baidu(Errno::RollbackTwice));
            }
            let has_target = p
                .previous_package_id
                .and_then(|id| s.package(id))
                .is_some_and(|prev| prev.state == PkgState::History);
            if !has_target {
                return Err(Refusal::baidu(Errno::NothingToRollBack));
            }
            plan.changes.push(change(p, PkgState::RollingBack));
            plan.jobs.push(JobRequest {
                kind: JobKind::FinishRollback,
                package_id: *package_id,
                delay_ms: policy.rollback_delay_ms,
            });
        }
        Command::FinishRollback { package_id } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::RollingBack {
                return Err(wrong_state(p, "finishing a rollback"));
            }
            let prev = p
                .previous_package_id
                .and_then(|id| s.package(id))
                .filter(|prev| prev.state == PkgState::History);
            match prev {
                Some(prev) => {
                    plan.changes.push(change(p, PkgState::Retired));
                    let mut c = change(prev, PkgState::Online);
                    c.patch.previous_package_id = Some(None);
                    c.patch.restored = Some(true);
                    plan.changes.push(c);
                }
                // The target vanished (it cannot, by the rules above, but a rollback must
                // never leave the app with nothing online): cancel the rollback.
                None => plan.changes.push(change(p, PkgState::Online)),
            }
        }
        Command::Withdraw { package_id } => {
            let p = target(s, *package_id)?;
            if p.state != PkgState::Auditing {
                return Err(wrong_state(p, "withdraw"));
            }
            // Back to development (as WeChat), unless a newer upload took that place: then
            // the withdrawn package is retired rather than replacing newer work.
            let to = if s.in_slot(Slot::Development).is_some() {
                PkgState::Retired
            } else {
                PkgState::Development
            };
            let mut c = change(p, to);
            c.patch.msg = Some(String::new());
            plan.changes.push(c);
        }
    }
    Ok(plan)
}

/// Applies a plan to a snapshot as the store would; used by tests and by anyone who wants to
/// reason about a plan without a database.
pub fn apply(s: &mut Snapshot, plan: &Plan) -> Result<(), String> {
    for c in &plan.changes {
        let p = s
            .packages
            .iter_mut()
            .find(|p| p.package_id == c.package_id)
            .ok_or_else(|| format!("package {} missing", c.package_id))?;
        if p.state != c.from {
            return Err(format!(
                "package {} is {:?}, plan expected {:?}",
                c.package_id, p.state, c.from
            ));
        }
        p.state = c.to;
        if let Some(prev) = c.patch.previous_package_id {
            p.previous_package_id = prev;
        }
        if let Some(r) = c.patch.restored {
            p.restored = r;
        }
        if let Some(st) = c.patch.staged_percent {
            p.staged_percent = st;
        }
        if let Some(pl) = &c.patch.stage_plan {
            p.stage_plan = pl.clone();
        }
    }
    if let Some(id) = plan.create {
        s.packages.push(PackageFacts {
            package_id: id,
            state: PkgState::Building,
            previous_package_id: None,
            restored: false,
            staged_percent: None,
            stage_plan: None,
        });
    }
    if plan.consume_quota {
        s.quota.used += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
