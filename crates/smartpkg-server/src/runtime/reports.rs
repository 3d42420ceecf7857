//! `POST /runtime/v1/reports`: devices tell how a package fares (downloaded, installed,
//! launched, launch_failed, crashed, rolled_back). A batch is checked whole — one bad report
//! refuses it, saying which and why, and nothing of it is counted — then each report is kept
//! only if the host app may run its mini program and the package is one the mini program
//! serves now (online or staged); the others are ignored and counted, the same whether the
//! mini program exists or not. Accepted reports are aggregated in memory
//! ([`crate::reports::Reports`]) and flushed to the store by the workers.

use std::borrow::Cow;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use smartpkg_core::health::{check_batch, RawReport};

use super::{host_of, prepared_all, Ctx, Refused};
use crate::reports::Accepted;

/// The longest body accepted: 500 reports with 128-character device ids fit in it.
const MAX_REPORTS_BODY: usize = 256 * 1024;
/// Mini programs one batch may name (as an update check).
const MAX_APPS_PER_BATCH: usize = super::MAX_APPS_PER_CHECK;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    reports: Vec<Item<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item<'a> {
    #[serde(borrow)]
    device_id: Cow<'a, str>,
    app_id: i64,
    package_id: i64,
    #[serde(borrow)]
    event: Cow<'a, str>,
    /// When it happened, milliseconds since the epoch (default: now).
    #[serde(default)]
    at: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Counted {
    accepted: usize,
    ignored: usize,
}

pub async fn reports(
    State(state): State<Ctx>,
    request: axum::extract::Request,
) -> Result<Response, Refused> {
    let (parts, body) = request.into_parts();
    let host_id = host_of(&state, &parts.headers).await?;
    let body = super::read_body(body, MAX_REPORTS_BODY, "a batch of reports").await?;
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| Refused::bad(format!("the body is not a batch of reports: {e}")))?;
    let raw: Vec<RawReport<'_>> = batch
        .reports
        .iter()
        .map(|r| RawReport {
            device_id: &r.device_id,
            app_id: r.app_id,
            package_id: r.package_id,
            event: &r.event,
            at_ms: r.at,
        })
        .collect();
    let checked =
        check_batch(&raw, crate::clock::now_ms()).map_err(|e| Refused::bad(e.to_string()))?;
    let mut apps: Vec<i64> = checked.iter().map(|r| r.app_id).collect();
    apps.sort_unstable();
    apps.dedup();
    if apps.len() > MAX_APPS_PER_BATCH {
        return Err(Refused::bad(format!(
            "a batch names at most {MAX_APPS_PER_BATCH} mini programs, not {}",
            apps.len()
        )));
    }
    let prepared = prepared_all(&state, &apps).await?;
    let mut accepted = Vec::with_capacity(checked.len());
    for r in &checked {
        let served = apps
            .binary_search(&r.app_id)
            .ok()
            .and_then(|i| prepared[i].as_ref().as_ref())
            .is_some_and(|p| p.runs_in(host_id) && p.serves(r.package_id));
        if served {
            accepted.push(Accepted {
                app_id: r.app_id,
                package_id: r.package_id,
                hour: r.hour,
                event: r.event,
                device_hash: r.device_hash,
            });
        }
    }
    state.reports.add(&accepted);
    let counted = Counted {
        accepted: accepted.len(),
        ignored: checked.len() - accepted.len(),
    };
    // The counters' handles are looked up once: registering one per request cost more than
    // counting a batch.
    let (accepted, ignored) = state.rt().report_counters.get_or_init(|| {
        let c = |outcome| {
            state
                .metrics
                .counter("smartpkg_reports_total", &[("outcome", outcome)])
        };
        (c("accepted"), c("ignored"))
    });
    accepted.increment(counted.accepted as u64);
    ignored.increment(counted.ignored as u64);
    Ok((StatusCode::OK, Json(counted)).into_response())
}
