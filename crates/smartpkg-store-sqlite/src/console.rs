use super::tenants::{app_row, tp_row, APP_COLS, TP_COLS};
use super::*;
use smartpkg_store::{
    Account, AccountChange, AccountRefusal, AppQuery, AppRow, ConsoleStore, Dashboard, LogEntry,
    NewAccount, QueueItem, Session, LOG_SELECT, QUEUE_SELECT,
};

const ACCOUNT_COLS: &str = smartpkg_store::account_columns!();

fn account_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    decoded(Account::from_row(&Cols::new(r)))
}

fn log_row(r: &Row<'_>) -> rusqlite::Result<LogEntry> {
    decoded(LogEntry::from_row(&Cols::new(r)))
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn count_accounts(&self) -> StoreResult<i64> {
        self.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?))
            .await
    }

    async fn create_account(
        &self,
        new: NewAccount,
        first_only: bool,
        now_ms: i64,
    ) -> StoreResult<std::result::Result<Account, AccountRefusal>> {
        // The writer's transaction is the only one: the count and the insert cannot interleave
        // with another creation.
        self.write(move |tx| {
            if first_only {
                let n: i64 = tx.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
                if n > 0 {
                    return Ok(Err(AccountRefusal::NotFirst));
                }
            }
            let n = tx.execute(
                "INSERT INTO accounts (name, role, password_hash, created_by, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
                params![
                    new.name,
                    new.role.as_str(),
                    new.password_hash,
                    new.created_by,
                    now_ms
                ],
            )?;
            if n == 0 {
                return Ok(Err(AccountRefusal::NameTaken));
            }
            let id = tx.last_insert_rowid();
            for app in &new.apps {
                tx.execute(
                    "INSERT OR IGNORE INTO account_apps (account_id, app_id) VALUES (?1, ?2)",
                    params![id, app],
                )?;
            }
            Ok(Ok(Account {
                account_id: id,
                name: new.name,
                role: new.role,
                created_by: new.created_by,
                created_at_ms: now_ms,
                disabled_at_ms: None,
            }))
        })
        .await
    }

    async fn account_by_name(&self, name: String) -> StoreResult<Option<(Account, String)>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS}, a.password_hash FROM accounts a WHERE a.name = ?1"
            ))?
            .query_row([name], |r| Ok((account_row(r)?, r.get(6)?)))
            .optional()?)
        })
        .await
    }

    async fn list_accounts(&self, offset: i64, limit: i64) -> StoreResult<(i64, Vec<Account>)> {
        self.read(move |c| {
            let total = c.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLS} FROM accounts a ORDER BY a.account_id LIMIT ?1 OFFSET ?2"
                ))?
                .query_map([limit, offset], account_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((total, rows))
        })
        .await
    }

    async fn update_account(
        &self,
        account_id: i64,
        change: AccountChange,
        keep_session: Option<String>,
        now_ms: i64,
    ) -> StoreResult<Option<Account>> {
        self.write(move |tx| {
            // Disabling keeps the first time it was disabled; enabling clears it.
            let n = tx.execute(
                "UPDATE accounts SET password_hash = COALESCE(?2, password_hash), \
                 disabled_at = CASE WHEN ?3 IS NULL THEN disabled_at \
                                    WHEN ?3 THEN COALESCE(disabled_at, ?4) ELSE NULL END \
                 WHERE account_id = ?1",
                params![account_id, change.password_hash, change.disabled, now_ms],
            )?;
            if n == 0 {
                return Ok(None);
            }
            tx.execute(
                "DELETE FROM sessions WHERE account_id = ?1 AND token_hash IS NOT ?2",
                params![account_id, keep_session],
            )?;
            Ok(tx
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.account_id = ?1"
                ))?
                .query_row([account_id], account_row)
                .optional()?)
        })
        .await
    }

    async fn add_owned_apps(&self, account_id: i64, apps: Vec<i64>) -> StoreResult<()> {
        self.write(move |tx| {
            for app in apps {
                tx.execute(
                    "INSERT OR IGNORE INTO account_apps (account_id, app_id) VALUES (?1, ?2)",
                    params![account_id, app],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn owns_app(&self, account_id: i64, app_id: i64) -> StoreResult<bool> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT 1 FROM account_apps WHERE account_id = ?1 AND app_id = ?2",
            )?
            .exists(params![account_id, app_id])?)
        })
        .await
    }

    async fn create_session(
        &self,
        token_hash: String,
        account_id: i64,
        csrf: String,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now_ms])?;
            tx.execute(
                "INSERT INTO sessions (token_hash, account_id, csrf, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token_hash, account_id, csrf, now_ms, expires_at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: String, now_ms: i64) -> StoreResult<Option<Session>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS}, s.csrf, s.expires_at FROM sessions s \
                 JOIN accounts a ON a.account_id = s.account_id \
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND a.disabled_at IS NULL"
            ))?
            .query_row(params![token_hash, now_ms], |r| {
                Ok(Session {
                    account: account_row(r)?,
                    csrf: r.get(6)?,
                    expires_at_ms: r.get(7)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn delete_session(&self, token_hash: String) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
            Ok(())
        })
        .await
    }

    async fn audit_queue(&self, offset: i64, limit: i64) -> StoreResult<(i64, Vec<QueueItem>)> {
        self.read(move |c| {
            let total = c
                .prepare_cached("SELECT COUNT(*) FROM packages WHERE state = 'auditing'")?
                .query_row([], |r| r.get(0))?;
            let rows = c
                .prepare_cached(&format!("{QUEUE_SELECT} LIMIT ?1 OFFSET ?2"))?
                .query_map([limit, offset], |r| {
                    Ok(QueueItem {
                        package_id: r.get(0)?,
                        app_id: r.get(1)?,
                        app_name: r.get(2)?,
                        tp_id: r.get(3)?,
                        tp_name: r.get(4)?,
                        template_id: r.get(5)?,
                        template_version: r.get(6)?,
                        version: r.get(7)?,
                        version_desc: r.get(8)?,
                        test_account: r.get(9)?,
                        submitted_at_ms: r.get(10)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((total, rows))
        })
        .await
    }

    async fn search_apps(
        &self,
        q: AppQuery,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AppRow>, bool)> {
        self.read(move |c| {
            let text = q.text.trim();
            let id: Option<i64> = text.parse().ok();
            let pattern = (!text.is_empty()).then(|| smartpkg_store::like_pattern(text));
            let cols = APP_COLS
                .split(", ")
                .map(|col| format!("a.{col}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {cols}, t.name AS tp_name, \
                   (SELECT p.version FROM packages p WHERE p.app_id = a.app_id AND p.state IN ('online', 'rolling_back') LIMIT 1) \
                 FROM apps a LEFT JOIN tps t ON t.tp_id = a.tp_id \
                 WHERE (?1 IS NULL OR a.name LIKE ?1 ESCAPE '\\' OR a.app_id = ?2) \
                   AND (?3 IS NULL OR a.app_id IN (SELECT app_id FROM account_apps WHERE account_id = ?3)) \
                   AND (?4 IS NULL OR a.tp_id = ?4) \
                 ORDER BY a.app_id DESC LIMIT ?5 OFFSET ?6"
            ))?;
            let mut rows = stmt
                .query_map(
                    params![pattern, id, q.owned_by, q.tp_id, limit + 1, offset],
                    |r| {
                        Ok(AppRow {
                            app: app_row(r)?,
                            tp_name: r.get(8)?,
                            online_version: r.get(9)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let more = rows.len() as i64 > limit;
            rows.truncate(limit.max(0) as usize);
            Ok((rows, more))
        })
        .await
    }

    async fn list_tps(&self, offset: i64, limit: i64) -> StoreResult<(i64, Vec<Tp>)> {
        self.read(move |c| {
            let total = c.query_row("SELECT COUNT(*) FROM tps", [], |r| r.get(0))?;
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {TP_COLS} FROM tps ORDER BY tp_id DESC LIMIT ?1 OFFSET ?2"
                ))?
                .query_map([limit, offset], tp_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((total, rows))
        })
        .await
    }

    async fn app_log(&self, app_id: i64, limit: i64) -> StoreResult<Vec<LogEntry>> {
        self.log_where("l.app_id", app_id, limit).await
    }

    async fn package_log(&self, package_id: i64, limit: i64) -> StoreResult<Vec<LogEntry>> {
        self.log_where("l.package_id", package_id, limit).await
    }

    async fn recent_log(&self, limit: i64) -> StoreResult<Vec<LogEntry>> {
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("{LOG_SELECT} ORDER BY l.log_id DESC LIMIT ?1"))?
                    .query_map([limit], log_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            )
        })
        .await
    }

    async fn dashboard(&self) -> StoreResult<Dashboard> {
        self.read(|c| {
            let by_state = c
                .prepare_cached("SELECT state, COUNT(*) FROM packages GROUP BY state ORDER BY state")?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let (audits_waiting, oldest_waiting_since_ms) = c.query_row(
                "SELECT COUNT(*), MIN(updated_at) FROM packages WHERE state = 'auditing'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let deliveries_failing = c.query_row(
                "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'failed') AND attempts > 0",
                [],
                |r| r.get(0),
            )?;
            let apps = c.query_row("SELECT COUNT(*) FROM apps", [], |r| r.get(0))?;
            let tps = c.query_row("SELECT COUNT(*) FROM tps", [], |r| r.get(0))?;
            Ok(Dashboard {
                by_state,
                audits_waiting,
                oldest_waiting_since_ms,
                deliveries_failing,
                apps,
                tps,
            })
        })
        .await
    }
}

impl SqliteStore {
    /// The newest log entries whose `column` (a constant of this file) is `id`.
    async fn log_where(
        &self,
        column: &'static str,
        id: i64,
        limit: i64,
    ) -> StoreResult<Vec<LogEntry>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "{LOG_SELECT} WHERE {column} = ?1 ORDER BY l.log_id DESC LIMIT ?2"
            ))?
            .query_map([id, limit], log_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
