//! The HTTP(S) front door: an accept loop that bounds what one client can hold.
//!
//! - at most `max_connections` connections at once (the rest wait in the kernel's backlog),
//!   never more than the process's descriptor limit leaves room for;
//! - a request head must arrive within `header_read_timeout` (hyper starts that clock when it
//!   waits for the next head, so it is also how long a kept-alive connection may sit idle);
//! - a connection on which nothing is read or written for `idle_timeout` is closed, so a
//!   client that stops sending a body, or stops reading an answer, lets go of its slot;
//! - a request body must keep arriving: after `body_grace`, at least `body_min_rate` bytes a
//!   second on average, or the request is answered 408 and the connection closed (a small
//!   body that stalls is cut after about the grace, not after the whole request timeout);
//! - one client address (IPv6: one /64) holds at most `max_per_client` connections; at that
//!   cap its own oldest idle or stalled connection is closed to make room, and if none is,
//!   the new one is refused (503 on plain HTTP);
//! - when fewer than an eighth of the slots are free, each new connection closes the oldest
//!   idle or stalled one anywhere, so that a crowd of stalled clients cannot keep new ones
//!   waiting in the backlog. A connection whose request is being handled is never chosen;
//! - on shutdown, no new connections; those open finish their request and close, and after
//!   `shutdown_grace` the rest are cut.
//!
//! With a certificate and key it serves TLS (rustls) on the same terms.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections one client address may hold (see [`effective_max_per_client`]).
    pub max_per_client: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a request body may take before it must keep up `body_min_rate`.
    pub body_grace: Duration,
    /// Bytes a second a request body must average past the grace; 0 = no rate.
    pub body_min_rate: u64,
    pub shutdown_grace: Duration,
}

/// A connection waiting on its client this long (for a request head, or in the middle of a
/// body) counts as stalled: it may be closed to make room for a new one.
const STALLED: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
    #[error("{path} holds no certificate (expected PEM `CERTIFICATE` blocks)")]
    NoCertificate { path: String },
    #[error("the certificate and key do not make a usable TLS configuration: {0}")]
    Config(String),
}

/// A TLS configuration from PEM files: a certificate chain and its private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: p.display().to_string(),
        why: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(cert, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Raises the soft limit of open descriptors to the hard limit (a server holds one per
/// connection) and returns the soft limit now in force, if it could be read.
pub fn raise_descriptor_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The connection cap actually used: the setting, but always leaving descriptors for the
/// database, blobs, pushes and the listener itself.
pub fn effective_max_connections(setting: usize, descriptor_limit: Option<u64>) -> usize {
    const RESERVED: u64 = 128;
    match descriptor_limit {
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED).max(16) as usize;
            setting.min(room)
        }
        None => setting,
    }
}

/// The per-client cap actually used: the setting, but never more than a quarter of the
/// connection cap, so that one address (one host, or one NAT) cannot hold every slot.
pub fn effective_max_per_client(setting: usize, max_connections: usize) -> usize {
    setting.min((max_connections / 4).max(1)).max(1)
}

/// The client address connections are counted by: IPv4 as it is (an IPv4-mapped IPv6
/// address too), IPv6 by its /64, which one host holds as easily as one address.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// What a connection is doing, as far as making room goes.
const WAITING: u8 = 0;
/// Reading a request's body.
const READING: u8 = 1;
/// Handling a request (never closed to make room).
const WORKING: u8 = 2;

/// One open connection, as the [`Tracker`] sees it.
struct Conn {
    id: u64,
    client: IpAddr,
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds since `epoch` when the phase began.
    phase_since_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last byte read or written.
    last_io_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last byte written (an answer going out).
    last_write_ms: AtomicU64,
    /// Body bytes read of the request in hand.
    body_bytes: AtomicU64,
    chosen: AtomicBool,
    close: Notify,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn wrote(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        self.last_write_ms.store(now, Ordering::Relaxed);
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
        self.phase_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Since when (milliseconds since `epoch`) the connection has been stalled on its client,
    /// if it has been for at least [`STALLED`]:
    /// - waiting for a head (a new connection, or a kept-alive one between requests) with no
    ///   answer going out: a real client sends its head in one piece, so one that trickles
    ///   in byte by byte counts as stalled too;
    /// - reading a body that nothing arrived of lately, or that is behind the minimum rate
    ///   since it began (a trickle);
    /// - never while a request is being handled.
    fn stalled_since(&self, now_ms: u64, min_rate: u64) -> Option<u64> {
        let stall = STALLED.as_millis() as u64;
        let since = self.phase_since_ms.load(Ordering::Relaxed);
        let in_phase = now_ms.saturating_sub(since);
        match self.phase() {
            WAITING => {
                let waiting = since.max(self.last_write_ms.load(Ordering::Relaxed));
                (now_ms.saturating_sub(waiting) >= stall).then_some(waiting)
            }
            READING => {
                let last = self.last_io_ms.load(Ordering::Relaxed);
                let quiet = now_ms.saturating_sub(last) >= stall;
                let behind = min_rate > 0
                    && in_phase >= stall
                    && self.body_bytes.load(Ordering::Relaxed).saturating_mul(1000)
                        < in_phase.saturating_mul(min_rate);
                (quiet || behind).then_some(if quiet { last } else { since })
            }
            _ => None,
        }
    }

    /// Resolves once the request body in hand falls behind the minimum rate: `grace`, plus
    /// the time the bytes read so far are worth at `body_min_rate`, has passed. An average,
    /// not a gap between bytes: a trickle of one byte now and then does not keep it alive.
    async fn body_overdue(&self, started: Instant, limits: Limits) {
        if limits.body_min_rate == 0 {
            // No rate: only the request timeout bounds a body.
            return std::future::pending().await;
        }
        loop {
            let read = self.body_bytes.load(Ordering::Relaxed);
            let earned = Duration::from_secs_f64(read as f64 / limits.body_min_rate as f64);
            let deadline = started + limits.body_grace + earned;
            if Instant::now() >= deadline {
                if self.phase() == READING {
                    return;
                }
                return std::future::pending().await;
            }
            tokio::time::sleep_until(deadline).await;
            if self.phase() != READING {
                return std::future::pending().await;
            }
        }
    }
}

/// Every open connection, by client address: the per-client cap and the choice of which
/// connection to close when room is needed.
struct Tracker {
    epoch: Instant,
    /// The bodies' minimum rate (bytes a second), to tell a trickling body.
    min_rate: u64,
    inner: Mutex<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_client: HashMap<IpAddr, usize>,
}

/// Removes its connection from the tracker when the connection's task ends, however it ends.
struct Registered {
    tracker: Arc<Tracker>,
    conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut inner = self.tracker.lock();
        inner.conns.remove(&self.conn.id);
        if let Some(n) = inner.per_client.get_mut(&self.conn.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_client.remove(&self.conn.client);
            }
        }
    }
}

impl Tracker {
    fn new(min_rate: u64) -> Self {
        Tracker {
            epoch: Instant::now(),
            min_rate,
            inner: Mutex::new(TrackerInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerInner> {
        // The maps are consistent after every statement: a panic elsewhere leaves them usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection from `ip`; None when that client is at its cap and none of its
    /// connections is idle or stalled (one that is gets closed for this one).
    fn open(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Registered> {
        let client = client_of(ip);
        let mut inner = self.lock();
        let held = inner.per_client.get(&client).copied().unwrap_or(0);
        if held >= cap && self.close_stalled(&inner, Some(client), 1) == 0 {
            return None;
        }
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            client,
            epoch: self.epoch,
            phase: AtomicU8::new(WAITING),
            phase_since_ms: AtomicU64::new(0),
            last_io_ms: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            chosen: AtomicBool::new(false),
            close: Notify::new(),
        });
        conn.touch();
        conn.set_phase(WAITING);
        inner.conns.insert(conn.id, conn.clone());
        *inner.per_client.entry(client).or_insert(0) += 1;
        Some(Registered {
            tracker: self.clone(),
            conn,
        })
    }

    /// Closes up to `n` of the idle or stalled connections (of `client`, or of anyone),
    /// those that have waited on their client the longest first; how many it closed.
    fn close_stalled(&self, inner: &TrackerInner, client: Option<IpAddr>, n: usize) -> usize {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let mut victims: Vec<(u64, &Arc<Conn>)> = inner
            .conns
            .values()
            .filter(|c| client.is_none_or(|k| c.client == k))
            .filter(|c| !c.chosen.load(Ordering::Relaxed))
            .filter_map(|c| c.stalled_since(now_ms, self.min_rate).map(|t| (t, c)))
            .collect();
        victims.sort_by_key(|(since, _)| *since);
        victims.truncate(n);
        for (_, c) in &victims {
            c.chosen.store(true, Ordering::Relaxed);
            c.close.notify_one();
        }
        victims.len()
    }

    /// Closes up to `n` idle or stalled connections of anyone.
    fn make_room(&self, n: usize) -> usize {
        let inner = self.lock();
        self.close_stalled(&inner, None, n)
    }
}

/// Counts a request body's bytes for the minimum rate, and marks the connection as working
/// once the body is read (or dropped unread).
struct WatchedBody {
    inner: hyper::body::Incoming,
    conn: Arc<Conn>,
}

impl hyper::body::Body for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.conn
                        .body_bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if self.inner.is_end_stream() {
                    self.conn.set_phase(WORKING);
                }
            }
            Poll::Ready(_) => self.conn.set_phase(WORKING),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        if self.conn.phase() == READING {
            self.conn.set_phase(WORKING);
        }
    }
}

/// The answer to a body that fell behind the minimum rate; the connection closes after it.
fn body_too_slow() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        [(axum::http::header::CONNECTION, "close")],
        "the request body arrived too slowly\n",
    )
        .into_response()
}

/// A stream that fails with `TimedOut` once neither a read nor a write has made progress for
/// `idle`. The timer only fires while the connection waits on the peer.
struct IdleIo<T> {
    inner: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    conn: Arc<Conn>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, idle: Duration, conn: Arc<Conn>) -> Self {
        IdleIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            conn,
        }
    }

    fn progressed(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// After the inner stream said Pending: Ready(error) when the idle time is over (this
    /// poll also registers the waker for that moment).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                this.conn.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                this.conn.wrote();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains as described above.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    // The guard `wait_for` returns is not Send: drop it inside this future.
    let mut stop = Box::pin(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Fewer free slots than this and each new connection makes room (module docs).
    let headroom = (limits.max_connections / 8).max(1);
    let tracker = Arc::new(Tracker::new(limits.body_min_rate));
    let graceful = GracefulShutdown::new();
    let acceptor = tls.map(TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        // Take a slot first: at the cap, new clients wait in the backlog rather than costing a
        // descriptor each.
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            // Every slot is taken: close stalled connections, so that those waiting in the
            // backlog (each of which makes room in turn) come in.
            _ = tokio::time::sleep(STALLED / 2), if slots.available_permits() == 0 => {
                tracker.make_room(headroom);
                continue;
            }
        };
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(registered) = tracker.open(peer.ip(), limits.max_per_client) else {
            tracing::debug!(%peer, cap = limits.max_per_client, "refused: the client holds its share of connections");
            if acceptor.is_none() {
                // One try, never a wait: the socket is new, so its buffer has room.
                let _ = stream.try_write(
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
                      Content-Type: text/plain\r\nContent-Length: 42\r\n\r\n\
                      too many connections from this address\r\n\r\n",
                );
            }
            continue;
        };
        if slots.available_permits() < headroom {
            tracker.make_room(1);
        }
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _permit = permit;
            let conn = registered.conn.clone();
            let _registered = registered;
            let served = async {
                match acceptor {
                    None => {
                        serve_connection(stream, peer, app, limits, watcher, conn.clone()).await
                    }
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            limits.header_read_timeout,
                            acceptor.accept(stream),
                        );
                        match handshake.await {
                            Ok(Ok(tls)) => {
                                serve_connection(tls, peer, app, limits, watcher, conn.clone())
                                    .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = served => {}
                _ = conn.close.notified() => {
                    tracing::debug!(%peer, "closed an idle or stalled connection to make room");
                }
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(open, "waiting for open connections to finish");
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace_s = limits.shutdown_grace.as_secs_f64(), "cutting connections still open after the shutdown grace period");
        }
    }
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
    conn: Arc<Conn>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout, conn.clone()));
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        let conn = conn.clone();
        async move {
            use hyper::body::Body as _;
            use tower::Service;
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let reading = !body.is_end_stream();
            conn.body_bytes.store(0, Ordering::Relaxed);
            conn.set_phase(if reading { READING } else { WORKING });
            let body = axum::body::Body::new(WatchedBody {
                inner: body,
                conn: conn.clone(),
            });
            let answer = app.call(hyper::Request::from_parts(parts, body));
            let answered = if reading {
                let started = Instant::now();
                tokio::select! {
                    a = answer => a,
                    _ = conn.body_overdue(started, limits) => Ok(body_too_slow()),
                }
            } else {
                answer.await
            };
            // The answer goes out now; then the connection waits for the next head.
            conn.set_phase(WAITING);
            answered
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let served = builder.serve_connection(io, service);
    if let Err(e) = watcher.watch(served).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_room_for_other_descriptors() {
        assert_eq!(effective_max_connections(10_000, Some(256)), 128);
        assert_eq!(effective_max_connections(100, Some(1 << 20)), 100);
        assert_eq!(effective_max_connections(100, Some(10)), 16);
        assert_eq!(effective_max_connections(100, None), 100);
    }

    #[test]
    fn one_client_may_hold_at_most_a_quarter_of_the_connections() {
        assert_eq!(effective_max_per_client(64, 4096), 64);
        assert_eq!(effective_max_per_client(64, 128), 32);
        assert_eq!(effective_max_per_client(64, 2), 1);
        assert_eq!(effective_max_per_client(0, 100), 1);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            client_of(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }
}
