//! `package/get`, the hottest read, from memory.
//!
//! Fleet tools poll `get` with the same tokens again and again; its answer changes only when a
//! mini program's package, token or authorization does. Each instance keeps the answers it
//! read, per token, and drops them:
//!
//! - all of them, when it commits a write itself (before the write's caller hears of it, so an
//!   instance always reads its own writes);
//! - a mini program's, when another instance commits a change to it: triggers on `packages`,
//!   `access_tokens` and `apps` notify `smartpkg_get` with the app id at commit (migration
//!   0007), and a listener on every instance drops that app's answers as the notification
//!   arrives;
//! - all of them while that listener is not known to be connected: it pings itself through the
//!   database every [`HEARTBEAT`], and an instance that has not heard its own ping for
//!   [`HEARTBEAT_TIMEOUT`] (a dropped or half-open connection, a database restarting) caches
//!   nothing until it listens again, since notifications sent meanwhile are lost;
//! - and at the latest [`TTL`] after an answer was read, whatever happened.
//!
//! So an answer may be stale on another instance for as long as a notification takes to
//! arrive (milliseconds on one network); if notifications stop arriving, for at most
//! [`HEARTBEAT_TIMEOUT`]. A read that began before an invalidation does not keep what it read
//! (the epoch moved on). Only answers for known tokens are kept, in at most [`CAPACITY`]
//! bytes: an unknown token costs a database read every time, and cannot fill the memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smartpkg_store::{Grant, PackageRecord};

/// The longest an answer is served from memory (a backstop: changes end answers sooner).
pub const TTL: Duration = Duration::from_secs(60);

/// How often the listener pings itself through the database.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long without its own ping before the listener counts as lost.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most memory the answers kept may take (estimated from their texts); past it, answers
/// are dropped until a quarter is free.
pub const CAPACITY: usize = 64 << 20;

/// The channel the triggers notify (migration 0007).
pub const CHANNEL: &str = "smartpkg_get";

/// The `application_name` of `get`'s connections, for an operator's `pg_stat_activity`.
pub(crate) const APPLICATION_NAME: &str = "smartpkg-get";

/// Keeps a listener on [`CHANNEL`] and drops answers at every notification; while it is not
/// known to be subscribed, nothing is cached. Ends when the pool closes (or the task is
/// aborted).
pub(crate) async fn listen(pool: sqlx::PgPool, cache: Arc<GetCache>) {
    // This instance's own heartbeat channel: nobody else hears its pings.
    let ping = format!(
        "smartpkg_get_ping_{}",
        hex::encode(rand::random::<[u8; 8]>())
    );
    let pinger = {
        let (pool, ping) = (pool.clone(), ping.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                if pool.is_closed() {
                    return;
                }
                // A failed ping is noticed by its absence.
                let _ = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(&ping)
                    .execute(&pool)
                    .await;
            }
        })
    };
    loop {
        let subscribed = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
            l.listen_all([CHANNEL, ping.as_str()]).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match subscribed.await {
            Ok(mut listener) => {
                // Notifications sent before the subscription are not seen: start afresh.
                cache.set(Some(true));
                // Pings arrive every second: silence longer than the timeout, or a dropped
                // connection (`None`: notifications sent meanwhile are lost), ends the
                // subscription and stops the cache until a new one.
                while let Ok(Ok(Some(n))) =
                    tokio::time::timeout(HEARTBEAT_TIMEOUT, listener.try_recv()).await
                {
                    if n.channel() == CHANNEL {
                        match n.payload().parse::<i64>() {
                            Ok(app_id) => cache.invalidate_app(app_id),
                            Err(_) => cache.invalidate(),
                        }
                    }
                }
                cache.set(Some(false));
            }
            Err(e) => tracing::debug!(error = %e, "get's cache cannot listen for changes"),
        }
        if pool.is_closed() {
            pinger.abort();
            return;
        }
        // Not in a loop while the database is down.
        tokio::time::sleep(HEARTBEAT).await;
    }
}

pub(crate) type Answer = (Grant, Vec<PackageRecord>);

#[derive(Default)]
pub(crate) struct GetCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Moves on at every invalidation.
    epoch: u64,
    /// Whether the listener is subscribed (nothing is cached while it is not).
    live: bool,
    answers: HashMap<String, Kept>,
    /// The tokens kept per mini program, to drop one program's answers.
    by_app: HashMap<i64, HashSet<String>>,
    /// The estimated size of everything kept.
    bytes: usize,
}

struct Kept {
    at: Instant,
    answer: Arc<Answer>,
    bytes: usize,
}

/// What an answer takes in memory, about: its texts and a fixed share per record.
fn size_of(token_hash: &str, (_, packages): &Answer) -> usize {
    let texts = |p: &PackageRecord| {
        [
            p.version.len(),
            p.version_desc.len(),
            p.ext_json.len(),
            p.built_ext_json.as_ref().map_or(0, String::len),
            p.test_account.as_ref().map_or(0, String::len),
            p.test_password.as_ref().map_or(0, String::len),
            p.audit_content.as_ref().map_or(0, String::len),
            p.remark.len(),
            p.msg.len(),
            p.upload_err_msg.as_ref().map_or(0, String::len),
            p.rollback_version.as_ref().map_or(0, String::len),
            p.archive_sha256.as_ref().map_or(0, String::len),
        ]
        .iter()
        .sum::<usize>()
            + 400
    };
    // The token is kept twice (the answers and the program's set).
    2 * token_hash.len() + 200 + packages.iter().map(texts).sum::<usize>()
}

impl Inner {
    fn drop_token(&mut self, token_hash: &str) {
        if let Some(k) = self.answers.remove(token_hash) {
            self.bytes -= k.bytes;
            let app = k.answer.0.app_id.get();
            if let Some(set) = self.by_app.get_mut(&app) {
                set.remove(token_hash);
                if set.is_empty() {
                    self.by_app.remove(&app);
                }
            }
        }
    }
}

impl GetCache {
    /// The answer for `token_hash`, if one fresh enough is kept.
    pub(crate) fn get(&self, token_hash: &str) -> Option<Answer> {
        let kept = {
            let inner = self.inner.lock().ok()?;
            let kept = inner.answers.get(token_hash)?;
            (kept.at.elapsed() < TTL).then(|| kept.answer.clone())?
        };
        // Copied outside the lock: concurrent callers wait for a lookup, not for a copy.
        Some((*kept).clone())
    }

    /// The epoch a read starts in; None while nothing may be cached.
    pub(crate) fn epoch(&self) -> Option<u64> {
        let inner = self.inner.lock().ok()?;
        inner.live.then_some(inner.epoch)
    }

    /// Keeps an answer read in `epoch`, unless an invalidation came since.
    pub(crate) fn put(&self, token_hash: String, answer: Answer, epoch: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.live || inner.epoch != epoch {
            return;
        }
        inner.drop_token(&token_hash);
        let bytes = size_of(&token_hash, &answer);
        if inner.bytes + bytes > CAPACITY {
            // Whichever come first (a hash map's order): cheap, and no worse than any other
            // choice for tokens polled at random.
            let goal = CAPACITY / 4 * 3;
            let victims: Vec<String> = inner
                .answers
                .iter()
                .scan(inner.bytes, |left, (k, v)| {
                    (*left > goal).then(|| {
                        *left -= v.bytes;
                        k.clone()
                    })
                })
                .collect();
            for k in victims {
                inner.drop_token(&k);
            }
        }
        let app = answer.0.app_id.get();
        inner
            .by_app
            .entry(app)
            .or_default()
            .insert(token_hash.clone());
        let kept = Kept {
            at: Instant::now(),
            answer: Arc::new(answer),
            bytes,
        };
        inner.answers.insert(token_hash, kept);
        inner.bytes += bytes;
    }

    /// Drops one mini program's answers.
    pub(crate) fn invalidate_app(&self, app_id: i64) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch = inner.epoch.wrapping_add(1);
            for token in inner.by_app.remove(&app_id).unwrap_or_default() {
                inner.drop_token(&token);
            }
        }
    }

    /// Drops every answer.
    pub(crate) fn invalidate(&self) {
        self.set(None);
    }

    /// Drops every answer; with `live`, whether answers may be kept from now on.
    pub(crate) fn set(&self, live: Option<bool>) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch = inner.epoch.wrapping_add(1);
            inner.answers.clear();
            inner.by_app.clear();
            inner.bytes = 0;
            if let Some(live) = live {
                inner.live = live;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartpkg_core::ids::{AppId, TpId};

    fn answer(app_id: i64) -> Answer {
        let grant = Grant {
            app_id: AppId(app_id),
            tp_id: TpId(1),
            expires_at_ms: 0,
        };
        (grant, vec![])
    }

    fn live() -> GetCache {
        let cache = GetCache::default();
        cache.set(Some(true));
        cache
    }

    #[test]
    fn nothing_is_kept_until_the_listener_listens() {
        let cache = GetCache::default();
        assert_eq!(cache.epoch(), None);
        cache.put("t".into(), answer(1), 0);
        assert!(cache.get("t").is_none());
    }

    #[test]
    fn an_answer_read_before_an_invalidation_is_not_kept() {
        let cache = live();
        let epoch = cache.epoch().expect("live");
        cache.invalidate();
        cache.put("t".into(), answer(1), epoch);
        assert!(cache.get("t").is_none(), "a stale read was kept");
        let epoch = cache.epoch().expect("live");
        cache.put("t".into(), answer(2), epoch);
        assert_eq!(cache.get("t").map(|(g, _)| g.app_id), Some(AppId(2)));
        cache.invalidate();
        assert!(
            cache.get("t").is_none(),
            "an invalidation drops what is kept"
        );
    }

    #[test]
    fn a_change_to_one_mini_program_drops_its_answers_only() {
        let cache = live();
        let epoch = cache.epoch().expect("live");
        cache.put("one-a".into(), answer(1), epoch);
        cache.put("one-b".into(), answer(1), epoch);
        cache.put("two".into(), answer(2), epoch);
        cache.invalidate_app(1);
        assert!(cache.get("one-a").is_none() && cache.get("one-b").is_none());
        assert_eq!(cache.get("two").map(|(g, _)| g.app_id), Some(AppId(2)));
        let inner = cache.inner.lock().expect("lock");
        assert_eq!(inner.bytes, size_of("two", &answer(2)), "the total follows");
        assert!(!inner.by_app.contains_key(&1));
    }

    #[test]
    fn a_lost_listener_drops_everything_and_keeps_nothing_new() {
        let cache = live();
        let epoch = cache.epoch().expect("live");
        cache.put("t".into(), answer(1), epoch);
        cache.set(Some(false));
        assert!(cache.get("t").is_none());
        assert_eq!(cache.epoch(), None);
    }

    #[test]
    fn a_full_cache_drops_answers_rather_than_grow() {
        let cache = live();
        let epoch = cache.epoch().expect("live");
        let each = size_of("t0", &answer(1));
        let fit = CAPACITY / each;
        for i in 0..fit + 10 {
            cache.put(format!("t{i}"), answer(1), epoch);
        }
        let inner = cache.inner.lock().expect("lock");
        assert!(inner.bytes <= CAPACITY, "{} bytes kept", inner.bytes);
        assert!(inner.answers.len() < fit, "some answers were dropped");
        let counted: usize = inner.answers.values().map(|k| k.bytes).sum();
        assert_eq!(counted, inner.bytes, "the running total is the sum");
        drop(inner);
        assert!(
            cache.get(&format!("t{}", fit + 9)).is_some(),
            "the newest is kept"
        );
    }
}
