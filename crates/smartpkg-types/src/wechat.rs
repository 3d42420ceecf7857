//! The WeChat dialect's wire contract, shared by the server and the client: the errcode table
//! (spec `wechat-openapi.md` §2, written once) and the envelope.
//!
//! Every WeChat answer is HTTP 200 with JSON. Success is `{"errcode":0,"errmsg":"ok", …}` with
//! the call's fields at the top level (no `data` wrapper; many answers leave `errcode` out
//! altogether); failure is `{"errcode":N,"errmsg":"text"}`, where the real service appends
//! ` rid: <hex>` to the text.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

macro_rules! errcodes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal => $msg:literal, )*) => {
        /// An `errcode` of the WeChat dialect. A code outside the table — the real service may
        /// answer one we have not seen — is [`Errcode::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(into = "i64", from = "i64")]
        pub enum Errcode {
            $( $(#[$doc])* $name, )*
            /// A code outside the table; [`Errcode::from_code`] keeps known codes in their
            /// variants, so that equality means the same code.
            Other(i64),
        }

        impl Errcode {
            /// Every named entry, for documentation and tests.
            pub const TABLE: &'static [Errcode] = &[$(Errcode::$name,)*];

            /// The number on the wire.
            pub const fn code(self) -> i64 {
                match self {
                    $(Errcode::$name => $code,)*
                    Errcode::Other(code) => code,
                }
            }

            pub const fn from_code(code: i64) -> Errcode {
                match code {
                    $($code => Errcode::$name,)*
                    other => Errcode::Other(other),
                }
            }

            /// WeChat's message for the code; call sites may add detail.
            pub const fn default_msg(self) -> &'static str {
                match self {
                    $(Errcode::$name => $msg,)*
                    Errcode::Other(_) => "unknown error",
                }
            }
        }
    };
}

errcodes! {
    Ok = 0 => "ok",
    /// The service is busy: clients retry blindly, so it is answered only when nothing
    /// happened.
    Busy = -1 => "system error",
    InvalidCredential = 40001 => "invalid credential, access_token is invalid or not latest",
    InvalidAppid = 40013 => "invalid appid",
    InvalidAccessToken = 40014 => "invalid access_token",
    InvalidAppsecret = 40125 => "invalid appsecret",
    AccessTokenMissing = 41001 => "access_token missing",
    AccessTokenExpired = 42001 => "access_token expired",
    EmptyPostData = 44002 => "empty post data",
    DataFormatError = 47001 => "data format error",
    IpNotRegistered = 61004 => "access clientip is not registered",
    TicketExpired = 61005 => "component ticket is expired",
    TicketInvalid = 61006 => "component ticket is invalid",
    ApiUnauthorized = 61007 => "api is unauthorized to component",
    AuthCodeInvalid = 61009 => "code is invalid",
    RefreshTokenInvalid = 61023 => "refresh_token is invalid",
    AuditPending = 85009 => "already submit a version under auditing",
    InvalidAuditId = 85012 => "invalid audit id",
    InvalidExtJson = 85013 => "invalid ext_json, parse fail or containing invalid path",
    TemplateNotExist = 85014 => "template not exist",
    NothingUnderAudit = 85019 => "no version is auditing",
    AuditNotPassed = 85020 => "status not allowed",
    VisitStatusNotAllowed = 85021 => "status not allowed",
    InvalidAction = 85022 => "action not allowed",
    ItemListSize = 85023 => "item size is not in 1-5",
    InvalidTemplate = 85043 => "invalid template",
    PackageTooLarge = 85044 => "code package exceeded max limitation",
    ExtJsonPathMissing = 85045 => "some path in ext_json not exist",
    PagesEmpty = 85047 => "pages are empty",
    ExtJsonParseFail = 85048 => "parse ext_json fail",
    AlreadyReleased = 85052 => "app is already released",
    NoValidAudit = 85058 => "no valid audit_id exist",
    TemplateNotFound = 85064 => "template not found",
    TemplateListFull = 85065 => "template list is full",
    NoOnlineRelease = 85079 => "miniprogram has no online release",
    GrayAuditNotPassed = 85080 => "miniprogram commit not approved",
    InvalidGrayPercentage = 85081 => "invalid gray percentage",
    GrayPercentageNotHigher = 85082 => "gray percentage must be higher than the previous one",
    MonthlyAuditLimit = 85085 => "submit audit reach limit",
    CommitFirst = 85086 => "must commit before submit audit",
    ThirdPartyOnly = 86000 => "should be called only from third party",
    NoCodeCommitted = 86001 => "no code committed by the third party",
    GrayReleaseRunning = 87011 => "there is a gray release running, cannot revert",
    CannotRevert = 87012 => "this version cannot be reverted",
    UndoQuota = 87013 => "no quota to undo code audit",
    WebviewDomainUnchanged = 89019 => "webview domain not change",
    NoComponentWebviewDomain = 89020 => "the component has no webview domain",
    WebviewDomainNotAllowed = 89021 => "request domain is not the component's webview domain",
    SpeedupBusy = 89401 => "system error, please try again",
    SpeedupNotQueued = 89402 => "the version is not in the audit queue",
    SpeedupNotEligible = 89403 => "this kind of audit cannot be sped up",
    SpeedupDone = 89404 => "the audit has already been sped up",
    SpeedupQuota = 89405 => "this month's speed-up quota is used up",
    /// Too many calls: the write budgets every dialect shares.
    FrequencyLimit = 45009 => "reach max api daily quota limit",
    /// The mini program's name or category has not passed its review yet.
    NotInitialized = 86002 => "miniprogram has not completed initialization",
}

impl Errcode {
    /// Whether a client refreshes its token and tries once more (spec §2).
    pub const fn refresh_token(self) -> bool {
        matches!(
            self,
            Errcode::InvalidCredential | Errcode::InvalidAccessToken | Errcode::AccessTokenExpired
        )
    }
}

impl From<Errcode> for i64 {
    fn from(e: Errcode) -> i64 {
        e.code()
    }
}

impl From<i64> for Errcode {
    fn from(code: i64) -> Errcode {
        Errcode::from_code(code)
    }
}

/// A refusal as the WeChat dialect answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("errcode {errcode:?}: {errmsg}")]
pub struct WechatError {
    pub errcode: Errcode,
    pub errmsg: String,
}

impl WechatError {
    pub fn new(errcode: Errcode) -> Self {
        WechatError {
            errcode,
            errmsg: errcode.default_msg().to_string(),
        }
    }

    /// The message without the ` rid: …` the real service appends.
    pub fn message(&self) -> &str {
        self.errmsg
            .split_once(" rid: ")
            .map_or(self.errmsg.as_str(), |(m, _)| m)
    }
}

/// Why an answer did not decode to what the call promised.
#[derive(Debug, thiserror::Error)]
pub enum WechatWireError {
    #[error(transparent)]
    Refused(#[from] WechatError),
    #[error("the answer is not the JSON the call promises: {0}")]
    Malformed(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    errcode: Option<Errcode>,
    #[serde(default)]
    errmsg: Option<String>,
}

/// Decodes an answer: a non-zero `errcode` is the refusal it names, anything else the call's
/// fields (read from the top level).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WechatWireError> {
    let head: Head = serde_json::from_slice(body)?;
    match head.errcode {
        Some(code) if code != Errcode::Ok => Err(WechatError {
            errcode: code,
            errmsg: head.errmsg.unwrap_or_default(),
        }
        .into()),
        _ => Ok(serde_json::from_slice(body)?),
    }
}

/// A success answer: `errcode` 0, `errmsg` "ok", and the call's fields beside them.
pub fn ok<T: Serialize>(fields: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(fields).unwrap_or(serde_json::Value::Null);
    let mut out = serde_json::Map::new();
    out.insert("errcode".into(), 0.into());
    out.insert("errmsg".into(), "ok".into());
    if let serde_json::Value::Object(fields) = v.take() {
        out.extend(fields);
    }
    serde_json::Value::Object(out)
}

/// A number WeChat documents as a number that clients also send as a string of digits
/// (`template_id`, `auditid`, `draft_id`): both are accepted.
pub mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(i64),
        Str(String),
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(n),
            NumOrStr::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("expected a number, got {s:?}"))),
        }
    }
}

// --- the calls' fields (spec §3–§5), shared by the server and the typed client ---

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentTokenRequest {
    pub component_appid: String,
    pub component_appsecret: String,
    pub component_verify_ticket: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentToken {
    pub component_access_token: String,
    pub expires_in: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreAuthCodeRequest {
    pub component_appid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreAuthCode {
    pub pre_auth_code: String,
    pub expires_in: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAuthRequest {
    pub component_appid: String,
    pub authorization_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuncScope {
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuncInfo {
    pub funcscope_category: FuncScope,
}

/// Permission set 18: code management, what template-based development needs.
pub const CODE_MANAGEMENT: i64 = 18;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationInfo {
    pub authorizer_appid: String,
    pub authorizer_access_token: String,
    pub expires_in: i64,
    pub authorizer_refresh_token: String,
    pub func_info: Vec<FuncInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAuth {
    pub authorization_info: AuthorizationInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerTokenRequest {
    pub component_appid: String,
    pub authorizer_appid: String,
    pub authorizer_refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerToken {
    pub authorizer_access_token: String,
    pub expires_in: i64,
    pub authorizer_refresh_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerInfoRequest {
    pub component_appid: String,
    pub authorizer_appid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeInfo {
    pub id: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiniProgramInfo {
    pub network: serde_json::Value,
    pub categories: Vec<serde_json::Value>,
    pub visit_status: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerInfo {
    pub nick_name: String,
    pub head_img: String,
    pub service_type_info: TypeInfo,
    pub verify_type_info: TypeInfo,
    /// The original id (`gh_…`).
    pub user_name: String,
    pub principal_name: String,
    pub signature: String,
    #[serde(rename = "MiniProgramInfo")]
    pub mini_program_info: MiniProgramInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerScopes {
    pub authorizer_appid: String,
    pub func_info: Vec<FuncInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerInfoAnswer {
    pub authorizer_info: AuthorizerInfo,
    pub authorization_info: AuthorizerScopes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub draft_id: i64,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub create_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftList {
    pub draft_list: Vec<Draft>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddToTemplateRequest {
    #[serde(deserialize_with = "lenient::i64")]
    pub draft_id: i64,
    #[serde(default)]
    pub template_type: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub template_id: i64,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub create_time: i64,
    pub template_type: i64,
    pub source_miniprogram_appid: String,
    pub source_miniprogram: String,
    pub developer: String,
    pub audit_status: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateList {
    pub template_list: Vec<Template>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateIdRequest {
    #[serde(deserialize_with = "lenient::i64")]
    pub template_id: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    #[serde(deserialize_with = "lenient::i64")]
    pub template_id: i64,
    /// A JSON document as a string (WeChat's `ext_json` is text, not an object).
    #[serde(default)]
    pub ext_json: String,
    #[serde(default)]
    pub user_version: String,
    #[serde(default)]
    pub user_desc: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageList {
    pub page_list: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditItem {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub first_class: String,
    #[serde(default)]
    pub second_class: String,
    #[serde(default)]
    pub third_class: String,
    #[serde(default)]
    pub first_id: Option<serde_json::Value>,
    #[serde(default)]
    pub second_id: Option<serde_json::Value>,
    #[serde(default)]
    pub third_id: Option<serde_json::Value>,
    #[serde(default)]
    pub title: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubmitAuditRequest {
    #[serde(default)]
    pub item_list: Option<Vec<AuditItem>>,
    #[serde(default)]
    pub feedback_info: Option<String>,
    #[serde(default)]
    pub feedback_stuff: Option<String>,
    #[serde(default)]
    pub version_desc: Option<String>,
    #[serde(default)]
    pub preview_info: Option<serde_json::Value>,
    #[serde(default)]
    pub ugc_declare: Option<serde_json::Value>,
    #[serde(default)]
    pub privacy_api_not_use: Option<bool>,
    #[serde(default)]
    pub order_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditId {
    pub auditid: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditIdRequest {
    #[serde(deserialize_with = "lenient::i64")]
    pub auditid: i64,
}

/// `status` of an audit: 0 passed, 1 rejected, 2 auditing, 3 withdrawn, 4 delayed.
pub mod audit_status {
    pub const PASSED: i64 = 0;
    pub const REJECTED: i64 = 1;
    pub const AUDITING: i64 = 2;
    pub const WITHDRAWN: i64 = 3;
    pub const DELAYED: i64 = 4;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStatus {
    pub status: i64,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub screenshot: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestAuditStatus {
    pub auditid: i64,
    pub status: i64,
    #[serde(default)]
    pub reason: String,
    #[serde(rename = "ScreenShot", default)]
    pub screenshot: String,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub submit_audit_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryVersion {
    pub app_version: i64,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub commit_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryVersions {
    pub version_list: Vec<HistoryVersion>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayReleaseRequest {
    #[serde(deserialize_with = "lenient::i64")]
    pub gray_percentage: i64,
    #[serde(default)]
    pub support_debuger_first: Option<bool>,
    #[serde(default)]
    pub support_experiencer_first: Option<bool>,
    /// smartpkg's extension: a plan's steps (`"1,5,20,50,100"`), starting at
    /// `gray_percentage`, which must be one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_steps: Option<String>,
    /// smartpkg's extension: `true` lets the platform advance the plan on healthy figures and
    /// halt (pause) it on bad ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_auto: Option<bool>,
}

/// `status` of a gray release plan: 0 initial, 1 running, 2 paused, 3 finished, 4 deleted.
pub mod gray_status {
    pub const INITIAL: i64 = 0;
    pub const RUNNING: i64 = 1;
    pub const PAUSED: i64 = 2;
    pub const FINISHED: i64 = 3;
    pub const DELETED: i64 = 4;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayReleasePlanDetail {
    pub status: i64,
    /// Unix seconds.
    pub create_timestamp: i64,
    pub gray_percentage: i64,
    pub support_debuger_first: bool,
    pub support_experiencer_first: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrayReleasePlan {
    pub gray_release_plan: GrayReleasePlanDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryQuota {
    pub rest: i64,
    pub limit: i64,
    pub speedup_rest: i64,
    pub speedup_limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitStatus {
    /// 0 paused, 1 normal.
    pub status: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyDomainRequest {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub requestdomain: Option<Vec<String>>,
    #[serde(default)]
    pub wsrequestdomain: Option<Vec<String>>,
    #[serde(default)]
    pub uploaddomain: Option<Vec<String>>,
    #[serde(default)]
    pub downloaddomain: Option<Vec<String>>,
    #[serde(default)]
    pub udpdomain: Option<Vec<String>>,
    #[serde(default)]
    pub tcpdomain: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerDomains {
    pub requestdomain: Vec<String>,
    pub wsrequestdomain: Vec<String>,
    pub uploaddomain: Vec<String>,
    pub downloaddomain: Vec<String>,
    pub udpdomain: Vec<String>,
    pub tcpdomain: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebviewDomainRequest {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub webviewdomain: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebviewDomains {
    pub webviewdomain: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyInfo {
    pub without_auth_list: Vec<String>,
    pub without_conf_list: Vec<String>,
}

/// An answer with no fields beyond `errcode` and `errmsg`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errcode_round_trips_and_has_a_message() {
        for e in Errcode::TABLE {
            assert_eq!(Errcode::from_code(e.code()), *e);
            assert!(!e.default_msg().is_empty(), "{e:?}");
            let json = serde_json::to_string(e).expect("json");
            assert_eq!(json, e.code().to_string());
        }
        assert_eq!(Errcode::from_code(12345), Errcode::Other(12345));
        let mut codes: Vec<i64> = Errcode::TABLE.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Errcode::TABLE.len(), "no code twice");
    }

    #[test]
    fn only_the_token_errors_ask_for_a_refresh() {
        let refresh: Vec<i64> = Errcode::TABLE
            .iter()
            .filter(|e| e.refresh_token())
            .map(|e| e.code())
            .collect();
        assert_eq!(refresh, [40001, 40014, 42001]);
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Token {
        component_access_token: String,
        expires_in: i64,
    }

    #[test]
    fn a_success_reads_its_fields_from_the_top_level_with_or_without_errcode() {
        let token = Token {
            component_access_token: "t".into(),
            expires_in: 7200,
        };
        let with = serde_json::to_vec(&ok(&token)).expect("json");
        assert_eq!(decode::<Token>(&with).expect("decodes"), token);
        let v: serde_json::Value = serde_json::from_slice(&with).expect("json");
        assert_eq!(
            (v["errcode"].as_i64(), v["errmsg"].as_str()),
            (Some(0), Some("ok"))
        );
        let without = br#"{"component_access_token":"t","expires_in":7200}"#;
        assert_eq!(decode::<Token>(without).expect("decodes"), token);
    }

    #[test]
    fn a_refusal_is_typed_and_its_rid_set_apart() {
        let body = br#"{"errcode":42001,"errmsg":"access_token expired rid: 5f1c-0a"}"#;
        match decode::<Token>(body) {
            Err(WechatWireError::Refused(e)) => {
                assert_eq!(e.errcode, Errcode::AccessTokenExpired);
                assert!(e.errcode.refresh_token());
                assert_eq!(e.message(), "access_token expired");
            }
            other => panic!("not a refusal: {other:?}"),
        }
        let unknown = br#"{"errcode":99999,"errmsg":"new"}"#;
        assert!(matches!(
            decode::<Token>(unknown),
            Err(WechatWireError::Refused(WechatError {
                errcode: Errcode::Other(99999),
                ..
            }))
        ));
    }

    #[test]
    fn an_answer_that_is_not_the_promised_json_is_malformed() {
        assert!(matches!(
            decode::<Token>(b"<html>"),
            Err(WechatWireError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Token>(br#"{"errcode":0}"#),
            Err(WechatWireError::Malformed(_))
        ));
    }
}
