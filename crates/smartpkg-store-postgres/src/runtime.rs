use async_trait::async_trait;
use smartpkg_store::runtime::{decode_settings, encode_settings};
use smartpkg_store::{
    Domains, DomainsEdit, HostApp, Result, RuntimePackage, RuntimeSettings, RuntimeStore,
    RuntimeView, SettingsEdit, StoreError,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{Cols, Db, PgStore};

const HOST_COLS: &str = smartpkg_store::host_columns!();

fn host_row(r: &PgRow) -> Result<HostApp> {
    HostApp::from_row(&Cols(r))
}

fn runtime_package(r: &PgRow) -> sqlx::Result<(RuntimePackage, Option<i64>, String)> {
    Ok((
        RuntimePackage {
            package_id: r.try_get(0)?,
            version: r.try_get(1)?,
            template_id: r.try_get(2)?,
            built_ext_json: r.try_get(3)?,
            archive_sha256: r.try_get(4)?,
            archive_size: r.try_get(5)?,
        },
        r.try_get(6)?,
        r.try_get(7)?,
    ))
}

/// Reads a JSON column of one row under its lock, applies `edit`, writes it back.
async fn edit_json<T, F>(
    c: &mut PgConnection,
    table: &str,
    column: &str,
    key: &str,
    id: i64,
    edit: F,
) -> Result<Option<T>>
where
    T: serde::de::DeserializeOwned + serde::Serialize + Default,
    F: FnOnce(&mut T),
{
    let text: Option<String> = sqlx::query_scalar(&format!(
        "SELECT {column} FROM {table} WHERE {key} = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await
    .db()?;
    let Some(text) = text else { return Ok(None) };
    let mut value: T = decode_settings(&text)?;
    edit(&mut value);
    sqlx::query(&format!(
        "UPDATE {table} SET {column} = $1 WHERE {key} = $2"
    ))
    .bind(encode_settings(&value)?)
    .bind(id)
    .execute(&mut *c)
    .await
    .db()?;
    Ok(Some(value))
}

#[async_trait]
impl RuntimeStore for PgStore {
    async fn runtime_settings(&self, app_id: i64) -> Result<Option<RuntimeSettings>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT runtime_settings FROM apps WHERE app_id = $1")
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await
                .db()?;
        text.map(|t| decode_settings(&t)).transpose()
    }

    async fn update_runtime_settings(
        &self,
        app_id: i64,
        edit: SettingsEdit,
    ) -> Result<Option<RuntimeSettings>> {
        let mut tx = self.pool.begin().await.db()?;
        let out = edit_json(&mut tx, "apps", "runtime_settings", "app_id", app_id, edit).await?;
        tx.commit().await.db()?;
        Ok(out)
    }

    async fn tp_domains(&self, tp_id: i64) -> Result<Option<Domains>> {
        let text: Option<String> = sqlx::query_scalar("SELECT domains FROM tps WHERE tp_id = $1")
            .bind(tp_id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        text.map(|t| decode_settings(&t)).transpose()
    }

    async fn update_tp_domains(&self, tp_id: i64, edit: DomainsEdit) -> Result<Option<Domains>> {
        let mut tx = self.pool.begin().await.db()?;
        let out = edit_json(&mut tx, "tps", "domains", "tp_id", tp_id, edit).await?;
        tx.commit().await.db()?;
        Ok(out)
    }

    async fn create_host_app(
        &self,
        name: String,
        host_key: String,
        secret_hash: String,
        now_ms: i64,
    ) -> Result<HostApp> {
        let host_id: i64 = sqlx::query_scalar(
            "INSERT INTO host_apps (name, host_key, secret_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING host_id",
        )
        .bind(&name)
        .bind(&host_key)
        .bind(&secret_hash)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(HostApp {
            host_id,
            name,
            host_key,
            secret_hash,
            created_at_ms: now_ms,
        })
    }

    async fn list_host_apps(&self) -> Result<Vec<HostApp>> {
        let rows = sqlx::query(&format!(
            "SELECT {HOST_COLS} FROM host_apps ORDER BY host_id"
        ))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(host_row).collect()
    }

    async fn host_app_by_key(&self, host_key: String) -> Result<Option<HostApp>> {
        let row = sqlx::query(&format!(
            "SELECT {HOST_COLS} FROM host_apps WHERE host_key = $1"
        ))
        .bind(host_key)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| host_row(&r)).transpose()
    }

    async fn set_app_hosts(&self, app_id: i64, hosts: Vec<i64>) -> Result<bool> {
        let mut tx = self.pool.begin().await.db()?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT app_id FROM apps WHERE app_id = $1 FOR UPDATE")
                .bind(app_id)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        if exists.is_none() {
            return Ok(false);
        }
        let known: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM host_apps WHERE host_id = ANY($1)")
                .bind(&hosts)
                .fetch_one(&mut *tx)
                .await
                .db()?;
        let mut unique = hosts.clone();
        unique.sort_unstable();
        unique.dedup();
        if known as usize != unique.len() {
            return Err(StoreError::NotFound(format!(
                "host app among {}",
                unique
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        sqlx::query("DELETE FROM app_host_apps WHERE app_id = $1")
            .bind(app_id)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(
            "INSERT INTO app_host_apps (app_id, host_id) SELECT $1, h FROM UNNEST($2::BIGINT[]) AS h",
        )
        .bind(app_id)
        .bind(&unique)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn runtime_view(&self, app_id: i64) -> Result<Option<RuntimeView>> {
        // One round trip: the settings and host list on every row, with the online and the
        // staged package (when any) as rows of their own.
        let rows = sqlx::query(
            "SELECT p.package_id, p.version, p.template_id, p.built_ext_json, p.archive_sha256, \
                    p.archive_size, p.staged_percent, p.state, a.runtime_settings, \
                    ARRAY(SELECT host_id FROM app_host_apps h WHERE h.app_id = a.app_id ORDER BY host_id) \
             FROM apps a LEFT JOIN packages p ON p.app_id = a.app_id \
               AND (p.state IN ('online', 'rolling_back') OR (p.state = 'audit_passed' AND p.staged_percent IS NOT NULL)) \
             WHERE a.app_id = $1",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await
        .db()?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let settings_text: String = first.try_get(8).db()?;
        let hosts: Vec<i64> = first.try_get(9).db()?;
        let mut view = RuntimeView {
            app_id,
            settings: decode_settings(&settings_text)?,
            hosts,
            online: None,
            staged: None,
        };
        for r in &rows {
            let id: Option<i64> = r.try_get(0).db()?;
            if id.is_none() {
                continue;
            }
            let (p, percent, state) = runtime_package(r).db()?;
            match (state.as_str(), percent) {
                ("audit_passed", Some(pc)) => view.staged = Some((p, pc)),
                _ => view.online = Some(p),
            }
        }
        Ok(Some(view))
    }

    async fn recent_history(
        &self,
        app_id: i64,
        limit: i64,
    ) -> Result<Vec<smartpkg_store::PackageRecord>> {
        crate::packages::recent_history(&self.pool, app_id, limit).await
    }

    async fn archive_known(&self, sha256: String) -> Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM packages WHERE archive_sha256 = $1 LIMIT 1")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await
                .db()?;
        Ok(found.is_some())
    }

    async fn set_package_archive(
        &self,
        package_id: i64,
        sha256: String,
        size: i64,
    ) -> Result<(String, i64)> {
        sqlx::query(
            "UPDATE packages SET archive_sha256 = $1, archive_size = $2 \
             WHERE package_id = $3 AND archive_sha256 IS NULL",
        )
        .bind(&sha256)
        .bind(size)
        .bind(package_id)
        .execute(&self.pool)
        .await
        .db()?;
        let kept: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT archive_sha256, archive_size FROM packages WHERE package_id = $1",
        )
        .bind(package_id)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        match kept {
            Some((Some(s), Some(n))) => Ok((s, n)),
            _ => Err(StoreError::NotFound(format!("package {package_id}"))),
        }
    }
}
