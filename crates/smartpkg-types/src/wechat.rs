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
