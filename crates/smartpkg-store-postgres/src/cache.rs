//! `package/get`, the hottest read, from memory.
//!
//! Fleet tools poll `get` with the same few tokens; its answer changes only when a package, a
//! token or an app's authorization does. Each instance keeps the answers it read, and drops
//! them all:
//!
//! - when it commits a write itself (before the write's caller hears of it, so an instance
//!   always reads its own writes);
//! - when another instance commits one: triggers on `packages`, `access_tokens` and `apps`
//!   notify `smartpkg_get` at commit, and a listener on every instance drops its answers as
//!   the notification arrives;
//! - while that listener is not connected (nothing is cached until it listens again, since
//!   notifications sent meanwhile are lost), and at the latest [`TTL`] after an answer was
//!   read.
//!
//! So an answer is stale on another instance for as long as a notification takes to arrive
//! (milliseconds on one network), and never longer than [`TTL`]. A read that began before an
//! invalidation does not store what it read (the epoch moved on). Only answers for known
//! tokens are kept, at most [`CAPACITY`] of them: an unknown token costs a database read every
//! time, and cannot fill the memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use smartpkg_store::{Grant, PackageRecord};

/// The longest an answer is served from memory.
pub const TTL: Duration = Duration::from_secs(2);

/// The most tokens whose answers are kept; when full, the cache starts over.
pub const CAPACITY: usize = 4096;

/// The channel the triggers notify (migration 0007).
pub const CHANNEL: &str = "smartpkg_get";

/// The `application_name` of `get`'s connections, for an operator's `pg_stat_activity`.
pub(crate) const APPLICATION_NAME: &str = "smartpkg-get";

/// Keeps a listener on [`CHANNEL`] and drops the cache at every notification; while it is not
/// subscribed, nothing is cached. Ends when the pool closes (or the task is aborted).
pub(crate) async fn listen(pool: sqlx::PgPool, cache: std::sync::Arc<GetCache>) {
    loop {
        let subscribed = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match subscribed.await {
            Ok(mut listener) => {
                // Notifications sent before the subscription are not seen: start afresh.
                cache.set(Some(true));
                // `try_recv` answers None when the connection dropped (notifications sent
                // meanwhile are lost): the cache stops until a new subscription.
                while let Ok(Some(_)) = listener.try_recv().await {
                    cache.invalidate();
                }
                cache.set(Some(false));
            }
            Err(e) => tracing::debug!(error = %e, "get's cache cannot listen for changes"),
        }
        if pool.is_closed() {
            return;
        }
        // Not in a loop while the database is down.
        tokio::time::sleep(Duration::from_secs(1)).await;
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
    answers: HashMap<String, (Instant, Answer)>,
}

impl GetCache {
    /// The answer for `token_hash`, if one fresh enough is kept.
    pub(crate) fn get(&self, token_hash: &str) -> Option<Answer> {
        let inner = self.inner.lock().ok()?;
        let (at, answer) = inner.answers.get(token_hash)?;
        (at.elapsed() < TTL).then(|| answer.clone())
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
        if inner.answers.len() >= CAPACITY {
            inner.answers.clear();
        }
        inner.answers.insert(token_hash, (Instant::now(), answer));
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
    fn a_lost_listener_drops_everything_and_keeps_nothing_new() {
        let cache = live();
        let epoch = cache.epoch().expect("live");
        cache.put("t".into(), answer(1), epoch);
        cache.set(Some(false));
        assert!(cache.get("t").is_none());
        assert_eq!(cache.epoch(), None);
    }

    #[test]
    fn a_full_cache_starts_over_rather_than_grow() {
        let cache = live();
        let epoch = cache.epoch().expect("live");
        for i in 0..=CAPACITY {
            cache.put(format!("t{i}"), answer(1), epoch);
        }
        let kept = cache.inner.lock().expect("lock").answers.len();
        assert!(kept <= CAPACITY, "{kept} answers kept");
        assert!(
            cache.get(&format!("t{CAPACITY}")).is_some(),
            "the newest is kept"
        );
    }
}
