//! Pushes as the operator sees them: every delivery with its attempts, and replay.

use smartpkg_core::ids::{PackageId, TpId};
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use smartpkg_store::{Delivery, DeliveryState};

use super::answers::{
    AttemptAnswer, DeliveryAnswer, DeliveryList, PushTargetAnswer, PushTargetList, Redelivery,
    ResumedTarget,
};
use super::{AdminError, AdminResult, ErrorBody};

/// A push target with no failing run.
const HEALTHY: &str = "healthy";
use crate::state::AppState;
use crate::{clock, push};

/// When each held target's hold ends, for the delivery views.
async fn holds(state: &AppState) -> AdminResult<HashMap<TpId, i64>> {
    let now = clock::now_ms();
    Ok(state
        .store
        .push_targets()
        .await?
        .into_iter()
        .filter_map(|t| t.hold_until_ms.filter(|u| *u > now).map(|u| (t.tp_id, u)))
        .collect())
}

fn view(d: &Delivery, state: &AppState, holds: &HashMap<TpId, i64>) -> DeliveryAnswer {
    let offset = state.settings.utc_offset;
    let time = |ms: Option<i64>| ms.map(|t| clock::commit_time(t, offset));
    let pending = d.state == DeliveryState::Pending;
    DeliveryAnswer {
        id: d.delivery_id,
        event_id: d.event.uid.clone(),
        event: d.event.event.clone(),
        tp_id: d.tp_id.get(),
        app_id: d.event.app_id.get(),
        package_id: d.event.package_id.map(PackageId::get),
        url: d.url.clone(),
        state: d.state.as_str().to_string(),
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        next_attempt_at: time(d.next_attempt_at_ms.filter(|_| pending)),
        created_at: time(Some(d.created_at_ms)),
        delivered_at: time(d.delivered_at_ms),
        // While the target is on hold, a pending delivery waits at least until then.
        target_on_hold_until: time(holds.get(&d.tp_id).copied().filter(|_| pending)),
        payload: None,
        dialect: None,
        attempt_log: None,
    }
}

#[utoipa::path(
    get,
    path = "/deliveries",
    tag = "admin",
    summary = "List pushes with their state",
    params(("tp_id" = Option<i64>, Query), ("state" = Option<String>, Query, description = "pending, delivered or failed"), ("limit" = Option<i64>, Query), ("before" = Option<i64>, Query, description = "only deliveries with a smaller id: the next page")),
    responses((status = 200, description = "the deliveries, newest first", body = DeliveryList), (status = 400, description = "invalid filter"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult<Json<DeliveryList>> {
    let tp_id = match q.get("tp_id").filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| AdminError::bad_request("tp_id must be an integer"))?,
        ),
        None => None,
    };
    let wanted = match q.get("state").filter(|v| !v.is_empty()) {
        Some(v) => Some(DeliveryState::parse(v).ok_or_else(|| {
            AdminError::bad_request("state must be pending, delivered or failed")
        })?),
        None => None,
    };
    let limit = match q.get("limit") {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| AdminError::bad_request("limit must be an integer"))?,
        None => 100,
    }
    .clamp(1, 1000);
    let before = match q.get("before") {
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| AdminError::bad_request("before must be an integer"))?,
        ),
        None => None,
    };
    let rows = state
        .store
        .list_deliveries(tp_id.map(TpId), wanted, before, limit)
        .await?;
    let holds = holds(&state).await?;
    let deliveries = rows.iter().map(|d| view(d, &state, &holds)).collect();
    Ok(Json(DeliveryList { deliveries }))
}

#[utoipa::path(
    get,
    path = "/deliveries/{id}",
    tag = "admin",
    summary = "Read a push with its payload and every attempt",
    params(("id" = i64, Path)),
    responses((status = 200, description = "the delivery with its payload and attempts", body = DeliveryAnswer), (status = 404, description = "no such delivery"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> AdminResult<Json<DeliveryAnswer>> {
    let d = state
        .store
        .get_delivery(id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("delivery {id}")))?;
    let offset = state.settings.utc_offset;
    let attempts = state
        .store
        .delivery_attempts(id)
        .await?
        .into_iter()
        .map(|a| AttemptAnswer {
            at: clock::commit_time(a.at_ms, offset),
            url: a.url,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            body: a.body,
            dialect: a.dialect.as_str().to_string(),
        })
        .collect();
    // The payload as the third party decrypts it: Baidu's JSON as JSON, WeChat's XML as a
    // string. One that does not render (a corrupt row) shows as null; the list still works.
    let tp = state.store.get_tp(d.tp_id).await?;
    let wx_appid = match d.event.app_id.get() {
        0 => String::new(),
        _ => state
            .store
            .get_app(d.event.app_id)
            .await?
            .map(|a| a.wx_appid)
            .unwrap_or_default(),
    };
    let rendered = tp.and_then(|tp| push::render_in(&d, &tp, &wx_appid, offset).ok());
    let (dialect, payload) = match rendered {
        Some((smartpkg_core::dialect::Dialect::Baidu, json)) => (
            Some("baidu".to_string()),
            serde_json::from_str(&json).unwrap_or(serde_json::Value::Null),
        ),
        Some((dialect, xml)) => (Some(dialect.to_string()), serde_json::Value::String(xml)),
        None => (None, serde_json::Value::Null),
    };
    Ok(Json(DeliveryAnswer {
        payload: Some(payload),
        dialect,
        attempt_log: Some(attempts),
        ..view(&d, &state, &holds(&state).await?)
    }))
}

#[utoipa::path(
    post,
    path = "/deliveries/{id}/redeliver",
    tag = "admin",
    summary = "Replay a push under the same event id",
    params(("id" = i64, Path)),
    responses((status = 202, description = "queued again; lifts the target's hold for this attempt", body = Redelivery), (status = 404, description = "no such delivery"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> AdminResult<(StatusCode, Json<Redelivery>)> {
    crate::application::redeliver(&state, id).await?;
    let queued = Redelivery {
        id,
        state: DeliveryState::Pending.as_str().to_string(),
    };
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

#[utoipa::path(
    get,
    path = "/push-targets",
    tag = "admin",
    summary = "Push targets (third parties) with their failing run and hold",
    responses((status = 200, description = "every target with a failure record", body = PushTargetList), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
/// `GET /push-targets`: every third party with a failure record, its failing run and hold.
pub async fn targets(State(state): State<AppState>) -> AdminResult<Json<PushTargetList>> {
    let offset = state.settings.utc_offset;
    let now = clock::now_ms();
    let time = |ms: Option<i64>| ms.map(|t| clock::commit_time(t, offset));
    let push_targets = state
        .store
        .push_targets()
        .await?
        .into_iter()
        .map(|t| {
            let held = t.hold_until_ms.filter(|u| *u > now);
            let health = if held.is_some() {
                "on_hold"
            } else if t.consecutive_failures > 0 {
                "failing"
            } else {
                HEALTHY
            };
            PushTargetAnswer {
                tp_id: t.tp_id.get(),
                state: health.to_string(),
                consecutive_failures: t.consecutive_failures,
                failing_since: time(t.failing_since_ms),
                hold_until: time(held),
                holds: t.holds,
                last_error: t.last_error,
            }
        })
        .collect();
    Ok(Json(PushTargetList { push_targets }))
}

#[utoipa::path(
    post,
    path = "/push-targets/{tp_id}/resume",
    tag = "admin",
    summary = "End a target's hold; its deliveries resume at once",
    params(("tp_id" = i64, Path)),
    responses((status = 200, description = "the target, healthy again", body = ResumedTarget), (status = 404, description = "no such third party"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
/// `POST /push-targets/{tp_id}/resume`: an operator ends a hold; deliveries resume at once.
pub async fn resume(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
) -> AdminResult<Json<ResumedTarget>> {
    if !state.store.resume_target(TpId(tp_id)).await? {
        return Err(AdminError::not_found(format!("push target {tp_id}")));
    }
    state.jobs_ready.notify_one();
    Ok(Json(ResumedTarget {
        tp_id,
        state: HEALTHY.to_string(),
    }))
}
