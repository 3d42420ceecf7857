use async_trait::async_trait;
use smartpkg_core::lifecycle::{
    self, AppFacts, Command, PackageFacts, PkgState, Plan, Quota, Refusal, Snapshot,
};
use smartpkg_store::{
    Columns, Decision, DecisionContext, Grant, JobRef, NewPackage, PackageFilter, PackageRecord,
    PackageStore, Result, StoreError,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::deliveries::outbox;
use crate::{corrupt, Cols, Db, PgStore, ReaderCols};

macro_rules! pkg_cols {
    () => {
        smartpkg_store::package_columns!()
    };
}

const PKG_SELECT: &str = concat!("SELECT ", pkg_cols!(), " FROM packages p ");

/// `get`'s one round trip: the token's grant and its app's visible packages (a row of NULL
/// package columns when it has none).
pub(crate) const GET_BY_TOKEN: &str = concat!(
    "SELECT t.app_id AS grant_app_id, t.tp_id AS grant_tp_id, t.expires_at AS grant_expires_at, ",
    pkg_cols!(),
    " FROM access_tokens t JOIN apps a ON a.app_id = t.app_id AND a.tp_id = t.tp_id \
     LEFT JOIN packages p ON p.app_id = t.app_id AND p.state NOT IN ('history', 'retired') \
     WHERE t.token_hash = $1 AND t.kind = 'app' ORDER BY p.package_id"
);

pub(crate) fn state(s: &str) -> Result<PkgState> {
    PkgState::parse(s).ok_or_else(|| corrupt(format!("unknown package state {s}")))
}

fn pkg_row(r: &PgRow) -> Result<PackageRecord> {
    PackageRecord::from_row(&Cols(r))
}

async fn quota(c: &mut PgConnection, tp_id: i64, ctx: &DecisionContext) -> Result<Quota> {
    let own = own_quota(c, tp_id, false).await?;
    used_quota(c, tp_id, own, ctx).await
}

/// The third party's own weekly quota (None: the platform's default); with `lock`, read by
/// the statement that locks its row (`FOR UPDATE`, to serialise submissions).
async fn own_quota(c: &mut PgConnection, tp_id: i64, lock: bool) -> Result<Option<i64>> {
    let sql = match lock {
        true => "SELECT audit_quota FROM tps WHERE tp_id = $1 FOR UPDATE",
        false => "SELECT audit_quota FROM tps WHERE tp_id = $1",
    };
    let own: Option<Option<i64>> = sqlx::query_scalar(sql)
        .bind(tp_id)
        .fetch_optional(&mut *c)
        .await
        .db()?;
    own.ok_or_else(|| StoreError::NotFound(format!("tp {tp_id}")))
}

/// The weekly limit that applies: the third party's own, else the platform's; None or a
/// negative figure is unlimited.
fn limit_of(own: Option<i64>, ctx: &DecisionContext) -> Option<i64> {
    own.or(ctx.default_quota).filter(|n| *n >= 0)
}

async fn used_quota(
    c: &mut PgConnection,
    tp_id: i64,
    own: Option<i64>,
    ctx: &DecisionContext,
) -> Result<Quota> {
    Ok(Quota {
        limit: limit_of(own, ctx),
        used: count_submissions(c, tp_id, ctx).await?,
    })
}

/// The quota a decision needs: without a limit, the week's submissions are not counted
/// (a count that grows with the week, taken under the third party's lock, that `decide`
/// would not consult).
async fn decision_quota(
    c: &mut PgConnection,
    tp_id: i64,
    own: Option<i64>,
    ctx: &DecisionContext,
) -> Result<Quota> {
    match limit_of(own, ctx) {
        Some(_) => used_quota(c, tp_id, own, ctx).await,
        None => Ok(Quota {
            limit: None,
            used: 0,
        }),
    }
}

async fn count_submissions(c: &mut PgConnection, tp_id: i64, ctx: &DecisionContext) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_submissions WHERE tp_id = $1 AND submitted_at >= $2",
    )
    .bind(tp_id)
    .bind(ctx.week_start_ms)
    .fetch_one(&mut *c)
    .await
    .db()
}

/// Locks the app (and, when the decision may consume quota, its third party — always in that
/// order) and reads what [`lifecycle::decide`] needs; the quota only for a decision that may
/// submit (`lock_tp`).
/// What a decision reads under its locks.
struct Locked {
    snap: Snapshot,
    tp_id: i64,
    /// A fresh package id, drawn in the locking statement when an upload asked for one.
    new_id: Option<i64>,
}

async fn snapshot(
    c: &mut PgConnection,
    app_id: i64,
    target: Option<i64>,
    ctx: &DecisionContext,
    lock_tp: bool,
    new_id: bool,
) -> Result<Locked> {
    let row = sqlx::query(
        "SELECT name_audited, category_audited, authenticity_certified, tp_id, \
           CASE WHEN $2 THEN nextval('package_ids') END \
         FROM apps WHERE app_id = $1 FOR UPDATE",
    )
    .bind(app_id)
    .bind(new_id)
    .fetch_optional(&mut *c)
    .await
    .db()?
    .ok_or_else(|| StoreError::NotFound(format!("app {app_id}")))?;
    let app = AppFacts {
        name_audited: row.try_get(0).db()?,
        category_audited: row.try_get(1).db()?,
        authenticity_certified: row.try_get(2).db()?,
    };
    let tp_id: Option<i64> = row.try_get(3).db()?;
    let new_id: Option<i64> = row.try_get(4).db()?;
    let tp_id =
        tp_id.ok_or_else(|| StoreError::NotFound(format!("authorization of app {app_id}")))?;
    // The third party's row is locked (and its own quota read in the same statement) before
    // the submissions are counted: a count taken in the locking statement would miss a
    // submission committed while it waited for the lock.
    let own = match lock_tp {
        true => Some(own_quota(c, tp_id, true).await?),
        false => None,
    };
    let rows = sqlx::query(
        "SELECT package_id, state, previous_package_id, restored, staged_percent, updated_at FROM packages \
         WHERE app_id = $1 AND (state NOT IN ('history', 'retired') OR package_id = $2 \
           OR package_id IN (SELECT previous_package_id FROM packages \
                             WHERE app_id = $1 AND state IN ('online', 'rolling_back')) \
           OR package_id IN (SELECT package_id FROM packages WHERE app_id = $1 AND state = 'history' \
                             ORDER BY updated_at DESC, package_id DESC LIMIT $3))",
    )
    .bind(app_id)
    .bind(target.unwrap_or(-1))
    .bind(lifecycle::ROLLBACK_CHOICES as i64)
    .fetch_all(&mut *c)
    .await
    .db()?;
    let packages = rows
        .iter()
        .map(|r| {
            let s: String = r.try_get(1).db()?;
            Ok(PackageFacts {
                package_id: r.try_get(0).db()?,
                state: state(&s)?,
                previous_package_id: r.try_get(2).db()?,
                restored: r.try_get(3).db()?,
                staged_percent: r.try_get(4).db()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // The query holds the newest history packages, so the newest of those it read are the
    // app's newest (the others it read are older: rollback or command targets).
    let mut history: Vec<(i64, i64)> = rows
        .iter()
        .zip(&packages)
        .filter(|(_, p)| p.state == PkgState::History)
        .map(|(r, p)| Ok((r.try_get::<i64, _>(5).db()?, p.package_id)))
        .collect::<Result<Vec<_>>>()?;
    history.sort_unstable_by(|a, b| b.cmp(a));
    let recent_history = history
        .into_iter()
        .take(lifecycle::ROLLBACK_CHOICES)
        .map(|(_, id)| id)
        .collect();
    // Only a submission reads the quota (one more round trip): other decisions get an
    // unlimited stand-in that `decide` never consults.
    let quota = match own {
        Some(own) => decision_quota(c, tp_id, own, ctx).await?,
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

/// Applies the plan with conditional updates; a row not where the plan expects aborts all.
async fn apply_plan(
    c: &mut PgConnection,
    plan: &Plan,
    tp_id: i64,
    ctx: &DecisionContext,
    new: Option<&NewPackage>,
) -> Result<()> {
    // Each change writes its timeline row in the same statement (one round trip, not two):
    // `plan_log` has one row per change, in order, then one for a created package.
    let logs = smartpkg_store::plan_log(plan);
    let (actor, account) = ctx.actor.to_db();
    for (ch, log) in plan.changes.iter().zip(&logs) {
        let p = &ch.patch;
        let audit = p.audit_request.as_ref();
        let n = sqlx::query(
            "WITH changed AS ( \
               UPDATE packages SET state = $1, updated_at = $2, \
                 msg = COALESCE($3, msg), \
                 upload_err_code = COALESCE($4, upload_err_code), upload_err_msg = COALESCE($5, upload_err_msg), \
                 built_ext_json = CASE WHEN $1 = 'retired' THEN NULL ELSE COALESCE($6, built_ext_json) END, \
                 ext_json = CASE WHEN $1 = 'retired' THEN '' ELSE ext_json END, \
                 audit_content = COALESCE($7, audit_content), remark = COALESCE($8, remark), \
                 test_account = COALESCE($9, test_account), test_password = CASE WHEN $1 = 'retired' THEN NULL ELSE COALESCE($10, test_password) END, \
                 previous_package_id = CASE WHEN $11 THEN $12 ELSE previous_package_id END, \
                 restored = COALESCE($13, restored), \
                 staged_percent = CASE WHEN $16 THEN $17 ELSE staged_percent END \
               WHERE package_id = $14 AND state = $15 RETURNING app_id) \
             INSERT INTO package_log (package_id, app_id, at, from_state, to_state, actor, account_id, detail) \
             SELECT $14, app_id, $2, $15, $1, $18, $19, $20 FROM changed",
        )
        .bind(ch.to.as_str())
        .bind(ctx.now_ms)
        .bind(p.msg.as_deref())
        .bind(p.upload_error.as_ref().map(|(e, _)| e.code()))
        .bind(p.upload_error.as_ref().map(|(_, m)| m.as_str()))
        .bind(p.built_ext_json.as_deref())
        .bind(audit.map(|a| a.content.as_str()))
        .bind(audit.map(|a| a.remark.as_str()))
        .bind(audit.and_then(|a| a.test_account.as_deref()))
        .bind(audit.and_then(|a| a.test_password.as_deref()))
        .bind(p.previous_package_id.is_some())
        .bind(p.previous_package_id.flatten())
        .bind(p.restored)
        .bind(ch.package_id)
        .bind(ch.from.as_str())
        .bind(p.staged_percent.is_some())
        .bind(p.staged_percent.flatten())
        .bind(actor)
        .bind(account)
        .bind(log.detail.as_deref())
        .execute(&mut *c)
        .await
        .db()?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::conflict(format!(
                "package {} is no longer {}",
                ch.package_id,
                ch.from.as_str()
            )));
        }
    }
    if let Some(id) = plan.create {
        let new = new.ok_or_else(|| corrupt("a plan creates a package without its data"))?;
        sqlx::query(
            "WITH created AS ( \
               INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, version_desc, \
                 ext_json, direct_commit, test_account, test_password, commit_time, updated_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING package_id) \
             INSERT INTO package_log (package_id, app_id, at, from_state, to_state, actor, account_id, detail) \
             SELECT package_id, $2, $12, NULL, $5, $13, $14, NULL FROM created",
        )
        .bind(id)
        .bind(new.app_id)
        .bind(new.tp_id)
        .bind(new.template_id)
        .bind(PkgState::Building.as_str())
        .bind(&new.version)
        .bind(&new.version_desc)
        .bind(&new.ext_json)
        .bind(new.direct_commit)
        .bind(&new.test_account)
        .bind(&new.test_password)
        .bind(ctx.now_ms)
        .bind(actor)
        .bind(account)
        .execute(&mut *c)
        .await
        .db()?;
    }
    for j in &plan.jobs {
        sqlx::query(
            "INSERT INTO jobs (kind, package_id, run_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(j.kind.as_str())
        .bind(j.package_id)
        .bind(ctx.now_ms.saturating_add(j.delay_ms as i64))
        .bind(ctx.now_ms)
        .execute(&mut *c)
        .await
        .db()?;
    }
    if let Some((package_id, pass, reason)) = &plan.audit_decision {
        outbox(c, tp_id, *package_id, *pass, reason, ctx.now_ms).await?;
    }
    if plan.consume_quota {
        let package_id = plan
            .changes
            .iter()
            .find(|ch| ch.to == PkgState::Auditing)
            .map(|ch| ch.package_id)
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO audit_submissions (tp_id, package_id, submitted_at) VALUES ($1, $2, $3)",
        )
        .bind(tp_id)
        .bind(package_id)
        .bind(ctx.now_ms)
        .execute(&mut *c)
        .await
        .db()?;
    }
    Ok(())
}

async fn visible(c: &mut PgConnection, app_id: i64) -> Result<Vec<PackageRecord>> {
    sqlx::query(&format!(
        "{PKG_SELECT} WHERE p.app_id = $1 AND p.state NOT IN ('history', 'retired') ORDER BY p.package_id"
    ))
    .bind(app_id)
    .fetch_all(c)
    .await
    .db()?
    .iter()
    .map(pkg_row)
    .collect()
}

/// Lost races (a conflict reported by the database or by a conditional update) are retried
/// this many times before the caller hears "processing, retry".
const DECISION_ATTEMPTS: usize = 3;

#[async_trait]
impl PackageStore for PgStore {
    async fn visible_packages(&self, app_id: i64) -> Result<Vec<PackageRecord>> {
        let mut c = self.pool.acquire().await.db()?;
        visible(&mut c, app_id).await
    }

    async fn visible_packages_by_token(
        &self,
        token_hash: String,
    ) -> Result<Option<(Grant, Vec<PackageRecord>)>> {
        // The hottest read: on the pipelined connections, not the pool.
        let rows = self.readers.query(&token_hash).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let first = ReaderCols::new(first);
        let grant = Grant {
            app_id: first.i64("grant_app_id")?,
            tp_id: first.i64("grant_tp_id")?,
            expires_at_ms: first.i64("grant_expires_at")?,
        };
        let mut packages = Vec::with_capacity(rows.len());
        for r in rows.iter().map(ReaderCols::new) {
            // The row of an app without packages has NULL package columns.
            if r.opt_i64("package_id")?.is_some() {
                packages.push(PackageRecord::from_row(&r)?);
            }
        }
        Ok(Some((grant, packages)))
    }

    async fn get_package(&self, package_id: i64) -> Result<Option<PackageRecord>> {
        sqlx::query(&format!("{PKG_SELECT} WHERE p.package_id = $1"))
            .bind(package_id)
            .fetch_optional(&self.pool)
            .await
            .db()?
            .map(|r| pkg_row(&r))
            .transpose()
    }

    async fn list_packages(&self, filter: PackageFilter) -> Result<Vec<PackageRecord>> {
        let states: Vec<String> = match filter.status {
            None => vec![],
            Some(code) => PkgState::ALL
                .into_iter()
                .filter(|s| s.wire_status().map(|w| w.code()) == Some(code))
                .map(|s| s.as_str().to_string())
                .collect(),
        };
        if filter.status.is_some() && states.is_empty() {
            return Ok(vec![]);
        }
        sqlx::query(&format!(
            "{PKG_SELECT} WHERE (cardinality($1::TEXT[]) = 0 OR p.state = ANY($1)) \
             AND ($2::BIGINT IS NULL OR p.app_id = $2) AND ($3::BIGINT IS NULL OR p.tp_id = $3) \
             ORDER BY p.package_id DESC LIMIT $4"
        ))
        .bind(states)
        .bind(filter.app_id)
        .bind(filter.tp_id)
        .bind(filter.limit.unwrap_or(1000))
        .fetch_all(&self.pool)
        .await
        .db()?
        .iter()
        .map(pkg_row)
        .collect()
    }

    async fn audit_quota(&self, tp_id: i64, ctx: DecisionContext) -> Result<Quota> {
        let mut c = self.pool.acquire().await.db()?;
        quota(&mut c, tp_id, &ctx).await
    }

    async fn upload(
        &self,
        new: NewPackage,
        ctx: DecisionContext,
    ) -> Result<std::result::Result<(i64, Plan), Refusal>> {
        let mut last = None;
        for _ in 0..DECISION_ATTEMPTS {
            let mut tx = self.pool.begin().await.db()?;
            let attempt = async {
                let Locked {
                    snap,
                    tp_id,
                    new_id,
                } = snapshot(&mut tx, new.app_id, None, &ctx, false, true).await?;
                let id = new_id.ok_or_else(|| corrupt("no package id was drawn"))?;
                let plan = match lifecycle::decide(
                    &snap,
                    &Command::Upload { package_id: id },
                    &ctx.policy,
                ) {
                    Ok(plan) => plan,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                apply_plan(&mut tx, &plan, tp_id, &ctx, Some(&new)).await?;
                Ok(Ok((id, plan)))
            }
            .await;
            match attempt {
                Ok(out) => {
                    tx.commit().await.db()?;
                    return Ok(out);
                }
                Err(e @ StoreError::Conflict(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::conflict("upload kept losing races")))
    }

    async fn execute(
        &self,
        app_id: i64,
        cmd: Command,
        ctx: DecisionContext,
        job: Option<JobRef>,
    ) -> Result<Decision> {
        let mut last = None;
        for _ in 0..DECISION_ATTEMPTS {
            let mut tx = self.pool.begin().await.db()?;
            let attempt = async {
                let Locked { snap, tp_id, .. } =
                    snapshot(&mut tx, app_id, cmd.target(), &ctx, cmd.may_submit(), false).await?;
                let decision = lifecycle::decide(&snap, &cmd, &ctx.policy);
                if let Ok(plan) = &decision {
                    apply_plan(&mut tx, plan, tp_id, &ctx, None).await?;
                    if let Some(job) = job {
                        // Done in the transaction of the change it caused; a lost lease
                        // rolls the decision back.
                        let n =
                            sqlx::query("DELETE FROM jobs WHERE job_id = $1 AND lease_token = $2")
                                .bind(job.job_id)
                                .bind(job.lease)
                                .execute(&mut *tx)
                                .await
                                .db()?
                                .rows_affected();
                        crate::jobs::lease_held(n, job)?;
                    }
                }
                Ok(decision)
            }
            .await;
            match attempt {
                Ok(out) => {
                    tx.commit().await.db()?;
                    return Ok(out);
                }
                Err(e @ StoreError::Conflict(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::conflict("decision kept losing races")))
    }
}
