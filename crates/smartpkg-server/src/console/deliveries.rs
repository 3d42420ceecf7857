//! Deliveries: every push with its attempts and answers, filtered by state and third party,
//! replayed one at a time or many at once.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use smartpkg_core::ids::{AppId, TpId};
use smartpkg_store::{DeliveryState, Role};

use super::{store_failed, Layout, Page, PageResult, Posted, Viewer, PAGE_SIZE};
use crate::application;
use crate::state::AppState;

/// Most deliveries one replay form may name.
const MAX_REPLAY: usize = 500;

pub struct DeliveryRow {
    id: i64,
    event: String,
    reason: String,
    tp_id: i64,
    app: String,
    state: &'static str,
    state_class: &'static str,
    attempts: i64,
    last: String,
    created: String,
}

#[derive(Template)]
#[template(path = "console/deliveries.html")]
struct DeliveriesPage {
    layout: Layout,
    notice: String,
    state: String,
    tp_id: String,
    rows: Vec<DeliveryRow>,
    next: String,
}

#[derive(Deserialize, Default)]
pub struct DeliveriesQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    tp_id: String,
    before: Option<String>,
    #[serde(default)]
    notice: String,
}

pub async fn list(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<DeliveriesQuery>,
) -> PageResult {
    v.require(&[Role::Operator])?;
    let bad = |m: &str| Page::message(&v, StatusCode::BAD_REQUEST, "Cannot filter", m);
    let wanted = match q.state.trim() {
        "" => None,
        // The dashboard's "failing": waiting for another attempt after a failure.
        "failing" => Some(DeliveryState::Pending),
        s => Some(
            DeliveryState::parse(s)
                .ok_or_else(|| bad("state must be pending, failed or delivered"))?,
        ),
    };
    let tp_id = match q.tp_id.trim() {
        "" => None,
        s => Some(
            s.parse::<i64>()
                .map_err(|_| bad("the third party id must be a number"))?,
        ),
    };
    let before = q
        .before
        .as_deref()
        .and_then(|b| b.trim().parse::<i64>().ok());
    let mut rows = state
        .store
        .list_deliveries(tp_id.map(TpId), wanted, before, PAGE_SIZE)
        .await
        .map_err(store_failed)?;
    if q.state.trim() == "failing" {
        rows.retain(|d| d.attempts > 0);
    }
    let next = match rows.last() {
        Some(last) if rows.len() as i64 == PAGE_SIZE => format!(
            "/console/deliveries?{}",
            super::query(&[
                ("state", q.state.trim().to_string()),
                ("tp_id", q.tp_id.trim().to_string()),
                ("before", last.delivery_id.to_string()),
            ])
        ),
        _ => String::new(),
    };
    let rows = rows
        .into_iter()
        .map(|d| DeliveryRow {
            id: d.delivery_id,
            event: d.event.event.clone(),
            reason: d.event.reason.clone().unwrap_or_default(),
            tp_id: d.tp_id.get(),
            app: if d.event.app_id == AppId(0) {
                String::new()
            } else {
                d.event.app_id.to_string()
            },
            state: d.state.as_str(),
            state_class: match d.state {
                DeliveryState::Delivered => "good",
                DeliveryState::Failed => "bad",
                DeliveryState::Pending if d.attempts > 0 => "bad",
                DeliveryState::Pending => "",
            },
            attempts: d.attempts,
            last: match (d.last_status, d.last_error) {
                (Some(s), _) => format!("HTTP {s}"),
                (None, Some(e)) => e,
                (None, None) => String::new(),
            },
            created: super::when(&state, d.created_at_ms),
        })
        .collect();
    Ok(Page::ok(&DeliveriesPage {
        layout: v.layout("Deliveries", "deliveries"),
        notice: q.notice.chars().take(200).collect(),
        state: q.state.trim().to_string(),
        tp_id: q.tp_id.trim().to_string(),
        rows,
        next,
    }))
}

/// When, dialect, URL, status, latency, answer or error.
type AttemptRow = (String, &'static str, String, String, i64, String);

#[derive(Template)]
#[template(path = "console/delivery.html")]
struct DeliveryPage {
    layout: Layout,
    id: i64,
    event: String,
    uid: String,
    tp_id: i64,
    url: String,
    state: &'static str,
    next_attempt: String,
    reason: String,
    attempts: Vec<AttemptRow>,
}

pub async fn page(State(state): State<AppState>, v: Viewer, Path(id): Path<i64>) -> PageResult {
    v.require(&[Role::Operator])?;
    let d = state
        .store
        .get_delivery(id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Page::not_found(&v, &format!("Delivery {id}")))?;
    let attempts = state
        .store
        .delivery_attempts(id)
        .await
        .map_err(store_failed)?;
    Ok(Page::ok(&DeliveryPage {
        layout: v.layout(format!("Delivery {id}"), "deliveries"),
        id,
        event: d.event.event.clone(),
        uid: d.event.uid.clone(),
        tp_id: d.tp_id.get(),
        url: d.url.clone(),
        state: d.state.as_str(),
        next_attempt: d
            .next_attempt_at_ms
            .filter(|_| d.state == DeliveryState::Pending)
            .map(|t| format!("next attempt {}", super::when(&state, t)))
            .unwrap_or_default(),
        reason: d.event.reason.clone().unwrap_or_default(),
        attempts: attempts
            .into_iter()
            .map(|a| {
                (
                    super::when(&state, a.at_ms),
                    match a.dialect {
                        smartpkg_core::dialect::Dialect::Baidu => "Baidu (JSON)",
                        smartpkg_core::dialect::Dialect::Wechat => "WeChat (XML)",
                    },
                    a.url,
                    a.status.map(|s| s.to_string()).unwrap_or_default(),
                    a.latency_ms,
                    a.error.or(a.body).unwrap_or_default(),
                )
            })
            .collect(),
    }))
}

/// Replays the deliveries the form names (`id`, repeated): each under its own event id.
pub async fn replay(State(state): State<AppState>, p: Posted<Vec<(String, String)>>) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator])?;
    let ids: Vec<i64> = p
        .form
        .iter()
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, val)| val.trim().parse().ok())
        .collect();
    if ids.is_empty() {
        return Err(Page::message(
            v,
            StatusCode::BAD_REQUEST,
            "Nothing replayed",
            "Select at least one delivery.",
        ));
    }
    if ids.len() > MAX_REPLAY {
        return Err(Page::message(
            v,
            StatusCode::BAD_REQUEST,
            "Nothing replayed",
            &format!("At most {MAX_REPLAY} deliveries at once."),
        ));
    }
    for id in &ids {
        application::redeliver(&state, *id)
            .await
            .map_err(|e| Page::refused(v, e))?;
    }
    tracing::info!(by = %v.account.name, count = ids.len(), "console: deliveries replayed");
    let notice = format!(
        "{} deliver{} queued for replay.",
        ids.len(),
        if ids.len() == 1 { "y" } else { "ies" }
    );
    Ok(Page::Redirect(format!(
        "/console/deliveries?{}",
        super::query(&[("notice", notice)])
    )))
}
