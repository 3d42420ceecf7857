//! A third party's push endpoint for tests: it decrypts and verifies pushes with its own code
//! (written from the spec, not calling smartpkg's), records what it got, and answers as told.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::Value;
use sha1::{Digest, Sha1};

/// How the receiver answers the n-th request (0-based).
#[derive(Clone)]
pub enum Answer {
    Success,
    Status(u16, &'static str),
    Body(&'static str),
    Redirect,
    SleepThenSuccess(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    /// The decrypted event, None when decryption or the signature check failed.
    pub event: Option<Value>,
    pub signature_ok: bool,
    pub client_id_ok: bool,
    pub event_id: Option<String>,
    pub at: Instant,
}

#[cfg(feature = "sandbox")]
pub mod platform;
#[cfg(feature = "sandbox")]
pub mod sandbox;

pub struct Keys {
    pub encoding_aes_key: String,
    pub token: String,
    pub client_id: String,
}

#[derive(Clone)]
struct Shared {
    keys: Arc<Keys>,
    script: Arc<dyn Fn(usize) -> Answer + Send + Sync>,
    got: Arc<Mutex<Vec<Received>>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Listens on `addr` (port 0 for any) and answers the n-th request with `script(n)`.
    pub async fn start(
        addr: SocketAddr,
        keys: Keys,
        script: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> std::io::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            keys: Arc::new(keys),
            script: Arc::new(script),
            got: Arc::default(),
        };
        let got = shared.got.clone();
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, got, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests arrived (or panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < within,
                "receiver got {} of {n} requests",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Decrypts a push as a third party would, from the spec: AES-256-CBC, key = base64(key43 + "="),
/// iv = key[..16], 32-byte padding, random(16) ‖ len(4, BE) ‖ msg ‖ client_id.
pub fn decrypt(keys: &Keys, body: &Value) -> (Option<Value>, bool, bool) {
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (encrypt, ts, nonce, sig) = (
        field("Encrypt"),
        field("TimeStamp"),
        field("Nonce"),
        field("MsgSignature"),
    );
    let mut parts = [keys.token.clone(), ts, nonce, encrypt.clone()];
    parts.sort();
    let signature_ok = hex::encode(Sha1::digest(parts.concat().as_bytes())) == sig;
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let Ok(key) = lenient.decode(format!("{}=", keys.encoding_aes_key)) else {
        return (None, signature_ok, false);
    };
    let Ok(mut data) = base64::engine::general_purpose::STANDARD.decode(&encrypt) else {
        return (None, signature_ok, false);
    };
    let Ok(dec) = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &key[..16]) else {
        return (None, signature_ok, false);
    };
    let Ok(plain) = dec.decrypt_padded_mut::<NoPadding>(&mut data) else {
        return (None, signature_ok, false);
    };
    match unwrap_plain(plain, &keys.client_id) {
        Some((msg, client_id_ok)) => (
            serde_json::from_slice(&msg).ok(),
            signature_ok,
            client_id_ok,
        ),
        None => (None, signature_ok, false),
    }
}

/// random(16) ‖ len(4, BE) ‖ msg ‖ client_id, padded to 32 bytes: the message, and whether
/// the trailing id is `client_id`.
fn unwrap_plain(plain: &[u8], client_id: &str) -> Option<(Vec<u8>, bool)> {
    let pad = plain.last().copied().unwrap_or(0) as usize;
    if pad == 0 || pad > 32 || pad > plain.len() || plain.len() < 20 {
        return None;
    }
    let plain = &plain[..plain.len() - pad];
    let len = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
    if 20 + len > plain.len() {
        return None;
    }
    Some((
        plain[20..20 + len].to_vec(),
        &plain[20 + len..] == client_id.as_bytes(),
    ))
}

/// A WeChat-dialect push as a third party's endpoint receives it.
#[derive(Debug, Clone)]
pub struct WxReceived {
    /// The request's path (WeChat's message URL names the mini program in it).
    pub path: String,
    /// The outer body's addressee element (`AppId` or `ToUserName`) and its value.
    pub addressee: Option<(String, String)>,
    /// The decrypted message's fields, in order; None when the signature or decryption
    /// failed.
    pub fields: Option<Vec<(String, String)>>,
    pub signature_ok: bool,
    pub appid_ok: bool,
    pub content_type: Option<String>,
}

impl WxReceived {
    /// A field of the decrypted message.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The text of the first `<name>…</name>` in `xml`, CDATA unwrapped: plain string search, not
/// smartpkg's XML reader.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    let raw = &xml[start..end];
    Some(match raw.strip_prefix("<![CDATA[") {
        Some(rest) => rest
            .strip_suffix("]]>")
            .unwrap_or(rest)
            .replace("]]]]><![CDATA[>", "]]>"),
        None => raw.to_string(),
    })
}

/// The fields of a flat `<xml>…</xml>` message, by plain string search.
fn flat_fields(xml: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let Some(body) = xml
        .trim()
        .strip_prefix("<xml>")
        .and_then(|b| b.strip_suffix("</xml>"))
    else {
        return out;
    };
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let name = rest[open + 1..open + close].to_string();
        let Some(value) = element(&rest[open..], &name) else {
            break;
        };
        let end_tag = format!("</{name}>");
        let Some(end) = rest[open..].find(&end_tag) else {
            break;
        };
        out.push((name, value));
        rest = &rest[open + end + end_tag.len()..];
    }
    out
}

/// Opens a WeChat push as its third party would, from the spec: `msg_signature` is the SHA-1
/// of the sorted token, timestamp, nonce and Encrypt; the cipher is the one [`decrypt`] opens.
pub fn open_wechat(keys: &Keys, query: &[(String, String)], body: &str) -> WxReceived {
    let q = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let encrypt = element(body, "Encrypt").unwrap_or_default();
    let addressee = ["AppId", "ToUserName"]
        .iter()
        .find_map(|n| element(body, n).map(|v| (n.to_string(), v)));
    let mut parts = [
        keys.token.clone(),
        q("timestamp"),
        q("nonce"),
        encrypt.clone(),
    ];
    parts.sort();
    let signature_ok = q("encrypt_type") == "aes"
        && hex::encode(Sha1::digest(parts.concat().as_bytes())) == q("msg_signature");
    let mut out = WxReceived {
        path: String::new(),
        addressee,
        fields: None,
        signature_ok,
        appid_ok: false,
        content_type: None,
    };
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let (Ok(key), Ok(mut data)) = (
        lenient.decode(format!("{}=", keys.encoding_aes_key)),
        base64::engine::general_purpose::STANDARD.decode(&encrypt),
    ) else {
        return out;
    };
    let Ok(dec) = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &key[..16]) else {
        return out;
    };
    let Ok(plain) = dec.decrypt_padded_mut::<NoPadding>(&mut data) else {
        return out;
    };
    if let Some((msg, appid_ok)) = unwrap_plain(plain, &keys.client_id) {
        out.appid_ok = appid_ok;
        if signature_ok {
            out.fields = Some(flat_fields(&String::from_utf8_lossy(&msg)));
        }
    }
    out
}

/// A WeChat-dialect third party's endpoints: every POST under `/wx/` is opened with
/// [`open_wechat`], recorded, and answered `success`.
pub struct WxReceiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<WxReceived>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WxReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct WxShared {
    keys: Arc<Keys>,
    got: Arc<Mutex<Vec<WxReceived>>>,
}

impl WxReceiver {
    pub async fn start(addr: SocketAddr, keys: Keys) -> std::io::Result<WxReceiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = WxShared {
            keys: Arc::new(keys),
            got: Arc::default(),
        };
        let got = shared.got.clone();
        let app = Router::new()
            .route("/wx/{*rest}", post(receive_wechat))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WxReceiver { addr, got, task })
    }

    /// The URL of one of its endpoints (`auth`, or `msg/$APPID$`, …).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/wx/{path}", self.addr)
    }

    pub fn received(&self) -> Vec<WxReceived> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits until a push satisfying `pred` arrived (or panics after `within`).
    pub async fn wait_for(
        &self,
        within: Duration,
        pred: impl Fn(&WxReceived) -> bool,
    ) -> WxReceived {
        let start = Instant::now();
        loop {
            if let Some(r) = self.received().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                start.elapsed() < within,
                "no such push among {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive_wechat(
    State(s): State<WxShared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    // timestamp, nonce, encrypt_type and msg_signature are digits, letters and hex: no
    // escapes to undo.
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut got = open_wechat(&s.keys, &query, &body);
    got.path = uri.path().to_string();
    got.content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if let Ok(mut all) = s.got.lock() {
        all.push(got);
    }
    "success".into_response()
}

async fn receive(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let (event, signature_ok, client_id_ok) = decrypt(&s.keys, &parsed);
    let n = {
        let Ok(mut got) = s.got.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        got.push(Received {
            event: if signature_ok { event } else { None },
            signature_ok,
            client_id_ok,
            event_id: headers
                .get("x-smartpkg-event-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            at: Instant::now(),
        });
        got.len() - 1
    };
    match (s.script)(n) {
        Answer::Success => "success".into_response(),
        Answer::Status(code, body) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response(),
        Answer::Body(b) => b.into_response(),
        Answer::Redirect => (
            StatusCode::FOUND,
            [("location", "http://127.0.0.1:9/elsewhere")],
            "",
        )
            .into_response(),
        Answer::SleepThenSuccess(d) => {
            tokio::time::sleep(d).await;
            "success".into_response()
        }
    }
}
