//! How this backend runs the shared statements ([`smartpkg_store::sql`]).
//!
//! rusqlite is synchronous: a statement is done when its call returns. The shared operations
//! are written as futures so that PostgreSQL can await its socket; here every await is ready at
//! once, so a unit of work is polled once, to completion, on the thread that runs it (a write's
//! blocking thread, a read's caller). A unit of work that waits on anything else is a bug, and
//! fails instead of blocking a thread.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt;
use rusqlite::types::Value;
use rusqlite::Connection;
use smartpkg_store::sql::packages::{grant_of, GET_BY_TOKEN};
use smartpkg_store::sql::{Arg, Dialect, Sql, Tx, Work};
use smartpkg_store::{Columns, Grant, Job, Lane, PackageRecord, StoreError};

use crate::{configure, join_err, poisoned, Error, SqliteStore, StoreResult, MAX_IDLE_READERS};

/// A connection running the shared statements.
pub struct LiteTx {
    conn: Connection,
    /// Each statement's column names, read once: a row's names are shared, not copied.
    names: HashMap<String, Arc<[String]>>,
}

/// A row, copied out of the statement (whose rows borrow it).
pub struct LiteRow {
    names: Arc<[String]>,
    values: Vec<Value>,
    next: std::cell::Cell<usize>,
}

impl LiteTx {
    pub(crate) fn new(conn: Connection) -> Self {
        LiteTx {
            conn,
            names: HashMap::new(),
        }
    }

    fn prepared<'c>(
        &'c self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<rusqlite::CachedStatement<'c>, Error> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        // `$3` is the third argument wherever it stands: bound by name, not by position.
        for i in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(i).unwrap_or_default();
            let at: usize = name
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::database(format!("parameter {name} in: {sql}")))?;
            let arg = args
                .get(at - 1)
                .ok_or_else(|| StoreError::database(format!("no argument for {name} in: {sql}")))?;
            match arg {
                Arg::Int(v) => stmt.raw_bind_parameter(i, v)?,
                Arg::Text(v) => stmt.raw_bind_parameter(i, v.as_deref())?,
                Arg::Bool(v) => stmt.raw_bind_parameter(i, v)?,
            }
        }
        Ok(stmt)
    }

    fn rows_now(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<LiteRow>, Error> {
        let names = match self.names.get(sql) {
            Some(n) => n.clone(),
            None => {
                let stmt = self.conn.prepare_cached(sql)?;
                let n: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
                // Statements built at run time (a listing's filters) are few; bounded anyway.
                if self.names.len() >= 256 {
                    self.names.clear();
                }
                self.names.insert(sql.to_string(), n.clone());
                n
            }
        };
        let mut stmt = self.prepared(sql, args)?;
        let width = names.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let values = (0..width)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.push(LiteRow {
                names: names.clone(),
                values,
                next: std::cell::Cell::new(0),
            });
        }
        Ok(out)
    }

    fn exec_now(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error> {
        let mut stmt = self.prepared(sql, args)?;
        if stmt.column_count() == 0 {
            return Ok(stmt.raw_execute()? as u64);
        }
        // A statement that answers rows (a lock taken with a SELECT on PostgreSQL): run to
        // its end, counting them.
        let mut rows = stmt.raw_query();
        let mut n = 0;
        while rows.next()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait]
impl Tx for LiteTx {
    type Row = LiteRow;

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<LiteRow>> {
        Ok(self.rows_now(sql, args)?)
    }

    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(self.exec_now(sql, args)?)
    }
}

/// A row of a running statement, read in place (no copy): for the hottest read.
struct InPlace<'a, 'b> {
    row: &'a rusqlite::Row<'b>,
    next: std::cell::Cell<usize>,
}

impl InPlace<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, name: &str) -> StoreResult<T> {
        let stmt = self.row.as_ref();
        let hint = self.next.get();
        let at = match stmt.column_name(hint) {
            Ok(n) if n == name => hint,
            _ => stmt
                .column_index(name)
                .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))?,
        };
        self.next.set(at + 1);
        self.row
            .get(at)
            .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
    }
}

smartpkg_store::columns_by_get!(InPlace<'_, '_>);

impl LiteTx {
    /// `get`'s one statement, decoded as SQLite hands the rows over.
    fn by_token_now(&self, token_hash: &str) -> Result<Option<ByToken>, Error> {
        let mut stmt = self.prepared(GET_BY_TOKEN, &[Arg::from(token_hash)])?;
        let mut rows = stmt.raw_query();
        let mut found: Option<ByToken> = None;
        while let Some(row) = rows.next()? {
            let r = InPlace {
                row,
                next: std::cell::Cell::new(0),
            };
            let (_, packages) = match &mut found {
                Some(f) => f,
                None => found.insert((grant_of(&r)?, Vec::new())),
            };
            // The row of an app without packages has NULL package columns.
            if r.opt_i64("package_id")?.is_some() {
                packages.push(PackageRecord::from_row(&r)?);
            }
        }
        Ok(found)
    }
}

type ByToken = (Grant, Vec<PackageRecord>);

impl LiteRow {
    fn value(&self, name: &str) -> StoreResult<&Value> {
        let hint = self.next.get();
        let at = match self.names.get(hint) {
            Some(n) if n == name => hint,
            _ => self
                .names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| StoreError::Corrupt(format!("column {name}: no such column")))?,
        };
        self.next.set(at + 1);
        Ok(&self.values[at])
    }

    fn opt_int(&self, name: &str) -> StoreResult<Option<i64>> {
        match self.value(name)? {
            Value::Integer(i) => Ok(Some(*i)),
            Value::Null => Ok(None),
            other => Err(mistyped(name, other)),
        }
    }
}

fn mistyped(name: &str, v: &Value) -> StoreError {
    StoreError::Corrupt(format!("column {name}: unexpected {:?}", v.data_type()))
}

fn null(name: &str) -> StoreError {
    StoreError::Corrupt(format!("column {name}: unexpected NULL"))
}

impl Columns for LiteRow {
    fn i64(&self, name: &str) -> StoreResult<i64> {
        self.opt_int(name)?.ok_or_else(|| null(name))
    }
    fn opt_i64(&self, name: &str) -> StoreResult<Option<i64>> {
        self.opt_int(name)
    }
    fn string(&self, name: &str) -> StoreResult<String> {
        self.opt_string(name)?.ok_or_else(|| null(name))
    }
    fn opt_string(&self, name: &str) -> StoreResult<Option<String>> {
        match self.value(name)? {
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            other => Err(mistyped(name, other)),
        }
    }
    fn bool(&self, name: &str) -> StoreResult<bool> {
        Ok(self.i64(name)? != 0)
    }
}

/// Polls `work` once: every statement of this backend is done when its call returns.
fn run_now<T>(tx: &mut LiteTx, work: Work<LiteTx, T>) -> StoreResult<T> {
    work(tx).now_or_never().unwrap_or_else(|| {
        Err(StoreError::database(
            "a SQLite unit of work waited on something other than the database",
        ))
    })
}

#[async_trait]
impl Sql for SqliteStore {
    type Tx = LiteTx;

    async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> StoreResult<Vec<Job>> {
        self.claim_on_writer(now_ms, limit, lease_ms, lane).await
    }

    /// On a reader, on the calling thread (see [`SqliteStore::on_reader`]).
    async fn read_with<T: Send + 'static>(&self, work: Work<LiteTx, T>) -> StoreResult<T> {
        self.on_reader(|tx| run_now(tx, work))
    }

    /// The hottest read, decoded in place on a reader (see [`LiteTx::by_token_now`]).
    async fn by_token(&self, token_hash: String) -> StoreResult<Option<ByToken>> {
        self.on_reader(|tx| Ok(tx.by_token_now(&token_hash)?))
    }

    /// On a blocking thread (a commit waits for the disk), in a `BEGIN IMMEDIATE` transaction
    /// on the one writer connection.
    async fn write_with<T: Send + 'static>(&self, work: Work<LiteTx, T>) -> StoreResult<T> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || -> StoreResult<T> {
            let mut slot = writer.lock().map_err(|_| poisoned())?;
            let mut tx = slot.take().ok_or_else(poisoned)?;
            let out = match tx.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {
                    let out = run_now(&mut tx, work);
                    let end = match out {
                        Ok(_) => "COMMIT",
                        Err(_) => "ROLLBACK",
                    };
                    match tx.conn.execute_batch(end) {
                        Ok(()) => out,
                        Err(e) => {
                            // A failed COMMIT leaves the transaction open: end it, so the
                            // writer starts clean next time.
                            let _ = tx.conn.execute_batch("ROLLBACK");
                            Err(Error::from(e).into())
                        }
                    }
                }
                Err(e) => Err(Error::from(e).into()),
            };
            *slot = Some(tx);
            out
        })
        .await
        .map_err(join_err)?
    }
}

impl SqliteStore {
    /// Runs `f` on a pooled reader connection (a new one when none is idle), on the calling
    /// thread: reads here are indexed lookups that take microseconds and never wait on a lock
    /// (WAL readers do not block on the writer), so a thread hand-off would cost more than the
    /// read.
    fn on_reader<T>(&self, f: impl FnOnce(&mut LiteTx) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.readers.lock().map_err(|_| poisoned())?.pop();
        let mut tx = match pooled {
            Some(tx) => tx,
            None => {
                let c = Connection::open(&self.path).map_err(Error::from)?;
                configure(&c)?;
                LiteTx::new(c)
            }
        };
        let out = f(&mut tx);
        let mut pool = self.readers.lock().map_err(|_| poisoned())?;
        if pool.len() < MAX_IDLE_READERS {
            pool.push(tx);
        }
        out
    }
}
