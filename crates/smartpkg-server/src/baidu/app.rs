//! A mini program's runtime settings that its third party changes (spec §7): pause and
//! resume, the server and web-view domains (and the third party's registered defaults), and
//! the minimum host runtime version. Devices get them through the runtime channel
//! which is told of every change at once.

use smartpkg_core::ids::TpId;
use smartpkg_core::runtime::DomainKind;
use smartpkg_store::Domains;
use smartpkg_types::{
    call, AppDomains, Errno, ModifyDomainRequest, ModifyWebviewDomainRequest, SupportVersions,
    TpDomains, VersionItem,
};

use super::{done, Answer, Call, Data, Params, Reply};
use crate::application::{self, apply_domains, domain_list, DomainAction};
use crate::state::AppState;

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
            domain_list(r.request_domain.as_deref(), "request_domain", https)?,
            |d| &mut d.request_domain,
        ),
        (
            domain_list(r.upload_domain.as_deref(), "upload_domain", https)?,
            |d| &mut d.upload_domain,
        ),
        (
            domain_list(r.download_domain.as_deref(), "download_domain", https)?,
            |d| &mut d.download_domain,
        ),
        (
            domain_list(
                r.socket_domain.as_deref(),
                "socket_domain",
                DomainKind::Socket,
            )?,
            |d| &mut d.socket_domain,
        ),
    ])
}

/// A list given blank (`request_domain=`) is an empty list, which `set` makes the list: the
/// decoder reads a blank value as absent, so the raw parameters say which were given at all.
fn given_blank(params: &Params, name: &str, field: &mut Option<String>) {
    if field.is_none() && params.0.contains_key(name) {
        *field = Some(String::new());
    }
}

fn server_lists_given(params: &Params, mut r: ModifyDomainRequest) -> ModifyDomainRequest {
    given_blank(params, "request_domain", &mut r.request_domain);
    given_blank(params, "upload_domain", &mut r.upload_domain);
    given_blank(params, "download_domain", &mut r.download_domain);
    given_blank(params, "socket_domain", &mut r.socket_domain);
    r
}

fn web_view_given(
    params: &Params,
    mut r: ModifyWebviewDomainRequest,
) -> ModifyWebviewDomainRequest {
    given_blank(params, "web_view_domain", &mut r.web_view_domain);
    r
}

fn web_view_list(r: &ModifyWebviewDomainRequest) -> Result<Vec<String>, Reply> {
    domain_list(
        r.web_view_domain.as_deref(),
        "web_view_domain",
        DomainKind::Https,
    )?
    .ok_or_else(|| Reply::err_msg(Errno::ParamError, "web_view_domain is required"))
}

pub async fn pause(state: AppState, call: Call<call::Pause>) -> Answer {
    let grant = call.app(&state).await?;
    application::edit_app_settings(&state, grant.app_id, |s| {
        s.paused = true;
        true
    })
    .await?;
    done()
}

pub async fn resume(state: AppState, call: Call<call::Resume>) -> Answer {
    let grant = call.app(&state).await?;
    application::edit_app_settings(&state, grant.app_id, |s| {
        s.paused = false;
        true
    })
    .await?;
    done()
}

pub async fn modifydomain(state: AppState, call: Call<call::ModifyDomain>) -> Answer<AppDomains> {
    let grant = call.app(&state).await?;
    let req = server_lists_given(&call.params, call.request()?);
    let action = DomainAction::parse(req.action.as_deref())?;
    if action == Some(DomainAction::Get) {
        let s = application::app_settings(&state, grant.app_id).await?;
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
    let act = action.unwrap_or(DomainAction::Add);
    let s = application::edit_app_settings(&state, grant.app_id, move |s| {
        lists.iter().all(|(given, field)| match given {
            Some(g) => apply_domains(field(&mut s.domains), act, g),
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
    let req = web_view_given(&call.params, call.request()?);
    let action = DomainAction::parse(req.action.as_deref())?;
    if action == Some(DomainAction::Get) {
        let s = application::app_settings(&state, grant.app_id).await?;
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
    let act = action.unwrap_or(DomainAction::Add);
    let s = application::edit_app_settings(&state, grant.app_id, move |s| {
        apply_domains(&mut s.domains.web_view_domain, act, &given)
    })
    .await?;
    Ok(Data(joined(&s.domains.web_view_domain)))
}

pub async fn getsupportversion(
    state: AppState,
    call: Call<call::GetSupportVersion>,
) -> Answer<SupportVersions> {
    let grant = call.app(&state).await?;
    let s = application::app_settings(&state, grant.app_id).await?;
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
    application::edit_app_settings(&state, grant.app_id, move |s| {
        s.min_runtime_version = version;
        true
    })
    .await?;
    done()
}

pub async fn tp_modifydomain(
    state: AppState,
    call: Call<call::TpModifyDomain>,
) -> Answer<TpDomains> {
    let tp_id = call.tp(&state).await?;
    let req = server_lists_given(&call.params, call.request()?);
    let action = DomainAction::parse(req.action.as_deref())?.unwrap_or(DomainAction::Add);
    if action == DomainAction::Get {
        let d = state
            .store
            .tp_domains(TpId(tp_id))
            .await?
            .unwrap_or_default();
        return Ok(Data(tp_domains(&d)));
    }
    let lists = server_lists(&req)?;
    let d = application::edit_tp_domains(&state, TpId(tp_id), move |d| {
        lists.iter().all(|(given, field)| match given {
            Some(g) => apply_domains(field(d), action, g),
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
    let req = web_view_given(&call.params, call.request()?);
    let action = DomainAction::parse(req.action.as_deref())?.unwrap_or(DomainAction::Add);
    if action == DomainAction::Get {
        let d = state
            .store
            .tp_domains(TpId(tp_id))
            .await?
            .unwrap_or_default();
        return Ok(Data(d.web_view_domain));
    }
    let given = web_view_list(&req)?;
    let d = application::edit_tp_domains(&state, TpId(tp_id), move |d| {
        apply_domains(&mut d.web_view_domain, action, &given)
    })
    .await?;
    Ok(Data(d.web_view_domain))
}
