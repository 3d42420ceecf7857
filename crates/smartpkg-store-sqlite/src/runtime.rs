use super::*;
use smartpkg_store::runtime::{
    decode_settings, encode_settings, Domains, DomainsEdit, HostApp, RuntimePackage,
    RuntimeSettings, RuntimeStore, RuntimeView, SettingsEdit,
};

const HOST_COLS: &str = smartpkg_store::host_columns!();

fn host_row(r: &Row<'_>) -> rusqlite::Result<HostApp> {
    decoded(HostApp::from_row(&Cols::new(r)))
}

fn runtime_package(
    c: &Connection,
    app_id: i64,
    states: &str,
) -> Result<Option<(RuntimePackage, Option<i64>)>> {
    let sql = format!(
        "SELECT package_id, version, template_id, built_ext_json, archive_sha256, archive_size, staged_percent \
         FROM packages WHERE app_id = ?1 AND state IN ({states}) ORDER BY package_id DESC LIMIT 1"
    );
    Ok(c.prepare_cached(&sql)?
        .query_row([app_id], |r| {
            Ok((
                RuntimePackage {
                    package_id: r.get(0)?,
                    version: r.get(1)?,
                    template_id: r.get(2)?,
                    built_ext_json: r.get(3)?,
                    archive_sha256: r.get(4)?,
                    archive_size: r.get(5)?,
                },
                r.get(6)?,
            ))
        })
        .optional()?)
}

#[async_trait]
impl RuntimeStore for SqliteStore {
    async fn runtime_settings(&self, app_id: i64) -> StoreResult<Option<RuntimeSettings>> {
        self.read(move |c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT runtime_settings FROM apps WHERE app_id = ?1",
                    [app_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(text.map(|t| decode_settings(&t)).transpose()?)
        })
        .await
    }

    async fn update_runtime_settings(
        &self,
        app_id: i64,
        edit: SettingsEdit,
    ) -> StoreResult<Option<RuntimeSettings>> {
        // The write transaction holds SQLite's one writer between the read and the write.
        self.write(move |tx| {
            let text: Option<String> = tx
                .query_row(
                    "SELECT runtime_settings FROM apps WHERE app_id = ?1",
                    [app_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(text) = text else { return Ok(None) };
            let mut settings: RuntimeSettings = decode_settings(&text)?;
            edit(&mut settings);
            tx.execute(
                "UPDATE apps SET runtime_settings = ?1 WHERE app_id = ?2",
                params![encode_settings(&settings)?, app_id],
            )?;
            Ok(Some(settings))
        })
        .await
    }

    async fn tp_domains(&self, tp_id: i64) -> StoreResult<Option<Domains>> {
        self.read(move |c| {
            let text: Option<String> = c
                .query_row("SELECT domains FROM tps WHERE tp_id = ?1", [tp_id], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(text.map(|t| decode_settings(&t)).transpose()?)
        })
        .await
    }

    async fn update_tp_domains(
        &self,
        tp_id: i64,
        edit: DomainsEdit,
    ) -> StoreResult<Option<Domains>> {
        self.write(move |tx| {
            let text: Option<String> = tx
                .query_row("SELECT domains FROM tps WHERE tp_id = ?1", [tp_id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(text) = text else { return Ok(None) };
            let mut domains: Domains = decode_settings(&text)?;
            edit(&mut domains);
            tx.execute(
                "UPDATE tps SET domains = ?1 WHERE tp_id = ?2",
                params![encode_settings(&domains)?, tp_id],
            )?;
            Ok(Some(domains))
        })
        .await
    }

    async fn create_host_app(
        &self,
        name: String,
        host_key: String,
        secret_hash: String,
        now_ms: i64,
    ) -> StoreResult<HostApp> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO host_apps (name, host_key, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, host_key, secret_hash, now_ms],
            )?;
            Ok(HostApp {
                host_id: tx.last_insert_rowid(),
                name,
                host_key,
                secret_hash,
                created_at_ms: now_ms,
            })
        })
        .await
    }

    async fn list_host_apps(&self) -> StoreResult<Vec<HostApp>> {
        self.read(|c| {
            Ok(c.prepare(&format!(
                "SELECT {HOST_COLS} FROM host_apps ORDER BY host_id"
            ))?
            .query_map([], host_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn host_app_by_key(&self, host_key: String) -> StoreResult<Option<HostApp>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {HOST_COLS} FROM host_apps WHERE host_key = ?1"
            ))?
            .query_row([host_key], host_row)
            .optional()?)
        })
        .await
    }

    async fn set_app_hosts(&self, app_id: i64, hosts: Vec<i64>) -> StoreResult<bool> {
        self.write(move |tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT app_id FROM apps WHERE app_id = ?1", [app_id], |r| {
                    r.get(0)
                })
                .optional()?;
            if exists.is_none() {
                return Ok(false);
            }
            for h in &hosts {
                let known: Option<i64> = tx
                    .query_row(
                        "SELECT host_id FROM host_apps WHERE host_id = ?1",
                        [h],
                        |r| r.get(0),
                    )
                    .optional()?;
                if known.is_none() {
                    return Err(StoreError::NotFound(format!("host app {h}")).into());
                }
            }
            tx.execute("DELETE FROM app_host_apps WHERE app_id = ?1", [app_id])?;
            for h in hosts {
                tx.execute(
                    "INSERT OR IGNORE INTO app_host_apps (app_id, host_id) VALUES (?1, ?2)",
                    params![app_id, h],
                )?;
            }
            Ok(true)
        })
        .await
    }

    async fn runtime_view(&self, app_id: i64) -> StoreResult<Option<RuntimeView>> {
        self.read(move |c| {
            let text: Option<String> = c
                .prepare_cached("SELECT runtime_settings FROM apps WHERE app_id = ?1")?
                .query_row([app_id], |r| r.get(0))
                .optional()?;
            let Some(text) = text else { return Ok(None) };
            let hosts = c
                .prepare_cached(
                    "SELECT host_id FROM app_host_apps WHERE app_id = ?1 ORDER BY host_id",
                )?
                .query_map([app_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            let online = runtime_package(c, app_id, "'online', 'rolling_back'")?.map(|(p, _)| p);
            let staged = runtime_package(c, app_id, "'audit_passed'")?
                .and_then(|(p, percent)| percent.map(|pc| (p, pc)));
            Ok(Some(RuntimeView {
                app_id,
                settings: decode_settings(&text)?,
                hosts,
                online,
                staged,
            }))
        })
        .await
    }

    async fn recent_history(
        &self,
        app_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<smartpkg_store::PackageRecord>> {
        self.read(move |c| {
            Ok(c.prepare_cached(super::packages::pkg_select!(
                "WHERE p.app_id = ?1 AND p.state = 'history' ORDER BY p.updated_at DESC, p.package_id DESC LIMIT ?2"
            ))?
            .query_map(params![app_id, limit], super::packages::pkg_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn archive_known(&self, sha256: String) -> StoreResult<bool> {
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM packages WHERE archive_sha256 = ?1 LIMIT 1")?
                    .query_row([sha256], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })
        .await
    }

    async fn set_package_archive(
        &self,
        package_id: i64,
        sha256: String,
        size: i64,
    ) -> StoreResult<(String, i64)> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE packages SET archive_sha256 = ?1, archive_size = ?2 \
                 WHERE package_id = ?3 AND archive_sha256 IS NULL",
                params![sha256, size, package_id],
            )?;
            let kept: Option<(Option<String>, Option<i64>)> = tx
                .query_row(
                    "SELECT archive_sha256, archive_size FROM packages WHERE package_id = ?1",
                    [package_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match kept {
                Some((Some(s), Some(n))) => Ok((s, n)),
                _ => Err(StoreError::NotFound(format!("package {package_id}")).into()),
            }
        })
        .await
    }
}
