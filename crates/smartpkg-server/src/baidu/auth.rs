//! Authorizing a mini program to a third party (spec §4): pre-auth codes, the code-for-token
//! exchange and refresh, app info, and codes for already-authorized apps. The owner's
//! consent page between them is `crate::consent`, shared with the WeChat dialect.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use smartpkg_core::ids::{AppId, TpId};
use smartpkg_store::CodeKind;
use smartpkg_types::{
    call, AnnualReview, AppInfo, AppTokens, AuditInfo, AuthScope, AuthorizationCode, Category,
    Errno, ModifyCount, OAuthError, ParentCategory, PreAuthCode, Qualification,
};

use super::{Answer, Call, Data, Params, Reply};
use crate::state::AppState;
use crate::{clock, secrets};

pub const PRE_AUTH_CODE_TTL_S: i64 = 1200;
pub use crate::application::{issued_code, AUTH_CODE_TTL_S};

pub async fn createpreauthcode(
    state: AppState,
    call: Call<call::CreatePreAuthCode>,
) -> Answer<PreAuthCode> {
    let tp_id = call.tp(&state).await?;
    let code = crate::application::pre_auth_code(&state, TpId(tp_id), PRE_AUTH_CODE_TTL_S).await?;
    Ok(Data(PreAuthCode {
        pre_auth_code: code,
        expires_in: PRE_AUTH_CODE_TTL_S,
    }))
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
                .refresh(
                    TpId(tp_id),
                    None,
                    secrets::sha256_hex(old.trim()),
                    pair,
                    now,
                )
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
