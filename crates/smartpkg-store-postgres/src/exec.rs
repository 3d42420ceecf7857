//! How this backend runs the shared statements ([`smartpkg_store::sql`]): on the pool, in a
//! READ COMMITTED transaction for writes, whose row locks the statements take themselves.

use async_trait::async_trait;
use smartpkg_store::sql::packages::{by_token_rows, GET_BY_TOKEN};
use smartpkg_store::sql::{Arg, Dialect, Sql, Tx, Work};
use smartpkg_store::{Grant, Job, Lane, PackageRecord, Result, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres};

use crate::{Db, PgStore};

/// A pooled connection, in a transaction for writes.
pub enum PgTx {
    Read(PoolConnection<Postgres>),
    Write(sqlx::Transaction<'static, Postgres>),
}

impl PgTx {
    fn conn(&mut self) -> &mut PgConnection {
        match self {
            PgTx::Read(c) => c,
            PgTx::Write(t) => t,
        }
    }
}

/// A row of the pool as the shared row types read it (sqlx finds a column by name through a
/// map).
pub struct PgRowCols(pub(crate) PgRow);

impl PgRowCols {
    fn get<T>(&self, name: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        sqlx::Row::try_get(&self.0, name)
            .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
    }
}

smartpkg_store::columns_by_get!(PgRowCols);

fn bound<'q>(
    sql: &'q str,
    args: &'q [Arg<'q>],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.as_deref()),
            Arg::Bool(v) => q.bind(*v),
        };
    }
    q
}

#[async_trait]
impl Tx for PgTx {
    type Row = PgRowCols;

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<PgRowCols>> {
        let rows = bound(sql, args).fetch_all(self.conn()).await.db()?;
        Ok(rows.into_iter().map(PgRowCols).collect())
    }

    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let done = bound(sql, args).execute(self.conn()).await.db()?;
        Ok(done.rows_affected())
    }
}

impl PgStore {
    async fn get_from_database(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Grant, Vec<PackageRecord>)>> {
        let rows = sqlx::query(GET_BY_TOKEN)
            .bind(token_hash)
            .fetch_all(&self.get_pool)
            .await
            .db()?;
        let rows: Vec<PgRowCols> = rows.into_iter().map(PgRowCols).collect();
        by_token_rows(&rows)
    }
}

#[async_trait]
impl Sql for PgStore {
    type Tx = PgTx;

    async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> Result<Vec<Job>> {
        self.claim_skipping_locked(now_ms, limit, lease_ms, lane)
            .await
    }

    async fn read_with<T: Send + 'static>(&self, work: Work<PgTx, T>) -> Result<T> {
        let mut tx = PgTx::Read(self.pool.acquire().await.db()?);
        work(&mut tx).await
    }

    async fn write_with<T: Send + 'static>(&self, work: Work<PgTx, T>) -> Result<T> {
        let mut tx = PgTx::Write(self.pool.begin().await.db()?);
        let out = work(&mut tx).await;
        let PgTx::Write(mut t) = tx else {
            return out;
        };
        // On an error the transaction rolls back as it drops.
        let value = out?;
        // Which mini programs' `get` this transaction changed (the triggers of migration 0007
        // note them): this instance reads its own writes, so their answers go before the
        // caller hears of the write (other instances hear of it from the notifications).
        let changed: Option<String> =
            sqlx::query_scalar("SELECT current_setting('smartpkg.get_changed', true)")
                .fetch_one(&mut *t)
                .await
                .db()?;
        let committed = t.commit().await.db();
        match changed.as_deref().unwrap_or("") {
            "" => {}
            "*" => self.cache.invalidate(),
            ids => {
                for id in ids.split(',') {
                    match id.parse() {
                        Ok(app_id) => self.cache.invalidate_app(app_id),
                        Err(_) => self.cache.invalidate(),
                    }
                }
            }
        }
        committed?;
        Ok(value)
    }

    async fn by_token(&self, token_hash: String) -> Result<Option<(Grant, Vec<PackageRecord>)>> {
        if let Some(hit) = self.cache.get(&token_hash) {
            return Ok(Some(hit));
        }
        let epoch = self.cache.epoch();
        // A read: a connection the database dropped under it costs the caller nothing, the
        // query runs once more on another.
        let answer = match self.get_from_database(&token_hash).await {
            Err(StoreError::Unavailable(_)) => self.get_from_database(&token_hash).await,
            other => other,
        }?;
        if let (Some(epoch), Some(answer)) = (epoch, &answer) {
            self.cache.put(token_hash, answer.clone(), epoch);
        }
        Ok(answer)
    }
}
