//! The template library in the WeChat dialect (spec §4): the same drafts and templates the
//! Baidu dialect shows, in WeChat's shapes, with the component token.

use axum::extract::State;
use smartpkg_core::ids::TemplateId;
use smartpkg_types::wechat::{
    AddToTemplateRequest, Draft, DraftList, Errcode, Template, TemplateIdRequest, TemplateList,
};

use super::{done, Answer, Fail, Reply, Wx};
use crate::application::{self, OpError, MAX_PAGE_SIZE, MAX_TEMPLATES};
use crate::state::AppState;

/// The most drafts one listing shows (WeChat's list is not paged; ours is bounded).
const MAX_DRAFTS_LISTED: i64 = 1000;

pub async fn draft_list(State(state): State<AppState>, wx: Wx) -> Reply<DraftList> {
    let tp_id = wx.component(&state, false).await?;
    let mut draft_list = vec![];
    let mut offset = 0;
    while offset < MAX_DRAFTS_LISTED {
        let (total, page) = state
            .store
            .list_drafts(tp_id, offset, MAX_PAGE_SIZE)
            .await?;
        let n = page.len() as i64;
        draft_list.extend(page.into_iter().map(|d| Draft {
            draft_id: d.draft_id,
            user_version: d.user_version,
            user_desc: d.user_desc,
            create_time: d.create_time,
        }));
        offset += n;
        if n == 0 || offset >= total {
            break;
        }
    }
    Ok(Answer(DraftList { draft_list }))
}

pub async fn add_to_template(State(state): State<AppState>, wx: Wx) -> Reply {
    let tp_id = wx.component(&state, true).await?;
    let req: AddToTemplateRequest = wx.json()?;
    // Standard templates (1) are WeChat's own curation; a third party's library here holds
    // normal ones (0).
    if req.template_type != 0 {
        return Err(Fail::detail(
            Errcode::DataFormatError,
            "template_type: only normal templates (0) can be added here",
        ));
    }
    match application::add_template(&state, tp_id, req.draft_id, None).await {
        Ok(_) => done(),
        Err(OpError::NotFound(what)) => Err(Fail::detail(
            Errcode::TemplateNotFound,
            format!("{what} not found"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn template_list(State(state): State<AppState>, wx: Wx) -> Reply<TemplateList> {
    let tp_id = wx.component(&state, false).await?;
    let wanted =
        match wx.query("template_type") {
            None => None,
            Some(t) => Some(t.parse::<i64>().map_err(|_| {
                Fail::detail(Errcode::DataFormatError, "template_type must be 0 or 1")
            })?),
        };
    // Every template here is a normal one: asking for standard ones finds none.
    let template_list = if wanted.is_some_and(|t| t != 0) {
        vec![]
    } else {
        let (_, templates) = state.store.list_templates(tp_id, 0, MAX_TEMPLATES).await?;
        templates
            .into_iter()
            .map(|t| Template {
                template_id: t.template_id.get(),
                user_version: t.user_version,
                user_desc: t.user_desc,
                create_time: t.create_time,
                template_type: 0,
                source_miniprogram_appid: String::new(),
                source_miniprogram: String::new(),
                developer: String::new(),
                audit_status: 0,
                reason: String::new(),
            })
            .collect()
    };
    Ok(Answer(TemplateList { template_list }))
}

pub async fn delete_template(State(state): State<AppState>, wx: Wx) -> Reply {
    let tp_id = wx.component(&state, true).await?;
    let req: TemplateIdRequest = wx.json()?;
    application::delete_template(&state, tp_id, TemplateId(req.template_id))
        .await
        .map_err(|e| match e {
            OpError::Refused(r) => Fail::detail(Errcode::TemplateNotFound, r.msg),
            other => other.into(),
        })?;
    done()
}
