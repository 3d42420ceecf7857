//! The template library: drafts and templates of each third party.
//!
//! Serialisation contract: `add_template` is serialised **per third party** — the count of
//! live templates and the insert happen under one lock of the third party (a row lock on it,
//! or a single-writer database), so the 50-template limit holds under concurrent calls.
//! `delete_template` is one conditional update.

use async_trait::async_trait;
use serde::Serialize;
use smartpkg_core::ids::{TemplateId, TpId};

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub template_id: TemplateId,
    pub draft_id: i64,
    pub tp_id: TpId,
    pub user_version: String,
    pub user_desc: String,
    pub blob_sha256: String,
    /// The [`smartpkg_core::archive::TemplateManifest`] as JSON.
    #[serde(skip)]
    pub manifest: String,
    pub create_time: i64,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub tp_id: TpId,
    pub user_version: String,
    pub user_desc: String,
    pub blob_sha256: String,
    pub manifest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    pub draft_id: i64,
    pub tp_id: TpId,
    pub user_version: String,
    pub user_desc: String,
    /// Unix seconds.
    pub create_time: i64,
    /// The archive's blob (the console shows its size).
    pub blob_sha256: String,
}

/// Why the template library refused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibraryRefusal {
    DraftNotFound,
    TemplateLimit,
    TemplateNotFound,
}

/// Storage of the template library. What a backend must serialise is the module's contract (above):
/// every backend meets it, and `conformance` checks it.
#[async_trait]
pub trait LibraryStore: Send + Sync {
    async fn create_template(&self, t: NewTemplate, now_ms: i64) -> Result<Template>;

    async fn get_template(&self, template_id: TemplateId) -> Result<Option<Template>>;

    async fn create_draft(&self, t: NewTemplate, now_ms: i64) -> Result<Draft>;

    /// (total, one page) of the TP's drafts, newest first.
    async fn list_drafts(&self, tp_id: TpId, offset: i64, limit: i64) -> Result<(i64, Vec<Draft>)>;

    /// Turns a draft into a template, at most `max` live templates per TP; described by
    /// `user_desc`, or (None) by the draft's own description.
    async fn add_template(
        &self,
        tp_id: TpId,
        draft_id: i64,
        user_desc: Option<String>,
        max: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<Template, LibraryRefusal>>;

    /// (total, one page) of the TP's live templates, newest first.
    async fn list_templates(
        &self,
        tp_id: TpId,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<Template>)>;

    /// Deletes a live template of the TP; packages built from it keep working.
    async fn delete_template(
        &self,
        tp_id: TpId,
        template_id: TemplateId,
        now_ms: i64,
    ) -> Result<std::result::Result<(), LibraryRefusal>>;
}
