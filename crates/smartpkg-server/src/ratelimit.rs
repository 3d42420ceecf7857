//! Limits on write calls per mini program and per third party: token buckets that refill
//! continuously, answered with Baidu's call-limit errno (50029) when empty.
//!
//! The buckets live in this process: with several instances each enforces the limit on the
//! calls it serves (documented in docs/configuration.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept at most; past that, full (idle) buckets are forgotten first.
const MAX_KEYS: usize = 200_000;

pub struct Buckets {
    /// Calls per minute, which is also the burst a quiet key may spend at once.
    per_minute: u32,
    entries: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl Buckets {
    pub fn new(per_minute: u32) -> Self {
        Buckets {
            per_minute,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is there. A limit of 0 is off.
    pub fn take(&self, key: i64) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let cap = self.per_minute as f64;
        let per_sec = cap / 60.0;
        let now = Instant::now();
        let Ok(mut map) = self.entries.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_KEYS && !map.contains_key(&key) {
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < cap
            });
        }
        let (tokens, at) = map.entry(key).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }
}

/// The write limits of the Baidu API.
pub struct WriteLimits {
    pub per_app: Buckets,
    pub per_tp: Buckets,
}

impl WriteLimits {
    pub fn new(app_per_minute: u32, tp_per_minute: u32) -> Self {
        WriteLimits {
            per_app: Buckets::new(app_per_minute),
            per_tp: Buckets::new(tp_per_minute),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_the_wait() {
        let b = Buckets::new(3);
        for _ in 0..3 {
            assert!(b.take(7).is_ok());
        }
        let wait = b.take(7).expect_err("empty");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(b.take(8).is_ok(), "other keys have their own bucket");
        let off = Buckets::new(0);
        for _ in 0..1000 {
            assert!(off.take(1).is_ok());
        }
    }
}
