//! A mini program's settings that its third party changes (spec §7): pause and resume, the
//! server and web-view domains, and the minimum host runtime version.

use serde::{Deserialize, Serialize};

/// `app/modifydomain`'s parameters. `action` is `add`, `delete`, `set` or `get`; absent, the
/// third party's registered server domains are added. Each list is comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyDomainRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_domain: Option<String>,
}

/// `app/modifydomain`'s data: each list a comma-separated **string**.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDomains {
    pub request_domain: String,
    pub upload_domain: String,
    pub download_domain: String,
    pub socket_domain: String,
}

/// `app/modifywebviewdomain`'s (and `tp/modifywebviewdomain`'s) parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyWebviewDomainRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_view_domain: Option<String>,
}

/// `tp/modifydomain`'s data: the third party's registered domains, each an **array**.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpDomains {
    pub request_domain: Vec<String>,
    pub upload_domain: Vec<String>,
    pub download_domain: Vec<String>,
    pub socket_domain: Vec<String>,
}

/// `app/getsupportversion`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportVersions {
    /// The mini program's minimum host runtime version ("" = none set).
    pub now_version: String,
    pub items: Vec<VersionItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionItem {
    pub version: String,
}

/// `app/setsupportversion`'s parameter (smartpkg's extension, as WeChat's
/// `setweappsupportversion`): one of `getsupportversion`'s items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSupportVersionRequest {
    pub version: String,
}
