//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! One writer connection (SQLite admits one writer at a time anyway) takes every decision in
//! a `BEGIN IMMEDIATE` transaction, so the snapshot it reads cannot change before it writes:
//! that single writer is how this backend meets every serialisation contract of the traits
//! (per app, per third party, per job). A small pool of reader connections serves the
//! read-only calls concurrently. Writes run on tokio's blocking threads.
//!
//! The store's operations are written once, for every backend, in `smartpkg_store::sql`; this
//! crate runs them (`exec`), migrates the file, and claims jobs its own way (`jobs`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, TransactionBehavior};

use smartpkg_store::StoreError;

pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_pushes.sql")),
    (
        3,
        include_str!("../migrations/0003_tp_auth_and_library.sql"),
    ),
    (4, include_str!("../migrations/0004_authorization.sql")),
    (
        5,
        include_str!("../migrations/0005_owner_and_token_families.sql"),
    ),
    (6, include_str!("../migrations/0006_delivery_lanes.sql")),
    (7, include_str!("../migrations/0007_janitor.sql")),
    (8, include_str!("../migrations/0008_lease_tokens.sql")),
    (9, include_str!("../migrations/0009_runtime.sql")),
    (10, include_str!("../migrations/0010_console.sql")),
    (
        11,
        include_str!("../migrations/0011_package_log_by_package.sql"),
    ),
    (12, include_str!("../migrations/0012_disabled_accounts.sql")),
    (13, include_str!("../migrations/0013_wechat_identities.sql")),
    (14, include_str!("../migrations/0014_wechat_lifecycle.sql")),
    (15, include_str!("../migrations/0015_release_health.sql")),
];
pub(crate) const MAX_IDLE_READERS: usize = 16;

/// What this crate's functions fail with: SQLite's errors and the store's alike, so `?` takes
/// either. Trait methods answer [`StoreError`], into which this converts.
#[derive(Debug)]
pub(crate) struct Error(StoreError);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
pub(crate) type StoreResult<T> = smartpkg_store::Result<T>;

/// SQLite's errors in the store's terms: a constraint, a busy or a locked database is a
/// conflict the caller may retry; anything else is a database failure, its cause kept.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // A shared row type's own refusal, carried through a row callback: as it was.
        let e = match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, cause) => {
                match cause.downcast::<StoreError>() {
                    Ok(store) => return Error(*store),
                    Err(cause) => rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Null,
                        cause,
                    ),
                }
            }
            other => other,
        };
        Error(match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::ConstraintViolation
                        | rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Conflict(Box::new(e))
            }
            _ => StoreError::Database(Box::new(e)),
        })
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(StoreError::Io(e))
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        e.0
    }
}

pub struct SqliteStore {
    path: PathBuf,
    /// The one writer (taken out while a unit of work runs on it; see `exec`).
    writer: Arc<Mutex<Option<LiteTx>>>,
    readers: Arc<Mutex<Vec<LiteTx>>>,
    /// Held for the store's life: one process per database file, which is what makes
    /// releasing every job lease at start-up safe.
    _lock: Option<File>,
}

pub(crate) fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Reads come straight from the page cache of the OS instead of a read() per page.
    conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
    Ok(())
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Opens (creating if needed) a file only its owner may read or write, and tightens the mode
/// of one that already existed with looser permissions.
pub(crate) fn private_file(path: &Path) -> std::io::Result<File> {
    let mut opts = File::options();
    opts.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(path)?;
    restrict(path)?;
    Ok(f)
}

pub(crate) fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Database(Box::new(e))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`, taking the exclusive lock file
    /// `<path>.lock`.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Ok(Self::open_inner(path)?)
    }

    fn open_inner(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let lock_path = path.with_extension("lock");
        let lock = private_file(&lock_path)?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(lock_path.display().to_string()))?;
        // Tokens, owner credentials and keys live here: owner-only, before SQLite opens it
        // (SQLite gives the WAL and shared-memory files the database file's permissions).
        drop(private_file(&path)?);
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            restrict(Path::new(&side))?;
        }
        Ok(SqliteStore {
            path,
            writer: Arc::new(Mutex::new(Some(LiteTx::new(writer)))),
            readers: Arc::new(Mutex::new(Vec::new())),
            _lock: Some(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub(crate) fn poisoned() -> StoreError {
    StoreError::database("a storage thread panicked")
}

mod exec;
pub use exec::{LiteRow, LiteTx};
mod jobs;

#[cfg(test)]
mod tests;
