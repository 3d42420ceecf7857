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
