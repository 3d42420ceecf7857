//! Delivering events to third parties: one HTTP attempt, encrypted as Baidu does, to a target
//! that passed the safety rules. The retry schedule and durability live in the job runner
//! and the store; this module only makes and reports an attempt.

pub mod targets;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::FixedOffset;
use rand::Rng;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use smartpkg_core::push::{baidu_ticket, seal, CodeGrant, Event, Sealing};
use smartpkg_store::{AttemptRecord, Channel, Delivery, StoreError, Tp};
use smartpkg_types::push::{AuditResultPush, AuthorizationPush};

use crate::clock;

/// Our extension header: the same value on every attempt and replay of one event.
pub const EVENT_ID_HEADER: &str = "X-Smartpkg-Event-Id";
/// How much of a receiver's answer is read, and how much of it is kept in the attempt log.
const BODY_CAP: usize = 64 * 1024;
const BODY_EXCERPT: usize = 256;

/// A resolver that refuses names resolving to non-public addresses, so a name cannot be
/// pointed at an internal service between our check and the connection.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allow {
                if let Some((ip, class)) = addrs
                    .iter()
                    .find_map(|a| targets::forbidden(a.ip()).map(|c| (a.ip(), c)))
                {
                    return Err(format!(
                        "refused target: {} resolves to {ip}, a {class} address",
                        name.as_str()
                    )
                    .into());
                }
            }
            let out: Addrs = Box::new(addrs.into_iter());
            Ok(out)
        })
    }
}

/// The pushes' HTTP client. It never takes a proxy from the environment (`HTTP_PROXY` and
/// friends would route around the target rules); with `proxy` set it uses that one, and the
/// target rules are then applied to the name before each attempt (see [`check_target`]).
pub fn client(allow_private: bool, proxy: Option<&str>) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        // A redirect would be a way around the target rules, and Baidu does not follow them.
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .user_agent(concat!("smartpkg/", env!("CARGO_PKG_VERSION")))
        .no_proxy();
    match proxy {
        Some(p) => builder.proxy(reqwest::Proxy::all(p)?).build(),
        None => builder.build(),
    }
}

/// Refuses a URL before any byte is sent: only http and https, and (unless allowed) no host
/// that is, or resolves to, a non-public address. Without a proxy, names are checked by the
/// client's resolver as it connects; through a proxy (which resolves names itself) they are
/// resolved and checked here (`resolve_names`).
pub async fn check_target(
    url: &str,
    allow_private: bool,
    resolve_names: bool,
) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "refused target: scheme {:?} (only http and https)",
            parsed.scheme()
        ));
    }
    let host = parsed
        .host()
        .ok_or_else(|| format!("invalid URL {url:?}: no host"))?;
    if allow_private {
        return Ok(parsed);
    }
    let literal: Option<IpAddr> = match host {
        url::Host::Ipv4(v4) => Some(v4.into()),
        url::Host::Ipv6(v6) => Some(v6.into()),
        url::Host::Domain(_) => None,
    };
    match literal {
        Some(ip) => match targets::forbidden(ip) {
            Some(class) => Err(format!(
                "refused target: {ip} is a {class} address (set SMARTPKG_ALLOW_PRIVATE_TARGETS to allow)"
            )),
            None => Ok(parsed),
        },
        None if resolve_names => {
            let name = parsed.host_str().unwrap_or_default().to_string();
            let port = parsed.port_or_known_default().unwrap_or(80);
            let addrs = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?;
            for a in addrs {
                if let Some(class) = targets::forbidden(a.ip()) {
                    return Err(format!(
                        "refused target: {name} resolves to {}, a {class} address",
                        a.ip()
                    ));
                }
            }
            Ok(parsed)
        }
        // Names are checked by the resolver at connection time.
        None => Ok(parsed),
    }
}

/// The event as a Baidu-dialect third party decrypts it: its wire JSON, rendered from the
/// typed event the store reads back, so it is identical on every attempt.
pub fn render(d: &Delivery, offset: FixedOffset) -> Result<String, StoreError> {
    let e = &d.event;
    let event_time = clock::event_time(e.created_at_ms, offset);
    let authorization = |code: Option<CodeGrant>| AuthorizationPush {
        app_id: e.app_id.get(),
        tp_app_id: e.tp_id.get(),
        event_time: event_time.clone(),
        event: e.event.clone(),
        authorization_code: code.as_ref().map(|c| c.authorization_code.clone()),
        authorization_code_expires_in: code.map(|c| c.authorization_code_expires_in),
    };
    let audit = |package_id, version: String, reason| AuditResultPush {
        app_id: e.app_id.get(),
        tp_app_id: e.tp_id.get(),
        event_time: event_time.clone(),
        event: e.event.clone(),
        reason,
        package_id,
        package_version: version,
    };
    let json = match e.typed()? {
        Event::Ticket {
            ticket,
            create_time_s,
        } => serde_json::to_string(&baidu_ticket(&ticket, create_time_s)),
        Event::Authorized(code) | Event::UpdateAuthorized(code) => {
            serde_json::to_string(&authorization(Some(code)))
        }
        Event::Unauthorized => serde_json::to_string(&authorization(None)),
        Event::AuditPassed {
            package_id,
            version,
        } => serde_json::to_string(&audit(package_id, version, None)),
        Event::AuditFailed {
            package_id,
            version,
            reason,
        } => serde_json::to_string(&audit(package_id, version, Some(reason))),
    };
    json.map_err(|err| StoreError::Corrupt(format!("event {}: {err}", e.event_id)))
}

/// What one attempt found.
pub struct Attempt {
    pub record: AttemptRecord,
    pub delivered: bool,
}

fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(BODY_EXCERPT)];
    String::from_utf8_lossy(cut).into_owned()
}

/// Sends the delivery's event once. Success is a 2xx whose body, trimmed, is `success`.
pub async fn attempt(
    client: &reqwest::Client,
    tp: &Tp,
    d: &Delivery,
    allow_private: bool,
    via_proxy: bool,
    timeout: Duration,
    offset: FixedOffset,
) -> Attempt {
    let at_ms = clock::now_ms();
    // Tickets go to the authorization-event URL, everything else to the message URL.
    let url = match d.event.channel {
        Channel::Auth => tp.auth_event_url.clone(),
        Channel::Event => tp.event_url.clone(),
    };
    let fail =
        |error: String, status: Option<i64>, body: Option<String>, latency_ms: i64| Attempt {
            record: AttemptRecord {
                at_ms,
                url: url.clone(),
                status,
                latency_ms,
                error: Some(error),
                body,
            },
            delivered: false,
        };
    if url.trim().is_empty() {
        let which = d.event.channel.url_field();
        return fail(format!("the third party has no {which}"), None, None, 0);
    }
    let target = match check_target(&url, allow_private, via_proxy).await {
        Ok(t) => t,
        Err(e) => return fail(e, None, None, 0),
    };
    let msg = match render(d, offset) {
        Ok(m) => m,
        Err(e) => return fail(format!("cannot render the event: {e}"), None, None, 0),
    };
    let (random16, nonce) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen::<[u8; 16]>(),
            rng.gen_range(1_000_000u32..10_000_000).to_string(),
        )
    };
    let timestamp = (at_ms / 1000).to_string();
    let sealed = seal(
        &msg,
        &Sealing {
            encoding_aes_key: &tp.encoding_aes_key,
            token: &tp.msg_token,
            client_id: &tp.client_id,
            random16,
            timestamp: &timestamp,
            nonce: &nonce,
        },
    );
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot encrypt: {e}"), None, None, 0),
    };
    let start = Instant::now();
    let sent = client
        .post(target)
        .header(EVENT_ID_HEADER, &d.event.uid)
        .json(&sealed)
        .timeout(timeout)
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_timeout() {
                format!("timed out after {} ms", timeout.as_millis())
            } else {
                // The resolver's refusal travels inside the connect error.
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                msg
            };
            return fail(why, None, None, start.elapsed().as_millis() as i64);
        }
    };
    let status = resp.status();
    let mut body = Vec::new();
    let mut read_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = BODY_CAP.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= BODY_CAP {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                read_error = Some(if e.is_timeout() {
                    format!(
                        "timed out reading the answer after {} ms",
                        timeout.as_millis()
                    )
                } else {
                    format!("reading the answer: {e}")
                });
                break;
            }
        }
    }
    let latency_ms = start.elapsed().as_millis() as i64;
    let code = Some(status.as_u16() as i64);
    if let Some(e) = read_error {
        return fail(e, code, Some(excerpt(&body)), latency_ms);
    }
    let acknowledged = status.is_success() && body.trim_ascii() == b"success";
    if acknowledged {
        return Attempt {
            record: AttemptRecord {
                at_ms,
                url,
                status: code,
                latency_ms,
                error: None,
                body: Some(excerpt(&body)),
            },
            delivered: true,
        };
    }
    let why = if status.is_success() {
        "the answer was not `success`".to_string()
    } else if status.is_redirection() {
        format!("HTTP {status} (redirects are not followed)")
    } else {
        format!("HTTP {status}")
    };
    fail(why, code, Some(excerpt(&body)), latency_ms)
}
