use super::*;
use smartpkg_core::push::Event;

/// An event to queue for a third party.
pub(crate) struct NewEvent<'a> {
    pub(crate) tp_id: i64,
    /// 0 for a ticket, which concerns the third party alone.
    pub(crate) app_id: i64,
    pub(crate) event: &'a Event,
}

/// Writes an event, its delivery and the push job, in the caller's transaction (outbox).
/// Without a URL there is nowhere to deliver: an audit result still gets a delivery that says
/// so (the operator can replay it once the URL is set); authorization pushes are skipped.
pub(crate) fn queue_event(tx: &Transaction<'_>, e: NewEvent<'_>, now_ms: i64) -> Result<()> {
    let cols = e.event.columns();
    let channel = Channel::of(&cols);
    let column = channel.url_field();
    let url: String = tx.query_row(
        &format!("SELECT {column} FROM tps WHERE tp_id = ?1"),
        [e.tp_id],
        |r| r.get(0),
    )?;
    if url.trim().is_empty() && channel == Channel::Auth {
        return Ok(());
    }
    let uid = hex::encode(rand::random::<[u8; 16]>());
    // The column predates the Option: 0 stands for "no package".
    let package_id = cols.package_id.unwrap_or(0);
    tx.prepare_cached(
        "INSERT INTO events (uid, tp_id, app_id, package_id, event, reason, package_version, created_at, channel, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![uid, e.tp_id, e.app_id, package_id, cols.name, cols.reason, cols.package_version, now_ms, channel.as_str(), cols.payload])?;
    let event_id = tx.last_insert_rowid();
    let (state, error, next) = if url.trim().is_empty() {
        (
            DeliveryState::Failed,
            Some(format!("the third party has no {column}")),
            None,
        )
    } else {
        (DeliveryState::Pending, None, Some(now_ms))
    };
    tx.prepare_cached(
        "INSERT INTO deliveries (event_id, tp_id, url, state, last_error, next_attempt_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![event_id, e.tp_id, url, state.as_str(), error, next, now_ms])?;
    if state == DeliveryState::Pending {
        insert_push_job(tx, package_id, tx.last_insert_rowid(), now_ms)?;
    }
    Ok(())
}

/// An authorization event (AUTHORIZED, UPDATE_AUTHORIZED, UNAUTHORIZED) about `app_id`.
pub(crate) fn auth_event(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: i64,
    event: &Event,
    now_ms: i64,
) -> Result<()> {
    let e = NewEvent {
        tp_id,
        app_id,
        event,
    };
    queue_event(tx, e, now_ms)
}

/// The audit-result event of a decision, in the deciding transaction.
pub(crate) fn outbox(
    tx: &Transaction<'_>,
    tp_id: i64,
    package_id: i64,
    pass: bool,
    reason: &str,
    now_ms: i64,
) -> Result<()> {
    let (app_id, version): (i64, String) = tx.query_row(
        "SELECT app_id, version FROM packages WHERE package_id = ?1",
        [package_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let event = Event::audit(package_id, version, pass, reason);
    let e = NewEvent {
        tp_id,
        app_id,
        event: &event,
    };
    queue_event(tx, e, now_ms)
}

pub(crate) fn insert_push_job(
    tx: &Transaction<'_>,
    package_id: i64,
    delivery_id: i64,
    run_at: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO jobs (kind, package_id, delivery_id, run_at, created_at, target) \
         VALUES ('push', ?1, ?2, ?3, ?3, (SELECT tp_id FROM deliveries WHERE delivery_id = ?2))",
    )?
    .execute(params![package_id, delivery_id, run_at])?;
    Ok(())
}

pub(crate) const DELIVERY_COLS: &str = smartpkg_store::delivery_columns!();

pub(crate) fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    decoded(Delivery::from_row(&Cols::new(r)))
}

pub(crate) fn push_target_row(r: &Row<'_>) -> rusqlite::Result<PushTarget> {
    decoded(PushTarget::from_row(&Cols::new(r)))
}

/// Updates the delivery's target after an attempt: a success ends its failing run (and any
/// hold); a failure lengthens it and, past the policy's threshold, holds the target. Returns
/// the hold's end when this attempt started one.
pub(crate) fn settle_target(
    tx: &Transaction<'_>,
    delivery_id: i64,
    a: &AttemptRecord,
    verdict: TargetVerdict,
) -> Result<Option<i64>> {
    let tp_id: i64 = tx.query_row(
        "SELECT tp_id FROM deliveries WHERE delivery_id = ?1",
        [delivery_id],
        |r| r.get(0),
    )?;
    tx.prepare_cached(
        "INSERT INTO push_targets (tp_id, updated_at) VALUES (?1, ?2) ON CONFLICT (tp_id) DO NOTHING",
    )?
    .execute(params![tp_id, a.at_ms])?;
    match verdict {
        TargetVerdict::Succeeded => {
            tx.prepare_cached(
                "UPDATE push_targets SET consecutive_failures = 0, failing_since = NULL, hold_until = NULL, updated_at = ?2 WHERE tp_id = ?1",
            )?
            .execute(params![tp_id, a.at_ms])?;
            Ok(None)
        }
        TargetVerdict::Failed { hold } => {
            let failures: i64 = tx.query_row(
                "UPDATE push_targets SET consecutive_failures = consecutive_failures + 1, \
                   failing_since = COALESCE(failing_since, ?2), last_error = ?3, updated_at = ?2 \
                 WHERE tp_id = ?1 RETURNING consecutive_failures",
                params![tp_id, a.at_ms, a.error],
                |r| r.get(0),
            )?;
            let Some(ms) = hold.hold_ms(failures) else {
                return Ok(None);
            };
            let until = a.at_ms.saturating_add(ms);
            tx.prepare_cached(
                "UPDATE push_targets SET hold_until = ?2, holds = holds + 1 WHERE tp_id = ?1",
            )?
            .execute(params![tp_id, until])?;
            Ok(Some(until))
        }
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn get_delivery(&self, delivery_id: i64) -> StoreResult<Option<Delivery>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries d JOIN events e ON e.event_id = d.event_id WHERE d.delivery_id = ?1"
            ))?
            .query_row([delivery_id], delivery_row)
            .optional()?)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        tp_id: Option<i64>,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries d JOIN events e ON e.event_id = d.event_id \
                 WHERE (?1 IS NULL OR d.tp_id = ?1) AND (?2 IS NULL OR d.state = ?2) AND (?4 IS NULL OR d.delivery_id < ?4) ORDER BY d.delivery_id DESC LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![tp_id, state.map(DeliveryState::as_str), limit, before], delivery_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn delivery_attempts(&self, delivery_id: i64) -> StoreResult<Vec<AttemptRecord>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, url, status, latency_ms, error, body FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt_id",
            )?;
            let rows = stmt
                .query_map([delivery_id], |r| {
                    Ok(AttemptRecord {
                        at_ms: r.get(0)?,
                        url: r.get(1)?,
                        status: r.get(2)?,
                        latency_ms: r.get(3)?,
                        error: r.get(4)?,
                        body: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn record_attempt(
        &self,
        job: JobRef,
        delivery_id: i64,
        a: AttemptRecord,
        outcome: AttemptOutcome,
        target: TargetVerdict,
    ) -> StoreResult<Option<i64>> {
        self.write(move |tx| {
            // Only the lease holder settles the attempt; a late worker changes nothing.
            let n = tx
                .prepare_cached("SELECT COUNT(*) FROM jobs WHERE job_id = ?1 AND lease_token = ?2")?
                .query_row(params![job.job_id, job.lease], |r| r.get::<_, i64>(0))?;
            lease_held(n as usize, job)?;
            let held = settle_target(tx, delivery_id, &a, target)?;
            tx.prepare_cached(
                "INSERT INTO delivery_attempts (delivery_id, at, url, status, latency_ms, error, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![delivery_id, a.at_ms, a.url, a.status, a.latency_ms, a.error, a.body])?;
            let (state, next, delivered_at) = match outcome {
                AttemptOutcome::Delivered => (DeliveryState::Delivered, None, Some(a.at_ms)),
                AttemptOutcome::RetryAt(t) => (DeliveryState::Pending, Some(t), None),
                AttemptOutcome::GaveUp => (DeliveryState::Failed, None, None),
            };
            tx.prepare_cached(
                "UPDATE deliveries SET state = ?1, attempts = attempts + 1, cycle_attempts = cycle_attempts + 1, \
                   last_status = ?2, last_error = ?3, next_attempt_at = ?4, url = ?5, \
                   delivered_at = COALESCE(?6, delivered_at) WHERE delivery_id = ?7",
            )?
            .execute(params![state.as_str(), a.status, a.error, next, a.url, delivered_at, delivery_id])?;
            match next {
                Some(t) => {
                    tx.prepare_cached("UPDATE jobs SET run_at = ?1, lease_until = NULL, lease_token = NULL WHERE job_id = ?2")?
                        .execute(params![t, job.job_id])?;
                }
                // Acknowledged or given up: the job goes with the same commit, so an
                // acknowledged event is never sent again unless replayed on purpose.
                None => {
                    tx.prepare_cached("DELETE FROM jobs WHERE job_id = ?1")?.execute([job.job_id])?;
                }
            }
            Ok(held)
        })
        .await
    }

    async fn redeliver(&self, delivery_id: i64, now_ms: i64) -> StoreResult<()> {
        self.write(move |tx| {
            let package_id: Option<i64> = tx
                .query_row(
                    "SELECT e.package_id FROM deliveries d JOIN events e ON e.event_id = d.event_id WHERE d.delivery_id = ?1",
                    [delivery_id],
                    |r| r.get(0),
                )
                .optional()?;
            let package_id = package_id.ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
            tx.execute(
                "UPDATE deliveries SET state = 'pending', cycle_attempts = 0, next_attempt_at = ?1 WHERE delivery_id = ?2",
                params![now_ms, delivery_id],
            )?;
            // A replay is the operator's call to try now: it lifts the target's hold for this
            // probe (the failing run stays, so a failure holds the target again at once).
            tx.execute(
                "UPDATE push_targets SET hold_until = NULL WHERE tp_id = (SELECT tp_id FROM deliveries WHERE delivery_id = ?1)",
                [delivery_id],
            )?;
            // One push job per delivery: move a waiting one forward, or add one.
            let moved = tx.execute(
                "UPDATE jobs SET run_at = ?1 WHERE kind = 'push' AND delivery_id = ?2",
                params![now_ms, delivery_id],
            )?;
            if moved == 0 {
                insert_push_job(tx, package_id, delivery_id, now_ms)?;
            }
            Ok(())
        })
        .await
    }

    async fn push_targets(&self) -> StoreResult<Vec<PushTarget>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT tp_id, consecutive_failures, failing_since, hold_until, holds, last_error FROM push_targets ORDER BY tp_id",
            )?;
            let rows = stmt.query_map([], push_target_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn resume_target(&self, tp_id: i64) -> StoreResult<bool> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE push_targets SET hold_until = NULL, consecutive_failures = 0, failing_since = NULL WHERE tp_id = ?1",
                [tp_id],
            )?;
            // A third party never pushed to has no record, and nothing to resume: still known.
            Ok(tx.query_row("SELECT EXISTS (SELECT 1 FROM tps WHERE tp_id = ?1)", [tp_id], |r| r.get(0))?)
        })
        .await
    }
}
