use super::*;

pub(crate) const TP_COLS: &str = smartpkg_store::tp_columns!();

pub(crate) fn tp_row(r: &Row<'_>) -> rusqlite::Result<Tp> {
    decoded(Tp::from_row(&Cols::new(r)))
}

pub(crate) const APP_COLS: &str = smartpkg_store::app_columns!();

pub(crate) fn app_row(r: &Row<'_>) -> rusqlite::Result<App> {
    decoded(App::from_row(&Cols::new(r)))
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_tp(&self, tp: NewTp) -> StoreResult<Tp> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO tps (client_id, name, event_url, auth_event_url, msg_token, encoding_aes_key, audit_quota, created_at, redirect_domain) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![tp.client_id, tp.name, tp.event_url, tp.auth_event_url, tp.msg_token, tp.encoding_aes_key, tp.audit_quota, now_ms(), tp.redirect_domain],
            )?;
            Ok(tp.stored(tx.last_insert_rowid()))
        })
        .await
    }

    async fn update_tp(&self, tp_id: i64, patch: TpPatch) -> StoreResult<Tp> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE tps SET name = COALESCE(?1, name), event_url = COALESCE(?2, event_url), \
                   auth_event_url = COALESCE(?3, auth_event_url), msg_token = COALESCE(?4, msg_token), \
                   encoding_aes_key = COALESCE(?5, encoding_aes_key), \
                   audit_quota = CASE WHEN ?6 THEN ?7 ELSE audit_quota END, \
                   redirect_domain = COALESCE(?9, redirect_domain) WHERE tp_id = ?8",
                params![patch.name, patch.event_url, patch.auth_event_url, patch.msg_token, patch.encoding_aes_key,
                    patch.audit_quota.is_some(), patch.audit_quota.flatten(), tp_id, patch.redirect_domain],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("tp {tp_id}")).into());
            }
            Ok(tx.query_row(&format!("SELECT {TP_COLS} FROM tps WHERE tp_id = ?1"), [tp_id], tp_row)?)
        })
        .await
    }

    async fn get_tp(&self, tp_id: i64) -> StoreResult<Option<Tp>> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {TP_COLS} FROM tps WHERE tp_id = ?1"),
                [tp_id],
                tp_row,
            )
            .optional()?)
        })
        .await
    }

    async fn get_tp_by_client_id(&self, client_id: String) -> StoreResult<Option<Tp>> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {TP_COLS} FROM tps WHERE client_id = ?1"),
                [client_id],
                tp_row,
            )
            .optional()?)
        })
        .await
    }

    async fn tps_with_auth_url(&self) -> StoreResult<Vec<Tp>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TP_COLS} FROM tps WHERE auth_event_url <> '' ORDER BY tp_id"
            ))?;
            let rows = stmt
                .query_map([], tp_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_app(&self, app: NewApp) -> StoreResult<App> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO apps (app_key, name, name_audited, category_audited, authenticity_certified, tp_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![app.app_key, app.name, app.name_audited, app.category_audited, app.authenticity_certified, app.tp_id, now_ms()],
            )?;
            Ok(app.stored(tx.last_insert_rowid()))
        })
        .await
    }

    async fn update_app(&self, app_id: i64, patch: AppPatch) -> StoreResult<App> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE apps SET name = COALESCE(?1, name), name_audited = COALESCE(?2, name_audited), \
                   category_audited = COALESCE(?3, category_audited), \
                   authenticity_certified = COALESCE(?4, authenticity_certified) WHERE app_id = ?5",
                params![patch.name, patch.name_audited, patch.category_audited, patch.authenticity_certified, app_id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("app {app_id}")).into());
            }
            Ok(tx.query_row(&format!("SELECT {APP_COLS} FROM apps WHERE app_id = ?1"), [app_id], app_row)?)
        })
        .await
    }

    async fn get_app(&self, app_id: i64) -> StoreResult<Option<App>> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {APP_COLS} FROM apps WHERE app_id = ?1"),
                [app_id],
                app_row,
            )
            .optional()?)
        })
        .await
    }

    async fn set_owner_password(&self, app_id: i64, hash: String) -> StoreResult<bool> {
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE apps SET owner_password_hash = ?1 WHERE app_id = ?2",
                params![hash, app_id],
            )? == 1)
        })
        .await
    }

    async fn owner_password_hash(&self, app_id: i64) -> StoreResult<Option<String>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT owner_password_hash FROM apps WHERE app_id = ?1",
                [app_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })
        .await
    }

    async fn server_secret(&self, name: &'static str) -> StoreResult<String> {
        self.write(move |tx| {
            // The first caller's random value wins; every later one reads it.
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            tx.execute(
                "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, fresh],
            )?;
            Ok(tx.query_row("SELECT value FROM server_secrets WHERE name = ?1", [name], |r| r.get(0))?)
        })
        .await
    }
}
