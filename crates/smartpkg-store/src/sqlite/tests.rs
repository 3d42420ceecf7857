use super::*;
use crate::{IssuedCode, Lane, OperatorGrant, SweepPolicy, TokenPair};
use smartpkg_core::lifecycle::{AuditRequest, Policy};

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
    }
}

async fn seeded() -> (tempfile::TempDir, SqliteStore, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("smartpkg.db")).expect("open");
    let tp = store
        .create_tp(Tp {
            tp_id: 0,
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
        .create_app(App {
            app_id: 0,
            app_key: "key".into(),
            name: "app".into(),
            name_audited: true,
            category_audited: true,
            authenticity_certified: true,
            tp_id: Some(tp.tp_id),
            owner_credential_set: false,
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
async fn upload_writes_the_package_and_its_build_job_together() {
    let (_d, store, app) = seeded().await;
    let (id, _) = store
        .upload(new_package(app), ctx(1000))
        .await
        .expect("db")
        .expect("upload");
    let p = store.get_package(id).await.expect("db").expect("package");
    assert_eq!(p.state, PkgState::Building);
    assert!(
        store
            .claim_jobs(1050, 10, 1000, Lane::Platform)
            .await
            .expect("db")
            .is_empty(),
        "not due before the build delay"
    );
    let jobs = store
        .claim_jobs(1100, 10, 1000, Lane::Platform)
        .await
        .expect("db");
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].kind, jobs[0].package_id), (JobKind::Build, id));
    assert!(
        store
            .claim_jobs(1200, 10, 1000, Lane::Platform)
            .await
            .expect("db")
            .is_empty(),
        "a leased job is not claimed twice"
    );
    assert_eq!(
        store
            .claim_jobs(2100, 10, 1000, Lane::Platform)
            .await
            .expect("db")
            .len(),
        1,
        "an expired lease is claimed again"
    );
}

#[tokio::test]
async fn completing_a_job_and_its_transition_commit_together() {
    let (_d, store, app) = seeded().await;
    let (id, _) = store
        .upload(new_package(app), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    let job = store
        .claim_jobs(100, 1, 1000, Lane::Platform)
        .await
        .expect("db")
        .remove(0);
    let cmd = Command::BuildSucceeded {
        package_id: id,
        direct_commit: false,
        ext_json: "{}".into(),
    };
    store
        .execute(app, cmd.clone(), ctx(100), Some(job.job_id))
        .await
        .expect("db")
        .expect("built");
    assert_eq!(
        store
            .next_job_due(crate::LaneKind::Platform)
            .await
            .expect("db"),
        None,
        "the job is gone"
    );
    // The same job delivered twice (a crash after commit, a lease race) is refused, not reapplied.
    let again = store
        .execute(app, cmd, ctx(200), Some(job.job_id))
        .await
        .expect("db");
    assert_eq!(
        again.expect_err("refused").errno,
        smartpkg_types::Errno::WRONG_STATE
    );
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
async fn weekly_quota_counts_submissions_since_the_week_start() {
    let (_d, store, app) = seeded().await;
    store
        .update_tp(
            1,
            TpPatch {
                audit_quota: Some(Some(1)),
                ..Default::default()
            },
        )
        .await
        .expect("tp");
    let (id, _) = store
        .upload(new_package(app), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    let built = Command::BuildSucceeded {
        package_id: id,
        direct_commit: false,
        ext_json: "{}".into(),
    };
    store
        .execute(app, built, ctx(1), None)
        .await
        .expect("db")
        .expect("built");
    let submit = Command::SubmitAudit {
        package_id: id,
        request: AuditRequest::default(),
    };
    store
        .execute(app, submit, ctx(2), None)
        .await
        .expect("db")
        .expect("submitted");
    let q = store.audit_quota(1, ctx(3)).await.expect("db");
    assert_eq!((q.limit, q.used), (Some(1), 1));
    let next_week = DecisionContext {
        week_start_ms: 10,
        ..ctx(10)
    };
    assert_eq!(store.audit_quota(1, next_week).await.expect("db").used, 0);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_database() {
    let (d, _store, _) = seeded().await;
    let again = SqliteStore::open(d.path().join("smartpkg.db"));
    assert!(matches!(again, Err(StoreError::Locked(_))));
}

fn pair(tag: &str, now: i64) -> TokenPair {
    TokenPair {
        access_hash: format!("{tag}-access"),
        refresh_hash: format!("{tag}-refresh"),
        access_expires_at_ms: now + 1000,
        refresh_expires_at_ms: now + 1_000_000,
    }
}

fn code(app_id: i64, hash: &str, expires_at_ms: i64) -> IssuedCode {
    IssuedCode {
        tp_id: 1,
        app_id,
        code_hash: hash.into(),
        expires_at_ms,
        payload: "{}".into(),
    }
}

#[tokio::test]
async fn the_sweep_drops_expired_and_long_used_credentials_and_trims_retired_packages() {
    let (dir, store, app) = seeded().await;
    let policy = SweepPolicy {
        used_credential_retention_ms: 500,
        retired_package_retention_ms: 500,
    };
    // A pre-auth code that expires at 100, one that does not, a code used at 10 (kept for
    // replay detection until 510), a ticket expiring at 100.
    store
        .create_code(CodeKind::PreAuth, "expired".into(), 1, None, 100, 0)
        .await
        .expect("db");
    store
        .create_code(CodeKind::PreAuth, "live".into(), 1, None, 10_000, 0)
        .await
        .expect("db");
    store
        .authorize(
            OperatorGrant {
                tp_id: 1,
                app_id: app,
                pair: pair("op", 0),
                code: code(app, "auth-code", 10_000),
            },
            0,
        )
        .await
        .expect("db");
    assert_eq!(
        store
            .exchange_code(1, "auth-code".into(), pair("x", 10), 10)
            .await
            .expect("db"),
        Some(app)
    );
    store
        .refresh(1, "x-refresh".into(), pair("y", 20), 20)
        .await
        .expect("db");
    store
        .push_ticket(1, "t".into(), 100, "{}".into(), 0)
        .await
        .expect("db");
    // Two uploads: the first is retired by the second.
    let (first, _) = store
        .upload(new_package(app), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    store
        .upload(new_package(app), ctx(1))
        .await
        .expect("db")
        .expect("upload");

    let swept = store.sweep(200, policy).await.expect("db");
    assert_eq!((swept.codes, swept.tickets), (1, 1), "{swept:?}");
    // Access tokens expired at 1010+; none yet. The used refresh token is within retention.
    assert_eq!(swept.tokens, 0, "{swept:?}");
    assert_eq!(swept.packages_trimmed, 0, "retired too recently");

    let swept = store.sweep(5_000, policy).await.expect("db");
    assert_eq!(
        swept.codes, 1,
        "the used auth code, past its retention: {swept:?}"
    );
    assert!(
        swept.tokens >= 3,
        "expired access tokens and the used refresh token: {swept:?}"
    );
    assert_eq!(swept.packages_trimmed, 1);
    let p = store.get_package(first).await.expect("db").expect("kept");
    assert_eq!((p.ext_json.as_str(), p.state), ("", PkgState::Retired));
    // The live code and the unused refresh tokens are still there.
    let c = Connection::open(dir.path().join("smartpkg.db")).expect("open");
    let live: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM codes WHERE code_hash = 'live'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(live, 1);
    let refresh: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM access_tokens WHERE kind = 'refresh' AND used_at IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(refresh, 2, "the operator's and the newest refresh token");
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
