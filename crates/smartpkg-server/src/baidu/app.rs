//! A mini program's runtime settings that its third party changes (spec §7): pause and
//! resume, the server and web-view domains (and the third party's registered defaults), and
//! the minimum host runtime version. Devices get them through the runtime channel
//! which is told of every change at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use smartpkg_core::runtime::{check_domain, DomainKind};
use smartpkg_store::{Domains, RuntimeSettings};
use smartpkg_types::{
    call, AppDomains, Errno, ModifyDomainRequest, ModifyWebviewDomainRequest, SupportVersions,
    TpDomains, VersionItem,
};

use super::{done, Answer, Call, Data, Reply};
use crate::state::AppState;

/// Longest allow-list: Baidu documents none; 200 keeps a settings row small.
const MAX_DOMAINS: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Add,
    Delete,
    Set,
    Get,
}

fn action(given: Option<&str>) -> Result<Option<Action>, Reply> {
    match given.map(str::trim) {
        None => Ok(None),
        Some("add") => Ok(Some(Action::Add)),
        Some("delete") => Ok(Some(Action::Delete)),
        Some("set") => Ok(Some(Action::Set)),
        Some("get") => Ok(Some(Action::Get)),
        Some(other) => Err(Reply::err_msg(
            Errno::ParamError,
            format!("action is add, delete, set or get, not {other:?}"),
        )),
    }
}

/// A comma-separated list parameter, each entry checked; None when absent.
fn list(given: Option<&str>, name: &str, kind: DomainKind) -> Result<Option<Vec<String>>, Reply> {
    let Some(raw) = given else {
        return Ok(None);
    };
    let mut out: Vec<String> = vec![];
    for d in raw.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        check_domain(kind, d)
            .map_err(|why| Reply::err_msg(Errno::ParamError, format!("{name}: {why}")))?;
        let d = d.to_ascii_lowercase();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.len() > MAX_DOMAINS {
        return Err(Reply::err_msg(
            Errno::ParamError,
            format!("{name} has more than {MAX_DOMAINS} domains"),
        ));
    }
    Ok(Some(out))
}

/// Applies one action to one list; false when the result would be too long (then unchanged).
fn apply(list: &mut Vec<String>, action: Action, given: &[String]) -> bool {
    let mut next = list.clone();
    match action {
        Action::Add => {
            for d in given {
                if !next.contains(d) {
                    next.push(d.clone());
                }
            }
        }
        Action::Delete => next.retain(|d| !given.contains(d)),
        Action::Set => next = given.to_vec(),
        Action::Get => {}
    }
    if next.len() > MAX_DOMAINS {
        return false;
    }
    *list = next;
    true
}

fn joined(v: &[String]) -> String {
    v.join(",")
}

fn app_domains(d: &Domains) -> AppDomains {
    AppDomains {
        request_domain: joined(&d.request_domain),
        upload_domain: joined(&d.upload_domain),
        download_domain: joined(&d.download_domain),
        socket_domain: joined(&d.socket_domain),
    }
}

fn tp_domains(d: &Domains) -> TpDomains {
    TpDomains {
        request_domain: d.request_domain.clone(),
        upload_domain: d.upload_domain.clone(),
        download_domain: d.download_domain.clone(),
        socket_domain: d.socket_domain.clone(),
    }
}

/// The four server-domain lists a call gives, with the list each one edits.
type ServerLists = [(Option<Vec<String>>, fn(&mut Domains) -> &mut Vec<String>); 4];

fn server_lists(r: &ModifyDomainRequest) -> Result<ServerLists, Reply> {
    let https = DomainKind::Https;
    Ok([
        (
            list(r.request_domain.as_deref(), "request_domain", https)?,
            |d| &mut d.request_domain,
        ),
        (
            list(r.upload_domain.as_deref(), "upload_domain", https)?,
            |d| &mut d.upload_domain,
        ),
        (
            list(r.download_domain.as_deref(), "download_domain", https)?,
            |d| &mut d.download_domain,
        ),
        (
            list(
                r.socket_domain.as_deref(),
                "socket_domain",
                DomainKind::Socket,
            )?,
            |d| &mut d.socket_domain,
        ),
    ])
}

fn web_view_list(r: &ModifyWebviewDomainRequest) -> Result<Vec<String>, Reply> {
    list(
        r.web_view_domain.as_deref(),
        "web_view_domain",
        DomainKind::Https,
    )?
    .ok_or_else(|| Reply::err_msg(Errno::ParamError, "web_view_domain is required"))
}

fn too_many() -> Reply {
    Reply::err_msg(
        Errno::ParamError,
        format!("a domain list holds at most {MAX_DOMAINS} domains"),
    )
}

/// An edit for the store that either applies whole or (when `edit` says the result would not
/// fit) leaves the value as it was; the flag tells which.
type Guarded<T> = (Box<dyn FnOnce(&mut T) + Send>, Arc<AtomicBool>);

fn guarded<T: Clone + 'static>(edit: impl FnOnce(&mut T) -> bool + Send + 'static) -> Guarded<T> {
    let fits = Arc::new(AtomicBool::new(true));
    let flag = fits.clone();
    let apply = Box::new(move |v: &mut T| {
        let before = v.clone();
        if !edit(v) {
            *v = before;
            flag.store(false, Ordering::SeqCst);
        }
    });
    (apply, fits)
}

/// Refuses an edit whose result did not fit (and so was not applied).
fn fitted(fits: &AtomicBool) -> Result<(), Reply> {
    if fits.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(too_many())
    }
}

async fn settings_of(state: &AppState, app_id: i64) -> Result<RuntimeSettings, Reply> {
    state
        .store
        .runtime_settings(app_id)
        .await?
        .ok_or_else(|| Reply::err(Errno::AppNotFound))
}

/// Applies `edit` to the mini program's settings, refreshes what devices see, and answers
/// the settings after the edit.
async fn edit_settings(
    state: &AppState,
    app_id: i64,
    edit: impl FnOnce(&mut RuntimeSettings) -> bool + Send + 'static,
) -> Result<RuntimeSettings, Reply> {
    let (apply, fits) = guarded(edit);
    let settings = state
        .store
        .update_runtime_settings(app_id, apply)
        .await?
        .ok_or_else(|| Reply::err(Errno::AppNotFound))?;
    state.app_caches.app_changed(app_id);
    fitted(&fits)?;
    Ok(settings)
}

pub async fn pause(state: AppState, call: Call<call::Pause>) -> Answer {
    let grant = call.app(&state).await?;
    edit_settings(&state, grant.app_id, |s| {
        s.paused = true;
        true
    })
    .await?;
    done()
}

pub async fn resume(state: AppState, call: Call<call::Resume>) -> Answer {
    let grant = call.app(&state).await?;
    edit_settings(&state, grant.app_id, |s| {
        s.paused = false;
        true
    })
    .await?;
    done()
}

pub async fn modifydomain(state: AppState, call: Call<call::ModifyDomain>) -> Answer<AppDomains> {
    let grant = call.app(&state).await?;
    let req = call.request()?;
    let action = action(req.action.as_deref())?;
    if action == Some(Action::Get) {
        let s = settings_of(&state, grant.app_id).await?;
        return Ok(Data(app_domains(&s.domains)));
    }
    let lists = match action {
        // No action: the third party's registered server domains are added.
        None => {
            let tp = state
                .store
                .tp_domains(grant.tp_id)
                .await?
                .unwrap_or_default();
            [
                (
                    Some(tp.request_domain),
                    (|d| &mut d.request_domain) as fn(&mut Domains) -> &mut Vec<String>,
                ),
                (Some(tp.upload_domain), |d| &mut d.upload_domain),
                (Some(tp.download_domain), |d| &mut d.download_domain),
                (Some(tp.socket_domain), |d| &mut d.socket_domain),
            ]
        }
        Some(_) => server_lists(&req)?,
    };
    if action.is_some() && lists.iter().all(|(given, _)| given.is_none()) {
        return Err(Reply::err_msg(
            Errno::ParamError,
            "give at least one of request_domain, upload_domain, download_domain, socket_domain",
        ));
    }
    let act = action.unwrap_or(Action::Add);
    let s = edit_settings(&state, grant.app_id, move |s| {
        lists.iter().all(|(given, field)| match given {
            Some(g) => apply(field(&mut s.domains), act, g),
            None => true,
        })
    })
    .await?;
    Ok(Data(app_domains(&s.domains)))
}

pub async fn modifywebviewdomain(
    state: AppState,
    call: Call<call::ModifyWebviewDomain>,
) -> Answer<String> {
    let grant = call.app(&state).await?;
    let req = call.request()?;
    let action = action(req.action.as_deref())?;
    if action == Some(Action::Get) {
        let s = settings_of(&state, grant.app_id).await?;
        return Ok(Data(joined(&s.domains.web_view_domain)));
    }
    let given = match action {
        None => {
            let tp = state
                .store
                .tp_domains(grant.tp_id)
                .await?
                .unwrap_or_default();
            tp.web_view_domain
        }
        Some(_) => web_view_list(&req)?,
    };
    let act = action.unwrap_or(Action::Add);
    let s = edit_settings(&state, grant.app_id, move |s| {
        apply(&mut s.domains.web_view_domain, act, &given)
    })
    .await?;
    Ok(Data(joined(&s.domains.web_view_domain)))
}

pub async fn getsupportversion(
    state: AppState,
    call: Call<call::GetSupportVersion>,
) -> Answer<SupportVersions> {
    let grant = call.app(&state).await?;
    let s = settings_of(&state, grant.app_id).await?;
    Ok(Data(SupportVersions {
        now_version: s.min_runtime_version,
        items: state
            .settings
            .runtime_versions
            .iter()
            .map(|v| VersionItem { version: v.clone() })
            .collect(),
    }))
}

/// `setsupportversion` (smartpkg's extension, as WeChat's `setweappsupportversion`).
pub async fn setsupportversion(state: AppState, call: Call<call::SetSupportVersion>) -> Answer {
    let grant = call.app(&state).await?;
    let version = call.request()?.version.trim().to_string();
    let choices = &state.settings.runtime_versions;
    if !choices.contains(&version) {
        return Err(Reply::err_msg(
            Errno::ParamError,
            format!("version is one of {}, not {version:?}", choices.join(", ")),
        ));
    }
    edit_settings(&state, grant.app_id, move |s| {
        s.min_runtime_version = version;
        true
    })
    .await?;
    done()
}

async fn edit_tp(
    state: &AppState,
    tp_id: i64,
    edit: impl FnOnce(&mut Domains) -> bool + Send + 'static,
) -> Result<Domains, Reply> {
    let (apply, fits) = guarded(edit);
    let d = state
        .store
        .update_tp_domains(tp_id, apply)
        .await?
        .ok_or_else(|| Reply::err(Errno::NoTpPermission))?;
    fitted(&fits)?;
    Ok(d)
}

pub async fn tp_modifydomain(
    state: AppState,
    call: Call<call::TpModifyDomain>,
) -> Answer<TpDomains> {
    let tp_id = call.tp(&state).await?;
    let req = call.request()?;
    let action = action(req.action.as_deref())?.unwrap_or(Action::Add);
    if action == Action::Get {
        let d = state.store.tp_domains(tp_id).await?.unwrap_or_default();
        return Ok(Data(tp_domains(&d)));
    }
    let lists = server_lists(&req)?;
    let d = edit_tp(&state, tp_id, move |d| {
        lists.iter().all(|(given, field)| match given {
            Some(g) => apply(field(d), action, g),
            None => true,
        })
    })
    .await?;
    Ok(Data(tp_domains(&d)))
}

pub async fn tp_modifywebviewdomain(
    state: AppState,
    call: Call<call::TpModifyWebviewDomain>,
) -> Answer<Vec<String>> {
    let tp_id = call.tp(&state).await?;
    let req = call.request()?;
    let action = action(req.action.as_deref())?.unwrap_or(Action::Add);
    if action == Action::Get {
        let d = state.store.tp_domains(tp_id).await?.unwrap_or_default();
        return Ok(Data(d.web_view_domain));
    }
    let given = web_view_list(&req)?;
    let d = edit_tp(&state, tp_id, move |d| {
        apply(&mut d.web_view_domain, action, &given)
    })
    .await?;
    Ok(Data(d.web_view_domain))
}
