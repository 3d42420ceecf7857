//! [`RuntimeStore`] on every SQL backend.

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use smartpkg_core::ids::{AppId, HostId, Id, PackageId, TpId};

use super::{Dialect, Sql, Tx};
use crate::runtime::{decode_settings, encode_settings};
use crate::{
    Columns, Domains, DomainsEdit, HostApp, PackageRecord, Result, RuntimePackage, RuntimeSettings,
    RuntimeStore, RuntimeView, SettingsEdit, StoreError,
};

/// The runtime's view of a mini program in one statement: its settings and host apps on
/// every row, with the online and the staged package (when any) as rows of their own.
const VIEW: &str = "SELECT p.package_id, p.version, p.template_id, p.built_ext_json, \
       p.archive_sha256, p.archive_size, p.staged_percent, p.state, a.runtime_settings, ";
const VIEW_FROM: &str = " AS hosts FROM apps a LEFT JOIN packages p ON p.app_id = a.app_id \
       AND (p.state IN ('online', 'rolling_back') \
            OR (p.state = 'audit_passed' AND p.staged_percent IS NOT NULL)) \
     WHERE a.app_id = $1";

/// The host apps of `a`, as `1,2,3`.
const HOSTS_PG: &str = "(SELECT string_agg(host_id::TEXT, ',' ORDER BY host_id) \
     FROM app_host_apps h WHERE h.app_id = a.app_id)";
const HOSTS_LITE: &str = "(SELECT group_concat(host_id, ',') FROM (SELECT host_id \
     FROM app_host_apps h WHERE h.app_id = a.app_id ORDER BY host_id))";

/// Reads a JSON column of one row under its lock, applies `edit`, writes it back; None when
/// there is no such row.
async fn edit_json<X: Tx, T: DeserializeOwned + Serialize + Default>(
    tx: &mut X,
    (select, update): (&str, &str),
    id: impl Id,
    edit: impl FnOnce(&mut T),
) -> Result<Option<T>> {
    let locked = format!("{select} FOR UPDATE");
    let select = match tx.dialect() {
        Dialect::Postgres => locked.as_str(),
        Dialect::Sqlite => select,
    };
    let Some(row) = tx.opt(select, args![id.raw()]).await? else {
        return Ok(None);
    };
    let mut value: T = decode_settings(&row.string("v")?)?;
    edit(&mut value);
    tx.exec(update, args![encode_settings(&value)?, id.raw()])
        .await?;
    Ok(Some(value))
}

const SETTINGS: (&str, &str) = (
    "SELECT runtime_settings AS v FROM apps WHERE app_id = $1",
    "UPDATE apps SET runtime_settings = $1 WHERE app_id = $2",
);
const DOMAINS: (&str, &str) = (
    "SELECT domains AS v FROM tps WHERE tp_id = $1",
    "UPDATE tps SET domains = $1 WHERE tp_id = $2",
);

async fn json_of<X: Tx, T: DeserializeOwned + Default>(
    tx: &mut X,
    select: &str,
    id: impl Id,
) -> Result<Option<T>> {
    match tx.opt(select, args![id.raw()]).await? {
        Some(row) => Ok(Some(decode_settings(&row.string("v")?)?)),
        None => Ok(None),
    }
}

#[async_trait]
impl<S: Sql> RuntimeStore for S {
    async fn runtime_settings(&self, app_id: AppId) -> Result<Option<RuntimeSettings>> {
        work!(read, self, |tx| { json_of(tx, SETTINGS.0, app_id).await })
    }

    async fn update_runtime_settings(
        &self,
        app_id: AppId,
        edit: SettingsEdit,
    ) -> Result<Option<RuntimeSettings>> {
        work!(write, self, |tx| {
            edit_json(tx, SETTINGS, app_id, edit).await
        })
    }

    async fn tp_domains(&self, tp_id: TpId) -> Result<Option<Domains>> {
        work!(read, self, |tx| { json_of(tx, DOMAINS.0, tp_id).await })
    }

    async fn update_tp_domains(&self, tp_id: TpId, edit: DomainsEdit) -> Result<Option<Domains>> {
        work!(write, self, |tx| {
            edit_json(tx, DOMAINS, tp_id, edit).await
        })
    }

    async fn create_host_app(
        &self,
        name: String,
        host_key: String,
        secret_hash: String,
        now_ms: i64,
    ) -> Result<HostApp> {
        work!(write, self, |tx| {
            let sql = "INSERT INTO host_apps (name, host_key, secret_hash, created_at) \
                       VALUES ($1, $2, $3, $4) RETURNING host_id AS n";
            let host_id = tx
                .int(sql, args![&name, &host_key, &secret_hash, now_ms])
                .await?;
            Ok(HostApp {
                host_id: HostId(host_id),
                name,
                host_key,
                secret_hash,
                created_at_ms: now_ms,
            })
        })
    }

    async fn list_host_apps(&self) -> Result<Vec<HostApp>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::host_columns!(),
                " FROM host_apps ORDER BY host_id"
            );
            super::decode(tx.rows(sql, args![]).await?, HostApp::from_row)
        })
    }

    async fn host_app_by_key(&self, host_key: String) -> Result<Option<HostApp>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::host_columns!(),
                " FROM host_apps WHERE host_key = $1"
            );
            let row = tx.opt(sql, args![&host_key]).await?;
            row.as_ref().map(HostApp::from_row).transpose()
        })
    }

    async fn set_app_hosts(&self, app_id: AppId, hosts: Vec<HostId>) -> Result<bool> {
        work!(write, self, |tx| {
            let lock = tx.pick(locking!("SELECT app_id FROM apps WHERE app_id = $1"));
            if tx.opt(lock, args![app_id]).await?.is_none() {
                return Ok(false);
            }
            for &h in &hosts {
                let sql = "SELECT host_id FROM host_apps WHERE host_id = $1";
                if tx.opt(sql, args![h]).await?.is_none() {
                    return Err(StoreError::NotFound(format!("host app {h}")));
                }
            }
            tx.exec("DELETE FROM app_host_apps WHERE app_id = $1", args![app_id])
                .await?;
            for h in hosts {
                let sql = "INSERT INTO app_host_apps (app_id, host_id) VALUES ($1, $2) \
                           ON CONFLICT DO NOTHING";
                tx.exec(sql, args![app_id, h]).await?;
            }
            Ok(true)
        })
    }

    async fn runtime_view(&self, app_id: AppId) -> Result<Option<RuntimeView>> {
        work!(read, self, |tx| {
            let hosts = match tx.dialect() {
                Dialect::Postgres => HOSTS_PG,
                Dialect::Sqlite => HOSTS_LITE,
            };
            let rows = tx
                .rows(&format!("{VIEW}{hosts}{VIEW_FROM}"), args![app_id])
                .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let hosts = first
                .opt_string("hosts")?
                .unwrap_or_default()
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| {
                    h.parse()
                        .map(HostId)
                        .map_err(|_| StoreError::Corrupt(format!("host id {h}")))
                })
                .collect::<Result<Vec<HostId>>>()?;
            let mut view = RuntimeView {
                app_id,
                settings: decode_settings(&first.string("runtime_settings")?)?,
                hosts,
                online: None,
                staged: None,
            };
            for r in &rows {
                if r.opt_i64("package_id")?.is_none() {
                    continue;
                }
                let p = RuntimePackage {
                    package_id: r.id("package_id")?,
                    version: r.string("version")?,
                    template_id: r.id("template_id")?,
                    built_ext_json: r.opt_string("built_ext_json")?,
                    archive_sha256: r.opt_string("archive_sha256")?,
                    archive_size: r.opt_i64("archive_size")?,
                };
                match (r.string("state")?.as_str(), r.opt_i64("staged_percent")?) {
                    ("audit_passed", Some(pc)) => view.staged = Some((p, pc)),
                    _ => view.online = Some(p),
                }
            }
            Ok(Some(view))
        })
    }

    async fn recent_history(&self, app_id: AppId, limit: i64) -> Result<Vec<PackageRecord>> {
        work!(read, self, |tx| {
            let sql = pkg_select!(
                "WHERE p.app_id = $1 AND p.state = 'history' \
                 ORDER BY p.updated_at DESC, p.package_id DESC LIMIT $2"
            );
            super::decode(
                tx.rows(sql, args![app_id, limit]).await?,
                PackageRecord::from_row,
            )
        })
    }

    async fn archive_known(&self, sha256: String) -> Result<bool> {
        work!(read, self, |tx| {
            let sql = "SELECT 1 AS n FROM packages WHERE archive_sha256 = $1 LIMIT 1";
            Ok(tx.opt(sql, args![&sha256]).await?.is_some())
        })
    }

    async fn set_package_archive(
        &self,
        package_id: PackageId,
        sha256: String,
        size: i64,
    ) -> Result<(String, i64)> {
        work!(write, self, |tx| {
            tx.exec(
                "UPDATE packages SET archive_sha256 = $1, archive_size = $2 \
                     WHERE package_id = $3 AND archive_sha256 IS NULL",
                args![&sha256, size, package_id],
            )
            .await?;
            let sql = "SELECT archive_sha256, archive_size FROM packages WHERE package_id = $1";
            let kept = tx.opt(sql, args![package_id]).await?;
            let kept = match &kept {
                Some(r) => (r.opt_string("archive_sha256")?, r.opt_i64("archive_size")?),
                None => (None, None),
            };
            match kept {
                (Some(s), Some(n)) => Ok((s, n)),
                _ => Err(StoreError::NotFound(format!("package {package_id}"))),
            }
        })
    }
}
