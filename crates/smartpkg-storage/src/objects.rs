//! Blobs in an object store (S3 and anything that speaks its API), through `object_store`.
//! Same contract as the local folder: content-addressed by SHA-256, written once, checked
//! against its name on every read.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use smartpkg_store::blobs::{sha256_hex, BlobStore, BlobStream};
use smartpkg_store::{Result, StoreError};

pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

fn failed(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(format!("blob {path}")),
        other => StoreError::Database(Box::new(other)),
    }
}

impl ObjectBlobs {
    /// Blobs under `prefix` (may be empty) of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ObjectBlobs {
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// Where a blob lives: `<prefix>/ab/cdef…`, as in the local folder.
    pub fn path_of(&self, sha256: &str) -> Result<ObjectPath> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Corrupt(format!("not a sha256: {sha256}")));
        }
        let key = format!("{}/{}", &sha256[..2], &sha256[2..]);
        Ok(if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        })
    }
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    async fn put(&self, bytes: Vec<u8>) -> Result<String> {
        let sha = sha256_hex(&bytes);
        let path = self.path_of(&sha)?;
        match self.store.head(&path).await {
            Ok(_) => return Ok(sha),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(failed(e)),
        }
        // An object PUT is atomic: readers see no object or the whole one.
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(failed)?;
        Ok(sha)
    }

    async fn get(&self, sha256: &str) -> Result<Vec<u8>> {
        let path = self.path_of(sha256)?;
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(failed)?
            .bytes()
            .await
            .map_err(failed)?;
        if sha256_hex(&bytes) != sha256 {
            return Err(StoreError::Corrupt(format!(
                "blob {sha256} does not match its hash"
            )));
        }
        Ok(bytes.to_vec())
    }

    async fn stream(&self, sha256: &str, range: Option<(u64, u64)>) -> Result<BlobStream> {
        use futures_util::{StreamExt, TryStreamExt};
        let path = self.path_of(sha256)?;
        let opts = object_store::GetOptions {
            range: range.map(|(a, b)| object_store::GetRange::Bounded(a..b + 1)),
            ..Default::default()
        };
        let got = self.store.get_opts(&path, opts).await.map_err(failed)?;
        let total = got.meta.size;
        let bytes = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed();
        Ok(BlobStream { total, bytes })
    }

    async fn size(&self, sha256: &str) -> Result<u64> {
        let path = self.path_of(sha256)?;
        Ok(self.store.head(&path).await.map_err(failed)?.size)
    }
}

/// An S3-compatible bucket's settings.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    /// `http(s)://host:port` of a service other than AWS; plain http is then allowed.
    pub endpoint: Option<String>,
    pub region: String,
    /// Credentials; when absent they come from the usual `AWS_*` environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Opens the bucket; nothing is read or written until the first blob.
pub fn s3(settings: &S3Settings) -> Result<ObjectBlobs> {
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region);
    if let Some(endpoint) = &settings.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            // Path-style addressing: what self-hosted services expect.
            .with_virtual_hosted_style_request(false);
    }
    if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
    }
    let store = b
        .build()
        .map_err(|e| StoreError::Unsupported(format!("cannot use the S3 bucket: {e}")))?;
    Ok(ObjectBlobs::new(Arc::new(store), &settings.prefix))
}
