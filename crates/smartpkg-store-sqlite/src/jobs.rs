use smartpkg_store::{Columns, Job, Lane};

use crate::{SqliteStore, StoreResult};
use smartpkg_store::sql::jobs::claimed;
use smartpkg_store::sql::{self, Tx};

/// Due platform jobs, oldest first.
const DUE_PLATFORM: &str = "SELECT job_id FROM jobs \
     WHERE kind <> 'push' AND run_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
     ORDER BY run_at, job_id LIMIT $2";

/// Due pushes of targets not on hold. Per target, leased and newly claimed pushes stay within
/// the cap (1 for a target in a failing run, or never yet answered: it probes). Healthy
/// targets — whose last attempt succeeded — come first and the least busy among them; the
/// others get at most `failing_slots`, so slow receivers never fill the lane, not even a crowd
/// of new ones before any of them is known to fail.
const DUE_PUSHES: &str = "WITH busy AS ( \
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
        FROM capped c) \
     SELECT job_id, failing FROM ranked WHERE NOT failing OR frn <= $4 \
     ORDER BY failing, load, run_at, job_id LIMIT $2";

/// Leases one chosen job (a random token, never 0, so a row's NULL never matches one).
const LEASE: &str = "UPDATE jobs SET lease_until = $1, attempts = attempts + 1, \
       lease_token = random() | 1 WHERE job_id = $2 \
     RETURNING job_id, kind, package_id, attempts, delivery_id, $3 AS degraded, lease_token";

impl SqliteStore {
    /// The one writer serialises claims: the due rows are chosen, then leased one by one.
    pub(crate) async fn claim_on_writer(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> StoreResult<Vec<Job>> {
        sql::write(self, move |tx| {
            Box::pin(async move {
                let chosen: Vec<(i64, bool)> = match lane {
                    Lane::Platform => tx
                        .rows(DUE_PLATFORM, smartpkg_store::args![now_ms, limit as i64])
                        .await?
                        .iter()
                        .map(|r| Ok((r.i64("job_id")?, false)))
                        .collect::<StoreResult<_>>()?,
                    Lane::Deliveries {
                        per_target,
                        failing_slots,
                    } => {
                        let args = smartpkg_store::args![
                            now_ms,
                            limit as i64,
                            per_target as i64,
                            failing_slots as i64
                        ];
                        tx.rows(DUE_PUSHES, args)
                            .await?
                            .iter()
                            .map(|r| Ok((r.i64("job_id")?, r.bool("failing")?)))
                            .collect::<StoreResult<_>>()?
                    }
                };
                let mut jobs = Vec::with_capacity(chosen.len());
                for (job_id, degraded) in chosen {
                    let args = smartpkg_store::args![now_ms + lease_ms, job_id, degraded];
                    jobs.push(claimed(&tx.one(LEASE, args).await?)?);
                }
                Ok(jobs)
            })
        })
        .await
    }

    /// Ends every lease: on start, for a database file only this process may use (the
    /// store holds its lock), so every lease left belongs to a process that died.
    pub async fn release_leases(&self) -> StoreResult<u64> {
        let sql = "UPDATE jobs SET lease_until = NULL WHERE lease_until IS NOT NULL";
        sql::write(self, move |tx| {
            Box::pin(async move { tx.exec(sql, smartpkg_store::args![]).await })
        })
        .await
    }
}
