//! Authorization in the WeChat dialect (spec §3): the component token from a ticket, pre-auth
//! codes, the owner's consent page, the code-for-token exchange, authorizer token refresh,
//! and the authorizer's information.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use smartpkg_core::ids::TpId;
use smartpkg_store::{App, Tp};
use smartpkg_types::wechat::{
    AuthorizationInfo, AuthorizerInfo, AuthorizerInfoAnswer, AuthorizerInfoRequest,
    AuthorizerScopes, AuthorizerToken, AuthorizerTokenRequest, ComponentToken,
    ComponentTokenRequest, Errcode, FuncInfo, FuncScope, MiniProgramInfo, PreAuthCode,
    PreAuthCodeRequest, QueryAuth, QueryAuthRequest, TypeInfo, CODE_MANAGEMENT,
};

use super::{Answer, Fail, Reply, Wx};
use crate::consent::{self, AuthQuery};
use crate::state::AppState;
use crate::{application, clock, secrets};

/// WeChat's pre-auth codes live 30 minutes (older docs: 10).
pub const PRE_AUTH_CODE_TTL_S: i64 = 1800;

/// What every authorized mini program may do through a third party here: code management.
fn func_info() -> Vec<FuncInfo> {
    vec![FuncInfo {
        funcscope_category: FuncScope {
            id: CODE_MANAGEMENT,
        },
    }]
}

/// The body's `component_appid` must be the component the token belongs to (40013).
async fn own_component(state: &AppState, tp_id: TpId, given: &str) -> Result<Tp, Fail> {
    let tp = state
        .store
        .get_tp(tp_id)
        .await?
        .ok_or_else(|| Fail::new(Errcode::InvalidCredential))?;
    if tp.wechat.component_appid != given.trim() {
        return Err(Fail::detail(
            Errcode::InvalidAppid,
            "component_appid is not the component this token belongs to",
        ));
    }
    Ok(tp)
}

/// A mini program by its wx appid (40013 when there is none).
async fn authorizer_app(state: &AppState, wx_appid: &str) -> Result<App, Fail> {
    let wx_appid = wx_appid.trim();
    if wx_appid.is_empty() || wx_appid.len() > 64 {
        return Err(Fail::detail(Errcode::InvalidAppid, "authorizer_appid"));
    }
    state
        .store
        .get_app_by_wx_appid(wx_appid.to_string())
        .await?
        .ok_or_else(|| Fail::detail(Errcode::InvalidAppid, "no mini program has this appid"))
}

pub async fn component_token(State(state): State<AppState>, wx: Wx) -> Reply<ComponentToken> {
    let req: ComponentTokenRequest = wx.json()?;
    let tp = state
        .store
        .get_tp_by_component_appid(req.component_appid.trim().to_string())
        .await?
        .ok_or_else(|| Fail::new(Errcode::InvalidAppid))?;
    // No appsecret issued yet, or another one: 40125 either way, compared in constant time.
    let stored = state.store.component_secret_hash(tp.tp_id).await?;
    let given = secrets::sha256_hex(req.component_appsecret.trim());
    if !stored.is_some_and(|s| secrets::constant_time_eq(&s, &given)) {
        return Err(Fail::new(Errcode::InvalidAppsecret));
    }
    let ttl = state.settings.component_token_ttl_s;
    let token =
        match application::tp_token_for_ticket(&state, tp.tp_id, &req.component_verify_ticket, ttl)
            .await?
        {
            application::TicketTrade::Token(t) => t,
            application::TicketTrade::Expired => return Err(Fail::new(Errcode::TicketExpired)),
            application::TicketTrade::Unknown => return Err(Fail::new(Errcode::TicketInvalid)),
        };
    Ok(Answer(ComponentToken {
        component_access_token: token,
        expires_in: ttl as i64,
    }))
}

pub async fn create_preauthcode(State(state): State<AppState>, wx: Wx) -> Reply<PreAuthCode> {
    let tp_id = wx.component(&state, true).await?;
    let req: PreAuthCodeRequest = wx.json()?;
    own_component(&state, tp_id, &req.component_appid).await?;
    let code = application::pre_auth_code(&state, tp_id, PRE_AUTH_CODE_TTL_S).await?;
    Ok(Answer(PreAuthCode {
        pre_auth_code: code,
        expires_in: PRE_AUTH_CODE_TTL_S,
    }))
}

pub async fn query_auth(State(state): State<AppState>, wx: Wx) -> Reply<QueryAuth> {
    let tp_id = wx.component(&state, true).await?;
    let req: QueryAuthRequest = wx.json()?;
    own_component(&state, tp_id, &req.component_appid).await?;
    let now = clock::now_ms();
    let (access, refresh, pair) = state.new_token_pair(now);
    let code_hash = secrets::sha256_hex(req.authorization_code.trim());
    // A used code presented again revokes what it bought, as on Baidu's exchange.
    let app_id = state
        .store
        .exchange_code(tp_id, code_hash, pair, now)
        .await?
        .ok_or_else(|| Fail::new(Errcode::AuthCodeInvalid))?;
    let app = state
        .store
        .get_app(app_id)
        .await?
        .ok_or_else(|| Fail::new(Errcode::AuthCodeInvalid))?;
    Ok(Answer(QueryAuth {
        authorization_info: AuthorizationInfo {
            authorizer_appid: app.wx_appid,
            authorizer_access_token: access,
            expires_in: state.settings.app_token_ttl_s as i64,
            authorizer_refresh_token: refresh,
            func_info: func_info(),
        },
    }))
}

pub async fn authorizer_token(State(state): State<AppState>, wx: Wx) -> Reply<AuthorizerToken> {
    let tp_id = wx.component(&state, true).await?;
    let req: AuthorizerTokenRequest = wx.json()?;
    own_component(&state, tp_id, &req.component_appid).await?;
    let app = authorizer_app(&state, &req.authorizer_appid).await?;
    let now = clock::now_ms();
    let (access, refresh, pair) = state.new_token_pair(now);
    let hash = secrets::sha256_hex(req.authorizer_refresh_token.trim());
    // Only a refresh token of this mini program is used: one of another is left alone.
    state
        .store
        .refresh(tp_id, Some(app.app_id), hash, pair, now)
        .await?
        .ok_or_else(|| Fail::new(Errcode::RefreshTokenInvalid))?;
    Ok(Answer(AuthorizerToken {
        authorizer_access_token: access,
        expires_in: state.settings.app_token_ttl_s as i64,
        authorizer_refresh_token: refresh,
    }))
}

pub async fn authorizer_info(State(state): State<AppState>, wx: Wx) -> Reply<AuthorizerInfoAnswer> {
    let tp_id = wx.component(&state, false).await?;
    let req: AuthorizerInfoRequest = wx.json()?;
    own_component(&state, tp_id, &req.component_appid).await?;
    let app = authorizer_app(&state, &req.authorizer_appid).await?;
    if app.tp_id != Some(tp_id) {
        return Err(Fail::detail(
            Errcode::ApiUnauthorized,
            "the mini program is not authorized to this component",
        ));
    }
    let settings = state.store.runtime_settings(app.app_id).await?;
    let paused = settings.is_some_and(|s| s.paused);
    Ok(Answer(AuthorizerInfoAnswer {
        authorizer_info: AuthorizerInfo {
            nick_name: app.name.clone(),
            head_img: String::new(),
            // A mini program (0) with a verified principal (0) when certified, else none (-1).
            service_type_info: TypeInfo { id: 0 },
            verify_type_info: TypeInfo {
                id: if app.authenticity_certified { 0 } else { -1 },
            },
            user_name: smartpkg_core::ids::wechat_original_id(&app.wx_appid),
            principal_name: String::new(),
            signature: String::new(),
            mini_program_info: MiniProgramInfo {
                network: serde_json::json!({}),
                categories: vec![],
                visit_status: if paused { 0 } else { 1 },
            },
        },
        authorization_info: AuthorizerScopes {
            authorizer_appid: app.wx_appid,
            func_info: func_info(),
        },
    }))
}

pub async fn consent_page(
    state: State<AppState>,
    headers: HeaderMap,
    q: Result<Query<AuthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    consent::show(consent::WECHAT, state, headers, q).await
}

pub async fn consent_submit(
    state: State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<AuthQuery>, axum::extract::rejection::FormRejection>,
) -> Response {
    consent::submit(consent::WECHAT, state, peer, headers, form).await
}
