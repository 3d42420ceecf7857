//! The console's storage: accounts and their sessions, who decided what (the package log), and
//! the paginated lists its pages show.
//!
//! Serialisation: account names are unique (the database's constraint decides a race: the
//! loser gets `Ok(None)`); a session is one row, created and deleted atomically. The package
//! log is written by the backends' `apply_plan`, in the transaction of the decision it
//! records, so a decision and its log row commit together or not at all. The lists are plain
//! reads; every one is bounded by `limit` (the caller clamps it) and ordered by a key an index
//! serves, so a page costs the same with ten rows or a hundred thousand.

use async_trait::async_trait;
use serde::Serialize;
use smartpkg_core::ids::{AccountId, AppId, PackageId, TemplateId, TpId};
use smartpkg_core::lifecycle::PkgState;

use crate::{App, Result, Tp};

/// Who took a decision, recorded with it in the package log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Actor {
    /// The platform itself: builds, automatic audits, the end of a rollback.
    #[default]
    System,
    /// The third party, through the Baidu API.
    ThirdParty,
    /// The admin API's bearer token.
    AdminToken,
    /// A console account.
    Account(AccountId),
}

impl Actor {
    /// (kind, account id) as stored.
    pub fn to_db(self) -> (&'static str, Option<AccountId>) {
        match self {
            Actor::System => ("system", None),
            Actor::ThirdParty => ("tp", None),
            Actor::AdminToken => ("admin", None),
            Actor::Account(id) => ("account", Some(id)),
        }
    }

    pub fn from_db(kind: &str, account: Option<AccountId>) -> Actor {
        match (kind, account) {
            ("tp", _) => Actor::ThirdParty,
            ("admin", _) => Actor::AdminToken,
            ("account", Some(id)) => Actor::Account(id),
            _ => Actor::System,
        }
    }
}

/// What a console account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Operator,
    /// Decides audits; reads mini programs and packages.
    Reviewer,
    /// Sees only the mini programs it owns; authorizes and revokes third parties for them.
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Operator, Role::Reviewer, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub account_id: AccountId,
    pub name: String,
    pub role: Role,
    pub created_by: Option<AccountId>,
    pub created_at_ms: i64,
    /// When the account was disabled: it cannot sign in, and has no session.
    pub disabled_at_ms: Option<i64>,
}

/// A change to an account; `None` leaves that part as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    /// A new argon2 PHC string.
    pub password_hash: Option<String>,
    /// `true` disables the account, `false` enables it again.
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Unique, compared exactly (the console lowercases it first).
    pub name: String,
    pub role: Role,
    /// The argon2 PHC string; the password itself is never stored.
    pub password_hash: String,
    pub created_by: Option<AccountId>,
    /// For owners: the mini programs they own from the start.
    pub apps: Vec<AppId>,
}

/// Why an account was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRefusal {
    NameTaken,
    /// `first_only` was asked and an account exists.
    NotFirst,
}

/// A live session, read back with its account.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: Account,
    /// The session's CSRF token: every form of the console carries it.
    pub csrf: String,
    pub expires_at_ms: i64,
}

/// A package waiting for an audit decision, with what the queue shows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueItem {
    pub package_id: PackageId,
    pub app_id: AppId,
    pub app_name: String,
    pub tp_id: TpId,
    pub tp_name: String,
    pub template_id: TemplateId,
    pub template_version: String,
    pub version: String,
    pub version_desc: String,
    pub test_account: Option<String>,
    /// When it entered the audit (its last state change).
    pub submitted_at_ms: i64,
}

/// One mini program in a list, with its third party's name and online version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppRow {
    pub app: App,
    pub tp_name: Option<String>,
    pub online_version: Option<String>,
}

/// Which mini programs a list shows.
#[derive(Debug, Clone, Default)]
pub struct AppQuery {
    /// Part of the name (case-insensitive for ASCII), or an exact app id.
    pub text: String,
    /// Only the mini programs this owner account owns.
    pub owned_by: Option<AccountId>,
    /// Only the mini programs authorized to this third party.
    pub tp_id: Option<TpId>,
}

/// One state change of a package, with who caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub log_id: i64,
    pub package_id: PackageId,
    pub app_id: AppId,
    pub version: String,
    pub at_ms: i64,
    /// None when the package was created (uploaded).
    #[serde(serialize_with = "opt_state")]
    pub from: Option<PkgState>,
    #[serde(serialize_with = "state")]
    pub to: PkgState,
    pub actor: Actor,
    /// The account's name, when an account decided.
    pub actor_name: Option<String>,
    /// The audit's reason, a build's error, a staged release's percentage.
    pub detail: Option<String>,
}

fn state<S: serde::Serializer>(s: &PkgState, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

fn opt_state<S: serde::Serializer>(
    s: &Option<PkgState>,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_str(s.as_str()),
        None => ser.serialize_none(),
    }
}

/// The dashboard's figures, read in one call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    /// Packages per state (states without packages left out).
    pub by_state: Vec<(String, i64)>,
    pub audits_waiting: i64,
    pub oldest_waiting_since_ms: Option<i64>,
    /// Deliveries that have failed at least once and are not delivered yet.
    pub deliveries_failing: i64,
    pub apps: i64,
    pub tps: i64,
}

/// Storage the console needs. What a backend must serialise is the module's contract (above).
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    async fn count_accounts(&self) -> Result<i64>;

    /// Creates the account. With `first_only` it is created only while no account exists, and
    /// that check and the insert are serialised: of racing first sign-ups exactly one wins.
    async fn create_account(
        &self,
        new: NewAccount,
        first_only: bool,
        now_ms: i64,
    ) -> Result<std::result::Result<Account, AccountRefusal>>;

    /// The account and its password hash.
    async fn account_by_name(&self, name: String) -> Result<Option<(Account, String)>>;

    async fn list_accounts(&self, offset: i64, limit: i64) -> Result<(i64, Vec<Account>)>;

    /// Changes an account's password or whether it may sign in; `None` when there is no such
    /// account. Every session of the account ends in the same transaction (a session signed
    /// in with the old password, or of an account now disabled, must not outlive the
    /// change), except `keep_session`: the session that changed its own password.
    async fn update_account(
        &self,
        account_id: AccountId,
        change: AccountChange,
        keep_session: Option<String>,
        now_ms: i64,
    ) -> Result<Option<Account>>;

    /// Adds mini programs to an owner account (already owned ones are kept once).
    async fn add_owned_apps(&self, account_id: AccountId, apps: Vec<AppId>) -> Result<()>;

    async fn owns_app(&self, account_id: AccountId, app_id: AppId) -> Result<bool>;

    /// Stores a session (only the token's hash); expired sessions are swept on the way.
    async fn create_session(
        &self,
        token_hash: String,
        account_id: AccountId,
        csrf: String,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()>;

    /// The session, if it exists, has not expired and its account is not disabled.
    async fn session(&self, token_hash: String, now_ms: i64) -> Result<Option<Session>>;

    async fn delete_session(&self, token_hash: String) -> Result<()>;

    /// Packages waiting for an audit decision, oldest first: (how many wait, this page).
    async fn audit_queue(&self, offset: i64, limit: i64) -> Result<(i64, Vec<QueueItem>)>;

    /// Mini programs matching `q`, newest first; `true` when more follow this page.
    async fn search_apps(
        &self,
        q: AppQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AppRow>, bool)>;

    /// Third parties, newest first: (how many, this page).
    async fn list_tps(&self, offset: i64, limit: i64) -> Result<(i64, Vec<Tp>)>;

    /// The package log of one mini program (every package), newest first.
    async fn app_log(&self, app_id: AppId, limit: i64) -> Result<Vec<LogEntry>>;

    /// The log of one package, newest first: its own entries, however many other packages of
    /// its app were logged since (a package's timeline must not be cut by its app's
    /// activity).
    async fn package_log(&self, package_id: PackageId, limit: i64) -> Result<Vec<LogEntry>>;

    /// The newest entries of the whole package log.
    async fn recent_log(&self, limit: i64) -> Result<Vec<LogEntry>>;

    async fn dashboard(&self) -> Result<Dashboard>;
}

/// For backends: the package log joined with each package's version and the deciding
/// account's name (columns in [`LogEntry`]'s order); the backend adds its WHERE and LIMIT.
pub const LOG_SELECT: &str = crate::log_select!();

/// One package-log row a plan writes (for backends: both write exactly these, in the
/// decision's transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLog {
    pub package_id: PackageId,
    pub from: Option<PkgState>,
    pub to: PkgState,
    pub detail: Option<String>,
}

/// The package-log rows of `plan`: one per state change, and one for the package an upload
/// creates. The detail is what a reader of the timeline needs beside the states: the audit's
/// reason, a build's error, a staged release's percentage.
pub fn plan_log(plan: &smartpkg_core::lifecycle::Plan) -> Vec<PlannedLog> {
    let mut out: Vec<PlannedLog> = plan
        .changes
        .iter()
        .map(|c| {
            let reason = plan
                .audit_decision
                .as_ref()
                .filter(|(id, _, r)| *id == c.package_id && !r.is_empty())
                .map(|(_, _, r)| r.clone());
            let detail = reason
                .or_else(|| c.patch.note.clone())
                .or_else(|| c.patch.upload_error.as_ref().map(|(_, m)| m.clone()))
                .or_else(|| {
                    c.patch
                        .staged_percent
                        .flatten()
                        .map(|p| format!("{p}% of devices"))
                });
            PlannedLog {
                package_id: c.package_id,
                from: Some(c.from),
                to: c.to,
                detail,
            }
        })
        .collect();
    if let Some(id) = plan.create {
        out.push(PlannedLog {
            package_id: id,
            from: None,
            to: PkgState::Building,
            detail: None,
        });
    }
    out
}

/// `%text%` for LIKE, with LIKE's own wildcards taken literally.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}
