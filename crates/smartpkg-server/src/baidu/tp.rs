//! The third party's own calls (spec §4): its access token from a ticket, and the template
//! library (drafts → templates → delete).

use smartpkg_core::ids::{TemplateId, TpId};
use smartpkg_store::{Draft, Template};
use smartpkg_types::{
    call, AddedTemplate, DeletedTemplate, Draft as DraftView, DraftList, Errno, GatewayError,
    PageRequest, TemplateInfo, TemplateList, TpToken,
};

use super::{Answer, Call, Data, Params, Reply};
use crate::application;
use crate::clock;
use crate::state::AppState;

impl Params {
    /// Resolves a TP access token to its third party, or the gateway's error.
    pub async fn tp_grant(&self, state: &AppState) -> Result<i64, Reply> {
        let found = state.store.resolve_tp_token(self.token_hash()?).await?;
        let (tp_id, expires_at) = found.ok_or(Reply::Gateway(GatewayError::token_invalid()))?;
        if expires_at <= clock::now_ms() {
            return Err(Reply::Gateway(GatewayError::token_expired()));
        }
        Ok(tp_id.get())
    }

    /// As [`Params::tp_grant`], for a call that writes: it counts against the third party's
    /// write limit.
    pub async fn tp_write_grant(&self, state: &AppState) -> Result<i64, Reply> {
        let tp_id = self.tp_grant(state).await?;
        super::write_allowed(state, super::Scope::Tp, tp_id)?;
        Ok(tp_id)
    }
}

/// `page` (from 1) and `page_size` (1 to 100), as (offset, limit).
fn paging(p: PageRequest) -> Result<(i64, i64), Reply> {
    Ok(application::page(p.page, p.page_size)?)
}

pub async fn token(state: AppState, call: Call<call::TpToken>) -> Answer<TpToken> {
    let req = call.request()?;
    let client_id = req.client_id.trim().to_string();
    let ticket = req.ticket.trim().to_string();
    let tp = state
        .store
        .get_tp_by_client_id(client_id)
        .await?
        .ok_or_else(|| Reply::err(Errno::ClientIdUnknown))?;
    let ttl = state.settings.tp_token_ttl_s;
    // Baidu has one errno for a ticket it will not take, expired or not.
    let application::TicketTrade::Token(token) =
        application::tp_token_for_ticket(&state, tp.tp_id, &ticket, ttl).await?
    else {
        return Err(Reply::err(Errno::TicketInvalid));
    };
    Ok(Data(TpToken {
        access_token: token,
        expires_in: ttl as i64,
        scope: "smartapp_tp_smtapp_common public".into(),
    }))
}

fn draft_view(d: &Draft) -> DraftView {
    DraftView {
        draft_id: d.draft_id,
        user_version: d.user_version.clone(),
        user_desc: d.user_desc.clone(),
        create_time: d.create_time,
        web_status: false,
    }
}

fn template_view(t: &Template) -> TemplateInfo {
    TemplateInfo {
        template_id: t.template_id.get(),
        user_version: t.user_version.clone(),
        user_desc: t.user_desc.clone(),
        create_time: t.create_time,
        web_status: false,
    }
}

pub async fn gettemplatedraftlist(
    state: AppState,
    call: Call<call::GetTemplateDraftList>,
) -> Answer<DraftList> {
    let tp_id = call.tp(&state).await?;
    let (offset, limit) = paging(call.request()?)?;
    let (count, drafts) = state.store.list_drafts(TpId(tp_id), offset, limit).await?;
    let list = drafts.iter().map(draft_view).collect();
    Ok(Data(DraftList { count, list }))
}

pub async fn addtotemplate(
    state: AppState,
    call: Call<call::AddToTemplate>,
) -> Answer<AddedTemplate> {
    let tp_id = call.tp(&state).await?;
    let req = call.request()?;
    let t =
        application::add_template(&state, TpId(tp_id), req.draft_id, Some(req.user_desc)).await?;
    Ok(Data(AddedTemplate {
        template_id: t.template_id.get(),
    }))
}

pub async fn gettemplatelist(
    state: AppState,
    call: Call<call::GetTemplateList>,
) -> Answer<TemplateList> {
    let tp_id = call.tp(&state).await?;
    let (offset, limit) = paging(call.request()?)?;
    let (count, templates) = state
        .store
        .list_templates(TpId(tp_id), offset, limit)
        .await?;
    let list = templates.iter().map(template_view).collect();
    Ok(Data(TemplateList { count, list }))
}

pub async fn deltemplate(
    state: AppState,
    call: Call<call::DelTemplate>,
) -> Answer<DeletedTemplate> {
    let tp_id = call.tp(&state).await?;
    let template_id = call.request()?.template_id;
    application::delete_template(&state, TpId(tp_id), TemplateId(template_id)).await?;
    Ok(Data(DeletedTemplate { result: 1 }))
}
