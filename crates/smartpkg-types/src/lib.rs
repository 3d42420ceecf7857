//! The Baidu smart-program package API as it appears on the wire.
//!
//! Everything here is shared by the server, the client and the command line: status codes,
//! the errno table, the business envelope and the gateway error shape. No I/O.
//! The source of truth is `spec/baidu-openapi.md` §2, §3 and §6.

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
        Self::from_code(code).ok_or_else(|| format!("unknown package status {code}"))
    }
}

/// `upload_status` of a package that is not built yet.
pub mod upload_status {
    pub const UPLOADING: i64 = 1;
    pub const UPLOADING_DESC: &str = "上传中";
    pub const FAILED: i64 = 3;
    pub const FAILED_DESC: &str = "上传失败";
}

/// Business error numbers. Baidu's own values first (spec §6), then the ones this project
/// adds for rules Baidu documents without a code (see `docs/lifecycle.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i64);

impl Errno {
    pub const OK: Errno = Errno(0);
    pub const BUSY: Errno = Errno(500);
    pub const TEMPLATE_LIMIT: Errno = Errno(2003);
    pub const PARAM_ERROR: Errno = Errno(40001);
    pub const TEMPLATE_DESC_INVALID: Errno = Errno(40016);
    pub const PARAM_TYPE_ERROR: Errno = Errno(41000);
    pub const APP_NOT_FOUND: Errno = Errno(45000);
    pub const NO_APP_PERMISSION: Errno = Errno(45001);
    pub const CLIENT_ID_UNKNOWN: Errno = Errno(50002);
    pub const TICKET_INVALID: Errno = Errno(50003);
    pub const QRCODE_FAILED: Errno = Errno(47002);
    pub const QRCODE_WIDTH: Errno = Errno(470018);
    pub const QRCODE_PACKAGE: Errno = Errno(470019);
    pub const QRCODE_NO_ONLINE: Errno = Errno(470020);
    pub const CALL_LIMIT: Errno = Errno(50029);
    pub const PROCESSING: Errno = Errno(50031);
    pub const NO_AUTHORIZATION: Errno = Errno(50032);
    pub const NOT_CERTIFIED: Errno = Errno(50038);
    pub const NAME_NOT_AUDITED: Errno = Errno(69001);
    pub const CATEGORY_NOT_AUDITED: Errno = Errno(69002);
    pub const NAME_AND_CATEGORY_NOT_AUDITED: Errno = Errno(69003);
    pub const EXT_JSON_INVALID: Errno = Errno(69004);
    pub const PACKAGE_NOT_FOUND: Errno = Errno(69005);
    pub const TEMPLATE_OFFLINE: Errno = Errno(69007);
    pub const TEMPLATE_NOT_FOUND: Errno = Errno(69008);
    pub const TEMPLATE_PARSE_ERROR: Errno = Errno(69010);
    pub const AUDIT_QUOTA_EXCEEDED: Errno = Errno(69013);

    // --- ours (documented in docs/lifecycle.md) ---
    /// The package is not in a state that allows this call.
    pub const WRONG_STATE: Errno = Errno(69501);
    /// Another package of this mini program is already being audited.
    pub const AUDIT_IN_FLIGHT: Errno = Errno(69502);
    /// The online package has no previous version to roll back to.
    pub const NOTHING_TO_ROLL_BACK: Errno = Errno(69503);
    /// The online version is itself the result of a rollback; release before rolling back again.
    pub const ROLLBACK_TWICE: Errno = Errno(69504);
    /// The package is not the mini program's online version.
    pub const NOT_ONLINE_PACKAGE: Errno = Errno(69505);
    /// `extPages` or `tabBar` names a page the template does not have (build error).
    pub const EXT_PAGE_UNKNOWN: Errno = Errno(69506);
    /// `extAppid` names another mini program (build error).
    pub const EXT_APPID_MISMATCH: Errno = Errno(69507);

    /// Baidu's message for its own codes; ours carry a precise message at the call site.
    pub fn default_msg(self) -> &'static str {
        match self.0 {
            0 => "success",
            500 => "网络繁忙，请稍后重试",
            2003 => "模板超过限额，无法添加",
            40000 => "记录已存在",
            40001 => "参数错误",
            40007 => "无此TP操作权限",
            40016 => "模版描述非法，请参考官网参数规则",
            41000 => "参数类型错误",
            45000 => "小程序不存在",
            45001 => "无此小程序操作权限",
            45002 => "授权异常",
            47002 => "获取二维码失败",
            470018 => "二维码宽度超出范围(200-1280)",
            470019 => "package_id不正确",
            470020 => "小程序没有线上版本",
            50002 => "client_id不存在",
            50003 => "ticket无效",
            50029 => "接口调用次数超过限制",
            50031 | 50050 => "处理中，请稍后重试",
            50032 => "没有授权关系，请检查",
            50038 => "请先完成高级认证",
            69001 => "小程序名称审核通过后，可以提交小程序代码审核",
            69002 => "服务类目审核通过后，可以提交小程序代码包审核",
            69003 => "小程序名称和服务类目审核通过后，可以提交小程序代码包审核",
            69004 => "EXT_JSON字段包含无法解析字符",
            69005 => "包不存在",
            69007 => "目标模板已下线",
            69008 => "源模板不存在",
            69010 => "模板文件解析出错",
            69013 => "送审额度已超出当前周期限制",
            69501 => "代码包状态不允许该操作",
            69502 => "已有代码包在审核中",
            69503 => "没有可回滚的版本",
            69504 => "回滚后的版本不能再次回滚，请先发布新版本",
            69505 => "只能回滚线上版本",
            69506 => "ext_json引用了模板中不存在的页面",
            69507 => "extAppid与小程序不符",
            _ => "未知错误",
        }
    }
}

/// The business envelope: `{"errno": 0, "msg": "success", "data": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub errno: i64,
    pub msg: String,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// The gateway's error shape, checked by every SDK before the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayError {
    pub error_code: i64,
    pub error_msg: String,
}

impl GatewayError {
    pub const INVALID_PARAMETER: i64 = 100;
    pub const TOKEN_INVALID: i64 = 110;
    pub const TOKEN_EXPIRED: i64 = 111;
    pub const UNSUPPORTED_METHOD: i64 = 3;

    /// What the gateway answers for a path under `/rest/2.0/` it does not serve (spec §8).
    pub fn unsupported_method() -> Self {
        GatewayError {
            error_code: Self::UNSUPPORTED_METHOD,
            error_msg: "Unsupported openapi method".into(),
        }
    }

    pub fn token_invalid() -> Self {
        GatewayError {
            error_code: Self::TOKEN_INVALID,
            error_msg: "Access token invalid or no longer valid".into(),
        }
    }

    pub fn token_expired() -> Self {
        GatewayError {
            error_code: Self::TOKEN_EXPIRED,
            error_msg: "Access token expired".into(),
        }
    }
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
    pub status: Option<i64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip_and_reject_unknown() {
        for s in WireStatus::ALL {
            assert_eq!(WireStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(WireStatus::from_code(2), None);
        assert_eq!(WireStatus::from_code(7), None);
    }

    #[test]
    fn envelope_without_data_omits_the_field() {
        let e: Envelope<()> = Envelope {
            errno: 0,
            msg: "success".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&e).expect("serializes"),
            r#"{"errno":0,"msg":"success"}"#
        );
    }

    #[test]
    fn uploading_row_carries_only_its_five_fields() {
        let row = PackageInfo {
            version: Some("1.2.7".into()),
            commit_time: Some("2018/09/06 15:32:38".into()),
            version_desc: Some("desc".into()),
            upload_status: Some(upload_status::UPLOADING),
            upload_status_desc: Some(upload_status::UPLOADING_DESC.into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&row).expect("serializes"),
            serde_json::json!({"version":"1.2.7","commit_time":"2018/09/06 15:32:38",
                "version_desc":"desc","upload_status":1,"upload_status_desc":"上传中"})
        );
    }
}
