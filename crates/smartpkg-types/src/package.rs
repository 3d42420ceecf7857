//! The package endpoints (spec §3): statuses, the package row, the quota, and each call's
//! parameters as the SDKs send them.

use serde::{Deserialize, Serialize};

/// `status` (and `type` in `getdetail`) as Baidu numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i64", try_from = "i64")]
pub enum WireStatus {
    Online = 1,
    Development = 3,
    Auditing = 4,
    AuditFailed = 5,
    AuditPassed = 6,
    RollingBack = 8,
}

impl WireStatus {
    pub const ALL: [WireStatus; 6] = [
        WireStatus::Online,
        WireStatus::Development,
        WireStatus::Auditing,
        WireStatus::AuditFailed,
        WireStatus::AuditPassed,
        WireStatus::RollingBack,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl From<WireStatus> for i64 {
    fn from(s: WireStatus) -> i64 {
        s.code()
    }
}

impl TryFrom<i64> for WireStatus {
    type Error = String;
    fn try_from(code: i64) -> Result<Self, String> {
        Self::from_code(code).ok_or_else(|| format!("must be one of 1, 3, 4, 5, 6, 8; got {code}"))
    }
}

/// `upload_status` of a package that is not built yet.
pub mod upload_status {
    pub const UPLOADING: i64 = 1;
    pub const UPLOADING_DESC: &str = "上传中";
    pub const FAILED: i64 = 3;
    pub const FAILED_DESC: &str = "上传失败";
}

/// One package as `get`, `getdetail` and `gettrial` show it. Fields that a row does not carry
/// (an uploading row has no `package_id`) are left out, as the real platform does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WireStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_status_desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_err_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_err_msg: Option<String>,
    /// smartpkg's extension: the percentage of devices an audit-passed package is released
    /// to in a staged release (absent otherwise; SDKs ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_percentage: Option<i64>,
    /// smartpkg's extension: where a staged release's plan stands — `running`, `halted`
    /// (its share is 0 until resumed) or `finished` (released to every device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_status: Option<String>,
}

/// `auditquota`'s data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuota {
    /// 2 = the quota is per week.
    pub quota_type: i64,
    /// -1 = unlimited.
    pub quota_times: i64,
    /// -1 = unlimited.
    pub remain_times: i64,
}

/// `upload`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequest {
    pub template_id: i64,
    /// The mini program's `ext.json`, as text.
    pub ext_json: String,
    pub user_version: String,
    pub user_desc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_password: Option<String>,
}

/// `submitaudit`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitAuditRequest {
    pub package_id: i64,
    /// What the reviewer should know about this version.
    pub content: String,
    /// Optional on the wire; empty when left out.
    #[serde(default)]
    pub remark: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_password: Option<String>,
}

/// The parameter of `release`, `rollback` and `withdraw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageIdRequest {
    pub package_id: i64,
}

/// `getdetail`'s parameters; with neither, the online version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetDetailRequest {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WireStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<i64>,
}

/// `app/qrcode`'s parameters; the answer is a PNG image, or an envelope on error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrCodeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<i64>,
    /// 200 to 1280 pixels; 200 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
}

/// `grayrelease`'s parameters (smartpkg's extension): release an audit-passed package to a
/// percentage of devices, or raise it; or start a plan of steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayReleaseRequest {
    pub package_id: i64,
    /// 1 to 100; only ever raised (revert to start again). With a plan: the step it starts at.
    pub gray_percentage: i64,
    /// A plan's steps, comma-separated rising percentages ending at 100 (`1,5,20,50,100`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_steps: Option<String>,
    /// `1`: the platform advances the plan on healthy figures and halts it on bad ones (the
    /// default steps when `gray_steps` is absent); `0` (default): a person advances it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_auto: Option<i64>,
}

/// `rollbackto`'s parameters (smartpkg's extension): roll the online package back to one of
/// the last five online versions (`gethistory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackToRequest {
    pub package_id: i64,
    pub target_package_id: i64,
}

/// One former online version, as `gethistory` (smartpkg's extension) lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryVersion {
    pub package_id: i64,
    pub version: String,
    pub version_desc: String,
    pub commit_time: String,
}
