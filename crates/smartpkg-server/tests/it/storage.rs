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
