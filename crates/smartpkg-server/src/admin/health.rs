//! Release health for operators: a staged release's plan (start, resume, advance, abandon)
//! and a mini program's hourly figures.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use smartpkg_core::ids::{AppId, PackageId};
use smartpkg_store::Actor;
use std::collections::HashMap;

use super::answers::PackageAnswer;
use super::packages::view;
use super::{AdminError, AdminResult, Body, ErrorBody};
use crate::application::{self, PlanAction, PlanSpec};
use crate::state::AppState;

#[derive(utoipa::ToSchema, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// Rising percentages ending at 100 (`1,5,20,50,100`); absent: the default steps.
    steps: Option<String>,
    /// Let the scheduler advance and halt it (default true).
    auto: Option<bool>,
    /// The step to start at (default: the first).
    start_percentage: Option<i64>,
    /// Launching devices each version needs per step before it is judged.
    min_devices: Option<u64>,
    /// The shortest a step lasts before it advances, in seconds.
    step_min_s: Option<u64>,
    /// The test's level in parts per million.
    alpha_ppm: Option<u64>,
    /// The least excess failure rate that halts, in basis points.
    min_excess_bp: Option<u64>,
}

#[utoipa::path(
    post,
    path = "/packages/{package_id}/plan",
    tag = "admin",
    summary = "Start a staged release that follows a plan",
    params(("package_id" = i64, Path)),
    request_body = PlanBody,
    responses((status = 200, description = "the package with its plan", body = PackageAnswer), (status = 400, description = "not a plan"), (status = 404, description = "no such package"), (status = 409, description = "the package cannot start one now"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn start_plan(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Body(b): Body<PlanBody>,
) -> AdminResult<Json<PackageAnswer>> {
    let spec = PlanSpec {
        steps: b.steps,
        auto: b.auto.unwrap_or(true),
        start_percent: b.start_percentage,
        min_devices: b.min_devices,
        step_min_s: b.step_min_s,
        alpha_ppm: b.alpha_ppm,
        min_excess_bp: b.min_excess_bp,
    };
    let plan = application::plan_for(&state, spec).map_err(AdminError::bad_request)?;
    let p = application::load_package(&state, id).await?;
    let cmd = smartpkg_core::lifecycle::Command::StartPlan {
        package_id: PackageId(id),
        plan,
    };
    application::package_command(&state, p.app_id, cmd, Actor::AdminToken).await?;
    let p = application::load_package(&state, id).await?;
    Ok(Json(view(&p, &state)))
}

#[utoipa::path(
    post,
    path = "/packages/{package_id}/plan/{action}",
    tag = "admin",
    summary = "Resume a halted plan, advance a running one by hand, or abandon it",
    params(("package_id" = i64, Path), ("action" = String, Path, description = "resume, advance or abandon")),
    responses((status = 200, description = "the package", body = PackageAnswer), (status = 400, description = "unknown action"), (status = 404, description = "no such package"), (status = 409, description = "the plan is not where the action applies"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn plan_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(i64, String)>,
) -> AdminResult<Json<PackageAnswer>> {
    let action = match action.as_str() {
        "resume" => PlanAction::Resume,
        "advance" => PlanAction::Advance,
        "abandon" => PlanAction::Abandon,
        other => {
            return Err(AdminError::bad_request(format!(
                "action is resume, advance or abandon, not {other:?}"
            )))
        }
    };
    let p = application::plan_action(&state, PackageId(id), action, Actor::AdminToken).await?;
    Ok(Json(view(&p, &state)))
}

/// One package's figures in one hour.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HourFigures {
    /// Hours since the epoch (UTC).
    pub hour: i64,
    pub package_id: i64,
    pub event: String,
    /// Events received (a retried batch counts again).
    pub events: u64,
    /// Distinct devices that sent them (estimated, within 2 %).
    pub devices: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthAnswer {
    /// The staged package (with its plan), if any.
    pub staged: Option<PackageAnswer>,
    pub online: Option<PackageAnswer>,
    pub from_hour: i64,
    pub to_hour: i64,
    pub hours: Vec<HourFigures>,
}

#[utoipa::path(
    get,
    path = "/apps/{app_id}/health",
    tag = "admin",
    summary = "A mini program's release health: its staged plan and hourly report figures",
    params(("app_id" = i64, Path), ("hours" = Option<i64>, Query, description = "1 to 720, default 48")),
    responses((status = 200, description = "the figures", body = HealthAnswer), (status = 400, description = "hours is not a number"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn app_health(
    State(state): State<AppState>,
    Path(app_id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult<Json<HealthAnswer>> {
    let hours = super::packages::int(&q, "hours")?.unwrap_or(48);
    let h = application::release_health(&state, AppId(app_id), hours).await?;
    Ok(Json(HealthAnswer {
        staged: h.staged.as_ref().map(|p| view(p, &state)),
        online: h.online.as_ref().map(|p| view(p, &state)),
        from_hour: h.from_hour,
        to_hour: h.to_hour,
        hours: h
            .hours
            .iter()
            .map(|r| HourFigures {
                hour: r.hour,
                package_id: r.package_id.get(),
                event: r.event.as_str().to_string(),
                events: r.events,
                devices: r.devices,
            })
            .collect(),
    }))
}
