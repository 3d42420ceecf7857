//! The mini program owner's credential and the guards of the authorization page.
//!
//! The owner proves who they are with a password that only the owner holds: it is shown once
//! when the operator creates the mini program (or resets it), kept only as an argon2 hash, and
//! returned by no API. The `app_key`, which `app/info` and QR links expose, authorizes nothing.
//!
//! Failed attempts are throttled per mini program and per client address; the page's form
//! carries a CSRF token derived from the pre-auth code with a server-wide key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets;

/// Shortest owner password an operator may choose.
pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("a password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} characters, without control characters")]
    Weak,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// A new random owner password: 24 characters from a 62-letter alphabet (~143 bits).
pub fn generate_password() -> String {
    secrets::random_alnum(24)
}

pub fn check_password_shape(pw: &str) -> Result<(), CredentialError> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD_CHARS || pw.len() > MAX_PASSWORD_BYTES || pw.chars().any(char::is_control) {
        return Err(CredentialError::Weak);
    }
    Ok(())
}

/// The argon2id PHC string of `pw`, computed off the async threads (it takes tens of ms by
/// design).
pub async fn hash_password(pw: String) -> Result<String, CredentialError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| CredentialError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| CredentialError::Hash(e.to_string()))?
}

/// Whether `pw` matches the stored hash; a missing or malformed hash never matches. Without a
/// hash a dummy one is still computed, so the answer takes as long whether or not the app
/// exists.
pub async fn verify_password(pw: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let pw = pw.as_bytes();
        match stored.as_deref().map(PasswordHash::new) {
            Some(Ok(h)) => Argon2::default().verify_password(pw, &h).is_ok(),
            _ => {
                let salt = SaltString::generate(&mut OsRng);
                let _ = Argon2::default().hash_password(pw, &salt);
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// The CSRF token of the authorization form: an HMAC of the pre-auth code under a server-wide
/// key, so it is valid for that code only and needs no storage.
pub fn csrf_token(key: &str, pre_auth_code: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(b"smartpkg authorization form\0");
    mac.update(pre_auth_code.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn csrf_valid(key: &str, pre_auth_code: &str, given: &str) -> bool {
    !given.is_empty() && secrets::constant_time_eq(&csrf_token(key, pre_auth_code), given)
}

/// Counts failures in a fixed window per key; once `max` is reached the key is refused until
/// its window ends. Memory is bounded: at most `capacity` keys, expired windows swept first.
pub struct Throttle {
    max: u32,
    window: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(max: u32, window: Duration, capacity: usize) -> Self {
        Throttle {
            max,
            window,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The time left before `key` may try again, if it is locked out now.
    pub fn locked(&self, key: &str) -> Option<Duration> {
        let map = self.entries.lock().ok()?;
        let (start, n) = map.get(key)?;
        let left = self.window.checked_sub(start.elapsed())?;
        (*n >= self.max).then_some(left)
    }

    pub fn fail(&self, key: &str) {
        let Ok(mut map) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if map.len() >= self.capacity && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
            if map.len() >= self.capacity {
                // Still full of live windows: forget the oldest rather than grow without end.
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        let e = map.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    pub fn clear(&self, key: &str) {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(key);
        }
    }
}

/// The two throttles of the authorization page.
pub struct Guards {
    pub per_app: Throttle,
    pub per_client: Throttle,
}

impl Guards {
    pub fn new(per_app: u32, per_client: u32, window: Duration) -> Self {
        Guards {
            per_app: Throttle::new(per_app, window, 100_000),
            per_client: Throttle::new(per_client, window, 100_000),
        }
    }

    pub fn app_key(app_id: i64) -> String {
        format!("app:{app_id}")
    }

    pub fn client_key(ip: IpAddr) -> String {
        // IPv6 clients get a /64 each: one host holds a whole /64 as easily as one address.
        match ip {
            IpAddr::V4(v4) => format!("ip:{v4}"),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hashed_password_verifies_and_others_do_not() {
        let h = hash_password("correct horse battery".into())
            .await
            .expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery".into(), Some(h.clone())).await);
        assert!(!verify_password("correct horse batterx".into(), Some(h)).await);
        assert!(!verify_password("anything".into(), None).await);
        assert!(!verify_password("anything".into(), Some("not a hash".into())).await);
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_code_and_key() {
        let t = csrf_token("k1", "code-a");
        assert!(csrf_valid("k1", "code-a", &t));
        assert!(!csrf_valid("k1", "code-b", &t));
        assert!(!csrf_valid("k2", "code-a", &t));
        assert!(!csrf_valid("k1", "code-a", ""));
    }

    #[test]
    fn a_throttle_locks_after_max_failures_and_forgets_on_clear() {
        let t = Throttle::new(3, Duration::from_secs(60), 10);
        for _ in 0..2 {
            t.fail("a");
        }
        assert!(t.locked("a").is_none());
        t.fail("a");
        assert!(t.locked("a").is_some());
        assert!(t.locked("b").is_none());
        t.clear("a");
        assert!(t.locked("a").is_none());
    }

    #[test]
    fn a_throttle_keeps_at_most_its_capacity() {
        let t = Throttle::new(1, Duration::from_secs(60), 5);
        for i in 0..50 {
            t.fail(&format!("k{i}"));
        }
        assert!(t.entries.lock().expect("lock").len() <= 5);
        assert!(t.locked("k49").is_some());
    }

    #[test]
    fn passwords_need_twelve_characters_and_no_controls() {
        assert!(check_password_shape("short").is_err());
        assert!(check_password_shape("twelve chars").is_ok());
        assert!(check_password_shape("twelve\nchars!").is_err());
        assert!(check_password_shape(&generate_password()).is_ok());
    }
}
