//! [`ConsoleStore`] on every SQL backend.

use async_trait::async_trait;
use smartpkg_core::ids::{AccountId, AppId, PackageId};

use super::{decode, Dialect, Sql, Tx};
use crate::{
    Account, AccountChange, AccountRefusal, App, AppQuery, AppRow, Columns, ConsoleStore,
    Dashboard, LogEntry, NewAccount, QueueItem, Result, Session, Tp, LOG_SELECT,
};

const ACCOUNT_BY_ID: &str = concat!(
    "SELECT ",
    crate::account_columns!(),
    " FROM accounts a WHERE a.account_id = $1"
);

/// The audit queue, oldest first.
const QUEUE: &str = "SELECT p.package_id, p.app_id, a.name AS app_name, p.tp_id, \
       t.name AS tp_name, p.template_id, COALESCE(tm.user_version, '') AS template_version, \
       p.version, p.version_desc, p.test_account, p.updated_at \
     FROM packages p JOIN apps a ON a.app_id = p.app_id JOIN tps t ON t.tp_id = p.tp_id \
     LEFT JOIN templates tm ON tm.template_id = p.template_id \
     WHERE p.state = 'auditing' ORDER BY p.updated_at, p.package_id LIMIT $1 OFFSET $2";

fn queue_item(r: &impl Columns) -> Result<QueueItem> {
    Ok(QueueItem {
        package_id: r.id("package_id")?,
        app_id: r.id("app_id")?,
        app_name: r.string("app_name")?,
        tp_id: r.id("tp_id")?,
        tp_name: r.string("tp_name")?,
        template_id: r.id("template_id")?,
        template_version: r.string("template_version")?,
        version: r.string("version")?,
        version_desc: r.string("version_desc")?,
        test_account: r.opt_string("test_account")?,
        submitted_at_ms: r.i64("updated_at")?,
    })
}

const OWN_APP: &str =
    "INSERT INTO account_apps (account_id, app_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// The newest log entries whose `column` (a constant of this file) is `id`.
async fn log_where<S: Sql>(
    s: &S,
    column: &'static str,
    id: impl smartpkg_core::ids::Id + Send + 'static,
    limit: i64,
) -> Result<Vec<LogEntry>> {
    work!(read, s, |tx| {
        let sql = format!("{LOG_SELECT} WHERE {column} = $1 ORDER BY l.log_id DESC LIMIT $2");
        decode(
            tx.rows(&sql, args![id.raw(), limit]).await?,
            LogEntry::from_row,
        )
    })
}

#[async_trait]
impl<S: Sql> ConsoleStore for S {
    async fn count_accounts(&self) -> Result<i64> {
        work!(read, self, |tx| {
            tx.int("SELECT COUNT(*) AS n FROM accounts", args![]).await
        })
    }

    async fn create_account(
        &self,
        new: NewAccount,
        first_only: bool,
        now_ms: i64,
    ) -> Result<std::result::Result<Account, AccountRefusal>> {
        work!(write, self, |tx| {
            if first_only {
                // Two first sign-ups must not both see an empty table: on PostgreSQL the
                // table lock blocks every other writer of accounts until this transaction
                // ends; SQLite's one writer already does.
                if tx.dialect() == Dialect::Postgres {
                    tx.exec("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE", args![])
                        .await?;
                }
                if tx
                    .int("SELECT COUNT(*) AS n FROM accounts", args![])
                    .await?
                    > 0
                {
                    return Ok(Err(AccountRefusal::NotFirst));
                }
            }
            let sql = "INSERT INTO accounts (name, role, password_hash, created_by, created_at) \
                       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING \
                       RETURNING account_id AS n";
            let args = args![
                &new.name,
                new.role.as_str(),
                &new.password_hash,
                new.created_by,
                now_ms
            ];
            let Some(row) = tx.opt(sql, args).await? else {
                return Ok(Err(AccountRefusal::NameTaken));
            };
            let id = row.i64("n")?;
            for &app in &new.apps {
                tx.exec(OWN_APP, args![id, app]).await?;
            }
            Ok(Ok(Account {
                account_id: AccountId(id),
                name: new.name,
                role: new.role,
                created_by: new.created_by,
                created_at_ms: now_ms,
                disabled_at_ms: None,
            }))
        })
    }

    async fn account_by_name(&self, name: String) -> Result<Option<(Account, String)>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::account_columns!(),
                ", a.password_hash FROM accounts a WHERE a.name = $1"
            );
            match tx.opt(sql, args![&name]).await? {
                Some(r) => Ok(Some((Account::from_row(&r)?, r.string("password_hash")?))),
                None => Ok(None),
            }
        })
    }

    async fn list_accounts(&self, offset: i64, limit: i64) -> Result<(i64, Vec<Account>)> {
        work!(read, self, |tx| {
            let total = tx
                .int("SELECT COUNT(*) AS n FROM accounts", args![])
                .await?;
            let sql = concat!(
                "SELECT ",
                crate::account_columns!(),
                " FROM accounts a ORDER BY a.account_id LIMIT $1 OFFSET $2"
            );
            Ok((
                total,
                decode(tx.rows(sql, args![limit, offset]).await?, Account::from_row)?,
            ))
        })
    }

    async fn update_account(
        &self,
        account_id: AccountId,
        change: AccountChange,
        keep_session: Option<String>,
        now_ms: i64,
    ) -> Result<Option<Account>> {
        work!(write, self, |tx| {
            // Disabling keeps the first time it was disabled; enabling clears it.
            let n = tx
                .exec(
                    "UPDATE accounts SET password_hash = COALESCE($2, password_hash), \
                       disabled_at = CASE WHEN $3 IS NULL THEN disabled_at \
                                          WHEN $3 THEN COALESCE(disabled_at, $4) ELSE NULL END \
                       WHERE account_id = $1",
                    args![account_id, &change.password_hash, change.disabled, now_ms],
                )
                .await?;
            if n == 0 {
                return Ok(None);
            }
            tx.exec(
                "DELETE FROM sessions WHERE account_id = $1 \
                     AND ($2 IS NULL OR token_hash <> $2)",
                args![account_id, &keep_session],
            )
            .await?;
            let row = tx.opt(ACCOUNT_BY_ID, args![account_id]).await?;
            row.as_ref().map(Account::from_row).transpose()
        })
    }

    async fn add_owned_apps(&self, account_id: AccountId, apps: Vec<AppId>) -> Result<()> {
        work!(write, self, |tx| {
            for app in apps {
                tx.exec(OWN_APP, args![account_id, app]).await?;
            }
            Ok(())
        })
    }

    async fn owns_app(&self, account_id: AccountId, app_id: AppId) -> Result<bool> {
        work!(read, self, |tx| {
            let sql = "SELECT 1 AS n FROM account_apps WHERE account_id = $1 AND app_id = $2";
            Ok(tx.opt(sql, args![account_id, app_id]).await?.is_some())
        })
    }

    async fn create_session(
        &self,
        token_hash: String,
        account_id: AccountId,
        csrf: String,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        work!(write, self, |tx| {
            tx.exec("DELETE FROM sessions WHERE expires_at <= $1", args![now_ms])
                .await?;
            tx.exec(
                "INSERT INTO sessions (token_hash, account_id, csrf, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                args![&token_hash, account_id, &csrf, now_ms, expires_at_ms],
            )
            .await?;
            Ok(())
        })
    }

    async fn session(&self, token_hash: String, now_ms: i64) -> Result<Option<Session>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::account_columns!(),
                ", s.csrf, s.expires_at FROM sessions s \
                 JOIN accounts a ON a.account_id = s.account_id \
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL"
            );
            match tx.opt(sql, args![&token_hash, now_ms]).await? {
                Some(r) => Ok(Some(Session {
                    account: Account::from_row(&r)?,
                    csrf: r.string("csrf")?,
                    expires_at_ms: r.i64("expires_at")?,
                })),
                None => Ok(None),
            }
        })
    }

    async fn delete_session(&self, token_hash: String) -> Result<()> {
        work!(write, self, |tx| {
            tx.exec(
                "DELETE FROM sessions WHERE token_hash = $1",
                args![&token_hash],
            )
            .await?;
            Ok(())
        })
    }

    async fn audit_queue(&self, offset: i64, limit: i64) -> Result<(i64, Vec<QueueItem>)> {
        work!(read, self, |tx| {
            let total = tx
                .int(
                    "SELECT COUNT(*) AS n FROM packages WHERE state = 'auditing'",
                    args![],
                )
                .await?;
            Ok((
                total,
                decode(tx.rows(QUEUE, args![limit, offset]).await?, queue_item)?,
            ))
        })
    }

    async fn search_apps(
        &self,
        q: AppQuery,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AppRow>, bool)> {
        work!(read, self, |tx| {
            let text = q.text.trim();
            let id: Option<i64> = text.parse().ok();
            let pattern = (!text.is_empty()).then(|| crate::like_pattern(text));
            let cols = crate::app_columns!()
                .split(", ")
                .map(|col| format!("a.{col}"))
                .collect::<Vec<_>>()
                .join(", ");
            // Case-insensitive for ASCII on both (SQLite's LIKE is, PostgreSQL's is not).
            let like = tx.pick(("ILIKE", "LIKE"));
            let sql = format!(
                "SELECT {cols}, t.name AS tp_name, \
                   (SELECT p.version FROM packages p WHERE p.app_id = a.app_id \
                    AND p.state IN ('online', 'rolling_back') LIMIT 1) AS online_version \
                 FROM apps a LEFT JOIN tps t ON t.tp_id = a.tp_id \
                 WHERE ($1 IS NULL OR a.name {like} $1 ESCAPE '\\' OR a.app_id = $2) \
                   AND ($3 IS NULL OR a.app_id IN \
                        (SELECT app_id FROM account_apps WHERE account_id = $3)) \
                   AND ($4 IS NULL OR a.tp_id = $4) \
                 ORDER BY a.app_id DESC LIMIT $5 OFFSET $6"
            );
            let args = args![pattern, id, q.owned_by, q.tp_id, limit + 1, offset];
            let mut rows = decode(tx.rows(&sql, args).await?, |r| {
                Ok(AppRow {
                    app: App::from_row(r)?,
                    tp_name: r.opt_string("tp_name")?,
                    online_version: r.opt_string("online_version")?,
                })
            })?;
            let more = rows.len() as i64 > limit;
            rows.truncate(limit.max(0) as usize);
            Ok((rows, more))
        })
    }

    async fn list_tps(&self, offset: i64, limit: i64) -> Result<(i64, Vec<Tp>)> {
        work!(read, self, |tx| {
            let total = tx.int("SELECT COUNT(*) AS n FROM tps", args![]).await?;
            let sql = concat!(
                "SELECT ",
                crate::tp_columns!(),
                " FROM tps ORDER BY tp_id DESC LIMIT $1 OFFSET $2"
            );
            Ok((
                total,
                decode(tx.rows(sql, args![limit, offset]).await?, Tp::from_row)?,
            ))
        })
    }

    async fn app_log(&self, app_id: AppId, limit: i64) -> Result<Vec<LogEntry>> {
        log_where(self, "l.app_id", app_id, limit).await
    }

    async fn package_log(&self, package_id: PackageId, limit: i64) -> Result<Vec<LogEntry>> {
        log_where(self, "l.package_id", package_id, limit).await
    }

    async fn recent_log(&self, limit: i64) -> Result<Vec<LogEntry>> {
        work!(read, self, |tx| {
            let sql = concat!(crate::log_select!(), " ORDER BY l.log_id DESC LIMIT $1");
            decode(tx.rows(sql, args![limit]).await?, LogEntry::from_row)
        })
    }

    async fn dashboard(&self) -> Result<Dashboard> {
        work!(read, self, |tx| {
            let sql = "SELECT state, COUNT(*) AS n FROM packages GROUP BY state ORDER BY state";
            let by_state = decode(tx.rows(sql, args![]).await?, |r| {
                Ok((r.string("state")?, r.i64("n")?))
            })?;
            let waiting = tx
                .one(
                    "SELECT COUNT(*) AS n, MIN(updated_at) AS since FROM packages \
                      WHERE state = 'auditing'",
                    args![],
                )
                .await?;
            let failing = "SELECT COUNT(*) AS n FROM deliveries \
                           WHERE state IN ('pending', 'failed') AND attempts > 0";
            Ok(Dashboard {
                by_state,
                audits_waiting: waiting.i64("n")?,
                oldest_waiting_since_ms: waiting.opt_i64("since")?,
                deliveries_failing: tx.int(failing, args![]).await?,
                apps: tx.int("SELECT COUNT(*) AS n FROM apps", args![]).await?,
                tps: tx.int("SELECT COUNT(*) AS n FROM tps", args![]).await?,
            })
        })
    }
}
