//! Pipelined connections for the hottest read, `package/get`.
//!
//! sqlx runs one statement per connection at a time: every `get` cost a pool checkout, a
//! backend woken for one query, and a task woken for its answer. tokio-postgres lets every
//! request share a connection: concurrent queries go out back to back on one socket, the
//! backend finds the next one waiting when it finishes the last, and one read brings several
//! answers. On the two-core benchmark machine that ran the same query at about twice sqlx's
//! rate (32 concurrent callers: sqlx pool 22k/s, two to four pipelined connections 38–47k/s).
//!
//! The connections are opened on first use, with their statement prepared, and replaced when
//! they break (a database restart): the query that finds one broken runs once more on a new
//! connection, and answers "unavailable, retry" like the pool's only when that fails too.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smartpkg_store::{Result, StoreError};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

/// How long opening a reader may take before the call answers "unavailable".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `application_name` the readers connect with.
const APPLICATION_NAME: &str = "smartpkg-get";

pub(crate) struct Readers {
    config: Config,
    /// The statement every reader prepares when it connects.
    sql: &'static str,
    slots: Vec<Slot>,
    next: AtomicUsize,
    closed: AtomicBool,
}

#[derive(Default)]
struct Slot {
    /// The open connection (a clone per query: the fast path takes this lock only).
    open: Mutex<Option<Arc<Reader>>>,
    /// Held while (re)connecting, so that callers arriving meanwhile wait for that one
    /// connection instead of each opening their own.
    connecting: tokio::sync::Mutex<()>,
}

struct Reader {
    client: Client,
    statement: Statement,
}

impl Readers {
    /// `url` is the same URL the pool opened, less what only sqlx knows ([`reader_url`]);
    /// parsed here, so that a URL the readers cannot take fails at start-up, not at the first
    /// `get`.
    pub(crate) fn new(url: &str, connections: usize, sql: &'static str) -> Result<Readers> {
        let mut config: Config = reader_url(url)
            .parse()
            .map_err(|e: tokio_postgres::Error| {
                StoreError::Unsupported(format!("invalid PostgreSQL URL: {e}"))
            })?;
        // Named, so that an operator can tell them in `pg_stat_activity`.
        config.application_name(APPLICATION_NAME);
        Ok(Readers {
            config,
            sql,
            slots: (0..connections.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// Runs the prepared statement with one text parameter.
    ///
    /// A connection found broken (the database restarted, or an operator terminated its
    /// backend) is replaced, and the query runs once more on the new one: it only reads, so
    /// running it twice is harmless, and the caller is not told "retry" for a break nobody
    /// but this reader could see. A second failure is the caller's answer.
    pub(crate) async fn query(&self, param: &str) -> Result<Vec<Row>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[i];
        let reader = self.reader(slot).await?;
        match self.run(slot, &reader, param).await {
            Err(StoreError::Unavailable(_)) => {
                let fresh = self.reader(slot).await?;
                self.run(slot, &fresh, param).await
            }
            answer => answer,
        }
    }

    /// One query on `reader`; a failure that says the connection is gone empties the slot,
    /// so that the next query connects anew.
    async fn run(&self, slot: &Slot, reader: &Arc<Reader>, param: &str) -> Result<Vec<Row>> {
        match reader.client.query(&reader.statement, &[&param]).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                let e = pg_error(e);
                // Not only `is_closed()`: the connection's task may not yet have noticed
                // the socket close when the query's error (57P01 from a terminated backend)
                // arrives.
                if reader.client.is_closed() || matches!(e, StoreError::Unavailable(_)) {
                    forget(slot, reader);
                }
                Err(e)
            }
        }
    }

    /// Drops every connection; queries after it fail as unavailable.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for slot in &self.slots {
            if let Ok(mut open) = slot.open.lock() {
                *open = None;
            }
        }
    }

    async fn reader(&self, slot: &Slot) -> Result<Arc<Reader>> {
        if let Some(r) = current(slot) {
            return Ok(r);
        }
        let _connecting = slot.connecting.lock().await;
        // Another caller may have connected while this one waited.
        if let Some(r) = current(slot) {
            return Ok(r);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        let reader = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| StoreError::Unavailable("connecting to PostgreSQL timed out".into()))??;
        let reader = Arc::new(reader);
        if let Ok(mut open) = slot.open.lock() {
            *open = Some(reader.clone());
        }
        Ok(reader)
    }

    async fn connect(&self) -> Result<Reader> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(pg_error)?;
        // The connection's socket is driven by its own task; it ends when the last handle to
        // the client is dropped, or when the socket breaks.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a pipelined PostgreSQL connection ended");
            }
        });
        let statement = client.prepare(self.sql).await.map_err(pg_error)?;
        Ok(Reader { client, statement })
    }
}

/// `url` without the parameters only sqlx knows, which tokio-postgres refuses: the pool's
/// statement cache, and the TLS files (neither driver is built with TLS here, so they name
/// nothing either connects with). sqlx's `ssl-mode` is tokio-postgres's `sslmode`.
fn reader_url(url: &str) -> String {
    const POOL_ONLY: [&str; 7] = [
        "statement-cache-capacity",
        "sslrootcert",
        "ssl-root-cert",
        "sslcert",
        "ssl-cert",
        "sslkey",
        "ssl-key",
    ];
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let kept: Vec<String> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !POOL_ONLY.contains(&key)
        })
        .map(|pair| match pair.strip_prefix("ssl-mode=") {
            Some(mode) => format!("sslmode={mode}"),
            None => pair.to_string(),
        })
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// The slot's connection, unless it has broken.
fn current(slot: &Slot) -> Option<Arc<Reader>> {
    let open = slot.open.lock().ok()?;
    open.as_ref().filter(|r| !r.client.is_closed()).cloned()
}

/// Empties the slot if it still holds this broken connection (not one opened since).
fn forget(slot: &Slot, broken: &Arc<Reader>) {
    if let Ok(mut open) = slot.open.lock() {
        if open.as_ref().is_some_and(|r| Arc::ptr_eq(r, broken)) {
            *open = None;
        }
    }
}

/// The same classes as the pool's errors ([`crate::by_sqlstate`]); with no SQL state the
/// socket broke, or the connection could not be opened: unavailable.
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.code().map(|c| c.code().to_string()) {
        Some(code) => crate::by_sqlstate(&code, Box::new(e)),
        None => StoreError::Unavailable(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::{reader_url, Readers};
    use crate::packages::GET_BY_TOKEN;

    #[test]
    fn a_url_with_parameters_only_sqlx_knows_still_opens_the_readers() {
        let url = "postgres://u@127.0.0.1:5432/db?statement-cache-capacity=10&sslmode=disable\
                   &ssl-root-cert=/ca.pem&application_name=shop";
        assert_eq!(
            reader_url(url),
            "postgres://u@127.0.0.1:5432/db?sslmode=disable&application_name=shop"
        );
        assert!(Readers::new(url, 1, GET_BY_TOKEN).is_ok());
        assert_eq!(
            reader_url("postgres://u@h/db?ssl-mode=disable"),
            "postgres://u@h/db?sslmode=disable"
        );
        assert_eq!(
            reader_url("postgres://u@h/db?statement-cache-capacity=1"),
            "postgres://u@h/db"
        );
        assert_eq!(reader_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn a_url_neither_driver_takes_is_refused_with_the_reason() {
        let Err(e) = Readers::new("postgres://u@h/db?no_such_option=1", 1, GET_BY_TOKEN) else {
            panic!("an unknown option was accepted");
        };
        assert!(e.to_string().contains("invalid PostgreSQL URL"), "{e}");
    }
}
