//! Packages as an operator or reviewer sees them: every state, audit decisions, archives.

use smartpkg_core::ids::{AppId, PackageId, TpId};
use std::collections::HashMap;

use axum::body::Body as HttpBody;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use smartpkg_store::{Actor, PackageFilter, PackageRecord};

use super::answers::{PackageAnswer, PackageList};
use super::{AdminError, AdminResult, Body, ErrorBody};
use crate::state::AppState;
use crate::{application, clock};

pub(super) fn view(p: &PackageRecord, state: &AppState) -> PackageAnswer {
    let offset = state.settings.utc_offset;
    PackageAnswer {
        package_id: p.package_id.get(),
        app_id: p.app_id.get(),
        tp_id: p.tp_id.get(),
        template_id: p.template_id.get(),
        status: p.state.wire_status().map(|w| w.code()),
        state: p.state.as_str().to_string(),
        version: p.version.clone(),
        version_desc: p.version_desc.clone(),
        msg: p.msg.clone(),
        remark: p.remark.clone(),
        audit_content: p.audit_content.clone(),
        test_account: p.test_account.clone(),
        test_password: p.test_password.clone(),
        direct_commit: p.direct_commit,
        upload_err_code: p.upload_err_code,
        upload_err_msg: p.upload_err_msg.clone(),
        rollback_version: p.rollback_version.clone(),
        commit_time: clock::commit_time(p.commit_time_ms, offset),
        updated_at: clock::commit_time(p.updated_at_ms, offset),
        ext_json: None,
        built_ext_json: None,
        staged_percent: p.staged_percent,
        gray_status: application::gray_status(p).map(str::to_string),
        stage_plan: p
            .stage_plan
            .as_ref()
            .and_then(|pl| serde_json::to_value(pl).ok()),
    }
}

pub(super) fn int(q: &HashMap<String, String>, name: &str) -> AdminResult<Option<i64>> {
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| AdminError::bad_request(format!("{name} must be an integer")))
        })
        .transpose()
}

#[utoipa::path(
    get,
    path = "/packages",
    tag = "admin",
    summary = "List packages, newest first",
    params(("status" = Option<i64>, Query, description = "wire status: 1, 3, 4, 5, 6 or 8"), ("app_id" = Option<i64>, Query), ("tp_id" = Option<i64>, Query), ("limit" = Option<i64>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "the packages, newest first", body = PackageList), (status = 400, description = "invalid filter"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult<Json<PackageList>> {
    let filter = PackageFilter {
        status: int(&q, "status")?,
        app_id: int(&q, "app_id")?.map(AppId),
        tp_id: int(&q, "tp_id")?.map(TpId),
        limit: Some(int(&q, "limit")?.unwrap_or(100).clamp(1, 1000)),
    };
    let rows = state.store.list_packages(filter).await?;
    let packages = rows.iter().map(|p| view(p, &state)).collect();
    Ok(Json(PackageList { packages }))
}

async fn load(state: &AppState, id: i64) -> AdminResult<PackageRecord> {
    Ok(application::load_package(state, id).await?)
}

#[utoipa::path(
    get,
    path = "/packages/{package_id}",
    tag = "admin",
    summary = "Read a package in any state",
    params(("package_id" = i64, Path)),
    responses((status = 200, description = "the package with its ext_json and built ext.json", body = PackageAnswer), (status = 404, description = "no such package"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> AdminResult<Json<PackageAnswer>> {
    let p = load(&state, id).await?;
    // The inputs and the build, for one package only (each may be up to the body limit).
    Ok(Json(PackageAnswer {
        ext_json: Some(p.ext_json.clone()),
        built_ext_json: Some(p.built_ext_json.clone()),
        ..view(&p, &state)
    }))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditBody {
    result: String,
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/packages/{package_id}/audit",
    tag = "admin",
    summary = "Decide an audit",
    params(("package_id" = i64, Path)),
    request_body = AuditBody,
    responses((status = 200, description = "the package", body = PackageAnswer), (status = 400, description = "invalid decision"), (status = 404, description = "no such package"), (status = 409, description = "the package is not being audited"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn audit(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Body(b): Body<AuditBody>,
) -> AdminResult<Json<PackageAnswer>> {
    let pass = match b.result.as_str() {
        "pass" => true,
        "fail" => false,
        other => {
            return Err(AdminError::bad_request(format!(
                "result must be \"pass\" or \"fail\", got {other:?}"
            )))
        }
    };
    let reason = b.reason.unwrap_or_default();
    let p =
        application::decide_audit(&state, PackageId(id), pass, &reason, Actor::AdminToken).await?;
    Ok(Json(view(&p, &state)))
}

#[utoipa::path(
    get,
    path = "/packages/{package_id}/archive",
    tag = "admin",
    summary = "Download the full package zip (template entries + generated ext.json)",
    params(("package_id" = i64, Path)),
    responses((status = 200, description = "application/zip"), (status = 404, description = "no such package"), (status = 409, description = "the package is not built"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
/// The full package as a zip: the template's entries unchanged plus the generated `ext.json` —
/// the very archive devices download (docs/runtime.md), made once and streamed from the blob
/// store.
pub async fn archive(State(state): State<AppState>, Path(id): Path<i64>) -> AdminResult<Response> {
    let p = load(&state, id).await?;
    p.built_ext_json.as_ref().ok_or_else(|| {
        AdminError::new(
            StatusCode::CONFLICT,
            "not_built",
            format!(
                "package {id} is {}; it has no archive until its build succeeds",
                p.state.as_str()
            ),
        )
    })?;
    // The archive devices get (made and recorded once): the admin API shows the same bytes.
    let (sha, _) = crate::workers::make_archive(&state, id)
        .await
        .map_err(|e| {
            AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "template_unreadable", e)
        })?;
    let stream = state.blobs.stream(&sha, None).await.map_err(|e| {
        AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"package-{id}.zip\""),
            ),
        ],
        HttpBody::from_stream(stream.bytes),
    )
        .into_response())
}
