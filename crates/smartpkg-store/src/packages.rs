//! Packages and decisions: uploads, lifecycle commands, the weekly audit quota.
//!
//! Serialisation contract: every decision (`upload`, `execute`) is serialised **per mini
//! program** — it reads the app's packages, asks `lifecycle::decide`, and applies the plan
//! with conditional updates in one transaction that holds the app (its row locked first), so
//! concurrent commands on one app are ordered and the invariants hold (one development, one
//! audit, one online version — also unique indexes). Submissions are serialised **per third
//! party** as well: the weekly quota's count and the new submission's insert happen under a
//! lock of the third party, so the quota is never exceeded by concurrent submissions of its
//! mini programs. A backend that loses a serialisation race retries the transaction a bounded
//! number of times and otherwise reports `StoreError::Conflict`, never a half-applied plan.

use async_trait::async_trait;
use serde::Serialize;
use smartpkg_core::ids::{AppId, PackageId, TemplateId, TpId};
use smartpkg_core::lifecycle::{Command, PkgState, Plan, Policy, Refusal};

use crate::{Grant, JobRef, Result};

/// A package as stored, for the wire, the admin API and workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRecord {
    pub package_id: PackageId,
    pub app_id: AppId,
    pub tp_id: TpId,
    pub template_id: TemplateId,
    #[serde(serialize_with = "state_str")]
    pub state: PkgState,
    pub version: String,
    pub version_desc: String,
    pub ext_json: String,
    pub built_ext_json: Option<String>,
    pub direct_commit: bool,
    pub test_account: Option<String>,
    pub test_password: Option<String>,
    pub audit_content: Option<String>,
    pub remark: String,
    pub msg: String,
    pub upload_err_code: Option<i64>,
    pub upload_err_msg: Option<String>,
    pub previous_package_id: Option<PackageId>,
    /// The version string of `previous_package_id`, when that package is still kept.
    pub rollback_version: Option<String>,
    pub restored: bool,
    pub commit_time_ms: i64,
    pub updated_at_ms: i64,
    /// A staged release of this audit-passed package: the percentage of devices that run it.
    pub staged_percent: Option<i64>,
    /// The staged release's plan, if it had one (finished, once released).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_plan: Option<smartpkg_core::stage::StagePlan>,
    /// The archive devices download (template files + the built `ext.json`), once made.
    pub archive_sha256: Option<String>,
    pub archive_size: Option<i64>,
}

fn state_str<S: serde::Serializer>(s: &PkgState, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

#[derive(Debug, Clone)]
pub struct NewPackage {
    pub app_id: AppId,
    pub tp_id: TpId,
    pub template_id: TemplateId,
    pub version: String,
    pub version_desc: String,
    pub ext_json: String,
    pub direct_commit: bool,
    pub test_account: Option<String>,
    pub test_password: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PackageFilter {
    pub status: Option<i64>,
    pub app_id: Option<AppId>,
    pub tp_id: Option<TpId>,
    pub limit: Option<i64>,
}

/// Where a package's latest audit stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOutcome {
    pub submitted_at_ms: i64,
    pub verdict: AuditVerdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    Auditing,
    Passed { at_ms: i64 },
    Failed { at_ms: i64, reason: String },
    Withdrawn { at_ms: i64 },
}

/// What asking to speed up an audit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeedUp {
    Recorded,
    AlreadyAsked,
    QuotaUsed,
}

/// The time and settings a decision is taken under.
#[derive(Debug, Clone, Copy)]
pub struct DecisionContext {
    pub now_ms: i64,
    /// The start of the current quota window: the week for Baidu's quota, the month for
    /// WeChat's.
    pub quota_since_ms: i64,
    /// The dialect's audit quota per window for TPs without their own; None = unlimited.
    pub default_quota: Option<i64>,
    /// The dialect the decision came through: a submission draws on that dialect's quota
    /// (each counts its own submissions; a third party's own `audit_quota` is Baidu's).
    pub dialect: smartpkg_core::dialect::Dialect,
    pub policy: Policy,
    /// Who asks: recorded with every state change in the package log.
    pub actor: crate::Actor,
}

/// A decision's outcome: the plan that was applied, or the rule that refused it.
pub type Decision = std::result::Result<Plan, Refusal>;

/// Storage of packages and decisions. What a backend must serialise is the module's contract (above):
/// every backend meets it, and `conformance` checks it.
#[async_trait]
pub trait PackageStore: Send + Sync {
    /// The packages `get` shows: the development, audit and online versions.
    async fn visible_packages(&self, app_id: AppId) -> Result<Vec<PackageRecord>>;

    /// The token's grant and its app's visible packages in one read: `get` is what fleet
    /// tools poll, so it gets a single round trip to the database.
    async fn visible_packages_by_token(
        &self,
        token_hash: String,
    ) -> Result<Option<(Grant, Vec<PackageRecord>)>>;

    async fn get_package(&self, package_id: PackageId) -> Result<Option<PackageRecord>>;

    async fn list_packages(&self, filter: PackageFilter) -> Result<Vec<PackageRecord>>;

    async fn audit_quota(
        &self,
        tp_id: TpId,
        ctx: DecisionContext,
    ) -> Result<smartpkg_core::lifecycle::Quota>;

    /// The package of the mini program's latest audit submission, if it ever submitted one.
    async fn latest_submission(&self, app_id: AppId) -> Result<Option<PackageId>>;

    /// How the package's latest audit went, read from its log; None when it was never
    /// submitted.
    async fn audit_outcome(&self, package_id: PackageId) -> Result<Option<AuditOutcome>>;

    /// Audits of the mini program withdrawn since `since_ms` (by either dialect).
    async fn withdrawals_since(&self, app_id: AppId, since_ms: i64) -> Result<i64>;

    /// Records that the third party asked to speed up the audit of `package_id`: at most
    /// once per audit and `limit` per third party since `since_ms` (None = unlimited).
    async fn speed_up_audit(
        &self,
        tp_id: TpId,
        package_id: PackageId,
        limit: Option<i64>,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<SpeedUp>;

    /// Speed-ups the third party has asked for since `since_ms`.
    async fn speed_ups_since(&self, tp_id: TpId, since_ms: i64) -> Result<i64>;

    /// Inserts a new package (it gets its id here) and decides `Command::Upload` in one
    /// transaction. Returns the new package id with the plan.
    async fn upload(
        &self,
        new: NewPackage,
        ctx: DecisionContext,
    ) -> Result<std::result::Result<(PackageId, Plan), Refusal>>;

    /// Decides `cmd` for the app's packages and applies the plan in one transaction; when
    /// `job` is given it is completed (deleted) in that same transaction — only while its
    /// lease is still this worker's: otherwise nothing changes and the answer is
    /// [`crate::StoreError::LeaseLost`].
    async fn execute(
        &self,
        app_id: AppId,
        cmd: Command,
        ctx: DecisionContext,
        job: Option<JobRef>,
    ) -> Result<Decision>;
}
