//! The smartpkg platform server.
//!
//! - [`baidu`]: the API third parties call, wire-compatible with `openapi.baidu.com`.
//! - [`admin`]: the operator's API (`/admin/v1`), ours.
//! - [`workers`]: the job runner (builds, ends of rollbacks, automatic audits).
//!
//! [`start`] opens storage, binds the listener and runs everything until shut down.

pub mod admin;
pub mod application;
pub mod baidu;
pub mod clock;
pub mod config;
pub mod consent;
pub mod console;
pub mod demo;
pub mod job_signal;
pub mod metrics;
pub mod owner;
pub mod params;
pub mod push;
pub mod qr;
pub mod ratelimit;
pub mod reports;
pub mod runtime;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod web;
pub mod wechat;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use smartpkg_store::StoreError;
use tokio::sync::watch;

pub use config::{AuditMode, Settings};
pub use state::{AppState, Shared};

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
    #[error("{0}")]
    Tls(#[from] serve::TlsError),
    #[error("TLS needs both tls_cert and tls_key (--tls-cert FILE --tls-key FILE)")]
    TlsHalf,
}

/// Keeps a caller's `X-Request-Id` only when it is sane (short, letters, digits and dashes),
/// so a log line or an answer never carries what a client chose to smuggle in.
async fn sane_request_id(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let sane = req.headers().get(REQUEST_ID).is_none_or(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 64 && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    });
    if !sane {
        req.headers_mut().remove(REQUEST_ID);
    }
    next.run(req).await
}

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

#[derive(Clone, Copy)]
struct RandomRequestId;

impl tower_http::request_id::MakeRequestId for RandomRequestId {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = hex::encode(rand::random::<[u8; 8]>());
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// A span per request carrying its id; only the path is recorded, since query strings carry
/// access tokens. Values are recorded with `Debug`, which escapes control characters.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", request_id = ?id, method = ?req.method(), path = ?req.uri().path())
}

/// `GET /metrics`: the counters, plus gauges read from the store at scrape time.
async fn render_metrics(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    let now = clock::now_ms();
    if let Ok(targets) = s.store.push_targets().await {
        let held = targets
            .iter()
            .filter(|t| t.hold_until_ms.is_some_and(|u| u > now))
            .count();
        s.metrics
            .gauge("smartpkg_push_targets_on_hold", &[])
            .set(held as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

/// The gateway's path prefixes: `/rest/2.0/` (the API), `/file/2.0/` (Baidu's uploads of
/// images and files) and `/public/2.0/` (the TP token).
const GATEWAY_PREFIXES: [&str; 3] = ["/rest/2.0/", "/file/2.0/", "/public/2.0/"];

/// What an unserved path under the gateway's prefixes answers (spec §8): the gateway's error
/// shape, so SDKs report a clear error instead of a transport failure. Anything else is a
/// plain 404.
async fn unknown_method(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    if GATEWAY_PREFIXES.iter().any(|p| uri.path().starts_with(p)) {
        axum::Json(smartpkg_types::GatewayError::unsupported_method()).into_response()
    } else {
        axum::http::StatusCode::NOT_FOUND.into_response()
    }
}

/// Counts every answer by route (the matched pattern, never the raw path, so the label set
/// stays small) and times it.
pub async fn track_http(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let m = &state.metrics;
    m.counter(
        "smartpkg_http_requests_total",
        &[("route", &route), ("method", &method), ("status", &status)],
    )
    .increment(1);
    m.observe(
        "smartpkg_http_request_duration_seconds",
        &[("route", &route)],
        start.elapsed(),
    );
    resp
}

pub fn router(state: AppState, runtime_cache: Arc<runtime::Runtime>) -> Router {
    // Built once: the description does not change while the server runs.
    let openapi: Arc<str> = admin::openapi_json().into();
    Router::new()
        .merge(baidu::routes())
        .merge(wechat::routes())
        .merge(runtime::routes(state.clone(), runtime_cache))
        .nest("/admin/v1", admin::routes(state.clone()))
        .nest("/console", console::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi/admin-v1.json",
            get(move || {
                let doc = openapi.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        )
        .route("/metrics", get(render_metrics))
        .fallback(unknown_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track_http,
        ))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn(sane_request_id))
                .layer(tower_http::request_id::SetRequestIdLayer::new(
                    REQUEST_ID,
                    RandomRequestId,
                ))
                .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
                .layer(tower_http::request_id::PropagateRequestIdLayer::new(
                    REQUEST_ID,
                ))
                // A backstop above every route's own limit (the routes answer in their own
                // shape first: Baidu's envelope, the admin API's error).
                .layer(tower_http::limit::RequestBodyLimitLayer::new(
                    state
                        .settings
                        .max_body_bytes
                        .max(state.settings.max_template_bytes as usize)
                        .saturating_add(1),
                ))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    std::time::Duration::from_millis(state.settings.request_timeout_ms),
                )),
        )
        .with_state(state)
}

/// A started server: where it listens and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub state: AppState,
    /// The runtime channel's cache (the runtime benchmark reads its footprint).
    pub runtime_cache: Arc<runtime::Runtime>,
    /// True when the admin token was generated by this start (the caller prints it once).
    pub admin_token_generated: bool,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: tokio::task::JoinHandle<()>,
    closer: smartpkg_storage::Closer,
}

impl Running {
    /// Stops accepting, lets requests and running jobs finish, and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.workers.await;
        self.closer.close().await;
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
        self.closer.close().await;
        served
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Creates the data directory owner-only (0700), or tightens an existing one: it holds the
/// database with every secret, and the admin token.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens storage under the data directory, binds, and starts the HTTP server and workers.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    private_dir(&settings.data_dir)?;
    let (admin_token, admin_token_generated) =
        secrets::admin_token(&settings.data_dir, settings.admin_token.as_deref())?;
    let opened = smartpkg_storage::open(
        settings.database_url.as_deref(),
        &settings.data_dir,
        smartpkg_storage::PoolSettings {
            max_connections: settings.database_max_connections,
        },
    )
    .await?;
    tracing::info!(database = %opened.description, "storage open");
    if opened.resumed_jobs > 0 {
        tracing::info!(
            resumed = opened.resumed_jobs,
            "resumed jobs left leased by a previous run"
        );
    }
    let closer = opened.closer;
    let (announce, announcements) = match opened.peers {
        Some(p) => (Some(p.announce), Some(p.announcements)),
        None => (None, None),
    };
    let jobs_ready = Arc::new(job_signal::JobSignal::new(announce));
    let (shutdown, rx) = watch::channel(false);
    if let Some(mut announcements) = announcements {
        let signal = jobs_ready.clone();
        let mut stopping = shutdown.subscribe();
        // Ends with the server: dropping `announcements` is what ends the listener (and
        // frees its connection), and the listener holds the channel's sender, so waiting
        // for the channel to close would wait for ever.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = announcements.recv() => match got {
                        Some(lanes) => signal.wake_local(lanes),
                        None => return,
                    },
                    _ = stopping.wait_for(|stop| *stop) => return,
                }
            }
        });
    }
    let blob_settings = settings.blobs().unwrap_or_default();
    let blobs = smartpkg_storage::open_blobs(&blob_settings, &settings.data_dir)?;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(serve::tls_config(cert, key)?),
        (None, None) => None,
        _ => return Err(StartError::TlsHalf),
    };
    let descriptors = serve::raise_descriptor_limit();
    let max_connections = serve::effective_max_connections(settings.max_connections, descriptors);
    let limits = serve::Limits {
        max_connections,
        max_per_client: serve::effective_max_per_client(
            settings.max_connections_per_client,
            max_connections,
        ),
        header_read_timeout: std::time::Duration::from_millis(settings.header_read_timeout_ms),
        idle_timeout: std::time::Duration::from_millis(settings.idle_timeout_ms),
        body_grace: std::time::Duration::from_millis(settings.body_read_timeout_ms),
        body_min_rate: settings.body_min_bytes_per_s,
        shutdown_grace: std::time::Duration::from_millis(settings.shutdown_grace_ms),
    };
    tracing::debug!(
        ?descriptors,
        max_connections = limits.max_connections,
        max_per_client = limits.max_per_client,
        "connection limits"
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let public_url: Arc<str> = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"))
        .into();
    // `settings` is read by the fields above its own, then moved into the state.
    let state = AppState::new(Shared {
        store: opened.store,
        blobs,
        admin_token: admin_token.into(),
        jobs_ready: jobs_ready.clone(),
        verified_templates: Arc::default(),
        push_client: push::client(
            settings.allow_private_targets,
            settings.push_proxy.as_deref(),
        )
        .map_err(|e| StartError::Io(std::io::Error::other(e)))?,
        metrics: Arc::default(),
        public_url,
        guards: Arc::new(owner::Guards::new(
            settings.owner_attempts_per_app,
            settings.owner_attempts_per_client,
            std::time::Duration::from_secs(settings.owner_lockout_s),
        )),
        console_guards: Arc::new(owner::Guards::new(
            settings.console_attempts_per_account,
            settings.owner_attempts_per_client,
            std::time::Duration::from_secs(settings.owner_lockout_s),
        )),
        admin_guard: Arc::new(owner::Throttle::new(
            settings.owner_attempts_per_client,
            std::time::Duration::from_secs(settings.owner_lockout_s),
            100_000,
        )),
        template_slots: Arc::new(tokio::sync::Semaphore::new(
            settings.template_upload_concurrency,
        )),
        write_limits: Arc::new(ratelimit::WriteLimits::new(&settings)),
        app_caches: state::AppCaches::default(),
        archive_making: tokio::sync::Mutex::new(()),
        reports: Default::default(),
        settings: Arc::new(settings),
    });
    let runtime_cache = Arc::new(runtime::Runtime::new(std::time::Duration::from_millis(
        state.settings.runtime_cache_ttl_ms,
    )));
    state.app_caches.register(runtime_cache.clone());
    let app = router(state.clone(), runtime_cache.clone());
    let server = tokio::spawn(serve::serve(listener, app, limits, tls, rx));
    let workers = tokio::spawn(workers::run(state.clone(), shutdown.subscribe()));
    Ok(Running {
        addr,
        scheme,
        state,
        runtime_cache,
        admin_token_generated,
        shutdown,
        server,
        workers,
        closer,
    })
}
