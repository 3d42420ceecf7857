//! Console accounts (docs/console.md): what `smartpkg account create` calls.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use smartpkg_core::ids::{AccountId, AppId};
use smartpkg_store::Role;

use super::answers::{AccountAnswer, AccountList, CreatedAccount};
use super::{AdminError, AdminResult, Body, ErrorBody};
use crate::application;
use crate::state::AppState;

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
        (status = 201, description = "the account; password only when generated, shown once", body = CreatedAccount),
        (status = 400, description = "invalid name, role or password"),
        (status = 404, description = "an app that does not exist"),
        (status = 409, description = "the name is taken"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(b): Body<NewAccountBody>,
) -> AdminResult<(StatusCode, Json<CreatedAccount>)> {
    let role = Role::parse(b.role.trim())
        .ok_or_else(|| AdminError::bad_request("role must be operator, reviewer or owner"))?;
    let apps = b.apps.clone();
    let (account, generated) = application::create_account(
        &state,
        &b.name,
        role,
        b.password,
        application::Creator::Operator(None),
        b.apps.iter().copied().map(AppId).collect(),
    )
    .await?;
    let created = CreatedAccount {
        account_id: account.account_id.get(),
        name: account.name,
        role: account.role.as_str().to_string(),
        apps,
        created_at_ms: account.created_at_ms,
        password: generated,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(utoipa::IntoParams, Deserialize)]
pub struct ListQuery {
    /// Only the account of this name (as stored: lowercased).
    name: Option<String>,
}

#[utoipa::path(
    get,
    path = "/accounts",
    tag = "admin",
    summary = "List console accounts (first 1000), or find one by name",
    params(ListQuery),
    responses((status = 200, description = "the accounts; with name, the one account or none", body = AccountList), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> AdminResult<Json<AccountList>> {
    let answer = |a| AccountAnswer::new(a, None);
    if let Some(name) = q.name {
        let found = state
            .store
            .account_by_name(name.trim().to_lowercase())
            .await?;
        let accounts: Vec<_> = found.into_iter().map(|(a, _)| answer(a)).collect();
        return Ok(Json(AccountList {
            total: accounts.len() as i64,
            accounts,
        }));
    }
    let (total, accounts) = state.store.list_accounts(0, 1000).await?;
    Ok(Json(AccountList {
        total,
        accounts: accounts.into_iter().map(answer).collect(),
    }))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatchBody {
    /// A new password, 12 to 256 characters.
    password: Option<String>,
    /// `true`: a new password is generated and returned once.
    #[serde(default)]
    generate_password: bool,
    /// `true` disables the account (it cannot sign in; its sessions end), `false` enables it.
    disabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/accounts/{account_id}",
    tag = "admin",
    summary = "Change a console account's password, or disable or enable it",
    params(("account_id" = i64, Path, description = "the account")),
    request_body = AccountPatchBody,
    responses(
        (status = 200, description = "the account; password only when generated, shown once; every session of the account has ended", body = AccountAnswer),
        (status = 400, description = "nothing to change, both password and generate_password, or a password of the wrong shape"),
        (status = 404, description = "no such account"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody)
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    Path(account_id): Path<i64>,
    Body(b): Body<AccountPatchBody>,
) -> AdminResult<Json<AccountAnswer>> {
    let password = match (b.password, b.generate_password) {
        (Some(_), true) => {
            return Err(AdminError::bad_request(
                "give either password or generate_password, not both",
            ))
        }
        (Some(p), false) => application::NewPassword::Set(p),
        (None, true) => application::NewPassword::Generate,
        (None, false) => application::NewPassword::Keep,
    };
    let (account, generated) =
        application::edit_account(&state, AccountId(account_id), password, b.disabled, None)
            .await?;
    Ok(Json(AccountAnswer::new(account, generated)))
}
