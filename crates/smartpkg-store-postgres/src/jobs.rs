use smartpkg_store::sql::jobs::claimed;
use smartpkg_store::{Job, Lane, Result};

use crate::exec::PgRowCols;
use crate::{Db, PgStore};

/// Serialises the deliveries lane's claims across instances: its per-target cap counts rows
/// (leased jobs) that a claim does not lock.
const DELIVERY_CLAIM_LOCK: i64 = 0x736d_6172_7470_6b67; // "smartpkg"

impl PgStore {
    /// Claims in one statement that skips rows other instances hold; the deliveries lane
    /// under a transaction-scoped advisory lock (see [`DELIVERY_CLAIM_LOCK`]).
    pub(crate) async fn claim_skipping_locked(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> Result<Vec<Job>> {
        let rows = match lane {
            Lane::Platform => {
                // One statement, atomic by itself (no transaction around it: that cost a
                // BEGIN and a COMMIT per claim): the due rows nobody else holds, leased as
                // they are picked.
                sqlx::query(
                    "UPDATE jobs j SET lease_until = $1 + $3, attempts = j.attempts + 1, lease_token = (((random() * 2147483647)::BIGINT << 31) # (random() * 2147483647)::BIGINT) | 1 \
                     FROM (SELECT job_id FROM jobs \
                           WHERE kind <> 'push' AND run_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
                           ORDER BY run_at, job_id LIMIT $2 FOR UPDATE SKIP LOCKED) due \
                     WHERE j.job_id = due.job_id \
                     RETURNING j.job_id, j.kind, j.package_id, j.attempts, j.delivery_id, FALSE AS degraded, j.lease_token",
                )
                .bind(now_ms)
                .bind(limit as i64)
                .bind(lease_ms)
                .fetch_all(&self.pool)
                .await
                .db()?
            }
            Lane::Deliveries {
                per_target,
                failing_slots,
            } => {
                // Most wake-ups of this lane find nothing due (an audit decision wakes it
                // whether or not its third party has a push URL): one cheap look first,
                // rather than a transaction holding the lock every instance claims under.
                let due: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE kind = 'push' AND run_at <= $1 \
                     AND (lease_until IS NULL OR lease_until <= $1))",
                )
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await
                .db()?;
                if !due {
                    return Ok(vec![]);
                }
                let mut tx = self.pool.begin().await.db()?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(DELIVERY_CLAIM_LOCK)
                    .execute(&mut *tx)
                    .await
                    .db()?;
                // As in the SQLite backend: per target within the cap (one for a failing
                // target, or one never yet answered), healthy and least busy first, the
                // others within their share.
                let rows = sqlx::query(
                    concat!(smartpkg_store::due_pushes!(), ", \
                     chosen AS ( \
                        SELECT job_id, failing, load, run_at FROM ranked \
                        WHERE NOT failing OR frn <= $4 \
                        ORDER BY failing, load, run_at, job_id LIMIT $2) \
                     UPDATE jobs j SET lease_until = $1 + $5, attempts = j.attempts + 1, lease_token = (((random() * 2147483647)::BIGINT << 31) # (random() * 2147483647)::BIGINT) | 1 \
                     FROM chosen WHERE j.job_id = chosen.job_id \
                     RETURNING j.job_id, j.kind, j.package_id, j.attempts, j.delivery_id, chosen.failing AS degraded, j.lease_token"),
                )
                .bind(now_ms)
                .bind(limit as i64)
                .bind(per_target as i64)
                .bind(failing_slots as i64)
                .bind(lease_ms)
                .fetch_all(&mut *tx)
                .await
                .db()?;
                tx.commit().await.db()?;
                rows
            }
        };
        rows.into_iter().map(|r| claimed(&PgRowCols(r))).collect()
    }
}
