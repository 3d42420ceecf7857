//! Mini programs: search, a mini program's page (gates, authorization, packages, timeline),
//! and owners adding the mini programs they hold the credential of.

use smartpkg_core::ids::{AppId, TpId};
use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use smartpkg_store::{AppPatch, AppQuery, PackageFilter, Role};

use super::pages::{event, Event};
use super::{store_failed, Layout, Page, PageResult, Pager, Posted, Viewer, PAGE_SIZE};
use crate::application;
use crate::state::AppState;

pub struct AppListRow {
    app_id: i64,
    name: String,
    tp_name: String,
    online: String,
    gates_open: bool,
}

#[derive(Template)]
#[template(path = "console/apps.html")]
struct AppsPage {
    layout: Layout,
    owner: bool,
    q: String,
    rows: Vec<AppListRow>,
    pager: Pager,
}

#[derive(Deserialize, Default)]
pub struct AppsQuery {
    #[serde(default)]
    q: String,
    page: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<AppsQuery>,
) -> PageResult {
    let page = super::page_number(q.page.as_deref());
    let text: String = q.q.trim().chars().take(100).collect();
    let owner = v.role() == Role::Owner;
    let query = AppQuery {
        text: text.clone(),
        owned_by: owner.then_some(v.account.account_id),
        tp_id: None,
    };
    let (rows, more) = state
        .store
        .search_apps(query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        .await
        .map_err(store_failed)?;
    let rows = rows
        .into_iter()
        .map(|r| AppListRow {
            gates_open: r.app.name_audited
                && r.app.category_audited
                && r.app.authenticity_certified,
            app_id: r.app.app_id.get(),
            name: r.app.name,
            tp_name: r.tp_name.unwrap_or_default(),
            online: r.online_version.unwrap_or_default(),
        })
        .collect();
    Ok(Page::ok(&AppsPage {
        layout: v.layout("Mini programs", "apps"),
        owner,
        pager: Pager::new("/console/apps", &[("q", text.clone())], page, more),
        q: text,
        rows,
    }))
}

/// Whether the viewer may see (and, for owners, act on) this mini program.
pub(super) async fn may_see(state: &AppState, v: &Viewer, app_id: i64) -> Result<(), Page> {
    if v.role() != Role::Owner {
        return Ok(());
    }
    if state
        .store
        .owns_app(v.account.account_id, AppId(app_id))
        .await
        .map_err(store_failed)?
    {
        Ok(())
    } else {
        Err(Page::not_found(v, &format!("Mini program {app_id}")))
    }
}

#[derive(Template)]
#[template(path = "console/app.html")]
struct AppPage {
    layout: Layout,
    app_id: i64,
    wx_appid: String,
    tp_id: i64,
    tp_name: String,
    online: String,
    owner_set: bool,
    can_revoke: bool,
    name_audited: bool,
    category_audited: bool,
    authenticity_certified: bool,
    packages: Vec<(i64, String, &'static str, String)>,
    timeline: Vec<Event>,
    health: super::health::HealthSection,
}

pub async fn page(State(state): State<AppState>, v: Viewer, Path(app_id): Path<i64>) -> PageResult {
    may_see(&state, &v, app_id).await?;
    let app = state
        .store
        .get_app(AppId(app_id))
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Page::not_found(&v, &format!("Mini program {app_id}")))?;
    let tp = match app.tp_id {
        Some(id) => state.store.get_tp(id).await.map_err(store_failed)?,
        None => None,
    };
    let packages = state
        .store
        .list_packages(PackageFilter {
            app_id: Some(AppId(app_id)),
            limit: Some(100),
            ..PackageFilter::default()
        })
        .await
        .map_err(store_failed)?;
    let online = packages
        .iter()
        .find(|p| p.state.wire_status().map(|w| w.code()) == Some(6))
        .map(|p| p.version.clone())
        .unwrap_or_default();
    let log = state
        .store
        .app_log(AppId(app_id), 200)
        .await
        .map_err(store_failed)?;
    let health = super::health::section(&state, AppId(app_id), v.role())
        .await
        .map_err(|e| Page::refused(&v, e))?;
    Ok(Page::ok(&AppPage {
        health,
        layout: v.layout(app.name.clone(), "apps"),
        app_id,
        wx_appid: app.wx_appid.clone(),
        tp_id: tp.as_ref().map(|t| t.tp_id.get()).unwrap_or_default(),
        tp_name: tp.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
        online,
        owner_set: app.owner_credential_set,
        can_revoke: tp.is_some() && matches!(v.role(), Role::Operator | Role::Owner),
        name_audited: app.name_audited,
        category_audited: app.category_audited,
        authenticity_certified: app.authenticity_certified,
        packages: packages
            .iter()
            .map(|p| {
                (
                    p.package_id.get(),
                    p.version.clone(),
                    p.state.as_str(),
                    super::when(&state, p.updated_at_ms),
                )
            })
            .collect(),
        timeline: log.iter().map(|e| event(&state, e)).collect(),
    }))
}

/// Checkboxes: present ("on") when ticked, absent otherwise.
#[derive(Deserialize)]
pub struct GatesForm {
    name_audited: Option<String>,
    category_audited: Option<String>,
    authenticity_certified: Option<String>,
}

pub async fn gates(
    State(state): State<AppState>,
    Path(app_id): Path<i64>,
    p: Posted<GatesForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator])?;
    let patch = AppPatch {
        name: None,
        name_audited: Some(p.form.name_audited.is_some()),
        category_audited: Some(p.form.category_audited.is_some()),
        authenticity_certified: Some(p.form.authenticity_certified.is_some()),
    };
    application::patch_app(&state, AppId(app_id), patch)
        .await
        .map_err(|e| Page::refused(v, e))?;
    tracing::info!(by = %v.account.name, app_id, "console: gates changed");
    Ok(Page::Redirect(format!("/console/apps/{app_id}")))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    tp_id: i64,
    #[serde(default)]
    confirm: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(app_id): Path<i64>,
    p: Posted<RevokeForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator, Role::Owner])?;
    may_see(&state, v, app_id).await?;
    Page::unless_confirmed(v, &p.form.confirm, "ending the authorization")?;
    application::revoke(&state, TpId(p.form.tp_id), AppId(app_id))
        .await
        .map_err(|e| Page::refused(v, e))?;
    tracing::info!(by = %v.account.name, app_id, tp_id = p.form.tp_id, "console: authorization revoked");
    Ok(Page::Redirect(format!("/console/apps/{app_id}")))
}

#[derive(Deserialize)]
pub struct ClaimForm {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    owner_password: String,
}

/// An owner adds a mini program to its account by proving it holds the owner credential
/// (throttled exactly as the authorization page's checks of that credential).
pub async fn claim(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    p: Posted<ClaimForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Owner])?;
    let wrong = || {
        Page::message(
            v,
            StatusCode::UNAUTHORIZED,
            "Not added",
            "The mini program id or owner password is wrong.",
        )
    };
    let Ok(app_id) = p.form.app_id.trim().parse::<i64>() else {
        return Err(wrong());
    };
    let client = peer.map(|Extension(ConnectInfo(a))| a.ip());
    let check = application::check_owner_credential(
        &state,
        AppId(app_id),
        p.form.owner_password.clone(),
        client,
    )
    .await
    .map_err(|e| Page::refused(v, e))?;
    match check {
        application::OwnerCheck::Accepted => {}
        application::OwnerCheck::Wrong => return Err(wrong()),
        application::OwnerCheck::Locked(left) => {
            return Err(Page::message(
                v,
                StatusCode::TOO_MANY_REQUESTS,
                "Not added",
                &super::try_again_in(left),
            ))
        }
    }
    state
        .store
        .add_owned_apps(v.account.account_id, vec![AppId(app_id)])
        .await
        .map_err(store_failed)?;
    tracing::info!(by = %v.account.name, app_id, "console: owner added a mini program");
    Ok(Page::Redirect(format!("/console/apps/{app_id}")))
}
