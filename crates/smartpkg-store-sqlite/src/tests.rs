use super::*;
use smartpkg_core::ids::{AppId, TemplateId, TpId};
use smartpkg_store::conformance::{ctx, new_package};
use smartpkg_store::sql::Tx;
use smartpkg_store::PackageStore;

/// A store on a fresh file, seeded as the conformance cases seed theirs: (dir, store, tp, app).
async fn seeded() -> (tempfile::TempDir, SqliteStore, i64, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("smartpkg.db")).expect("open");
    let (tp, app, _) = smartpkg_store::conformance::seeded(&store).await;
    (dir, store, tp.get(), app.get())
}

#[tokio::test]
async fn the_database_itself_refuses_two_packages_in_one_slot() {
    let (_d, store, tp, app) = seeded().await;
    let (id, _) = store
        .upload(new_package(TpId(tp), AppId(app), TemplateId(1)), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    let second = smartpkg_store::sql::write(&store, move |tx| {
        Box::pin(async move {
            tx.exec(
                "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, \
                   version_desc, ext_json, direct_commit, commit_time, updated_at) \
                 VALUES ($1 + 1, $2, 1, 1, 'development', 'x', 'x', '{}', 0, 0, 0)",
                smartpkg_store::args![id, app],
            )
            .await
        })
    })
    .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_database() {
    let (d, _store, _, _) = seeded().await;
    let again = SqliteStore::open(d.path().join("smartpkg.db"));
    assert!(matches!(again, Err(StoreError::Locked(_))));
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store, tp, app) = seeded().await;
    store
        .upload(new_package(TpId(tp), AppId(app), TemplateId(1)), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    for name in ["smartpkg.db", "smartpkg.db-wal", "smartpkg.lock"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
}

/// The storage contract, one test per case, each on a fresh SQLite file.
mod contract {
    use std::sync::Arc;

    use super::SqliteStore;
    use smartpkg_store::Store;

    async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("smartpkg.db")).expect("open");
        (dir, Arc::new(store))
    }

    smartpkg_store::conformance_tests!(fresh);
}
