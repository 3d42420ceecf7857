//! `package/get` from each instance's cache: what it answers after a change, on the instance
//! that made it and on another (see the crate's `cache` module).

use smartpkg_core::ids::{AppId, TpId};
use std::time::{Duration, Instant};

use smartpkg_store::conformance::{code, ctx, new_package, pair, seeded};
use smartpkg_store::{AuthStore, OperatorGrant, PackageStore};
use smartpkg_store_postgres::testing::FreshDatabase;
use smartpkg_store_postgres::{PgStore, GET_CACHE_TTL};

/// Two instances on one fresh database, a mini program authorized (token `t-access`) with one
/// package: (database, a, b, tp, app).
async fn two_instances() -> (FreshDatabase, PgStore, PgStore, TpId, AppId) {
    let db = FreshDatabase::create().await.expect("a fresh database");
    let a = PgStore::connect(&db.url, 4).await.expect("connect a");
    let b = PgStore::connect(&db.url, 4).await.expect("connect b");
    let (tp, app, template) = seeded(&a).await;
    let grant = OperatorGrant {
        tp_id: tp,
        app_id: app,
        pair: pair("t", i64::MAX / 2),
        code: code(tp, app, "c", i64::MAX / 2),
    };
    a.authorize(grant, 0).await.expect("authorize");
    a.upload(new_package(tp, app, template), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    // Both listeners subscribed, so that both instances cache.
    for s in [&a, &b] {
        wait_until("the cache's listener to subscribe", || async {
            s.get_cache_listening()
        })
        .await;
    }
    (db, a, b, tp, app)
}

async fn packages_seen(s: &PgStore) -> Option<usize> {
    let found = s
        .visible_packages_by_token("t-access".into())
        .await
        .expect("get");
    found.map(|(_, packages)| packages.len())
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_instance_reads_its_own_writes_at_once() {
    let (_db, a, _b, tp, app) = two_instances().await;
    assert_eq!(packages_seen(&a).await, Some(1));
    assert_eq!(packages_seen(&a).await, Some(1), "now from the cache");
    assert!(a.revoke(tp, app, 1).await.expect("revoke"));
    assert_eq!(
        packages_seen(&a).await,
        None,
        "the revoked token still read"
    );
}

#[tokio::test]
async fn a_change_on_one_instance_reaches_another_before_its_answers_expire() {
    let (_db, a, b, tp, app) = two_instances().await;
    assert_eq!(packages_seen(&b).await, Some(1));
    let revoked = Instant::now();
    assert!(a.revoke(tp, app, 1).await.expect("revoke"));
    wait_until("b to see the revocation", || async {
        packages_seen(&b).await.is_none()
    })
    .await;
    // The notification, not the expiry, ended b's answer.
    assert!(
        revoked.elapsed() < GET_CACHE_TTL / 2,
        "b saw the change only after {:?}",
        revoked.elapsed()
    );
}

#[tokio::test]
async fn an_instance_whose_listener_is_lost_stops_answering_from_memory() {
    let (db, a, b, tp, app) = two_instances().await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    // The change below is not notified (as if the notification were lost on the way)...
    for table in ["packages", "access_tokens", "apps"] {
        sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
            .execute(&mut admin)
            .await
            .expect("disable the triggers");
    }
    assert_eq!(packages_seen(&b).await, Some(1));
    assert!(a.revoke(tp, app, 1).await.expect("revoke"));
    assert_eq!(
        packages_seen(&b).await,
        Some(1),
        "b answered from its cache (stale: nothing told it)"
    );
    // ...and the listeners' connections end: an instance that cannot know what it missed
    // drops everything and reads the database.
    let lost = Instant::now();
    let killed: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'LISTEN%' AND pg_terminate_backend(pid)",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate the listeners");
    assert!(!killed.is_empty(), "the listeners' connections");
    wait_until("b to read the database again", || async {
        packages_seen(&b).await.is_none()
    })
    .await;
    assert!(
        lost.elapsed() < GET_CACHE_TTL / 4,
        "b answered stale for {:?} after its listener was lost",
        lost.elapsed()
    );
    // It caches again once it listens again.
    wait_until("b's listener to subscribe again", || async {
        b.get_cache_listening()
    })
    .await;
}
