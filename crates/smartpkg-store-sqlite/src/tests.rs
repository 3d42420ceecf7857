use super::*;
use smartpkg_core::lifecycle::Policy;

fn ctx(now_ms: i64) -> DecisionContext {
    DecisionContext {
        now_ms,
        week_start_ms: 0,
        default_quota: None,
        policy: Policy {
            build_delay_ms: 100,
            rollback_delay_ms: 100,
            auto_audit_delay_ms: None,
        },
        actor: smartpkg_store::Actor::System,
    }
}

async fn seeded() -> (tempfile::TempDir, SqliteStore, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("smartpkg.db")).expect("open");
    let tp = store
        .create_tp(NewTp {
            client_id: "cid".into(),
            name: "tp".into(),
            event_url: String::new(),
            auth_event_url: String::new(),
            msg_token: "t".into(),
            encoding_aes_key: "k".into(),
            audit_quota: None,
            redirect_domain: String::new(),
        })
        .await
        .expect("tp");
    let app = store
        .create_app(NewApp {
            app_key: "key".into(),
            name: "app".into(),
            name_audited: true,
            category_audited: true,
            authenticity_certified: true,
            tp_id: Some(tp.tp_id),
        })
        .await
        .expect("app");
    store
        .create_template(
            NewTemplate {
                tp_id: tp.tp_id,
                user_version: "1".into(),
                user_desc: "d".into(),
                blob_sha256: "0".repeat(64),
                manifest: "{}".into(),
            },
            0,
        )
        .await
        .expect("template");
    (dir, store, app.app_id)
}

fn new_package(app_id: i64) -> NewPackage {
    NewPackage {
        app_id,
        tp_id: 1,
        template_id: 1,
        version: "1.0.0".into(),
        version_desc: "first".into(),
        ext_json: "{}".into(),
        direct_commit: false,
        test_account: None,
        test_password: None,
    }
}

#[tokio::test]
async fn the_database_itself_refuses_two_packages_in_one_slot() {
    let (_d, store, app) = seeded().await;
    let (id, _) = store
        .upload(new_package(app), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    let second = store
        .write(move |tx| {
            tx.execute(
                "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, version_desc, ext_json, direct_commit, commit_time, updated_at) \
                 VALUES (?1 + 1, ?2, 1, 1, 'development', 'x', 'x', '{}', 0, 0, 0)",
                params![id, app],
            )?;
            Ok(())
        })
        .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_database() {
    let (d, _store, _) = seeded().await;
    let again = SqliteStore::open(d.path().join("smartpkg.db"));
    assert!(matches!(again, Err(StoreError::Locked(_))));
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store, app) = seeded().await;
    store
        .upload(new_package(app), ctx(0))
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
