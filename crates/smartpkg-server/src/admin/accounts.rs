//! Console accounts (docs/console.md): what `smartpkg account create` calls.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use smartpkg_store::Role;

use super::{AdminError, AdminResult, Body, ErrorBody};
use crate::{service, AppState};

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccountBody {
    /// Letters, digits, '.', '_', '-', '@'; stored lowercased.
    name: String,
    /// operator, reviewer or owner.
    role: String,
    /// 12 to 256 characters; generated (and returned once) when left out.
    password: Option<String>,
    /// For owners: the mini programs they own.
    #[serde(default)]
    apps: Vec<i64>,
}

#[utoipa::path(
    post,
    path = "/accounts",
    tag = "admin",
    summary = "Create a console account",
    request_body = NewAccountBody,
    responses(
        (status = 201, description = "{account_id, name, role, apps, password?}: password only when generated, shown once"),
        (status = 400, description = "invalid name, role or password"),
        (status = 404, description = "an app that does not exist"),
        (status = 409, description = "the name is taken"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(b): Body<NewAccountBody>,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let role = Role::parse(b.role.trim())
        .ok_or_else(|| AdminError::bad_request("role must be operator, reviewer or owner"))?;
    let apps = b.apps.clone();
    let (account, generated) = service::create_account(
        &state,
        &b.name,
        role,
        b.password,
        service::Creator::Operator(None),
        b.apps,
    )
    .await?;
    let mut v = json!({
        "account_id": account.account_id,
        "name": account.name,
        "role": account.role,
        "apps": apps,
        "created_at_ms": account.created_at_ms,
    });
    if let Some(p) = generated {
        v["password"] = json!(p);
    }
    Ok((StatusCode::CREATED, Json(v)))
}

#[utoipa::path(
    get,
    path = "/accounts",
    tag = "admin",
    summary = "List console accounts (first 1000)",
    responses((status = 200, description = "{total, accounts: [{account_id, name, role, created_by, created_at_ms}]}"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn list(State(state): State<AppState>) -> AdminResult<Json<Value>> {
    let (total, accounts) = state.store.list_accounts(0, 1000).await?;
    Ok(Json(json!({ "total": total, "accounts": accounts })))
}
