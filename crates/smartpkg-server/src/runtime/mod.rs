//! The runtime channel, `/runtime/v1` (ours; docs/runtime.md): host apps ask what each mini
//! program should run on a device and download it.
//!
//! - `POST /runtime/v1/update-check`: one device, many mini programs — the hot path.
//! - `GET /runtime/v1/apps/{app_id}`: one mini program, with an ETag (304 when unchanged).
//! - `GET /runtime/v1/packages/{sha256}`: the package archive, immutable, with ranges.
//!
//! Host apps authenticate with HTTP Basic (host key, host secret). What a mini program serves
//! is read once and kept for `runtime_cache_ttl_ms`; this instance's own changes drop it at
//! once ([`Runtime::forget`]).

mod download;
mod reports;

use smartpkg_core::ids::AppId;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Digest;
use smartpkg_core::runtime::{below, bucket, in_stage};
use smartpkg_store::{RuntimePackage, RuntimeView};

use crate::secrets;
use crate::state::AppState;

/// Mini programs one update check may ask about.
pub const MAX_APPS_PER_CHECK: usize = 100;
const MAX_DEVICE_ID: usize = 128;
const MAX_VERSION: usize = 32;

/// The face's routes over the shared state and this face's cache.
pub fn routes(state: AppState, cache: Arc<Runtime>) -> Router<AppState> {
    Router::new()
        .route("/runtime/v1/update-check", post(update_check))
        .route("/runtime/v1/apps/{app_id}", get(one_app))
        .route("/runtime/v1/packages/{sha256}", get(download::package))
        .route("/runtime/v1/reports", post(reports::reports))
        .with_state(Ctx(Arc::new(CtxInner { app: state, cache })))
}

/// What the runtime's handlers get: the shared state and the face's own cache, behind one
/// reference count (every request clones it).
#[derive(Clone)]
pub struct Ctx(Arc<CtxInner>);

pub struct CtxInner {
    app: AppState,
    cache: Arc<Runtime>,
}

impl Ctx {
    /// This face's cache.
    fn rt(&self) -> &Runtime {
        &self.0.cache
    }
}

impl std::ops::Deref for Ctx {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0.app
    }
}

/// A package as devices get it: its archive is made, and its `package` object is written
/// once, here, rather than on every check.
#[derive(Debug)]
struct Served {
    sha256: String,
    json: Box<RawValue>,
}

/// One mini program, ready to answer devices.
#[derive(Debug)]
struct Prepared {
    paused: bool,
    min_runtime_version: String,
    hosts: Vec<i64>,
    /// The packages devices may report on: the online one and the staged one.
    online_id: Option<i64>,
    staged_id: Option<i64>,
    online: Result<Option<Served>, String>,
    staged: Result<Option<(Served, i64)>, String>,
    /// The `settings` object, written once.
    settings: Box<RawValue>,
    /// A digest of everything above: with the kind of answer, it names the answer's bytes
    /// (the single-app form's ETag) without writing them.
    fingerprint: u64,
}

/// The settings a device obeys. Empty lists and an empty minimum are left out: millions of
/// answers carry this object, and most mini programs set few of them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceSettings {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_domain: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upload_domain: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub download_domain: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub socket_domain: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub web_view_domain: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub min_runtime_version: String,
}

/// A host app as the cache keeps it.
#[derive(Debug, Clone)]
struct Host {
    host_id: i64,
    secret_hash: String,
}

/// What this instance read of one mini program (None: unknown), and when.
type Entry = (Instant, Arc<Option<Prepared>>);

/// The runtime channel's state in this process.
pub struct Runtime {
    ttl: Duration,
    // Fx hashing: the keys are ids and credentials already checked, hashed on every request
    // of the hot path; flooding them is bounded by the size limits below.
    apps: RwLock<FxHashMap<i64, Entry>>,
    hosts: RwLock<HashMap<String, (Instant, Option<Host>)>>,
    /// `Authorization` values already verified, to their host app: a device's next check
    /// skips decoding and hashing its credentials again.
    verified: RwLock<FxHashMap<String, (Instant, i64)>>,
    /// Archives known to be packages' (downloads of anything else are refused).
    archives: RwLock<HashSet<String>>,
    /// The reports' counters (accepted, ignored), registered on first use.
    report_counters: std::sync::OnceLock<(metrics::Counter, metrics::Counter)>,
}

impl crate::state::AppCache for Runtime {
    fn forget(&self, app_id: i64) {
        Runtime::forget(self, app_id);
    }
}

impl Runtime {
    pub fn new(ttl: Duration) -> Runtime {
        Runtime {
            ttl,
            apps: RwLock::default(),
            hosts: RwLock::default(),
            verified: RwLock::default(),
            archives: RwLock::default(),
            report_counters: std::sync::OnceLock::new(),
        }
    }

    /// Drops what this instance read of a mini program: its next update check reads again.
    pub fn forget(&self, app_id: i64) {
        if let Ok(mut m) = self.apps.write() {
            m.remove(&app_id);
        }
    }

    /// What is held and fresh for each of `app_ids` (None where it must be read), under one
    /// read of the map and one look at the clock: an update check asks for up to 100, and
    /// the lock's counter is a cache line every worker thread writes.
    fn cached(&self, app_ids: &[i64]) -> Vec<Option<Arc<Option<Prepared>>>> {
        let Ok(m) = self.apps.read() else {
            return vec![None; app_ids.len()];
        };
        let now = Instant::now();
        app_ids
            .iter()
            .map(|id| {
                let (at, p) = m.get(id)?;
                (now.duration_since(*at) < self.ttl).then(|| p.clone())
            })
            .collect()
    }

    /// Mini programs held, and the bytes they take (the map's slots, each entry and what it
    /// owns on the heap; the set of known archives): the benchmark's memory figure.
    pub fn footprint(&self) -> (usize, usize) {
        use std::mem::size_of;
        let served =
            |s: &Served| s.sha256.capacity() + s.json.get().len() + size_of::<Box<RawValue>>();
        let Ok(m) = self.apps.read() else {
            return (0, 0);
        };
        let mut bytes = m.capacity() * (size_of::<i64>() + size_of::<Entry>() + 1);
        for (_, p) in m.values() {
            bytes += size_of::<Option<Prepared>>() + 2 * size_of::<usize>();
            if let Some(p) = p.as_ref() {
                bytes += p.min_runtime_version.capacity()
                    + p.hosts.capacity() * size_of::<i64>()
                    + p.settings.get().len();
                if let Ok(Some(s)) = &p.online {
                    bytes += served(s);
                }
                if let Ok(Some((s, _))) = &p.staged {
                    bytes += served(s);
                }
            }
        }
        if let Ok(a) = self.archives.read() {
            bytes += a.capacity() * (size_of::<String>() + 1)
                + a.iter().map(String::capacity).sum::<usize>();
        }
        (m.len(), bytes)
    }
}

/// What each of `app_ids` serves, from the cache where it is fresh and read otherwise.
async fn prepared_all(state: &Ctx, app_ids: &[i64]) -> Result<Vec<Arc<Option<Prepared>>>, Refused> {
    let held = state.rt().cached(app_ids);
    let mut out = Vec::with_capacity(app_ids.len());
    for (&app_id, p) in app_ids.iter().zip(held) {
        out.push(match p {
            Some(p) => p,
            None => read_prepared(state, app_id).await?,
        });
    }
    Ok(out)
}

/// Reads what a mini program serves and keeps it for the cache's lifetime.
async fn read_prepared(state: &Ctx, app_id: i64) -> Result<Arc<Option<Prepared>>, Refused> {
    let rt = state.rt();
    let view = state
        .store
        .runtime_view(AppId(app_id))
        .await
        .map_err(Refused::store)?;
    let prepared = match view {
        None => None,
        Some(v) => Some(prepare(state, v).await),
    };
    let p = Arc::new(prepared);
    if let Ok(mut m) = rt.apps.write() {
        // Entries past their time are swept when the map grows, so a flood of unknown ids
        // cannot grow it without end.
        if m.len() >= 200_000 {
            let ttl = rt.ttl;
            m.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        m.insert(app_id, (Instant::now(), p.clone()));
    }
    Ok(p)
}

impl Prepared {
    /// Whether the host app may run the mini program (no list: every host app may).
    fn runs_in(&self, host_id: i64) -> bool {
        self.hosts.is_empty() || self.hosts.contains(&host_id)
    }

    /// Whether devices may be running `package_id` of it now.
    fn serves(&self, package_id: i64) -> bool {
        self.online_id == Some(package_id) || self.staged_id == Some(package_id)
    }
}

async fn prepare(state: &Ctx, v: RuntimeView) -> Prepared {
    let online_id = v.online.as_ref().map(|p| p.package_id.get());
    let staged_id = v.staged.as_ref().map(|(p, _)| p.package_id.get());
    let online = match v.online {
        Some(p) => served(state, p).await.map(Some),
        None => Ok(None),
    };
    let staged = match v.staged {
        Some((p, pc)) => served(state, p).await.map(|s| Some((s, pc))),
        None => Ok(None),
    };
    let d = v.settings.domains;
    let settings = DeviceSettings {
        request_domain: d.request_domain,
        upload_domain: d.upload_domain,
        download_domain: d.download_domain,
        socket_domain: d.socket_domain,
        web_view_domain: d.web_view_domain,
        min_runtime_version: v.settings.min_runtime_version.clone(),
    };
    let settings = raw(&settings);
    let mut digest = sha2::Sha256::new();
    digest.update(settings.get());
    digest.update(format!(
        "|{}|{}|{:?}|",
        v.settings.paused, v.settings.min_runtime_version, v.hosts
    ));
    match &online {
        Ok(Some(s)) => digest.update(s.json.get()),
        Ok(None) => digest.update("-"),
        Err(e) => digest.update(e),
    }
    match &staged {
        Ok(Some((s, pc))) => digest.update(format!("|{pc}|{}", s.json.get())),
        Ok(None) => digest.update("|-"),
        Err(e) => digest.update(e),
    }
    let d = digest.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    Prepared {
        paused: v.settings.paused,
        min_runtime_version: v.settings.min_runtime_version,
        hosts: v.hosts.iter().map(|h| h.get()).collect(),
        online_id,
        staged_id,
        online,
        staged,
        settings,
        fingerprint: u64::from_be_bytes(first),
    }
}

/// The package with its archive, made now if it has none yet.
async fn served(state: &Ctx, p: RuntimePackage) -> Result<Served, String> {
    let (sha256, size) = match (p.archive_sha256, p.archive_size) {
        (Some(s), Some(n)) => (s, n),
        _ => crate::workers::make_archive(state, p.package_id.get()).await?,
    };
    if let Ok(mut set) = state.rt().archives.write() {
        set.insert(sha256.clone());
    }
    let json = raw(&PackageRef {
        package_id: p.package_id.get(),
        version: p.version,
        url: format!("{}/runtime/v1/packages/{sha256}", state.public_url),
        sha256: sha256.clone(),
        size,
    });
    Ok(Served { sha256, json })
}

/// A value written as JSON once. These plain structures always serialize; were one not to,
/// `null` stands in.
fn raw<T: Serialize>(v: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(v)
        .or_else(|_| RawValue::from_string("null".into()))
        .unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// A refusal of the runtime API: a status and a JSON error.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Refused {
        Refused::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn store(e: smartpkg_store::StoreError) -> Refused {
        tracing::warn!(error = %e, "runtime: storage failed");
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the platform cannot answer right now; retry shortly",
        )
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": {"code": self.code, "message": self.message}}));
        let mut r = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"smartpkg-runtime\""),
            );
        }
        r
    }
}

/// The host app of a request, from `Authorization: Basic base64(host_key:host_secret)`.
async fn host_of(state: &Ctx, headers: &HeaderMap) -> Result<i64, Refused> {
    let unauthorized = |m: &str| Refused::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let full = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rt = state.rt();
    let seen = rt.verified.read().ok().and_then(|m| {
        m.get(full)
            .filter(|(at, _)| at.elapsed() < rt.ttl)
            .map(|(_, h)| *h)
    });
    if let Some(host_id) = seen {
        return Ok(host_id);
    }
    let raw = full.strip_prefix("Basic ").ok_or_else(|| {
        unauthorized("give the host app's key and secret as HTTP Basic credentials")
    })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| unauthorized("the Basic credentials are not base64 of key:secret"))?;
    let (key, secret) = decoded
        .split_once(':')
        .ok_or_else(|| unauthorized("the Basic credentials are not key:secret"))?;
    let cached = rt
        .hosts
        .read()
        .ok()
        .and_then(|m| m.get(key).filter(|(at, _)| at.elapsed() < rt.ttl).cloned());
    let host = match cached {
        Some((_, h)) => h,
        None => {
            let found = state
                .store
                .host_app_by_key(key.to_string())
                .await
                .map_err(Refused::store)?
                .map(|h| Host {
                    host_id: h.host_id.get(),
                    secret_hash: h.secret_hash,
                });
            if let Ok(mut m) = rt.hosts.write() {
                if m.len() >= 100_000 {
                    m.clear();
                }
                m.insert(key.to_string(), (Instant::now(), found.clone()));
            }
            found
        }
    };
    let host = host.ok_or_else(|| unauthorized("unknown host key or wrong secret"))?;
    let given = secrets::sha256_hex(secret);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        host.secret_hash.as_bytes(),
    )) {
        return Err(unauthorized("unknown host key or wrong secret"));
    }
    // Only verified credentials are remembered, so wrong guesses cannot fill the map.
    if let Ok(mut m) = rt.verified.write() {
        if m.len() >= 100_000 {
            m.clear();
        }
        m.insert(full.to_string(), (Instant::now(), host.host_id));
    }
    Ok(host.host_id)
}

/// The update check's body. Strings are borrowed from the body where nothing in them is
/// escaped (the usual case): the hot path allocates little per request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest<'a> {
    /// A stable id of the device (at most 128 characters).
    #[serde(borrow)]
    pub device_id: Cow<'a, str>,
    /// The host app's runtime version on the device.
    #[serde(borrow)]
    pub runtime_version: Cow<'a, str>,
    #[serde(borrow)]
    pub apps: Vec<HeldApp<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldApp<'a> {
    pub app_id: i64,
    /// The SHA-256 of the archive the device holds, if any.
    #[serde(default, borrow)]
    pub sha256: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Run `package` (the device does not hold it).
    Update,
    /// The device holds `package` already.
    Current,
    Paused,
    NotAvailable,
    /// The host app's runtime is older than the mini program's minimum.
    HostUpdateRequired,
}

#[derive(Debug, Serialize)]
pub struct PackageRef {
    pub package_id: i64,
    pub version: String,
    pub sha256: String,
    pub size: i64,
    /// Immutable: the same bytes for ever, cacheable by any CDN or proxy.
    pub url: String,
}

/// One mini program's answer; the package and settings objects are borrowed as written
/// when the mini program was read.
#[derive(Debug, Serialize)]
pub struct AppAnswer<'a> {
    pub app_id: i64,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<&'a RawValue>,
    /// Which kind of answer this is, for the ETag (not sent).
    #[serde(skip)]
    kind: u8,
    #[serde(skip)]
    fingerprint: u64,
}

fn check_text(name: &str, v: &str, max: usize) -> Result<(), Refused> {
    if v.trim().is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(Refused::bad(format!(
            "{name} is 1 to {max} characters without control characters"
        )));
    }
    Ok(())
}

/// What one mini program should run on one device.
fn answer<'a>(
    app_id: i64,
    p: &'a Option<Prepared>,
    host_id: i64,
    device_id: &str,
    runtime_version: &str,
    held: Option<&str>,
) -> AppAnswer<'a> {
    let refuse = |status, reason: Cow<'static, str>| AppAnswer {
        app_id,
        status,
        reason: Some(reason),
        package: None,
        settings: None,
        kind: 0,
        fingerprint: 0,
    };
    let Some(p) = p else {
        return refuse(Status::NotAvailable, Cow::Borrowed("no such mini program"));
    };
    // A host app the mini program is not offered in learns nothing more about it: the same
    // answer (and ETag) as for a mini program that does not exist.
    if !p.runs_in(host_id) {
        return refuse(Status::NotAvailable, Cow::Borrowed("no such mini program"));
    }
    let fingerprint = p.fingerprint;
    let refuse = |status, reason, kind| AppAnswer {
        kind,
        fingerprint,
        ..refuse(status, reason)
    };
    if p.paused {
        return refuse(
            Status::Paused,
            Cow::Borrowed("paused by its third party"),
            2,
        );
    }
    if !p.min_runtime_version.is_empty() && below(runtime_version, &p.min_runtime_version) {
        let mut a = refuse(
            Status::HostUpdateRequired,
            Cow::Owned(format!(
                "needs host runtime {} or later; update the host app",
                p.min_runtime_version
            )),
            3,
        );
        a.settings = Some(&p.settings);
        return a;
    }
    let staged = match &p.staged {
        Ok(Some((s, pc))) if in_stage(bucket(app_id, device_id), *pc) => Some(Ok(s)),
        Err(e) => Some(Err(e)),
        _ => None,
    };
    let from_stage = staged.is_some();
    let chosen = match staged {
        Some(s) => s,
        None => match &p.online {
            Ok(Some(s)) => Ok(s),
            Ok(None) => {
                return refuse(
                    Status::NotAvailable,
                    Cow::Borrowed("nothing is released yet"),
                    4,
                )
            }
            Err(e) => Err(e),
        },
    };
    let s = match chosen {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(app_id, error = %e, "runtime: the package archive cannot be made");
            return refuse(
                Status::NotAvailable,
                Cow::Borrowed("the package cannot be served right now"),
                5,
            );
        }
    };
    let status = if held == Some(s.sha256.as_str()) {
        Status::Current
    } else {
        Status::Update
    };
    let kind = match (&status, from_stage) {
        (Status::Update, false) => 6,
        (Status::Current, false) => 7,
        (Status::Update, true) => 8,
        _ => 9,
    };
    AppAnswer {
        app_id,
        status,
        reason: None,
        package: Some(&s.json),
        settings: Some(&p.settings),
        kind,
        fingerprint,
    }
}

#[derive(Debug, Serialize)]
pub struct CheckAnswer<'a> {
    pub apps: Vec<AppAnswer<'a>>,
}

/// The longest update-check body accepted: 100 mini programs with their hashes fit in a
/// fraction of it.
const MAX_CHECK_BODY: usize = 64 * 1024;

/// Bytes of answer per mini program, about: the answer's buffer is sized once.
const ANSWER_BYTES_PER_APP: usize = 320;

/// The whole body, at most `max` bytes (413 past it).
async fn read_body(
    body: axum::body::Body,
    max: usize,
    what: &str,
) -> Result<axum::body::Bytes, Refused> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // `to_bytes` fails for a body over the limit, or one the client broke off.
        let e = e.into_inner();
        if e.is::<http_body_util::LengthLimitError>() {
            Refused::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("{what} is at most {max} bytes"),
            )
        } else {
            Refused::bad(format!("the body could not be read: {e}"))
        }
    })
}

pub async fn update_check(
    State(state): State<Ctx>,
    request: axum::extract::Request,
) -> Result<Response, Refused> {
    // The request is taken whole (not a `HeaderMap` extractor, which copies every header).
    let (parts, body) = request.into_parts();
    let host_id = host_of(&state, &parts.headers).await?;
    let body = read_body(body, MAX_CHECK_BODY, "an update check").await?;
    let req: CheckRequest = serde_json::from_slice(&body)
        .map_err(|e| Refused::bad(format!("the body is not an update check: {e}")))?;
    check_text("device_id", &req.device_id, MAX_DEVICE_ID)?;
    check_text("runtime_version", &req.runtime_version, MAX_VERSION)?;
    if req.apps.len() > MAX_APPS_PER_CHECK {
        return Err(Refused::bad(format!(
            "at most {MAX_APPS_PER_CHECK} mini programs per update check, not {}",
            req.apps.len()
        )));
    }
    let ids: Vec<i64> = req.apps.iter().map(|h| h.app_id).collect();
    let read = prepared_all(&state, &ids).await?;
    let apps = req
        .apps
        .iter()
        .zip(&read)
        .map(|(held, p)| {
            answer(
                held.app_id,
                p,
                host_id,
                &req.device_id,
                &req.runtime_version,
                held.sha256.as_deref(),
            )
        })
        .collect();
    let mut out = Vec::with_capacity(16 + ids.len() * ANSWER_BYTES_PER_APP);
    serde_json::to_writer(&mut out, &CheckAnswer { apps })
        .map_err(|e| Refused::bad(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}

/// The single-app form's query: `device_id`, `runtime_version`, optional `sha256`.
struct OneQuery<'a> {
    device_id: Cow<'a, str>,
    runtime_version: Cow<'a, str>,
    sha256: Option<Cow<'a, str>>,
}

/// The single-app form: the same answer, with a strong ETag of its bytes.
pub async fn one_app(
    State(state): State<Ctx>,
    Path(app_id): Path<i64>,
    request: axum::extract::Request,
) -> Result<Response, Refused> {
    // Read in place: the `HeaderMap` and `Uri` extractors would copy them.
    let (headers, uri) = (request.headers(), request.uri());
    let host_id = host_of(&state, headers).await?;
    // Read without allocating where nothing is escaped: this is a hot path.
    let (mut device_id, mut runtime_version, mut sha256) = (None, None, None);
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match &*k {
            "device_id" => device_id = Some(v),
            "runtime_version" => runtime_version = Some(v),
            "sha256" => sha256 = Some(v),
            _ => {}
        }
    }
    let q = OneQuery {
        device_id: device_id.ok_or_else(|| Refused::bad("device_id is required"))?,
        runtime_version: runtime_version
            .ok_or_else(|| Refused::bad("runtime_version is required"))?,
        sha256,
    };
    check_text("device_id", &q.device_id, MAX_DEVICE_ID)?;
    check_text("runtime_version", &q.runtime_version, MAX_VERSION)?;
    let p = match state.rt().cached(&[app_id]).pop().flatten() {
        Some(p) => p,
        None => read_prepared(&state, app_id).await?,
    };
    let a = answer(
        app_id,
        &p,
        host_id,
        &q.device_id,
        &q.runtime_version,
        q.sha256.as_deref(),
    );
    // Named by what the mini program serves and the kind of answer, so an unchanged answer
    // is told without writing it.
    let etag = format!("\"{:016x}{:x}\"", a.fingerprint, a.kind);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag || v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let cache = [
        (
            header::ETAG,
            HeaderValue::from_str(&etag).map_err(|e| Refused::bad(e.to_string()))?,
        ),
        // The answer depends on the device and the credentials: caches keep it per device
        // and check it again each time (a 304 costs no body).
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        ),
        (header::VARY, HeaderValue::from_static("Authorization")),
    ];
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let body = serde_json::to_vec(&a).map_err(|e| Refused::bad(e.to_string()))?;
    Ok((
        StatusCode::OK,
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}
