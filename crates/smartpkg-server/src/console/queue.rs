//! The audit queue, a package's page (files, merged app.json, diffs, timeline) and the
//! decision.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use smartpkg_core::ids::PackageId;
use smartpkg_core::lifecycle::PkgState;
use smartpkg_core::review::{self, DiffLine};
use smartpkg_store::{PackageRecord, Role};

use super::pages::{event, Event};
use super::signin::PageQuery;
use super::{store_failed, Layout, Page, PageResult, Pager, Posted, Viewer, PAGE_SIZE};
use crate::state::AppState;
use crate::{application, clock};

/// Largest file the console renders.
const MAX_SHOWN_FILE: u64 = 256 << 10;

pub struct QueueRow {
    package_id: i64,
    app_id: i64,
    app_name: String,
    tp_name: String,
    template_id: i64,
    template_version: String,
    version: String,
    version_desc: String,
    waiting: String,
    test_account: String,
}

#[derive(Template)]
#[template(path = "console/queue.html")]
struct QueuePage {
    layout: Layout,
    total: i64,
    items: Vec<QueueRow>,
    pager: Pager,
}

pub async fn list(
    State(state): State<AppState>,
    v: Viewer,
    Query(q): Query<PageQuery>,
) -> PageResult {
    v.require(&[Role::Operator, Role::Reviewer])?;
    let page = super::page_number(q.page.as_deref());
    let (total, items) = state
        .store
        .audit_queue((page - 1) * PAGE_SIZE, PAGE_SIZE)
        .await
        .map_err(store_failed)?;
    let now = clock::now_ms();
    let items = items
        .into_iter()
        .map(|i| QueueRow {
            waiting: super::age(now, i.submitted_at_ms),
            test_account: i.test_account.unwrap_or_default(),
            package_id: i.package_id.get(),
            app_id: i.app_id.get(),
            app_name: i.app_name,
            tp_name: i.tp_name,
            template_id: i.template_id.get(),
            template_version: i.template_version,
            version: i.version,
            version_desc: i.version_desc,
        })
        .collect();
    Ok(Page::ok(&QueuePage {
        layout: v.layout("Audit queue", "queue"),
        total,
        items,
        pager: Pager::new("/console/queue", &[], page, page * PAGE_SIZE < total),
    }))
}

/// The package, if the viewer may see it: operators and reviewers every one, owners their
/// own mini programs' only (others look like missing: an owner learns nothing of them).
async fn visible(state: &AppState, v: &Viewer, id: i64) -> Result<PackageRecord, Page> {
    let p = state
        .store
        .get_package(PackageId(id))
        .await
        .map_err(store_failed)?
        .ok_or_else(|| Page::not_found(v, &format!("Package {id}")))?;
    if v.role() == Role::Owner
        && !state
            .store
            .owns_app(v.account.account_id, p.app_id)
            .await
            .map_err(store_failed)?
    {
        return Err(Page::not_found(v, &format!("Package {id}")));
    }
    Ok(p)
}

#[derive(Template)]
#[template(path = "console/package.html")]
struct PackagePage {
    layout: Layout,
    package_id: i64,
    app_id: i64,
    app_name: String,
    tp_name: String,
    template_id: i64,
    template_version: String,
    version: String,
    version_desc: String,
    state: &'static str,
    status: String,
    uploaded: String,
    msg: String,
    error: String,
    test_account: String,
    test_password: String,
    audit_content: String,
    remark: String,
    can_decide: bool,
    files: Vec<FileLink>,
    template_note: String,
    app_diff: Vec<(&'static str, String)>,
    ext_diff: Vec<(&'static str, String)>,
    timeline: Vec<Event>,
    /// The package has more entries than the page shows (only the newest are read).
    timeline_cut: bool,
    /// Its mini program's release health, for a package devices run (online or staged).
    health: Option<super::health::HealthSection>,
}

/// The newest log entries a package's page shows. A package changes state a handful of
/// times per submission, so only one resubmitted for months reaches this.
const TIMELINE_ENTRIES: usize = 500;

fn diff_rows(old: &str, new: &str) -> Vec<(&'static str, String)> {
    review::line_diff(old, new)
        .into_iter()
        .map(|l| match l {
            DiffLine::Same(s) => ("", format!("  {s}")),
            DiffLine::Added(s) => ("add", format!("+ {s}")),
            DiffLine::Removed(s) => ("del", format!("- {s}")),
        })
        .collect()
}

fn utf8(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.and_then(|b| String::from_utf8(b).ok())
}

pub async fn package(State(state): State<AppState>, v: Viewer, Path(id): Path<i64>) -> PageResult {
    let p = visible(&state, &v, id).await?;
    let app = state.store.get_app(p.app_id).await.map_err(store_failed)?;
    let tp = state.store.get_tp(p.tp_id).await.map_err(store_failed)?;
    let template = state
        .store
        .get_template(p.template_id)
        .await
        .map_err(store_failed)?;
    let (mut files, mut app_diff, mut ext_diff, mut template_note) =
        (vec![], vec![], vec![], String::new());
    match crate::workers::template_bytes(&state, p.template_id.get()).await {
        Ok((bytes, manifest)) => {
            files = manifest.files.iter().map(|f| FileLink::new(f)).collect();
            let read = |path: &str| {
                smartpkg_core::archive::read_entry(&bytes, &manifest, path, MAX_SHOWN_FILE)
                    .ok()
                    .flatten()
            };
            let template_ext = utf8(read("ext.json")).unwrap_or_else(|| "{}".into());
            let built = p
                .built_ext_json
                .clone()
                .unwrap_or_else(|| p.ext_json.clone());
            if let Some(app_json) = utf8(read("app.json")) {
                app_diff = diff_rows(
                    &review::pretty_json(&app_json),
                    &review::merged_app_json(&app_json, &built),
                );
            }
            ext_diff = diff_rows(
                &review::pretty_json(&template_ext),
                &review::pretty_json(&built),
            );
        }
        Err(e) => {
            tracing::warn!(package_id = id, error = %e, "console: template unreadable");
            template_note = format!("The template's files cannot be read: {e}");
        }
    }
    let log = state
        .store
        .package_log(PackageId(id), TIMELINE_ENTRIES as i64 + 1)
        .await
        .map_err(store_failed)?;
    let timeline_cut = log.len() > TIMELINE_ENTRIES;
    let timeline = log
        .iter()
        .take(TIMELINE_ENTRIES)
        .map(|e| event(&state, e))
        .collect();
    let can_decide =
        p.state == PkgState::Auditing && matches!(v.role(), Role::Operator | Role::Reviewer);
    let runs_on_devices = p.staged_percent.is_some()
        || p.stage_plan.is_some()
        || p.state.slot() == Some(smartpkg_core::lifecycle::Slot::Online);
    let health = match runs_on_devices {
        true => Some(
            super::health::section(&state, p.app_id, v.role())
                .await
                .map_err(|e| Page::refused(&v, e))?,
        ),
        false => None,
    };
    let page = PackagePage {
        health,
        layout: v.layout(format!("Package #{id}"), "queue"),
        package_id: id,
        app_id: p.app_id.get(),
        app_name: app.map(|a| a.name).unwrap_or_default(),
        tp_name: tp.map(|t| t.name).unwrap_or_default(),
        template_id: p.template_id.get(),
        template_version: template.map(|t| t.user_version).unwrap_or_default(),
        version: p.version.clone(),
        version_desc: p.version_desc.clone(),
        state: p.state.as_str(),
        status: p
            .state
            .wire_status()
            .map(|w| w.code().to_string())
            .unwrap_or_default(),
        uploaded: super::when(&state, p.commit_time_ms),
        msg: p.msg.clone(),
        error: p.upload_err_msg.clone().unwrap_or_default(),
        test_account: p.test_account.clone().unwrap_or_default(),
        test_password: p.test_password.clone().unwrap_or_default(),
        audit_content: p.audit_content.clone().unwrap_or_default(),
        remark: p.remark.clone(),
        can_decide,
        files,
        template_note,
        app_diff,
        ext_diff,
        timeline,
        timeline_cut,
    };
    Ok(Page::ok(&page))
}

/// A template file in the package page's tree: its name as shown, and its link.
struct FileLink {
    name: String,
    /// The path with every segment percent-encoded: a name may hold `?`, `#`, `%`, spaces or
    /// any character, and the link must reach that file, not a query or a fragment of it.
    href: String,
}

/// Everything but RFC 3986's unreserved characters is encoded within a segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl FileLink {
    fn new(path: &str) -> FileLink {
        let href = path
            .split('/')
            .map(|seg| percent_encoding::utf8_percent_encode(seg, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/");
        FileLink {
            name: path.to_string(),
            href,
        }
    }
}

#[derive(Template)]
#[template(path = "console/file.html")]
struct FilePage {
    layout: Layout,
    package_id: i64,
    size: usize,
    text: String,
    note: String,
}

pub async fn file(
    State(state): State<AppState>,
    v: Viewer,
    Path((id, path)): Path<(i64, String)>,
) -> PageResult {
    let p = visible(&state, &v, id).await?;
    let (bytes, manifest) = crate::workers::template_bytes(&state, p.template_id.get())
        .await
        .map_err(|e| Page::message(&v, StatusCode::SERVICE_UNAVAILABLE, "Unreadable", &e))?;
    if !manifest.has_file(&path) {
        return Err(Page::not_found(&v, &format!("File {path}")));
    }
    let (size, text, note) =
        match smartpkg_core::archive::read_entry(&bytes, &manifest, &path, MAX_SHOWN_FILE) {
            Ok(Some(b)) => {
                let n = b.len();
                match String::from_utf8(b) {
                    Ok(t) if !t.is_empty() => (n, t, String::new()),
                    Ok(_) => (n, String::new(), "The file is empty.".into()),
                    Err(_) => (n, String::new(), "A binary file: not shown.".into()),
                }
            }
            Ok(None) => return Err(Page::not_found(&v, &format!("File {path}"))),
            Err(e) => (0, String::new(), format!("Not shown: {e}.")),
        };
    Ok(Page::ok(&FilePage {
        layout: v.layout(path, "queue"),
        package_id: id,
        size,
        text,
        note,
    }))
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    result: String,
    #[serde(default)]
    reason: String,
}

pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    p: Posted<DecideForm>,
) -> PageResult {
    let v = &p.viewer;
    v.require(&[Role::Operator, Role::Reviewer])?;
    let pass = match p.form.result.as_str() {
        "pass" => true,
        "fail" => false,
        _ => {
            return Err(Page::message(
                v,
                StatusCode::BAD_REQUEST,
                "Cannot do that",
                "result must be pass or fail",
            ))
        }
    };
    application::decide_audit(&state, PackageId(id), pass, &p.form.reason, v.actor())
        .await
        .map_err(|e| Page::refused(v, e))?;
    tracing::info!(by = %v.account.name, package_id = id, pass, "console: audit decided");
    Ok(Page::Redirect(format!("/console/packages/{id}")))
}

#[cfg(test)]
mod tests {
    use super::FileLink;

    #[test]
    fn file_links_encode_every_segment_so_each_name_reaches_its_file() {
        for (name, href) in [
            (
                "pages/index/q?x=1#frag.js",
                "pages/index/q%3Fx%3D1%23frag.js",
            ),
            ("a b/100%.js", "a%20b/100%25.js"),
            ("页面/首页.js", "%E9%A1%B5%E9%9D%A2/%E9%A6%96%E9%A1%B5.js"),
            ("app.json", "app.json"),
        ] {
            assert_eq!(FileLink::new(name).href, href);
        }
    }
}
