use async_trait::async_trait;
use smartpkg_core::lifecycle::JobKind;
use smartpkg_store::{
    Job, JobRef, JobStore, Lane, LaneKind, Result, Schedule, StoreError, SweepPolicy, Swept,
};
use sqlx::Row;

use crate::{corrupt, Db, PgStore};

/// Serialises the deliveries lane's claims across instances: its per-target cap counts rows
/// (leased jobs) that a claim does not lock.
const DELIVERY_CLAIM_LOCK: i64 = 0x736d_6172_7470_6b67; // "smartpkg"

/// Whether the statement that settles a job found it still leased to this worker.
pub(crate) fn lease_held(rows: u64, job: JobRef) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(job.job_id))
    }
}

#[async_trait]
impl JobStore for PgStore {
    async fn claim_jobs(
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
                     RETURNING j.job_id, j.kind, j.package_id, j.attempts, j.delivery_id, FALSE, j.lease_token",
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
                    "WITH busy AS ( \
                        SELECT target, COUNT(*) AS n FROM jobs \
                        WHERE kind = 'push' AND lease_until > $1 GROUP BY target), \
                     due AS ( \
                        SELECT j.job_id, j.run_at, j.target, \
                               COALESCE(t.consecutive_failures, 1) > 0 AS failing, \
                               ROW_NUMBER() OVER (PARTITION BY j.target ORDER BY j.run_at, j.job_id) AS rn \
                        FROM jobs j LEFT JOIN push_targets t ON t.tp_id = j.target \
                        WHERE j.kind = 'push' AND j.run_at <= $1 AND (j.lease_until IS NULL OR j.lease_until <= $1) \
                          AND (t.hold_until IS NULL OR t.hold_until <= $1)), \
                     capped AS ( \
                        SELECT d.*, d.rn + COALESCE(b.n, 0) AS load FROM due d \
                        LEFT JOIN busy b ON b.target = d.target \
                        WHERE d.rn + COALESCE(b.n, 0) <= CASE WHEN d.failing THEN 1 ELSE $3 END), \
                     ranked AS ( \
                        SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.failing ORDER BY c.load, c.run_at, c.job_id) AS frn \
                        FROM capped c), \
                     chosen AS ( \
                        SELECT job_id, failing, load, run_at FROM ranked \
                        WHERE NOT failing OR frn <= $4 \
                        ORDER BY failing, load, run_at, job_id LIMIT $2) \
                     UPDATE jobs j SET lease_until = $1 + $5, attempts = j.attempts + 1, lease_token = (((random() * 2147483647)::BIGINT << 31) # (random() * 2147483647)::BIGINT) | 1 \
                     FROM chosen WHERE j.job_id = chosen.job_id \
                     RETURNING j.job_id, j.kind, j.package_id, j.attempts, j.delivery_id, chosen.failing, j.lease_token",
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
        let mut jobs = rows
            .iter()
            .map(|r| {
                let kind: String = r.try_get(1).db()?;
                Ok(Job {
                    job_id: r.try_get(0).db()?,
                    kind: JobKind::parse(&kind)
                        .ok_or_else(|| corrupt(format!("job kind {kind}")))?,
                    package_id: r.try_get(2).db()?,
                    attempts: r.try_get(3).db()?,
                    delivery_id: r.try_get(4).db()?,
                    degraded: r.try_get(5).db()?,
                    lease: r.try_get(6).db()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING keeps no order: hand them out healthy first, then by id.
        jobs.sort_by_key(|j| (j.degraded, j.job_id));
        Ok(jobs)
    }

    async fn drop_job(&self, job: JobRef) -> Result<()> {
        let n = sqlx::query("DELETE FROM jobs WHERE job_id = $1 AND lease_token = $2")
            .bind(job.job_id)
            .bind(job.lease)
            .execute(&self.pool)
            .await
            .db()?
            .rows_affected();
        lease_held(n, job)
    }

    async fn retry_job(&self, job: JobRef, run_at_ms: i64, error: String) -> Result<()> {
        let n = sqlx::query(
            "UPDATE jobs SET run_at = $1, lease_until = NULL, lease_token = NULL, last_error = $2 \
             WHERE job_id = $3 AND lease_token = $4",
        )
        .bind(run_at_ms)
        .bind(error)
        .bind(job.job_id)
        .bind(job.lease)
        .execute(&self.pool)
        .await
        .db()?
        .rows_affected();
        lease_held(n, job)
    }

    async fn next_job_due(&self, lane: LaneKind) -> Result<Option<i64>> {
        let sql = match lane {
            LaneKind::Platform => "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < run_at THEN run_at ELSE lease_until END) FROM jobs WHERE kind <> 'push'",
            LaneKind::Deliveries => "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < run_at THEN run_at ELSE lease_until END) FROM jobs WHERE kind = 'push'",
        };
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.db()
    }

    async fn take_schedule(
        &self,
        schedule: Schedule,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<bool> {
        let n = sqlx::query("UPDATE schedules SET next_at = $1 WHERE name = $2 AND next_at <= $3")
            .bind(now_ms + interval_ms)
            .bind(schedule.as_str())
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .db()?
            .rows_affected();
        Ok(n == 1)
    }

    async fn sweep(&self, now_ms: i64, policy: SweepPolicy) -> Result<Swept> {
        let mut tx = self.pool.begin().await.db()?;
        let used_before = now_ms.saturating_sub(policy.used_credential_retention_ms);
        let codes = sqlx::query(
            "DELETE FROM codes WHERE (used_at IS NULL AND expires_at <= $1) OR (used_at IS NOT NULL AND used_at <= $2)",
        )
        .bind(now_ms)
        .bind(used_before)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        let tickets = sqlx::query("DELETE FROM tickets WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        let tokens = sqlx::query(
            "DELETE FROM access_tokens WHERE expires_at <= $1 OR (used_at IS NOT NULL AND used_at <= $2)",
        )
        .bind(now_ms)
        .bind(used_before)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        let old = now_ms.saturating_sub(policy.retired_package_retention_ms);
        let retired = sqlx::query(
            "UPDATE packages SET ext_json = '', built_ext_json = NULL, test_password = NULL \
             WHERE state = 'retired' AND updated_at <= $1 AND (ext_json <> '' OR built_ext_json IS NOT NULL OR test_password IS NOT NULL)",
        )
        .bind(old)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        let history = sqlx::query(
            "UPDATE packages SET ext_json = '', test_password = NULL \
             WHERE state = 'history' AND updated_at <= $1 AND (ext_json <> '' OR test_password IS NOT NULL) \
               AND package_id NOT IN (SELECT previous_package_id FROM packages \
                   WHERE state IN ('online', 'rolling_back') AND previous_package_id IS NOT NULL)",
        )
        .bind(old)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        tx.commit().await.db()?;
        Ok(Swept {
            codes,
            tickets,
            tokens,
            packages_trimmed: retired + history,
            sessions,
        })
    }
}
