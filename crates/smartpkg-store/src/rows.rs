//! The row types read from a database row by column name, written once for every backend.
//!
//! A backend selects a row type's columns with the matching `*_columns!` macro (the same SQL
//! text in both dialects, each column named as its decoder reads it: a literal, so hot
//! statements stay whole string literals) and hands each row to the type's `from_row` through
//! its implementation of [`Columns`]. A column added to a row type is added here only.
//!
//! Every column of a query that a row type reads must have a name of its own (alias the others:
//! `t.name AS tp_name`): of two columns with one name, SQLite's driver returns the first and
//! sqlx the last, so a collision reads different values on the two backends.

use smartpkg_core::ids::{Id, PackageId};
use smartpkg_core::lifecycle::PkgState;

use crate::{
    Account, Actor, App, Channel, Delivery, DeliveryState, Draft, EventRecord, HostApp, LogEntry,
    PackageRecord, PushTarget, Result, Role, StoreError, Template, Tp, WechatIdentity,
};

/// A database row, column by name, in the handful of types the row types hold.
pub trait Columns {
    fn i64(&self, name: &str) -> Result<i64>;
    fn opt_i64(&self, name: &str) -> Result<Option<i64>>;
    fn string(&self, name: &str) -> Result<String>;
    fn opt_string(&self, name: &str) -> Result<Option<String>>;
    fn bool(&self, name: &str) -> Result<bool>;

    /// An id column.
    fn id<I: Id>(&self, name: &str) -> Result<I>
    where
        Self: Sized,
    {
        Ok(I::from_raw(self.i64(name)?))
    }

    /// An id column that may be NULL.
    fn opt_id<I: Id>(&self, name: &str) -> Result<Option<I>>
    where
        Self: Sized,
    {
        Ok(self.opt_i64(name)?.map(I::from_raw))
    }
}

/// Implements [`Columns`] for a row type with a `get::<T>(name)` that reads a column of any of
/// the types the row types hold (a backend's own rows).
#[macro_export]
macro_rules! columns_by_get {
    ($($ty:ty),* $(,)?) => {$(
        impl $crate::Columns for $ty {
            fn i64(&self, name: &str) -> $crate::Result<i64> {
                self.get(name)
            }
            fn opt_i64(&self, name: &str) -> $crate::Result<Option<i64>> {
                self.get(name)
            }
            fn string(&self, name: &str) -> $crate::Result<String> {
                self.get(name)
            }
            fn opt_string(&self, name: &str) -> $crate::Result<Option<String>> {
                self.get(name)
            }
            fn bool(&self, name: &str) -> $crate::Result<bool> {
                self.get(name)
            }
        }
    )*};
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

fn pkg_state(s: &str) -> Result<PkgState> {
    PkgState::parse(s).ok_or_else(|| corrupt(format!("unknown package state {s}")))
}

/// A package's columns, `p` being the packages table.
#[macro_export]
macro_rules! package_columns {
    () => {
        "p.package_id, p.app_id, p.tp_id, p.template_id, p.state, p.version, p.version_desc, \
         p.ext_json, p.built_ext_json, p.direct_commit, p.test_account, p.test_password, \
         p.audit_content, p.remark, p.msg, p.upload_err_code, p.upload_err_msg, \
         p.previous_package_id, (SELECT prev.version FROM packages prev \
         WHERE prev.package_id = p.previous_package_id) AS rollback_version, p.restored, \
         p.commit_time, p.updated_at, p.staged_percent, p.stage_plan, p.archive_sha256, \
         p.archive_size"
    };
}

impl PackageRecord {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(PackageRecord {
            package_id: r.id("package_id")?,
            app_id: r.id("app_id")?,
            tp_id: r.id("tp_id")?,
            template_id: r.id("template_id")?,
            state: pkg_state(&r.string("state")?)?,
            version: r.string("version")?,
            version_desc: r.string("version_desc")?,
            ext_json: r.string("ext_json")?,
            built_ext_json: r.opt_string("built_ext_json")?,
            direct_commit: r.bool("direct_commit")?,
            test_account: r.opt_string("test_account")?,
            test_password: r.opt_string("test_password")?,
            audit_content: r.opt_string("audit_content")?,
            remark: r.string("remark")?,
            msg: r.string("msg")?,
            upload_err_code: r.opt_i64("upload_err_code")?,
            upload_err_msg: r.opt_string("upload_err_msg")?,
            previous_package_id: r.opt_id("previous_package_id")?,
            rollback_version: r.opt_string("rollback_version")?,
            restored: r.bool("restored")?,
            commit_time_ms: r.i64("commit_time")?,
            updated_at_ms: r.i64("updated_at")?,
            staged_percent: r.opt_i64("staged_percent")?,
            stage_plan: r
                .opt_string("stage_plan")?
                .map(|t| smartpkg_core::stage::StagePlan::from_text(&t))
                .transpose()
                .map_err(corrupt)?,
            archive_sha256: r.opt_string("archive_sha256")?,
            archive_size: r.opt_i64("archive_size")?,
        })
    }
}

/// A delivery's columns with its event's, `d` being deliveries and `e` events (the event's
/// own `tp_id` and `created_at` renamed, as the delivery has its own).
#[macro_export]
macro_rules! delivery_columns {
    () => {
        "d.delivery_id, d.tp_id, d.url, d.state, d.attempts, d.cycle_attempts, d.last_status, \
         d.last_error, d.next_attempt_at, d.created_at, d.delivered_at, e.event_id, e.uid, \
         e.tp_id AS event_tp_id, e.app_id, e.package_id, e.event, e.reason, e.package_version, \
         e.created_at AS event_created_at, e.channel, e.payload"
    };
}

impl Delivery {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        let state = r.string("state")?;
        let channel = r.string("channel")?;
        Ok(Delivery {
            delivery_id: r.i64("delivery_id")?,
            tp_id: r.id("tp_id")?,
            url: r.string("url")?,
            state: DeliveryState::parse(&state)
                .ok_or_else(|| corrupt(format!("delivery state {state}")))?,
            attempts: r.i64("attempts")?,
            cycle_attempts: r.i64("cycle_attempts")?,
            last_status: r.opt_i64("last_status")?,
            last_error: r.opt_string("last_error")?,
            next_attempt_at_ms: r.opt_i64("next_attempt_at")?,
            created_at_ms: r.i64("created_at")?,
            delivered_at_ms: r.opt_i64("delivered_at")?,
            event: EventRecord {
                event_id: r.i64("event_id")?,
                uid: r.string("uid")?,
                tp_id: r.id("event_tp_id")?,
                app_id: r.id("app_id")?,
                // One backend's column predates the Option and keeps 0 for "no package".
                package_id: r.opt_id("package_id")?.filter(|p: &PackageId| p.get() != 0),
                event: r.string("event")?,
                reason: r.opt_string("reason")?,
                package_version: r.string("package_version")?,
                created_at_ms: r.i64("event_created_at")?,
                channel: Channel::parse(&channel)
                    .ok_or_else(|| corrupt(format!("event channel {channel}")))?,
                payload: r.opt_string("payload")?,
            },
        })
    }
}

#[macro_export]
macro_rules! push_target_columns {
    () => {
        "tp_id, consecutive_failures, failing_since, hold_until, holds, last_error"
    };
}

impl PushTarget {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(PushTarget {
            tp_id: r.id("tp_id")?,
            consecutive_failures: r.i64("consecutive_failures")?,
            failing_since_ms: r.opt_i64("failing_since")?,
            hold_until_ms: r.opt_i64("hold_until")?,
            holds: r.i64("holds")?,
            last_error: r.opt_string("last_error")?,
        })
    }
}

#[macro_export]
macro_rules! tp_columns {
    () => {
        "tp_id, client_id, name, event_url, auth_event_url, msg_token, encoding_aes_key, \
         audit_quota, redirect_domain, component_appid, wechat_token, wechat_encoding_aes_key, \
         wechat_auth_event_url, wechat_message_url"
    };
}

impl Tp {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(Tp {
            tp_id: r.id("tp_id")?,
            client_id: r.string("client_id")?,
            name: r.string("name")?,
            event_url: r.string("event_url")?,
            auth_event_url: r.string("auth_event_url")?,
            msg_token: r.string("msg_token")?,
            encoding_aes_key: r.string("encoding_aes_key")?,
            audit_quota: r.opt_i64("audit_quota")?,
            redirect_domain: r.string("redirect_domain")?,
            wechat: WechatIdentity {
                component_appid: r.string("component_appid")?,
                token: r.string("wechat_token")?,
                encoding_aes_key: r.string("wechat_encoding_aes_key")?,
                auth_event_url: r.string("wechat_auth_event_url")?,
                message_url: r.string("wechat_message_url")?,
            },
        })
    }
}

#[macro_export]
macro_rules! app_columns {
    () => {
        "app_id, app_key, name, name_audited, category_audited, authenticity_certified, tp_id, \
         owner_password_hash IS NOT NULL AS owner_credential_set, wx_appid"
    };
}

impl App {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(App {
            app_id: r.id("app_id")?,
            app_key: r.string("app_key")?,
            name: r.string("name")?,
            name_audited: r.bool("name_audited")?,
            category_audited: r.bool("category_audited")?,
            authenticity_certified: r.bool("authenticity_certified")?,
            tp_id: r.opt_id("tp_id")?,
            owner_credential_set: r.bool("owner_credential_set")?,
            wx_appid: r.string("wx_appid")?,
        })
    }
}

/// An account's columns, `a` being the accounts table.
#[macro_export]
macro_rules! account_columns {
    () => {
        "a.account_id, a.name, a.role, a.created_by, a.created_at, a.disabled_at"
    };
}

impl Account {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        let role = r.string("role")?;
        Ok(Account {
            account_id: r.id("account_id")?,
            name: r.string("name")?,
            role: Role::parse(&role).ok_or_else(|| corrupt(format!("unknown role {role:?}")))?,
            created_by: r.opt_id("created_by")?,
            created_at_ms: r.i64("created_at")?,
            disabled_at_ms: r.opt_i64("disabled_at")?,
        })
    }
}

/// The columns of a package-log entry (the log `l`, its package `p`, its account `a`), with
/// the joins that find them.
#[macro_export]
macro_rules! log_select {
    () => {
        "SELECT l.log_id, l.package_id, l.app_id, COALESCE(p.version, '') AS version, l.at, \
         l.from_state, l.to_state, l.actor, l.account_id, a.name AS actor_name, l.detail \
         FROM package_log l LEFT JOIN packages p ON p.package_id = l.package_id \
         LEFT JOIN accounts a ON a.account_id = l.account_id"
    };
}

impl LogEntry {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(LogEntry {
            log_id: r.i64("log_id")?,
            package_id: r.id("package_id")?,
            app_id: r.id("app_id")?,
            version: r.string("version")?,
            at_ms: r.i64("at")?,
            from: r
                .opt_string("from_state")?
                .as_deref()
                .map(pkg_state)
                .transpose()?,
            to: pkg_state(&r.string("to_state")?)?,
            actor: Actor::from_db(&r.string("actor")?, r.opt_id("account_id")?),
            actor_name: r.opt_string("actor_name")?,
            detail: r.opt_string("detail")?,
        })
    }
}

#[macro_export]
macro_rules! template_columns {
    () => {
        "template_id, draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, \
         created_at, deleted_at IS NOT NULL AS deleted"
    };
}

impl Template {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(Template {
            template_id: r.id("template_id")?,
            draft_id: r.i64("draft_id")?,
            tp_id: r.id("tp_id")?,
            user_version: r.string("user_version")?,
            user_desc: r.string("user_desc")?,
            blob_sha256: r.string("blob_sha256")?,
            manifest: r.string("manifest")?,
            create_time: r.i64("created_at")? / 1000,
            deleted: r.bool("deleted")?,
        })
    }
}

#[macro_export]
macro_rules! draft_columns {
    () => {
        "draft_id, tp_id, user_version, user_desc, created_at, blob_sha256"
    };
}

impl Draft {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(Draft {
            draft_id: r.i64("draft_id")?,
            tp_id: r.id("tp_id")?,
            user_version: r.string("user_version")?,
            user_desc: r.string("user_desc")?,
            create_time: r.i64("created_at")? / 1000,
            blob_sha256: r.string("blob_sha256")?,
        })
    }
}

#[macro_export]
macro_rules! host_columns {
    () => {
        "host_id, name, host_key, secret_hash, created_at"
    };
}

impl HostApp {
    pub fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(HostApp {
            host_id: r.id("host_id")?,
            name: r.string("name")?,
            host_key: r.string("host_key")?,
            secret_hash: r.string("secret_hash")?,
            created_at_ms: r.i64("created_at")?,
        })
    }
}
