//! Pushes as the operator sees them: every delivery with its attempts, and replay.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use smartpkg_store::{Delivery, DeliveryState};

use super::{AdminError, AdminResult};
use crate::{clock, push, AppState};

fn view(d: &Delivery, state: &AppState) -> Value {
    let offset = state.settings.utc_offset;
    let time = |ms: Option<i64>| ms.map(|t| clock::commit_time(t, offset));
    json!({
        "id": d.delivery_id,
        "event_id": d.event.uid,
        "event": d.event.event,
        "tp_id": d.tp_id,
        "app_id": d.event.app_id,
        "package_id": d.event.package_id,
        "url": d.url,
        "state": d.state,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "next_attempt_at": time(d.next_attempt_at_ms.filter(|_| d.state == DeliveryState::Pending)),
        "created_at": time(Some(d.created_at_ms)),
        "delivered_at": time(d.delivered_at_ms),
    })
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> AdminResult<Json<Value>> {
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
    let rows = state.store.list_deliveries(tp_id, wanted, limit).await?;
    let deliveries: Vec<Value> = rows.iter().map(|d| view(d, &state)).collect();
    Ok(Json(json!({ "deliveries": deliveries })))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> AdminResult<Json<Value>> {
    let d = state
        .store
        .get_delivery(id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("delivery {id}")))?;
    let offset = state.settings.utc_offset;
    let attempts: Vec<Value> = state
        .store
        .delivery_attempts(id)
        .await?
        .into_iter()
        .map(|a| {
            json!({
                "at": clock::commit_time(a.at_ms, offset),
                "url": a.url,
                "status": a.status,
                "latency_ms": a.latency_ms,
                "error": a.error,
                "body": a.body,
            })
        })
        .collect();
    let mut v = view(&d, &state);
    v["payload"] = push::render(&d, offset)
        .ok()
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or(Value::Null);
    v["attempt_log"] = Value::Array(attempts);
    Ok(Json(v))
}

pub async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> AdminResult<(StatusCode, Json<Value>)> {
    state.store.redeliver(id, clock::now_ms()).await?;
    state.jobs_ready.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "state": "pending"})),
    ))
}
