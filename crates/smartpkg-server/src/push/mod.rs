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
use smartpkg_core::dialect::Dialect;
use smartpkg_core::push::wechat::{self as wx, Addressee, Field};
use smartpkg_core::push::{baidu_ticket, seal, CodeGrant, Event, Sealing};
use smartpkg_store::{AttemptRecord, Channel, Delivery, StoreError, Tp};
use smartpkg_types::push::{AuditResultPush, AuthorizationPush, GrayReleasePush};

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
        Event::WechatTicket { .. } => {
            return Err(StoreError::Corrupt(format!(
                "event {}: a WeChat ticket has no Baidu form",
                e.event_id
            )))
        }
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
        Event::GrayChanged {
            package_id,
            version,
            percent,
            status,
            reason,
            ..
        } => serde_json::to_string(&GrayReleasePush {
            app_id: e.app_id.get(),
            tp_app_id: e.tp_id.get(),
            event_time: event_time.clone(),
            event: e.event.clone(),
            reason: Some(reason).filter(|r| !r.is_empty()),
            package_id,
            package_version: version,
            gray_percentage: percent,
            gray_status: status,
        }),
    };
    json.map_err(|err| StoreError::Corrupt(format!("event {}: {err}", e.event_id)))
}

/// The dialect a delivery is written in: a ticket's own; otherwise the dialect whose URL for
/// the event's channel the third party has set, Baidu's when both are (docs/wechat.md).
pub fn dialect_of(tp: &Tp, event: &Event, channel: Channel) -> Dialect {
    let (baidu, wechat) = match channel {
        Channel::Auth => (&tp.auth_event_url, &tp.wechat.auth_event_url),
        Channel::Event => (&tp.event_url, &tp.wechat.message_url),
    };
    event.dialect_for(!baidu.trim().is_empty(), !wechat.trim().is_empty())
}

/// Where a delivery goes in `dialect`, and the name of the setting that holds it. WeChat's
/// message URL may name the mini program: `$APPID$` is its wx appid.
fn url_of(tp: &Tp, dialect: Dialect, channel: Channel, wx_appid: &str) -> (String, &'static str) {
    match (dialect, channel) {
        (Dialect::Baidu, _) => (
            match channel {
                Channel::Auth => tp.auth_event_url.clone(),
                Channel::Event => tp.event_url.clone(),
            },
            channel.url_field(),
        ),
        (Dialect::Wechat, Channel::Auth) => {
            (tp.wechat.auth_event_url.clone(), "wechat_auth_event_url")
        }
        (Dialect::Wechat, Channel::Event) => (
            tp.wechat.message_url.replace("$APPID$", wx_appid),
            "wechat_message_url",
        ),
    }
}

/// The event as a WeChat-dialect third party decrypts it (flat XML, spec §6), with whom the
/// sealed body names: the component for authorization events, the mini program's original id
/// for its audit results.
pub fn render_wechat(
    d: &Delivery,
    component_appid: &str,
    wx_appid: &str,
) -> Result<(String, Addressee<'static>), StoreError> {
    let e = &d.event;
    let created = e.created_at_ms / 1000;
    let original_id = smartpkg_core::ids::wechat_original_id(wx_appid);
    let auth = |info: &str, rest: &[(&str, Field<'_>)]| {
        let mut f = vec![
            ("AppId", Field::Text(component_appid)),
            ("CreateTime", Field::Number(created)),
            ("InfoType", Field::Text(info)),
        ];
        f.extend_from_slice(rest);
        wx::message(&f)
    };
    let audit = |event: &str, rest: &[(&str, Field<'_>)]| {
        let mut f = vec![
            ("ToUserName", Field::Text(&original_id)),
            ("FromUserName", Field::Text(wx_appid)),
            ("CreateTime", Field::Number(created)),
            ("MsgType", Field::Text("event")),
            ("Event", Field::Text(event)),
        ];
        f.extend_from_slice(rest);
        wx::message(&f)
    };
    let granted = |info: &str, code: &CodeGrant| {
        auth(
            info,
            &[
                ("AuthorizerAppid", Field::Text(wx_appid)),
                ("AuthorizationCode", Field::Text(&code.authorization_code)),
                (
                    "AuthorizationCodeExpiredTime",
                    Field::Number(created + code.authorization_code_expires_in),
                ),
            ],
        )
    };
    let to_component = |m: String| (m, Addressee::AppId(""));
    let to_app = |m: String| (m, Addressee::ToUserName(""));
    Ok(match e.typed()? {
        Event::WechatTicket {
            ticket,
            create_time_s,
        } => to_component(wx::message(&[
            ("AppId", Field::Text(component_appid)),
            ("CreateTime", Field::Number(create_time_s)),
            ("InfoType", Field::Text("component_verify_ticket")),
            ("ComponentVerifyTicket", Field::Text(&ticket)),
        ])),
        Event::Ticket { .. } => {
            return Err(StoreError::Corrupt(format!(
                "event {}: a Baidu ticket has no WeChat form",
                e.event_id
            )))
        }
        Event::Authorized(code) => to_component(granted("authorized", &code)),
        Event::UpdateAuthorized(code) => to_component(granted("updateauthorized", &code)),
        Event::Unauthorized => to_component(auth(
            "unauthorized",
            &[("AuthorizerAppid", Field::Text(wx_appid))],
        )),
        Event::AuditPassed { .. } => to_app(audit(
            "weapp_audit_success",
            &[("SuccTime", Field::Number(created))],
        )),
        Event::AuditFailed { reason, .. } => to_app(audit(
            "weapp_audit_fail",
            &[
                ("Reason", Field::Text(&reason)),
                ("FailTime", Field::Number(created)),
                ("ScreenShot", Field::Text("")),
            ],
        )),
        // smartpkg's extension, in WeChat's event shape: the plan's move and its figures.
        Event::GrayChanged {
            halted,
            percent,
            status,
            reason,
            ..
        } => to_app(audit(
            if halted {
                "weapp_gray_halted"
            } else {
                "weapp_gray_advanced"
            },
            &[
                ("GrayPercentage", Field::Number(percent)),
                ("GrayStatus", Field::Text(&status)),
                ("Reason", Field::Text(&reason)),
            ],
        )),
    })
}

/// The delivery's message as its third party decrypts it now, and the dialect it is written
/// in (the one [`dialect_of`] picks from the third party's settings): Baidu's JSON or
/// WeChat's XML.
pub fn render_in(
    d: &Delivery,
    tp: &Tp,
    wx_appid: &str,
    offset: FixedOffset,
) -> Result<(Dialect, String), StoreError> {
    let dialect = dialect_of(tp, &d.event.typed()?, d.event.channel);
    let text = match dialect {
        Dialect::Baidu => render(d, offset)?,
        Dialect::Wechat => render_wechat(d, &tp.wechat.component_appid, wx_appid)?.0,
    };
    Ok((dialect, text))
}

/// A push ready to send: its body and content type, and what the URL's query gains.
struct Prepared {
    body: String,
    content_type: &'static str,
    query: Vec<(&'static str, String)>,
}

/// Renders and seals the delivery in `dialect` with that dialect's keys.
fn prepare(
    tp: &Tp,
    d: &Delivery,
    dialect: Dialect,
    wx_appid: &str,
    at_ms: i64,
    offset: FixedOffset,
) -> Result<Prepared, String> {
    let (random16, nonce) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen::<[u8; 16]>(),
            rng.gen_range(1_000_000u32..10_000_000).to_string(),
        )
    };
    let timestamp = (at_ms / 1000).to_string();
    match dialect {
        Dialect::Baidu => {
            let msg = render(d, offset).map_err(|e| format!("cannot render the event: {e}"))?;
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
            )
            .map_err(|e| format!("cannot encrypt: {e}"))?;
            let body = serde_json::to_string(&sealed).map_err(|e| format!("cannot encode: {e}"))?;
            Ok(Prepared {
                body,
                content_type: "application/json",
                query: vec![],
            })
        }
        Dialect::Wechat => {
            let w = &tp.wechat;
            let (msg, to) = render_wechat(d, &w.component_appid, wx_appid)
                .map_err(|e| format!("cannot render the event: {e}"))?;
            let original_id = smartpkg_core::ids::wechat_original_id(wx_appid);
            let to = match to {
                Addressee::AppId(_) => Addressee::AppId(&w.component_appid),
                Addressee::ToUserName(_) => Addressee::ToUserName(&original_id),
            };
            let sealed = wx::seal(
                &msg,
                &Sealing {
                    encoding_aes_key: &w.encoding_aes_key,
                    token: &w.token,
                    client_id: &w.component_appid,
                    random16,
                    timestamp: &timestamp,
                    nonce: &nonce,
                },
                to,
            )
            .map_err(|e| format!("cannot encrypt: {e}"))?;
            let query = sealed
                .query()
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect();
            Ok(Prepared {
                body: sealed.body,
                content_type: "text/xml",
                query,
            })
        }
    }
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

/// Sends the delivery's event once, in `dialect` (the one [`dialect_of`] picks, decided by
/// the caller). Success is a 2xx whose body, trimmed, is `success` (WeChat's receivers may
/// also answer an empty body). `wx_appid` is the mini program's (empty for a ticket).
#[allow(clippy::too_many_arguments)]
pub async fn attempt(
    client: &reqwest::Client,
    tp: &Tp,
    dialect: Dialect,
    wx_appid: &str,
    d: &Delivery,
    allow_private: bool,
    via_proxy: bool,
    timeout: Duration,
    offset: FixedOffset,
) -> Attempt {
    let at_ms = clock::now_ms();
    // Tickets and authorization events go to the authorization-event URL, audit results to
    // the message URL, of the dialect's settings.
    let (url, url_field) = url_of(tp, dialect, d.event.channel, wx_appid);
    let fail =
        |error: String, status: Option<i64>, body: Option<String>, latency_ms: i64| Attempt {
            record: AttemptRecord {
                at_ms,
                url: url.clone(),
                status,
                latency_ms,
                error: Some(error),
                body,
                dialect,
            },
            delivered: false,
        };
    if url.trim().is_empty() {
        return fail(format!("the third party has no {url_field}"), None, None, 0);
    }
    let mut target = match check_target(&url, allow_private, via_proxy).await {
        Ok(t) => t,
        Err(e) => return fail(e, None, None, 0),
    };
    let prepared = match prepare(tp, d, dialect, wx_appid, at_ms, offset) {
        Ok(p) => p,
        Err(e) => return fail(e, None, None, 0),
    };
    if !prepared.query.is_empty() {
        let mut pairs = target.query_pairs_mut();
        for (k, v) in &prepared.query {
            pairs.append_pair(k, v);
        }
    }
    let start = Instant::now();
    let sent = client
        .post(target)
        .header(EVENT_ID_HEADER, &d.event.uid)
        .header(reqwest::header::CONTENT_TYPE, prepared.content_type)
        .body(prepared.body)
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
    let answer = body.trim_ascii();
    let acknowledged = status.is_success()
        && (answer == b"success" || (dialect == Dialect::Wechat && answer.is_empty()));
    if acknowledged {
        return Attempt {
            record: AttemptRecord {
                at_ms,
                url,
                status: code,
                latency_ms,
                error: None,
                body: Some(excerpt(&body)),
                dialect,
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
