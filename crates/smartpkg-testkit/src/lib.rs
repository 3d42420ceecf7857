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
    let pad = plain.last().copied().unwrap_or(0) as usize;
    if pad == 0 || pad > 32 || pad > plain.len() || plain.len() < 20 {
        return (None, signature_ok, false);
    }
    let plain = &plain[..plain.len() - pad];
    let len = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
    if 20 + len > plain.len() {
        return (None, signature_ok, false);
    }
    let msg = &plain[20..20 + len];
    let client_id_ok = &plain[20 + len..] == keys.client_id.as_bytes();
    (serde_json::from_slice(msg).ok(), signature_ok, client_id_ok)
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
