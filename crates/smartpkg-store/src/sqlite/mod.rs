//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! One writer connection (SQLite admits one writer at a time anyway) takes every decision in
//! a `BEGIN IMMEDIATE` transaction, so the snapshot it reads cannot change before it writes;
//! a small pool of reader connections serves the read-only calls concurrently. All SQLite work
//! runs on tokio's blocking threads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use smartpkg_core::lifecycle::{
    self, AppFacts, Command, JobKind, PackageFacts, PkgState, Plan, Quota, Snapshot,
};

use crate::{
    App, AppPatch, Approval, AttemptOutcome, AttemptRecord, AuthRefusal, Decision, DecisionContext,
    Delivery, DeliveryState, Draft, EventRecord, Grant, IssuedCode, Job, Lane, LaneKind,
    LibraryRefusal, NewPackage, NewTemplate, OperatorGrant, PackageFilter, PackageRecord,
    PushTarget, Result, Store, StoreError, SweepPolicy, Swept, TargetVerdict, Template, TokenPair,
    Tp, TpPatch,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_init.sql")),
    (2, include_str!("0002_pushes.sql")),
    (3, include_str!("0003_tp_auth_and_library.sql")),
    (4, include_str!("0004_authorization.sql")),
    (5, include_str!("0005_owner_and_token_families.sql")),
    (6, include_str!("0006_delivery_lanes.sql")),
    (7, include_str!("0007_janitor.sql")),
];
const MAX_IDLE_READERS: usize = 16;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Conflict(e.to_string())
            }
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Conflict(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Held for the store's life: one process per database file, which is what makes
    /// releasing every job lease at start-up safe.
    _lock: Option<File>,
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Reads come straight from the page cache of the OS instead of a read() per page.
    conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Opens (creating if needed) a file only its owner may read or write, and tightens the mode
/// of one that already existed with looser permissions.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut opts = File::options();
    opts.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(path)?;
    restrict(path)?;
    Ok(f)
}

fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Database(format!("storage task failed: {e}"))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`, taking the exclusive lock file
    /// `<path>.lock`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let lock_path = path.with_extension("lock");
        let lock = private_file(&lock_path)?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(lock_path.display().to_string()))?;
        // Tokens, owner credentials and keys live here: owner-only, before SQLite opens it
        // (SQLite gives the WAL and shared-memory files the database file's permissions).
        drop(private_file(&path)?);
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            restrict(Path::new(&side))?;
        }
        Ok(SqliteStore {
            path,
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            _lock: Some(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on the calling thread. Reads here are indexed point lookups that take
    /// microseconds and never wait on a lock (WAL readers do not block on the writer), so
    /// handing them to the blocking pool would cost more in thread wake-ups than the read
    /// itself; writes, which fsync, do go to the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pooled = self.readers.lock().map_err(|_| poisoned())?.pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path)?;
                configure(&c)?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().map_err(|_| poisoned())?;
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction; it commits only if `f` returns Ok.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().map_err(|_| poisoned())?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(join_err)?
    }
}

fn poisoned() -> StoreError {
    StoreError::Database("a storage thread panicked".into())
}

const TP_COLS: &str = "tp_id, client_id, name, event_url, auth_event_url, msg_token, encoding_aes_key, audit_quota, redirect_domain";

fn tp_row(r: &Row<'_>) -> rusqlite::Result<Tp> {
    Ok(Tp {
        tp_id: r.get(0)?,
        client_id: r.get(1)?,
        name: r.get(2)?,
        event_url: r.get(3)?,
        auth_event_url: r.get(4)?,
        msg_token: r.get(5)?,
        encoding_aes_key: r.get(6)?,
        audit_quota: r.get(7)?,
        redirect_domain: r.get(8)?,
    })
}

const APP_COLS: &str =
    "app_id, app_key, name, name_audited, category_audited, authenticity_certified, tp_id, owner_password_hash IS NOT NULL";

fn app_row(r: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        app_id: r.get(0)?,
        app_key: r.get(1)?,
        name: r.get(2)?,
        name_audited: r.get(3)?,
        category_audited: r.get(4)?,
        authenticity_certified: r.get(5)?,
        tp_id: r.get(6)?,
        owner_credential_set: r.get(7)?,
    })
}

const TEMPLATE_COLS: &str = "template_id, draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, created_at, deleted_at IS NOT NULL";

fn template_row(r: &Row<'_>) -> rusqlite::Result<Template> {
    Ok(Template {
        template_id: r.get(0)?,
        draft_id: r.get(1)?,
        tp_id: r.get(2)?,
        user_version: r.get(3)?,
        user_desc: r.get(4)?,
        blob_sha256: r.get(5)?,
        manifest: r.get(6)?,
        create_time: r.get::<_, i64>(7)? / 1000,
        deleted: r.get(8)?,
    })
}

/// The package columns, as a macro so hot queries are whole string literals (no `format!`
/// on every call, and the statement cache finds them without building a key).
macro_rules! pkg_select {
    ($rest:literal) => {
        concat!(
            "SELECT p.package_id, p.app_id, p.tp_id, p.template_id, p.state, p.version, p.version_desc, \
             p.ext_json, p.built_ext_json, p.direct_commit, p.test_account, p.test_password, p.audit_content, \
             p.remark, p.msg, p.upload_err_code, p.upload_err_msg, p.previous_package_id, \
             (SELECT prev.version FROM packages prev WHERE prev.package_id = p.previous_package_id), \
             p.restored, p.commit_time, p.updated_at FROM packages p ",
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

fn pkg_row(r: &Row<'_>) -> rusqlite::Result<PackageRecord> {
    Ok(PackageRecord {
        package_id: r.get(0)?,
        app_id: r.get(1)?,
        tp_id: r.get(2)?,
        template_id: r.get(3)?,
        state: parse_state(r.get(4)?)?,
        version: r.get(5)?,
        version_desc: r.get(6)?,
        ext_json: r.get(7)?,
        built_ext_json: r.get(8)?,
        direct_commit: r.get(9)?,
        test_account: r.get(10)?,
        test_password: r.get(11)?,
        audit_content: r.get(12)?,
        remark: r.get(13)?,
        msg: r.get(14)?,
        upload_err_code: r.get(15)?,
        upload_err_msg: r.get(16)?,
        previous_package_id: r.get(17)?,
        rollback_version: r.get(18)?,
        restored: r.get(19)?,
        commit_time_ms: r.get(20)?,
        updated_at_ms: r.get(21)?,
    })
}

fn quota(tx: &Connection, tp_id: i64, ctx: &DecisionContext) -> Result<Quota> {
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
fn snapshot(
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
        "SELECT package_id, state, previous_package_id, restored FROM packages \
         WHERE app_id = ?1 AND (state NOT IN ('history', 'retired') OR package_id = ?2 \
           OR package_id IN (SELECT previous_package_id FROM packages \
                             WHERE app_id = ?1 AND state IN ('online', 'rolling_back')))",
    )?;
    let packages = stmt
        .query_map(params![app_id, target.unwrap_or(-1)], |r| {
            Ok(PackageFacts {
                package_id: r.get(0)?,
                state: parse_state(r.get(1)?)?,
                previous_package_id: r.get(2)?,
                restored: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let quota = quota(tx, tp_id, ctx)?;
    Ok((
        Snapshot {
            app,
            quota,
            packages,
        },
        tp_id,
    ))
}

fn command_target(cmd: &Command) -> Option<i64> {
    match cmd {
        Command::Upload { .. } => None,
        Command::BuildSucceeded { package_id, .. }
        | Command::BuildFailed { package_id, .. }
        | Command::SubmitAudit { package_id, .. }
        | Command::Decide { package_id, .. }
        | Command::Release { package_id }
        | Command::Rollback { package_id }
        | Command::FinishRollback { package_id }
        | Command::Withdraw { package_id } => Some(*package_id),
    }
}

/// Applies the plan's changes and jobs with conditional updates; any row that is not where the
/// plan expects it aborts the whole transaction.
fn apply_plan(
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
               built_ext_json = COALESCE(?6, built_ext_json), \
               audit_content = COALESCE(?7, audit_content), remark = COALESCE(?8, remark), \
               test_account = COALESCE(?9, test_account), test_password = COALESCE(?10, test_password), \
               previous_package_id = CASE WHEN ?11 THEN ?12 ELSE previous_package_id END, \
               restored = COALESCE(?13, restored) \
             WHERE package_id = ?14 AND state = ?15",
        )?
        .execute(params![
            c.to.as_str(),
            ctx.now_ms,
            p.msg,
            p.upload_error.as_ref().map(|(e, _)| e.0),
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
        ])?;
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "package {} is no longer {}",
                c.package_id,
                c.from.as_str()
            )));
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

fn grant(c: &Connection, token_hash: &str) -> Result<Option<Grant>> {
    Ok(c.prepare_cached(
        "SELECT t.app_id, t.tp_id, t.expires_at FROM access_tokens t JOIN apps a ON a.app_id = t.app_id \
         WHERE t.token_hash = ?1 AND t.kind = 'app' AND a.tp_id = t.tp_id",
    )?
    .query_row([token_hash], |r| {
        Ok(Grant {
            app_id: r.get(0)?,
            tp_id: r.get(1)?,
            expires_at_ms: r.get(2)?,
        })
    })
    .optional()?)
}

fn visible(c: &Connection, app_id: i64) -> Result<Vec<PackageRecord>> {
    let mut stmt = c.prepare_cached(pkg_select!(
        "WHERE p.app_id = ?1 AND p.state NOT IN ('history', 'retired') ORDER BY p.package_id"
    ))?;
    let rows = stmt
        .query_map([app_id], pkg_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// An event to queue for a third party.
pub(crate) struct NewEvent<'a> {
    tp_id: i64,
    app_id: i64,
    package_id: i64,
    event: &'a str,
    reason: Option<&'a str>,
    package_version: &'a str,
    /// `event` → the TP's event_url; `auth` → its auth_event_url.
    channel: &'a str,
    /// Extra fields (authorization events) or the whole message (tickets), as JSON.
    payload: Option<&'a str>,
}

/// Writes an event, its delivery and the push job, in the caller's transaction (outbox).
/// Without a URL there is nowhere to deliver: an audit result still gets a delivery that says
/// so (the operator can replay it once the URL is set); authorization pushes are skipped.
fn queue_event(tx: &Transaction<'_>, e: NewEvent<'_>, now_ms: i64) -> Result<()> {
    let column = if e.channel == "auth" {
        "auth_event_url"
    } else {
        "event_url"
    };
    let url: String = tx.query_row(
        &format!("SELECT {column} FROM tps WHERE tp_id = ?1"),
        [e.tp_id],
        |r| r.get(0),
    )?;
    if url.trim().is_empty() && e.channel == "auth" {
        return Ok(());
    }
    let uid = hex::encode(rand::random::<[u8; 16]>());
    tx.prepare_cached(
        "INSERT INTO events (uid, tp_id, app_id, package_id, event, reason, package_version, created_at, channel, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![uid, e.tp_id, e.app_id, e.package_id, e.event, e.reason, e.package_version, now_ms, e.channel, e.payload])?;
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
        insert_push_job(tx, e.package_id, tx.last_insert_rowid(), now_ms)?;
    }
    Ok(())
}

/// An authorization event (AUTHORIZED, UPDATE_AUTHORIZED, UNAUTHORIZED) to the TP's
/// authorization-event URL.
fn auth_event(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: i64,
    event: &str,
    payload: Option<&str>,
    now_ms: i64,
) -> Result<()> {
    let e = NewEvent {
        tp_id,
        app_id,
        package_id: 0,
        event,
        reason: None,
        package_version: "",
        channel: "auth",
        payload,
    };
    queue_event(tx, e, now_ms)
}

/// Stores a token pair as a member of `family` (the authorization it descends from).
fn insert_token_pair(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: i64,
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at, family) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    stmt.execute(params![
        pair.access_hash,
        "app",
        tp_id,
        app_id,
        pair.access_expires_at_ms,
        now_ms,
        family
    ])?;
    stmt.execute(params![
        pair.refresh_hash,
        "refresh",
        tp_id,
        app_id,
        pair.refresh_expires_at_ms,
        now_ms,
        family
    ])?;
    Ok(())
}

/// A credential was presented a second time: every token issued from its authorization dies
/// (RFC 6749 §4.1.2, §10.4). Used refresh tokens stay, so a later replay is recognised too.
fn revoke_family(tx: &Transaction<'_>, family: &str) -> Result<usize> {
    Ok(tx.execute(
        "DELETE FROM access_tokens WHERE family = ?1 AND used_at IS NULL",
        [family],
    )?)
}

/// Issues an app token pair when the credential just used named an app that is still
/// authorized to the TP; the app id on success.
fn pair_if_authorized(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: Option<i64>,
    pair: &TokenPair,
    family: &str,
    now_ms: i64,
) -> Result<Option<i64>> {
    let Some(app_id) = app_id else {
        return Ok(None);
    };
    let still: i64 = tx.query_row(
        "SELECT COUNT(*) FROM apps WHERE app_id = ?1 AND tp_id = ?2",
        params![app_id, tp_id],
        |r| r.get(0),
    )?;
    if still != 1 {
        return Ok(None);
    }
    insert_token_pair(tx, tp_id, app_id, pair, family, now_ms)?;
    Ok(Some(app_id))
}

/// The app's tokens and unused codes of `tp_id` die, and the TP is told UNAUTHORIZED.
fn end_authorization(tx: &Transaction<'_>, tp_id: i64, app_id: i64, now_ms: i64) -> Result<()> {
    tx.execute(
        "DELETE FROM access_tokens WHERE app_id = ?1 AND tp_id = ?2",
        params![app_id, tp_id],
    )?;
    // A code handed out before the revocation must not bring the authorization back.
    tx.execute(
        "UPDATE codes SET used_at = ?1 WHERE app_id = ?2 AND tp_id = ?3 AND used_at IS NULL",
        params![now_ms, app_id, tp_id],
    )?;
    auth_event(tx, tp_id, app_id, "UNAUTHORIZED", None, now_ms)
}

/// Authorizes the app to `code.tp_id`: another TP's authorization ends (it is told
/// UNAUTHORIZED), the authorization code is stored, and AUTHORIZED (UPDATE_AUTHORIZED when the
/// app was already this TP's) is queued with the code. False when the app does not exist.
fn switch_authorization(
    tx: &Transaction<'_>,
    tp_id: i64,
    app_id: i64,
    code: &IssuedCode,
    now_ms: i64,
) -> Result<bool> {
    let prior: Option<Option<i64>> = tx
        .query_row("SELECT tp_id FROM apps WHERE app_id = ?1", [app_id], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(prior) = prior else {
        return Ok(false);
    };
    if let Some(other) = prior.filter(|p| *p != tp_id) {
        end_authorization(tx, other, app_id, now_ms)?;
    }
    tx.execute(
        "UPDATE apps SET tp_id = ?1 WHERE app_id = ?2",
        params![tp_id, app_id],
    )?;
    tx.execute(
        "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) VALUES (?1, 'auth', ?2, ?3, ?4, ?5)",
        params![code.code_hash, tp_id, app_id, code.expires_at_ms, now_ms],
    )?;
    let event = if prior == Some(tp_id) {
        "UPDATE_AUTHORIZED"
    } else {
        "AUTHORIZED"
    };
    auth_event(tx, tp_id, app_id, event, Some(&code.payload), now_ms)?;
    Ok(true)
}

type JobCols = (i64, String, i64, i64, Option<i64>);

fn job_cols(r: &Row<'_>) -> rusqlite::Result<JobCols> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn push_target_row(r: &Row<'_>) -> rusqlite::Result<PushTarget> {
    Ok(PushTarget {
        tp_id: r.get(0)?,
        consecutive_failures: r.get(1)?,
        failing_since_ms: r.get(2)?,
        hold_until_ms: r.get(3)?,
        holds: r.get(4)?,
        last_error: r.get(5)?,
    })
}

/// Updates the delivery's target after an attempt: a success ends its failing run (and any
/// hold); a failure lengthens it and, past the policy's threshold, holds the target. Returns
/// the hold's end when this attempt started one.
fn settle_target(
    tx: &Transaction<'_>,
    delivery_id: i64,
    a: &AttemptRecord,
    verdict: TargetVerdict,
) -> Result<Option<i64>> {
    let tp_id: i64 = tx.query_row(
        "SELECT tp_id FROM deliveries WHERE delivery_id = ?1",
        [delivery_id],
        |r| r.get(0),
    )?;
    tx.prepare_cached(
        "INSERT INTO push_targets (tp_id, updated_at) VALUES (?1, ?2) ON CONFLICT (tp_id) DO NOTHING",
    )?
    .execute(params![tp_id, a.at_ms])?;
    match verdict {
        TargetVerdict::Succeeded => {
            tx.prepare_cached(
                "UPDATE push_targets SET consecutive_failures = 0, failing_since = NULL, hold_until = NULL, updated_at = ?2 WHERE tp_id = ?1",
            )?
            .execute(params![tp_id, a.at_ms])?;
            Ok(None)
        }
        TargetVerdict::Failed { hold } => {
            let failures: i64 = tx.query_row(
                "UPDATE push_targets SET consecutive_failures = consecutive_failures + 1, \
                   failing_since = COALESCE(failing_since, ?2), last_error = ?3, updated_at = ?2 \
                 WHERE tp_id = ?1 RETURNING consecutive_failures",
                params![tp_id, a.at_ms, a.error],
                |r| r.get(0),
            )?;
            let Some(ms) = hold.hold_ms(failures) else {
                return Ok(None);
            };
            let until = a.at_ms.saturating_add(ms);
            tx.prepare_cached(
                "UPDATE push_targets SET hold_until = ?2, holds = holds + 1 WHERE tp_id = ?1",
            )?
            .execute(params![tp_id, until])?;
            Ok(Some(until))
        }
    }
}

/// The audit-result event of a decision, in the deciding transaction.
fn outbox(
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
    let (event, reason) = if pass {
        (smartpkg_core::push::AUDIT_PASS, None)
    } else {
        (smartpkg_core::push::AUDIT_FAIL, Some(reason))
    };
    let e = NewEvent {
        tp_id,
        app_id,
        package_id,
        event,
        reason,
        package_version: &version,
        channel: "event",
        payload: None,
    };
    queue_event(tx, e, now_ms)
}

fn insert_push_job(
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

const DELIVERY_COLS: &str = "d.delivery_id, d.tp_id, d.url, d.state, d.attempts, d.cycle_attempts, d.last_status, \
    d.last_error, d.next_attempt_at, d.created_at, d.delivered_at, \
    e.event_id, e.uid, e.tp_id, e.app_id, e.package_id, e.event, e.reason, e.package_version, e.created_at, \
    e.channel, e.payload";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = r.get(3)?;
    Ok(Delivery {
        delivery_id: r.get(0)?,
        tp_id: r.get(1)?,
        url: r.get(2)?,
        state: DeliveryState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("delivery state {state}").into(),
            )
        })?,
        attempts: r.get(4)?,
        cycle_attempts: r.get(5)?,
        last_status: r.get(6)?,
        last_error: r.get(7)?,
        next_attempt_at_ms: r.get(8)?,
        created_at_ms: r.get(9)?,
        delivered_at_ms: r.get(10)?,
        event: EventRecord {
            event_id: r.get(11)?,
            uid: r.get(12)?,
            tp_id: r.get(13)?,
            app_id: r.get(14)?,
            package_id: r.get(15)?,
            event: r.get(16)?,
            reason: r.get(17)?,
            package_version: r.get(18)?,
            created_at_ms: r.get(19)?,
            channel: r.get(20)?,
            payload: r.get(21)?,
        },
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tp(&self, tp: Tp) -> Result<Tp> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO tps (client_id, name, event_url, auth_event_url, msg_token, encoding_aes_key, audit_quota, created_at, redirect_domain) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![tp.client_id, tp.name, tp.event_url, tp.auth_event_url, tp.msg_token, tp.encoding_aes_key, tp.audit_quota, now_ms(), tp.redirect_domain],
            )?;
            Ok(Tp { tp_id: tx.last_insert_rowid(), ..tp })
        })
        .await
    }

    async fn update_tp(&self, tp_id: i64, patch: TpPatch) -> Result<Tp> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE tps SET name = COALESCE(?1, name), event_url = COALESCE(?2, event_url), \
                   auth_event_url = COALESCE(?3, auth_event_url), msg_token = COALESCE(?4, msg_token), \
                   encoding_aes_key = COALESCE(?5, encoding_aes_key), \
                   audit_quota = CASE WHEN ?6 THEN ?7 ELSE audit_quota END, \
                   redirect_domain = COALESCE(?9, redirect_domain) WHERE tp_id = ?8",
                params![patch.name, patch.event_url, patch.auth_event_url, patch.msg_token, patch.encoding_aes_key,
                    patch.audit_quota.is_some(), patch.audit_quota.flatten(), tp_id, patch.redirect_domain],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("tp {tp_id}")));
            }
            Ok(tx.query_row(&format!("SELECT {TP_COLS} FROM tps WHERE tp_id = ?1"), [tp_id], tp_row)?)
        })
        .await
    }

    async fn get_tp(&self, tp_id: i64) -> Result<Option<Tp>> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {TP_COLS} FROM tps WHERE tp_id = ?1"),
                [tp_id],
                tp_row,
            )
            .optional()?)
        })
        .await
    }

    async fn create_app(&self, app: App) -> Result<App> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO apps (app_key, name, name_audited, category_audited, authenticity_certified, tp_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![app.app_key, app.name, app.name_audited, app.category_audited, app.authenticity_certified, app.tp_id, now_ms()],
            )?;
            Ok(App { app_id: tx.last_insert_rowid(), ..app })
        })
        .await
    }

    async fn update_app(&self, app_id: i64, patch: AppPatch) -> Result<App> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE apps SET name = COALESCE(?1, name), name_audited = COALESCE(?2, name_audited), \
                   category_audited = COALESCE(?3, category_audited), \
                   authenticity_certified = COALESCE(?4, authenticity_certified) WHERE app_id = ?5",
                params![patch.name, patch.name_audited, patch.category_audited, patch.authenticity_certified, app_id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("app {app_id}")));
            }
            Ok(tx.query_row(&format!("SELECT {APP_COLS} FROM apps WHERE app_id = ?1"), [app_id], app_row)?)
        })
        .await
    }

    async fn get_app(&self, app_id: i64) -> Result<Option<App>> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {APP_COLS} FROM apps WHERE app_id = ?1"),
                [app_id],
                app_row,
            )
            .optional()?)
        })
        .await
    }

    async fn create_template(&self, t: NewTemplate, now_ms: i64) -> Result<Template> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO drafts (tp_id, user_version, user_desc, blob_sha256, manifest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.tp_id, t.user_version, t.user_desc, t.blob_sha256, t.manifest, now_ms],
            )?;
            let draft_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO templates (draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![draft_id, t.tp_id, t.user_version, t.user_desc, t.blob_sha256, t.manifest, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            Ok(tx.query_row(&format!("SELECT {TEMPLATE_COLS} FROM templates WHERE template_id = ?1"), [id], template_row)?)
        })
        .await
    }

    async fn get_template(&self, template_id: i64) -> Result<Option<Template>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TEMPLATE_COLS} FROM templates WHERE template_id = ?1"
            ))?
            .query_row([template_id], template_row)
            .optional()?)
        })
        .await
    }

    async fn authorize(&self, g: OperatorGrant, now_ms: i64) -> Result<()> {
        self.write(move |tx| {
            if !switch_authorization(tx, g.tp_id, g.app_id, &g.code, now_ms)? {
                return Err(StoreError::NotFound(format!("app {}", g.app_id)));
            }
            insert_token_pair(tx, g.tp_id, g.app_id, &g.pair, &g.pair.access_hash, now_ms)
        })
        .await
    }

    async fn set_owner_password(&self, app_id: i64, hash: String) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE apps SET owner_password_hash = ?1 WHERE app_id = ?2",
                params![hash, app_id],
            )? == 1)
        })
        .await
    }

    async fn owner_password_hash(&self, app_id: i64) -> Result<Option<String>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT owner_password_hash FROM apps WHERE app_id = ?1",
                [app_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })
        .await
    }

    async fn server_secret(&self, name: &'static str) -> Result<String> {
        self.write(move |tx| {
            // The first caller's random value wins; every later one reads it.
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            tx.execute(
                "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, fresh],
            )?;
            Ok(tx.query_row("SELECT value FROM server_secrets WHERE name = ?1", [name], |r| r.get(0))?)
        })
        .await
    }

    async fn resolve_app_token(&self, token_hash: String) -> Result<Option<Grant>> {
        self.read(move |c| grant(c, &token_hash)).await
    }

    async fn visible_packages(&self, app_id: i64) -> Result<Vec<PackageRecord>> {
        self.read(move |c| visible(c, app_id)).await
    }

    async fn visible_packages_by_token(
        &self,
        token_hash: String,
    ) -> Result<Option<(Grant, Vec<PackageRecord>)>> {
        self.read(move |c| match grant(c, &token_hash)? {
            Some(g) => Ok(Some((g, visible(c, g.app_id)?))),
            None => Ok(None),
        })
        .await
    }

    async fn get_package(&self, package_id: i64) -> Result<Option<PackageRecord>> {
        self.read(move |c| {
            Ok(c.prepare_cached(pkg_select!("WHERE p.package_id = ?1"))?
                .query_row([package_id], pkg_row)
                .optional()?)
        })
        .await
    }

    async fn list_packages(&self, filter: PackageFilter) -> Result<Vec<PackageRecord>> {
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

    async fn audit_quota(&self, tp_id: i64, ctx: DecisionContext) -> Result<Quota> {
        self.read(move |c| quota(c, tp_id, &ctx)).await
    }

    async fn upload(
        &self,
        new: NewPackage,
        ctx: DecisionContext,
    ) -> Result<std::result::Result<(i64, Plan), lifecycle::Refusal>> {
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
        job: Option<i64>,
    ) -> Result<Decision> {
        self.write(move |tx| {
            let (snap, tp_id) = snapshot(tx, app_id, command_target(&cmd), &ctx)?;
            let decision = lifecycle::decide(&snap, &cmd, &ctx.policy);
            if let Ok(plan) = &decision {
                apply_plan(tx, plan, tp_id, &ctx, None)?;
                if let Some(job_id) = job {
                    // The job is done in the same transaction as the change it caused, so a
                    // crash either loses both or keeps both: never a transition applied twice.
                    tx.prepare_cached("DELETE FROM jobs WHERE job_id = ?1")?
                        .execute([job_id])?;
                }
            }
            Ok(decision)
        })
        .await
    }

    async fn get_delivery(&self, delivery_id: i64) -> Result<Option<Delivery>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries d JOIN events e ON e.event_id = d.event_id WHERE d.delivery_id = ?1"
            ))?
            .query_row([delivery_id], delivery_row)
            .optional()?)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        tp_id: Option<i64>,
        state: Option<DeliveryState>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM deliveries d JOIN events e ON e.event_id = d.event_id \
                 WHERE (?1 IS NULL OR d.tp_id = ?1) AND (?2 IS NULL OR d.state = ?2) ORDER BY d.delivery_id DESC LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![tp_id, state.map(DeliveryState::as_str), limit], delivery_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, url, status, latency_ms, error, body FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt_id",
            )?;
            let rows = stmt
                .query_map([delivery_id], |r| {
                    Ok(AttemptRecord {
                        at_ms: r.get(0)?,
                        url: r.get(1)?,
                        status: r.get(2)?,
                        latency_ms: r.get(3)?,
                        error: r.get(4)?,
                        body: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn record_attempt(
        &self,
        job_id: i64,
        delivery_id: i64,
        a: AttemptRecord,
        outcome: AttemptOutcome,
        target: TargetVerdict,
    ) -> Result<Option<i64>> {
        self.write(move |tx| {
            let held = settle_target(tx, delivery_id, &a, target)?;
            tx.prepare_cached(
                "INSERT INTO delivery_attempts (delivery_id, at, url, status, latency_ms, error, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![delivery_id, a.at_ms, a.url, a.status, a.latency_ms, a.error, a.body])?;
            let (state, next, delivered_at) = match outcome {
                AttemptOutcome::Delivered => (DeliveryState::Delivered, None, Some(a.at_ms)),
                AttemptOutcome::RetryAt(t) => (DeliveryState::Pending, Some(t), None),
                AttemptOutcome::GaveUp => (DeliveryState::Failed, None, None),
            };
            tx.prepare_cached(
                "UPDATE deliveries SET state = ?1, attempts = attempts + 1, cycle_attempts = cycle_attempts + 1, \
                   last_status = ?2, last_error = ?3, next_attempt_at = ?4, url = ?5, \
                   delivered_at = COALESCE(?6, delivered_at) WHERE delivery_id = ?7",
            )?
            .execute(params![state.as_str(), a.status, a.error, next, a.url, delivered_at, delivery_id])?;
            match next {
                Some(t) => {
                    tx.prepare_cached("UPDATE jobs SET run_at = ?1, lease_until = NULL WHERE job_id = ?2")?
                        .execute(params![t, job_id])?;
                }
                // Acknowledged or given up: the job goes with the same commit, so an
                // acknowledged event is never sent again unless replayed on purpose.
                None => {
                    tx.prepare_cached("DELETE FROM jobs WHERE job_id = ?1")?.execute([job_id])?;
                }
            }
            Ok(held)
        })
        .await
    }

    async fn redeliver(&self, delivery_id: i64, now_ms: i64) -> Result<()> {
        self.write(move |tx| {
            let package_id: Option<i64> = tx
                .query_row(
                    "SELECT e.package_id FROM deliveries d JOIN events e ON e.event_id = d.event_id WHERE d.delivery_id = ?1",
                    [delivery_id],
                    |r| r.get(0),
                )
                .optional()?;
            let package_id = package_id.ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
            tx.execute(
                "UPDATE deliveries SET state = 'pending', cycle_attempts = 0, next_attempt_at = ?1 WHERE delivery_id = ?2",
                params![now_ms, delivery_id],
            )?;
            // A replay is the operator's call to try now: it lifts the target's hold for this
            // probe (the failing run stays, so a failure holds the target again at once).
            tx.execute(
                "UPDATE push_targets SET hold_until = NULL WHERE tp_id = (SELECT tp_id FROM deliveries WHERE delivery_id = ?1)",
                [delivery_id],
            )?;
            // One push job per delivery: move a waiting one forward, or add one.
            let moved = tx.execute(
                "UPDATE jobs SET run_at = ?1 WHERE kind = 'push' AND delivery_id = ?2",
                params![now_ms, delivery_id],
            )?;
            if moved == 0 {
                insert_push_job(tx, package_id, delivery_id, now_ms)?;
            }
            Ok(())
        })
        .await
    }

    async fn take_schedule(
        &self,
        name: &'static str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE schedules SET next_at = ?1 WHERE name = ?2 AND next_at <= ?3",
                params![now_ms + interval_ms, name, now_ms],
            )? == 1)
        })
        .await
    }

    async fn tps_with_auth_url(&self) -> Result<Vec<Tp>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TP_COLS} FROM tps WHERE auth_event_url <> '' ORDER BY tp_id"
            ))?;
            let rows = stmt
                .query_map([], tp_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn push_ticket(
        &self,
        tp_id: i64,
        ticket_hash: String,
        expires_at_ms: i64,
        payload: String,
        now_ms: i64,
    ) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO tickets (ticket_hash, tp_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![ticket_hash, tp_id, expires_at_ms, now_ms],
            )?;
            // Expired tickets are of no use to anyone: drop them as new ones come.
            tx.execute("DELETE FROM tickets WHERE tp_id = ?1 AND expires_at < ?2", params![tp_id, now_ms])?;
            let e = NewEvent {
                tp_id,
                app_id: 0,
                package_id: 0,
                event: "ticket",
                reason: None,
                package_version: "",
                channel: "auth",
                payload: Some(&payload),
            };
            queue_event(tx, e, now_ms)
        })
        .await
    }

    async fn ticket_valid(&self, tp_id: i64, ticket_hash: String, now_ms: i64) -> Result<bool> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM tickets WHERE ticket_hash = ?1 AND tp_id = ?2 AND expires_at > ?3",
                params![ticket_hash, tp_id, now_ms],
                |r| r.get::<_, i64>(0),
            )? == 1)
        })
        .await
    }

    async fn get_tp_by_client_id(&self, client_id: String) -> Result<Option<Tp>> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {TP_COLS} FROM tps WHERE client_id = ?1"),
                [client_id],
                tp_row,
            )
            .optional()?)
        })
        .await
    }

    async fn create_tp_token(
        &self,
        tp_id: i64,
        token_hash: String,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at) VALUES (?1, 'tp', ?2, NULL, ?3, ?4)",
                params![token_hash, tp_id, expires_at_ms, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn resolve_tp_token(&self, token_hash: String) -> Result<Option<(i64, i64)>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT tp_id, expires_at FROM access_tokens WHERE token_hash = ?1 AND kind = 'tp'",
            )?
            .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
        })
        .await
    }

    async fn create_draft(&self, t: NewTemplate, now_ms: i64) -> Result<Draft> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO drafts (tp_id, user_version, user_desc, blob_sha256, manifest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.tp_id, t.user_version, t.user_desc, t.blob_sha256, t.manifest, now_ms],
            )?;
            Ok(Draft {
                draft_id: tx.last_insert_rowid(),
                tp_id: t.tp_id,
                user_version: t.user_version,
                user_desc: t.user_desc,
                create_time: now_ms / 1000,
            })
        })
        .await
    }

    async fn list_drafts(&self, tp_id: i64, offset: i64, limit: i64) -> Result<(i64, Vec<Draft>)> {
        self.read(move |c| {
            let count: i64 = c.query_row("SELECT COUNT(*) FROM drafts WHERE tp_id = ?1", [tp_id], |r| r.get(0))?;
            let mut stmt = c.prepare_cached(
                "SELECT draft_id, tp_id, user_version, user_desc, created_at FROM drafts WHERE tp_id = ?1 \
                 ORDER BY draft_id DESC LIMIT ?2 OFFSET ?3",
            )?;
            let rows = stmt
                .query_map(params![tp_id, limit, offset], |r| {
                    Ok(Draft {
                        draft_id: r.get(0)?,
                        tp_id: r.get(1)?,
                        user_version: r.get(2)?,
                        user_desc: r.get(3)?,
                        create_time: r.get::<_, i64>(4)? / 1000,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((count, rows))
        })
        .await
    }

    async fn add_template(
        &self,
        tp_id: i64,
        draft_id: i64,
        user_desc: String,
        max: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<Template, LibraryRefusal>> {
        self.write(move |tx| {
            let draft: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT user_version, blob_sha256, manifest FROM drafts WHERE draft_id = ?1 AND tp_id = ?2",
                    params![draft_id, tp_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((user_version, sha, manifest)) = draft else {
                return Ok(Err(LibraryRefusal::DraftNotFound));
            };
            // Counted inside the writing transaction, so two racing adds cannot pass 50.
            let live: i64 = tx.query_row(
                "SELECT COUNT(*) FROM templates WHERE tp_id = ?1 AND deleted_at IS NULL",
                [tp_id],
                |r| r.get(0),
            )?;
            if live >= max {
                return Ok(Err(LibraryRefusal::TemplateLimit));
            }
            tx.execute(
                "INSERT INTO templates (draft_id, tp_id, user_version, user_desc, blob_sha256, manifest, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![draft_id, tp_id, user_version, user_desc, sha, manifest, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            Ok(Ok(tx.query_row(&format!("SELECT {TEMPLATE_COLS} FROM templates WHERE template_id = ?1"), [id], template_row)?))
        })
        .await
    }

    async fn list_templates(
        &self,
        tp_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<Template>)> {
        self.read(move |c| {
            let count: i64 = c.query_row(
                "SELECT COUNT(*) FROM templates WHERE tp_id = ?1 AND deleted_at IS NULL",
                [tp_id],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TEMPLATE_COLS} FROM templates WHERE tp_id = ?1 AND deleted_at IS NULL ORDER BY template_id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            let rows = stmt.query_map(params![tp_id, limit, offset], template_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((count, rows))
        })
        .await
    }

    async fn delete_template(
        &self,
        tp_id: i64,
        template_id: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<(), LibraryRefusal>> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE templates SET deleted_at = ?1 WHERE template_id = ?2 AND tp_id = ?3 AND deleted_at IS NULL",
                params![now_ms, template_id, tp_id],
            )?;
            Ok(if n == 1 { Ok(()) } else { Err(LibraryRefusal::TemplateNotFound) })
        })
        .await
    }

    async fn create_code(
        &self,
        kind: &'static str,
        code_hash: String,
        tp_id: i64,
        app_id: Option<i64>,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO codes (code_hash, kind, tp_id, app_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![code_hash, kind, tp_id, app_id, expires_at_ms, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn code_usable(
        &self,
        kind: &'static str,
        code_hash: String,
        tp_id: i64,
        now_ms: i64,
    ) -> Result<bool> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM codes WHERE code_hash = ?1 AND kind = ?2 AND tp_id = ?3 AND used_at IS NULL AND expires_at > ?4",
                params![code_hash, kind, tp_id, now_ms],
                |r| r.get::<_, i64>(0),
            )? == 1)
        })
        .await
    }

    async fn approve(
        &self,
        a: Approval,
        now_ms: i64,
    ) -> Result<std::result::Result<(), AuthRefusal>> {
        self.write(move |tx| {
            // The conditional update is what makes a pre-auth code single-use.
            let used = tx.execute(
                "UPDATE codes SET used_at = ?1 WHERE code_hash = ?2 AND kind = 'pre_auth' AND tp_id = ?3 AND used_at IS NULL AND expires_at > ?1",
                params![now_ms, a.pre_auth_hash, a.code.tp_id],
            )?;
            if used != 1 {
                return Ok(Err(AuthRefusal::PreAuthCodeInvalid));
            }
            if !switch_authorization(tx, a.code.tp_id, a.code.app_id, &a.code, now_ms)? {
                return Ok(Err(AuthRefusal::AppUnknown));
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn exchange_code(
        &self,
        tp_id: i64,
        code_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        self.write(move |tx| {
            let app_id: Option<Option<i64>> = tx
                .query_row(
                    "UPDATE codes SET used_at = ?1 WHERE code_hash = ?2 AND kind = 'auth' AND tp_id = ?3 AND used_at IS NULL AND expires_at > ?1 RETURNING app_id",
                    params![now_ms, code_hash, tp_id],
                    |r| r.get(0),
                )
                .optional()?;
            match app_id {
                // The code's hash names the family of every token it yields.
                Some(app_id) => pair_if_authorized(tx, tp_id, app_id, &pair, &code_hash, now_ms),
                None => {
                    let replayed: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM codes WHERE code_hash = ?1 AND kind = 'auth' AND tp_id = ?2 AND used_at IS NOT NULL",
                        params![code_hash, tp_id],
                        |r| r.get(0),
                    )?;
                    if replayed == 1 {
                        let n = revoke_family(tx, &code_hash)?;
                        tracing::warn!(tp_id, revoked = n, "authorization code replayed: revoked the tokens issued from it");
                    }
                    Ok(None)
                }
            }
        })
        .await
    }

    async fn refresh(
        &self,
        tp_id: i64,
        refresh_hash: String,
        pair: TokenPair,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        self.write(move |tx| {
            // Marking it used is what makes a refresh token single-use.
            let found: Option<(Option<i64>, Option<String>)> = tx
                .query_row(
                    "UPDATE access_tokens SET used_at = ?3 WHERE token_hash = ?1 AND kind = 'refresh' AND tp_id = ?2 AND used_at IS NULL AND expires_at > ?3 RETURNING app_id, family",
                    params![refresh_hash, tp_id, now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match found {
                Some((app_id, family)) => {
                    let family = family.unwrap_or_else(|| refresh_hash.clone());
                    pair_if_authorized(tx, tp_id, app_id, &pair, &family, now_ms)
                }
                None => {
                    let replayed: Option<Option<String>> = tx
                        .query_row(
                            "SELECT family FROM access_tokens WHERE token_hash = ?1 AND kind = 'refresh' AND tp_id = ?2 AND used_at IS NOT NULL",
                            params![refresh_hash, tp_id],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(Some(family)) = replayed {
                        let n = revoke_family(tx, &family)?;
                        tracing::warn!(tp_id, revoked = n, "refresh token replayed: revoked the tokens issued from its authorization");
                    }
                    Ok(None)
                }
            }
        })
        .await
    }

    async fn revoke(&self, tp_id: i64, app_id: i64, now_ms: i64) -> Result<bool> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE apps SET tp_id = NULL WHERE app_id = ?1 AND tp_id = ?2",
                params![app_id, tp_id],
            )?;
            if n == 0 {
                return Ok(false);
            }
            end_authorization(tx, tp_id, app_id, now_ms)?;
            Ok(true)
        })
        .await
    }

    async fn claim_jobs(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> Result<Vec<Job>> {
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
                    // pushes stay within the cap (1 for a target in a failing run: it probes).
                    // Healthy targets come first and the least busy among them; failing ones
                    // get at most `failing_slots`, so slow receivers never fill the lane.
                    let mut stmt = tx.prepare_cached(
                        "WITH busy AS ( \
                            SELECT target, COUNT(*) AS n FROM jobs \
                            WHERE kind = 'push' AND lease_until > ?1 GROUP BY target), \
                         due AS ( \
                            SELECT j.job_id, j.kind, j.package_id, j.attempts, j.delivery_id, j.run_at, j.target, \
                                   COALESCE(t.consecutive_failures, 0) > 0 AS failing, \
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
                tx.prepare_cached("UPDATE jobs SET lease_until = ?1, attempts = attempts + 1 WHERE job_id = ?2")?
                    .execute(params![now_ms + lease_ms, job_id])?;
                let kind = JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("job kind {kind}")))?;
                jobs.push(Job { job_id, kind, package_id, delivery_id, attempts: attempts + 1, degraded });
            }
            Ok(jobs)
        })
        .await
    }

    async fn sweep(&self, now_ms: i64, policy: SweepPolicy) -> Result<Swept> {
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
            })
        })
        .await
    }

    async fn push_targets(&self) -> Result<Vec<PushTarget>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT tp_id, consecutive_failures, failing_since, hold_until, holds, last_error FROM push_targets ORDER BY tp_id",
            )?;
            let rows = stmt.query_map([], push_target_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn resume_target(&self, tp_id: i64) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE push_targets SET hold_until = NULL, consecutive_failures = 0, failing_since = NULL WHERE tp_id = ?1",
                [tp_id],
            )? == 1)
        })
        .await
    }

    async fn drop_job(&self, job_id: i64) -> Result<()> {
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM jobs WHERE job_id = ?1")?
                .execute([job_id])?;
            Ok(())
        })
        .await
    }

    async fn retry_job(&self, job_id: i64, run_at_ms: i64, error: String) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE jobs SET run_at = ?1, lease_until = NULL, last_error = ?2 WHERE job_id = ?3",
                params![run_at_ms, error, job_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn next_job_due(&self, lane: LaneKind) -> Result<Option<i64>> {
        let sql = match lane {
            LaneKind::Platform => "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < run_at THEN run_at ELSE lease_until END) FROM jobs WHERE kind <> 'push'",
            LaneKind::Deliveries => "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < run_at THEN run_at ELSE lease_until END) FROM jobs WHERE kind = 'push'",
        };
        self.read(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .await
    }

    async fn release_leases(&self) -> Result<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE jobs SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )? as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
