use async_trait::async_trait;
use smartpkg_store::{
    Account, AccountChange, AccountRefusal, AppQuery, AppRow, ConsoleStore, Dashboard, LogEntry,
    NewAccount, QueueItem, Result, Session, Tp, LOG_SELECT, QUEUE_SELECT,
};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::tenants::{app_row, tp_row, APP_COLS, TP_COLS};
use crate::{Cols, Db, PgStore};

const ACCOUNT_COLS: &str = smartpkg_store::account_columns!();

fn account_row(r: &PgRow) -> Result<Account> {
    Account::from_row(&Cols(r))
}

fn log_row(r: &PgRow) -> Result<LogEntry> {
    LogEntry::from_row(&Cols(r))
}

#[async_trait]
impl ConsoleStore for PgStore {
    async fn count_accounts(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await
            .db()
    }

    async fn create_account(
        &self,
        new: NewAccount,
        first_only: bool,
        now_ms: i64,
    ) -> Result<std::result::Result<Account, AccountRefusal>> {
        let mut tx = self.pool.begin().await.db()?;
        if first_only {
            // Blocks every other writer of accounts until this transaction ends, so two
            // first sign-ups cannot both see an empty table.
            sqlx::query("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .db()?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
                .fetch_one(&mut *tx)
                .await
                .db()?;
            if n > 0 {
                return Ok(Err(AccountRefusal::NotFirst));
            }
        }
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO accounts (name, role, password_hash, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING account_id",
        )
        .bind(&new.name)
        .bind(new.role.as_str())
        .bind(&new.password_hash)
        .bind(new.created_by)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(id) = id else {
            return Ok(Err(AccountRefusal::NameTaken));
        };
        for app in &new.apps {
            sqlx::query(
                "INSERT INTO account_apps (account_id, app_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(app)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(Ok(Account {
            account_id: id,
            name: new.name,
            role: new.role,
            created_by: new.created_by,
            created_at_ms: now_ms,
            disabled_at_ms: None,
        }))
    }

    async fn account_by_name(&self, name: String) -> Result<Option<(Account, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLS}, a.password_hash FROM accounts a WHERE a.name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| Ok((account_row(&r)?, r.try_get(6).db()?)))
            .transpose()
    }

    async fn list_accounts(&self, offset: i64, limit: i64) -> Result<(i64, Vec<Account>)> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await
            .db()?;
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLS} FROM accounts a ORDER BY a.account_id LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok((total, rows.iter().map(account_row).collect::<Result<_>>()?))
    }

    async fn update_account(
        &self,
        account_id: i64,
        change: AccountChange,
        keep_session: Option<String>,
        now_ms: i64,
    ) -> Result<Option<Account>> {
        let mut tx = self.pool.begin().await.db()?;
        // Disabling keeps the first time it was disabled; enabling clears it.
        let row = sqlx::query(&format!(
            "UPDATE accounts a SET password_hash = COALESCE($2, a.password_hash), \
             disabled_at = CASE WHEN $3::BOOLEAN IS NULL THEN a.disabled_at \
                                WHEN $3 THEN COALESCE(a.disabled_at, $4) ELSE NULL END \
             WHERE a.account_id = $1 RETURNING {ACCOUNT_COLS}"
        ))
        .bind(account_id)
        .bind(change.password_hash)
        .bind(change.disabled)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(row) = row else {
            return Ok(None);
        };
        sqlx::query(
            "DELETE FROM sessions WHERE account_id = $1 AND ($2::TEXT IS NULL OR token_hash <> $2)",
        )
        .bind(account_id)
        .bind(keep_session)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        account_row(&row).map(Some)
    }

    async fn add_owned_apps(&self, account_id: i64, apps: Vec<i64>) -> Result<()> {
        sqlx::query(
            "INSERT INTO account_apps (account_id, app_id) SELECT $1, UNNEST($2::BIGINT[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(account_id)
        .bind(apps)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn owns_app(&self, account_id: i64, app_id: i64) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM account_apps WHERE account_id = $1 AND app_id = $2")
                .bind(account_id)
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await
                .db()?
                .is_some(),
        )
    }

    async fn create_session(
        &self,
        token_hash: String,
        account_id: i64,
        csrf: String,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .db()?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, account_id, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(account_id)
        .bind(csrf)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn session(&self, token_hash: String, now_ms: i64) -> Result<Option<Session>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLS}, s.csrf, s.expires_at FROM sessions s \
             JOIN accounts a ON a.account_id = s.account_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL"
        ))
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| {
            Ok(Session {
                account: account_row(&r)?,
                csrf: r.try_get(6).db()?,
                expires_at_ms: r.try_get(7).db()?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: String) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(())
    }

    async fn audit_queue(&self, offset: i64, limit: i64) -> Result<(i64, Vec<QueueItem>)> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM packages WHERE state = 'auditing'")
                .fetch_one(&self.pool)
                .await
                .db()?;
        let rows = sqlx::query(&format!("{QUEUE_SELECT} LIMIT $1 OFFSET $2"))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .db()?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(QueueItem {
                    package_id: r.try_get(0)?,
                    app_id: r.try_get(1)?,
                    app_name: r.try_get(2)?,
                    tp_id: r.try_get(3)?,
                    tp_name: r.try_get(4)?,
                    template_id: r.try_get(5)?,
                    template_version: r.try_get(6)?,
                    version: r.try_get(7)?,
                    version_desc: r.try_get(8)?,
                    test_account: r.try_get(9)?,
                    submitted_at_ms: r.try_get(10)?,
                })
            })
            .collect::<sqlx::Result<Vec<_>>>()
            .db()?;
        Ok((total, items))
    }

    async fn search_apps(
        &self,
        q: AppQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AppRow>, bool)> {
        let text = q.text.trim();
        let id: Option<i64> = text.parse().ok();
        let pattern = (!text.is_empty()).then(|| smartpkg_store::like_pattern(text));
        let cols = APP_COLS
            .split(", ")
            .map(|col| format!("a.{col}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols}, t.name AS tp_name, \
               (SELECT p.version FROM packages p WHERE p.app_id = a.app_id AND p.state IN ('online', 'rolling_back') LIMIT 1) \
             FROM apps a LEFT JOIN tps t ON t.tp_id = a.tp_id \
             WHERE ($1::TEXT IS NULL OR a.name ILIKE $1 OR a.app_id = $2) \
               AND ($3::BIGINT IS NULL OR a.app_id IN (SELECT app_id FROM account_apps WHERE account_id = $3)) \
               AND ($4::BIGINT IS NULL OR a.tp_id = $4) \
             ORDER BY a.app_id DESC LIMIT $5 OFFSET $6"
        ))
        .bind(pattern)
        .bind(id)
        .bind(q.owned_by)
        .bind(q.tp_id)
        .bind(limit + 1)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(AppRow {
                    app: app_row(r)?,
                    tp_name: r.try_get(8).db()?,
                    online_version: r.try_get(9).db()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let more = out.len() as i64 > limit;
        out.truncate(limit.max(0) as usize);
        Ok((out, more))
    }

    async fn list_tps(&self, offset: i64, limit: i64) -> Result<(i64, Vec<Tp>)> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tps")
            .fetch_one(&self.pool)
            .await
            .db()?;
        let rows = sqlx::query(&format!(
            "SELECT {TP_COLS} FROM tps ORDER BY tp_id DESC LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        let tps = rows.iter().map(tp_row).collect::<Result<Vec<_>>>()?;
        Ok((total, tps))
    }

    async fn app_log(&self, app_id: i64, limit: i64) -> Result<Vec<LogEntry>> {
        self.log_where("l.app_id", app_id, limit).await
    }

    async fn package_log(&self, package_id: i64, limit: i64) -> Result<Vec<LogEntry>> {
        self.log_where("l.package_id", package_id, limit).await
    }

    async fn recent_log(&self, limit: i64) -> Result<Vec<LogEntry>> {
        sqlx::query(&format!("{LOG_SELECT} ORDER BY l.log_id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .db()?
            .iter()
            .map(log_row)
            .collect()
    }

    async fn dashboard(&self) -> Result<Dashboard> {
        let by_state = sqlx::query_as::<_, (String, i64)>(
            "SELECT state, COUNT(*) FROM packages GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await
        .db()?;
        let (audits_waiting, oldest_waiting_since_ms): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(updated_at) FROM packages WHERE state = 'auditing'",
        )
        .fetch_one(&self.pool)
        .await
        .db()?;
        let (deliveries_failing, apps, tps): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'failed') AND attempts > 0), \
                    (SELECT COUNT(*) FROM apps), (SELECT COUNT(*) FROM tps)",
        )
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(Dashboard {
            by_state,
            audits_waiting,
            oldest_waiting_since_ms,
            deliveries_failing,
            apps,
            tps,
        })
    }
}

impl PgStore {
    /// The newest log entries whose `column` (a constant of this file) is `id`.
    async fn log_where(&self, column: &'static str, id: i64, limit: i64) -> Result<Vec<LogEntry>> {
        sqlx::query(&format!(
            "{LOG_SELECT} WHERE {column} = $1 ORDER BY l.log_id DESC LIMIT $2"
        ))
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .db()?
        .iter()
        .map(log_row)
        .collect()
    }
}
