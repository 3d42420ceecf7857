use async_trait::async_trait;
use smartpkg_store::{Draft, LibraryRefusal, LibraryStore, NewTemplate, Result, Template};
use sqlx::postgres::PgRow;

use crate::{Cols, Db, PgStore};

const TEMPLATE_COLS: &str = smartpkg_store::template_columns!();

fn template_row(r: &PgRow) -> Result<Template> {
    Template::from_row(&Cols(r))
}

fn draft_row(r: &PgRow) -> Result<Draft> {
    Draft::from_row(&Cols(r))
}

const INSERT_DRAFT: &str =
    "INSERT INTO drafts (tp_id, user_version, user_desc, blob_sha256, manifest, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING draft_id";

#[async_trait]
impl LibraryStore for PgStore {
    async fn create_template(&self, t: NewTemplate, now_ms: i64) -> Result<Template> {
        let mut tx = self.pool.begin().await.db()?;
        let draft_id: i64 = sqlx::query_scalar(INSERT_DRAFT)
            .bind(t.tp_id)
            .bind(&t.user_version)
            .bind(&t.user_desc)
            .bind(&t.blob_sha256)
            .bind(&t.manifest)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await
            .db()?;
        let row = sqlx::query(&format!(
            "INSERT INTO templates (draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TEMPLATE_COLS}"
        ))
        .bind(draft_id)
        .bind(t.tp_id)
        .bind(&t.user_version)
        .bind(&t.user_desc)
        .bind(&t.blob_sha256)
        .bind(&t.manifest)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        template_row(&row)
    }

    async fn get_template(&self, template_id: i64) -> Result<Option<Template>> {
        sqlx::query(&format!(
            "SELECT {TEMPLATE_COLS} FROM templates WHERE template_id = $1"
        ))
        .bind(template_id)
        .fetch_optional(&self.pool)
        .await
        .db()?
        .map(|r| template_row(&r))
        .transpose()
    }

    async fn create_draft(&self, t: NewTemplate, now_ms: i64) -> Result<Draft> {
        let draft_id: i64 = sqlx::query_scalar(INSERT_DRAFT)
            .bind(t.tp_id)
            .bind(&t.user_version)
            .bind(&t.user_desc)
            .bind(&t.blob_sha256)
            .bind(&t.manifest)
            .bind(now_ms)
            .fetch_one(&self.pool)
            .await
            .db()?;
        Ok(Draft {
            draft_id,
            tp_id: t.tp_id,
            user_version: t.user_version,
            user_desc: t.user_desc,
            create_time: now_ms / 1000,
            blob_sha256: t.blob_sha256,
        })
    }

    async fn list_drafts(&self, tp_id: i64, offset: i64, limit: i64) -> Result<(i64, Vec<Draft>)> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drafts WHERE tp_id = $1")
            .bind(tp_id)
            .fetch_one(&self.pool)
            .await
            .db()?;
        let rows = sqlx::query(
            "SELECT draft_id, tp_id, user_version, user_desc, created_at, blob_sha256 FROM drafts WHERE tp_id = $1 \
             ORDER BY draft_id DESC LIMIT $2 OFFSET $3",
        )
        .bind(tp_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        let drafts = rows.iter().map(draft_row).collect::<Result<Vec<_>>>()?;
        Ok((count, drafts))
    }

    async fn add_template(
        &self,
        tp_id: i64,
        draft_id: i64,
        user_desc: String,
        max: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<Template, LibraryRefusal>> {
        let mut tx = self.pool.begin().await.db()?;
        // The third party's row lock serialises its additions: the count below cannot be
        // stale when the insert lands, so two racing adds cannot pass the limit.
        sqlx::query("SELECT 1 FROM tps WHERE tp_id = $1 FOR UPDATE")
            .bind(tp_id)
            .execute(&mut *tx)
            .await
            .db()?;
        let draft: Option<(String, String, String)> = sqlx::query_as(
            "SELECT user_version, blob_sha256, manifest FROM drafts WHERE draft_id = $1 AND tp_id = $2",
        )
        .bind(draft_id)
        .bind(tp_id)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some((user_version, sha, manifest)) = draft else {
            return Ok(Err(LibraryRefusal::DraftNotFound));
        };
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM templates WHERE tp_id = $1 AND deleted_at IS NULL",
        )
        .bind(tp_id)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if live >= max {
            return Ok(Err(LibraryRefusal::TemplateLimit));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO templates (draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TEMPLATE_COLS}"
        ))
        .bind(draft_id)
        .bind(tp_id)
        .bind(user_version)
        .bind(user_desc)
        .bind(sha)
        .bind(manifest)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(Ok(template_row(&row)?))
    }

    async fn list_templates(
        &self,
        tp_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<Template>)> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM templates WHERE tp_id = $1 AND deleted_at IS NULL",
        )
        .bind(tp_id)
        .fetch_one(&self.pool)
        .await
        .db()?;
        let rows = sqlx::query(&format!(
            "SELECT {TEMPLATE_COLS} FROM templates WHERE tp_id = $1 AND deleted_at IS NULL \
             ORDER BY template_id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(tp_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        let templates = rows.iter().map(template_row).collect::<Result<Vec<_>>>()?;
        Ok((count, templates))
    }

    async fn delete_template(
        &self,
        tp_id: i64,
        template_id: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<(), LibraryRefusal>> {
        let n = sqlx::query(
            "UPDATE templates SET deleted_at = $1 WHERE template_id = $2 AND tp_id = $3 AND deleted_at IS NULL",
        )
        .bind(now_ms)
        .bind(template_id)
        .bind(tp_id)
        .execute(&self.pool)
        .await
        .db()?
        .rows_affected();
        Ok(if n == 1 {
            Ok(())
        } else {
            Err(LibraryRefusal::TemplateNotFound)
        })
    }
}
