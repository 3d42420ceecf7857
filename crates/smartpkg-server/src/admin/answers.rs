//! Every admin answer as a type, declared as its operation's response body in the OpenAPI
//! document, so what the server sends and what it documents cannot drift apart; the command
//! line and the tests read answers through these same types.
//!
//! Fields that may be absent are `null` (not left out), as they always were on this API;
//! secrets shown once (`password`, `owner_password`, `host_secret`) are the only optional keys.

use serde::{Deserialize, Serialize};
use smartpkg_core::ids::{AccountId, TpId};
use smartpkg_store::{Account, App, HostApp, Tp};
use utoipa::ToSchema;

/// A third party, with the push secrets it decrypts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TpAnswer {
    pub tp_id: i64,
    pub client_id: String,
    pub name: String,
    pub event_url: String,
    pub auth_event_url: String,
    pub msg_token: String,
    pub encoding_aes_key: String,
    /// Weekly audit submissions allowed; null = the server's default, -1 = unlimited.
    pub audit_quota: Option<i64>,
    /// Authorization redirects must go to this host or one below it ("" = any).
    pub redirect_domain: String,
    /// The WeChat dialect's component appid: `wx` and 16 lowercase hex digits.
    pub component_appid: String,
    /// Signs the WeChat dialect's pushes (`msg_signature`).
    pub wechat_token: String,
    /// Seals the WeChat dialect's pushes (43 base64 characters).
    pub wechat_encoding_aes_key: String,
    /// Where WeChat-dialect tickets and authorization events go ("" = nowhere).
    pub wechat_auth_event_url: String,
    /// Where WeChat-dialect audit results go; `$APPID$` becomes the mini program's wx appid.
    pub wechat_message_url: String,
}

/// A third party right after it was made, or its component appsecret reissued: the one time
/// the appsecret is shown (it is kept only as a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TpWithComponentSecret {
    #[serde(flatten)]
    pub tp: TpAnswer,
    pub component_appsecret: String,
}

impl From<Tp> for TpAnswer {
    fn from(t: Tp) -> Self {
        TpAnswer {
            tp_id: t.tp_id.get(),
            client_id: t.client_id,
            name: t.name,
            event_url: t.event_url,
            auth_event_url: t.auth_event_url,
            msg_token: t.msg_token,
            encoding_aes_key: t.encoding_aes_key,
            audit_quota: t.audit_quota,
            redirect_domain: t.redirect_domain,
            component_appid: t.wechat.component_appid,
            wechat_token: t.wechat.token,
            wechat_encoding_aes_key: t.wechat.encoding_aes_key,
            wechat_auth_event_url: t.wechat.auth_event_url,
            wechat_message_url: t.wechat.message_url,
        }
    }
}

/// A mini program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppAnswer {
    pub app_id: i64,
    pub app_key: String,
    pub name: String,
    pub name_audited: bool,
    pub category_audited: bool,
    pub authenticity_certified: bool,
    /// The third party it is authorized to, if any.
    pub tp_id: Option<i64>,
    pub owner_credential_set: bool,
    /// Its appid in the WeChat dialect: `wx` and 16 lowercase hex digits.
    pub wx_appid: String,
}

impl From<App> for AppAnswer {
    fn from(a: App) -> Self {
        AppAnswer {
            app_id: a.app_id.get(),
            app_key: a.app_key,
            name: a.name,
            name_audited: a.name_audited,
            category_audited: a.category_audited,
            authenticity_certified: a.authenticity_certified,
            tp_id: a.tp_id.map(TpId::get),
            owner_credential_set: a.owner_credential_set,
            wx_appid: a.wx_appid,
        }
    }
}

/// A mini program right after it was made or its owner credential was reset: the one time
/// the owner password is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppWithOwnerPassword {
    #[serde(flatten)]
    pub app: AppAnswer,
    pub owner_password: String,
}

impl AppWithOwnerPassword {
    pub fn new(a: App, owner_password: String) -> Self {
        AppWithOwnerPassword {
            app: a.into(),
            owner_password,
        }
    }
}

/// A console account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountAnswer {
    pub account_id: i64,
    pub name: String,
    /// operator, reviewer or owner.
    pub role: String,
    /// The account that made it; null when the admin API did.
    pub created_by: Option<i64>,
    pub created_at_ms: i64,
    /// When it was disabled; null while it may sign in.
    pub disabled_at_ms: Option<i64>,
    /// Only when the server generated the password: shown this once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl AccountAnswer {
    pub fn new(a: Account, generated_password: Option<String>) -> Self {
        AccountAnswer {
            account_id: a.account_id.get(),
            name: a.name,
            role: a.role.as_str().to_string(),
            created_by: a.created_by.map(AccountId::get),
            created_at_ms: a.created_at_ms,
            disabled_at_ms: a.disabled_at_ms,
            password: generated_password,
        }
    }
}

/// A console account just made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedAccount {
    pub account_id: i64,
    pub name: String,
    pub role: String,
    /// For owners: the mini programs they own.
    pub apps: Vec<i64>,
    pub created_at_ms: i64,
    /// Only when the server generated the password: shown this once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub total: i64,
    pub accounts: Vec<AccountAnswer>,
}

/// A host app as listed: its secret is never shown again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostAnswer {
    pub host_id: i64,
    pub name: String,
    pub host_key: String,
    pub created_at_ms: i64,
}

impl From<HostApp> for HostAnswer {
    fn from(h: HostApp) -> Self {
        HostAnswer {
            host_id: h.host_id.get(),
            name: h.name,
            host_key: h.host_key,
            created_at_ms: h.created_at_ms,
        }
    }
}

/// A host app just registered, with the secret it authenticates with, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedHost {
    pub host_id: i64,
    pub name: String,
    pub host_key: String,
    pub host_secret: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostList {
    pub host_apps: Vec<HostAnswer>,
}

/// The host apps a mini program runs in (empty: every one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppHosts {
    pub app_id: i64,
    pub host_ids: Vec<i64>,
}

/// A package in any state, as operators and reviewers see it. Times are the wire's
/// `YYYY/MM/DD HH:MM:SS` in the server's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PackageAnswer {
    pub package_id: i64,
    pub app_id: i64,
    pub tp_id: i64,
    pub template_id: i64,
    /// The Baidu wire status (1, 3, 4, 5, 6, 8); null for states the wire never shows.
    pub status: Option<i64>,
    /// The platform's own state name (building, development, auditing, …).
    pub state: String,
    pub version: String,
    pub version_desc: String,
    pub msg: String,
    pub remark: String,
    pub audit_content: Option<String>,
    pub test_account: Option<String>,
    pub test_password: Option<String>,
    pub direct_commit: bool,
    pub upload_err_code: Option<i64>,
    pub upload_err_msg: Option<String>,
    pub rollback_version: Option<String>,
    pub commit_time: String,
    pub updated_at: String,
    /// `GET /packages/{id}` only: the third party's ext_json ("" once retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_json: Option<String>,
    /// `GET /packages/{id}` only: the ext.json the build wrote (null until built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_ext_json: Option<Option<String>>,
    /// A staged release: the share of devices that run it (0 while its plan is halted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_percent: Option<i64>,
    /// `running`, `halted` or `finished` (docs/release-health.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_status: Option<String>,
    /// The staged release's plan: steps, current step, gate, and the figures of a halt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub stage_plan: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PackageList {
    pub packages: Vec<PackageAnswer>,
}

/// A push to a third party and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAnswer {
    pub id: i64,
    /// The event's id, the same on every attempt and replay.
    pub event_id: String,
    /// The event's name on the wire (PACKAGE_AUDIT_PASS, AUTHORIZED, ticket, …).
    pub event: String,
    pub tp_id: i64,
    pub app_id: i64,
    pub package_id: Option<i64>,
    pub url: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: Option<String>,
    pub delivered_at: Option<String>,
    /// While its target is on hold, a pending delivery waits at least until then.
    pub target_on_hold_until: Option<String>,
    /// `GET /deliveries/{id}` only: the event as the third party decrypts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// `GET /deliveries/{id}` only: the dialect the next attempt writes the push in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    /// `GET /deliveries/{id}` only: every attempt, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptAnswer>>,
}

/// One attempt to deliver a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptAnswer {
    pub at: String,
    pub url: String,
    /// The HTTP status the target answered; null when it did not answer.
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The start of the target's answer.
    pub body: Option<String>,
    /// The dialect the push was written in for this attempt: `baidu` (JSON) or `wechat`
    /// (XML).
    pub dialect: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryAnswer>,
}

/// A replay queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Redelivery {
    pub id: i64,
    /// `pending`.
    pub state: String,
}

/// A push target (a third party) and its failing run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushTargetAnswer {
    pub tp_id: i64,
    /// healthy, failing or on_hold.
    pub state: String,
    pub consecutive_failures: i64,
    pub failing_since: Option<String>,
    pub hold_until: Option<String>,
    pub holds: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushTargetList {
    pub push_targets: Vec<PushTargetAnswer>,
}

/// A target whose hold an operator ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResumedTarget {
    pub tp_id: i64,
    /// `healthy`.
    pub state: String,
}

/// The answer to an archive upload: what was created (ids, version, description) plus what
/// the archive turned out to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveUploaded {
    /// The template made from the draft (template uploads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<i64>,
    pub draft_id: i64,
    pub user_version: String,
    pub user_desc: String,
    /// The SHA-256 of the archive, which names its blob.
    pub blob_sha256: String,
    /// The pages `app.json` declares.
    pub pages: Vec<String>,
    /// How many files the archive holds.
    pub file_count: usize,
}

/// A new authorization's tokens, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Authorized {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
}
