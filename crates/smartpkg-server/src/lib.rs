//! The smartpkg platform server.
//!
//! - [`baidu`]: the API third parties call, wire-compatible with `openapi.baidu.com`.
//! - [`admin`]: the operator's API (`/admin/v1`), ours.
//! - [`workers`]: the job runner (builds, ends of rollbacks, automatic audits).
//!
//! [`start`] opens storage, binds the listener and runs everything until shut down.

pub mod admin;
pub mod baidu;
pub mod clock;
pub mod config;
pub mod demo;
pub mod push;
pub mod secrets;
pub mod workers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use smartpkg_core::archive::TemplateManifest;
use smartpkg_core::lifecycle::{Command, Policy};
use smartpkg_store::blobs::{BlobStore, LocalBlobs};
use smartpkg_store::sqlite::SqliteStore;
use smartpkg_store::{Decision, DecisionContext, Store, StoreError};
use tokio::sync::{watch, Notify};

pub use config::{AuditMode, Settings};

/// Everything a handler or worker needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: Arc<Settings>,
    pub admin_token: Arc<str>,
    /// Wakes the job runner when a decision enqueued work.
    pub jobs_ready: Arc<Notify>,
    /// Templates whose blob was read and checked against its hash in this process: blobs are
    /// immutable, so one check per process is enough and builds skip re-hashing megabytes.
    pub verified_templates: Arc<Mutex<HashMap<String, Arc<TemplateManifest>>>>,
    /// The HTTP client of pushes: no redirects, a resolver that enforces the target rules.
    pub push_client: reqwest::Client,
    pub push_metrics: Arc<push::PushMetrics>,
    /// Where this server is reached from outside (`public_url`, or the listening address).
    pub public_url: Arc<str>,
}

impl AppState {
    /// Decides `cmd` through the store and wakes the job runner when the decision left work
    /// for it (a build, the end of a rollback, an automatic audit, a push).
    pub async fn execute(
        &self,
        app_id: i64,
        cmd: Command,
        job: Option<i64>,
    ) -> Result<Decision, StoreError> {
        let decision = self
            .store
            .execute(app_id, cmd, self.decision_context(), job)
            .await?;
        if let Ok(plan) = &decision {
            if !plan.jobs.is_empty() || plan.audit_decision.is_some() {
                self.jobs_ready.notify_one();
            }
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

    pub fn decision_context(&self) -> DecisionContext {
        let now_ms = clock::now_ms();
        let s = &self.settings;
        DecisionContext {
            now_ms,
            week_start_ms: clock::week_start_ms(now_ms, s.utc_offset),
            default_quota: Some(s.audit_quota_per_week).filter(|q| *q >= 0),
            policy: Policy {
                build_delay_ms: s.build_delay_ms,
                rollback_delay_ms: s.rollback_delay_ms,
                auto_audit_delay_ms: match s.audit_mode {
                    AuditMode::Auto => Some(s.auto_audit_delay_ms),
                    AuditMode::Manual => None,
                },
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported database URL {0:?}: this build stores data in embedded SQLite only (leave --database-url unset); PostgreSQL support is planned")]
    UnsupportedDatabase(String),
}

/// Gives every request an id (the caller's `X-Request-Id` when it is sane, else a new one),
/// runs it inside a span carrying that id, and returns the id in the answer, so a log line
/// can be traced to the call. Only the path is recorded: query strings carry access tokens.
async fn request_id(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string);
    let id = given.unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(baidu::routes())
        .nest("/admin/v1", admin::routes(state.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi/admin-v1.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    admin::OPENAPI,
                )
            }),
        )
        .route(
            "/metrics",
            get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        s.push_metrics.render(),
                    )
                },
            ),
        )
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// A started server: where it listens and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    /// True when the admin token was generated by this start (the caller prints it once).
    pub admin_token_generated: bool,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests and running jobs finish, and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.workers.await;
    }

    /// Runs until the server task ends (only on error or once shutdown is sent), then lets
    /// the jobs in flight finish.
    pub async fn wait(self) -> std::io::Result<()> {
        let served = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        let _ = self.shutdown.send(true);
        let _ = self.workers.await;
        served
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens storage under the data directory, binds, and starts the HTTP server and workers.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    if let Some(url) = &settings.database_url {
        if !url.starts_with("sqlite:") {
            return Err(StartError::UnsupportedDatabase(url.clone()));
        }
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    let (admin_token, admin_token_generated) =
        secrets::admin_token(&settings.data_dir, settings.admin_token.as_deref())?;
    let store = SqliteStore::open(settings.database_path())?;
    // One process owns the SQLite file (SqliteStore holds its lock), so every lease still
    // recorded belongs to a process that died: its jobs can run again right away.
    let released = store.release_leases().await?;
    if released > 0 {
        tracing::info!(released, "resumed jobs left leased by a previous run");
    }
    let blobs = LocalBlobs::open(settings.data_dir.join("blobs"))?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let settings_allow_private = settings.allow_private_targets;
    let public_url: Arc<str> = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .into();
    let state = AppState {
        store: Arc::new(store),
        blobs: Arc::new(blobs),
        settings: Arc::new(settings),
        admin_token: admin_token.into(),
        jobs_ready: Arc::new(Notify::new()),
        verified_templates: Arc::default(),
        push_client: push::client(settings_allow_private)
            .map_err(|e| StartError::Io(std::io::Error::other(e)))?,
        push_metrics: Arc::default(),
        public_url,
    };
    let (shutdown, mut rx) = watch::channel(false);
    let app = router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    let workers = tokio::spawn(workers::run(state.clone(), shutdown.subscribe()));
    Ok(Running {
        addr,
        state,
        admin_token_generated,
        shutdown,
        server,
        workers,
    })
}
