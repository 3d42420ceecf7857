//! The owner's consent page, in both dialects: Baidu's `/mappconsole/tp/authorization` and
//! WeChat's `/cgi-bin/componentloginpage`. One page, one set of rules (the same throttles,
//! CSRF token, headers and owner credentials); a [`Flavor`] says only what differs on the
//! wire: the names of the query's fields, how the third party is named, and which parameter
//! carries the code back.
//!
//! The owner identifies themselves with the mini program's id (numeric, or its wx appid) and
//! the owner password (see [`crate::owner`]): a credential no API returns. The `app_key`,
//! which third parties can read, authorizes nothing. See docs/authorization.md.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use reqwest::Url;
use serde::Deserialize;
use smartpkg_core::dialect::Dialect;
use smartpkg_core::ids::AppId;
use smartpkg_store::{AppQuery, Approval, AuthRefusal, CodeKind, Role, Tp};

use crate::application::{issued_code, AUTH_CODE_TTL_S};
use crate::owner;
use crate::state::AppState;
use crate::{clock, secrets};

/// What the page's wire looks like in one dialect.
#[derive(Debug, Clone, Copy)]
pub struct Flavor {
    pub dialect: Dialect,
    /// The page's own path: where its forms post, and where a sign-in comes back to.
    pub path: &'static str,
    /// The query field naming the third party (`client_id`, `component_appid`).
    pub tp_param: &'static str,
    /// The redirect's parameter carrying the authorization code.
    pub code_param: &'static str,
}

pub const BAIDU: Flavor = Flavor {
    dialect: Dialect::Baidu,
    path: "/mappconsole/tp/authorization",
    tp_param: "client_id",
    code_param: "authorization_code",
};

pub const WECHAT: Flavor = Flavor {
    dialect: Dialect::Wechat,
    path: "/cgi-bin/componentloginpage",
    tp_param: "component_appid",
    code_param: "auth_code",
};

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
    action: &'static str,
    tp_param: &'static str,
    auth_type: String,
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
    /// The third party: Baidu's `client_id` or WeChat's `component_appid`.
    #[serde(default, alias = "component_appid")]
    client_id: String,
    /// WeChat's kinds of account to authorize: 1 official accounts, 2 mini programs, 3 both.
    #[serde(default)]
    auth_type: String,
    /// WeChat's mini program to preselect (its wx appid).
    #[serde(default)]
    biz_appid: String,
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
async fn check(state: &AppState, f: Flavor, q: &AuthQuery) -> Result<(Tp, Url), Response> {
    let name = q.client_id.trim().to_string();
    let found = match f.dialect {
        Dialect::Baidu => state.store.get_tp_by_client_id(name).await,
        Dialect::Wechat => state.store.get_tp_by_component_appid(name).await,
    };
    let tp = found.map_err(unavailable)?.ok_or_else(|| {
        refuse(&format!(
            "未知的第三方平台（{0} 不存在）。 Unknown third party: no platform has this {0}.",
            f.tp_param
        ))
    })?;
    // This platform serves mini programs only: a request for official accounts alone (1)
    // cannot be consented to here.
    if f.dialect == Dialect::Wechat && !matches!(q.auth_type.trim(), "" | "2" | "3") {
        return Err(refuse(
            "此平台只有小程序（auth_type 应为 2 或 3）。 This platform has mini programs only: auth_type must be 2 or 3.",
        ));
    }
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
#[allow(clippy::too_many_arguments)]
async fn form(
    state: &AppState,
    f: Flavor,
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
    let mut here = form_urlencoded::Serializer::new(String::new());
    here.append_pair(f.tp_param, q.client_id.trim())
        .append_pair("pre_auth_code", q.pre_auth_code.trim())
        .append_pair("redirect_uri", q.redirect_uri.trim());
    if !q.auth_type.trim().is_empty() {
        here.append_pair("auth_type", q.auth_type.trim());
    }
    let here = here.finish();
    let next: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", &format!("{}?{here}", f.path))
        .finish();
    // WeChat's biz_appid preselects the mini program in the password form.
    let app_id = if q.app_id.is_empty() {
        q.biz_appid.clone()
    } else {
        q.app_id.clone()
    };
    render(
        status,
        &AuthorizePage {
            lang: "zh",
            title: TITLE,
            action: f.path,
            tp_param: f.tp_param,
            auth_type: q.auth_type.trim().to_string(),
            refusal: String::new(),
            error: error.unwrap_or_default().to_string(),
            tp_name: tp.name.clone(),
            client_id: q.client_id.clone(),
            pre_auth_code: q.pre_auth_code.clone(),
            redirect_uri: q.redirect_uri.clone(),
            csrf: csrf.to_string(),
            app_id,
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
    f: Flavor,
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<AuthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A malformed query gets the page's refusal, with the page's headers, not a bare text.
    let Ok(Query(q)) = q else {
        return refuse("参数无效。 The request's parameters are malformed.");
    };
    let tp = match check(&state, f, &q).await {
        Ok((tp, _)) => tp,
        Err(r) => return r,
    };
    let key = match csrf_key(&state).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let csrf = owner::csrf_token(&key, q.pre_auth_code.trim());
    form(&state, f, &headers, StatusCode::OK, &tp, &q, &csrf, None).await
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
    f: Flavor,
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    q: Result<Form<AuthQuery>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(q)) = q else {
        return refuse("参数无效。 The form is malformed.");
    };
    let (tp, mut redirect) = match check(&state, f, &q).await {
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
        async move { form(state, f, headers, status, tp, q, csrf, Some(msg)).await }
    };
    // The mini program by its numeric id, or by its wx appid.
    let given = q.app_id.trim();
    let app_id = match given.parse::<i64>() {
        Ok(id) => id,
        Err(_) if given.starts_with("wx") && given.len() == 18 => {
            match state.store.get_app_by_wx_appid(given.to_string()).await {
                Ok(Some(app)) => app.app_id.get(),
                Ok(None) => return again(StatusCode::UNAUTHORIZED, WRONG).await,
                Err(e) => return unavailable(e),
            }
        }
        Err(_) => return again(StatusCode::UNAUTHORIZED, WRONG).await,
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
                .append_pair(f.code_param, &code)
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
