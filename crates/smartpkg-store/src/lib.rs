//! Storage for smartpkg: the [`Store`] trait, its embedded SQLite implementation, durable jobs
//! and the content-addressed [`blobs`] store.
//!
//! The trait speaks in domain terms (upload, execute a command, claim jobs), not SQL, so a
//! PostgreSQL implementation can join with its own statements. Every decision is taken inside
//! the implementation's transaction by calling [`smartpkg_core::lifecycle::decide`] on a
//! snapshot read in that same transaction.

pub mod blobs;
pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;
use smartpkg_core::lifecycle::{Command, PkgState, Plan, Policy, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    /// A concurrent decision changed what this one read; the caller may retry.
    #[error("concurrent update: {0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    #[error("the data directory is in use by another smartpkg process: {0}")]
    Locked(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tp {
    pub tp_id: i64,
    pub client_id: String,
    pub name: String,
    pub event_url: String,
    pub auth_event_url: String,
    pub msg_token: String,
    pub encoding_aes_key: String,
    /// Weekly audit submissions allowed; None = the server's default, -1 = unlimited.
    pub audit_quota: Option<i64>,
    /// Authorization redirects must go to this host or one below it.
    pub redirect_domain: String,
}

#[derive(Debug, Clone, Default)]
pub struct TpPatch {
    pub name: Option<String>,
    pub event_url: Option<String>,
    pub auth_event_url: Option<String>,
    pub msg_token: Option<String>,
    pub encoding_aes_key: Option<String>,
    pub audit_quota: Option<Option<i64>>,
    pub redirect_domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub app_id: i64,
    pub app_key: String,
    pub name: String,
    pub name_audited: bool,
    pub category_audited: bool,
    pub authenticity_certified: bool,
    /// The third party the mini program is authorized to, if any.
    pub tp_id: Option<i64>,
    /// Whether the owner has a credential (its hash is never read out with the app).
    #[serde(default)]
    pub owner_credential_set: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    pub name: Option<String>,
    pub name_audited: Option<bool>,
    pub category_audited: Option<bool>,
    pub authenticity_certified: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub template_id: i64,
    pub draft_id: i64,
    pub tp_id: i64,
    pub user_version: String,
    pub user_desc: String,
    pub blob_sha256: String,
    /// The [`smartpkg_core::archive::TemplateManifest`] as JSON.
    #[serde(skip)]
    pub manifest: String,
    pub create_time: i64,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub tp_id: i64,
    pub user_version: String,
    pub user_desc: String,
    pub blob_sha256: String,
    pub manifest: String,
}

/// A new app access token and refresh token, as stored: hashes and expiries.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_hash: String,
    pub refresh_hash: String,
    pub access_expires_at_ms: i64,
    pub refresh_expires_at_ms: i64,
}

/// What an access token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub app_id: i64,
    pub tp_id: i64,
    pub expires_at_ms: i64,
}

/// A package as stored, for the wire, the admin API and workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRecord {
    pub package_id: i64,
    pub app_id: i64,
    pub tp_id: i64,
    pub template_id: i64,
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
    pub previous_package_id: Option<i64>,
    /// The version string of `previous_package_id`, when that package is still kept.
    pub rollback_version: Option<String>,
    pub restored: bool,
    pub commit_time_ms: i64,
    pub updated_at_ms: i64,
}

fn state_str<S: serde::Serializer>(s: &PkgState, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

#[derive(Debug, Clone)]
pub struct NewPackage {
    pub app_id: i64,
    pub tp_id: i64,
    pub template_id: i64,
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
    pub app_id: Option<i64>,
    pub tp_id: Option<i64>,
    pub limit: Option<i64>,
}

/// The time and settings a decision is taken under.
#[derive(Debug, Clone, Copy)]
pub struct DecisionContext {
    pub now_ms: i64,
    /// The start of the current quota week.
    pub week_start_ms: i64,
    /// Weekly audit quota for TPs without their own; None = unlimited.
    pub default_quota: Option<i64>,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: i64,
    pub kind: smartpkg_core::lifecycle::JobKind,
    pub package_id: i64,
    /// Set for push jobs.
    pub delivery_id: Option<i64>,
    pub attempts: i64,
    /// A push to a target in a failing run (it runs in the lane's share for such targets).
    pub degraded: bool,
}

/// An event to a third party, as stored: the wire JSON is rendered from these fields, so it
/// is identical on every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub event_id: i64,
    pub uid: String,
    pub tp_id: i64,
    pub app_id: i64,
    pub package_id: i64,
    pub event: String,
    pub reason: Option<String>,
    pub package_version: String,
    pub created_at_ms: i64,
    /// `event` (to the TP's event_url) or `auth` (to its auth_event_url).
    pub channel: String,
    /// The plain JSON of pushes that are not package audit results (tickets).
    pub payload: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    pub draft_id: i64,
    pub tp_id: i64,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub create_time: i64,
}

/// An authorization code issued when a mini program is authorized to a third party, with the
/// AUTHORIZED event that hands it over.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    pub tp_id: i64,
    pub app_id: i64,
    pub code_hash: String,
    pub expires_at_ms: i64,
    /// The event's extra fields (the plain authorization code and its lifetime), as JSON.
    pub payload: String,
}

/// An owner's approval on the authorization page.
#[derive(Debug, Clone)]
pub struct Approval {
    pub pre_auth_hash: String,
    pub code: IssuedCode,
}

/// An operator authorizes a mini program to a third party directly (admin API): the same
/// events as the page flow, plus a token pair handed to the operator.
#[derive(Debug, Clone)]
pub struct OperatorGrant {
    pub tp_id: i64,
    pub app_id: i64,
    pub pair: TokenPair,
    pub code: IssuedCode,
}

/// Why an approval on the authorization page was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRefusal {
    PreAuthCodeInvalid,
    AppUnknown,
}

/// Why the template library refused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryRefusal {
    DraftNotFound,
    TemplateLimit,
    TemplateNotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub at_ms: i64,
    pub url: String,
    /// The HTTP status, when a response came.
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The first bytes of the response body.
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub delivery_id: i64,
    pub event: EventRecord,
    pub tp_id: i64,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub cycle_attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

/// What happens after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time.
    RetryAt(i64),
    /// No attempts left.
    GaveUp,
}

/// Which jobs a worker pool claims: platform work (builds, rollbacks, audits) and deliveries
/// never wait for each other's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Platform,
    /// Pushes, at most `per_target` in flight per third party across all instances (one for
    /// a target in a failing run), and at most `failing_slots` newly claimed for failing ones.
    Deliveries {
        per_target: usize,
        failing_slots: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneKind {
    Platform,
    Deliveries,
}

/// How a push attempt reflects on its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetVerdict {
    Succeeded,
    Failed {
        hold: smartpkg_core::push::HoldPolicy,
    },
}

/// A push target (a third party) as the circuit breaker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushTarget {
    pub tp_id: i64,
    pub consecutive_failures: i64,
    pub failing_since_ms: Option<i64>,
    /// While in the future, no delivery to this target is attempted.
    pub hold_until_ms: Option<i64>,
    /// How many times the target was put on hold.
    pub holds: i64,
    pub last_error: Option<String>,
}

/// What the janitor keeps and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPolicy {
    /// Used codes and used refresh tokens are kept this long after their use.
    pub used_credential_retention_ms: i64,
    /// Retired packages keep their inputs this long after they were retired.
    pub retired_package_retention_ms: i64,
}

/// What one janitor run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub codes: u64,
    pub tickets: u64,
    pub tokens: u64,
    pub packages_trimmed: u64,
}

/// A decision's outcome: the plan that was applied, or the rule that refused it.
pub type Decision = std::result::Result<Plan, Refusal>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_tp(&self, tp: Tp) -> Result<Tp>;
    async fn update_tp(&self, tp_id: i64, patch: TpPatch) -> Result<Tp>;
    async fn get_tp(&self, tp_id: i64) -> Result<Option<Tp>>;

    async fn create_app(&self, app: App) -> Result<App>;
    async fn update_app(&self, app_id: i64, patch: AppPatch) -> Result<App>;
    async fn get_app(&self, app_id: i64) -> Result<Option<App>>;

    async fn create_template(&self, t: NewTemplate, now_ms: i64) -> Result<Template>;
    async fn get_template(&self, template_id: i64) -> Result<Option<Template>>;

    /// Authorizes the app to the TP as [`Store::approve`] does (another TP's authorization
    /// ends and it is told UNAUTHORIZED; AUTHORIZED goes to the new one with the code) and
    /// stores the token pair as a family of its own. NotFound when the app does not exist.
    async fn authorize(&self, g: OperatorGrant, now_ms: i64) -> Result<()>;
    /// Replaces the owner's credential hash; false when the app does not exist.
    async fn set_owner_password(&self, app_id: i64, hash: String) -> Result<bool>;
    /// The owner's credential hash; None when the app is unknown or has none.
    async fn owner_password_hash(&self, app_id: i64) -> Result<Option<String>>;
    /// A random 32-byte key (hex) shared by every instance, created on first use.
    async fn server_secret(&self, name: &'static str) -> Result<String>;
    /// The grant of an app access token, by its SHA-256; None when unknown or revoked.
    async fn resolve_app_token(&self, token_hash: String) -> Result<Option<Grant>>;

    /// The packages `get` shows: the development, audit and online versions.
    async fn visible_packages(&self, app_id: i64) -> Result<Vec<PackageRecord>>;
    /// The token's grant and its app's visible packages in one read: `get` is what fleet
    /// tools poll, so it gets a single round trip to the database.
    async fn visible_packages_by_token(
        &self,
        token_hash: String,
    ) -> Result<Option<(Grant, Vec<PackageRecord>)>>;
    async fn get_package(&self, package_id: i64) -> Result<Option<PackageRecord>>;
    async fn list_packages(&self, filter: PackageFilter) -> Result<Vec<PackageRecord>>;
    async fn audit_quota(
        &self,
        tp_id: i64,
        ctx: DecisionContext,
    ) -> Result<smartpkg_core::lifecycle::Quota>;

    /// Inserts a new package (it gets its id here) and decides `Command::Upload` in one
    /// transaction. Returns the new package id with the plan.
    async fn upload(
        &self,
        new: NewPackage,
        ctx: DecisionContext,
    ) -> Result<std::result::Result<(i64, Plan), Refusal>>;
    /// Decides `cmd` for the app's packages and applies the plan in one transaction; when
    /// `job` is given it is completed (deleted) in that same transaction.
    async fn execute(
        &self,
        app_id: i64,
        cmd: Command,
        ctx: DecisionContext,
        job: Option<i64>,
    ) -> Result<Decision>;

    /// A delivery with its event.
    async fn get_delivery(&self, delivery_id: i64) -> Result<Option<Delivery>>;
    /// Deliveries, newest first, optionally of one TP and in one state.
    async fn list_deliveries(
        &self,
        tp_id: Option<i64>,
        state: Option<DeliveryState>,
        limit: i64,
    ) -> Result<Vec<Delivery>>;
    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>>;
    /// Logs an attempt and settles the delivery, its push job and its target's failure run in
    /// one transaction. Returns the end of the hold this attempt put the target on, if any.
    async fn record_attempt(
        &self,
        job_id: i64,
        delivery_id: i64,
        attempt: AttemptRecord,
        outcome: AttemptOutcome,
        target: TargetVerdict,
    ) -> Result<Option<i64>>;
    /// Deletes expired and long-used codes, tickets and tokens, and trims packages that can
    /// never come back (see [`SweepPolicy`]).
    async fn sweep(&self, now_ms: i64, policy: SweepPolicy) -> Result<Swept>;
    /// Every push target with a failure record.
    async fn push_targets(&self) -> Result<Vec<PushTarget>>;
    /// Ends a target's hold and failure run (an operator's decision); false if unknown.
    async fn resume_target(&self, tp_id: i64) -> Result<bool>;
    /// Replays a delivery on purpose: pending again, a fresh retry schedule, a push job now,
    /// and its target's hold lifted for the attempt.
    async fn redeliver(&self, delivery_id: i64, now_ms: i64) -> Result<()>;

    /// True for the one caller that moves schedule `name` from due to `now_ms + interval_ms`.
    async fn take_schedule(
        &self,
        name: &'static str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<bool>;
    /// Third parties that have an authorization-event URL.
    async fn tps_with_auth_url(&self) -> Result<Vec<Tp>>;
    /// Stores a ticket (by hash) and queues its push to the TP's authorization-event URL.
    async fn push_ticket(
        &self,
        tp_id: i64,
        ticket_hash: String,
        expires_at_ms: i64,
        payload: String,
        now_ms: i64,
    ) -> Result<()>;
    /// Whether the ticket is one of the TP's and still valid.
    async fn ticket_valid(&self, tp_id: i64, ticket_hash: String, now_ms: i64) -> Result<bool>;
    async fn get_tp_by_client_id(&self, client_id: String) -> Result<Option<Tp>>;
    async fn create_tp_token(
        &self,
        tp_id: i64,
        token_hash: String,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()>;
    /// (tp_id, expires_at_ms) of a TP access token.
    async fn resolve_tp_token(&self, token_hash: String) -> Result<Option<(i64, i64)>>;

    async fn create_draft(&self, t: NewTemplate, now_ms: i64) -> Result<Draft>;
    /// (total, one page) of the TP's drafts, newest first.
    async fn list_drafts(&self, tp_id: i64, offset: i64, limit: i64) -> Result<(i64, Vec<Draft>)>;
    /// Turns a draft into a template, at most `max` live templates per TP.
    async fn add_template(
        &self,
        tp_id: i64,
        draft_id: i64,
        user_desc: String,
        max: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<Template, LibraryRefusal>>;
    /// (total, one page) of the TP's live templates, newest first.
    async fn list_templates(
        &self,
        tp_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<Template>)>;
    /// Deletes a live template of the TP; packages built from it keep working.
    async fn delete_template(
        &self,
        tp_id: i64,
        template_id: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<(), LibraryRefusal>>;

    /// Stores a single-use code (`pre_auth` or `auth`) by its hash.
    async fn create_code(
        &self,
        kind: &'static str,
        code_hash: String,
        tp_id: i64,
        app_id: Option<i64>,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()>;
    /// Whether the code is the TP's, unused and unexpired.
    async fn code_usable(
        &self,
        kind: &'static str,
        code_hash: String,
        tp_id: i64,
        now_ms: i64,
    ) -> Result<bool>;
    /// The owner approved: uses the pre-auth code, authorizes the app to the TP (ending another
    /// TP's authorization, which is told UNAUTHORIZED), stores the authorization code and
    /// queues AUTHORIZED (UPDATE_AUTHORIZED when the app was already the TP's). The event's
    /// extra fields come from `payload` (with the plain code, which only the TP may see).
    async fn approve(
        &self,
        a: Approval,
        now_ms: i64,
    ) -> Result<std::result::Result<(), AuthRefusal>>;
    /// Trades an authorization code for an app token pair; the app id on success. A code
    /// presented again after its use revokes every token issued from it.
    async fn exchange_code(
        &self,
        tp_id: i64,
        code_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<i64>>;
    /// Trades a refresh token (once) for a new pair of the same family; the app id on
    /// success. A used refresh token presented again revokes its whole family.
    async fn refresh(
        &self,
        tp_id: i64,
        refresh_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<i64>>;
    /// Ends the app's authorization to the TP: its tokens die and the TP is told UNAUTHORIZED.
    async fn revoke(&self, tp_id: i64, app_id: i64, now_ms: i64) -> Result<bool>;

    /// Leases up to `limit` due jobs of `lane` for `lease_ms`. Deliveries of a target on hold
    /// are not claimed; per target, leased and newly claimed pushes stay within the cap.
    async fn claim_jobs(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> Result<Vec<Job>>;
    /// Removes a job that has nothing left to do.
    async fn drop_job(&self, job_id: i64) -> Result<()>;
    /// Gives a job back to run again at `run_at_ms`, recording why.
    async fn retry_job(&self, job_id: i64, run_at_ms: i64, error: String) -> Result<()>;
    /// When the earliest job of the lane is due, if any.
    async fn next_job_due(&self, lane: LaneKind) -> Result<Option<i64>>;
    /// Ends every lease (on start, for a database only this process may use).
    async fn release_leases(&self) -> Result<u64>;
}
