use super::*;

pub(crate) const TEMPLATE_COLS: &str = smartpkg_store::template_columns!();

pub(crate) fn template_row(r: &Row<'_>) -> rusqlite::Result<Template> {
    decoded(Template::from_row(&Cols::new(r)))
}

#[async_trait]
impl LibraryStore for SqliteStore {
    async fn create_template(&self, t: NewTemplate, now_ms: i64) -> StoreResult<Template> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO drafts (tp_id, user_version, user_desc, blob_sha256, manifest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.tp_id, t.user_version, t.user_desc, t.blob_sha256, t.manifest, now_ms],
            )?;
            let draft_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO templates (draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![draft_id, t.tp_id, t.user_version, t.user_desc, t.blob_sha256, t.manifest, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            Ok(tx.query_row(&format!("SELECT {TEMPLATE_COLS} FROM templates WHERE template_id = ?1"), [id], template_row)?)
        })
        .await
    }

    async fn get_template(&self, template_id: i64) -> StoreResult<Option<Template>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TEMPLATE_COLS} FROM templates WHERE template_id = ?1"
            ))?
            .query_row([template_id], template_row)
            .optional()?)
        })
        .await
    }

    async fn create_draft(&self, t: NewTemplate, now_ms: i64) -> StoreResult<Draft> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO drafts (tp_id, user_version, user_desc, blob_sha256, manifest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.tp_id, t.user_version, t.user_desc, t.blob_sha256, t.manifest, now_ms],
            )?;
            Ok(Draft {
                draft_id: tx.last_insert_rowid(),
                tp_id: t.tp_id,
                user_version: t.user_version,
                user_desc: t.user_desc,
                create_time: now_ms / 1000,
                blob_sha256: t.blob_sha256,
            })
        })
        .await
    }

    async fn list_drafts(
        &self,
        tp_id: i64,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(i64, Vec<Draft>)> {
        self.read(move |c| {
            let count: i64 = c.query_row("SELECT COUNT(*) FROM drafts WHERE tp_id = ?1", [tp_id], |r| r.get(0))?;
            let mut stmt = c.prepare_cached(
                "SELECT draft_id, tp_id, user_version, user_desc, created_at, blob_sha256 FROM drafts WHERE tp_id = ?1 \
                 ORDER BY draft_id DESC LIMIT ?2 OFFSET ?3",
            )?;
            let rows = stmt
                .query_map(params![tp_id, limit, offset], |r| {
                    Ok(Draft {
                        draft_id: r.get(0)?,
                        tp_id: r.get(1)?,
                        user_version: r.get(2)?,
                        user_desc: r.get(3)?,
                        create_time: r.get::<_, i64>(4)? / 1000,
                        blob_sha256: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((count, rows))
        })
        .await
    }

    async fn add_template(
        &self,
        tp_id: i64,
        draft_id: i64,
        user_desc: String,
        max: i64,
        now_ms: i64,
    ) -> StoreResult<std::result::Result<Template, LibraryRefusal>> {
        self.write(move |tx| {
            let draft: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT user_version, blob_sha256, manifest FROM drafts WHERE draft_id = ?1 AND tp_id = ?2",
                    params![draft_id, tp_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((user_version, sha, manifest)) = draft else {
                return Ok(Err(LibraryRefusal::DraftNotFound));
            };
            // Counted inside the writing transaction, so two racing adds cannot pass 50.
            let live: i64 = tx.query_row(
                "SELECT COUNT(*) FROM templates WHERE tp_id = ?1 AND deleted_at IS NULL",
                [tp_id],
                |r| r.get(0),
            )?;
            if live >= max {
                return Ok(Err(LibraryRefusal::TemplateLimit));
            }
            tx.execute(
                "INSERT INTO templates (draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![draft_id, tp_id, user_version, user_desc, sha, manifest, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            Ok(Ok(tx.query_row(&format!("SELECT {TEMPLATE_COLS} FROM templates WHERE template_id = ?1"), [id], template_row)?))
        })
        .await
    }

    async fn list_templates(
        &self,
        tp_id: i64,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(i64, Vec<Template>)> {
        self.read(move |c| {
            let count: i64 = c.query_row(
                "SELECT COUNT(*) FROM templates WHERE tp_id = ?1 AND deleted_at IS NULL",
                [tp_id],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TEMPLATE_COLS} FROM templates WHERE tp_id = ?1 AND deleted_at IS NULL ORDER BY template_id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            let rows = stmt.query_map(params![tp_id, limit, offset], template_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((count, rows))
        })
        .await
    }

    async fn delete_template(
        &self,
        tp_id: i64,
        template_id: i64,
        now_ms: i64,
    ) -> StoreResult<std::result::Result<(), LibraryRefusal>> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE templates SET deleted_at = ?1 WHERE template_id = ?2 AND tp_id = ?3 AND deleted_at IS NULL",
                params![now_ms, template_id, tp_id],
            )?;
            Ok(if n == 1 { Ok(()) } else { Err(LibraryRefusal::TemplateNotFound) })
        })
        .await
    }
}
