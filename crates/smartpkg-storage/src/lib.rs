//! Opening storage from a URL: the one place that knows which backends exist. The server and
//! the benchmark call [`open`] and hold a `dyn Store`; they never name a backend.

pub mod objects;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smartpkg_store::blobs::{BlobStore, LocalBlobs};

use smartpkg_store::{Result, Store, StoreError};
use smartpkg_store_postgres::PgStore;
use smartpkg_store_sqlite::SqliteStore;
use tokio::sync::mpsc;

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
    /// How instances sharing the database tell each other that work is due; None when one
    /// process owns the database (SQLite).
    pub peers: Option<Peers>,
    /// Closes the database's connections when the instance stops.
    pub closer: Closer,
}

/// Closes a store's connections at once, rather than when the last reference to the store
/// goes (a kept-alive HTTP connection or a finishing task may hold one for a while, and a
/// process that starts and stops servers — the tests, the benchmarks — would pile up
/// connections the database counts against its limit).
#[derive(Default)]
pub struct Closer(Option<Arc<PgStore>>);

impl Closer {
    pub async fn close(self) {
        if let Some(pg) = self.0 {
            pg.close().await;
        }
    }
}

/// Lane bits of a work announcement.
pub const LANE_PLATFORM: u8 = 1;
pub const LANE_DELIVERIES: u8 = 2;

/// Work announcements between instances sharing one database (PostgreSQL LISTEN/NOTIFY).
pub struct Peers {
    /// Send the lanes (bits) that have new work; sends are coalesced.
    pub announce: mpsc::UnboundedSender<u8>,
    /// Receives the lanes another instance (or this one) announced.
    pub announcements: mpsc::Receiver<u8>,
}

/// Settings of a backend that serves several instances.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
}

/// The URL with its password replaced, for logs.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Where template archives live.
#[derive(Debug, Clone, Default)]
pub enum BlobSettings {
    /// `<data dir>/blobs` (shared by instances that share the data directory).
    #[default]
    Local,
    S3(objects::S3Settings),
}

/// Opens the blob store the settings name.
pub fn open_blobs(settings: &BlobSettings, data_dir: &Path) -> Result<Arc<dyn BlobStore>> {
    Ok(match settings {
        BlobSettings::Local => Arc::new(LocalBlobs::open(data_dir.join("blobs"))?),
        BlobSettings::S3(s3) => Arc::new(objects::s3(s3)?),
    })
}

/// Opens (creating and migrating) the store `url` names.
pub async fn open(url: Option<&str>, data_dir: &Path, pool: PoolSettings) -> Result<Opened> {
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
                peers: None,
                closer: Closer::default(),
            })
        }
        DatabaseUrl::Postgres(url) => {
            let store = Arc::new(PgStore::connect(&url, pool.max_connections).await?);
            let closing = store.clone();
            let peers = peers(&url, store.clone()).await?;
            Ok(Opened {
                store,
                // Leases of a dead instance are not released: they expire, and the work is
                // claimed again then (another instance may be running it right now).
                resumed_jobs: 0,
                description: redacted(&url),
                peers: Some(peers),
                closer: Closer(Some(closing)),
            })
        }
    }
}

/// How long announcements are gathered into one notification.
const NOTIFY_WINDOW: std::time::Duration = std::time::Duration::from_millis(25);

/// LISTENs for other instances' announcements (reconnecting after a database restart) and
/// NOTIFYs on this instance's behalf. Polling stays the fallback: a lost notification only
/// delays work until the next poll.
async fn peers(url: &str, store: Arc<PgStore>) -> Result<Peers> {
    let (announce, mut outgoing) = mpsc::unbounded_channel::<u8>();
    let (incoming, announcements) = mpsc::channel::<u8>(16);
    // Notifications carry this instance's id, so it can skip its own (it woke itself already).
    let me = format!("{:016x}", rand::random::<u64>());
    let sender = me.clone();
    tokio::spawn(async move {
        while let Some(mut lanes) = outgoing.recv().await {
            // At most one notification per window: a burst of decisions costs the database
            // one NOTIFY, and every peer one wake-up, instead of one each. Peers pick the work
            // up at most this late (this instance usually already has).
            tokio::time::sleep(NOTIFY_WINDOW).await;
            while let Ok(more) = outgoing.try_recv() {
                lanes |= more;
            }
            if let Err(e) = store.notify_jobs(&format!("{lanes}:{sender}")).await {
                tracing::debug!(error = %e, "cannot notify other instances");
            }
        }
    });
    let mut listener = smartpkg_store_postgres::PgListener::connect(url)
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    listener
        .listen(smartpkg_store_postgres::JOBS_CHANNEL)
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    tokio::spawn(async move {
        loop {
            // Ends with the instance (its end of the channel closed), not at the next
            // notification: notifications are rare, and the listener holds a connection.
            let got = tokio::select! {
                got = listener.recv() => got,
                _ = incoming.closed() => return,
            };
            match got {
                Ok(n) => {
                    let (lanes, from) = n.payload().split_once(':').unwrap_or((n.payload(), ""));
                    if from == me {
                        continue;
                    }
                    let lanes = lanes
                        .parse::<u8>()
                        .unwrap_or(LANE_PLATFORM | LANE_DELIVERIES);
                    // Full means wake-ups are already pending: a lost one only delays work
                    // until the next poll.
                    if incoming.try_send(lanes).is_err() && incoming.is_closed() {
                        return;
                    }
                }
                Err(e) => {
                    // PgListener reconnects on the next recv; do not spin while the
                    // database is down.
                    tracing::debug!(error = %e, "job notifications interrupted");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(Peers {
        announce,
        announcements,
    })
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

/// A real S3-compatible server for tests: s3s-fs on 127.0.0.1, serving a temporary folder.
#[cfg(feature = "testing")]
pub mod testing {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::objects::S3Settings;

    pub const BUCKET: &str = "smartpkg";
    const ACCESS: &str = "spkg-access";
    const SECRET: &str = "spkg-secret-key-0123";

    pub struct S3Server {
        child: Child,
        pub root: tempfile::TempDir,
        pub port: u16,
    }

    impl Drop for S3Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The s3s-fs binary: `SPKG_S3S_FS`, or on the PATH.
    fn binary() -> Option<String> {
        std::env::var("SPKG_S3S_FS")
            .ok()
            .filter(|p| std::path::Path::new(p).exists())
            .or_else(|| {
                Command::new("s3s-fs")
                    .arg("--help")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .ok()
                    .map(|_| "s3s-fs".to_string())
            })
    }

    impl S3Server {
        /// Starts s3s-fs with a bucket `smartpkg`; None when s3s-fs is not installed — unless
        /// `SPKG_REQUIRE_S3` is set (CI), where that is a failure.
        pub fn start() -> Option<S3Server> {
            let Some(bin) = binary() else {
                assert!(
                    std::env::var("SPKG_REQUIRE_S3").is_err(),
                    "s3s-fs is required here: cargo install s3s-fs@0.14.1 --features binary"
                );
                eprintln!("skipped: no s3s-fs (cargo install s3s-fs@0.14.1 --features binary)");
                return None;
            };
            let root = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(root.path().join(BUCKET)).expect("bucket folder");
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
                l.local_addr().expect("addr").port()
            };
            let child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS, "--secret-key", SECRET])
                .arg(root.path())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("s3s-fs starts");
            let server = S3Server { child, root, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "s3s-fs did not listen");
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(server)
        }

        pub fn settings(&self, prefix: &str) -> S3Settings {
            S3Settings {
                bucket: BUCKET.into(),
                prefix: prefix.into(),
                endpoint: Some(self.endpoint()),
                region: "us-east-1".into(),
                access_key_id: Some(ACCESS.into()),
                secret_access_key: Some(SECRET.into()),
            }
        }

        pub fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        pub fn credentials(&self) -> (&'static str, &'static str) {
            (ACCESS, SECRET)
        }
    }
}
