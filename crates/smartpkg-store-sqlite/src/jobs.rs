use smartpkg_store::{Columns, Job, Lane};

use crate::{SqliteStore, StoreResult};
use smartpkg_store::sql::jobs::claimed;
use smartpkg_store::sql::{self, Tx};

/// Due platform jobs, oldest first.
const DUE_PLATFORM: &str = "SELECT job_id FROM jobs \
     WHERE kind <> 'push' AND run_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
     ORDER BY run_at, job_id LIMIT $2";

/// The pushes to claim (see `smartpkg_store::due_pushes`), healthy targets first.
const DUE_PUSHES: &str = concat!(
    smartpkg_store::due_pushes!(),
    " SELECT job_id, failing FROM ranked WHERE NOT failing OR frn <= $4 \
     ORDER BY failing, load, run_at, job_id LIMIT $2"
);

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
