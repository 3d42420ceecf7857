//! smartpkg's storage on PostgreSQL, for several server instances on one database.
//!
//! The traits' serialisation contracts are met with row locks in READ COMMITTED transactions:
//! a decision locks its mini program's row first (and its third party's row when it may
//! consume audit quota), a template addition locks the third party's row, an authorization
//! change locks the app's row. Locks are always taken app before third party, so two
//! transactions never wait on each other in a circle. Jobs are claimed with `FOR UPDATE SKIP
//! LOCKED`; the deliveries lane's claim, whose per-target cap counts rows it does not lock, is
//! serialised across instances by a transaction-scoped advisory lock.
//!
//! Ids come from sequences. A lost race that the database reports (a unique violation, a
//! deadlock, a serialisation failure) becomes [`StoreError::Conflict`], which the API answers
//! as "processing, retry" — never a 500.

mod cache;
mod exec;
mod jobs;

use std::time::Duration;

use smartpkg_store::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use exec::{PgRowCols, PgTx};
pub use sqlx::postgres::PgListener;

/// The channel instances wake each other on when they leave work for the job runner.
pub const JOBS_CHANNEL: &str = "smartpkg_jobs";

pub struct PgStore {
    pool: PgPool,
    /// `get`'s own connections (named `smartpkg-get`), so that its cache misses never wait
    /// behind the lifecycle's transactions for a connection.
    get_pool: PgPool,
    cache: std::sync::Arc<cache::GetCache>,
    /// Keeps the cache's listener subscribed; ended by [`PgStore::close`].
    listener: tokio::task::JoinHandle<()>,
}

pub use cache::{CAPACITY as GET_CACHE_CAPACITY, TTL as GET_CACHE_TTL};

/// Maps a database error: lost races are conflicts (retryable); the rest keep their cause.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    let code = match &e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    if let Some(code) = code {
        return by_sqlstate(&code, Box::new(e));
    }
    if matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    ) {
        return StoreError::Unavailable(Box::new(e));
    }
    StoreError::Database(Box::new(e))
}

/// `.db()?` on a sqlx result: the error in the store's terms ([`db`]).
pub(crate) trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for std::result::Result<T, sqlx::Error> {
    fn db(self) -> Result<T> {
        self.map_err(db)
    }
}

/// What an error the database reported with SQLSTATE `code` means to a caller, whichever
/// driver carried it: a lost race is a conflict (retry), a server going away is unavailable,
/// anything else a database error.
pub(crate) fn by_sqlstate(code: &str, cause: smartpkg_store::Cause) -> StoreError {
    match code {
        // unique_violation, serialization_failure, deadlock_detected, lock_not_available
        "23505" | "40001" | "40P01" | "55P03" => StoreError::Conflict(cause),
        // admin_shutdown, crash_shutdown, cannot_connect_now
        "57P01" | "57P02" | "57P03" => StoreError::Unavailable(cause),
        _ => StoreError::Database(cause),
    }
}

impl PgStore {
    /// Closes every connection of the pool (queries after it fail).
    pub async fn close(&self) {
        self.listener.abort();
        self.cache.set(Some(false));
        self.get_pool.close().await;
        self.pool.close().await;
    }

    /// Connects and runs the migrations; several instances may start at once (sqlx
    /// serialises migrations with an advisory lock). `max_connections` is the instance's
    /// whole budget.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore> {
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            StoreError::Unsupported(format!("invalid PostgreSQL URL: {e}"))
        })?;
        let (pooled, for_get) = split_budget(max_connections);
        // Few: with the cache, only misses reach the database. Tested before use, since a
        // miss on a connection the database dropped is retried once on another.
        let get_pool = PgPoolOptions::new()
            .max_connections(for_get)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options.clone().application_name(cache::APPLICATION_NAME));
        let pool = PgPoolOptions::new()
            .max_connections(pooled)
            .acquire_timeout(Duration::from_secs(5))
            // No ping before every use (a round trip per query): a connection that died with
            // a database restart fails its next query, which answers "unavailable, retry", and
            // the pool replaces it.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .db()?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let cache = std::sync::Arc::new(cache::GetCache::default());
        let listener = tokio::spawn(cache::listen(pool.clone(), cache.clone()));
        Ok(PgStore {
            pool,
            get_pool,
            cache,
            listener,
        })
    }

    /// Whether `get`'s cache is listening for changes (it caches nothing until then).
    pub fn get_cache_listening(&self) -> bool {
        self.cache.epoch().is_some()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Tells every instance listening on [`JOBS_CHANNEL`] that work is due (the payload names
    /// the lanes and the sender).
    pub async fn notify_jobs(&self, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(JOBS_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(())
    }
}

/// The connection budget as (pool, `get`'s connections): an eighth for `get`'s cache misses,
/// two to four of them, the rest to the pool (at least one).
fn split_budget(max_connections: u32) -> (u32, u32) {
    let for_get = (max_connections / 8).clamp(2, 4);
    (max_connections.saturating_sub(for_get).max(1), for_get)
}

/// Throwaway databases for tests: one fresh database per test, dropped afterwards.
#[cfg(feature = "testing")]
pub mod testing {
    use sqlx::{Connection, PgConnection};

    /// Where tests find PostgreSQL: `SPKG_TEST_POSTGRES`, else the local server that these
    /// machines run (trust auth).
    pub fn base_url() -> String {
        std::env::var("SPKG_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string())
    }

    /// A database that exists for as long as this value; its URL is `url`.
    pub struct FreshDatabase {
        pub url: String,
        name: String,
        admin: String,
    }

    impl FreshDatabase {
        /// Creates `smartpkg_t_<random>` next to the database of [`base_url`].
        pub async fn create() -> Result<FreshDatabase, String> {
            let admin = base_url();
            let mut c = PgConnection::connect(&admin).await.map_err(|e| {
                format!("PostgreSQL is not reachable at {admin} ({e}); start it or set SPKG_TEST_POSTGRES")
            })?;
            let name = format!("smartpkg_t_{}", hex::encode(rand::random::<[u8; 6]>()));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .map_err(|e| format!("cannot create database {name}: {e}"))?;
            let url = match admin.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => return Err(format!("cannot place a database next to {admin}")),
            };
            Ok(FreshDatabase { url, name, admin })
        }
    }

    impl Drop for FreshDatabase {
        fn drop(&mut self) {
            // Dropped from a thread of its own: Drop cannot await, and the test's runtime may
            // be shutting down.
            let (admin, name) = (self.admin.clone(), self.name.clone());
            let done = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(mut c) = PgConnection::connect(&admin).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut c)
                            .await;
                        }
                    });
                }
            });
            let _ = done.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_budget;

    #[test]
    fn the_budget_gives_get_an_eighth_and_the_pool_the_rest() {
        assert_eq!(split_budget(16), (14, 2), "the default budget");
        assert_eq!(split_budget(14), (12, 2));
        assert_eq!(split_budget(32), (28, 4));
        assert_eq!(split_budget(1000), (996, 4), "at most four for get");
    }

    #[test]
    fn a_tiny_budget_still_opens_a_pool_and_two_connections_for_get() {
        assert_eq!(split_budget(1), (1, 2));
        assert_eq!(split_budget(0), (1, 2));
    }
}
