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
    /// What a quiet key may spend at once (calls, or bytes).
    capacity: f64,
    /// How fast a bucket refills, per second: `capacity` over the window.
    per_sec: f64,
    entries: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl Buckets {
    /// `capacity` units over `window`, refilled continuously. A capacity of 0 is off.
    pub fn new(capacity: u64, window: Duration) -> Self {
        let capacity = capacity as f64;
        Buckets {
            capacity,
            per_sec: capacity / window.as_secs_f64().max(0.001),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `per_minute` calls a minute, which is also the burst.
    pub fn per_minute(per_minute: u32) -> Self {
        Buckets::new(per_minute.into(), Duration::from_secs(60))
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub fn take(&self, key: i64) -> Result<(), Duration> {
        self.take_n(key, 1)
    }

    /// Takes `n` units for `key`, or says how long until they are there (`Duration::MAX`
    /// when `n` is more than the bucket holds, so they never will be).
    pub fn take_n(&self, key: i64, n: u64) -> Result<(), Duration> {
        if self.capacity == 0.0 {
            return Ok(());
        }
        let n = n as f64;
        if n > self.capacity {
            return Err(Duration::MAX);
        }
        let now = Instant::now();
        let Ok(mut map) = self.entries.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_KEYS && !map.contains_key(&key) {
            let (cap, per_sec) = (self.capacity, self.per_sec);
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < cap
            });
        }
        let (tokens, at) = map.entry(key).or_insert((self.capacity, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.capacity);
        *at = now;
        if *tokens >= n {
            *tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - *tokens) / self.per_sec))
        }
    }

    /// Gives back `n` units taken for a call that was then refused by another limit.
    pub fn refund(&self, key: i64, n: u64) {
        if let Ok(mut map) = self.entries.lock() {
            if let Some((tokens, _)) = map.get_mut(&key) {
                *tokens = (*tokens + n as f64).min(self.capacity);
            }
        }
    }
}

/// The write limits of the Baidu API: calls, and the bytes uploads ask us to keep.
pub struct WriteLimits {
    pub per_app: Buckets,
    pub per_tp: Buckets,
    pub bytes_per_app: Buckets,
    pub bytes_per_tp: Buckets,
}

impl WriteLimits {
    pub fn new(s: &crate::config::Settings) -> Self {
        let window = Duration::from_secs(s.upload_budget_window_s);
        WriteLimits {
            per_app: Buckets::per_minute(s.app_writes_per_minute),
            per_tp: Buckets::per_minute(s.tp_writes_per_minute),
            bytes_per_app: Buckets::new(s.app_upload_bytes_per_window, window),
            bytes_per_tp: Buckets::new(s.tp_upload_bytes_per_window, window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_the_wait() {
        let b = Buckets::per_minute(3);
        for _ in 0..3 {
            assert!(b.take(7).is_ok());
        }
        let wait = b.take(7).expect_err("empty");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(b.take(8).is_ok(), "other keys have their own bucket");
        let off = Buckets::per_minute(0);
        for _ in 0..1000 {
            assert!(off.take(1).is_ok());
        }
    }

    #[test]
    fn a_byte_budget_refuses_what_would_pass_it_and_never_more_than_it_holds() {
        let b = Buckets::new(1000, Duration::from_secs(100));
        assert!(b.take_n(1, 600).is_ok());
        // 400 left, refilling 10 a second: 500 more is there in 10 s.
        let wait = b.take_n(1, 500).expect_err("over the budget");
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert!(b.take_n(1, 400).is_ok(), "a refusal takes nothing");
        b.refund(1, 300);
        assert!(b.take_n(1, 300).is_ok(), "a refund is spendable again");
        assert_eq!(b.take_n(2, 1001), Err(Duration::MAX));
    }
}
