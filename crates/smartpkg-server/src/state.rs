//! The state every face and worker shares: the store, blobs, settings, throttles and the
//! hooks through which a change reaches the caches that copy it. It sits below the faces:
//! it names none of them (a face that keeps a cache registers it here, as an [`AppCache`]).

use smartpkg_core::ids::AppId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use smartpkg_core::archive::TemplateManifest;
use smartpkg_core::lifecycle::{Command, Policy};
use smartpkg_store::blobs::BlobStore;
use smartpkg_store::{Decision, DecisionContext, Store, StoreError};

use crate::config::{AuditMode, Settings};
use crate::{clock, job_signal, metrics, owner, ratelimit, reports, secrets};
use smartpkg_core::dialect::Dialect;

/// Something that keeps copies of mini programs' state (the runtime channel's answers) and
/// must drop a mini program's copy when it changes.
pub trait AppCache: Send + Sync {
    fn forget(&self, app_id: i64);
}

/// The caches registered by the faces that keep them, told of every change.
#[derive(Default)]
pub struct AppCaches(RwLock<Vec<Arc<dyn AppCache>>>);

impl AppCaches {
    pub fn register(&self, cache: Arc<dyn AppCache>) {
        if let Ok(mut v) = self.0.write() {
            v.push(cache);
        }
    }

    /// A mini program changed (a decision, its settings, its host apps): every copy goes.
    pub fn app_changed(&self, app_id: i64) {
        if let Ok(v) = self.0.read() {
            for c in v.iter() {
                c.forget(app_id);
            }
        }
    }
}

/// Everything a handler or worker needs, cheap to clone: one reference count, since every
/// request clones it (its middleware and its handler) and a struct of a dozen `Arc`s made
/// each clone a dozen contended atomic operations (~6% of the runtime hot path's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: Arc<Settings>,
    pub admin_token: Arc<str>,
    /// Wakes the job runner when a decision enqueued work.
    pub jobs_ready: Arc<job_signal::JobSignal>,
    /// Templates whose blob was read and checked against its hash in this process: blobs are
    /// immutable, so one check per process is enough and builds skip re-hashing megabytes.
    pub verified_templates: Arc<Mutex<HashMap<String, Arc<TemplateManifest>>>>,
    /// The HTTP client of pushes: no redirects, a resolver that enforces the target rules.
    pub push_client: reqwest::Client,
    pub metrics: Arc<metrics::Metrics>,
    /// Where this server is reached from outside (`public_url`, or the listening address).
    pub public_url: Arc<str>,
    /// Throttles of wrong owner credentials on the authorization page.
    pub guards: Arc<owner::Guards>,
    /// Throttles of wrong console passwords (per account name, per client address).
    pub console_guards: Arc<owner::Guards>,
    /// Wrong admin tokens per client address.
    pub admin_guard: Arc<owner::Throttle>,
    /// Template archives received and inspected at once: each holds its archive in memory.
    pub template_slots: Arc<tokio::sync::Semaphore>,
    /// Write calls per mini program and per third party on the Baidu API.
    pub write_limits: Arc<ratelimit::WriteLimits>,
    /// What keeps copies of mini programs' state and must drop one when it changes.
    pub app_caches: AppCaches,
    /// One package archive is made at a time: it is rare (once per package) and holds a
    /// package in memory while it is hashed.
    pub archive_making: tokio::sync::Mutex<()>,
    /// Devices' reports aggregated since the last flush.
    pub reports: reports::Reports,
}

impl AppState {
    /// Decides `cmd` through the store and wakes the job runner when the decision left work
    /// for it (a build, the end of a rollback, an automatic audit, a push).
    pub async fn execute(
        &self,
        app_id: i64,
        cmd: Command,
        actor: smartpkg_store::Actor,
        job: Option<smartpkg_store::JobRef>,
    ) -> Result<Decision, StoreError> {
        self.execute_in(Dialect::Baidu, app_id, cmd, actor, job)
            .await
    }

    /// As [`AppState::execute`], for a command that came through `dialect`'s API (a
    /// submission draws on that dialect's audit quota).
    pub async fn execute_in(
        &self,
        dialect: Dialect,
        app_id: i64,
        cmd: Command,
        actor: smartpkg_store::Actor,
        job: Option<smartpkg_store::JobRef>,
    ) -> Result<Decision, StoreError> {
        let ctx = self.decision_context_in(dialect, actor);
        let decision = self.store.execute(AppId(app_id), cmd, ctx, job).await?;
        if let Ok(plan) = &decision {
            self.jobs_ready.notify(job_signal::lanes_of(plan));
            // A release, a staged release, a rollback…: devices see it at their next check.
            self.app_caches.app_changed(app_id);
        }
        Ok(decision)
    }

    /// A fresh app access token and refresh token (plain text, for the caller to hand out) and
    /// what the store keeps of them.
    pub fn new_token_pair(&self, now_ms: i64) -> (String, String, smartpkg_store::TokenPair) {
        let access = secrets::access_token("45");
        let refresh = secrets::access_token("46");
        let secs = |s: u64| now_ms.saturating_add((s as i64).saturating_mul(1000));
        let pair = smartpkg_store::TokenPair {
            access_hash: secrets::sha256_hex(&access),
            refresh_hash: secrets::sha256_hex(&refresh),
            access_expires_at_ms: secs(self.settings.app_token_ttl_s),
            refresh_expires_at_ms: secs(self.settings.refresh_token_ttl_s),
        };
        (access, refresh, pair)
    }

    /// The time, settings and actor a decision is taken under.
    pub fn decision_context(&self, actor: smartpkg_store::Actor) -> DecisionContext {
        self.decision_context_in(Dialect::Baidu, actor)
    }

    /// A decision taken through `dialect`'s API: a submission draws on that dialect's quota
    /// (Baidu's per week, WeChat's per month).
    pub fn decision_context_in(
        &self,
        dialect: Dialect,
        actor: smartpkg_store::Actor,
    ) -> DecisionContext {
        let now_ms = clock::now_ms();
        let s = &self.settings;
        let (quota_since_ms, quota) = match dialect {
            Dialect::Baidu => (
                clock::week_start_ms(now_ms, s.utc_offset),
                s.audit_quota_per_week,
            ),
            Dialect::Wechat => (
                clock::month_start_ms(now_ms, s.utc_offset),
                s.wechat_audit_quota_per_month,
            ),
        };
        DecisionContext {
            now_ms,
            quota_since_ms,
            default_quota: Some(quota).filter(|q| *q >= 0),
            dialect,
            policy: Policy {
                build_delay_ms: s.build_delay_ms,
                rollback_delay_ms: s.rollback_delay_ms,
                auto_audit_delay_ms: match s.audit_mode {
                    AuditMode::Auto => Some(s.auto_audit_delay_ms),
                    AuditMode::Manual => None,
                },
            },
            actor,
        }
    }
}
