//! Content-addressed bytes: each template archive is kept once, named by its SHA-256.
//! [`LocalBlobs`] keeps them in a folder; an S3-compatible store can implement [`BlobStore`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` (once: a second put of the same bytes writes nothing) and returns the
    /// hex SHA-256 that names them.
    async fn put(&self, bytes: Vec<u8>) -> Result<String>;
    /// Reads the blob back, checking that its content still matches its name.
    async fn get(&self, sha256: &str) -> Result<Vec<u8>>;
    /// Part of a blob (`range`: first and last byte, inclusive; None = all of it) as a
    /// stream, with the blob's whole size: downloads are sent without holding the blob in
    /// memory. Unlike [`BlobStore::get`] it cannot check the content against its name before
    /// sending (that takes reading all of it); the name is the SHA-256 a receiver checks.
    async fn stream(&self, sha256: &str, range: Option<(u64, u64)>) -> Result<BlobStream>;

    /// The blob's size in bytes.
    async fn size(&self, sha256: &str) -> Result<u64>;
}

/// A stream of a blob's bytes.
pub type ByteStream = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

pub struct BlobStream {
    /// The size of the whole blob.
    pub total: u64,
    pub bytes: ByteStream,
}

pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Opens (or creates) the folder. It and every folder in it are created (or tightened
    /// to) 0700 and each blob is written 0600 whatever the umask, as the database is: the
    /// blobs are every third party's templates and packages.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        private_dir(&root.join("tmp"))?;
        tighten(&root)?;
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                tighten(&entry.path())?;
            }
        }
        Ok(LocalBlobs { root })
    }

    /// Where a blob lives: `ab/cdef…`, so no folder holds more than a few thousand files.
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Corrupt(format!("not a sha256: {sha256}")));
        }
        Ok(self.root.join(&sha256[..2]).join(&sha256[2..]))
    }
}

/// Creates `dir` and its missing parents, owner-only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Makes an existing folder owner-only (folders of earlier versions followed the umask).
fn tighten(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to a new file readable by its owner only, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn stream(&self, sha256: &str, range: Option<(u64, u64)>) -> Result<BlobStream> {
        use futures_util::StreamExt;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.path_of(sha256)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(format!("blob {sha256}")))
            }
            Err(e) => return Err(e.into()),
        };
        let total = file.metadata().await?.len();
        let (first, count) = match range {
            Some((a, b)) if a <= b && b < total => (a, b - a + 1),
            Some(_) => return Err(StoreError::Corrupt(format!("range outside blob {sha256}"))),
            None => (0, total),
        };
        file.seek(std::io::SeekFrom::Start(first)).await?;
        // 256 KiB reads: large enough for loopback rates, small enough for many at once.
        let bytes = tokio_util::io::ReaderStream::with_capacity(file.take(count), 256 * 1024);
        Ok(BlobStream {
            total,
            bytes: bytes.boxed(),
        })
    }

    async fn size(&self, sha256: &str) -> Result<u64> {
        let path = self.path_of(sha256)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(format!("blob {sha256}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, bytes: Vec<u8>) -> Result<String> {
        let sha = sha256_hex(&bytes);
        let path = self.path_of(&sha)?;
        let tmp_dir = self.root.join("tmp");
        tokio::task::spawn_blocking(move || -> Result<()> {
            if path.exists() {
                return Ok(());
            }
            let dir = path
                .parent()
                .ok_or_else(|| StoreError::Corrupt("blob path".into()))?;
            private_dir(dir)?;
            // Write aside, fsync, then rename: a crash leaves either no blob or a whole one.
            let tmp = tmp_dir.join(format!("{}.{}", rand::random::<u64>(), std::process::id()));
            let result = (|| {
                write_private(&tmp, &bytes)?;
                std::fs::rename(&tmp, &path)?;
                sync_dir(dir)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            Ok(result?)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        Ok(sha)
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>> {
        let path = self.path_of(sha256)?;
        let want = sha256.to_string();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::NotFound(format!("blob {want}")),
                _ => StoreError::Io(e),
            })?;
            if sha256_hex(&bytes) != want {
                return Err(StoreError::Corrupt(format!(
                    "blob {want} does not match its hash"
                )));
            }
            Ok(bytes)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_bytes_are_stored_once_and_corruption_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = LocalBlobs::open(dir.path()).expect("open");
        let a = blobs.put(b"hello".to_vec()).await.expect("put");
        let b = blobs.put(b"hello".to_vec()).await.expect("put again");
        assert_eq!(a, b);
        assert_eq!(blobs.get(&a).await.expect("get"), b"hello");
        std::fs::write(blobs.path_of(&a).expect("path"), b"jello").expect("corrupt");
        assert!(matches!(blobs.get(&a).await, Err(StoreError::Corrupt(_))));
        assert!(matches!(
            blobs.get(&"0".repeat(64)).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
