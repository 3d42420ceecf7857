//! The errno table, written once: each entry names its code, its variant and Baidu's message.

use serde::{Deserialize, Serialize};

macro_rules! errnos {
    ($( $(#[$doc:meta])* $name:ident = $code:literal => $msg:literal, )*) => {
        /// A business error number (`errno` in the envelope). Baidu's own values (spec §6)
        /// and the ones this project adds for rules Baidu documents without a code
        /// (`docs/lifecycle.md`). A code outside the table — the real platform may answer
        /// one we have not seen — decodes to [`Errno::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(into = "i64", from = "i64")]
        pub enum Errno {
            $( $(#[$doc])* $name, )*
            /// A code outside the table. Build it with [`Errno::from_code`], which keeps
            /// known codes in their variants so that equality means the same code.
            Other(i64),
        }

        impl Errno {
            /// Every named entry, for documentation and tests.
            pub const TABLE: &'static [Errno] = &[$(Errno::$name,)*];

            /// The number on the wire.
            pub const fn code(self) -> i64 {
                match self {
                    $(Errno::$name => $code,)*
                    Errno::Other(code) => code,
                }
            }

            pub const fn from_code(code: i64) -> Errno {
                match code {
                    $($code => Errno::$name,)*
                    other => Errno::Other(other),
                }
            }

            /// Baidu's message for the code (ours for our own codes); call sites add detail.
            pub const fn default_msg(self) -> &'static str {
                match self {
                    $(Errno::$name => $msg,)*
                    Errno::Other(_) => "未知错误",
                }
            }
        }
    };
}

errnos! {
    Success = 0 => "success",
    /// The platform is busy; Baidu's SDKs retry on it.
    Busy = 500 => "网络繁忙，请稍后重试",
    TemplateLimit = 2003 => "模板超过限额，无法添加",
    RecordExists = 40000 => "记录已存在",
    ParamError = 40001 => "参数错误",
    NoTpPermission = 40007 => "无此TP操作权限",
    TemplateDescInvalid = 40016 => "模版描述非法，请参考官网参数规则",
    ParamTypeError = 41000 => "参数类型错误",
    NoAccess = 44001 => "无权限访问",
    TokenRevoked = 44002 => "TOKEN已注销",
    TokenExpired = 44003 => "TOKEN已过期",
    TokenAuthFailed = 44004 => "TOKEN认证失败",
    AppNotFound = 45000 => "小程序不存在",
    NoAppPermission = 45001 => "无此小程序操作权限",
    AuthorizationAbnormal = 45002 => "授权异常",
    QrcodeFailed = 47002 => "获取二维码失败",
    QrcodeWidth = 470018 => "二维码宽度超出范围(200-1280)",
    QrcodePackage = 470019 => "package_id不正确",
    QrcodeNoOnline = 470020 => "小程序没有线上版本",
    ClientIdUnknown = 50002 => "client_id不存在",
    TicketInvalid = 50003 => "ticket无效",
    /// A call limit was hit; the message says which one and when to retry.
    CallLimit = 50029 => "接口调用次数超过限制",
    Processing = 50031 => "处理中，请稍后重试",
    ProcessingAlt = 50050 => "处理中，请稍后重试",
    NoAuthorization = 50032 => "没有授权关系，请检查",
    NotCertified = 50038 => "请先完成高级认证",
    NameNotAudited = 69001 => "小程序名称审核通过后，可以提交小程序代码审核",
    CategoryNotAudited = 69002 => "服务类目审核通过后，可以提交小程序代码包审核",
    NameAndCategoryNotAudited = 69003 => "小程序名称和服务类目审核通过后，可以提交小程序代码包审核",
    ExtJsonInvalid = 69004 => "EXT_JSON字段包含无法解析字符",
    PackageNotFound = 69005 => "包不存在",
    TemplateOffline = 69007 => "目标模板已下线",
    TemplateNotFound = 69008 => "源模板不存在",
    UploadUnavailable = 69009 => "上传服务暂不可用，请稍后重试",
    TemplateParseError = 69010 => "模板文件解析出错",
    AuditUnavailable = 69011 => "审核服务暂不可用，请稍后重试",
    ReleaseUnavailable = 69012 => "发布服务暂不可用，请稍后重试",
    AuditQuotaExceeded = 69013 => "送审额度已超出当前周期限制",
    // --- ours (documented in docs/lifecycle.md) ---
    /// The package is not in a state that allows this call.
    WrongState = 69501 => "代码包状态不允许该操作",
    /// Another package of this mini program is already being audited.
    AuditInFlight = 69502 => "已有代码包在审核中",
    /// The online package has no previous version to roll back to.
    NothingToRollBack = 69503 => "没有可回滚的版本",
    /// The online version is itself the result of a rollback; release before rolling back again.
    RollbackTwice = 69504 => "回滚后的版本不能再次回滚，请先发布新版本",
    /// The package is not the mini program's online version.
    NotOnlinePackage = 69505 => "只能回滚线上版本",
    /// `extPages` or `tabBar` names a page the template does not have (build error).
    ExtPageUnknown = 69506 => "ext_json引用了模板中不存在的页面",
    /// `extAppid` names another mini program (build error).
    ExtAppidMismatch = 69507 => "extAppid与小程序不符",
    /// A staged release of the audit version is in progress: release it or revert it first.
    StagedReleaseInProgress = 69508 => "灰度发布进行中，请先全量发布或撤销灰度",
    /// A staged release's percentage only grows; revert to start again.
    StagePercentLowered = 69509 => "灰度比例只能调高",
    /// Revert of a staged release when none is in progress.
    NotStaged = 69510 => "没有进行中的灰度发布",
    /// The chosen version is not one of the mini program's last five online versions.
    RollbackTargetInvalid = 69511 => "只能回退到最近五个线上版本之一",
}

impl Errno {
    /// The codes that mean "try again later": the same call may succeed unchanged.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Errno::Busy
                | Errno::CallLimit
                | Errno::Processing
                | Errno::ProcessingAlt
                | Errno::UploadUnavailable
                | Errno::AuditUnavailable
                | Errno::ReleaseUnavailable
        )
    }
}

impl From<Errno> for i64 {
    fn from(e: Errno) -> i64 {
        e.code()
    }
}

impl From<i64> for Errno {
    fn from(code: i64) -> Errno {
        Errno::from_code(code)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code(), self.default_msg())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_round_trips_and_codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &e in Errno::TABLE {
            assert_eq!(Errno::from_code(e.code()), e);
            assert!(seen.insert(e.code()), "{} listed twice", e.code());
            assert_ne!(e.default_msg(), "未知错误");
        }
    }

    #[test]
    fn an_unknown_code_is_kept_as_other() {
        assert_eq!(Errno::from_code(12345), Errno::Other(12345));
        assert_eq!(
            serde_json::from_str::<Errno>("69013").expect("decodes"),
            Errno::AuditQuotaExceeded
        );
        assert_eq!(
            serde_json::to_string(&Errno::WrongState).expect("encodes"),
            "69501"
        );
    }
}
