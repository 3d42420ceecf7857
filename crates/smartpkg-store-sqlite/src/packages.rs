use super::*;

/// The package columns, as a macro so hot queries are whole string literals (no `format!`
/// on every call, and the statement cache finds them without building a key).
macro_rules! pkg_select {
    ($rest:literal) => {
        concat!(
            "SELECT ",
            smartpkg_store::package_columns!(),
            " FROM packages p ",
            $rest
        )
    };
}

fn parse_state(s: String) -> rusqlite::Result<PkgState> {
    PkgState::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            4,
            rusqlite::types::Type::Text,
            format!("unknown package state {s}").into(),
        )
    })
}

pub(crate) fn pkg_row(r: &Row<'_>) -> rusqlite::Result<PackageRecord> {
    decoded(PackageRecord::from_row(&Cols::new(r)))
}

pub(crate) fn quota(tx: &Connection, tp_id: i64, ctx: &DecisionContext) -> Result<Quota> {
    let own: Option<Option<i64>> = tx
        .query_row(
            "SELECT audit_quota FROM tps WHERE tp_id = ?1",
            [tp_id],
            |r| r.get(0),
        )
        .optional()?;
    let own = own.ok_or_else(|| StoreError::NotFound(format!("tp {tp_id}")))?;
    let limit = match own.or(ctx.default_quota) {
        Some(n) if n >= 0 => Some(n),
        _ => None,
    };
    let used: i64 = tx.query_row(
        "SELECT COUNT(*) FROM audit_submissions WHERE tp_id = ?1 AND submitted_at >= ?2",
        params![tp_id, ctx.week_start_ms],
        |r| r.get(0),
    )?;
    Ok(Quota { limit, used })
}

/// Reads what [`lifecycle::decide`] needs, inside the deciding transaction.
pub(crate) fn snapshot(
    tx: &Transaction<'_>,
    app_id: i64,
    target: Option<i64>,
    ctx: &DecisionContext,
) -> Result<(Snapshot, i64)> {
    let (app, tp_id) = tx
        .query_row(
            "SELECT name_audited, category_audited, authenticity_certified, tp_id FROM apps WHERE app_id = ?1",
            [app_id],
            |r| {
                Ok((
                    AppFacts {
                        name_audited: r.get(0)?,
                        category_audited: r.get(1)?,
                        authenticity_certified: r.get(2)?,
                    },
                    r.get::<_, Option<i64>>(3)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("app {app_id}")))?;
    let tp_id =
        tp_id.ok_or_else(|| StoreError::NotFound(format!("authorization of app {app_id}")))?;
    let mut stmt = tx.prepare_cached(
        "SELECT package_id, state, previous_package_id, restored, staged_percent FROM packages \
         WHERE app_id = ?1 AND (state NOT IN ('history', 'retired') OR package_id = ?2 \
           OR package_id IN (SELECT previous_package_id FROM packages \
                             WHERE app_id = ?1 AND state IN ('online', 'rolling_back')) \
           OR package_id IN (SELECT package_id FROM packages WHERE app_id = ?1 AND state = 'history' \
                             ORDER BY updated_at DESC, package_id DESC LIMIT ?3))",
    )?;
    let packages = stmt
        .query_map(
            params![
                app_id,
                target.unwrap_or(-1),
                lifecycle::ROLLBACK_CHOICES as i64
            ],
            |r| {
                Ok(PackageFacts {
                    package_id: r.get(0)?,
                    state: parse_state(r.get(1)?)?,
                    previous_package_id: r.get(2)?,
                    restored: r.get(3)?,
                    staged_percent: r.get(4)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let recent_history = tx
        .prepare_cached(
            "SELECT package_id FROM packages WHERE app_id = ?1 AND state = 'history' \
             ORDER BY updated_at DESC, package_id DESC LIMIT ?2",
        )?
        .query_map(params![app_id, lifecycle::ROLLBACK_CHOICES as i64], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    let quota = quota(tx, tp_id, ctx)?;
    Ok((
        Snapshot {
            app,
            quota,
            packages,
            recent_history,
        },
        tp_id,
    ))
}

/// Applies the plan's changes and jobs with conditional updates; any row that is not where the
/// plan expects it aborts the whole transaction.
pub(crate) fn apply_plan(
    tx: &Transaction<'_>,
    plan: &Plan,
    tp_id: i64,
    ctx: &DecisionContext,
    new: Option<&NewPackage>,
) -> Result<()> {
    for c in &plan.changes {
        let p = &c.patch;
        let audit = p.audit_request.as_ref();
        let n = tx.prepare_cached(
            "UPDATE packages SET state = ?1, updated_at = ?2, \
               msg = COALESCE(?3, msg), \
               upload_err_code = COALESCE(?4, upload_err_code), upload_err_msg = COALESCE(?5, upload_err_msg), \
               built_ext_json = CASE WHEN ?1 = 'retired' THEN NULL ELSE COALESCE(?6, built_ext_json) END, \
               ext_json = CASE WHEN ?1 = 'retired' THEN '' ELSE ext_json END, \
               audit_content = COALESCE(?7, audit_content), remark = COALESCE(?8, remark), \
               test_account = COALESCE(?9, test_account), test_password = CASE WHEN ?1 = 'retired' THEN NULL ELSE COALESCE(?10, test_password) END, \
               previous_package_id = CASE WHEN ?11 THEN ?12 ELSE previous_package_id END, \
               restored = COALESCE(?13, restored), \
               staged_percent = CASE WHEN ?16 THEN ?17 ELSE staged_percent END \
             WHERE package_id = ?14 AND state = ?15",
        )?
        .execute(params![
            c.to.as_str(),
            ctx.now_ms,
            p.msg,
            p.upload_error.as_ref().map(|(e, _)| e.code()),
            p.upload_error.as_ref().map(|(_, m)| m),
            p.built_ext_json,
            audit.map(|a| &a.content),
            audit.map(|a| &a.remark),
            audit.and_then(|a| a.test_account.as_ref()),
            audit.and_then(|a| a.test_password.as_ref()),
            p.previous_package_id.is_some(),
            p.previous_package_id.flatten(),
            p.restored,
            c.package_id,
            c.from.as_str(),
            p.staged_percent.is_some(),
            p.staged_percent.flatten(),
        ])?;
        if n != 1 {
            return Err(StoreError::conflict(format!(
                "package {} is no longer {}",
                c.package_id,
                c.from.as_str()
            ))
            .into());
        }
    }
    if let Some(id) = plan.create {
        let new = new.ok_or_else(|| {
            StoreError::Corrupt("a plan creates a package without its data".into())
        })?;
        tx.prepare_cached(
            "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, version_desc, \
               ext_json, direct_commit, test_account, test_password, commit_time, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
        )?
        .execute(params![
            id,
            new.app_id,
            new.tp_id,
            new.template_id,
            PkgState::Building.as_str(),
            new.version,
            new.version_desc,
            new.ext_json,
            new.direct_commit,
            new.test_account,
            new.test_password,
            ctx.now_ms,
        ])?;
    }
    for j in &plan.jobs {
        tx.prepare_cached(
            "INSERT INTO jobs (kind, package_id, run_at, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            j.kind.as_str(),
            j.package_id,
            ctx.now_ms.saturating_add(j.delay_ms as i64),
            ctx.now_ms
        ])?;
    }
    if let Some((package_id, pass, reason)) = &plan.audit_decision {
        outbox(tx, tp_id, *package_id, *pass, reason, ctx.now_ms)?;
    }
    let (actor, account) = ctx.actor.to_db();
    for l in smartpkg_store::plan_log(plan) {
        tx.prepare_cached(
            "INSERT INTO package_log (package_id, app_id, at, from_state, to_state, actor, account_id, detail) \
             SELECT ?1, app_id, ?2, ?3, ?4, ?5, ?6, ?7 FROM packages WHERE package_id = ?1",
        )?
        .execute(params![
            l.package_id,
            ctx.now_ms,
            l.from.map(PkgState::as_str),
            l.to.as_str(),
            actor,
            account,
            l.detail
        ])?;
    }
    if plan.consume_quota {
        let package_id = plan
            .changes
            .iter()
            .find(|c| c.to == PkgState::Auditing)
            .map(|c| c.package_id)
            .unwrap_or_default();
        tx.prepare_cached(
            "INSERT INTO audit_submissions (tp_id, package_id, submitted_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![tp_id, package_id, ctx.now_ms])?;
    }
    Ok(())
}

pub(crate) fn visible(c: &Connection, app_id: i64) -> Result<Vec<PackageRecord>> {
    let mut stmt = c.prepare_cached(pkg_select!(
        "WHERE p.app_id = ?1 AND p.state NOT IN ('history', 'retired') ORDER BY p.package_id"
    ))?;
    let rows = stmt
        .query_map([app_id], pkg_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[async_trait]
impl PackageStore for SqliteStore {
    async fn visible_packages(&self, app_id: i64) -> StoreResult<Vec<PackageRecord>> {
        self.read(move |c| visible(c, app_id)).await
    }

    async fn visible_packages_by_token(
        &self,
        token_hash: String,
    ) -> StoreResult<Option<(Grant, Vec<PackageRecord>)>> {
        self.read(move |c| match grant(c, &token_hash)? {
            Some(g) => Ok(Some((g, visible(c, g.app_id)?))),
            None => Ok(None),
        })
        .await
    }

    async fn get_package(&self, package_id: i64) -> StoreResult<Option<PackageRecord>> {
        self.read(move |c| {
            Ok(c.prepare_cached(pkg_select!("WHERE p.package_id = ?1"))?
                .query_row([package_id], pkg_row)
                .optional()?)
        })
        .await
    }

    async fn list_packages(&self, filter: PackageFilter) -> StoreResult<Vec<PackageRecord>> {
        // The wire status maps to one or more states; filter on states so the index is used.
        let states: Vec<&'static str> = match filter.status {
            None => vec![],
            Some(code) => PkgState::ALL
                .into_iter()
                .filter(|s| s.wire_status().map(|w| w.code()) == Some(code))
                .map(PkgState::as_str)
                .collect(),
        };
        if filter.status.is_some() && states.is_empty() {
            return Ok(vec![]);
        }
        self.read(move |c| {
            let state_list = states.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
            let mut sql = String::from(pkg_select!("WHERE 1 = 1"));
            if !state_list.is_empty() {
                sql.push_str(&format!(" AND p.state IN ({state_list})"));
            }
            sql.push_str(" AND (?1 IS NULL OR p.app_id = ?1) AND (?2 IS NULL OR p.tp_id = ?2) ORDER BY p.package_id DESC LIMIT ?3");
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt
                .query_map(params![filter.app_id, filter.tp_id, filter.limit.unwrap_or(1000)], pkg_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn audit_quota(&self, tp_id: i64, ctx: DecisionContext) -> StoreResult<Quota> {
        self.read(move |c| quota(c, tp_id, &ctx)).await
    }

    async fn upload(
        &self,
        new: NewPackage,
        ctx: DecisionContext,
    ) -> StoreResult<std::result::Result<(i64, Plan), lifecycle::Refusal>> {
        self.write(move |tx| {
            let id: i64 = tx.query_row(
                "SELECT COALESCE(MAX(package_id), 0) + 1 FROM packages",
                [],
                |r| r.get(0),
            )?;
            let (snap, tp_id) = snapshot(tx, new.app_id, None, &ctx)?;
            let plan =
                match lifecycle::decide(&snap, &Command::Upload { package_id: id }, &ctx.policy) {
                    Ok(plan) => plan,
                    Err(refusal) => return Ok(Err(refusal)),
                };
            apply_plan(tx, &plan, tp_id, &ctx, Some(&new))?;
            Ok(Ok((id, plan)))
        })
        .await
    }

    async fn execute(
        &self,
        app_id: i64,
        cmd: Command,
        ctx: DecisionContext,
        job: Option<JobRef>,
    ) -> StoreResult<Decision> {
        self.write(move |tx| {
            let (snap, tp_id) = snapshot(tx, app_id, cmd.target(), &ctx)?;
            let decision = lifecycle::decide(&snap, &cmd, &ctx.policy);
            if let Ok(plan) = &decision {
                apply_plan(tx, plan, tp_id, &ctx, None)?;
                if let Some(job) = job {
                    // The job is done in the same transaction as the change it caused, so a
                    // crash either loses both or keeps both: never a transition applied twice.
                    // A lost lease rolls the whole decision back.
                    let n = tx
                        .prepare_cached("DELETE FROM jobs WHERE job_id = ?1 AND lease_token = ?2")?
                        .execute(params![job.job_id, job.lease])?;
                    lease_held(n, job)?;
                }
            }
            Ok(decision)
        })
        .await
    }
}
