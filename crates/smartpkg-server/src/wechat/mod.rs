//! The WeChat-compatible API (third-party platform, "component"): paths, field names, the
//! errcode envelope and token rules of `spec/wechat-openapi.md`, over the same application
//! layer as the Baidu face. Nothing here decides a rule of the platform; each handler parses
//! WeChat's wire, calls `crate::application`, and says the answer in WeChat's words.
//!
//! Every answer is HTTP 200 with JSON (`get_qrcode`'s image aside): success
//! `{"errcode":0,"errmsg":"ok", …fields}`, failure `{"errcode":N,"errmsg":"…"}`. Bodies are
//! JSON; an empty body where one is needed is 44002, a body that is not the call's JSON 47001.

mod auth;
mod code;
mod library;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use smartpkg_core::ids::TpId;
use smartpkg_core::lifecycle::{Errno, Refusal};
use smartpkg_store::{Grant, StoreError};
use smartpkg_types::wechat::{ok, Errcode};

use crate::application::{self, OpError, Scope};
use crate::state::AppState;
use crate::{clock, secrets};

pub fn routes() -> Router<AppState> {
    // The real service is strict about methods; so are we, where its docs say which.
    Router::new()
        .route(
            "/cgi-bin/component/api_component_token",
            post(auth::component_token),
        )
        .route(
            "/cgi-bin/component/api_create_preauthcode",
            post(auth::create_preauthcode),
        )
        .route("/cgi-bin/component/api_query_auth", post(auth::query_auth))
        .route(
            "/cgi-bin/component/api_authorizer_token",
            post(auth::authorizer_token),
        )
        .route(
            "/cgi-bin/component/api_get_authorizer_info",
            post(auth::authorizer_info),
        )
        .route(
            "/cgi-bin/componentloginpage",
            get(auth::consent_page).post(auth::consent_submit),
        )
        .route("/wxa/gettemplatedraftlist", get(library::draft_list))
        .route("/wxa/addtotemplate", post(library::add_to_template))
        .route("/wxa/gettemplatelist", get(library::template_list))
        .route("/wxa/deletetemplate", post(library::delete_template))
        .route("/wxa/commit", post(code::commit))
        .route("/wxa/get_page", get(code::get_page))
        .route("/wxa/get_qrcode", get(code::get_qrcode))
        .route("/wxa/submit_audit", post(code::submit_audit))
        .route("/wxa/get_auditstatus", post(code::get_auditstatus))
        .route(
            "/wxa/get_latest_auditstatus",
            get(code::get_latest_auditstatus),
        )
        .route("/wxa/undocodeaudit", get(code::undo_code_audit))
        .route("/wxa/release", post(code::release))
        .route("/wxa/revertcoderelease", get(code::revert_code_release))
        .route("/wxa/grayrelease", post(code::gray_release))
        .route("/wxa/revertgrayrelease", get(code::revert_gray_release))
        .route("/wxa/getgrayreleaseplan", get(code::gray_release_plan))
        .route("/wxa/speedupaudit", post(code::speed_up_audit))
        .route("/wxa/queryquota", get(code::query_quota))
        .route("/wxa/change_visitstatus", post(code::change_visit_status))
        .route("/wxa/getvisitstatus", post(code::get_visit_status))
        .route("/wxa/modify_domain", post(code::modify_domain))
        .route("/wxa/setwebviewdomain", post(code::set_webview_domain))
        .route(
            "/wxa/security/get_code_privacy_info",
            get(code::code_privacy_info),
        )
}

/// A refusal in WeChat's words.
#[derive(Debug)]
pub struct Fail {
    errcode: Errcode,
    errmsg: String,
}

impl Fail {
    pub fn new(errcode: Errcode) -> Fail {
        Fail {
            errcode,
            errmsg: errcode.default_msg().to_string(),
        }
    }

    /// WeChat's message for the code, then what was wrong.
    pub fn detail(errcode: Errcode, detail: impl std::fmt::Display) -> Fail {
        Fail {
            errcode,
            errmsg: format!("{}: {detail}", errcode.default_msg()),
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        // The real service ends every refusal's text with ` rid: <hex>`; clients set it apart
        // (`WechatError::message`), so ours carries one too, a fresh random id per answer.
        let rid = secrets::random_alnum(8).to_ascii_lowercase();
        Json(serde_json::json!({
            "errcode": self.errcode.code(),
            "errmsg": format!("{} rid: {rid}", self.errmsg),
        }))
        .into_response()
    }
}

/// A success: `errcode` 0 and the call's fields beside it.
pub struct Answer<T>(pub T);

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        Json(ok(&self.0)).into_response()
    }
}

pub type Reply<T = smartpkg_types::wechat::Done> = Result<Answer<T>, Fail>;

pub fn done() -> Reply {
    Ok(Answer(smartpkg_types::wechat::Done {}))
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            // WeChat's clients retry -1 blindly: answered only where nothing happened (a
            // lost race, an unreachable database).
            StoreError::Conflict(_) => Fail::new(Errcode::Busy),
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                Fail::new(Errcode::Busy)
            }
            other => {
                tracing::error!(error = %other, "storage failed");
                Fail::new(Errcode::Busy)
            }
        }
    }
}

/// The platform's refusals (in its errno vocabulary) as the WeChat dialect answers them, where
/// no call says otherwise: `errcode_of`, with the refusal's text kept as the detail.
impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Fail {
        Fail::detail(errcode_of(r.errno), r.msg)
    }
}

impl From<OpError> for Fail {
    fn from(e: OpError) -> Fail {
        match e {
            OpError::Refused(r) => r.into(),
            OpError::Store(e) => e.into(),
            OpError::Invalid(m) => Fail::detail(Errcode::DataFormatError, m),
            OpError::NotFound(what) => {
                Fail::detail(Errcode::DataFormatError, format!("{what} not found"))
            }
            OpError::WrongState(m) => Fail::detail(Errcode::AuditNotPassed, m),
            other => {
                tracing::error!(error = %other, "operation failed");
                Fail::new(Errcode::Busy)
            }
        }
    }
}

/// The WeChat errcode for one of the platform's errnos (docs/wechat.md has the table). Calls
/// whose refusal WeChat words differently (a release with nothing to release, a revert with
/// nothing to revert) answer their own codes before asking the core.
pub fn errcode_of(errno: Errno) -> Errcode {
    match errno {
        Errno::Success => Errcode::Ok,
        Errno::ExtJsonInvalid | Errno::ExtAppidMismatch => Errcode::InvalidExtJson,
        Errno::ExtPageUnknown => Errcode::ExtJsonPathMissing,
        Errno::TemplateNotFound | Errno::TemplateOffline => Errcode::TemplateNotExist,
        Errno::TemplateParseError => Errcode::InvalidTemplate,
        Errno::TemplateLimit => Errcode::TemplateListFull,
        Errno::AuditInFlight => Errcode::AuditPending,
        Errno::AuditQuotaExceeded => Errcode::MonthlyAuditLimit,
        Errno::NameNotAudited
        | Errno::CategoryNotAudited
        | Errno::NameAndCategoryNotAudited
        | Errno::NotCertified => Errcode::NotInitialized,
        Errno::StagedReleaseInProgress => Errcode::GrayReleaseRunning,
        Errno::StagePercentLowered => Errcode::GrayPercentageNotHigher,
        Errno::NothingToRollBack
        | Errno::RollbackTwice
        | Errno::NotOnlinePackage
        | Errno::RollbackTargetInvalid => Errcode::CannotRevert,
        Errno::WrongState => Errcode::AuditNotPassed,
        Errno::PackageNotFound => Errcode::NoCodeCommitted,
        Errno::CallLimit => Errcode::FrequencyLimit,
        Errno::AppNotFound => Errcode::InvalidAppid,
        Errno::NoAuthorization | Errno::NoAppPermission | Errno::NoTpPermission => {
            Errcode::ApiUnauthorized
        }
        Errno::ParamError | Errno::ParamTypeError | Errno::TemplateDescInvalid => {
            Errcode::DataFormatError
        }
        _ => Errcode::Busy,
    }
}

/// One call: its query parameters and its body, read within the body limit.
pub struct Wx {
    query: HashMap<String, String>,
    body: Bytes,
}

impl FromRequest<AppState> for Wx {
    type Rejection = Fail;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Fail> {
        let query = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let limit = state.settings.max_body_bytes;
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                Fail::detail(
                    Errcode::DataFormatError,
                    format!("the request body is larger than {limit} bytes"),
                )
            })?;
        Ok(Wx { query, body })
    }
}

impl Wx {
    /// A query parameter that is present and not blank.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The call's JSON body: 44002 when there is none, 47001 when it is not a JSON object of
    /// the call's fields (the message says which field and why).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Fail> {
        let body = self.body.trim_ascii();
        if body.is_empty() {
            return Err(Fail::new(Errcode::EmptyPostData));
        }
        if body.first() != Some(&b'{') {
            return Err(Fail::detail(
                Errcode::DataFormatError,
                "the body must be a JSON object",
            ));
        }
        serde_json::from_slice(body).map_err(|e| Fail::detail(Errcode::DataFormatError, e))
    }

    /// The body where WeChat lets it be left out: absent is the default.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, Fail> {
        if self.body.trim_ascii().is_empty() {
            Ok(T::default())
        } else {
            self.json()
        }
    }

    /// The token the call carries, under any of `names`; 41001 when none is.
    fn token(&self, names: &[&str]) -> Result<String, Fail> {
        names
            .iter()
            .find_map(|n| self.query(n))
            .map(secrets::sha256_hex)
            .ok_or_else(|| Fail::new(Errcode::AccessTokenMissing))
    }

    /// The third party whose component token the call carries (as `component_access_token`
    /// or `access_token`); a call that writes draws on its write budget.
    pub async fn component(&self, state: &AppState, writes: bool) -> Result<TpId, Fail> {
        let hash = self.token(&["component_access_token", "access_token"])?;
        let Some((tp_id, expires_at)) = state.store.resolve_tp_token(hash.clone()).await? else {
            // An authorizer's token where the component's is needed is the wrong kind of
            // token (40014); anything else is no token of ours (40001).
            let authorizer = state.store.resolve_app_token(hash).await?.is_some();
            return Err(Fail::new(if authorizer {
                Errcode::InvalidAccessToken
            } else {
                Errcode::InvalidCredential
            }));
        };
        if expires_at <= clock::now_ms() {
            return Err(Fail::new(Errcode::AccessTokenExpired));
        }
        if writes {
            application::take_write(state, Scope::Tp, tp_id.get())?;
        }
        Ok(tp_id)
    }

    /// The mini program whose authorizer token the call carries (`access_token`); a call
    /// that writes draws on the mini program's and its third party's write budgets.
    pub async fn authorizer(&self, state: &AppState, writes: bool) -> Result<Grant, Fail> {
        let hash = self.token(&["access_token"])?;
        let Some(grant) = state.store.resolve_app_token(hash.clone()).await? else {
            let component = state.store.resolve_tp_token(hash).await?.is_some();
            return Err(Fail::new(if component {
                Errcode::InvalidAccessToken
            } else {
                Errcode::InvalidCredential
            }));
        };
        if grant.expires_at_ms <= clock::now_ms() {
            return Err(Fail::new(Errcode::AccessTokenExpired));
        }
        if writes {
            application::take_write(state, Scope::App, grant.app_id.get())?;
            application::take_write(state, Scope::Tp, grant.tp_id.get())?;
        }
        Ok(grant)
    }
}

/// A text field of at most `max` characters without control or invisible characters; 47001
/// naming the field otherwise.
pub fn text(name: &str, value: String, max: usize, multiline: bool) -> Result<String, Fail> {
    if value.chars().count() > max {
        return Err(Fail::detail(
            Errcode::DataFormatError,
            format!("{name} is longer than {max} characters"),
        ));
    }
    smartpkg_core::text::check(name, &value, multiline)
        .map_err(|why| Fail::detail(Errcode::DataFormatError, why))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lifecycle_refusal_has_a_wechat_errcode_other_than_busy() {
        // Busy means "nothing happened, retry blindly": a rule's refusal must never say it.
        let rules = [
            Errno::AuditInFlight,
            Errno::AuditQuotaExceeded,
            Errno::NameNotAudited,
            Errno::CategoryNotAudited,
            Errno::NameAndCategoryNotAudited,
            Errno::NotCertified,
            Errno::StagedReleaseInProgress,
            Errno::StagePercentLowered,
            Errno::NothingToRollBack,
            Errno::RollbackTwice,
            Errno::NotOnlinePackage,
            Errno::RollbackTargetInvalid,
            Errno::WrongState,
            Errno::PackageNotFound,
            Errno::ExtJsonInvalid,
            Errno::ExtPageUnknown,
            Errno::ExtAppidMismatch,
            Errno::TemplateNotFound,
            Errno::TemplateOffline,
            Errno::TemplateParseError,
            Errno::ParamError,
            Errno::CallLimit,
        ];
        for errno in rules {
            let code = errcode_of(errno);
            assert_ne!(code, Errcode::Busy, "{errno:?}");
            assert!(
                Errcode::TABLE.contains(&code),
                "{errno:?} maps to {code:?}, outside the table"
            );
        }
        assert_eq!(errcode_of(Errno::AuditInFlight).code(), 85009);
        assert_eq!(errcode_of(Errno::ExtPageUnknown).code(), 85045);
        assert_eq!(errcode_of(Errno::StagedReleaseInProgress).code(), 87011);
    }
}
