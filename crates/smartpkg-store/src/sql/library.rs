//! [`LibraryStore`] on every SQL backend.

use async_trait::async_trait;
use smartpkg_core::ids::{TemplateId, TpId};

use super::{Sql, Tx};
use crate::{Columns, Draft, LibraryRefusal, LibraryStore, NewTemplate, Result, Template};

const INSERT_DRAFT: &str =
    "INSERT INTO drafts (tp_id, user_version, user_desc, blob_sha256, manifest, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING draft_id AS n";

const INSERT_TEMPLATE: &str = concat!(
    "INSERT INTO templates (draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, \
       created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
    crate::template_columns!()
);

/// Stores `t` as a draft; its id.
async fn insert_draft<X: Tx>(tx: &mut X, t: &NewTemplate, now_ms: i64) -> Result<i64> {
    let args = args![
        t.tp_id,
        &t.user_version,
        &t.user_desc,
        &t.blob_sha256,
        &t.manifest,
        now_ms
    ];
    tx.int(INSERT_DRAFT, args).await
}

/// A third party's templates not deleted.
const LIVE: &str = "SELECT COUNT(*) AS n FROM templates WHERE tp_id = $1 AND deleted_at IS NULL";

#[async_trait]
impl<S: Sql> LibraryStore for S {
    async fn create_template(&self, t: NewTemplate, now_ms: i64) -> Result<Template> {
        work!(write, self, |tx| {
            let draft_id = insert_draft(tx, &t, now_ms).await?;
            let row = tx
                .one(
                    INSERT_TEMPLATE,
                    args![
                        draft_id,
                        t.tp_id,
                        &t.user_version,
                        &t.user_desc,
                        &t.blob_sha256,
                        &t.manifest,
                        now_ms
                    ],
                )
                .await?;
            Template::from_row(&row)
        })
    }

    async fn get_template(&self, template_id: TemplateId) -> Result<Option<Template>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::template_columns!(),
                " FROM templates WHERE template_id = $1"
            );
            let row = tx.opt(sql, args![template_id]).await?;
            row.as_ref().map(Template::from_row).transpose()
        })
    }

    async fn create_draft(&self, t: NewTemplate, now_ms: i64) -> Result<Draft> {
        work!(write, self, |tx| {
            let draft_id = insert_draft(tx, &t, now_ms).await?;
            Ok(Draft {
                draft_id,
                tp_id: t.tp_id,
                user_version: t.user_version,
                user_desc: t.user_desc,
                create_time: now_ms / 1000,
                blob_sha256: t.blob_sha256,
            })
        })
    }

    async fn list_drafts(&self, tp_id: TpId, offset: i64, limit: i64) -> Result<(i64, Vec<Draft>)> {
        work!(read, self, |tx| {
            let count = tx
                .int(
                    "SELECT COUNT(*) AS n FROM drafts WHERE tp_id = $1",
                    args![tp_id],
                )
                .await?;
            let sql = concat!(
                "SELECT ",
                crate::draft_columns!(),
                " FROM drafts WHERE tp_id = $1 ORDER BY draft_id DESC LIMIT $2 OFFSET $3"
            );
            let rows = tx.rows(sql, args![tp_id, limit, offset]).await?;
            Ok((count, super::decode(rows, Draft::from_row)?))
        })
    }

    async fn add_template(
        &self,
        tp_id: TpId,
        draft_id: i64,
        user_desc: Option<String>,
        max: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<Template, LibraryRefusal>> {
        work!(write, self, |tx| {
            // The third party's row lock (SQLite: the one writer) serialises its additions:
            // the count below cannot be stale when the insert lands, so two racing adds
            // cannot pass the limit.
            let lock = tx.pick(locking!("SELECT 1 AS n FROM tps WHERE tp_id = $1"));
            tx.exec(lock, args![tp_id]).await?;
            let sql = "SELECT user_version, user_desc, blob_sha256, manifest FROM drafts \
                       WHERE draft_id = $1 AND tp_id = $2";
            let Some(draft) = tx.opt(sql, args![draft_id, tp_id]).await? else {
                return Ok(Err(LibraryRefusal::DraftNotFound));
            };
            let user_desc = match user_desc {
                Some(d) => d,
                None => draft.string("user_desc")?,
            };
            if tx.int(LIVE, args![tp_id]).await? >= max {
                return Ok(Err(LibraryRefusal::TemplateLimit));
            }
            let row = tx
                .one(
                    INSERT_TEMPLATE,
                    args![
                        draft_id,
                        tp_id,
                        draft.string("user_version")?,
                        &user_desc,
                        draft.string("blob_sha256")?,
                        draft.string("manifest")?,
                        now_ms
                    ],
                )
                .await?;
            Ok(Ok(Template::from_row(&row)?))
        })
    }

    async fn list_templates(
        &self,
        tp_id: TpId,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<Template>)> {
        work!(read, self, |tx| {
            let count = tx.int(LIVE, args![tp_id]).await?;
            let sql = concat!(
                "SELECT ",
                crate::template_columns!(),
                " FROM templates WHERE tp_id = $1 AND deleted_at IS NULL \
                  ORDER BY template_id DESC LIMIT $2 OFFSET $3"
            );
            let rows = tx.rows(sql, args![tp_id, limit, offset]).await?;
            Ok((count, super::decode(rows, Template::from_row)?))
        })
    }

    async fn delete_template(
        &self,
        tp_id: TpId,
        template_id: TemplateId,
        now_ms: i64,
    ) -> Result<std::result::Result<(), LibraryRefusal>> {
        work!(write, self, |tx| {
            let n = tx
                .exec(
                    "UPDATE templates SET deleted_at = $1 \
                       WHERE template_id = $2 AND tp_id = $3 AND deleted_at IS NULL",
                    args![now_ms, template_id, tp_id],
                )
                .await?;
            Ok(if n == 1 {
                Ok(())
            } else {
                Err(LibraryRefusal::TemplateNotFound)
            })
        })
    }
}
