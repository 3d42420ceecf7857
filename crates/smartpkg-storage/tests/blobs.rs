//! The blob contract on every blob store: the local folder, the object-store interface over a
//! local folder, and a real S3-compatible server (s3s-fs) on 127.0.0.1.

use std::sync::Arc;

use smartpkg_storage::objects::{s3, ObjectBlobs};
use smartpkg_storage::testing::S3Server;
use smartpkg_store::blobs::{sha256_hex, BlobStore, LocalBlobs};
use smartpkg_store::StoreError;

async fn contract(blobs: &dyn BlobStore) {
    let a = blobs.put(b"template bytes".to_vec()).await.expect("put");
    assert_eq!(a, sha256_hex(b"template bytes"));
    let again = blobs
        .put(b"template bytes".to_vec())
        .await
        .expect("put again");
    assert_eq!(a, again, "the same bytes have one name");
    assert_eq!(blobs.get(&a).await.expect("get"), b"template bytes");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let b = blobs.put(big.clone()).await.expect("put big");
    assert_eq!(blobs.get(&b).await.expect("get big"), big);
    assert!(matches!(
        blobs.get(&"0".repeat(64)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        blobs.get("../../etc/passwd").await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn the_local_folder_keeps_the_blob_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract(&LocalBlobs::open(dir.path()).expect("open")).await;
}

#[tokio::test]
async fn the_object_store_interface_keeps_it_over_a_local_folder_and_catches_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
    let blobs = ObjectBlobs::new(fs.clone(), "blobs");
    contract(&blobs).await;
    // Damage one object behind the store's back: a read says so.
    let sha = blobs.put(b"pristine".to_vec()).await.expect("put");
    let path = blobs.path_of(&sha).expect("path");
    object_store::ObjectStore::put(
        &*fs,
        &path,
        object_store::PutPayload::from(b"tampered".to_vec()),
    )
    .await
    .expect("overwrite");
    assert!(matches!(blobs.get(&sha).await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn a_real_s3_compatible_server_keeps_the_blob_contract() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let blobs = s3(&server.settings("templates")).expect("bucket");
    contract(&blobs).await;
    // The bytes really went through the server to its disk.
    let sha = sha256_hex(b"template bytes");
    let on_disk = server
        .root
        .path()
        .join("smartpkg/templates")
        .join(&sha[..2])
        .join(&sha[2..]);
    assert_eq!(
        std::fs::read(&on_disk).expect("object on disk"),
        b"template bytes"
    );
}
