use async_trait::async_trait;
use smartpkg_core::push::Event;
use smartpkg_store::{
    AttemptOutcome, AttemptRecord, Channel, Delivery, DeliveryState, DeliveryStore, JobRef,
    PushTarget, Result, StoreError, TargetVerdict,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{Cols, Db, PgStore};

/// An event to queue for a third party.
pub(crate) struct NewEvent<'a> {
    pub(crate) tp_id: i64,
    /// 0 for a ticket, which concerns the third party alone.
    pub(crate) app_id: i64,
    pub(crate) event: &'a Event,
}

/// Writes an event, its delivery and the push job in the caller's transaction (outbox).
/// Without a URL there is nowhere to deliver: an audit result still gets a delivery that says
/// so; authorization pushes are skipped.
pub(crate) async fn queue_event(c: &mut PgConnection, e: NewEvent<'_>, now_ms: i64) -> Result<()> {
    let cols = e.event.columns();
    let channel = Channel::of(&cols);
    let column = channel.url_field();
    let url: String = sqlx::query_scalar(&format!("SELECT {column} FROM tps WHERE tp_id = $1"))
        .bind(e.tp_id)
        .fetch_one(&mut *c)
        .await
        .db()?;
    if url.trim().is_empty() && channel == Channel::Auth {
        return Ok(());
    }
    let uid = hex::encode(rand::random::<[u8; 16]>());
    let event_id: i64 = sqlx::query_scalar(
        "INSERT INTO events (uid, tp_id, app_id, package_id, event, reason, package_version, created_at, channel, payload) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING event_id",
    )
    .bind(uid)
    .bind(e.tp_id)
    .bind(e.app_id)
    .bind(cols.package_id)
    .bind(cols.name)
    .bind(&cols.reason)
    .bind(&cols.package_version)
    .bind(now_ms)
    .bind(channel.as_str())
    .bind(&cols.payload)
    .fetch_one(&mut *c)
    .await
    .db()?;
    let (state, error, next) = if url.trim().is_empty() {
        (
            DeliveryState::Failed,
            Some(format!("the third party has no {column}")),
            None,
        )
    } else {
        (DeliveryState::Pending, None, Some(now_ms))
    };
    let delivery_id: i64 = sqlx::query_scalar(
        "INSERT INTO deliveries (event_id, tp_id, url, state, last_error, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING delivery_id",
    )
    .bind(event_id)
    .bind(e.tp_id)
    .bind(&url)
    .bind(state.as_str())
    .bind(error)
    .bind(next)
    .bind(now_ms)
    .fetch_one(&mut *c)
    .await
    .db()?;
    if state == DeliveryState::Pending {
        insert_push_job(
            c,
            cols.package_id.unwrap_or(0),
            delivery_id,
            e.tp_id,
            now_ms,
        )
        .await?;
    }
    Ok(())
}

/// An authorization event (AUTHORIZED, UPDATE_AUTHORIZED, UNAUTHORIZED) about `app_id`.
pub(crate) async fn auth_event(
    c: &mut PgConnection,
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
    queue_event(c, e, now_ms).await
}

/// The audit-result event of a decision, in the deciding transaction.
pub(crate) async fn outbox(
    c: &mut PgConnection,
    tp_id: i64,
    package_id: i64,
    pass: bool,
    reason: &str,
    now_ms: i64,
) -> Result<()> {
    let (app_id, version): (i64, String) =
        sqlx::query_as("SELECT app_id, version FROM packages WHERE package_id = $1")
            .bind(package_id)
            .fetch_one(&mut *c)
            .await
            .db()?;
    let event = Event::audit(package_id, version, pass, reason);
    let e = NewEvent {
        tp_id,
        app_id,
        event: &event,
    };
    queue_event(c, e, now_ms).await
}

async fn insert_push_job(
    c: &mut PgConnection,
    package_id: i64,
    delivery_id: i64,
    target: i64,
    run_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (kind, package_id, delivery_id, run_at, created_at, target) VALUES ('push', $1, $2, $3, $3, $4)",
    )
    .bind(package_id)
    .bind(delivery_id)
    .bind(run_at)
    .bind(target)
    .execute(c)
    .await
    .db()?;
    Ok(())
}

const DELIVERY_COLS: &str = smartpkg_store::delivery_columns!();

fn delivery_row(r: &PgRow) -> Result<Delivery> {
    Delivery::from_row(&Cols(r))
}

fn push_target_row(r: &PgRow) -> Result<PushTarget> {
    PushTarget::from_row(&Cols(r))
}

/// Updates the delivery's target after an attempt (see the SQLite backend for the rules).
async fn settle_target(
    c: &mut PgConnection,
    delivery_id: i64,
    a: &AttemptRecord,
    verdict: TargetVerdict,
) -> Result<Option<i64>> {
    let tp_id: i64 = sqlx::query_scalar("SELECT tp_id FROM deliveries WHERE delivery_id = $1")
        .bind(delivery_id)
        .fetch_one(&mut *c)
        .await
        .db()?;
    sqlx::query(
        "INSERT INTO push_targets (tp_id, updated_at) VALUES ($1, $2) ON CONFLICT (tp_id) DO NOTHING",
    )
    .bind(tp_id)
    .bind(a.at_ms)
    .execute(&mut *c)
    .await
    .db()?;
    match verdict {
        TargetVerdict::Succeeded => {
            sqlx::query(
                "UPDATE push_targets SET consecutive_failures = 0, failing_since = NULL, hold_until = NULL, updated_at = $2 WHERE tp_id = $1",
            )
            .bind(tp_id)
            .bind(a.at_ms)
            .execute(&mut *c)
            .await
            .db()?;
            Ok(None)
        }
        TargetVerdict::Failed { hold } => {
            let failures: i64 = sqlx::query_scalar(
                "UPDATE push_targets SET consecutive_failures = consecutive_failures + 1, \
                   failing_since = COALESCE(failing_since, $2), last_error = $3, updated_at = $2 \
                 WHERE tp_id = $1 RETURNING consecutive_failures",
            )
            .bind(tp_id)
            .bind(a.at_ms)
            .bind(&a.error)
            .fetch_one(&mut *c)
            .await
            .db()?;
            let Some(ms) = hold.hold_ms(failures) else {
                return Ok(None);
            };
            let until = a.at_ms.saturating_add(ms);
            sqlx::query(
                "UPDATE push_targets SET hold_until = $2, holds = holds + 1 WHERE tp_id = $1",
            )
            .bind(tp_id)
            .bind(until)
            .execute(&mut *c)
            .await
            .db()?;
            Ok(Some(until))
        }
    }
}

#[async_trait]
impl DeliveryStore for PgStore {
    async fn get_delivery(&self, delivery_id: i64) -> Result<Option<Delivery>> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries d JOIN events e ON e.event_id = d.event_id WHERE d.delivery_id = $1"
        ))
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await
        .db()?
        .map(|r| delivery_row(&r))
        .transpose()
    }

    async fn list_deliveries(
        &self,
        tp_id: Option<i64>,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries d JOIN events e ON e.event_id = d.event_id \
             WHERE ($1::BIGINT IS NULL OR d.tp_id = $1) AND ($2::TEXT IS NULL OR d.state = $2) \
             AND ($4::BIGINT IS NULL OR d.delivery_id < $4) ORDER BY d.delivery_id DESC LIMIT $3"
        ))
        .bind(tp_id)
        .bind(state.map(DeliveryState::as_str))
        .bind(limit)
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .db()?
        .iter()
        .map(delivery_row)
        .collect()
    }

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT at, url, status, latency_ms, error, body FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt_id",
        )
        .bind(delivery_id)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRecord {
                    at_ms: r.try_get(0).db()?,
                    url: r.try_get(1).db()?,
                    status: r.try_get(2).db()?,
                    latency_ms: r.try_get(3).db()?,
                    error: r.try_get(4).db()?,
                    body: r.try_get(5).db()?,
                })
            })
            .collect()
    }

    async fn record_attempt(
        &self,
        job: JobRef,
        delivery_id: i64,
        a: AttemptRecord,
        outcome: AttemptOutcome,
        target: TargetVerdict,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await.db()?;
        // Only the lease holder settles the attempt (the row lock keeps it so until commit).
        let mine: Option<i64> = sqlx::query_scalar(
            "SELECT job_id FROM jobs WHERE job_id = $1 AND lease_token = $2 FOR UPDATE",
        )
        .bind(job.job_id)
        .bind(job.lease)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        crate::jobs::lease_held(u64::from(mine.is_some()), job)?;
        let held = settle_target(&mut tx, delivery_id, &a, target).await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, at, url, status, latency_ms, error, body) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(delivery_id)
        .bind(a.at_ms)
        .bind(&a.url)
        .bind(a.status)
        .bind(a.latency_ms)
        .bind(&a.error)
        .bind(&a.body)
        .execute(&mut *tx)
        .await
        .db()?;
        let (state, next, delivered_at) = match outcome {
            AttemptOutcome::Delivered => (DeliveryState::Delivered, None, Some(a.at_ms)),
            AttemptOutcome::RetryAt(t) => (DeliveryState::Pending, Some(t), None),
            AttemptOutcome::GaveUp => (DeliveryState::Failed, None, None),
        };
        sqlx::query(
            "UPDATE deliveries SET state = $1, attempts = attempts + 1, cycle_attempts = cycle_attempts + 1, \
               last_status = $2, last_error = $3, next_attempt_at = $4, url = $5, \
               delivered_at = COALESCE($6, delivered_at) WHERE delivery_id = $7",
        )
        .bind(state.as_str())
        .bind(a.status)
        .bind(&a.error)
        .bind(next)
        .bind(&a.url)
        .bind(delivered_at)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await
        .db()?;
        match next {
            Some(t) => {
                sqlx::query("UPDATE jobs SET run_at = $1, lease_until = NULL, lease_token = NULL WHERE job_id = $2")
                    .bind(t)
                    .bind(job.job_id)
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
            None => {
                sqlx::query("DELETE FROM jobs WHERE job_id = $1")
                    .bind(job.job_id)
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
        }
        tx.commit().await.db()?;
        Ok(held)
    }

    async fn redeliver(&self, delivery_id: i64, now_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        // The delivery's row lock keeps one push job per delivery under concurrent replays.
        let found: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT d.tp_id, e.package_id FROM deliveries d JOIN events e ON e.event_id = d.event_id \
             WHERE d.delivery_id = $1 FOR UPDATE OF d",
        )
        .bind(delivery_id)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let (tp_id, package_id) =
            found.ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
        sqlx::query(
            "UPDATE deliveries SET state = 'pending', cycle_attempts = 0, next_attempt_at = $1 WHERE delivery_id = $2",
        )
        .bind(now_ms)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query("UPDATE push_targets SET hold_until = NULL WHERE tp_id = $1")
            .bind(tp_id)
            .execute(&mut *tx)
            .await
            .db()?;
        let moved =
            sqlx::query("UPDATE jobs SET run_at = $1 WHERE kind = 'push' AND delivery_id = $2")
                .bind(now_ms)
                .bind(delivery_id)
                .execute(&mut *tx)
                .await
                .db()?
                .rows_affected();
        if moved == 0 {
            insert_push_job(&mut tx, package_id.unwrap_or(0), delivery_id, tp_id, now_ms).await?;
        }
        tx.commit().await.db()
    }

    async fn push_targets(&self) -> Result<Vec<PushTarget>> {
        sqlx::query(
            "SELECT tp_id, consecutive_failures, failing_since, hold_until, holds, last_error FROM push_targets ORDER BY tp_id",
        )
        .fetch_all(&self.pool)
        .await
        .db()?
        .iter()
        .map(push_target_row)
        .collect()
    }

    async fn resume_target(&self, tp_id: i64) -> Result<bool> {
        sqlx::query(
            "UPDATE push_targets SET hold_until = NULL, consecutive_failures = 0, failing_since = NULL WHERE tp_id = $1",
        )
        .bind(tp_id)
        .execute(&self.pool)
        .await
        .db()?;
        // A third party never pushed to has no record, and nothing to resume: still known.
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tps WHERE tp_id = $1)")
            .bind(tp_id)
            .fetch_one(&self.pool)
            .await
            .db()
    }
}
