//! [`PackageStore`] on every SQL backend: the lifecycle's decisions, each taken on a snapshot
//! read under the locks of the transaction that applies it.

use async_trait::async_trait;
use smartpkg_core::dialect::Dialect;
use smartpkg_core::ids::{AppId, PackageId, TpId};
use smartpkg_core::lifecycle::{
    self, AppFacts, Command, PackageFacts, PkgState, Plan, Quota, Refusal, Snapshot,
};
use smartpkg_core::stage::StagePlan;

pub use super::auth::grant_of;
use super::deliveries::{lease_held, outbox};
use super::{decode, Sql, Tx};
use crate::{
    AuditOutcome, AuditVerdict, Columns, Decision, DecisionContext, Grant, JobRef, NewPackage,
    PackageFilter, PackageRecord, PackageStore, Result, SpeedUp, StoreError,
};

/// `get`'s one round trip: the token's grant and its app's visible packages (a row of NULL
/// package columns when it has none).
pub const GET_BY_TOKEN: &str = concat!(
    "SELECT t.app_id AS grant_app_id, t.tp_id AS grant_tp_id, t.expires_at AS grant_expires_at, ",
    crate::package_columns!(),
    " FROM access_tokens t JOIN apps a ON a.app_id = t.app_id AND a.tp_id = t.tp_id \
     LEFT JOIN packages p ON p.app_id = t.app_id AND p.state NOT IN ('history', 'retired') \
     WHERE t.token_hash = $1 AND t.kind = 'app' ORDER BY p.package_id"
);

/// The grant and packages of the rows [`GET_BY_TOKEN`] answers.
pub fn by_token_rows<R: Columns>(rows: &[R]) -> Result<Option<(Grant, Vec<PackageRecord>)>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let grant = grant_of(first)?;
    let mut packages = Vec::with_capacity(rows.len());
    for r in rows {
        // The row of an app without packages has NULL package columns.
        if r.opt_i64("package_id")?.is_some() {
            packages.push(PackageRecord::from_row(r)?);
        }
    }
    Ok(Some((grant, packages)))
}

/// [`PackageStore::visible_packages_by_token`] read from the database (a backend's cache
/// falls back on it).
pub async fn by_token<S: Sql>(
    s: &S,
    token_hash: String,
) -> Result<Option<(Grant, Vec<PackageRecord>)>> {
    work!(read, s, |tx| {
        by_token_rows(&tx.rows(GET_BY_TOKEN, args![&token_hash]).await?)
    })
}

const VISIBLE: &str = pkg_select!(
    "WHERE p.app_id = $1 AND p.state NOT IN ('history', 'retired') ORDER BY p.package_id"
);

/// The third party's own weekly quota (None: the platform's default); with `lock`, read by
/// the statement that locks its row (to serialise submissions).
async fn own_quota<X: Tx>(tx: &mut X, tp_id: TpId, lock: bool) -> Result<Option<i64>> {
    let sql = match lock {
        true => tx.pick(locking!("SELECT audit_quota FROM tps WHERE tp_id = $1")),
        false => "SELECT audit_quota FROM tps WHERE tp_id = $1",
    };
    let row = tx.opt(sql, args![tp_id]).await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("tp {tp_id}")))?;
    row.opt_i64("audit_quota")
}

/// The weekly limit that applies, and the week's submissions so far. Without a limit, they
/// are not counted: a count that grows with the week, taken under the third party's lock,
/// that `decide` would not consult.
async fn used_quota<X: Tx>(
    tx: &mut X,
    tp_id: TpId,
    own: Option<i64>,
    ctx: &DecisionContext,
    count_unlimited: bool,
) -> Result<Quota> {
    // The third party's own limit, else the platform's; None or a negative figure is
    // unlimited.
    let own = own.filter(|_| ctx.dialect == Dialect::Baidu);
    let limit = own.or(ctx.default_quota).filter(|n| *n >= 0);
    if limit.is_none() && !count_unlimited {
        return Ok(Quota { limit, used: 0 });
    }
    let sql = "SELECT COUNT(*) AS n FROM audit_submissions \
               WHERE tp_id = $1 AND submitted_at >= $2 AND dialect = $3";
    let used = tx
        .int(sql, args![tp_id, ctx.quota_since_ms, ctx.dialect.as_str()])
        .await?;
    Ok(Quota { limit, used })
}

/// What a decision reads under its locks.
struct Locked {
    snap: Snapshot,
    tp_id: TpId,
    /// A fresh package id, drawn in the locking statement when an upload asked for one.
    new_id: Option<i64>,
}

/// Locks the app (and, when the decision may consume quota, its third party — always in
/// that order, so two decisions never wait on each other in a circle) and reads what
/// [`lifecycle::decide`] needs; the quota only for a decision that may submit (`lock_tp`).
async fn snapshot<X: Tx>(
    tx: &mut X,
    app_id: AppId,
    target: Option<PackageId>,
    ctx: &DecisionContext,
    lock_tp: bool,
    new_id: bool,
) -> Result<Locked> {
    let app = tx.pick((
        "SELECT name_audited, category_audited, authenticity_certified, tp_id, \
           CASE WHEN $2 THEN nextval('package_ids') END AS new_id \
         FROM apps WHERE app_id = $1 FOR UPDATE",
        // The one writer makes MAX + 1 safe here.
        "SELECT name_audited, category_audited, authenticity_certified, tp_id, \
           CASE WHEN $2 THEN (SELECT COALESCE(MAX(package_id), 0) + 1 FROM packages) END AS new_id \
         FROM apps WHERE app_id = $1",
    ));
    let row = tx.opt(app, args![app_id, new_id]).await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("app {app_id}")))?;
    let app = AppFacts {
        name_audited: row.bool("name_audited")?,
        category_audited: row.bool("category_audited")?,
        authenticity_certified: row.bool("authenticity_certified")?,
    };
    let new_id = row.opt_i64("new_id")?;
    let tp_id: Option<TpId> = row.opt_id("tp_id")?;
    let tp_id =
        tp_id.ok_or_else(|| StoreError::NotFound(format!("authorization of app {app_id}")))?;
    // The third party's row is locked (and its own quota read in the same statement) before
    // the submissions are counted: a count taken in the locking statement would miss a
    // submission committed while it waited for the lock.
    let own = match lock_tp {
        true => Some(own_quota(tx, tp_id, true).await?),
        false => None,
    };
    let rows = tx
        .rows(
            "SELECT package_id, state, previous_package_id, restored, staged_percent, stage_plan, \
                    updated_at \
               FROM packages WHERE app_id = $1 AND (state NOT IN ('history', 'retired') \
                 OR package_id = $2 \
                 OR package_id IN (SELECT previous_package_id FROM packages \
                                   WHERE app_id = $1 AND state IN ('online', 'rolling_back')) \
                 OR package_id IN (SELECT package_id FROM packages WHERE app_id = $1 \
                                   AND state = 'history' \
                                   ORDER BY updated_at DESC, package_id DESC LIMIT $3))",
            args![
                app_id,
                target.unwrap_or(PackageId(-1)),
                lifecycle::ROLLBACK_CHOICES as i64
            ],
        )
        .await?;
    let mut packages = Vec::with_capacity(rows.len());
    let mut history = Vec::new();
    for r in &rows {
        let state = r.string("state")?;
        let p = PackageFacts {
            package_id: PackageId(r.i64("package_id")?),
            state: PkgState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown package state {state}")))?,
            previous_package_id: r.opt_id("previous_package_id")?,
            restored: r.bool("restored")?,
            staged_percent: r.opt_i64("staged_percent")?,
            stage_plan: r
                .opt_string("stage_plan")?
                .map(|t| StagePlan::from_text(&t))
                .transpose()
                .map_err(StoreError::Corrupt)?,
        };
        if p.state == PkgState::History {
            history.push((r.i64("updated_at")?, p.package_id));
        }
        packages.push(p);
    }
    // The query holds the newest history packages, so the newest of those it read are the
    // app's newest (the others it read are older: rollback or command targets).
    history.sort_unstable_by(|a, b| b.cmp(a));
    let recent_history = history
        .into_iter()
        .take(lifecycle::ROLLBACK_CHOICES)
        .map(|(_, id)| id)
        .collect();
    // Only a submission reads the quota (one more round trip): other decisions get an
    // unlimited stand-in that `decide` never consults.
    let quota = match own {
        Some(own) => used_quota(tx, tp_id, own, ctx, false).await?,
        None => Quota {
            limit: None,
            used: 0,
        },
    };
    Ok(Locked {
        snap: Snapshot {
            app,
            quota,
            packages,
            recent_history,
        },
        tp_id,
        new_id,
    })
}

/// Applies the plan's changes and jobs with conditional updates; any row that is not where the
/// plan expects it aborts the whole transaction.
async fn apply_plan<X: Tx>(
    tx: &mut X,
    plan: &Plan,
    tp_id: TpId,
    ctx: &DecisionContext,
    new: Option<&NewPackage>,
) -> Result<()> {
    for c in &plan.changes {
        let p = &c.patch;
        let audit = p.audit_request.as_ref();
        let plan_text: Option<String> = p.stage_plan.clone().flatten().map(|pl| pl.to_text());
        let n = tx
            .exec(
                "UPDATE packages SET state = $1, updated_at = $2, msg = COALESCE($3, msg), \
                     upload_err_code = COALESCE($4, upload_err_code), \
                     upload_err_msg = COALESCE($5, upload_err_msg), \
                     built_ext_json = CASE WHEN $1 = 'retired' THEN NULL \
                                           ELSE COALESCE($6, built_ext_json) END, \
                     ext_json = CASE WHEN $1 = 'retired' THEN '' ELSE ext_json END, \
                     audit_content = COALESCE($7, audit_content), remark = COALESCE($8, remark), \
                     test_account = COALESCE($9, test_account), \
                     test_password = CASE WHEN $1 = 'retired' THEN NULL \
                                          ELSE COALESCE($10, test_password) END, \
                     previous_package_id = CASE WHEN $11 THEN $12 ELSE previous_package_id END, \
                     restored = COALESCE($13, restored), \
                     staged_percent = CASE WHEN $16 THEN $17 ELSE staged_percent END, \
                     stage_plan = CASE WHEN $18 THEN $19 ELSE stage_plan END \
                   WHERE package_id = $14 AND state = $15",
                args![
                    c.to.as_str(),
                    ctx.now_ms,
                    &p.msg,
                    p.upload_error.as_ref().map(|(e, _)| e.code()),
                    p.upload_error.as_ref().map(|(_, m)| m.as_str()),
                    &p.built_ext_json,
                    audit.map(|a| a.content.as_str()),
                    audit.map(|a| a.remark.as_str()),
                    audit.and_then(|a| a.test_account.as_deref()),
                    audit.and_then(|a| a.test_password.as_deref()),
                    p.previous_package_id.is_some(),
                    p.previous_package_id.flatten(),
                    p.restored,
                    c.package_id,
                    c.from.as_str(),
                    p.staged_percent.is_some(),
                    p.staged_percent.flatten(),
                    p.stage_plan.is_some(),
                    &plan_text,
                ],
            )
            .await?;
        if n != 1 {
            let (id, from) = (c.package_id, c.from.as_str());
            return Err(StoreError::conflict(format!(
                "package {id} is no longer {from}"
            )));
        }
    }
    if let Some(id) = plan.create {
        let new = new.ok_or_else(|| {
            StoreError::Corrupt("a plan creates a package without its data".into())
        })?;
        tx.exec(
            "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, \
                   version_desc, ext_json, direct_commit, test_account, test_password, \
                   commit_time, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
            args![
                id,
                new.app_id,
                new.tp_id,
                new.template_id,
                PkgState::Building.as_str(),
                &new.version,
                &new.version_desc,
                &new.ext_json,
                new.direct_commit,
                &new.test_account,
                &new.test_password,
                ctx.now_ms
            ],
        )
        .await?;
    }
    for j in &plan.jobs {
        let run_at = ctx.now_ms.saturating_add(j.delay_ms as i64);
        tx.exec(
            "INSERT INTO jobs (kind, package_id, run_at, created_at) VALUES ($1, $2, $3, $4)",
            args![j.kind.as_str(), j.package_id, run_at, ctx.now_ms],
        )
        .await?;
    }
    if let Some((package_id, pass, reason)) = &plan.audit_decision {
        outbox(tx, tp_id, *package_id, *pass, reason, ctx.now_ms).await?;
    }
    if let Some(e) = &plan.stage_event {
        super::deliveries::stage_outbox(tx, tp_id, e, ctx.now_ms).await?;
    }
    let (actor, account) = ctx.actor.to_db();
    for l in crate::plan_log(plan) {
        tx.exec(
            "INSERT INTO package_log (package_id, app_id, at, from_state, to_state, actor, \
                   account_id, detail) \
                 SELECT $1, app_id, $2, $3, $4, $5, $6, $7 FROM packages WHERE package_id = $1",
            args![
                l.package_id,
                ctx.now_ms,
                l.from.map(PkgState::as_str),
                l.to.as_str(),
                actor,
                account,
                l.detail
            ],
        )
        .await?;
    }
    if plan.consume_quota {
        let package_id = plan
            .changes
            .iter()
            .find(|c| c.to == PkgState::Auditing)
            .map(|c| c.package_id)
            .unwrap_or(PackageId(0));
        tx.exec(
            "INSERT INTO audit_submissions (tp_id, package_id, submitted_at, dialect) \
                 VALUES ($1, $2, $3, $4)",
            args![tp_id, package_id, ctx.now_ms, ctx.dialect.as_str()],
        )
        .await?;
    }
    Ok(())
}

/// Lost races (a conflict reported by the database or by a conditional update) are retried
/// this many times before the caller hears "processing, retry".
const DECISION_ATTEMPTS: usize = 3;

/// Runs `attempt` until it does not lose a race, at most [`DECISION_ATTEMPTS`] times.
async fn retried<T, F>(mut attempt: impl FnMut() -> F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut last = None;
    for _ in 0..DECISION_ATTEMPTS {
        match attempt().await {
            Err(e @ StoreError::Conflict(_)) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| StoreError::conflict("the decision kept losing races")))
}

#[async_trait]
impl<S: Sql> PackageStore for S {
    async fn visible_packages(&self, app_id: AppId) -> Result<Vec<PackageRecord>> {
        work!(read, self, |tx| {
            decode(
                tx.rows(VISIBLE, args![app_id]).await?,
                PackageRecord::from_row,
            )
        })
    }

    async fn visible_packages_by_token(
        &self,
        token_hash: String,
    ) -> Result<Option<(Grant, Vec<PackageRecord>)>> {
        self.by_token(token_hash).await
    }

    async fn get_package(&self, package_id: PackageId) -> Result<Option<PackageRecord>> {
        work!(read, self, |tx| {
            let row = tx
                .opt(pkg_select!("WHERE p.package_id = $1"), args![package_id])
                .await?;
            row.as_ref().map(PackageRecord::from_row).transpose()
        })
    }

    async fn list_packages(&self, filter: PackageFilter) -> Result<Vec<PackageRecord>> {
        // The wire status maps to one or more states; filter on states so the index is used
        // (the states are the lifecycle's own names, written into the statement).
        let states: Vec<String> = match filter.status {
            None => vec![],
            Some(code) => PkgState::ALL
                .into_iter()
                .filter(|s| s.wire_status().map(|w| w.code()) == Some(code))
                .map(|s| format!("'{}'", s.as_str()))
                .collect(),
        };
        if filter.status.is_some() && states.is_empty() {
            return Ok(vec![]);
        }
        work!(read, self, |tx| {
            let mut sql = String::from(pkg_select!("WHERE 1 = 1"));
            if !states.is_empty() {
                sql.push_str(&format!(" AND p.state IN ({})", states.join(",")));
            }
            sql.push_str(
                " AND ($1 IS NULL OR p.app_id = $1) AND ($2 IS NULL OR p.tp_id = $2) \
                          ORDER BY p.package_id DESC LIMIT $3",
            );
            let args = args![filter.app_id, filter.tp_id, filter.limit.unwrap_or(1000)];
            decode(tx.rows(&sql, args).await?, PackageRecord::from_row)
        })
    }

    async fn audit_quota(&self, tp_id: TpId, ctx: DecisionContext) -> Result<Quota> {
        work!(read, self, |tx| {
            let own = own_quota(tx, tp_id, false).await?;
            used_quota(tx, tp_id, own, &ctx, true).await
        })
    }

    async fn latest_submission(&self, app_id: AppId) -> Result<Option<PackageId>> {
        work!(read, self, |tx| {
            let sql = "SELECT package_id FROM package_log \
                       WHERE app_id = $1 AND to_state = 'auditing' ORDER BY log_id DESC LIMIT 1";
            match tx.opt(sql, args![app_id]).await? {
                Some(r) => Ok(Some(r.id("package_id")?)),
                None => Ok(None),
            }
        })
    }

    async fn audit_outcome(&self, package_id: PackageId) -> Result<Option<AuditOutcome>> {
        work!(read, self, |tx| {
            let submitted = tx
                .opt(
                    "SELECT log_id, at FROM package_log WHERE package_id = $1 \
                       AND to_state = 'auditing' ORDER BY log_id DESC LIMIT 1",
                    args![package_id],
                )
                .await?;
            let Some(submitted) = submitted else {
                return Ok(None);
            };
            let (log_id, submitted_at_ms) = (submitted.i64("log_id")?, submitted.i64("at")?);
            // The first move out of auditing after the submission is how the audit ended.
            let ended = tx
                .opt(
                    "SELECT at, to_state, detail FROM package_log WHERE package_id = $1 \
                       AND log_id > $2 AND from_state = 'auditing' ORDER BY log_id LIMIT 1",
                    args![package_id, log_id],
                )
                .await?;
            let verdict = match ended {
                None => AuditVerdict::Auditing,
                Some(r) => {
                    let at_ms = r.i64("at")?;
                    match r.string("to_state")?.as_str() {
                        "audit_passed" => AuditVerdict::Passed { at_ms },
                        "audit_failed" => AuditVerdict::Failed {
                            at_ms,
                            reason: r.opt_string("detail")?.unwrap_or_default(),
                        },
                        _ => AuditVerdict::Withdrawn { at_ms },
                    }
                }
            };
            Ok(Some(AuditOutcome {
                submitted_at_ms,
                verdict,
            }))
        })
    }

    async fn withdrawals_since(&self, app_id: AppId, since_ms: i64) -> Result<i64> {
        work!(read, self, |tx| {
            let sql = "SELECT COUNT(*) AS n FROM package_log WHERE app_id = $1 AND at >= $2 \
                         AND from_state = 'auditing' AND to_state IN ('development', 'retired')";
            tx.int(sql, args![app_id, since_ms]).await
        })
    }

    async fn speed_up_audit(
        &self,
        tp_id: TpId,
        package_id: PackageId,
        limit: Option<i64>,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<SpeedUp> {
        work!(write, self, |tx| {
            // The third party's row serialises its speed-ups, so two at once cannot both
            // take the last one of the month.
            let lock = tx.pick(locking!("SELECT tp_id FROM tps WHERE tp_id = $1"));
            tx.exec(lock, args![tp_id]).await?;
            let asked = "SELECT COUNT(*) AS n FROM audit_speedups WHERE package_id = $1";
            if tx.int(asked, args![package_id]).await? > 0 {
                return Ok(SpeedUp::AlreadyAsked);
            }
            if let Some(limit) = limit {
                let used =
                    "SELECT COUNT(*) AS n FROM audit_speedups WHERE tp_id = $1 AND sped_at >= $2";
                if tx.int(used, args![tp_id, since_ms]).await? >= limit {
                    return Ok(SpeedUp::QuotaUsed);
                }
            }
            tx.exec(
                "INSERT INTO audit_speedups (package_id, tp_id, sped_at) VALUES ($1, $2, $3)",
                args![package_id, tp_id, now_ms],
            )
            .await?;
            Ok(SpeedUp::Recorded)
        })
    }

    async fn speed_ups_since(&self, tp_id: TpId, since_ms: i64) -> Result<i64> {
        work!(read, self, |tx| {
            let sql = "SELECT COUNT(*) AS n FROM audit_speedups WHERE tp_id = $1 AND sped_at >= $2";
            tx.int(sql, args![tp_id, since_ms]).await
        })
    }

    async fn upload(
        &self,
        new: NewPackage,
        ctx: DecisionContext,
    ) -> Result<std::result::Result<(PackageId, Plan), Refusal>> {
        retried(|| {
            let new = new.clone();
            async move {
                work!(write, self, |tx| {
                    let Locked {
                        snap,
                        tp_id,
                        new_id,
                    } = snapshot(tx, new.app_id, None, &ctx, false, true).await?;
                    let id = new_id
                        .ok_or_else(|| StoreError::Corrupt("no package id was drawn".into()))?;
                    let upload = Command::Upload {
                        package_id: PackageId(id),
                    };
                    let plan = match lifecycle::decide(&snap, &upload, &ctx.policy) {
                        Ok(plan) => plan,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    apply_plan(tx, &plan, tp_id, &ctx, Some(&new)).await?;
                    Ok(Ok((PackageId(id), plan)))
                })
            }
        })
        .await
    }

    async fn execute(
        &self,
        app_id: AppId,
        cmd: Command,
        ctx: DecisionContext,
        job: Option<JobRef>,
    ) -> Result<Decision> {
        retried(|| {
            let cmd = cmd.clone();
            async move {
                work!(write, self, |tx| {
                    let Locked { snap, tp_id, .. } =
                        snapshot(tx, app_id, cmd.target(), &ctx, cmd.may_submit(), false).await?;
                    let decision = lifecycle::decide(&snap, &cmd, &ctx.policy);
                    if let Ok(plan) = &decision {
                        apply_plan(tx, plan, tp_id, &ctx, None).await?;
                        if let Some(job) = job {
                            // The job is done in the same transaction as the change it caused, so
                            // a crash either loses both or keeps both: never a transition applied
                            // twice. A lost lease rolls the whole decision back.
                            let sql = "DELETE FROM jobs WHERE job_id = $1 AND lease_token = $2";
                            lease_held(tx.exec(sql, args![job.job_id, job.lease]).await?, job)?;
                        }
                    }
                    Ok(decision)
                })
            }
        })
        .await
    }
}
