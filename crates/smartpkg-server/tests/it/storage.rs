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
    // Released, it reaches devices from the bucket: whole, and a range of it.
    let sid = id.to_string();
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &sid), ("content", "c"), ("remark", "")],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    app.decide(id, true, "").await;
    assert_eq!(
        app.call("release", &[("package_id", &sid)]).await["errno"],
        0
    );
    let (_, host) = app
        .admin_post("/host-apps", serde_json::json!({"name": "h"}))
        .await;
    let check: serde_json::Value = app
        .client
        .post(format!("{}/runtime/v1/update-check", app.base))
        .basic_auth(
            host["host_key"].as_str().expect("key"),
            host["host_secret"].as_str(),
        )
        .json(&serde_json::json!({"device_id": "d", "runtime_version": "3.140.0", "apps": [{"app_id": app.app_id}]}))
        .send()
        .await
        .expect("check")
        .json()
        .await
        .expect("json");
    let url = check["apps"][0]["package"]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let whole = app.client.get(&url).send().await.expect("download");
    assert_eq!(whole.status(), 200);
    let whole = whole.bytes().await.expect("bytes").to_vec();
    assert_eq!(
        smartpkg_store::blobs::sha256_hex(&whole),
        check["apps"][0]["package"]["sha256"].as_str().expect("sha")
    );
    let part = app
        .client
        .get(&url)
        .header("range", "bytes=10-29")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.bytes().await.expect("bytes").to_vec(),
        whole[10..30].to_vec()
    );
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

async fn admin_connection() -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&smartpkg_store_postgres::testing::base_url())
        .await
        .expect("PostgreSQL")
}

/// Connections the server holds to `url`'s database, counted from the server's side; those
/// of one `application_name` unless it is empty.
async fn connections_to(url: &str, application: &str) -> i64 {
    let name = url.rsplit('/').next().expect("a database name");
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 \
         AND ($2 = '' OR application_name = $2)",
    )
    .bind(name)
    .bind(application)
    .fetch_one(&mut admin_connection().await)
    .await
    .expect("count")
}

/// Ends the backends of `url`'s database that have this `application_name`; their pids.
async fn terminate(url: &str, application: &str) -> Vec<i32> {
    let name = url.rsplit('/').next().expect("a database name");
    sqlx::query_scalar(
        // Materialised first, so that the planner cannot run the kill before the filter.
        "WITH target AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = $2) \
         SELECT pid FROM target WHERE pg_terminate_backend(pid)",
    )
    .bind(name)
    .bind(application)
    .fetch_all(&mut admin_connection().await)
    .await
    .expect("terminate")
}

/// A connection to `url`'s database itself (not the administrative one).
async fn admin_connection_to(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.expect("PostgreSQL")
}

/// Polls `f` every 20 ms until it is true, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "still waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until a backend of this `application_name` waits for a lock.
async fn wait_for_lock_wait(url: &str, application: &str) {
    let name = url.rsplit('/').next().expect("a database name").to_string();
    eventually("a query waiting for the lock", || {
        let name = name.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = $2 AND wait_event_type = 'Lock'",
            )
            .bind(name)
            .bind(application)
            .fetch_one(&mut admin_connection().await)
            .await
            .expect("count");
            waiting > 0
        }
    })
    .await;
}

/// Waits until none of these backends is left (a terminated backend exits a moment after
/// the signal).
async fn backends_wait_gone(pids: &[i32]) {
    eventually("terminated backends to exit", || async move {
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(pids)
                .fetch_one(&mut admin_connection().await)
                .await
                .expect("count");
        left == 0
    })
    .await;
}

/// A server on a PostgreSQL database of its own (whichever backend the suite runs on), so
/// that the test can count and end its connections.
async fn on_own_database() -> (
    smartpkg_store_postgres::testing::FreshDatabase,
    crate::helpers::TestApp,
) {
    let db = smartpkg_store_postgres::testing::FreshDatabase::create()
        .await
        .expect("a fresh PostgreSQL database");
    let url = db.url.clone();
    let app = spawn_with(|s| {
        s.database_url = Some(url);
        s.database_max_connections = 4;
    })
    .await;
    (db, app)
}

#[tokio::test]
async fn a_stopped_server_leaves_no_connection_to_postgres_open() {
    let (db, app) = on_own_database().await;
    // Some work, so that the pool, the listeners and `get`'s own connection hold
    // connections.
    for _ in 0..4 {
        assert_eq!(app.call("get", &[]).await["errno"], 0);
    }
    assert!(
        connections_to(&db.url, "smartpkg-get").await > 0,
        "get's own connection is connected"
    );
    assert!(
        connections_to(&db.url, "").await > 1,
        "the pool is connected"
    );
    app.stop().await;
    // PostgreSQL sees a closed connection's backend go a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let open = connections_to(&db.url, "").await;
        if open == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} connections still open after stop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn get_survives_its_connection_being_killed() {
    let (db, app) = on_own_database().await;
    // A package (built, so that it no longer changes), so that a right answer is not merely
    // an empty list.
    app.built("1.0.0").await;
    let before = app.call("get", &[]).await;
    assert_eq!(before["data"].as_array().map(Vec::len), Some(1), "{before}");
    // A change to the mini program on this instance drops what it caches of its `get`, so
    // the next call reads the database.
    let (st, _) = app
        .admin(
            reqwest::Method::PATCH,
            &format!("/apps/{}", app.app_id),
            Some(serde_json::json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK);
    // A call in flight on the connection when its backend goes finds it broken as its
    // query's error, not as a connection already seen closed. To have one in flight for
    // sure, a lock holds the query until the backend has been killed.
    let mut locker = admin_connection_to(&db.url).await;
    sqlx::query("BEGIN")
        .execute(&mut locker)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .expect("lock");
    let (answer, killed) = {
        let mut call = Box::pin(app.call("get", &[]));
        tokio::select! {
            answer = &mut call => panic!("get answered through the lock: {answer}"),
            () = wait_for_lock_wait(&db.url, "smartpkg-get") => {}
        }
        let killed = terminate(&db.url, "smartpkg-get").await;
        backends_wait_gone(&killed).await;
        // Retried, the query waits for the lock on a new reader; not retried, the call
        // answers now.
        let answer = tokio::select! {
            answer = &mut call => answer,
            () = wait_for_lock_wait(&db.url, "smartpkg-get") => {
                sqlx::query("ROLLBACK").execute(&mut locker).await.expect("rollback");
                call.await
            }
        };
        (answer, killed)
    };
    assert_eq!(killed.len(), 1, "one connection of get's to kill");
    // The call that found the connection broken ran its query again on a new one: a killed
    // connection is nobody's error.
    assert_eq!(
        answer, before,
        "the call in flight when its reader was killed"
    );
    for n in 0..3 {
        assert_eq!(app.call("get", &[]).await, before, "call {n} after");
    }
    assert_eq!(
        connections_to(&db.url, "smartpkg-get").await,
        1,
        "one new connection"
    );
    app.stop().await;
}
