//! The dashboard, plain messages, and how a package-log entry reads.

use askama::Template;
use axum::extract::State;
use smartpkg_core::lifecycle::PkgState;
use smartpkg_store::{Actor, LogEntry, Role};

use super::{store_failed, Layout, Page, PageResult, Viewer};
use crate::clock;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub text: String,
}

/// A package-log entry as the timeline and the activity list show it.
pub struct Event {
    pub when: String,
    pub app_id: i64,
    pub package_id: i64,
    pub version: String,
    pub what: &'static str,
    pub detail: String,
    pub by: String,
}

/// What a state change means to a person.
pub fn what(from: Option<PkgState>, to: PkgState) -> &'static str {
    use PkgState::*;
    match (from, to) {
        (None, _) => "uploaded",
        (Some(Building), Development) => "built",
        (Some(Building), BuildFailed) => "build failed",
        (Some(Development), Auditing) => "submitted for audit",
        (Some(Auditing), AuditPassed) => "audit passed",
        (Some(Auditing), AuditFailed) => "audit failed",
        (Some(Auditing), Development) => "audit withdrawn",
        (Some(AuditPassed), AuditPassed) => "staged release changed",
        (Some(_), Online) => "released",
        (Some(Online), RollingBack) => "rolled back",
        (Some(Online), History) => "replaced by a newer release",
        (Some(_), Retired) => "retired",
        (Some(_), History) => "kept in history",
        (Some(_), Development) => "back in development",
        _ => "state changed",
    }
}

pub fn event(state: &AppState, e: &LogEntry) -> Event {
    let by = match e.actor {
        Actor::System => "platform".to_string(),
        Actor::ThirdParty => "third party".to_string(),
        Actor::AdminToken => "admin API".to_string(),
        Actor::Account(id) => e
            .actor_name
            .clone()
            .unwrap_or_else(|| format!("account #{id}")),
    };
    Event {
        when: super::when(state, e.at_ms),
        app_id: e.app_id.get(),
        package_id: e.package_id.get(),
        version: e.version.clone(),
        what: what(e.from, e.to),
        detail: e.detail.clone().unwrap_or_default(),
        by,
    }
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    waiting: i64,
    oldest: String,
    failing: i64,
    tps: i64,
    apps: i64,
    by_state: Vec<(String, i64)>,
    recent: Vec<Event>,
    staged: Vec<StagedRow>,
}

/// A staged release on the dashboard.
struct StagedRow {
    app_id: i64,
    app_name: String,
    package_id: i64,
    version: String,
    status: &'static str,
    percent: i64,
    /// `5 → 20 → 50 → 100`, or "by hand" without a plan.
    plan: String,
    why: String,
}

pub async fn dashboard(State(state): State<AppState>, v: Viewer) -> PageResult {
    if v.role() == Role::Owner {
        // An owner's home is its own mini programs; platform-wide figures are not theirs.
        return Ok(Page::Redirect("/console/apps".into()));
    }
    let d = state.store.dashboard().await.map_err(store_failed)?;
    let mut staged: Vec<StagedRow> = state
        .store
        .staged_plans()
        .await
        .map_err(store_failed)?
        .into_iter()
        .map(|s| StagedRow {
            app_id: s.app_id.get(),
            app_name: s.app_name,
            package_id: s.package_id.get(),
            version: s.version,
            status: s.plan.as_ref().map_or("running", |p| p.status.as_str()),
            percent: s.staged_percent,
            plan: s.plan.as_ref().map_or("by hand".into(), |p| {
                p.steps
                    .iter()
                    .map(|x| format!("{x}%"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            }),
            why: s
                .plan
                .as_ref()
                .and_then(|p| p.halt.as_ref())
                .map(|h| h.describe())
                .unwrap_or_default(),
        })
        .collect();
    // Halted releases first: they wait for a person.
    staged.sort_by_key(|r| (r.status != "halted", std::cmp::Reverse(r.package_id)));
    let recent = state.store.recent_log(20).await.map_err(store_failed)?;
    let now = clock::now_ms();
    Ok(Page::ok(&DashboardPage {
        layout: v.layout("Dashboard", "dashboard"),
        waiting: d.audits_waiting,
        oldest: d
            .oldest_waiting_since_ms
            .map(|t| format!("waiting {}", super::age(now, t)))
            .unwrap_or_default(),
        failing: d.deliveries_failing,
        tps: d.tps,
        apps: d.apps,
        by_state: d.by_state,
        recent: recent.iter().map(|e| event(&state, e)).collect(),
        staged,
    }))
}
