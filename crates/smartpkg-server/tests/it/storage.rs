//! Opening storage from `--database-url`.

use crate::helpers::{settings, spawn_with};

#[tokio::test]
async fn a_sqlite_url_puts_the_database_where_it_says() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let db = elsewhere.path().join("nested").join("custom.db");
    let url = format!("sqlite:{}", db.display());
    let app = spawn_with(|s| s.database_url = Some(url.clone())).await;
    assert_eq!(app.call("get", &[]).await["errno"], 0);
    assert!(db.is_file(), "the database is at {}", db.display());
    assert!(
        !app.dir.path().join("smartpkg.db").exists(),
        "nothing in the data directory"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_database_url_refuses_to_start_and_says_what_it_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(dir.path());
    s.database_url = Some("mysql://root@127.0.0.1/test".into());
    let e = smartpkg_server::start(s).await.err().expect("refused");
    assert!(e.to_string().contains("sqlite:PATH"), "{e}");
}

#[tokio::test]
async fn templates_and_package_archives_go_through_an_s3_compatible_bucket() {
    let Some(s3) = smartpkg_storage::testing::S3Server::start() else {
        return;
    };
    let (id, secret) = s3.credentials();
    let endpoint = s3.endpoint();
    let app = spawn_with(|s| {
        s.blob_url = Some("s3://smartpkg/blobs".into());
        s.blob_s3_endpoint = Some(endpoint.clone());
        s.blob_s3_access_key_id = Some(id.into());
        s.blob_s3_secret_access_key = Some(secret.into());
    })
    .await;
    // The harness uploaded a template: it is in the bucket, not in the data directory.
    assert!(!app.dir.path().join("blobs").exists());
    let in_bucket = std::fs::read_dir(s3.root.path().join("smartpkg/blobs"))
        .expect("the bucket's folder")
        .count();
    assert!(in_bucket >= 1);
    // A package builds from it and its archive comes back whole.
    let id = app.built("1.0.0").await;
    let r = app
        .client
        .get(format!("{}/admin/v1/packages/{id}/archive", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("archive");
    assert_eq!(r.status(), 200);
    let zip = r.bytes().await.expect("bytes");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).expect("a zip");
    assert!(archive.by_name("app.json").is_ok() && archive.by_name("ext.json").is_ok());
    app.stop().await;
}

#[test]
fn a_blob_url_that_names_no_bucket_refuses_to_start() {
    for bad in ["ftp://somewhere", "s3://", "bucket-without-scheme"] {
        let env = [("SMARTPKG_BLOB_URL".to_string(), bad.to_string())];
        let e = smartpkg_server::Settings::load(None, env, [])
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains("blob_url"), "{e}");
    }
}
