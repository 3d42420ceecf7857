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
use std::marker::PhantomData;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use smartpkg_store::{Grant, StoreError};
use smartpkg_types::{Endpoint, Envelope, Errno, GatewayError, NoData};

use crate::state::AppState;
use crate::{clock, params, secrets};

pub fn routes() -> Router<AppState> {
    use smartpkg_types::call::*;
    // Real clients use GET or POST as they like (the doc's curl examples POST with everything
    // in the query), so every route answers both. Each typed route takes its path, parameters
    // and data from the call's declaration in `smartpkg_types::call`.
    let r = Router::new();
    let r = at::<Upload, _, _>(r, package::upload);
    let r = at::<SubmitAudit, _, _>(r, package::submitaudit);
    let r = at::<Release, _, _>(r, package::release);
    let r = at::<Rollback, _, _>(r, package::rollback);
    let r = at::<Withdraw, _, _>(r, package::withdraw);
    let r = at::<GetPackages, _, _>(r, package::get);
    let r = at::<GetDetail, _, _>(r, package::getdetail);
    let r = at::<AuditQuota, _, _>(r, package::auditquota);
    let r = at::<GetTrial, _, _>(r, package::gettrial);
    // smartpkg's extensions, in the same wire style (docs/runtime.md).
    let r = at::<GrayRelease, _, _>(r, package::grayrelease);
    let r = at::<RevertGrayRelease, _, _>(r, package::revertgrayrelease);
    let r = at::<ResumeGrayRelease, _, _>(r, package::resumegrayrelease);
    let r = at::<RollbackTo, _, _>(r, package::rollbackto);
    let r = at::<GetHistory, _, _>(r, package::gethistory);
    let r = at::<Pause, _, _>(r, app::pause);
    let r = at::<Resume, _, _>(r, app::resume);
    let r = at::<ModifyDomain, _, _>(r, app::modifydomain);
    let r = at::<ModifyWebviewDomain, _, _>(r, app::modifywebviewdomain);
    let r = at::<GetSupportVersion, _, _>(r, app::getsupportversion);
    let r = at::<SetSupportVersion, _, _>(r, app::setsupportversion);
    let r = at::<TpModifyDomain, _, _>(r, app::tp_modifydomain);
    let r = at::<TpModifyWebviewDomain, _, _>(r, app::tp_modifywebviewdomain);
    let r = at::<TpToken, _, _>(r, tp::token);
    let r = at::<CreatePreAuthCode, _, _>(r, auth::createpreauthcode);
    let r = at::<AppInfo, _, _>(r, auth::app_info);
    let r = at::<RetrieveAuthorizationCode, _, _>(r, auth::retrieve_authorizationcode);
    let r = at::<GetTemplateDraftList, _, _>(r, tp::gettemplatedraftlist);
    let r = at::<AddToTemplate, _, _>(r, tp::addtotemplate);
    let r = at::<GetTemplateList, _, _>(r, tp::gettemplatelist);
    let r = at::<DelTemplate, _, _>(r, tp::deltemplate);
    // Calls that answer outside the envelope: the OAuth exchange answers unwrapped, the QR
    // code a PNG image.
    r.route(OAuthToken::PATH, any(auth::oauth_token))
        .route(QrCode::PATH, any(qrcode::qrcode))
        .route(
            crate::consent::BAIDU.path,
            axum::routing::get(|s, h, q| crate::consent::show(crate::consent::BAIDU, s, h, q))
                .post(|s, p, h, f| crate::consent::submit(crate::consent::BAIDU, s, p, h, f)),
        )
}

/// Routes `E`'s path to `handler`, which takes `E`'s parameters and answers `E`'s data: a
/// handler wired to the wrong declaration does not compile.
fn at<E, H, Fut>(router: Router<AppState>, handler: H) -> Router<AppState>
where
    E: Endpoint + Send + 'static,
    H: Fn(AppState, Call<E>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer<E::Data>> + Send + 'static,
{
    router.route(
        E::PATH,
        any(move |State(state): State<AppState>, call: Call<E>| handler(state, call)),
    )
}

/// One call's request: its merged parameters, decoded into `E::Request` by
/// [`Call::request`], and its token, resolved by [`Call::app`] or [`Call::tp`].
pub struct Call<E> {
    pub params: Params,
    endpoint: PhantomData<fn() -> E>,
}

impl<E: Endpoint> FromRequest<AppState> for Call<E> {
    type Rejection = Reply;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Reply> {
        Ok(Call {
            params: Params::from_request(req, state).await?,
            endpoint: PhantomData,
        })
    }
}

impl<E: Endpoint> Call<E> {
    /// The call's parameters, typed. Decoded after the token is checked, so a caller without
    /// a valid token learns nothing about its parameters.
    pub fn request(&self) -> Result<E::Request, Reply> {
        params::decode(&self.params.0).map_err(Reply::from)
    }

    /// The mini program whose token the call carries; a call that writes draws on the mini
    /// program's and its third party's write limits.
    pub async fn app(&self, state: &AppState) -> Result<Grant, Reply> {
        debug_assert_eq!(E::CREDENTIAL, smartpkg_types::Credential::App);
        if E::WRITES {
            self.params.app_write_grant(state).await
        } else {
            self.params.app_grant(state).await
        }
    }

    /// The third party whose token the call carries; a call that writes draws on its write
    /// limit.
    pub async fn tp(&self, state: &AppState) -> Result<i64, Reply> {
        debug_assert_eq!(E::CREDENTIAL, smartpkg_types::Credential::Tp);
        if E::WRITES {
            self.params.tp_write_grant(state).await
        } else {
            self.params.tp_grant(state).await
        }
    }
}

/// A missing field is 40001, a number that is not one 41000 (what the SDKs expect), any
/// other refused value 40001.
impl From<params::FieldError> for Reply {
    fn from(e: params::FieldError) -> Reply {
        let errno = match e {
            params::FieldError::NotInteger { .. } => Errno::ParamTypeError,
            _ => Errno::ParamError,
        };
        Reply::err_msg(errno, e)
    }
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

    /// A single-line text parameter of at most `max` characters ([`checked_text`]).
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, Reply> {
        self.0
            .get(name)
            .map(|v| checked_text(name, v.clone(), max, false))
            .transpose()
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
        write_allowed(state, Scope::App, grant.app_id.get())?;
        write_allowed(state, Scope::Tp, grant.tp_id.get())?;
        Ok(grant)
    }
}

/// A text parameter of at most `max` characters, with no control or invisible characters
/// (descriptions may span lines; versions, accounts and paths may not).
pub fn checked_text(
    name: &str,
    value: String,
    max: usize,
    multiline: bool,
) -> Result<String, Reply> {
    if value.chars().count() > max {
        return Err(Reply::err_msg(
            Errno::ParamError,
            format!("{name} is longer than {max} characters"),
        ));
    }
    smartpkg_core::text::check(name, &value, multiline)
        .map_err(|why| Reply::err_msg(Errno::ParamError, why))?;
    Ok(value)
}

pub use crate::application::Scope;

/// Takes one write from the budget of `key` (an app id or a TP id), or answers 50029.
pub fn write_allowed(state: &AppState, scope: Scope, key: i64) -> Result<(), Reply> {
    Ok(crate::application::take_write(state, scope, key)?)
}

/// An unknown token is 110, an expired one 111.
pub fn check_grant(grant: Option<Grant>) -> Result<Grant, Reply> {
    let grant = grant.ok_or(Reply::Gateway(GatewayError::token_invalid()))?;
    if grant.expires_at_ms <= clock::now_ms() {
        return Err(Reply::Gateway(GatewayError::token_expired()));
    }
    Ok(grant)
}
