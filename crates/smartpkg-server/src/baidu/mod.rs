//! The Baidu-compatible API. Paths, parameter names, envelopes, field types and errno values
//! follow `spec/baidu-openapi.md`; nothing here is ours to change.
//!
//! Parameters arrive from the query string, a form body or a JSON body, mixed (spec §1):
//! [`Params`] merges them, the body winning over the query for a name given twice.

mod app;
mod auth;
pub use auth::issued_code;
mod package;
pub mod qrcode;
mod tp;

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use smartpkg_store::{Grant, StoreError};
use smartpkg_types::{Envelope, Errno, GatewayError, NoData};

use crate::state::AppState;
use crate::{clock, secrets};

pub fn routes() -> Router<AppState> {
    // Real clients use GET or POST as they like (the doc's curl examples POST with everything
    // in the query), so every route answers both.
    let p = "/rest/2.0/smartapp/package";
    let t = "/rest/2.0/smartapp/template";
    Router::new()
        .route(&format!("{p}/upload"), any(package::upload))
        .route(&format!("{p}/submitaudit"), any(package::submitaudit))
        .route(&format!("{p}/release"), any(package::release))
        .route(&format!("{p}/rollback"), any(package::rollback))
        .route(&format!("{p}/withdraw"), any(package::withdraw))
        .route(&format!("{p}/get"), any(package::get))
        .route(&format!("{p}/getdetail"), any(package::getdetail))
        .route(&format!("{p}/auditquota"), any(package::auditquota))
        .route(&format!("{p}/gettrial"), any(package::gettrial))
        // smartpkg's extensions, in the same wire style (docs/runtime.md).
        .route(&format!("{p}/grayrelease"), any(package::grayrelease))
        .route(
            &format!("{p}/revertgrayrelease"),
            any(package::revertgrayrelease),
        )
        .route(&format!("{p}/rollbackto"), any(package::rollbackto))
        .route(&format!("{p}/gethistory"), any(package::gethistory))
        .route("/rest/2.0/smartapp/app/pause", any(app::pause))
        .route("/rest/2.0/smartapp/app/resume", any(app::resume))
        .route(
            "/rest/2.0/smartapp/app/modifydomain",
            any(app::modifydomain),
        )
        .route(
            "/rest/2.0/smartapp/app/modifywebviewdomain",
            any(app::modifywebviewdomain),
        )
        .route(
            "/rest/2.0/smartapp/app/getsupportversion",
            any(app::getsupportversion),
        )
        .route(
            "/rest/2.0/smartapp/app/setsupportversion",
            any(app::setsupportversion),
        )
        .route(
            "/rest/2.0/smartapp/tp/modifydomain",
            any(app::tp_modifydomain),
        )
        .route(
            "/rest/2.0/smartapp/tp/modifywebviewdomain",
            any(app::tp_modifywebviewdomain),
        )
        .route("/public/2.0/smartapp/auth/tp/token", any(tp::token))
        .route(
            "/rest/2.0/smartapp/tp/createpreauthcode",
            any(auth::createpreauthcode),
        )
        .route(
            "/mappconsole/tp/authorization",
            axum::routing::get(auth::show).post(auth::submit),
        )
        .route("/rest/2.0/oauth/token", any(auth::oauth_token))
        .route("/rest/2.0/smartapp/app/info", any(auth::app_info))
        .route("/rest/2.0/smartapp/app/qrcode", any(qrcode::qrcode))
        .route(
            "/rest/2.0/smartapp/auth/retrieve/authorizationcode",
            any(auth::retrieve_authorizationcode),
        )
        .route(
            &format!("{t}/gettemplatedraftlist"),
            any(tp::gettemplatedraftlist),
        )
        .route(&format!("{t}/addtotemplate"), any(tp::addtotemplate))
        .route(&format!("{t}/gettemplatelist"), any(tp::gettemplatelist))
        .route(&format!("{t}/deltemplate"), any(tp::deltemplate))
}

/// A successful Baidu API answer: the envelope with `data` (HTTP 200). Handlers return
/// `Result<Data<T>, Reply>` ([`Answer`]), typed with the wire types the client decodes.
#[derive(Debug)]
pub struct Data<T>(pub T);

impl<T: Serialize + 'static> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        // A call that answers nothing leaves `data` out, as the real platform does.
        let empty = std::any::TypeId::of::<T>() == std::any::TypeId::of::<NoData>();
        Json(Envelope {
            errno: Errno::Success,
            msg: "success".into(),
            data: (!empty).then_some(self.0),
        })
        .into_response()
    }
}

/// An answer that is not a success: the envelope with a non-zero errno or the gateway's error
/// shape, both HTTP 200 as the real gateway answers, or a body over the limit (413).
#[derive(Debug)]
pub enum Reply {
    Err(Errno, String),
    Gateway(GatewayError),
    TooLarge(usize),
}

/// What every Baidu handler returns; `T` is the call's data on the wire.
pub type Answer<T = NoData> = Result<Data<T>, Reply>;

/// The success of a call that answers no data.
pub fn done() -> Answer {
    Ok(Data(NoData))
}

impl Reply {
    pub fn err(errno: Errno) -> Reply {
        Reply::Err(errno, errno.default_msg().to_string())
    }

    pub fn err_msg(errno: Errno, detail: impl std::fmt::Display) -> Reply {
        Reply::Err(errno, format!("{}: {detail}", errno.default_msg()))
    }
}

impl From<smartpkg_core::lifecycle::Refusal> for Reply {
    fn from(r: smartpkg_core::lifecycle::Refusal) -> Reply {
        Reply::Err(r.errno, r.msg)
    }
}

/// The application layer's refusals as Baidu answers them: its errnos as they are, input
/// errors as 40001, storage as the store's errors are.
impl From<crate::application::OpError> for Reply {
    fn from(e: crate::application::OpError) -> Reply {
        use crate::application::OpError;
        match e {
            OpError::Refused(r) => r.into(),
            OpError::Store(e) => e.into(),
            OpError::Invalid(m) => Reply::err_msg(Errno::ParamError, m),
            OpError::NotFound(what) => {
                Reply::err_msg(Errno::ParamError, format!("{what} not found"))
            }
            OpError::WrongState(m) => Reply::Err(Errno::WrongState, m),
            other => {
                tracing::error!(error = %other, "operation failed");
                Reply::err(Errno::Busy)
            }
        }
    }
}

impl From<StoreError> for Reply {
    fn from(e: StoreError) -> Reply {
        match e {
            StoreError::Conflict(_) => Reply::err(Errno::Processing),
            StoreError::Unavailable(e) => {
                // Baidu's "busy, retry later": what its SDKs retry on.
                tracing::warn!(error = %e, "database unavailable");
                Reply::err(Errno::Busy)
            }
            other => {
                tracing::error!(error = %other, "storage failed");
                Reply::err(Errno::Busy)
            }
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let refused = |errno, msg| Envelope::<()> {
            errno,
            msg,
            data: None,
        };
        match self {
            Reply::Err(errno, msg) => Json(refused(errno, msg)).into_response(),
            Reply::Gateway(g) => Json(g).into_response(),
            Reply::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(refused(
                    Errno::ParamError,
                    format!("参数错误: the request body is larger than {limit} bytes"),
                )),
            )
                .into_response(),
        }
    }
}

/// All parameters of a request, merged from the query string and the body.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

fn json_scalar(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        // An object (ext_json sent as a nested object by JSON clients) is passed on as text.
        other => other.to_string(),
    }
}

impl FromRequest<AppState> for Params {
    type Rejection = Reply;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Reply> {
        let mut map = HashMap::new();
        if let Some(q) = req.uri().query() {
            map.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let limit = state.settings.max_body_bytes;
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| Reply::TooLarge(limit))?;
        let trimmed = body.trim_ascii();
        if trimmed.is_empty() {
            return Ok(Params(map));
        }
        let is_json = content_type.starts_with("application/json")
            || (!content_type.starts_with("application/x-www-form-urlencoded")
                && trimmed.first() == Some(&b'{'));
        if is_json {
            let v: Value = serde_json::from_slice(trimmed).map_err(|e| {
                Reply::err_msg(Errno::ParamError, format!("the JSON body is invalid: {e}"))
            })?;
            let Value::Object(obj) = v else {
                return Err(Reply::err_msg(
                    Errno::ParamError,
                    "the JSON body must be an object",
                ));
            };
            map.extend(obj.into_iter().map(|(k, v)| (k, json_scalar(v))));
        } else {
            map.extend(form_urlencoded::parse(trimmed).into_owned());
        }
        Ok(Params(map))
    }
}

impl Params {
    /// A parameter that is present and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, Reply> {
        self.get(name)
            .ok_or_else(|| Reply::err_msg(Errno::ParamError, format!("{name} is required")))
    }

    pub fn optional_i64(&self, name: &str) -> Result<Option<i64>, Reply> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    Reply::err_msg(
                        Errno::ParamTypeError,
                        format!("{name} must be an integer, got {v:?}"),
                    )
                })
            })
            .transpose()
    }

    pub fn required_i64(&self, name: &str) -> Result<i64, Reply> {
        self.required(name)?;
        self.optional_i64(name)?
            .ok_or_else(|| Reply::err_msg(Errno::ParamError, format!("{name} is required")))
    }

    /// A text parameter of at most `max` characters.
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, Reply> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if v.chars().count() > max => Err(Reply::err_msg(
                Errno::ParamError,
                format!("{name} is longer than {max} characters"),
            )),
            Some(v) => {
                // Descriptions may span lines; versions, accounts and paths may not.
                let multiline = matches!(name, "user_desc" | "content" | "remark");
                smartpkg_core::text::check(name, v, multiline)
                    .map_err(|why| Reply::err_msg(Errno::ParamError, why))?;
                Ok(Some(v.clone()))
            }
        }
    }

    /// The SHA-256 of `access_token`, the only form in which tokens are looked up.
    pub fn token_hash(&self) -> Result<String, Reply> {
        self.get("access_token")
            .map(|t| secrets::sha256_hex(t.trim()))
            .ok_or(Reply::Gateway(GatewayError::token_invalid()))
    }

    /// Resolves `access_token` to the mini program it grants, or the gateway's error.
    pub async fn app_grant(&self, state: &AppState) -> Result<Grant, Reply> {
        let grant = state.store.resolve_app_token(self.token_hash()?).await?;
        check_grant(grant)
    }

    /// As [`Params::app_grant`], for a call that writes: it counts against the mini
    /// program's and its third party's write limits.
    pub async fn app_write_grant(&self, state: &AppState) -> Result<Grant, Reply> {
        let grant = self.app_grant(state).await?;
        write_allowed(state, Scope::App, grant.app_id)?;
        write_allowed(state, Scope::Tp, grant.tp_id)?;
        Ok(grant)
    }
}

/// Whose write budget a call draws from.
#[derive(Clone, Copy)]
pub enum Scope {
    App,
    Tp,
}

/// Takes one write from the budget of `key` (an app id or a TP id), or answers 50029.
pub fn write_allowed(state: &AppState, scope: Scope, key: i64) -> Result<(), Reply> {
    let s = &state.settings;
    let (buckets, label, whose, per_minute) = match scope {
        Scope::App => (
            &state.write_limits.per_app,
            "app",
            "this mini program",
            s.app_writes_per_minute,
        ),
        Scope::Tp => (
            &state.write_limits.per_tp,
            "tp",
            "this third party",
            s.tp_writes_per_minute,
        ),
    };
    buckets
        .take(key)
        .map_err(|wait| call_limit(state, label, whose, per_minute, wait))
}

/// Baidu's call-limit errno, saying which limit and when to retry; counted in the metrics.
pub fn call_limit(
    state: &AppState,
    scope: &'static str,
    whose: &str,
    per_minute: u32,
    wait: std::time::Duration,
) -> Reply {
    state
        .metrics
        .counter("smartpkg_rate_limited_total", &[("scope", scope)])
        .increment(1);
    Reply::err_msg(
        Errno::CallLimit,
        format!(
            "{whose} may make {per_minute} write calls per minute; retry in {} s",
            wait.as_secs().max(1)
        ),
    )
}

/// An unknown token is 110, an expired one 111.
pub fn check_grant(grant: Option<Grant>) -> Result<Grant, Reply> {
    let grant = grant.ok_or(Reply::Gateway(GatewayError::token_invalid()))?;
    if grant.expires_at_ms <= clock::now_ms() {
        return Err(Reply::Gateway(GatewayError::token_expired()));
    }
    Ok(grant)
}
