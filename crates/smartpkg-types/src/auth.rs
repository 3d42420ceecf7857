//! Tokens and authorization (spec §4): the third party's token, pre-auth codes, the OAuth
//! exchange (which answers unwrapped), authorization codes, and `app/info`.

use serde::{Deserialize, Serialize};

/// `auth/tp/token`'s parameters: the third party's client id and the latest pushed ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpTokenRequest {
    pub client_id: String,
    pub ticket: String,
}

/// `auth/tp/token`'s data: the third party's own access token (a month).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpToken {
    pub access_token: String,
    /// Seconds.
    pub expires_in: i64,
    pub scope: String,
}

/// `tp/createpreauthcode`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreAuthCode {
    pub pre_auth_code: String,
    /// Seconds.
    pub expires_in: i64,
}

/// `oauth/token`'s parameters: the grant, as a `grant_type` and its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "grant_type")]
pub enum OAuthGrant {
    /// An authorization code from the authorization page or an AUTHORIZED push.
    #[serde(rename = "app_to_tp_authorization_code")]
    AuthorizationCode { code: String },
    /// A refresh token; it works once and the answer carries its successor.
    #[serde(rename = "app_to_tp_refresh_token")]
    RefreshToken { refresh_token: String },
}

/// `oauth/token`'s answer on success — not wrapped in the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lasts.
    pub expires_in: i64,
}

/// `oauth/token`'s answer on failure: `invalid_grant`, `invalid_request`, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    pub error: String,
    pub error_description: String,
}

/// `auth/retrieve/authorizationcode`'s parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrieveCodeRequest {
    pub app_id: i64,
}

/// `auth/retrieve/authorizationcode`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCode {
    pub authorization_code: String,
    /// Seconds.
    pub expires_in: i64,
}

/// `app/info`'s data, field for field and type for type (spec §4 item 7): Baidu's Go SDK
/// decodes into fixed types and fails the whole call on one mismatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub app_id: i64,
    pub app_key: String,
    pub app_name: String,
    pub app_desc: String,
    /// The icon URL, `""` if none.
    pub photo_addr: String,
    pub min_swan_version: String,
    /// -1 banned, 1 normal, 2 auditing, 4 paused, 5 forced offline, 6 rectification,
    /// 7 traffic offline.
    pub status: i64,
    /// 0 never on, 1 on, 2 off.
    pub web_status: i64,
    pub qualification: Qualification,
    pub category: Vec<Category>,
    pub auth_info: Vec<AuthScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_info: Option<AuditInfo>,
    pub modify_count: ModifyCount,
    pub annual_review_info: AnnualReview,
    pub app_offline_info: Vec<OfflineInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qualification {
    pub name: String,
    /// 1 personal, 2 company, 3 government, 4 media, 5 other.
    #[serde(rename = "type")]
    pub kind: i64,
    /// Baidu's own spelling. 1 passed, 2 auditing, 3 failed.
    pub satus: i64,
    /// 0 none, 1 corporate, 2 liveness, 23 legal-person face, -1 other.
    pub ad_type: i64,
    /// 1 passed, 3 failed.
    pub ad_status: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub category_id: i64,
    pub category_name: String,
    pub category_desc: String,
    /// 1 auditing, 2 passed, 3 failed.
    pub audit_status: i64,
    pub reason: String,
    pub parent: ParentCategory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentCategory {
    pub category_id: i64,
    pub category_name: String,
    pub category_desc: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthScope {
    pub scope_name: String,
    /// 0 mini-program scope, 1 account scope.
    #[serde(rename = "type")]
    pub kind: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditInfo {
    pub audit_app_name: String,
    pub audit_app_name_status: i64,
    pub audit_app_name_reason: String,
    pub audit_app_desc: String,
    pub audit_app_desc_status: i64,
    pub audit_app_desc_reason: String,
    pub audit_photo_addr: String,
    pub audit_photo_addr_status: i64,
    pub audit_photo_addr_reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyCount {
    pub name_modify_used: i64,
    pub name_modify_quota: i64,
    pub image_modify_used: i64,
    pub image_modify_quota: i64,
    pub signature_modify_used: i64,
    pub signature_modify_quota: i64,
    pub category_modify_used: i64,
    pub category_modify_quota: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnualReview {
    /// 1 normal, 2 due, 3 overdue.
    pub annual_review_status: i64,
    /// Unix seconds.
    pub annual_review_overdue_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineInfo {
    pub offline_reason: i64,
    pub illegal_fields: serde_json::Value,
}
