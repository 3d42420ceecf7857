use super::*;

/// A random lease token (never 0, so a row's NULL or default never matches one).
pub(crate) fn new_lease() -> i64 {
    rand::random::<i64>() | 1
}

/// Whether the statement that settles a job found it still leased to this worker.
pub(crate) fn lease_held(rows: usize, job: JobRef) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(job.job_id).into())
    }
}

pub(crate) type JobCols = (i64, String, i64, i64, Option<i64>);

pub(crate) fn job_cols(r: &Row<'_>) -> rusqlite::Result<JobCols> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn claim_jobs(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> StoreResult<Vec<Job>> {
        self.write(move |tx| {
            let rows = match lane {
                Lane::Platform => {
                    let mut stmt = tx.prepare_cached(
                        "SELECT job_id, kind, package_id, attempts, delivery_id FROM jobs \
                         WHERE kind <> 'push' AND run_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1) \
                         ORDER BY run_at, job_id LIMIT ?2",
                    )?;
                    let rows = stmt.query_map(params![now_ms, limit as i64], |r| Ok((job_cols(r)?, false)))?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
                Lane::Deliveries { per_target, failing_slots } => {
                    // Due pushes of targets not on hold. Per target, leased and newly claimed
                    // pushes stay within the cap (1 for a target in a failing run, or never yet
                    // answered: it probes). Healthy targets — whose last attempt succeeded —
                    // come first and the least busy among them; the others get at most
                    // `failing_slots`, so slow receivers never fill the lane, not even a crowd
                    // of new ones before any of them is known to fail.
                    let mut stmt = tx.prepare_cached(
                        "WITH busy AS ( \
                            SELECT target, COUNT(*) AS n FROM jobs \
                            WHERE kind = 'push' AND lease_until > ?1 GROUP BY target), \
                         due AS ( \
                            SELECT j.job_id, j.kind, j.package_id, j.attempts, j.delivery_id, j.run_at, j.target, \
                                   COALESCE(t.consecutive_failures, 1) > 0 AS failing, \
                                   ROW_NUMBER() OVER (PARTITION BY j.target ORDER BY j.run_at, j.job_id) AS rn \
                            FROM jobs j LEFT JOIN push_targets t ON t.tp_id = j.target \
                            WHERE j.kind = 'push' AND j.run_at <= ?1 AND (j.lease_until IS NULL OR j.lease_until <= ?1) \
                              AND (t.hold_until IS NULL OR t.hold_until <= ?1)), \
                         capped AS ( \
                            SELECT d.*, d.rn + COALESCE(b.n, 0) AS load FROM due d \
                            LEFT JOIN busy b ON b.target = d.target \
                            WHERE d.rn + COALESCE(b.n, 0) <= CASE WHEN d.failing THEN 1 ELSE ?3 END), \
                         ranked AS ( \
                            SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.failing ORDER BY c.load, c.run_at, c.job_id) AS frn \
                            FROM capped c) \
                         SELECT job_id, kind, package_id, attempts, delivery_id, failing FROM ranked \
                         WHERE failing = 0 OR frn <= ?4 \
                         ORDER BY failing, load, run_at, job_id LIMIT ?2",
                    )?;
                    let rows = stmt.query_map(
                        params![now_ms, limit as i64, per_target as i64, failing_slots as i64],
                        |r| Ok((job_cols(r)?, r.get::<_, bool>(5)?)),
                    )?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            let mut jobs = Vec::with_capacity(rows.len());
            for ((job_id, kind, package_id, attempts, delivery_id), degraded) in rows {
                let lease = new_lease();
                tx.prepare_cached("UPDATE jobs SET lease_until = ?1, attempts = attempts + 1, lease_token = ?3 WHERE job_id = ?2")?
                    .execute(params![now_ms + lease_ms, job_id, lease])?;
                let kind = JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("job kind {kind}")))?;
                jobs.push(Job { job_id, kind, package_id, delivery_id, attempts: attempts + 1, degraded, lease });
            }
            Ok(jobs)
        })
        .await
    }

    async fn drop_job(&self, job: JobRef) -> StoreResult<()> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM jobs WHERE job_id = ?1 AND lease_token = ?2")?
                .execute(params![job.job_id, job.lease])?;
            lease_held(n, job)
        })
        .await
    }

    async fn retry_job(&self, job: JobRef, run_at_ms: i64, error: String) -> StoreResult<()> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE jobs SET run_at = ?1, lease_until = NULL, lease_token = NULL, last_error = ?2 WHERE job_id = ?3 AND lease_token = ?4",
                params![run_at_ms, error, job.job_id, job.lease],
            )?;
            lease_held(n, job)
        })
        .await
    }

    async fn next_job_due(&self, lane: LaneKind) -> StoreResult<Option<i64>> {
        let sql = match lane {
            LaneKind::Platform => "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < run_at THEN run_at ELSE lease_until END) FROM jobs WHERE kind <> 'push'",
            LaneKind::Deliveries => "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < run_at THEN run_at ELSE lease_until END) FROM jobs WHERE kind = 'push'",
        };
        self.read(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .await
    }

    async fn take_schedule(
        &self,
        schedule: Schedule,
        now_ms: i64,
        interval_ms: i64,
    ) -> StoreResult<bool> {
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE schedules SET next_at = ?1 WHERE name = ?2 AND next_at <= ?3",
                params![now_ms + interval_ms, schedule.as_str(), now_ms],
            )? == 1)
        })
        .await
    }

    async fn sweep(&self, now_ms: i64, policy: SweepPolicy) -> StoreResult<Swept> {
        self.write(move |tx| {
            let used_before = now_ms.saturating_sub(policy.used_credential_retention_ms);
            // An unused code dies at its expiry; a used one is kept for the retention, so a
            // replay of it is recognised (and revokes what it issued) until then.
            let codes = tx.execute(
                "DELETE FROM codes WHERE (used_at IS NULL AND expires_at <= ?1) OR (used_at IS NOT NULL AND used_at <= ?2)",
                params![now_ms, used_before],
            )?;
            let tickets = tx.execute("DELETE FROM tickets WHERE expires_at <= ?1", [now_ms])?;
            // Expired tokens go; a used refresh token stays for the retention, so that its
            // replay is still recognised and revokes its family.
            let tokens = tx.execute(
                "DELETE FROM access_tokens WHERE expires_at <= ?1 OR (used_at IS NOT NULL AND used_at <= ?2)",
                params![now_ms, used_before],
            )?;
            let sessions = tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now_ms])?;
            let old = now_ms.saturating_sub(policy.retired_package_retention_ms);
            // A retired package never comes back: its inputs and build go (the row stays for
            // history). A former online version that no online package can roll back to keeps
            // its built ext.json (what ran) but not the raw upload.
            let retired = tx.execute(
                "UPDATE packages SET ext_json = '', built_ext_json = NULL, test_password = NULL \
                 WHERE state = 'retired' AND updated_at <= ?1 AND (ext_json <> '' OR built_ext_json IS NOT NULL OR test_password IS NOT NULL)",
                [old],
            )?;
            let history = tx.execute(
                "UPDATE packages SET ext_json = '', test_password = NULL \
                 WHERE state = 'history' AND updated_at <= ?1 AND (ext_json <> '' OR test_password IS NOT NULL) \
                   AND package_id NOT IN (SELECT previous_package_id FROM packages \
                       WHERE state IN ('online', 'rolling_back') AND previous_package_id IS NOT NULL)",
                [old],
            )?;
            Ok(Swept {
                codes: codes as u64,
                tickets: tickets as u64,
                tokens: tokens as u64,
                packages_trimmed: (retired + history) as u64,
                sessions: sessions as u64,
            })
        })
        .await
    }
}

impl SqliteStore {
    /// Ends every lease: on start, for a database file only this process may use (the
    /// store holds its lock), so every lease left belongs to a process that died.
    pub async fn release_leases(&self) -> StoreResult<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE jobs SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )? as u64)
        })
        .await
    }
}
