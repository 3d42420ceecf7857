//! Authorizing a mini program to a third party (spec §4): pre-auth codes, the owner's
//! authorization page, the code-for-token exchange and refresh, app info, and codes for
//! already-authorized apps.
//!
//! The owner identifies themselves on the page with the mini program's id and the owner
//! password (see [`crate::owner`]): a credential no API returns. The `app_key`, which third
//! parties can read, authorizes nothing. See docs/authorization.md.

use smartpkg_core::ids::{AppId, TpId};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form, Json};
use reqwest::Url;
use serde::Deserialize;
use smartpkg_store::{AppQuery, Approval, AuthRefusal, CodeKind, Role, Tp};
use smartpkg_types::{
    call, AnnualReview, AppInfo, AppTokens, AuditInfo, AuthScope, AuthorizationCode, Category,
    Errno, ModifyCount, OAuthError, ParentCategory, PreAuthCode, Qualification,
};

use super::{Answer, Call, Data, Params, Reply};
use crate::owner;
use crate::state::AppState;
use crate::{clock, secrets};

pub const PRE_AUTH_CODE_TTL_S: i64 = 1200;
pub use crate::application::{issued_code, AUTH_CODE_TTL_S};

pub async fn createpreauthcode(
    state: AppState,
    call: Call<call::CreatePreAuthCode>,
) -> Answer<PreAuthCode> {
    let tp_id = call.tp(&state).await?;
    let code = secrets::random_alnum(40);
    let now = clock::now_ms();
    state
        .store
        .create_code(
            CodeKind::PreAuth,
            secrets::sha256_hex(&code),
            TpId(tp_id),
            None,
            now + PRE_AUTH_CODE_TTL_S * 1000,
            now,
        )
        .await?;
    Ok(Data(PreAuthCode {
        pre_auth_code: code,
        expires_in: PRE_AUTH_CODE_TTL_S,
    }))
}

/// Headers of every authorization page: never framed (clickjacking), never cached, never
/// leaking the pre-auth code through a Referer, never sniffed into another type.
const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// The authorization page, on the console's templates and stylesheet: either a refusal, or
/// the form (with, for a signed-in owner, the mini programs it may authorize in one click).
#[derive(askama::Template, Default)]
#[template(path = "console/authorize.html")]
struct AuthorizePage {
    lang: &'static str,
    title: &'static str,
    refusal: String,
    error: String,
    tp_name: String,
    client_id: String,
    pre_auth_code: String,
    redirect_uri: String,
    csrf: String,
    app_id: String,
    signed_in: String,
    owned: Vec<(i64, String)>,
    login_link: String,
}

fn render(status: StatusCode, p: &AuthorizePage) -> Response {
    use askama::Template;
    match p.render() {
        Ok(html) => (status, PAGE_HEADERS, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "authorization page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                PAGE_HEADERS,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

fn message(status: StatusCode, title: &'static str, text: &str) -> Response {
    render(
        status,
        &AuthorizePage {
            lang: "zh",
            title,
            refusal: text.to_string(),
            ..AuthorizePage::default()
        },
    )
}

fn refuse(why: &str) -> Response {
    message(StatusCode::BAD_REQUEST, "无法授权 / Cannot authorize", why)
}

#[derive(Deserialize, Default)]
pub struct AuthQuery {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    pre_auth_code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    owner_password: String,
    #[serde(default)]
    csrf: String,
    /// "1": authorize as the signed-in owner account instead of with a password.
    #[serde(default)]
    use_session: String,
}

/// The checks both showing and submitting the page make: a known TP, a live pre-auth code of
/// it, and a redirect within its registered domain.
async fn check(state: &AppState, q: &AuthQuery) -> Result<(Tp, Url), Response> {
    let tp = state
        .store
        .get_tp_by_client_id(q.client_id.trim().to_string())
        .await
        .map_err(unavailable)?
        .ok_or_else(|| refuse("未知的第三方平台（client_id 不存在）。 Unknown third party: no platform has this client_id."))?;
    let usable = state
        .store
        .code_usable(
            CodeKind::PreAuth,
            secrets::sha256_hex(q.pre_auth_code.trim()),
            tp.tp_id,
            clock::now_ms(),
        )
        .await
        .map_err(unavailable)?;
    if !usable {
        return Err(refuse(LINK_USED));
    }
    let url = Url::parse(q.redirect_uri.trim()).map_err(|_| {
        refuse("redirect_uri 不是有效的网址。 The redirect_uri is not a valid URL.")
    })?;
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let domain = tp.redirect_domain.as_str();
    let inside = !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")));
    if !matches!(url.scheme(), "http" | "https") || !inside {
        let registered = if domain.is_empty() {
            "(none registered)".to_string()
        } else {
            domain.to_string()
        };
        return Err(refuse(&format!(
            "redirect_uri 不在第三方平台登记的域名内。 The redirect_uri is outside the third party's registered domain {registered}."
        )));
    }
    Ok((tp, url))
}

const TITLE: &str = "授权小程序 / Authorize a mini program";
const LINK_USED: &str = "授权链接已过期或已使用，请向第三方平台重新获取。 This authorization link has expired or was already used; ask the third party for a new one.";
const NOT_YOURS: &str = "您的所有者账号没有这个小程序，请重新登录或使用所有者密码。 Your owner account does not own this mini program; sign in again or use the owner password.";
const WRONG: &str =
    "小程序 ID 或所有者密码不正确。 The mini program id or owner password is wrong.";

/// The form for `q`, with the signed-in owner's mini programs when there is one.
async fn form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    tp: &Tp,
    q: &AuthQuery,
    csrf: &str,
    error: Option<&str>,
) -> Response {
    let (signed_in, owned) = match owner_session(state, headers).await {
        Some(account) => {
            let query = AppQuery {
                owned_by: Some(account.account_id),
                ..AppQuery::default()
            };
            let owned = match state.store.search_apps(query, 0, 100).await {
                Ok((rows, _)) => rows
                    .into_iter()
                    .map(|r| (r.app.app_id.get(), r.app.name))
                    .collect(),
                Err(e) => return unavailable(e),
            };
            (account.name, owned)
        }
        None => (String::new(), vec![]),
    };
    let here: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", q.client_id.trim())
        .append_pair("pre_auth_code", q.pre_auth_code.trim())
        .append_pair("redirect_uri", q.redirect_uri.trim())
        .finish();
    let next: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", &format!("/mappconsole/tp/authorization?{here}"))
        .finish();
    render(
        status,
        &AuthorizePage {
            lang: "zh",
            title: TITLE,
            refusal: String::new(),
            error: error.unwrap_or_default().to_string(),
            tp_name: tp.name.clone(),
            client_id: q.client_id.clone(),
            pre_auth_code: q.pre_auth_code.clone(),
            redirect_uri: q.redirect_uri.clone(),
            csrf: csrf.to_string(),
            app_id: q.app_id.clone(),
            signed_in,
            owned,
            login_link: format!("/console/login?{next}"),
        },
    )
}

/// The signed-in console account, when it is an owner's.
async fn owner_session(state: &AppState, headers: &HeaderMap) -> Option<smartpkg_store::Account> {
    match crate::web::session_of(state, headers).await {
        Ok(Some((s, _))) if s.account.role == Role::Owner => Some(s.account),
        _ => None,
    }
}

fn unavailable(e: smartpkg_store::StoreError) -> Response {
    tracing::error!(error = %e, "authorization page: storage failed");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Error",
        "请稍后再试。 Please try again later.",
    )
}

async fn csrf_key(state: &AppState) -> Result<String, Response> {
    state
        .store
        .server_secret("authorization_csrf")
        .await
        .map_err(unavailable)
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<AuthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A malformed query gets the page's refusal, with the page's headers, not a bare text.
    let Ok(Query(q)) = q else {
        return refuse("参数无效。 The request's parameters are malformed.");
    };
    let tp = match check(&state, &q).await {
        Ok((tp, _)) => tp,
        Err(r) => return r,
    };
    let key = match csrf_key(&state).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let csrf = owner::csrf_token(&key, q.pre_auth_code.trim());
    form(&state, &headers, StatusCode::OK, &tp, &q, &csrf, None).await
}

fn throttled(left: std::time::Duration) -> Response {
    let mins = left.as_secs().div_ceil(60).max(1);
    message(
        StatusCode::TOO_MANY_REQUESTS,
        TITLE,
        &format!("尝试次数过多，请 {mins} 分钟后再试。 Too many wrong attempts; try again in {mins} minute(s)."),
    )
}

pub async fn submit(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    q: Result<Form<AuthQuery>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(q)) = q else {
        return refuse("参数无效。 The form is malformed.");
    };
    let (tp, mut redirect) = match check(&state, &q).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let key = match csrf_key(&state).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let pre_auth_code = q.pre_auth_code.trim();
    if !owner::csrf_valid(&key, pre_auth_code, q.csrf.trim()) {
        return message(
            StatusCode::FORBIDDEN,
            "无法授权 / Cannot authorize",
            "表单已失效，请重新打开授权链接。 The form is stale or was not sent from this page; open the authorization link again.",
        );
    }
    let csrf = owner::csrf_token(&key, pre_auth_code);
    let again = |status: StatusCode, msg: &'static str| {
        let (state, headers, tp, q, csrf) = (&state, &headers, &tp, &q, &csrf);
        async move { form(state, headers, status, tp, q, csrf, Some(msg)).await }
    };
    let Ok(app_id) = q.app_id.trim().parse::<i64>() else {
        return again(StatusCode::UNAUTHORIZED, WRONG).await;
    };
    if q.use_session == "1" {
        // A signed-in owner authorizes one of its own mini programs: its session is the
        // credential (no password), and the form's CSRF token was checked above.
        let owns = match owner_session(&state, &headers).await {
            Some(account) => match state
                .store
                .owns_app(account.account_id, AppId(app_id))
                .await
            {
                Ok(owns) => owns,
                Err(e) => return unavailable(e),
            },
            None => false,
        };
        if !owns {
            return again(StatusCode::UNAUTHORIZED, NOT_YOURS).await;
        }
    } else {
        let client = peer.map(|Extension(ConnectInfo(a))| a.ip());
        let check = crate::application::check_owner_credential(
            &state,
            AppId(app_id),
            q.owner_password.clone(),
            client,
        )
        .await;
        match check {
            Ok(crate::application::OwnerCheck::Accepted) => {}
            Ok(crate::application::OwnerCheck::Wrong) => {
                return again(StatusCode::UNAUTHORIZED, WRONG).await
            }
            Ok(crate::application::OwnerCheck::Locked(left)) => return throttled(left),
            Err(crate::application::OpError::Store(e)) => return unavailable(e),
            Err(e) => {
                tracing::error!(error = %e, "authorization page: owner check failed");
                return message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    "请稍后再试。 Please try again later.",
                );
            }
        }
    }
    let code = secrets::random_alnum(40);
    let now = clock::now_ms();
    let approved = state
        .store
        .approve(
            Approval {
                pre_auth_hash: secrets::sha256_hex(pre_auth_code),
                code: issued_code(tp.tp_id, AppId(app_id), &code, now),
            },
            now,
        )
        .await;
    match approved {
        Ok(Ok(())) => {
            state.jobs_ready.notify_one();
            redirect
                .query_pairs_mut()
                .append_pair("authorization_code", &code)
                .append_pair("expires_in", &AUTH_CODE_TTL_S.to_string());
            (
                StatusCode::FOUND,
                PAGE_HEADERS,
                [(header::LOCATION, redirect.to_string())],
            )
                .into_response()
        }
        Ok(Err(AuthRefusal::AppUnknown)) => again(StatusCode::UNAUTHORIZED, WRONG).await,
        Ok(Err(AuthRefusal::PreAuthCodeInvalid)) => refuse(LINK_USED),
        Err(e) => unavailable(e),
    }
}

/// `/rest/2.0/oauth/token` answers unwrapped, with OAuth-style errors.
fn oauth_error(error: &str, description: &str) -> Response {
    Json(OAuthError {
        error: error.into(),
        error_description: description.into(),
    })
    .into_response()
}

/// A refusal of `oauth/token` before any grant is looked at (a bad TP token, a rate limit, a
/// busy store): the gateway's or the envelope's shape, which Baidu's Go SDK reads, with the
/// OAuth fields beside it, which its PHP SDK reads instead — so that both see a failure.
fn oauth_refusal(r: Reply) -> Response {
    let (mut body, error, description) = match r {
        Reply::Gateway(g) => (
            serde_json::json!({"error_code": g.error_code, "error_msg": g.error_msg}),
            "invalid_client",
            g.error_msg,
        ),
        Reply::Err(errno, msg) => (
            serde_json::json!({"errno": errno.code(), "msg": msg}),
            if errno.is_transient() {
                "temporarily_unavailable"
            } else {
                "invalid_request"
            },
            msg,
        ),
        other => return other.into_response(),
    };
    body["error"] = error.into();
    body["error_description"] = description.into();
    Json(body).into_response()
}

pub async fn oauth_token(State(state): State<AppState>, p: Params) -> Response {
    let tp_id = match p.tp_write_grant(&state).await {
        Ok(t) => t,
        Err(r) => return oauth_refusal(r),
    };
    let now = clock::now_ms();
    let ttl = state.settings.app_token_ttl_s as i64;
    let (access, refresh, pair) = state.new_token_pair(now);
    let result = match p.get("grant_type") {
        Some("app_to_tp_authorization_code") => {
            let Some(code) = p.get("code") else {
                return oauth_error("invalid_request", "code is required");
            };
            state
                .store
                .exchange_code(TpId(tp_id), secrets::sha256_hex(code.trim()), pair, now)
                .await
        }
        Some("app_to_tp_refresh_token") => {
            let Some(old) = p.get("refresh_token") else {
                return oauth_error("invalid_request", "refresh_token is required");
            };
            state
                .store
                .refresh(TpId(tp_id), secrets::sha256_hex(old.trim()), pair, now)
                .await
        }
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("grant_type {other} is not supported"),
            )
        }
        None => return oauth_error("invalid_request", "grant_type is required"),
    };
    match result {
        Ok(Some(_)) => Json(AppTokens {
            access_token: access,
            refresh_token: refresh,
            expires_in: ttl,
        })
        .into_response(),
        Ok(None) => oauth_error("invalid_grant", "the code or refresh token is invalid, expired, already used, or not this third party's"),
        Err(e) => {
            tracing::error!(error = %e, "oauth token: storage failed");
            oauth_refusal(Reply::err(Errno::Busy))
        }
    }
}

/// `app/info`'s data, field for field and type for type as spec §4 item 7 gives it: Baidu's Go
/// SDK decodes into fixed types and fails the whole call on one mismatch.
pub fn app_info_data(app: &smartpkg_store::App) -> AppInfo {
    // Our gates map onto Baidu's review states: a name or category not yet audited shows as
    // auditing (app status 2, category audit_status 1, the name in audit_info).
    let audited = app.name_audited && app.category_audited;
    let certified = app.authenticity_certified;
    AppInfo {
        app_id: app.app_id.get(),
        app_key: app.app_key.clone(),
        app_name: app.name.clone(),
        app_desc: String::new(),
        photo_addr: String::new(),
        min_swan_version: String::new(),
        status: if audited { 1 } else { 2 },
        web_status: 0,
        qualification: Qualification {
            name: String::new(),
            kind: 2,
            satus: if certified { 1 } else { 2 },
            ad_type: 0,
            ad_status: if certified { 1 } else { 3 },
        },
        category: vec![Category {
            category_id: 0,
            category_name: String::new(),
            category_desc: String::new(),
            audit_status: if app.category_audited { 2 } else { 1 },
            reason: String::new(),
            parent: ParentCategory {
                category_id: 0,
                category_name: String::new(),
                category_desc: String::new(),
            },
        }],
        auth_info: vec![AuthScope {
            scope_name: "smartapp_tp_smtapp_common".into(),
            kind: 0,
        }],
        audit_info: (!app.name_audited).then(|| AuditInfo {
            audit_app_name: app.name.clone(),
            audit_app_name_status: 1,
            audit_app_name_reason: String::new(),
            audit_app_desc: String::new(),
            audit_app_desc_status: 0,
            audit_app_desc_reason: String::new(),
            audit_photo_addr: String::new(),
            audit_photo_addr_status: 0,
            audit_photo_addr_reason: String::new(),
        }),
        modify_count: ModifyCount::default(),
        annual_review_info: AnnualReview {
            annual_review_status: 1,
            annual_review_overdue_time: 0,
        },
        app_offline_info: vec![],
    }
}

pub async fn app_info(state: AppState, call: Call<call::AppInfo>) -> Answer<AppInfo> {
    let grant = call.app(&state).await?;
    let app = state
        .store
        .get_app(grant.app_id)
        .await?
        .ok_or_else(|| Reply::err(Errno::AppNotFound))?;
    let settings = state
        .store
        .runtime_settings(grant.app_id)
        .await?
        .unwrap_or_default();
    let mut info = app_info_data(&app);
    // Paused by its third party (`app/pause`): status 4, as the real platform shows it.
    if settings.paused {
        info.status = 4;
    }
    info.min_swan_version = settings.min_runtime_version;
    Ok(Data(info))
}

pub async fn retrieve_authorizationcode(
    state: AppState,
    call: Call<call::RetrieveAuthorizationCode>,
) -> Answer<AuthorizationCode> {
    let tp_id = call.tp(&state).await?;
    let app_id = call.request()?.app_id;
    let authorized = state
        .store
        .get_app(AppId(app_id))
        .await?
        .is_some_and(|a| a.tp_id == Some(TpId(tp_id)));
    if !authorized {
        return Err(Reply::err(Errno::NoAuthorization));
    }
    let code = secrets::random_alnum(40);
    let now = clock::now_ms();
    state
        .store
        .create_code(
            CodeKind::Auth,
            secrets::sha256_hex(&code),
            TpId(tp_id),
            Some(AppId(app_id)),
            now + AUTH_CODE_TTL_S * 1000,
            now,
        )
        .await?;
    Ok(Data(AuthorizationCode {
        authorization_code: code,
        expires_in: AUTH_CODE_TTL_S,
    }))
}
