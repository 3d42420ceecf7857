//! One way to write a backend: the store's operations are written once, here, as SQL run
//! through a [`Tx`], and a backend only says how to run a statement and a transaction
//! ([`Sql`]).
//!
//! Every statement is written in the dialect both databases read: `$1`-style parameters (the
//! SQLite backend binds them by name), `RETURNING`, `ON CONFLICT`, `TRUE`/`FALSE`. Where the
//! dialects differ (row locks, sequences), [`Tx::dialect`] picks the text. A backend's
//! serialisation strategy is its own: SQLite runs every write transaction on its one writer
//! connection, PostgreSQL takes the row locks the statements name (`FOR UPDATE`, written with
//! [`Tx::locking`], is dropped on SQLite where the single writer already serialises).
//!
//! The store traits are implemented for every [`Sql`] backend at once (`impl<S: Sql>`), so a
//! backend crate holds its connections, migrations and the few reads it serves its own way
//! (the hooks of [`Sql`] with default bodies), and nothing else.

use std::borrow::Cow;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use smartpkg_core::ids::{AccountId, AppId, HostId, Id, PackageId, TemplateId, TpId};

use crate::{Columns, Result, StoreError};

/// Which database runs the statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// A statement's parameter: typed even when NULL (PostgreSQL types every parameter).
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Bool(Option<bool>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(Some(v))
    }
}
impl From<Option<bool>> for Arg<'_> {
    fn from(v: Option<bool>) -> Self {
        Arg::Bool(v)
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}
impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref().map(Cow::Borrowed))
    }
}
impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

macro_rules! id_args {
    ($($id:ty),*) => {$(
        impl From<$id> for Arg<'_> {
            fn from(v: $id) -> Self {
                Arg::Int(Some(v.raw()))
            }
        }
        impl From<Option<$id>> for Arg<'_> {
            fn from(v: Option<$id>) -> Self {
                Arg::Int(v.map(Id::raw))
            }
        }
    )*};
}
id_args!(TpId, AppId, PackageId, TemplateId, AccountId, HostId);

/// A statement's parameters, `$1` first: `args![app_id, &name]`.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$($crate::sql::Arg::from($a)),*][..]
    };
}

/// An open connection of a backend, inside a transaction for writes. Statements run in the
/// order they are awaited.
#[async_trait]
pub trait Tx: Send {
    type Row: Columns + Send;

    fn dialect(&self) -> Dialect;

    /// Every row the statement answers.
    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Self::Row>>;

    /// Runs the statement; answers how many rows it changed.
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64>;

    /// The first row the statement answers, if any.
    async fn opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Self::Row>> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }

    /// The one row a statement always answers (a count, an insert's `RETURNING`).
    async fn one(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Self::Row> {
        self.opt(sql, args)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from: {sql}")))
    }

    /// The integer column `n` of the one row the statement answers (`SELECT COUNT(*) AS n`).
    async fn int(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<i64> {
        self.one(sql, args).await?.i64("n")
    }

    /// `pg` on PostgreSQL, `lite` on SQLite: where the dialects part.
    fn pick<'s>(&self, (pg, lite): (&'s str, &'s str)) -> &'s str {
        match self.dialect() {
            Dialect::Postgres => pg,
            Dialect::Sqlite => lite,
        }
    }
}

/// `SELECT … FOR UPDATE` on PostgreSQL, the same without the lock on SQLite (whose one writer
/// already serialises every write transaction): `tx.pick(locking!("SELECT …"))`.
#[macro_export]
macro_rules! locking {
    ($sql:expr) => {
        (concat!($sql, " FOR UPDATE"), $sql)
    };
    // Only the rows of one table of a join.
    ($sql:expr, of $table:literal) => {
        (concat!($sql, " FOR UPDATE OF ", $table), $sql)
    };
}

/// A unit of work a backend runs on one of its connections.
pub type Work<X, T> = Box<dyn for<'t> FnOnce(&'t mut X) -> BoxFuture<'t, Result<T>> + Send>;

/// What a backend provides: connections that run the shared statements. The store traits
/// follow (`impl<S: Sql> TenantStore for S` and the rest).
#[async_trait]
pub trait Sql: Send + Sync + Sized + 'static {
    type Tx: Tx;

    /// Runs `work` on a connection outside any explicit transaction (each statement sees the
    /// latest committed state).
    async fn read_with<T: Send + 'static>(&self, work: Work<Self::Tx, T>) -> Result<T>;

    /// Runs `work` in a transaction that commits only if it answers `Ok`.
    async fn write_with<T: Send + 'static>(&self, work: Work<Self::Tx, T>) -> Result<T>;

    /// The token's grant and its app's visible packages: `get`, the hottest read. A backend
    /// may serve it its own way (a cache) and fall back on [`packages::by_token`].
    async fn by_token(
        &self,
        token_hash: String,
    ) -> Result<Option<(crate::Grant, Vec<crate::PackageRecord>)>> {
        packages::by_token(self, token_hash).await
    }

    /// Claims up to `limit` due jobs of `lane`, leased for `lease_ms`: each backend its own
    /// way (one statement skipping locked rows on PostgreSQL, the one writer on SQLite).
    /// Rows decode with [`jobs::claimed`].
    async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: crate::Lane,
    ) -> Result<Vec<crate::Job>>;
}

/// Runs `work` as a read (see [`Sql::read_with`]); the closure's signature is inferred here.
pub async fn read<S: Sql, T: Send + 'static>(
    s: &S,
    work: impl for<'t> FnOnce(&'t mut S::Tx) -> BoxFuture<'t, Result<T>> + Send + 'static,
) -> Result<T> {
    s.read_with(Box::new(work)).await
}

/// Runs `work` in a write transaction (see [`Sql::write_with`]).
pub async fn write<S: Sql, T: Send + 'static>(
    s: &S,
    work: impl for<'t> FnOnce(&'t mut S::Tx) -> BoxFuture<'t, Result<T>> + Send + 'static,
) -> Result<T> {
    s.write_with(Box::new(work)).await
}

/// Decodes every row with `f`.
pub fn decode<R, T>(rows: Vec<R>, f: impl Fn(&R) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// `work!(read, self, |tx| { … })`: a unit of work on the store, the body an async block with
/// `tx` in scope (see [`read`] and [`write`]).
macro_rules! work {
    ($how:ident, $store:expr, |$tx:ident| $body:block) => {
        $crate::sql::$how($store, move |$tx| Box::pin(async move $body)).await
    };
}

/// A package's columns and the table they come from (`p`); the query goes on.
macro_rules! pkg_select {
    ($($rest:literal),*) => {
        concat!("SELECT ", $crate::package_columns!(), " FROM packages p ", $($rest),*)
    };
}

mod auth;
mod console;
mod deliveries;
mod health;
pub mod jobs;
mod library;
pub mod packages;
mod runtime;
mod tenants;
