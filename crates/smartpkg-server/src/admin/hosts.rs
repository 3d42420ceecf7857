//! Host apps: the applications that run mini programs on devices and call `/runtime/v1`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use smartpkg_core::ids::{AppId, HostId};
use smartpkg_store::StoreError;

use super::answers::{AppHosts, CreatedHost, HostAnswer, HostList};
use super::{clean_text, AdminError, AdminResult, Body, ErrorBody};
use crate::state::AppState;
use crate::{clock, secrets};

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHostBody {
    name: String,
}

#[utoipa::path(
    post,
    path = "/host-apps",
    tag = "admin",
    summary = "Register a host app; its key and secret (shown once) authenticate /runtime/v1",
    request_body = NewHostBody,
    responses(
        (status = 201, description = "the host app with its secret, shown this once", body = CreatedHost),
        (status = 400, description = "invalid name"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(b): Body<NewHostBody>,
) -> AdminResult<(StatusCode, Json<CreatedHost>)> {
    let name = b.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AdminError::bad_request("name is 1 to 100 characters"));
    }
    clean_text("name", Some(&name), false)?;
    let key = format!("hk_{}", secrets::random_alnum(24));
    let secret = secrets::random_alnum(40);
    let host = state
        .store
        .create_host_app(name, key, secrets::sha256_hex(&secret), clock::now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedHost {
            host_id: host.host_id.get(),
            name: host.name,
            host_key: host.host_key,
            host_secret: secret,
            created_at_ms: host.created_at_ms,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/host-apps",
    tag = "admin",
    summary = "List host apps (their secrets are never shown again)",
    responses(
        (status = 200, description = "every host app, without secrets", body = HostList),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody)
    )
)]
pub async fn list(State(state): State<AppState>) -> AdminResult<Json<HostList>> {
    let hosts = state.store.list_host_apps().await?;
    Ok(Json(HostList {
        host_apps: hosts.into_iter().map(HostAnswer::from).collect(),
    }))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppHostsBody {
    /// The host apps the mini program runs in; empty = every one.
    host_ids: Vec<i64>,
}

#[utoipa::path(
    put,
    path = "/apps/{app_id}/host-apps",
    tag = "admin",
    summary = "Limit a mini program to some host apps (an empty list: every host app)",
    params(("app_id" = i64, Path)),
    request_body = AppHostsBody,
    responses(
        (status = 200, description = "the mini program's host apps", body = AppHosts),
        (status = 404, description = "no such mini program or host app"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody)
    )
)]
pub async fn set_app_hosts(
    State(state): State<AppState>,
    Path(app_id): Path<i64>,
    Body(b): Body<AppHostsBody>,
) -> AdminResult<Json<AppHosts>> {
    if b.host_ids.len() > 1000 {
        return Err(AdminError::bad_request("at most 1000 host apps"));
    }
    match state
        .store
        .set_app_hosts(
            AppId(app_id),
            b.host_ids.iter().copied().map(HostId).collect(),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(AdminError::not_found(format!("app {app_id}"))),
        Err(StoreError::NotFound(what)) => return Err(AdminError::not_found(what)),
        Err(e) => return Err(e.into()),
    }
    state.app_caches.app_changed(app_id);
    Ok(Json(AppHosts {
        app_id,
        host_ids: b.host_ids,
    }))
}
