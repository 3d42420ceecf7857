//! [`DeliveryStore`] on every SQL backend, and the outbox every decision writes into.

use async_trait::async_trait;
use smartpkg_core::dialect::Dialect;
use smartpkg_core::ids::{AppId, PackageId, TpId};
use smartpkg_core::push::Event;

use super::{decode, Sql, Tx};
use crate::{
    AttemptOutcome, AttemptRecord, Channel, Columns, Delivery, DeliveryState, DeliveryStore,
    JobRef, PushTarget, Result, StoreError, TargetVerdict,
};

/// An event to queue for a third party.
pub(crate) struct NewEvent<'a> {
    pub(crate) tp_id: TpId,
    /// 0 for a ticket, which concerns the third party alone.
    pub(crate) app_id: AppId,
    pub(crate) event: &'a Event,
}

/// Writes an event, its delivery and the push job, in the caller's transaction (outbox).
/// Without a URL there is nowhere to deliver: an audit result still gets a delivery that says
/// so (the operator can replay it once the URL is set); authorization pushes are skipped.
pub(crate) async fn queue_event<X: Tx>(tx: &mut X, e: NewEvent<'_>, now_ms: i64) -> Result<()> {
    let cols = e.event.columns();
    let channel = Channel::of(&cols);
    let (column, wechat_column) = match channel {
        Channel::Auth => ("auth_event_url", "wechat_auth_event_url"),
        Channel::Event => ("event_url", "wechat_message_url"),
    };
    let sql =
        format!("SELECT {column} AS url, {wechat_column} AS wx_url FROM tps WHERE tp_id = $1");
    let row = tx.one(&sql, args![e.tp_id]).await?;
    let (baidu_url, wechat_url) = (row.string("url")?, row.string("wx_url")?);
    // The dialect the third party's settings name for this channel (the attempt decides
    // again, from the settings as they are then): its URL is where the delivery goes.
    let (url, column) = match e
        .event
        .dialect_for(!baidu_url.trim().is_empty(), !wechat_url.trim().is_empty())
    {
        Dialect::Baidu => (baidu_url, column),
        Dialect::Wechat => (wechat_url, wechat_column),
    };
    if url.trim().is_empty() && channel == Channel::Auth {
        return Ok(());
    }
    let uid = hex::encode(rand::random::<[u8; 16]>());
    // The column predates the Option: 0 stands for "no package".
    let package_id = PackageId(cols.package_id.unwrap_or(0));
    let event_id = tx
        .int(
            "INSERT INTO events (uid, tp_id, app_id, package_id, event, reason, \
                package_version, created_at, channel, payload) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING event_id AS n",
            args![
                uid,
                e.tp_id,
                e.app_id,
                package_id,
                cols.name,
                cols.reason,
                cols.package_version,
                now_ms,
                channel.as_str(),
                cols.payload
            ],
        )
        .await?;
    let (state, error, next) = if url.trim().is_empty() {
        (
            DeliveryState::Failed,
            Some(format!("the third party has no {column}")),
            None,
        )
    } else {
        (DeliveryState::Pending, None, Some(now_ms))
    };
    let delivery_id = tx
        .int(
            "INSERT INTO deliveries (event_id, tp_id, url, state, last_error, next_attempt_at, \
                created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING delivery_id AS n",
            args![event_id, e.tp_id, &url, state.as_str(), error, next, now_ms],
        )
        .await?;
    if state == DeliveryState::Pending {
        insert_push_job(tx, package_id, delivery_id, e.tp_id, now_ms).await?;
    }
    Ok(())
}

/// An event about one package, queued in the deciding transaction: `event` is made from the
/// package's version.
async fn package_event<X: Tx>(
    tx: &mut X,
    tp_id: TpId,
    package_id: PackageId,
    now_ms: i64,
    event: impl FnOnce(String) -> Event,
) -> Result<()> {
    let sql = "SELECT app_id, version FROM packages WHERE package_id = $1";
    let row = tx.one(sql, args![package_id]).await?;
    let event = event(row.string("version")?);
    let e = NewEvent {
        tp_id,
        app_id: row.id("app_id")?,
        event: &event,
    };
    queue_event(tx, e, now_ms).await
}

/// The audit-result event of a decision, in the deciding transaction.
pub(crate) async fn outbox<X: Tx>(
    tx: &mut X,
    tp_id: TpId,
    package_id: PackageId,
    pass: bool,
    reason: &str,
    now_ms: i64,
) -> Result<()> {
    package_event(tx, tp_id, package_id, now_ms, |version| {
        Event::audit(package_id.get(), version, pass, reason)
    })
    .await
}

/// The push announcing a plan's move, in the deciding transaction.
pub(crate) async fn stage_outbox<X: Tx>(
    tx: &mut X,
    tp_id: TpId,
    e: &smartpkg_core::lifecycle::StageEvent,
    now_ms: i64,
) -> Result<()> {
    package_event(tx, tp_id, e.package_id, now_ms, |version| {
        Event::GrayChanged {
            package_id: e.package_id.get(),
            version,
            halted: e.halted,
            percent: e.percent,
            status: e.status.as_str().to_string(),
            reason: e.reason.clone(),
        }
    })
    .await
}

async fn insert_push_job<X: Tx>(
    tx: &mut X,
    package_id: PackageId,
    delivery_id: i64,
    target: TpId,
    run_at: i64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO jobs (kind, package_id, delivery_id, run_at, created_at, target) \
             VALUES ('push', $1, $2, $3, $3, $4)",
        args![package_id, delivery_id, run_at, target],
    )
    .await?;
    Ok(())
}

/// Whether the statement that settles a job found it still leased to this worker.
pub(crate) fn lease_held(rows: u64, job: JobRef) -> Result<()> {
    match rows {
        1 => Ok(()),
        _ => Err(StoreError::LeaseLost(job.job_id)),
    }
}

/// Updates the delivery's target after an attempt: a success ends its failing run (and any
/// hold); a failure lengthens it and, past the policy's threshold, holds the target. Returns
/// the hold's end when this attempt started one.
async fn settle_target<X: Tx>(
    tx: &mut X,
    delivery_id: i64,
    a: &AttemptRecord,
    verdict: TargetVerdict,
) -> Result<Option<i64>> {
    let sql = "SELECT tp_id FROM deliveries WHERE delivery_id = $1";
    let tp_id = tx.one(sql, args![delivery_id]).await?.i64("tp_id")?;
    tx.exec(
        "INSERT INTO push_targets (tp_id, updated_at) VALUES ($1, $2) \
             ON CONFLICT (tp_id) DO NOTHING",
        args![tp_id, a.at_ms],
    )
    .await?;
    let TargetVerdict::Failed { hold } = verdict else {
        tx.exec(
            "UPDATE push_targets SET consecutive_failures = 0, failing_since = NULL, \
                 hold_until = NULL, updated_at = $2 WHERE tp_id = $1",
            args![tp_id, a.at_ms],
        )
        .await?;
        return Ok(None);
    };
    let failures = tx
        .int(
            "UPDATE push_targets SET consecutive_failures = consecutive_failures + 1, \
                failing_since = COALESCE(failing_since, $2), last_error = $3, updated_at = $2 \
              WHERE tp_id = $1 RETURNING consecutive_failures AS n",
            args![tp_id, a.at_ms, &a.error],
        )
        .await?;
    let Some(ms) = hold.hold_ms(failures) else {
        return Ok(None);
    };
    let until = a.at_ms.saturating_add(ms);
    tx.exec(
        "UPDATE push_targets SET hold_until = $2, holds = holds + 1 WHERE tp_id = $1",
        args![tp_id, until],
    )
    .await?;
    Ok(Some(until))
}

const DELIVERY_SELECT: &str = concat!(
    "SELECT ",
    crate::delivery_columns!(),
    " FROM deliveries d JOIN events e ON e.event_id = d.event_id "
);

#[async_trait]
impl<S: Sql> DeliveryStore for S {
    async fn get_delivery(&self, delivery_id: i64) -> Result<Option<Delivery>> {
        work!(read, self, |tx| {
            let sql = format!("{DELIVERY_SELECT} WHERE d.delivery_id = $1");
            let row = tx.opt(&sql, args![delivery_id]).await?;
            row.as_ref().map(Delivery::from_row).transpose()
        })
    }

    async fn list_deliveries(
        &self,
        tp_id: Option<TpId>,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        work!(read, self, |tx| {
            let sql = format!(
                "{DELIVERY_SELECT} WHERE ($1 IS NULL OR d.tp_id = $1) \
                 AND ($2 IS NULL OR d.state = $2) AND ($4 IS NULL OR d.delivery_id < $4) \
                 ORDER BY d.delivery_id DESC LIMIT $3"
            );
            let args = args![tp_id, state.map(DeliveryState::as_str), limit, before];
            decode(tx.rows(&sql, args).await?, Delivery::from_row)
        })
    }

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>> {
        work!(read, self, |tx| {
            let sql = "SELECT at, url, status, latency_ms, error, body, dialect \
                       FROM delivery_attempts \
                       WHERE delivery_id = $1 ORDER BY attempt_id";
            decode(tx.rows(sql, args![delivery_id]).await?, |r| {
                Ok(AttemptRecord {
                    at_ms: r.i64("at")?,
                    url: r.string("url")?,
                    status: r.opt_i64("status")?,
                    latency_ms: r.i64("latency_ms")?,
                    error: r.opt_string("error")?,
                    body: r.opt_string("body")?,
                    dialect: Dialect::parse(&r.string("dialect")?).unwrap_or_default(),
                })
            })
        })
    }

    async fn record_attempt(
        &self,
        job: JobRef,
        delivery_id: i64,
        a: AttemptRecord,
        outcome: AttemptOutcome,
        target: TargetVerdict,
    ) -> Result<Option<i64>> {
        work!(write, self, |tx| {
            // Only the lease holder settles the attempt (its row lock keeps it so until the
            // commit); a late worker changes nothing.
            let mine = tx.pick(locking!(
                "SELECT job_id FROM jobs WHERE job_id = $1 AND lease_token = $2"
            ));
            lease_held(tx.exec(mine, args![job.job_id, job.lease]).await?, job)?;
            let held = settle_target(tx, delivery_id, &a, target).await?;
            tx.exec(
                "INSERT INTO delivery_attempts (delivery_id, at, url, status, latency_ms, \
                       error, body, dialect) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                args![
                    delivery_id,
                    a.at_ms,
                    &a.url,
                    a.status,
                    a.latency_ms,
                    &a.error,
                    &a.body,
                    a.dialect.as_str()
                ],
            )
            .await?;
            let (state, next, delivered_at) = match outcome {
                AttemptOutcome::Delivered => (DeliveryState::Delivered, None, Some(a.at_ms)),
                AttemptOutcome::RetryAt(t) => (DeliveryState::Pending, Some(t), None),
                AttemptOutcome::GaveUp => (DeliveryState::Failed, None, None),
            };
            tx.exec(
                "UPDATE deliveries SET state = $1, attempts = attempts + 1, \
                       cycle_attempts = cycle_attempts + 1, last_status = $2, last_error = $3, \
                       next_attempt_at = $4, url = $5, delivered_at = COALESCE($6, delivered_at) \
                     WHERE delivery_id = $7",
                args![
                    state.as_str(),
                    a.status,
                    &a.error,
                    next,
                    &a.url,
                    delivered_at,
                    delivery_id
                ],
            )
            .await?;
            match next {
                Some(t) => {
                    let sql =
                        "UPDATE jobs SET run_at = $1, lease_until = NULL, lease_token = NULL \
                               WHERE job_id = $2";
                    tx.exec(sql, args![t, job.job_id]).await?
                }
                // Acknowledged or given up: the job goes with the same commit, so an
                // acknowledged event is never sent again unless replayed on purpose.
                None => {
                    tx.exec("DELETE FROM jobs WHERE job_id = $1", args![job.job_id])
                        .await?
                }
            };
            Ok(held)
        })
    }

    async fn redeliver(&self, delivery_id: i64, now_ms: i64) -> Result<()> {
        work!(write, self, |tx| {
            // The delivery's row lock keeps one push job per delivery under concurrent replays.
            let found = tx.pick(locking!(
                "SELECT d.tp_id, e.package_id FROM deliveries d \
                 JOIN events e ON e.event_id = d.event_id WHERE d.delivery_id = $1",
                of "d"
            ));
            let row = tx.opt(found, args![delivery_id]).await?;
            let row = row.ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
            let (tp_id, package_id) = (row.id("tp_id")?, row.opt_id("package_id")?);
            tx.exec(
                "UPDATE deliveries SET state = 'pending', cycle_attempts = 0, \
                     next_attempt_at = $1 WHERE delivery_id = $2",
                args![now_ms, delivery_id],
            )
            .await?;
            // A replay is the operator's call to try now: it lifts the target's hold for this
            // probe (the failing run stays, so a failure holds the target again at once).
            tx.exec(
                "UPDATE push_targets SET hold_until = NULL WHERE tp_id = $1",
                args![tp_id],
            )
            .await?;
            // One push job per delivery: move a waiting one forward, or add one.
            let moved = tx
                .exec(
                    "UPDATE jobs SET run_at = $1 WHERE kind = 'push' AND delivery_id = $2",
                    args![now_ms, delivery_id],
                )
                .await?;
            if moved == 0 {
                insert_push_job(
                    tx,
                    package_id.unwrap_or(PackageId(0)),
                    delivery_id,
                    tp_id,
                    now_ms,
                )
                .await?;
            }
            Ok(())
        })
    }

    async fn push_targets(&self) -> Result<Vec<PushTarget>> {
        work!(read, self, |tx| {
            let sql = concat!(
                "SELECT ",
                crate::push_target_columns!(),
                " FROM push_targets ORDER BY tp_id"
            );
            decode(tx.rows(sql, args![]).await?, PushTarget::from_row)
        })
    }

    async fn resume_target(&self, tp_id: TpId) -> Result<bool> {
        work!(write, self, |tx| {
            tx.exec(
                "UPDATE push_targets SET hold_until = NULL, consecutive_failures = 0, \
                     failing_since = NULL WHERE tp_id = $1",
                args![tp_id],
            )
            .await?;
            // A third party never pushed to has no record, and nothing to resume: still known.
            let sql = "SELECT tp_id FROM tps WHERE tp_id = $1";
            Ok(tx.opt(sql, args![tp_id]).await?.is_some())
        })
    }
}
