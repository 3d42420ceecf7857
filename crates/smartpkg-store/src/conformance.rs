//! The storage contract as executable cases, run against every backend (SQLite in this crate's
//! tests, PostgreSQL where one is reachable): each case gets a fresh, empty store and uses
//! nothing but the traits.
//!
//! Enabled by the `conformance` feature (and in this crate's own tests).

use smartpkg_core::ids::{AccountId, AppId, HostId, PackageId, TemplateId, TpId};
use std::sync::Arc;

use smartpkg_core::lifecycle::{AuditRequest, Command, JobKind, PkgState, Policy};
use smartpkg_core::push::{CodeGrant, Event};

use crate::{
    Approval, AttemptOutcome, AttemptRecord, Channel, CodeKind, DecisionContext, IssuedCode, Lane,
    LaneKind, LibraryRefusal, NewApp, NewPackage, NewTemplate, NewTp, OperatorGrant, Schedule,
    Store, StoreError, SweepPolicy, TargetVerdict, TokenPair, TpPatch,
};

/// One `#[tokio::test]` per case, named after it (so each runs, fails and is filtered by
/// name: `cargo test tenants_round_trip`), each on a fresh store. `$fresh` names an async
/// function returning `(guard, Arc<dyn Store>)`; the guard (a temporary directory, a fresh
/// database) lives as long as the case. The list of cases is written here, once.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::__conformance_each! { $fresh;
            tenants_round_trip_and_secrets_are_stable,
            upload_writes_the_package_and_its_build_job_together,
            completing_a_job_and_its_transition_commit_together,
            weekly_quota_counts_submissions_since_the_week_start,
            codes_work_once_and_a_replay_revokes_the_token_family,
            moving_an_app_ends_the_old_authorization_and_tells_both,
            the_template_limit_holds,
            a_schedule_is_taken_once_per_interval,
            a_failing_target_is_held_and_its_pushes_wait,
            pushes_stay_within_the_per_target_cap,
            the_sweep_drops_what_nobody_may_use,
            a_worker_whose_lease_was_taken_over_changes_nothing,
            racing_commands_on_one_package_have_exactly_one_winner,
            racing_submissions_never_exceed_the_weekly_quota,
            racing_template_additions_never_exceed_the_limit,
            staged_releases_and_the_runtime_view_agree,
            rollback_to_a_chosen_version_reaches_back_five_releases,
            racing_settings_edits_all_land,
            host_apps_and_archives_round_trip,
            accounts_sessions_and_the_console_lists,
            every_decision_is_logged_with_who_took_it,
            a_package_log_is_its_own_however_busy_its_app,
            a_changed_password_or_a_disabled_account_ends_its_sessions,
            queued_events_read_back_as_the_typed_events_that_queued_them,
            every_known_third_party_can_be_resumed_and_no_unknown_one,
            wechat_identities_round_trip_and_find_their_owners,
            audits_read_back_from_the_timeline_and_each_dialect_counts_its_own,
            two_instances_flushing_one_fleet_count_as_one,
            a_staged_plan_reads_back_and_its_halt_is_announced_once,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_guard, store) = $fresh().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

pub fn ctx(now_ms: i64) -> DecisionContext {
    DecisionContext {
        now_ms,
        quota_since_ms: 0,
        default_quota: None,
        dialect: smartpkg_core::dialect::Dialect::Baidu,
        policy: Policy {
            build_delay_ms: 100,
            rollback_delay_ms: 100,
            auto_audit_delay_ms: None,
        },
        actor: crate::Actor::System,
    }
}

fn tp(client_id: &str) -> NewTp {
    NewTp {
        client_id: client_id.into(),
        name: format!("tp {client_id}"),
        event_url: "http://203.0.113.1/events".into(),
        auth_event_url: "http://203.0.113.1/auth".into(),
        msg_token: "t".into(),
        encoding_aes_key: "k".into(),
        audit_quota: None,
        redirect_domain: String::new(),
        wechat: crate::WechatIdentity {
            component_appid: wx_id(),
            token: "wt".into(),
            encoding_aes_key: "wk".into(),
            auth_event_url: "http://203.0.113.1/wx-auth".into(),
            message_url: "http://203.0.113.1/wx/$APPID$".into(),
        },
        component_secret_hash: format!("hash of {client_id}"),
    }
}

/// A fresh `wx` appid.
fn wx_id() -> String {
    format!("wx{}", hex::encode(rand::random::<[u8; 8]>()))
}

fn app(key: &str, tp_id: Option<TpId>) -> NewApp {
    NewApp {
        app_key: key.into(),
        name: "app".into(),
        name_audited: true,
        category_audited: true,
        authenticity_certified: true,
        tp_id,
        wx_appid: wx_id(),
    }
}

/// A TP with one authorized app and one template: (tp_id, app_id, template_id).
pub async fn seeded(store: &dyn Store) -> (TpId, AppId, TemplateId) {
    let tp = store.create_tp(tp("cid")).await.expect("tp");
    let app = store
        .create_app(app("key", Some(tp.tp_id)))
        .await
        .expect("app");
    let t = store
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
    (tp.tp_id, app.app_id, t.template_id)
}

/// A development package of `app_id` from `template_id`.
pub fn new_package(tp_id: TpId, app_id: AppId, template_id: TemplateId) -> NewPackage {
    NewPackage {
        app_id,
        tp_id,
        template_id,
        version: "1.0.0".into(),
        version_desc: "first".into(),
        ext_json: "{}".into(),
        direct_commit: false,
        test_account: None,
        test_password: None,
    }
}

pub fn pair(tag: &str, now: i64) -> TokenPair {
    TokenPair {
        access_hash: format!("{tag}-access"),
        refresh_hash: format!("{tag}-refresh"),
        access_expires_at_ms: now + 1000,
        refresh_expires_at_ms: now + 1_000_000,
    }
}

pub fn code(tp_id: TpId, app_id: AppId, hash: &str, expires_at_ms: i64) -> IssuedCode {
    IssuedCode {
        tp_id,
        app_id,
        code_hash: hash.into(),
        expires_at_ms,
        grant: CodeGrant {
            authorization_code: format!("plain-{hash}"),
            authorization_code_expires_in: 3600,
        },
    }
}

pub async fn every_known_third_party_can_be_resumed_and_no_unknown_one(store: Arc<dyn Store>) {
    let (tp_id, _, _) = seeded(&*store).await;
    // Never pushed to: no failure record, nothing to end, and still a known target.
    assert!(store.resume_target(tp_id).await.expect("db"));
    assert!(!store
        .resume_target(TpId(tp_id.get() + 1000))
        .await
        .expect("db"));
}

pub async fn queued_events_read_back_as_the_typed_events_that_queued_them(store: Arc<dyn Store>) {
    let (tp_id, app_id, _) = seeded(&*store).await;
    store
        .push_ticket(
            tp_id,
            smartpkg_core::dialect::Dialect::Baidu,
            "hash".into(),
            100_000,
            "plain-ticket".into(),
            5_000,
        )
        .await
        .expect("db");
    // Live until it expires; known (as an expired ticket of this TP) after; never another's.
    assert!(store
        .ticket_valid(tp_id, "hash".into(), 99_999)
        .await
        .expect("db"));
    assert!(!store
        .ticket_valid(tp_id, "hash".into(), 100_000)
        .await
        .expect("db"));
    assert!(store.ticket_known(tp_id, "hash".into()).await.expect("db"));
    assert!(!store.ticket_known(tp_id, "other".into()).await.expect("db"));
    assert!(!store
        .ticket_known(TpId(tp_id.get() + 1), "hash".into())
        .await
        .expect("db"));
    store
        .create_code(CodeKind::PreAuth, "pre".into(), tp_id, None, 10_000, 0)
        .await
        .expect("db");
    let approval = Approval {
        pre_auth_hash: "pre".into(),
        code: code(tp_id, app_id, "auth", 10_000),
    };
    assert_eq!(store.approve(approval, 6_000).await.expect("db"), Ok(()));
    let mut events: Vec<(Channel, Event)> = store
        .list_deliveries(Some(tp_id), None, None, 10)
        .await
        .expect("db")
        .iter()
        .map(|d| (d.event.channel, d.event.typed().expect("reads back")))
        .collect();
    events.reverse();
    assert_eq!(
        events,
        vec![
            (
                Channel::Auth,
                Event::Ticket {
                    ticket: "plain-ticket".into(),
                    create_time_s: 5
                }
            ),
            (
                Channel::Auth,
                Event::UpdateAuthorized(CodeGrant {
                    authorization_code: "plain-auth".into(),
                    authorization_code_expires_in: 3600,
                })
            ),
        ]
    );
}

pub async fn tenants_round_trip_and_secrets_are_stable(store: Arc<dyn Store>) {
    let a = store.create_tp(tp("a")).await.expect("tp");
    let b = store.create_tp(tp("b")).await.expect("tp");
    assert_ne!(a.tp_id, b.tp_id, "ids are distinct");
    let patched = store
        .update_tp(
            a.tp_id,
            TpPatch {
                name: Some("renamed".into()),
                audit_quota: Some(Some(3)),
                ..Default::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(
        (patched.name.as_str(), patched.audit_quota),
        ("renamed", Some(3))
    );
    assert_eq!(
        store
            .get_tp_by_client_id("b".into())
            .await
            .expect("db")
            .map(|t| t.tp_id),
        Some(b.tp_id)
    );
    let x = store.create_app(app("k1", None)).await.expect("app");
    assert_eq!(store.owner_password_hash(x.app_id).await.expect("db"), None);
    assert!(store
        .set_owner_password(x.app_id, "$argon2id$hash".into())
        .await
        .expect("db"));
    assert!(!store
        .set_owner_password(AppId(999_999), "h".into())
        .await
        .expect("db"));
    let got = store.get_app(x.app_id).await.expect("db").expect("app");
    assert!(got.owner_credential_set);
    assert_eq!(
        store
            .owner_password_hash(x.app_id)
            .await
            .expect("db")
            .as_deref(),
        Some("$argon2id$hash")
    );
    let s1 = store.server_secret("csrf").await.expect("db");
    let s2 = store.server_secret("csrf").await.expect("db");
    let other = store.server_secret("other").await.expect("db");
    assert_eq!(s1, s2);
    assert_ne!(s1, other);
    assert_eq!(s1.len(), 64);
}

pub async fn upload_writes_the_package_and_its_build_job_together(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let (id, _) = store
        .upload(new_package(tp_id, app_id, t), ctx(1000))
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

pub async fn completing_a_job_and_its_transition_commit_together(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let (id, _) = store
        .upload(new_package(tp_id, app_id, t), ctx(0))
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
        .execute(app_id, cmd.clone(), ctx(100), Some(job.lease_ref()))
        .await
        .expect("db")
        .expect("built");
    assert_eq!(
        store.next_job_due(LaneKind::Platform).await.expect("db"),
        None,
        "the job is gone"
    );
    let again = store
        .execute(app_id, cmd, ctx(200), Some(job.lease_ref()))
        .await
        .expect("db");
    assert_eq!(
        again.expect_err("refused").errno,
        smartpkg_types::Errno::WrongState,
        "a job completed twice is refused, not reapplied"
    );
}

pub async fn weekly_quota_counts_submissions_since_the_week_start(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    store
        .update_tp(
            tp_id,
            TpPatch {
                audit_quota: Some(Some(1)),
                ..Default::default()
            },
        )
        .await
        .expect("tp");
    let (id, _) = store
        .upload(new_package(tp_id, app_id, t), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    let built = Command::BuildSucceeded {
        package_id: id,
        direct_commit: false,
        ext_json: "{}".into(),
    };
    store
        .execute(app_id, built, ctx(1), None)
        .await
        .expect("db")
        .expect("built");
    let submit = Command::SubmitAudit {
        package_id: id,
        request: AuditRequest::default(),
    };
    store
        .execute(app_id, submit, ctx(2), None)
        .await
        .expect("db")
        .expect("submitted");
    let q = store.audit_quota(tp_id, ctx(3)).await.expect("db");
    assert_eq!((q.limit, q.used), (Some(1), 1));
    let next_week = DecisionContext {
        quota_since_ms: 10,
        ..ctx(10)
    };
    assert_eq!(
        store.audit_quota(tp_id, next_week).await.expect("db").used,
        0
    );
}

pub async fn codes_work_once_and_a_replay_revokes_the_token_family(store: Arc<dyn Store>) {
    let (tp_id, app_id, _) = seeded(&*store).await;
    store
        .create_code(CodeKind::PreAuth, "pre".into(), tp_id, None, 10_000, 0)
        .await
        .expect("db");
    assert!(store
        .code_usable(CodeKind::PreAuth, "pre".into(), tp_id, 1)
        .await
        .expect("db"));
    assert!(!store
        .code_usable(CodeKind::Auth, "pre".into(), tp_id, 1)
        .await
        .expect("db"));
    let approval = Approval {
        pre_auth_hash: "pre".into(),
        code: code(tp_id, app_id, "auth-code", 10_000),
    };
    assert_eq!(
        store.approve(approval.clone(), 2).await.expect("db"),
        Ok(())
    );
    assert!(
        store.approve(approval, 3).await.expect("db").is_err(),
        "a pre-auth code works once"
    );
    assert_eq!(
        store
            .exchange_code(tp_id, "auth-code".into(), pair("a", 10), 10)
            .await
            .expect("db"),
        Some(app_id)
    );
    assert!(store
        .resolve_app_token("a-access".into())
        .await
        .expect("db")
        .is_some());
    // A refresh token presented for another mini program is neither used nor a replay.
    let elsewhere = AppId(app_id.get() + 1_000);
    assert_eq!(
        store
            .refresh(
                tp_id,
                Some(elsewhere),
                "a-refresh".into(),
                pair("x", 15),
                15
            )
            .await
            .expect("db"),
        None
    );
    let renewed = store
        .refresh(tp_id, Some(app_id), "a-refresh".into(), pair("b", 20), 20)
        .await
        .expect("db");
    assert_eq!(renewed, Some(app_id));
    // Replaying the used refresh token kills the family: the newest pair too.
    assert_eq!(
        store
            .refresh(tp_id, None, "a-refresh".into(), pair("c", 30), 30)
            .await
            .expect("db"),
        None
    );
    assert!(store
        .resolve_app_token("b-access".into())
        .await
        .expect("db")
        .is_none());
    assert_eq!(
        store
            .refresh(tp_id, None, "b-refresh".into(), pair("d", 40), 40)
            .await
            .expect("db"),
        None
    );
    // Replaying the used code: nothing issued, nothing left.
    assert_eq!(
        store
            .exchange_code(tp_id, "auth-code".into(), pair("e", 50), 50)
            .await
            .expect("db"),
        None
    );
}

pub async fn moving_an_app_ends_the_old_authorization_and_tells_both(store: Arc<dyn Store>) {
    let (old_tp, app_id, _) = seeded(&*store).await;
    let new_tp = store.create_tp(tp("new")).await.expect("tp").tp_id;
    store
        .authorize(
            OperatorGrant {
                tp_id: old_tp,
                app_id,
                pair: pair("old", 0),
                code: code(old_tp, app_id, "c-old", 10_000),
            },
            0,
        )
        .await
        .expect("db");
    store
        .authorize(
            OperatorGrant {
                tp_id: new_tp,
                app_id,
                pair: pair("new", 1),
                code: code(new_tp, app_id, "c-new", 10_000),
            },
            1,
        )
        .await
        .expect("db");
    assert!(store
        .resolve_app_token("old-access".into())
        .await
        .expect("db")
        .is_none());
    let g = store
        .resolve_app_token("new-access".into())
        .await
        .expect("db")
        .expect("grant");
    assert_eq!((g.app_id, g.tp_id), (app_id, new_tp));
    let events = |tp: TpId| {
        let store = store.clone();
        async move {
            store
                .list_deliveries(Some(tp), None, None, 100)
                .await
                .expect("db")
                .into_iter()
                .map(|d| d.event.event)
                .collect::<Vec<_>>()
        }
    };
    assert!(events(old_tp).await.contains(&"UNAUTHORIZED".to_string()));
    assert!(events(new_tp).await.contains(&"AUTHORIZED".to_string()));
    assert!(store.revoke(new_tp, app_id, 2).await.expect("db"));
    assert!(!store.revoke(new_tp, app_id, 3).await.expect("db"));
    assert_eq!(
        store
            .get_app(app_id)
            .await
            .expect("db")
            .and_then(|a| a.tp_id),
        None
    );
}

pub async fn the_template_limit_holds(store: Arc<dyn Store>) {
    let (tp_id, _, _) = seeded(&*store).await;
    let mut drafts = vec![];
    for i in 0..3 {
        let d = store
            .create_draft(
                NewTemplate {
                    tp_id,
                    user_version: format!("{i}"),
                    user_desc: "d".into(),
                    blob_sha256: "1".repeat(64),
                    manifest: "{}".into(),
                },
                i,
            )
            .await
            .expect("draft");
        drafts.push(d.draft_id);
    }
    // The seed's template counts: a limit of 2 leaves room for one more.
    let first = store
        .add_template(tp_id, drafts[0], Some("x".into()), 2, 10)
        .await
        .expect("db");
    assert!(first.is_ok());
    let second = store
        .add_template(tp_id, drafts[1], Some("y".into()), 2, 11)
        .await
        .expect("db");
    assert_eq!(second.err(), Some(LibraryRefusal::TemplateLimit));
    let (count, _) = store.list_templates(tp_id, 0, 10).await.expect("db");
    assert_eq!(count, 2);
}

pub async fn a_schedule_is_taken_once_per_interval(store: Arc<dyn Store>) {
    assert!(store
        .take_schedule(Schedule::Janitor, 1000, 500)
        .await
        .expect("db"));
    assert!(!store
        .take_schedule(Schedule::Janitor, 1200, 500)
        .await
        .expect("db"));
    assert!(store
        .take_schedule(Schedule::Janitor, 1500, 500)
        .await
        .expect("db"));
}

fn failed_attempt(at_ms: i64) -> AttemptRecord {
    AttemptRecord {
        at_ms,
        url: "http://203.0.113.1/events".into(),
        status: Some(500),
        latency_ms: 1,
        error: Some("HTTP 500".into()),
        body: None,
        dialect: smartpkg_core::dialect::Dialect::Baidu,
    }
}

pub async fn a_failing_target_is_held_and_its_pushes_wait(store: Arc<dyn Store>) {
    let (tp_id, app_id, _) = seeded(&*store).await;
    // An authorization change queues a push to the TP.
    store
        .authorize(
            OperatorGrant {
                tp_id,
                app_id,
                pair: pair("p", 0),
                code: code(tp_id, app_id, "c", 10_000),
            },
            0,
        )
        .await
        .expect("db");
    let lane = Lane::Deliveries {
        per_target: 4,
        failing_slots: 4,
    };
    let hold = smartpkg_core::push::HoldPolicy {
        after_failures: 1,
        base_ms: 1000,
        max_ms: 10_000,
        jitter: 1.0,
    };
    let job = store
        .claim_jobs(10, 10, 5000, lane)
        .await
        .expect("db")
        .pop()
        .expect("a push job");
    let delivery_id = job.delivery_id.expect("delivery");
    let held = store
        .record_attempt(
            job.lease_ref(),
            delivery_id,
            failed_attempt(10),
            AttemptOutcome::RetryAt(20),
            TargetVerdict::Failed { hold },
        )
        .await
        .expect("db");
    assert_eq!(held, Some(1010));
    assert!(
        store
            .claim_jobs(500, 10, 5000, lane)
            .await
            .expect("db")
            .is_empty(),
        "held: the retry is due but waits"
    );
    let t = store.push_targets().await.expect("db");
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].consecutive_failures, t[0].holds), (1, 1));
    assert!(store.resume_target(tp_id).await.expect("db"));
    let job = store
        .claim_jobs(600, 10, 5000, lane)
        .await
        .expect("db")
        .pop()
        .expect("resumed");
    assert!(!job.degraded, "resumed targets are healthy again");
    store
        .record_attempt(
            job.lease_ref(),
            delivery_id,
            AttemptRecord {
                status: Some(200),
                error: None,
                ..failed_attempt(600)
            },
            AttemptOutcome::Delivered,
            TargetVerdict::Succeeded,
        )
        .await
        .expect("db");
    let d = store
        .get_delivery(delivery_id)
        .await
        .expect("db")
        .expect("delivery");
    assert_eq!(d.state, crate::DeliveryState::Delivered);
    assert_eq!(d.attempts, 2);
    assert_eq!(
        store
            .delivery_attempts(delivery_id)
            .await
            .expect("db")
            .len(),
        2
    );
}

pub async fn pushes_stay_within_the_per_target_cap(store: Arc<dyn Store>) {
    let (tp_id, _, _) = seeded(&*store).await;
    for i in 0..5 {
        store
            .push_ticket(
                tp_id,
                smartpkg_core::dialect::Dialect::Baidu,
                format!("ticket-{i}"),
                100_000,
                "{}".into(),
                i,
            )
            .await
            .expect("db");
    }
    let lane = Lane::Deliveries {
        per_target: 2,
        failing_slots: 2,
    };
    // A target never yet answered gets one attempt in flight, from the failing share: a crowd
    // of new receivers that hang cannot take every slot before any is known to fail.
    let first = store.claim_jobs(1, 10, 5000, lane).await.expect("db");
    assert_eq!(first.len(), 1);
    assert!(first[0].degraded, "an unknown target counts as failing");
    assert!(
        store
            .claim_jobs(2, 10, 5000, lane)
            .await
            .expect("db")
            .is_empty(),
        "its first attempt is still in flight"
    );
    let probe = &first[0];
    store
        .record_attempt(
            probe.lease_ref(),
            probe.delivery_id.expect("delivery"),
            AttemptRecord {
                status: Some(200),
                error: None,
                ..failed_attempt(5)
            },
            AttemptOutcome::Delivered,
            TargetVerdict::Succeeded,
        )
        .await
        .expect("db");
    // Known to answer now: up to the cap, outside the failing share.
    let claimed = store.claim_jobs(10, 10, 5000, lane).await.expect("db");
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|j| !j.degraded));
    assert!(
        store
            .claim_jobs(20, 10, 5000, lane)
            .await
            .expect("db")
            .is_empty(),
        "two in flight already"
    );
    assert_eq!(
        store
            .claim_jobs(6000, 10, 5000, lane)
            .await
            .expect("db")
            .len(),
        2,
        "after the leases end, two again"
    );
}

pub async fn the_sweep_drops_what_nobody_may_use(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let policy = SweepPolicy {
        used_credential_retention_ms: 500,
        retired_package_retention_ms: 500,
        report_retention_ms: i64::MAX,
    };
    store
        .create_code(CodeKind::PreAuth, "expired".into(), tp_id, None, 100, 0)
        .await
        .expect("db");
    store
        .create_code(CodeKind::PreAuth, "live".into(), tp_id, None, 10_000, 0)
        .await
        .expect("db");
    store
        .push_ticket(
            tp_id,
            smartpkg_core::dialect::Dialect::Baidu,
            "t".into(),
            100,
            "{}".into(),
            0,
        )
        .await
        .expect("db");
    let mut with_password = new_package(tp_id, app_id, t);
    with_password.test_password = Some("pw".into());
    let (first, _) = store
        .upload(with_password, ctx(0))
        .await
        .expect("db")
        .expect("upload");
    store
        .upload(new_package(tp_id, app_id, t), ctx(1))
        .await
        .expect("db")
        .expect("upload");
    let account = reviewer(&*store, "sweeper").await;
    for (hash, expires) in [("old", 150), ("new", 10_000)] {
        store
            .create_session(hash.into(), account.account_id, "c".into(), 100, expires)
            .await
            .expect("db");
    }
    let swept = store.sweep(200, policy).await.expect("db");
    assert_eq!(
        (swept.codes, swept.tickets, swept.sessions),
        (1, 1, 1),
        "{swept:?}"
    );
    assert!(store
        .session("new".into(), 200)
        .await
        .expect("db")
        .is_some());
    // A retired package never comes back: its inputs went with its retirement, so the sweep
    // has nothing of it left to trim.
    let p = store.get_package(first).await.expect("db").expect("kept");
    assert_eq!((p.ext_json.as_str(), p.state), ("", PkgState::Retired));
    assert_eq!(p.test_password, None);
    let swept = store.sweep(5_000, policy).await.expect("db");
    assert_eq!(swept.packages_trimmed, 0, "{swept:?}");
    assert!(store
        .code_usable(CodeKind::PreAuth, "live".into(), tp_id, 5_000)
        .await
        .expect("db"));
    assert!(!store.ticket_valid(tp_id, "t".into(), 50).await.expect("db"));
}

pub async fn a_worker_whose_lease_was_taken_over_changes_nothing(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let (id, _) = store
        .upload(new_package(tp_id, app_id, t), ctx(0))
        .await
        .expect("db")
        .expect("upload");
    // Worker A claims the build with a lease of 100 ms and stalls past it; B takes it over.
    let a = store
        .claim_jobs(100, 1, 100, Lane::Platform)
        .await
        .expect("db")
        .remove(0);
    let b = store
        .claim_jobs(300, 1, 100, Lane::Platform)
        .await
        .expect("db")
        .remove(0);
    assert_eq!(a.job_id, b.job_id);
    assert_ne!(a.lease, b.lease);
    let built = Command::BuildSucceeded {
        package_id: id,
        direct_commit: false,
        ext_json: "{}".into(),
    };
    // A comes back: nothing it does lands.
    let late = store
        .execute(app_id, built.clone(), ctx(310), Some(a.lease_ref()))
        .await;
    assert!(matches!(late, Err(StoreError::LeaseLost(_))), "{late:?}");
    assert_eq!(
        store.get_package(id).await.expect("db").map(|p| p.state),
        Some(PkgState::Building),
        "the late worker's decision was rolled back"
    );
    assert!(matches!(
        store.retry_job(a.lease_ref(), 10_000, "late".into()).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store.drop_job(a.lease_ref()).await,
        Err(StoreError::LeaseLost(_))
    ));
    // B, the holder, completes it.
    store
        .execute(app_id, built, ctx(320), Some(b.lease_ref()))
        .await
        .expect("db")
        .expect("built");
    assert_eq!(
        store.get_package(id).await.expect("db").map(|p| p.state),
        Some(PkgState::Development)
    );
}

/// How many concurrent callers each race has, and how often the package race is repeated.
const RACERS: usize = 50;
const PACKAGE_RACE_ROUNDS: usize = 200;

/// Runs `cmd` from `RACERS` tasks at once; (winners, refusal errnos). A storage error (a
/// conflict that outlived the backend's retries included) fails the case: callers must get a
/// decision, never a 500.
async fn race(store: &Arc<dyn Store>, app_id: AppId, cmd: Command, now: i64) -> (usize, Vec<i64>) {
    let mut tasks = Vec::with_capacity(RACERS);
    for _ in 0..RACERS {
        let (store, cmd) = (store.clone(), cmd.clone());
        tasks.push(tokio::spawn(async move {
            store.execute(app_id, cmd, ctx(now), None).await
        }));
    }
    let mut winners = 0;
    let mut refusals = vec![];
    for t in tasks {
        match t.await.expect("task") {
            Ok(Ok(_)) => winners += 1,
            Ok(Err(refusal)) => refusals.push(refusal.errno.code()),
            Err(e) => panic!("a racing call failed with a storage error: {e}"),
        }
    }
    (winners, refusals)
}

async fn decide_ok(store: &Arc<dyn Store>, app_id: AppId, cmd: Command, now: i64) {
    store
        .execute(app_id, cmd, ctx(now), None)
        .await
        .expect("db")
        .expect("allowed");
}

/// Uploads a version and completes its build: its package id, in development.
async fn built(
    store: &Arc<dyn Store>,
    tp_id: TpId,
    app_id: AppId,
    t: TemplateId,
    now: i64,
) -> PackageId {
    let (id, _) = store
        .upload(new_package(tp_id, app_id, t), ctx(now))
        .await
        .expect("db")
        .expect("upload");
    let done = Command::BuildSucceeded {
        package_id: id,
        direct_commit: false,
        ext_json: "{}".into(),
    };
    decide_ok(store, app_id, done, now).await;
    id
}

/// Uploads, builds, submits and passes a version: its package id, audit passed.
async fn passed(
    store: &Arc<dyn Store>,
    tp_id: TpId,
    app_id: AppId,
    t: TemplateId,
    now: i64,
) -> PackageId {
    let id = built(store, tp_id, app_id, t, now).await;
    let submit = Command::SubmitAudit {
        package_id: id,
        request: AuditRequest::default(),
    };
    decide_ok(store, app_id, submit, now).await;
    let pass = Command::Decide {
        package_id: id,
        pass: true,
        reason: String::new(),
    };
    decide_ok(store, app_id, pass, now).await;
    id
}

pub async fn racing_commands_on_one_package_have_exactly_one_winner(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let mut previous_online = None;
    for round in 0..PACKAGE_RACE_ROUNDS {
        let now = round as i64 * 10;
        let p = passed(&store, tp_id, app_id, t, now).await;
        let (won, refused) = race(&store, app_id, Command::Release { package_id: p }, now).await;
        assert_eq!(won, 1, "round {round}: release");
        assert!(refused.iter().all(|e| *e == 69501), "{refused:?}");
        if previous_online.is_some() {
            // Roll back the fresh release (to the previous online), racing; then the restored
            // version may not be rolled back again, so a release brings P back for the next round.
            let (won, _) = race(&store, app_id, Command::Rollback { package_id: p }, now).await;
            assert_eq!(won, 1, "round {round}: rollback");
            let finish = Command::FinishRollback { package_id: p };
            decide_ok(&store, app_id, finish, now).await;
        }
        previous_online = Some(p);
        // Invariants after every round: one online version, no audit in flight.
        let visible = store.visible_packages(app_id).await.expect("db");
        let online = visible
            .iter()
            .filter(|v| matches!(v.state, PkgState::Online | PkgState::RollingBack))
            .count();
        assert_eq!(online, 1, "round {round}: {visible:?}");
    }
    // Withdraw and submit race on one package in audit.
    let id = built(&store, tp_id, app_id, t, 100_000).await;
    let submit = Command::SubmitAudit {
        package_id: id,
        request: AuditRequest::default(),
    };
    let (won, refused) = race(&store, app_id, submit, 100_001).await;
    assert_eq!(won, 1, "submitaudit");
    assert!(!refused.is_empty());
    let (won, _) = race(
        &store,
        app_id,
        Command::Withdraw { package_id: id },
        100_002,
    )
    .await;
    assert_eq!(won, 1, "withdraw");
}

pub async fn racing_submissions_never_exceed_the_weekly_quota(store: Arc<dyn Store>) {
    let (tp_id, _, t) = seeded(&*store).await;
    const QUOTA: i64 = 10;
    store
        .update_tp(
            tp_id,
            TpPatch {
                audit_quota: Some(Some(QUOTA)),
                ..Default::default()
            },
        )
        .await
        .expect("tp");
    // 50 mini programs of the TP, each with a built development version.
    let mut ready = vec![];
    for i in 0..RACERS {
        let app_id = store
            .create_app(app(&format!("quota-{i}"), Some(tp_id)))
            .await
            .expect("app")
            .app_id;
        let id = built(&store, tp_id, app_id, t, 0).await;
        ready.push((app_id, id));
    }
    let mut tasks = vec![];
    for (app_id, id) in ready {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let submit = Command::SubmitAudit {
                package_id: id,
                request: AuditRequest::default(),
            };
            store.execute(app_id, submit, ctx(2), None).await
        }));
    }
    let (mut won, mut over) = (0, 0);
    for t in tasks {
        match t.await.expect("task").expect("no storage error") {
            Ok(_) => won += 1,
            Err(r) if r.errno.code() == 69013 => over += 1,
            Err(r) => panic!("unexpected refusal {r:?}"),
        }
    }
    assert_eq!((won, over), (QUOTA as usize, RACERS - QUOTA as usize));
    assert_eq!(
        store.audit_quota(tp_id, ctx(3)).await.expect("db").used,
        QUOTA
    );
}

pub async fn racing_template_additions_never_exceed_the_limit(store: Arc<dyn Store>) {
    let (tp_id, _, _) = seeded(&*store).await;
    const LIMIT: i64 = 50;
    let mut drafts = vec![];
    for i in 0..(RACERS + 44) {
        let d = store
            .create_draft(
                NewTemplate {
                    tp_id,
                    user_version: format!("{i}"),
                    user_desc: "d".into(),
                    blob_sha256: "2".repeat(64),
                    manifest: "{}".into(),
                },
                0,
            )
            .await
            .expect("draft");
        drafts.push(d.draft_id);
    }
    // The seed's template plus 44 more: 45 live, room for 5.
    for d in &drafts[..44] {
        store
            .add_template(tp_id, *d, Some("pre".into()), LIMIT, 1)
            .await
            .expect("db")
            .expect("room");
    }
    let mut tasks = vec![];
    for d in drafts[44..].iter().copied() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .add_template(tp_id, d, Some("race".into()), LIMIT, 2)
                .await
        }));
    }
    let (mut won, mut refused) = (0, 0);
    for t in tasks {
        match t.await.expect("task").expect("no storage error") {
            Ok(_) => won += 1,
            Err(LibraryRefusal::TemplateLimit) => refused += 1,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!((won, refused), (5, RACERS - 5));
    let (count, _) = store.list_templates(tp_id, 0, 100).await.expect("db");
    assert_eq!(count, LIMIT);
}

pub async fn staged_releases_and_the_runtime_view_agree(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let first = passed(&store, tp_id, app_id, t, 10).await;
    decide_ok(&store, app_id, Command::Release { package_id: first }, 11).await;
    let second = passed(&store, tp_id, app_id, t, 12).await;
    let stage = |percent| Command::StageRelease {
        package_id: second,
        percent,
    };
    decide_ok(&store, app_id, stage(10), 13).await;
    let view = store.runtime_view(app_id).await.expect("db").expect("app");
    assert_eq!(view.online.as_ref().map(|p| p.package_id), Some(first));
    assert_eq!(
        view.staged.as_ref().map(|(p, pc)| (p.package_id, *pc)),
        Some((second, 10))
    );
    let record = store
        .get_package(second)
        .await
        .expect("db")
        .expect("package");
    assert_eq!(record.staged_percent, Some(10));
    // Lowering is refused; raising lands.
    let lowered = store
        .execute(app_id, stage(5), ctx(14), None)
        .await
        .expect("db");
    assert!(lowered.is_err());
    decide_ok(&store, app_id, stage(50), 15).await;
    decide_ok(
        &store,
        app_id,
        Command::RevertStage { package_id: second },
        16,
    )
    .await;
    let view = store.runtime_view(app_id).await.expect("db").expect("app");
    assert_eq!(view.staged, None);
    decide_ok(&store, app_id, stage(20), 17).await;
    decide_ok(&store, app_id, Command::Release { package_id: second }, 18).await;
    let view = store.runtime_view(app_id).await.expect("db").expect("app");
    assert_eq!(view.online.as_ref().map(|p| p.package_id), Some(second));
    assert_eq!(view.staged, None);
    let record = store
        .get_package(second)
        .await
        .expect("db")
        .expect("package");
    assert_eq!(
        record.staged_percent, None,
        "a release ends the staged release"
    );
    assert!(store
        .runtime_view(AppId(999_999))
        .await
        .expect("db")
        .is_none());
}

pub async fn rollback_to_a_chosen_version_reaches_back_five_releases(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let mut released = vec![];
    for i in 0..7 {
        let now = 100 + i * 10;
        let id = passed(&store, tp_id, app_id, t, now).await;
        decide_ok(&store, app_id, Command::Release { package_id: id }, now + 1).await;
        released.push(id);
    }
    let online = released[6];
    // History, newest first: 5, 4, 3, 2, 1, 0 — the last five are 5..=1.
    let to = |target| Command::RollbackTo {
        package_id: online,
        target,
    };
    let too_old = store
        .execute(app_id, to(released[0]), ctx(200), None)
        .await
        .expect("db");
    assert_eq!(
        too_old.expect_err("the sixth is out of reach").errno,
        smartpkg_types::Errno::RollbackTargetInvalid
    );
    decide_ok(&store, app_id, to(released[1]), 201).await;
    decide_ok(
        &store,
        app_id,
        Command::FinishRollback { package_id: online },
        202,
    )
    .await;
    let view = store.runtime_view(app_id).await.expect("db").expect("app");
    assert_eq!(view.online.map(|p| p.package_id), Some(released[1]));
}

pub async fn racing_settings_edits_all_land(store: Arc<dyn Store>) {
    let (tp_id, app_id, _) = seeded(&*store).await;
    let mut tasks = vec![];
    for i in 0..RACERS {
        let store1 = store.clone();
        tasks.push(tokio::spawn(async move {
            store1
                .update_runtime_settings(
                    app_id,
                    Box::new(move |s| {
                        s.domains
                            .request_domain
                            .push(format!("https://d{i}.example.com"))
                    }),
                )
                .await
        }));
        let store2 = store.clone();
        tasks.push(tokio::spawn(async move {
            store2
                .update_tp_domains(
                    tp_id,
                    Box::new(move |d| d.socket_domain.push(format!("wss://s{i}.example.com"))),
                )
                .await
                .map(|d| d.map(|_| crate::RuntimeSettings::default()))
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("db").expect("exists");
    }
    let s = store
        .runtime_settings(app_id)
        .await
        .expect("db")
        .expect("app");
    assert_eq!(
        s.domains.request_domain.len(),
        RACERS,
        "every concurrent edit landed"
    );
    let d = store.tp_domains(tp_id).await.expect("db").expect("tp");
    assert_eq!(d.socket_domain.len(), RACERS);
    assert!(store
        .update_runtime_settings(AppId(999_999), Box::new(|s| s.paused = true))
        .await
        .expect("db")
        .is_none());
}

pub async fn host_apps_and_archives_round_trip(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let a = store
        .create_host_app("host a".into(), "hk_a".into(), "hash-a".into(), 5)
        .await
        .expect("host");
    let b = store
        .create_host_app("host b".into(), "hk_b".into(), "hash-b".into(), 6)
        .await
        .expect("host");
    assert_eq!(store.list_host_apps().await.expect("db").len(), 2);
    let found = store
        .host_app_by_key("hk_b".into())
        .await
        .expect("db")
        .expect("b");
    assert_eq!(
        (found.host_id, found.secret_hash.as_str()),
        (b.host_id, "hash-b")
    );
    assert!(store
        .host_app_by_key("nope".into())
        .await
        .expect("db")
        .is_none());
    assert!(store
        .set_app_hosts(app_id, vec![a.host_id])
        .await
        .expect("db"));
    let view = store.runtime_view(app_id).await.expect("db").expect("app");
    assert_eq!(view.hosts, vec![a.host_id]);
    assert!(matches!(
        store
            .set_app_hosts(app_id, vec![a.host_id, HostId(999)])
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .runtime_view(app_id)
            .await
            .expect("db")
            .expect("app")
            .hosts,
        vec![a.host_id]
    );
    assert!(!store
        .set_app_hosts(AppId(999_999), vec![])
        .await
        .expect("db"));
    // The first archive recorded for a package is the one kept.
    let id = built(&store, tp_id, app_id, t, 10).await;
    let first = store
        .set_package_archive(id, "a".repeat(64), 10)
        .await
        .expect("db");
    let second = store
        .set_package_archive(id, "b".repeat(64), 20)
        .await
        .expect("db");
    assert_eq!(first, ("a".repeat(64), 10));
    assert_eq!(second, first);
    let record = store.get_package(id).await.expect("db").expect("package");
    assert_eq!(
        record.archive_sha256.as_deref(),
        Some("a".repeat(64).as_str())
    );
}

pub async fn accounts_sessions_and_the_console_lists(store: Arc<dyn Store>) {
    use crate::{AppQuery, NewAccount, Role};
    let (tp_id, app_id, t) = seeded(&*store).await;
    assert_eq!(store.count_accounts().await.expect("db"), 0);
    let new = |name: &str, role| NewAccount {
        name: name.into(),
        role,
        password_hash: "$argon2id$x".into(),
        created_by: None,
        apps: vec![],
    };
    // Racing first sign-ups: exactly one is created, the others are told one exists.
    let racers = (0..10).map(|i| {
        let store = store.clone();
        let n = new(&format!("first{i}"), Role::Operator);
        tokio::spawn(async move { store.create_account(n, true, 5).await })
    });
    let mut won = 0;
    for r in racers {
        match r.await.expect("join").expect("db") {
            Ok(_) => won += 1,
            Err(refusal) => assert_eq!(refusal, crate::AccountRefusal::NotFirst),
        }
    }
    assert_eq!((won, store.count_accounts().await.expect("db")), (1, 1));
    let op = store
        .create_account(new("ops", Role::Operator), false, 10)
        .await
        .expect("db")
        .expect("created");
    assert_eq!(
        store
            .create_account(new("ops", Role::Reviewer), false, 11)
            .await
            .expect("db"),
        Err(crate::AccountRefusal::NameTaken),
        "a taken name is refused"
    );
    let owner = store
        .create_account(
            NewAccount {
                apps: vec![app_id],
                ..new("owner", Role::Owner)
            },
            false,
            12,
        )
        .await
        .expect("db")
        .expect("created");
    let (found, hash) = store
        .account_by_name("ops".into())
        .await
        .expect("db")
        .expect("found");
    assert_eq!(
        (found.account_id, found.role, hash.as_str()),
        (op.account_id, Role::Operator, "$argon2id$x")
    );
    assert!(store.owns_app(owner.account_id, app_id).await.expect("db"));
    assert!(!store.owns_app(op.account_id, app_id).await.expect("db"));

    // Sessions: found until they expire, gone once deleted.
    store
        .create_session("h1".into(), op.account_id, "c1".into(), 100, 200)
        .await
        .expect("db");
    let s = store
        .session("h1".into(), 150)
        .await
        .expect("db")
        .expect("live");
    assert_eq!((s.account.name.as_str(), s.csrf.as_str()), ("ops", "c1"));
    assert!(
        store.session("h1".into(), 200).await.expect("db").is_none(),
        "expired"
    );
    store.delete_session("h1".into()).await.expect("db");
    store
        .create_session("h2".into(), op.account_id, "c2".into(), 100, 200)
        .await
        .expect("db");
    store.delete_session("h2".into()).await.expect("db");
    assert!(
        store.session("h2".into(), 150).await.expect("db").is_none(),
        "signed out"
    );

    // The queue holds audited packages, oldest first; search finds by name part and by id.
    let id = built(&store, tp_id, app_id, t, 1_000).await;
    let submit = Command::SubmitAudit {
        package_id: id,
        request: AuditRequest {
            test_account: Some("tester".into()),
            ..AuditRequest::default()
        },
    };
    decide_ok(&store, app_id, submit, 2_000).await;
    let (waiting, page) = store.audit_queue(0, 10).await.expect("db");
    assert_eq!(waiting, 1);
    assert_eq!(
        (
            page[0].package_id,
            page[0].submitted_at_ms,
            page[0].test_account.as_deref()
        ),
        (id, 2_000, Some("tester"))
    );
    assert_eq!(page[0].template_version, "1");
    for name in ["Coffee 100%", "Tea shop"] {
        store
            .create_app(NewApp {
                name: name.into(),
                ..app(&format!("k-{name}"), None)
            })
            .await
            .expect("app");
    }
    let find = |text: &str, owned_by| AppQuery {
        text: text.into(),
        owned_by,
        tp_id: None,
    };
    let (rows, more) = store
        .search_apps(find("coffee", None), 0, 10)
        .await
        .expect("db");
    assert_eq!((rows.len(), more), (1, false));
    assert_eq!(rows[0].app.name, "Coffee 100%");
    let (rows, _) = store
        .search_apps(find("0%", None), 0, 10)
        .await
        .expect("db");
    assert_eq!(rows.len(), 1, "% is matched literally");
    let (rows, _) = store
        .search_apps(find(&app_id.to_string(), None), 0, 10)
        .await
        .expect("db");
    assert!(rows
        .iter()
        .any(|r| r.app.app_id == app_id && r.tp_name.is_some()));
    let (rows, more) = store.search_apps(find("", None), 0, 2).await.expect("db");
    assert_eq!((rows.len(), more), (2, true), "three apps, pages of two");
    let (rows, _) = store
        .search_apps(find("", Some(owner.account_id)), 0, 10)
        .await
        .expect("db");
    assert_eq!(
        rows.iter().map(|r| r.app.app_id).collect::<Vec<_>>(),
        vec![app_id]
    );
    let (n, tps) = store.list_tps(0, 10).await.expect("db");
    assert_eq!((n, tps[0].tp_id), (1, tp_id));
    let d = store.dashboard().await.expect("db");
    assert_eq!(
        (d.audits_waiting, d.oldest_waiting_since_ms, d.apps, d.tps),
        (1, Some(2_000), 3, 1)
    );
}

/// A reviewer account named `name`.
async fn reviewer(store: &dyn Store, name: &str) -> crate::Account {
    let new = crate::NewAccount {
        name: name.into(),
        role: crate::Role::Reviewer,
        password_hash: "h".into(),
        created_by: None,
        apps: vec![],
    };
    store
        .create_account(new, false, 0)
        .await
        .expect("db")
        .expect("created")
}

pub async fn every_decision_is_logged_with_who_took_it(store: Arc<dyn Store>) {
    use crate::Actor;
    let (tp_id, app_id, t) = seeded(&*store).await;
    let reviewer = reviewer(&*store, "rita").await;
    let id = built(&store, tp_id, app_id, t, 1_000).await;
    let submit = Command::SubmitAudit {
        package_id: id,
        request: AuditRequest::default(),
    };
    let as_tp = DecisionContext {
        actor: Actor::ThirdParty,
        ..ctx(2_000)
    };
    store
        .execute(app_id, submit, as_tp, None)
        .await
        .expect("db")
        .expect("submitted");
    let fail = Command::Decide {
        package_id: id,
        pass: false,
        reason: "logo blurred".into(),
    };
    let as_reviewer = DecisionContext {
        actor: Actor::Account(reviewer.account_id),
        ..ctx(3_000)
    };
    store
        .execute(app_id, fail, as_reviewer, None)
        .await
        .expect("db")
        .expect("decided");
    let log = store.app_log(app_id, 10).await.expect("db");
    let states: Vec<_> = log
        .iter()
        .map(|l| (l.from.map(PkgState::as_str), l.to.as_str(), l.actor))
        .collect();
    assert_eq!(
        states,
        vec![
            (
                Some("auditing"),
                "audit_failed",
                Actor::Account(reviewer.account_id)
            ),
            (Some("development"), "auditing", Actor::ThirdParty),
            (Some("building"), "development", Actor::System),
            (None, "building", Actor::System),
        ]
    );
    assert_eq!(log[0].actor_name.as_deref(), Some("rita"));
    assert_eq!(log[0].detail.as_deref(), Some("logo blurred"));
    assert!(
        log.iter()
            .all(|l| l.package_id == id && l.version == "1.0.0"),
        "{log:?}"
    );
    assert_eq!(
        store.recent_log(1).await.expect("db")[0].log_id,
        log[0].log_id
    );
}

pub async fn a_package_log_is_its_own_however_busy_its_app(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let first = built(&store, tp_id, app_id, t, 1_000).await;
    // Later packages of the same app push the first one's entries out of the app's newest.
    for n in 0..3 {
        built(&store, tp_id, app_id, t, 2_000 + n * 1_000).await;
    }
    let ids = |log: &[crate::LogEntry]| log.iter().map(|l| l.log_id).collect::<Vec<_>>();
    let whole = store.app_log(app_id, 1_000).await.expect("db");
    let own: Vec<_> = whole
        .iter()
        .filter(|l| l.package_id == first)
        .cloned()
        .collect();
    assert!(own.len() >= 2, "uploaded and built: {whole:?}");
    let newest = store.app_log(app_id, 3).await.expect("db");
    assert!(
        newest.iter().all(|l| l.package_id != first),
        "the app's newest entries are other packages': {newest:?}"
    );
    let log = store.package_log(first, 500).await.expect("db");
    assert_eq!(
        ids(&log),
        ids(&own),
        "every entry of the package, newest first"
    );
    assert_eq!(
        ids(&store.package_log(first, 1).await.expect("db")),
        ids(&own[..1]),
        "the limit keeps the newest"
    );
    assert!(
        store
            .package_log(PackageId(first.get() + 1_000), 10)
            .await
            .expect("db")
            .is_empty(),
        "no package, no entries"
    );
}

pub async fn a_changed_password_or_a_disabled_account_ends_its_sessions(store: Arc<dyn Store>) {
    use crate::AccountChange;
    let rita = reviewer(&*store, "rita").await;
    let id = rita.account_id;
    let other = reviewer(&*store, "otto").await;
    for (hash, account) in [
        ("mine", id),
        ("elsewhere", id),
        ("otto's", other.account_id),
    ] {
        store
            .create_session(hash.into(), account, "c".into(), 100, 1_000_000)
            .await
            .expect("db");
    }
    let live = |hash: &'static str| {
        let store = store.clone();
        async move { store.session(hash.into(), 200).await.expect("db").is_some() }
    };
    // A new password: every other session of the account ends, the one that changed it stays.
    let change = AccountChange {
        password_hash: Some("h2".into()),
        disabled: None,
    };
    let changed = store
        .update_account(id, change, Some("mine".into()), 300)
        .await
        .expect("db")
        .expect("exists");
    assert_eq!(changed.disabled_at_ms, None);
    let (_, hash) = store
        .account_by_name("rita".into())
        .await
        .expect("db")
        .expect("exists");
    assert_eq!(hash, "h2");
    assert!(live("mine").await, "the session that changed it stays");
    assert!(!live("elsewhere").await, "the account's other sessions end");
    assert!(live("otto's").await, "other accounts' sessions stay");

    // Disabled: no session at all, and a session created anyway is not found.
    let disable = AccountChange {
        password_hash: None,
        disabled: Some(true),
    };
    let disabled = store
        .update_account(id, disable.clone(), None, 400)
        .await
        .expect("db")
        .expect("exists");
    assert_eq!(disabled.disabled_at_ms, Some(400));
    assert!(!live("mine").await, "a disabled account's sessions end");
    store
        .create_session("late".into(), id, "c".into(), 500, 1_000_000)
        .await
        .expect("db");
    assert!(!live("late").await, "a disabled account has no session");
    let again = store
        .update_account(id, disable, None, 600)
        .await
        .expect("db")
        .expect("exists");
    assert_eq!(
        again.disabled_at_ms,
        Some(400),
        "disabled since the first time"
    );
    let (listed, _) = store
        .account_by_name("rita".into())
        .await
        .expect("db")
        .expect("exists");
    assert_eq!(listed.disabled_at_ms, Some(400));

    // Enabled again: a new session works.
    let enable = AccountChange {
        password_hash: None,
        disabled: Some(false),
    };
    let enabled = store
        .update_account(id, enable.clone(), None, 700)
        .await
        .expect("db")
        .expect("exists");
    assert_eq!(enabled.disabled_at_ms, None);
    store
        .create_session("back".into(), id, "c".into(), 800, 1_000_000)
        .await
        .expect("db");
    assert!(live("back").await);
    assert!(
        store
            .update_account(AccountId(id.get() + 1_000), enable, None, 900)
            .await
            .expect("db")
            .is_none(),
        "no such account"
    );
}

pub async fn wechat_identities_round_trip_and_find_their_owners(store: Arc<dyn Store>) {
    let new = tp("wx-a");
    let wechat = new.wechat.clone();
    let a = store.create_tp(new).await.expect("tp");
    assert_eq!(a.wechat, wechat, "the identity as created");
    let found = store
        .get_tp_by_component_appid(wechat.component_appid.clone())
        .await
        .expect("db");
    assert_eq!(found.map(|t| t.tp_id), Some(a.tp_id));
    assert_eq!(
        store
            .get_tp_by_component_appid("wx0000000000000000".into())
            .await
            .expect("db"),
        None
    );
    assert_eq!(
        store.component_secret_hash(a.tp_id).await.expect("db"),
        Some("hash of wx-a".into())
    );
    assert!(store
        .set_component_secret(a.tp_id, "new hash".into())
        .await
        .expect("db"));
    assert_eq!(
        store.component_secret_hash(a.tp_id).await.expect("db"),
        Some("new hash".into())
    );
    assert!(!store
        .set_component_secret(TpId(a.tp_id.get() + 1_000), "h".into())
        .await
        .expect("db"));
    let patched = store
        .update_tp(
            a.tp_id,
            TpPatch {
                wechat_message_url: Some("https://203.0.113.9/m/$APPID$".into()),
                ..Default::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(patched.wechat.message_url, "https://203.0.113.9/m/$APPID$");
    assert_eq!(
        patched.wechat.auth_event_url, wechat.auth_event_url,
        "a field not in the patch stays"
    );
    // A component appid is one third party's: a second with the same is refused.
    let twin = NewTp {
        wechat: wechat.clone(),
        ..tp("wx-b")
    };
    assert!(
        store.create_tp(twin).await.is_err(),
        "a duplicate component appid"
    );

    let x = store
        .create_app(app("wx-k", Some(a.tp_id)))
        .await
        .expect("app");
    assert!(
        x.wx_appid.starts_with("wx") && x.wx_appid.len() == 18,
        "{}",
        x.wx_appid
    );
    let read = store.get_app(x.app_id).await.expect("db").expect("app");
    assert_eq!(read.wx_appid, x.wx_appid);
    let by_wx = store
        .get_app_by_wx_appid(x.wx_appid.clone())
        .await
        .expect("db");
    assert_eq!(by_wx.map(|app| app.app_id), Some(x.app_id));
    let twin = NewApp {
        wx_appid: x.wx_appid.clone(),
        ..app("wx-k2", None)
    };
    assert!(
        store.create_app(twin).await.is_err(),
        "a duplicate wx appid"
    );
}

pub async fn audits_read_back_from_the_timeline_and_each_dialect_counts_its_own(
    store: Arc<dyn Store>,
) {
    use crate::{AuditVerdict, SpeedUp};
    use smartpkg_core::dialect::Dialect;
    let (tp_id, app_id, t) = seeded(&*store).await;
    assert_eq!(store.latest_submission(app_id).await.expect("db"), None);
    let id = built(&store, tp_id, app_id, t, 1).await;
    assert_eq!(
        store.audit_outcome(id).await.expect("db"),
        None,
        "never submitted"
    );
    let wechat = DecisionContext {
        dialect: Dialect::Wechat,
        default_quota: Some(5),
        ..ctx(2)
    };
    let submit = || Command::SubmitAudit {
        package_id: id,
        request: AuditRequest::default(),
    };
    store
        .execute(app_id, submit(), wechat, None)
        .await
        .expect("db")
        .expect("submitted");
    let o = store
        .audit_outcome(id)
        .await
        .expect("db")
        .expect("submitted");
    assert_eq!((o.submitted_at_ms, o.verdict), (2, AuditVerdict::Auditing));
    assert_eq!(store.latest_submission(app_id).await.expect("db"), Some(id));
    // The submission counts in WeChat's book only.
    let q = store.audit_quota(tp_id, wechat).await.expect("db");
    assert_eq!((q.limit, q.used), (Some(5), 1));
    let baidu = store.audit_quota(tp_id, ctx(3)).await.expect("db");
    assert_eq!(baidu.used, 0);
    // Speed-up: once per audit, within the third party's limit.
    assert_eq!(
        store
            .speed_up_audit(tp_id, id, Some(1), 0, 3)
            .await
            .expect("db"),
        SpeedUp::Recorded
    );
    assert_eq!(
        store
            .speed_up_audit(tp_id, id, Some(5), 0, 4)
            .await
            .expect("db"),
        SpeedUp::AlreadyAsked
    );
    assert_eq!(
        store
            .speed_up_audit(tp_id, PackageId(id.get() + 99), Some(1), 0, 4)
            .await
            .expect("db"),
        SpeedUp::QuotaUsed
    );
    assert_eq!(store.speed_ups_since(tp_id, 0).await.expect("db"), 1);
    assert_eq!(store.speed_ups_since(tp_id, 4).await.expect("db"), 0);
    // Withdrawn: counted, and the audit reads withdrawn; resubmitted and failed.
    decide_ok(&store, app_id, Command::Withdraw { package_id: id }, 5).await;
    assert_eq!(store.withdrawals_since(app_id, 0).await.expect("db"), 1);
    assert_eq!(store.withdrawals_since(app_id, 6).await.expect("db"), 0);
    let o = store
        .audit_outcome(id)
        .await
        .expect("db")
        .expect("submitted");
    assert_eq!(o.verdict, AuditVerdict::Withdrawn { at_ms: 5 });
    store
        .execute(
            app_id,
            submit(),
            DecisionContext {
                now_ms: 6,
                ..wechat
            },
            None,
        )
        .await
        .expect("db")
        .expect("resubmitted");
    let fail = Command::Decide {
        package_id: id,
        pass: false,
        reason: "名称过长".into(),
    };
    decide_ok(&store, app_id, fail, 7).await;
    let o = store
        .audit_outcome(id)
        .await
        .expect("db")
        .expect("submitted");
    assert_eq!(
        o.verdict,
        AuditVerdict::Failed {
            at_ms: 7,
            reason: "名称过长".into()
        }
    );
    let q = store.audit_quota(tp_id, wechat).await.expect("db");
    assert_eq!(q.used, 2);
}

/// One fleet's launches, device `first..first+n`, as one instance would aggregate them.
fn launches(
    package_id: PackageId,
    app_id: AppId,
    hour: i64,
    devices: std::ops::Range<u32>,
) -> crate::ReportCell {
    let mut sketch = smartpkg_core::sketch::Sketch::new();
    for d in devices.clone() {
        sketch.add(&format!("device-{d}"));
    }
    crate::ReportCell {
        package_id,
        app_id,
        hour,
        event: smartpkg_core::health::ReportEvent::Launched,
        events: u64::from(devices.end - devices.start),
        devices: sketch,
    }
}

pub async fn two_instances_flushing_one_fleet_count_as_one(store: Arc<dyn Store>) {
    let (tp_id, app_id, t) = seeded(&*store).await;
    let one = passed(&store, tp_id, app_id, t, 10).await;
    let two = passed(&store, tp_id, app_id, t, 11).await;
    // Package `one`: the whole fleet (3,000 devices) flushed by one instance.
    store
        .merge_reports(vec![launches(one, app_id, 100, 0..3000)])
        .await
        .expect("db");
    // Package `two`: the same fleet split over two instances that overlap (devices 1,000 to
    // 2,000 reported to both), each flushing twice, all at once.
    let parts = [0..1500, 1000..2000, 1500..3000, 2000..3000];
    let mut tasks = vec![];
    for range in parts {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .merge_reports(vec![launches(two, app_id, 100, range)])
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("every racing flush lands");
    }
    let launched = vec![smartpkg_core::health::ReportEvent::Launched];
    let whole = store
        .report_devices(one, launched.clone(), 100, 100)
        .await
        .expect("db");
    let split = store
        .report_devices(two, launched, 100, 100)
        .await
        .expect("db");
    assert_eq!(
        whole.count(),
        split.count(),
        "the same devices, however split"
    );
    assert!((2940..=3060).contains(&split.count()), "{}", split.count());
    let hours = store.report_hours(app_id, 0, 1000).await.expect("db");
    let of = |id| {
        hours
            .iter()
            .find(|h| h.package_id == id)
            .map(|h| (h.events, h.devices))
    };
    assert_eq!(of(one).map(|h| h.0), Some(3000));
    // Events add up: what was sent to both instances counts twice.
    assert_eq!(of(two).map(|h| h.0), Some(5000));
    assert_eq!(of(one).map(|h| h.1), of(two).map(|h| h.1));
    // Hours outside the range read nothing; the sweep drops what is past retention.
    assert!(store
        .report_hours(app_id, 101, 200)
        .await
        .expect("db")
        .is_empty());
    let policy = SweepPolicy {
        used_credential_retention_ms: i64::MAX,
        retired_package_retention_ms: i64::MAX,
        report_retention_ms: 0,
    };
    let swept = store.sweep(200 * 3_600_000, policy).await.expect("db");
    assert_eq!(swept.report_hours, 2);
    assert!(store
        .report_hours(app_id, 0, 1000)
        .await
        .expect("db")
        .is_empty());
}

pub async fn a_staged_plan_reads_back_and_its_halt_is_announced_once(store: Arc<dyn Store>) {
    use smartpkg_core::stage::{HaltFigures, PlanGate, PlanStatus, StagePlan};
    let (tp_id, app_id, t) = seeded(&*store).await;
    let first = passed(&store, tp_id, app_id, t, 10).await;
    decide_ok(&store, app_id, Command::Release { package_id: first }, 11).await;
    let second = passed(&store, tp_id, app_id, t, 12).await;
    let gate = PlanGate {
        min_devices: 10,
        step_min_s: 0,
        alpha_ppm: 1000,
        min_excess_bp: 100,
    };
    let plan = StagePlan::new(vec![5, 50, 100], true, gate, 13).expect("plan");
    decide_ok(
        &store,
        app_id,
        Command::StartPlan {
            package_id: second,
            plan: plan.clone(),
        },
        13,
    )
    .await;
    let staged = store.staged_plans().await.expect("db");
    assert_eq!(staged.len(), 1);
    assert_eq!(
        (
            staged[0].package_id,
            staged[0].online,
            staged[0].staged_percent
        ),
        (second, Some(first), 5)
    );
    assert_eq!(staged[0].plan, Some(plan));
    let figures = HaltFigures {
        new: smartpkg_core::health::Sample {
            launched: 600,
            failed: 40,
        },
        old: smartpkg_core::health::Sample {
            launched: 600,
            failed: 2,
        },
        p_value: "1.0e-9".into(),
        at_ms: 14,
    };
    let halt = Command::HaltStage {
        package_id: second,
        from_step: 0,
        figures: figures.clone(),
    };
    // Two schedulers judging the same step: one halt lands, the other is refused.
    let (a, b) = tokio::join!(
        store.execute(app_id, halt.clone(), ctx(14), None),
        store.execute(app_id, halt.clone(), ctx(14), None)
    );
    let landed = [a.expect("db"), b.expect("db")]
        .iter()
        .filter(|d| d.is_ok())
        .count();
    assert_eq!(landed, 1);
    let record = store
        .get_package(second)
        .await
        .expect("db")
        .expect("package");
    assert_eq!(record.staged_percent, Some(0));
    let kept = record.stage_plan.expect("plan kept");
    assert_eq!(
        (kept.status, kept.halt),
        (PlanStatus::Halted, Some(figures))
    );
    // One push for the one halt, to the third party.
    let deliveries = store
        .list_deliveries(Some(tp_id), None, None, 100)
        .await
        .expect("db");
    let halts = deliveries
        .iter()
        .filter(|d| d.event.event == smartpkg_types::push::GRAY_HALTED)
        .count();
    assert_eq!(halts, 1);
    // The timeline says why.
    let log = store.package_log(second, 50).await.expect("db");
    assert!(
        log.iter()
            .any(|l| l.detail.as_deref().unwrap_or("").contains("halted at 5%")),
        "{log:?}"
    );
}
