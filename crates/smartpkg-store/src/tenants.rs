//! Tenants: third parties, mini programs, owner credentials and server-wide secrets.
//!
//! Serialisation: none beyond single-row atomicity. `create_*` assign ids (a sequence or
//! autoincrement, never `MAX()+1`); `update_*` are single conditional updates; a concurrent
//! `server_secret` must return the same value to every caller (insert-if-absent, then read).

use async_trait::async_trait;
use serde::Serialize;
use smartpkg_core::ids::{AppId, TpId};

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tp {
    pub tp_id: TpId,
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
    /// Who it is to the WeChat dialect.
    pub wechat: WechatIdentity,
}

/// A third party's identity in the WeChat dialect (docs/wechat.md): its component appid, the
/// token and key that sign and seal its pushes, and where they go. Its appsecret is kept apart,
/// hashed, and never read out with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WechatIdentity {
    /// `wx` and 16 lowercase hex digits.
    pub component_appid: String,
    pub token: String,
    pub encoding_aes_key: String,
    /// Where tickets and authorization events go.
    pub auth_event_url: String,
    /// Where audit results go; `$APPID$` stands for the mini program's wx appid.
    pub message_url: String,
}

/// A third party to create: everything but the id the store gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTp {
    pub client_id: String,
    pub name: String,
    pub event_url: String,
    pub auth_event_url: String,
    pub msg_token: String,
    pub encoding_aes_key: String,
    /// Weekly audit submissions allowed; None = the server's default, -1 = unlimited.
    pub audit_quota: Option<i64>,
    pub redirect_domain: String,
    pub wechat: WechatIdentity,
    /// SHA-256 of the component appsecret.
    pub component_secret_hash: String,
}

impl NewTp {
    /// The third party as stored under `tp_id`.
    pub fn stored(self, tp_id: TpId) -> Tp {
        Tp {
            tp_id,
            client_id: self.client_id,
            name: self.name,
            event_url: self.event_url,
            auth_event_url: self.auth_event_url,
            msg_token: self.msg_token,
            encoding_aes_key: self.encoding_aes_key,
            audit_quota: self.audit_quota,
            redirect_domain: self.redirect_domain,
            wechat: self.wechat,
        }
    }
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
    pub wechat_auth_event_url: Option<String>,
    pub wechat_message_url: Option<String>,
    /// The WeChat dialect's push keys (rotated beside the Baidu ones).
    pub wechat_token: Option<String>,
    pub wechat_encoding_aes_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub app_id: AppId,
    pub app_key: String,
    pub name: String,
    pub name_audited: bool,
    pub category_audited: bool,
    pub authenticity_certified: bool,
    /// The third party the mini program is authorized to, if any.
    pub tp_id: Option<TpId>,
    /// Whether the owner has a credential (its hash is never read out with the app).
    #[serde(default)]
    pub owner_credential_set: bool,
    /// Its appid in the WeChat dialect: `wx` and 16 lowercase hex digits.
    pub wx_appid: String,
}

/// A mini program to create: everything but the id the store gives it (and no owner
/// credential yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApp {
    pub app_key: String,
    pub name: String,
    pub name_audited: bool,
    pub category_audited: bool,
    pub authenticity_certified: bool,
    /// The third party it is authorized to from the start, if any.
    pub tp_id: Option<TpId>,
    pub wx_appid: String,
}

impl NewApp {
    /// The mini program as stored under `app_id`.
    pub fn stored(self, app_id: AppId) -> App {
        App {
            app_id,
            app_key: self.app_key,
            name: self.name,
            name_audited: self.name_audited,
            category_audited: self.category_audited,
            authenticity_certified: self.authenticity_certified,
            tp_id: self.tp_id,
            owner_credential_set: false,
            wx_appid: self.wx_appid,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    pub name: Option<String>,
    pub name_audited: Option<bool>,
    pub category_audited: Option<bool>,
    pub authenticity_certified: Option<bool>,
}

/// Storage of third parties, mini programs and secrets. What a backend must serialise is the module's contract (above):
/// every backend meets it, and `conformance` checks it.
#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_tp(&self, tp: NewTp) -> Result<Tp>;

    async fn update_tp(&self, tp_id: TpId, patch: TpPatch) -> Result<Tp>;

    async fn get_tp(&self, tp_id: TpId) -> Result<Option<Tp>>;

    async fn get_tp_by_client_id(&self, client_id: String) -> Result<Option<Tp>>;

    async fn get_tp_by_component_appid(&self, component_appid: String) -> Result<Option<Tp>>;

    /// Replaces the hash of the component appsecret; false when the third party does not exist.
    async fn set_component_secret(&self, tp_id: TpId, hash: String) -> Result<bool>;

    /// The hash of the component appsecret; None when the third party is unknown.
    async fn component_secret_hash(&self, tp_id: TpId) -> Result<Option<String>>;

    /// Third parties that have an authorization-event URL in either dialect.
    async fn tps_with_auth_url(&self) -> Result<Vec<Tp>>;

    async fn create_app(&self, app: NewApp) -> Result<App>;

    async fn update_app(&self, app_id: AppId, patch: AppPatch) -> Result<App>;

    async fn get_app(&self, app_id: AppId) -> Result<Option<App>>;

    async fn get_app_by_wx_appid(&self, wx_appid: String) -> Result<Option<App>>;

    /// Replaces the owner's credential hash; false when the app does not exist.
    async fn set_owner_password(&self, app_id: AppId, hash: String) -> Result<bool>;

    /// The owner's credential hash; None when the app is unknown or has none.
    async fn owner_password_hash(&self, app_id: AppId) -> Result<Option<String>>;

    /// A random 32-byte key (hex) shared by every instance, created on first use.
    async fn server_secret(&self, name: &'static str) -> Result<String>;
}
