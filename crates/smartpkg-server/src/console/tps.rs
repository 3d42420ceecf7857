//! Third parties: the list, one third party's URLs, keys (rotated with the new keys shown
//! once), templates and drafts with their sizes, and the mini programs authorized to it.

use askama::Template;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use smartpkg_core::ids::TpId;
use smartpkg_store::{AppQuery, Role, Tp};

use super::signin::PageQuery;
use super::{store_failed, Layout, Page, PageResult, Pager, Posted, Viewer, PAGE_SIZE};
use crate::application;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/tps.html")]
struct TpsPage {
    layout: Layout,
    total: i64,
    tps: Vec<Tp>,
    pager: Pager,
}

pub async fn list(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<PageQuery>,
) -> PageResult {
    v.require(&[Role::Operator])?;
    let page = super::page_number(q.page.as_deref());
    let (total, tps) = state
        .store
        .list_tps((page - 1) * PAGE_SIZE, PAGE_SIZE)
        .await
        .map_err(store_failed)?;
    Ok(Page::ok(&TpsPage {
        layout: v.layout("Third parties", "tps"),
        total,
        tps,
        pager: Pager::new("/console/tps", &[], page, page * PAGE_SIZE < total),
    }))
}

type Row5 = (i64, String, String, String, String);

#[derive(Template)]
#[template(path = "console/tp.html")]
struct TpPage {
    layout: Layout,
    tp_id: i64,
    client_id: String,
    event_url: String,
    auth_event_url: String,
    redirect_domain: String,
    quota: String,
    component_appid: String,
    wechat_auth_event_url: String,
    wechat_message_url: String,
    wechat_token_hint: String,
    wechat_key_hint: String,
    token_hint: String,
    key_hint: String,
    new_token: String,
    new_key: String,
    new_wechat_token: String,
    new_wechat_key: String,
    template_total: i64,
    templates: Vec<Row5>,
    draft_total: i64,
    drafts: Vec<Row5>,
    apps: Vec<(i64, String, String)>,
    apps_more: bool,
}

/// A secret as the page shows it after its one showing: its last four characters.
fn hint(secret: &str) -> String {
    let n = secret.chars().count();
    let tail: String = secret.chars().skip(n.saturating_sub(4)).collect();
    format!("…{tail} ({n} characters)")
}

fn size_text(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
        None => "missing".into(),
    }
}

async fn tp_page(state: &AppState, v: &Viewer, tp: Tp, fresh: bool) -> PageResult {
    let tp_id = tp.tp_id;
    let (template_total, templates) = state
        .store
        .list_templates(tp_id, 0, 100)
        .await
        .map_err(store_failed)?;
    let (draft_total, drafts) = state
        .store
        .list_drafts(tp_id, 0, 100)
        .await
        .map_err(store_failed)?;
    let mut t_rows = vec![];
    for t in templates {
        let size = state.blobs.size(&t.blob_sha256).await.ok();
        t_rows.push((
            t.template_id.get(),
            t.user_version,
            t.user_desc,
            size_text(size),
            super::when(state, t.create_time * 1000),
        ));
    }
    let mut d_rows = vec![];
    for d in drafts {
        let size = state.blobs.size(&d.blob_sha256).await.ok();
        d_rows.push((
            d.draft_id,
            d.user_version,
            d.user_desc,
            size_text(size),
            super::when(state, d.create_time * 1000),
        ));
    }
    let query = AppQuery {
        tp_id: Some(tp_id),
        ..AppQuery::default()
    };
    let (apps, apps_more) = state
        .store
        .search_apps(query, 0, PAGE_SIZE)
        .await
        .map_err(store_failed)?;
    Ok(Page::ok(&TpPage {
        layout: v.layout(tp.name.clone(), "tps"),
        tp_id: tp_id.get(),
        client_id: tp.client_id.clone(),
        event_url: tp.event_url.clone(),
        auth_event_url: tp.auth_event_url.clone(),
        redirect_domain: tp.redirect_domain.clone(),
        component_appid: tp.wechat.component_appid.clone(),
        wechat_auth_event_url: tp.wechat.auth_event_url.clone(),
        wechat_message_url: tp.wechat.message_url.clone(),
        wechat_token_hint: hint(&tp.wechat.token),
        wechat_key_hint: hint(&tp.wechat.encoding_aes_key),
        quota: match tp.audit_quota {
            None => "the server's default".into(),
            Some(-1) => "unlimited".into(),
            Some(n) => n.to_string(),
        },
        token_hint: hint(&tp.msg_token),
        key_hint: hint(&tp.encoding_aes_key),
        new_token: if fresh {
            tp.msg_token.clone()
        } else {
            String::new()
        },
        new_key: if fresh {
            tp.encoding_aes_key.clone()
        } else {
            String::new()
        },
        new_wechat_token: if fresh {
            tp.wechat.token.clone()
        } else {
            String::new()
        },
        new_wechat_key: if fresh {
            tp.wechat.encoding_aes_key.clone()
        } else {
            String::new()
        },
        template_total,
        templates: t_rows,
        draft_total,
        drafts: d_rows,
        apps: apps
            .into_iter()
            .map(|r| {
                (
                    r.app.app_id.get(),
                    r.app.name,
                    r.online_version.unwrap_or_default(),
                )
            })
            .collect(),
        apps_more,
    }))
}

pub async fn page(State(state): State<AppState>, v: Viewer, Path(tp_id): Path<i64>) -> PageResult {
    v.require(&[Role::Operator])?;
    let tp = state
        .store
        .get_tp(TpId(tp_id))
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Page::not_found(&v, &format!("Third party {tp_id}")))?;
    tp_page(&state, &v, tp, false).await
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

pub async fn rotate(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
    p: Posted<ConfirmForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator])?;
    Page::unless_confirmed(v, &p.form.confirm, "replacing the push keys")?;
    let tp = application::rotate_tp_keys(&state, TpId(tp_id))
        .await
        .map_err(|e| Page::refused(v, e))?;
    tracing::info!(by = %v.account.name, tp_id, "console: push keys rotated");
    tp_page(&state, v, tp, true).await
}
