//! Opening storage from a URL: the one place that knows which backends exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sqlite::SqliteStore;
use crate::{Result, Store, StoreError};

/// Where the data lives, parsed from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file: `sqlite:PATH` or `sqlite://PATH` (relative to the working directory),
    /// or, with no URL, `smartpkg.db` in the data directory.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `url`; `None` (or blank) is the embedded default under `data_dir`.
    pub fn parse(url: Option<&str>, data_dir: &Path) -> Result<DatabaseUrl> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(DatabaseUrl::Sqlite(data_dir.join("smartpkg.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            // Options in a query string (sqlx style `?mode=rwc`) are not ours to interpret.
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::Unsupported(format!(
                    "database URL {url:?} names no file; write sqlite:PATH"
                )));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err(StoreError::Unsupported(format!(
            "unsupported database URL {url:?}: expected sqlite:PATH or postgres://USER@HOST/DB"
        )))
    }
}

/// An opened store and what opening it did.
pub struct Opened {
    pub store: Arc<dyn Store>,
    /// Jobs that a previous run left leased and that can run again at once.
    pub resumed_jobs: u64,
    /// What was opened, for the log (no password).
    pub description: String,
}

/// Opens (creating and migrating) the store `url` names.
pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Opened> {
    match DatabaseUrl::parse(url, data_dir)? {
        DatabaseUrl::Sqlite(path) => {
            let store = SqliteStore::open(&path)?;
            // One process owns an SQLite file (the store holds its lock), so every lease still
            // recorded belongs to a process that died: its jobs can run again right away.
            let resumed_jobs = store.release_leases().await?;
            Ok(Opened {
                store: Arc::new(store),
                resumed_jobs,
                description: format!("sqlite:{}", path.display()),
            })
        }
        DatabaseUrl::Postgres(_) => Err(StoreError::Unsupported(
            "PostgreSQL is not part of this build yet; leave --database-url unset (embedded SQLite) or use sqlite:PATH".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_backend_or_are_refused_clearly() {
        let dir = Path::new("/data");
        assert_eq!(
            DatabaseUrl::parse(None, dir).ok(),
            Some(DatabaseUrl::Sqlite(dir.join("smartpkg.db")))
        );
        assert_eq!(
            DatabaseUrl::parse(Some("sqlite:/tmp/a.db"), dir).ok(),
            Some(DatabaseUrl::Sqlite("/tmp/a.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse(Some("sqlite://rel/b.db?mode=rwc"), dir).ok(),
            Some(DatabaseUrl::Sqlite("rel/b.db".into()))
        );
        assert!(matches!(
            DatabaseUrl::parse(Some("postgres://u@127.0.0.1/test"), dir),
            Ok(DatabaseUrl::Postgres(_))
        ));
        for bad in ["mysql://x", "sqlite:", "/just/a/path"] {
            let e = DatabaseUrl::parse(Some(bad), dir).expect_err(bad);
            assert!(e.to_string().contains("sqlite:PATH"), "{bad}: {e}");
        }
    }
}
