//! The runtime channel: what a mini program serves to devices (its settings, its online and
//! staged packages, the host apps it may run in), the host apps themselves, and the archive a
//! device downloads.
//!
//! Serialisation contract: settings edits are read-modify-write **per mini program** (per
//! third party for its registered domains) — the row is locked (or the write transaction
//! held) between reading and writing, so two concurrent edits both land. `set_package_archive`
//! keeps the first archive recorded for a package and returns it: two instances making one at
//! once agree on a single answer.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use smartpkg_core::ids::{AppId, HostId, PackageId, TemplateId, TpId};

use crate::Result;

/// A mini program's settings that devices obey.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSettings {
    /// Paused by its third party (`app/pause`): every device is told so.
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub domains: Domains,
    /// The lowest host runtime version the mini program runs on ("" = any).
    #[serde(default)]
    pub min_runtime_version: String,
}

/// Server and web-view domains, each an allow-list of `https://…` origins or hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domains {
    #[serde(default)]
    pub request_domain: Vec<String>,
    #[serde(default)]
    pub upload_domain: Vec<String>,
    #[serde(default)]
    pub download_domain: Vec<String>,
    #[serde(default)]
    pub socket_domain: Vec<String>,
    #[serde(default)]
    pub web_view_domain: Vec<String>,
}

/// An application that runs mini programs on devices, authenticated by its key and secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostApp {
    pub host_id: HostId,
    pub name: String,
    pub host_key: String,
    /// SHA-256 of the secret; the secret itself is shown once, when the host app is made.
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at_ms: i64,
}

/// One package as devices get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePackage {
    pub package_id: PackageId,
    pub version: String,
    pub template_id: TemplateId,
    pub built_ext_json: Option<String>,
    pub archive_sha256: Option<String>,
    pub archive_size: Option<i64>,
}

/// Everything the update check needs about one mini program, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeView {
    pub app_id: AppId,
    pub settings: RuntimeSettings,
    /// The host apps it may run in; empty = every one.
    pub hosts: Vec<HostId>,
    /// The online version (rolling back counts: it serves until the rollback finishes).
    pub online: Option<RuntimePackage>,
    /// An audit-passed package in a staged release, with its percentage.
    pub staged: Option<(RuntimePackage, i64)>,
}

/// Reads a stored settings column (JSON; empty = the defaults). Shared by the backends.
pub fn decode_settings<T: serde::de::DeserializeOwned + Default>(text: &str) -> Result<T> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(text)
        .map_err(|e| crate::StoreError::Corrupt(format!("stored settings: {e}")))
}

/// Writes a settings column.
pub fn encode_settings<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| crate::StoreError::Corrupt(format!("settings: {e}")))
}

/// An edit of a mini program's settings, applied under its lock.
pub type SettingsEdit = Box<dyn FnOnce(&mut RuntimeSettings) + Send>;
/// An edit of a third party's registered domains, applied under its lock.
pub type DomainsEdit = Box<dyn FnOnce(&mut Domains) + Send>;

/// Storage of the runtime channel. What a backend must serialise is the module's contract
/// (above): every backend meets it, and `conformance` checks it.
#[async_trait]
pub trait RuntimeStore: Send + Sync {
    /// None when the app is unknown.
    async fn runtime_settings(&self, app_id: AppId) -> Result<Option<RuntimeSettings>>;

    /// Applies `edit` to the app's settings under its lock; the result, or None when the app
    /// is unknown.
    async fn update_runtime_settings(
        &self,
        app_id: AppId,
        edit: SettingsEdit,
    ) -> Result<Option<RuntimeSettings>>;

    /// The third party's registered domains (the defaults of `app/modifydomain`).
    async fn tp_domains(&self, tp_id: TpId) -> Result<Option<Domains>>;

    async fn update_tp_domains(&self, tp_id: TpId, edit: DomainsEdit) -> Result<Option<Domains>>;

    async fn create_host_app(
        &self,
        name: String,
        host_key: String,
        secret_hash: String,
        now_ms: i64,
    ) -> Result<HostApp>;

    async fn list_host_apps(&self) -> Result<Vec<HostApp>>;

    async fn host_app_by_key(&self, host_key: String) -> Result<Option<HostApp>>;

    /// Limits the app to these host apps (empty = every one); false when the app is unknown.
    /// Unknown host ids are refused with `NotFound`.
    async fn set_app_hosts(&self, app_id: AppId, hosts: Vec<HostId>) -> Result<bool>;

    /// None when the app is unknown.
    async fn runtime_view(&self, app_id: AppId) -> Result<Option<RuntimeView>>;

    /// The last `limit` former online versions of the app, newest first.
    async fn recent_history(&self, app_id: AppId, limit: i64) -> Result<Vec<crate::PackageRecord>>;

    /// Whether `sha256` is the archive of some package (only those are served to devices;
    /// the blob store also holds templates, which are not theirs to read).
    async fn archive_known(&self, sha256: String) -> Result<bool>;

    /// Records the package's archive unless one is recorded already; the recorded one.
    async fn set_package_archive(
        &self,
        package_id: PackageId,
        sha256: String,
        size: i64,
    ) -> Result<(String, i64)>;
}
