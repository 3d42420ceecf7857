//! [`JobStore`] on every SQL backend; claiming, which each backend serialises its own way,
//! is [`Sql::claim`].

use async_trait::async_trait;
use smartpkg_core::lifecycle::JobKind;

use super::deliveries::lease_held;
use super::{Sql, Tx};
use crate::{
    Columns, Job, JobRef, JobStore, Lane, LaneKind, Result, Schedule, StoreError, SweepPolicy,
    Swept,
};

/// The pushes a deliveries-lane claim may take, as common table expressions ending in `ranked`
/// (`$1` now, `$3` the per-target cap): due pushes of targets not on hold; per target, leased
/// and newly claimed pushes stay within the cap (1 for a target in a failing run, or never yet
/// answered: it probes). Healthy targets — whose last attempt succeeded — come first and the
/// least busy among them; each backend then keeps the others to `failing_slots` (`frn`), so
/// slow receivers never fill the lane, not even a crowd of new ones before any of them is known
/// to fail. A literal, so each backend's statement stays one.
#[macro_export]
macro_rules! due_pushes {
    () => {
        "WITH busy AS ( \
            SELECT target, COUNT(*) AS n FROM jobs \
            WHERE kind = 'push' AND lease_until > $1 GROUP BY target), \
         due AS ( \
            SELECT j.job_id, j.run_at, j.target, \
                   COALESCE(t.consecutive_failures, 1) > 0 AS failing, \
                   ROW_NUMBER() OVER (PARTITION BY j.target ORDER BY j.run_at, j.job_id) AS rn \
            FROM jobs j LEFT JOIN push_targets t ON t.tp_id = j.target \
            WHERE j.kind = 'push' AND j.run_at <= $1 \
              AND (j.lease_until IS NULL OR j.lease_until <= $1) \
              AND (t.hold_until IS NULL OR t.hold_until <= $1)), \
         capped AS ( \
            SELECT d.*, d.rn + COALESCE(b.n, 0) AS load FROM due d \
            LEFT JOIN busy b ON b.target = d.target \
            WHERE d.rn + COALESCE(b.n, 0) <= CASE WHEN d.failing THEN 1 ELSE $3 END), \
         ranked AS ( \
            SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.failing \
                                           ORDER BY c.load, c.run_at, c.job_id) AS frn \
            FROM capped c)"
    };
}

/// A claimed job from the row a claim answers (`job_id, kind, package_id, attempts,
/// delivery_id, degraded, lease_token`), `attempts` counting this claim.
pub fn claimed(r: &impl Columns) -> Result<Job> {
    let kind = r.string("kind")?;
    Ok(Job {
        job_id: r.i64("job_id")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("job kind {kind}")))?,
        package_id: r.id("package_id")?,
        attempts: r.i64("attempts")?,
        delivery_id: r.opt_i64("delivery_id")?,
        degraded: r.bool("degraded")?,
        lease: r.i64("lease_token")?,
    })
}

#[async_trait]
impl<S: Sql> JobStore for S {
    async fn claim_jobs(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> Result<Vec<Job>> {
        let mut jobs = self.claim(now_ms, limit, lease_ms, lane).await?;
        // Handed out healthy first, then by id (PostgreSQL's RETURNING keeps no order).
        jobs.sort_by_key(|j| (j.degraded, j.job_id));
        Ok(jobs)
    }

    async fn drop_job(&self, job: JobRef) -> Result<()> {
        work!(write, self, |tx| {
            let sql = "DELETE FROM jobs WHERE job_id = $1 AND lease_token = $2";
            lease_held(tx.exec(sql, args![job.job_id, job.lease]).await?, job)
        })
    }

    async fn retry_job(&self, job: JobRef, run_at_ms: i64, error: String) -> Result<()> {
        work!(write, self, |tx| {
            let n = tx
                .exec(
                    "UPDATE jobs SET run_at = $1, lease_until = NULL, lease_token = NULL, \
                       last_error = $2 WHERE job_id = $3 AND lease_token = $4",
                    args![run_at_ms, &error, job.job_id, job.lease],
                )
                .await?;
            lease_held(n, job)
        })
    }

    async fn next_job_due(&self, lane: LaneKind) -> Result<Option<i64>> {
        let which = match lane {
            LaneKind::Platform => "<>",
            LaneKind::Deliveries => "=",
        };
        work!(read, self, |tx| {
            let sql = format!(
                "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < run_at \
                 THEN run_at ELSE lease_until END) AS n FROM jobs WHERE kind {which} 'push'"
            );
            tx.one(&sql, args![]).await?.opt_i64("n")
        })
    }

    async fn take_schedule(
        &self,
        schedule: Schedule,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<bool> {
        work!(write, self, |tx| {
            let sql = "UPDATE schedules SET next_at = $1 WHERE name = $2 AND next_at <= $3";
            let n = tx
                .exec(sql, args![now_ms + interval_ms, schedule.as_str(), now_ms])
                .await?;
            Ok(n == 1)
        })
    }

    async fn sweep(&self, now_ms: i64, policy: SweepPolicy) -> Result<Swept> {
        work!(write, self, |tx| {
            let used_before = now_ms.saturating_sub(policy.used_credential_retention_ms);
            // An unused code dies at its expiry; a used one is kept for the retention, so a
            // replay of it is recognised (and revokes what it issued) until then.
            let codes = tx
                .exec(
                    "DELETE FROM codes WHERE (used_at IS NULL AND expires_at <= $1) \
                       OR (used_at IS NOT NULL AND used_at <= $2)",
                    args![now_ms, used_before],
                )
                .await?;
            let tickets = tx
                .exec("DELETE FROM tickets WHERE expires_at <= $1", args![now_ms])
                .await?;
            // Expired tokens go; a used refresh token stays for the retention, so that its
            // replay is still recognised and revokes its family.
            let tokens = tx
                .exec(
                    "DELETE FROM access_tokens WHERE expires_at <= $1 \
                       OR (used_at IS NOT NULL AND used_at <= $2)",
                    args![now_ms, used_before],
                )
                .await?;
            let before_hour = now_ms
                .saturating_sub(policy.report_retention_ms)
                .div_euclid(smartpkg_core::health::HOUR_MS);
            let report_hours = tx
                .exec(
                    "DELETE FROM report_hours WHERE hour < $1",
                    args![before_hour],
                )
                .await?;
            let sessions = tx
                .exec("DELETE FROM sessions WHERE expires_at <= $1", args![now_ms])
                .await?;
            let old = now_ms.saturating_sub(policy.retired_package_retention_ms);
            // A retired package never comes back: its inputs and build go (the row stays for
            // history). A former online version that no online package can roll back to keeps
            // its built ext.json (what ran) but not the raw upload.
            let retired = tx
                .exec("UPDATE packages SET ext_json = '', built_ext_json = NULL, test_password = NULL \
                       WHERE state = 'retired' AND updated_at <= $1 AND (ext_json <> '' \
                         OR built_ext_json IS NOT NULL OR test_password IS NOT NULL)", args![old])
                .await?;
            let history = tx
                .exec(
                    "UPDATE packages SET ext_json = '', test_password = NULL \
                       WHERE state = 'history' AND updated_at <= $1 \
                         AND (ext_json <> '' OR test_password IS NOT NULL) \
                         AND package_id NOT IN (SELECT previous_package_id FROM packages \
                           WHERE state IN ('online', 'rolling_back') \
                             AND previous_package_id IS NOT NULL)",
                    args![old],
                )
                .await?;
            Ok(Swept {
                codes,
                tickets,
                tokens,
                packages_trimmed: retired + history,
                sessions,
                report_hours,
            })
        })
    }
}
