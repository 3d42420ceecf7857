use async_trait::async_trait;
use smartpkg_store::{App, AppPatch, NewApp, NewTp, Result, StoreError, TenantStore, Tp, TpPatch};
use sqlx::postgres::PgRow;

use crate::{now_ms, Cols, Db, PgStore};

pub(crate) const TP_COLS: &str = smartpkg_store::tp_columns!();

pub(crate) fn tp_row(r: &PgRow) -> Result<Tp> {
    Tp::from_row(&Cols(r))
}

pub(crate) const APP_COLS: &str = smartpkg_store::app_columns!();

pub(crate) fn app_row(r: &PgRow) -> Result<App> {
    App::from_row(&Cols(r))
}

#[async_trait]
impl TenantStore for PgStore {
    async fn create_tp(&self, tp: NewTp) -> Result<Tp> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tps (client_id, name, event_url, auth_event_url, msg_token, encoding_aes_key, audit_quota, created_at, redirect_domain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING tp_id",
        )
        .bind(&tp.client_id)
        .bind(&tp.name)
        .bind(&tp.event_url)
        .bind(&tp.auth_event_url)
        .bind(&tp.msg_token)
        .bind(&tp.encoding_aes_key)
        .bind(tp.audit_quota)
        .bind(now_ms())
        .bind(&tp.redirect_domain)
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(tp.stored(id))
    }

    async fn update_tp(&self, tp_id: i64, patch: TpPatch) -> Result<Tp> {
        let row = sqlx::query(&format!(
            "UPDATE tps SET name = COALESCE($1, name), event_url = COALESCE($2, event_url), \
               auth_event_url = COALESCE($3, auth_event_url), msg_token = COALESCE($4, msg_token), \
               encoding_aes_key = COALESCE($5, encoding_aes_key), \
               audit_quota = CASE WHEN $6 THEN $7 ELSE audit_quota END, \
               redirect_domain = COALESCE($9, redirect_domain) WHERE tp_id = $8 RETURNING {TP_COLS}"
        ))
        .bind(patch.name)
        .bind(patch.event_url)
        .bind(patch.auth_event_url)
        .bind(patch.msg_token)
        .bind(patch.encoding_aes_key)
        .bind(patch.audit_quota.is_some())
        .bind(patch.audit_quota.flatten())
        .bind(tp_id)
        .bind(patch.redirect_domain)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("tp {tp_id}")))?;
        tp_row(&row)
    }

    async fn get_tp(&self, tp_id: i64) -> Result<Option<Tp>> {
        sqlx::query(&format!("SELECT {TP_COLS} FROM tps WHERE tp_id = $1"))
            .bind(tp_id)
            .fetch_optional(&self.pool)
            .await
            .db()?
            .map(|r| tp_row(&r))
            .transpose()
    }

    async fn get_tp_by_client_id(&self, client_id: String) -> Result<Option<Tp>> {
        sqlx::query(&format!("SELECT {TP_COLS} FROM tps WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .db()?
            .map(|r| tp_row(&r))
            .transpose()
    }

    async fn tps_with_auth_url(&self) -> Result<Vec<Tp>> {
        sqlx::query(&format!(
            "SELECT {TP_COLS} FROM tps WHERE auth_event_url <> '' ORDER BY tp_id"
        ))
        .fetch_all(&self.pool)
        .await
        .db()?
        .iter()
        .map(tp_row)
        .collect()
    }

    async fn create_app(&self, app: NewApp) -> Result<App> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO apps (app_key, name, name_audited, category_audited, authenticity_certified, tp_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING app_id",
        )
        .bind(&app.app_key)
        .bind(&app.name)
        .bind(app.name_audited)
        .bind(app.category_audited)
        .bind(app.authenticity_certified)
        .bind(app.tp_id)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(app.stored(id))
    }

    async fn update_app(&self, app_id: i64, patch: AppPatch) -> Result<App> {
        let row = sqlx::query(&format!(
            "UPDATE apps SET name = COALESCE($1, name), name_audited = COALESCE($2, name_audited), \
               category_audited = COALESCE($3, category_audited), \
               authenticity_certified = COALESCE($4, authenticity_certified) WHERE app_id = $5 RETURNING {APP_COLS}"
        ))
        .bind(patch.name)
        .bind(patch.name_audited)
        .bind(patch.category_audited)
        .bind(patch.authenticity_certified)
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("app {app_id}")))?;
        app_row(&row)
    }

    async fn get_app(&self, app_id: i64) -> Result<Option<App>> {
        sqlx::query(&format!("SELECT {APP_COLS} FROM apps WHERE app_id = $1"))
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await
            .db()?
            .map(|r| app_row(&r))
            .transpose()
    }

    async fn set_owner_password(&self, app_id: i64, hash: String) -> Result<bool> {
        let n = sqlx::query("UPDATE apps SET owner_password_hash = $1 WHERE app_id = $2")
            .bind(hash)
            .bind(app_id)
            .execute(&self.pool)
            .await
            .db()?
            .rows_affected();
        Ok(n == 1)
    }

    async fn owner_password_hash(&self, app_id: i64) -> Result<Option<String>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT owner_password_hash FROM apps WHERE app_id = $1")
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await
                .db()?;
        Ok(v.flatten())
    }

    async fn server_secret(&self, name: &'static str) -> Result<String> {
        // The first caller's random value wins; every later one (any instance) reads it.
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await
        .db()?;
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .db()
    }
}
