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
