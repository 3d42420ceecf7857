//! Authorizing a mini program to a third party (spec §4): pre-auth codes, the owner's
//! authorization page, the code-for-token exchange and refresh, app info, and codes for
//! already-authorized apps.
//!
//! The owner identifies themselves on the page with the mini program's id and its `app_key`
//! (given to the owner when the operator creates the mini program): whoever holds the key
//! owns the program. See docs/authorization.md.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use smartpkg_store::{Approval, AuthRefusal, Tp};
use smartpkg_types::Errno;

use super::{respond, Answer, Params, Reply};
use crate::{clock, secrets, AppState};

pub const PRE_AUTH_CODE_TTL_S: i64 = 1200;
pub const AUTH_CODE_TTL_S: i64 = 3600;

async fn preauth_inner(state: AppState, p: Params) -> Answer {
    let tp_id = p.tp_grant(&state).await?;
    let code = secrets::random_alnum(40);
    let now = clock::now_ms();
    state
        .store
        .create_code(
            "pre_auth",
            secrets::sha256_hex(&code),
            tp_id,
            None,
            now + PRE_AUTH_CODE_TTL_S * 1000,
            now,
        )
        .await?;
    Ok(Reply::data(
        json!({"pre_auth_code": code, "expires_in": PRE_AUTH_CODE_TTL_S}),
    ))
}

pub async fn createpreauthcode(State(state): State<AppState>, p: Params) -> Response {
    respond(preauth_inner(state, p).await)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:34em;margin:3em auto;color:#222}}\
         label{{display:block;margin:.8em 0}}input{{width:100%;padding:.4em}}\
         .error{{color:#b00020}}button{{padding:.5em 2em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    (status, Html(html)).into_response()
}

fn refuse(why: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "无法授权 / Cannot authorize",
        &format!("<p class=\"error\">{}</p>", esc(why)),
    )
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
    app_key: String,
}

/// The checks both showing and submitting the page make: a known TP, a live pre-auth code of
/// it, and a redirect within its registered domain.
async fn check(state: &AppState, q: &AuthQuery) -> Result<(Tp, Url), Response> {
    let internal = |e: smartpkg_store::StoreError| {
        tracing::error!(error = %e, "authorization page: storage failed");
        page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "<p>Please try again later.</p>",
        )
    };
    let tp = state
        .store
        .get_tp_by_client_id(q.client_id.trim().to_string())
        .await
        .map_err(internal)?
        .ok_or_else(|| refuse("未知的第三方平台（client_id 不存在）。 Unknown third party: no platform has this client_id."))?;
    let usable = state
        .store
        .code_usable(
            "pre_auth",
            secrets::sha256_hex(q.pre_auth_code.trim()),
            tp.tp_id,
            clock::now_ms(),
        )
        .await
        .map_err(internal)?;
    if !usable {
        return Err(refuse("授权链接已过期或已使用，请向第三方平台重新获取。 This authorization link has expired or was already used; ask the third party for a new one."));
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

fn form(tp: &Tp, q: &AuthQuery, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<p>第三方平台 <strong>{name}</strong> 请求管理您的小程序的代码包（上传、送审、发布、回滚）。</p>\
         <p>The third party <strong>{name}</strong> asks to manage your mini program's code packages.</p>{err}\
         <form method=\"post\" action=\"/mappconsole/tp/authorization\">\
         <input type=\"hidden\" name=\"client_id\" value=\"{cid}\">\
         <input type=\"hidden\" name=\"pre_auth_code\" value=\"{code}\">\
         <input type=\"hidden\" name=\"redirect_uri\" value=\"{uri}\">\
         <label>小程序 ID / Mini program id <input name=\"app_id\" inputmode=\"numeric\" required value=\"{app_id}\"></label>\
         <label>小程序密钥 / App key <input name=\"app_key\" type=\"password\" required autocomplete=\"off\"></label>\
         <button type=\"submit\">授权 / Authorize</button></form>",
        name = esc(&tp.name),
        cid = esc(&q.client_id),
        code = esc(&q.pre_auth_code),
        uri = esc(&q.redirect_uri),
        app_id = esc(&q.app_id),
    )
}

pub async fn show(State(state): State<AppState>, Query(q): Query<AuthQuery>) -> Response {
    match check(&state, &q).await {
        Ok((tp, _)) => page(
            StatusCode::OK,
            "授权小程序 / Authorize a mini program",
            &form(&tp, &q, None),
        ),
        Err(r) => r,
    }
}

pub async fn submit(State(state): State<AppState>, Form(q): Form<AuthQuery>) -> Response {
    let (tp, mut redirect) = match check(&state, &q).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let again = |msg: &str| {
        page(
            StatusCode::UNAUTHORIZED,
            "授权小程序 / Authorize a mini program",
            &form(&tp, &q, Some(msg)),
        )
    };
    let wrong = "小程序 ID 或密钥不正确。 The mini program id or key is wrong.";
    let Ok(app_id) = q.app_id.trim().parse::<i64>() else {
        return again(wrong);
    };
    let app = match state.store.get_app(app_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return again(wrong),
        Err(e) => {
            tracing::error!(error = %e, "authorization page: storage failed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "<p>Please try again later.</p>",
            );
        }
    };
    if !secrets::constant_time_eq(q.app_key.trim(), &app.app_key) {
        return again(wrong);
    }
    let code = secrets::random_alnum(40);
    let now = clock::now_ms();
    let payload = json!({"authorizationCode": code, "authorizationCodeExpiresIn": AUTH_CODE_TTL_S})
        .to_string();
    let approved = state
        .store
        .approve(
            Approval {
                tp_id: tp.tp_id,
                app_id,
                pre_auth_hash: secrets::sha256_hex(q.pre_auth_code.trim()),
                code_hash: secrets::sha256_hex(&code),
                code_expires_at_ms: now + AUTH_CODE_TTL_S * 1000,
                payload,
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
            (StatusCode::FOUND, [(header::LOCATION, redirect.to_string())]).into_response()
        }
        Ok(Err(AuthRefusal::AppUnknown)) => again(wrong),
        Ok(Err(AuthRefusal::PreAuthCodeInvalid)) => refuse("授权链接已过期或已使用，请向第三方平台重新获取。 This authorization link has expired or was already used; ask the third party for a new one."),
        Err(e) => {
            tracing::error!(error = %e, "authorization page: storage failed");
            page(StatusCode::INTERNAL_SERVER_ERROR, "Error", "<p>Please try again later.</p>")
        }
    }
}

/// `/rest/2.0/oauth/token` answers unwrapped, with OAuth-style errors.
fn oauth_error(error: &str, description: &str) -> Response {
    Json(json!({"error": error, "error_description": description})).into_response()
}

pub async fn oauth_token(State(state): State<AppState>, p: Params) -> Response {
    let tp_id = match p.tp_grant(&state).await {
        Ok(t) => t,
        Err(r) => return r.into_response(),
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
                .exchange_code(tp_id, secrets::sha256_hex(code.trim()), pair, now)
                .await
        }
        Some("app_to_tp_refresh_token") => {
            let Some(old) = p.get("refresh_token") else {
                return oauth_error("invalid_request", "refresh_token is required");
            };
            state
                .store
                .refresh(tp_id, secrets::sha256_hex(old.trim()), pair, now)
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
        Ok(Some(_)) => Json(json!({"access_token": access, "refresh_token": refresh, "expires_in": ttl})).into_response(),
        Ok(None) => oauth_error("invalid_grant", "the code or refresh token is invalid, expired, already used, or not this third party's"),
        Err(e) => {
            tracing::error!(error = %e, "oauth token: storage failed");
            Reply::err(Errno::BUSY).into_response()
        }
    }
}

async fn info_inner(state: AppState, p: Params) -> Answer {
    let grant = p.app_grant(&state).await?;
    let app = state
        .store
        .get_app(grant.app_id)
        .await?
        .ok_or_else(|| Reply::err(Errno::APP_NOT_FOUND))?;
    Ok(Reply::data(json!({
        "app_id": app.app_id,
        "app_key": app.app_key,
        "app_name": app.name,
        "app_desc": "",
        "photo_addr": [],
        "qualification": {"name": "", "type": 0, "status": 0, "adapt_status": 0},
        "name_reject_reason": "",
        "status": if app.name_audited && app.category_audited { 1 } else { 0 },
        "auth_info": [{"scope_name": "smartapp_tp_smtapp_common", "type": 1}],
    })))
}

pub async fn app_info(State(state): State<AppState>, p: Params) -> Response {
    respond(info_inner(state, p).await)
}

async fn retrieve_inner(state: AppState, p: Params) -> Answer {
    let tp_id = p.tp_grant(&state).await?;
    let app_id = p.required_i64("app_id")?;
    let authorized = state
        .store
        .get_app(app_id)
        .await?
        .is_some_and(|a| a.tp_id == Some(tp_id));
    if !authorized {
        return Err(Reply::err(Errno::NO_AUTHORIZATION));
    }
    let code = secrets::random_alnum(40);
    let now = clock::now_ms();
    state
        .store
        .create_code(
            "auth",
            secrets::sha256_hex(&code),
            tp_id,
            Some(app_id),
            now + AUTH_CODE_TTL_S * 1000,
            now,
        )
        .await?;
    Ok(Reply::data(
        json!({"authorization_code": code, "expires_in": AUTH_CODE_TTL_S}),
    ))
}

pub async fn retrieve_authorizationcode(State(state): State<AppState>, p: Params) -> Response {
    respond(retrieve_inner(state, p).await)
}
