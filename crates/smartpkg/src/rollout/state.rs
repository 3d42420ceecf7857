//! The rollout's memory: a SQLite file beside the plan. Every step is written before the call
//! that depends on it returns to the caller (an upload's intent before the upload), so a
//! rollout killed at any point continues where it stopped and never uploads twice.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Where a mini program stands. The order is the order of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Pending,
    /// The upload was sent (or about to be); whether it arrived is checked before any retry.
    Uploading,
    Uploaded,
    Built,
    /// Not submitted: the weekly audit quota is spent.
    WaitingQuota,
    Submitted,
    Passed,
    /// In a staged release that follows a plan (`[staged]`): waiting for it to finish.
    Staged,
    Online,
    BuildFailed,
    AuditFailed,
    /// Passed, but not released: the canaries did not all go online.
    Held,
    /// The staged release's plan was halted by the platform's health gate.
    Halted,
    Error,
}

impl Step {
    pub const ALL: [Step; 14] = [
        Step::Pending,
        Step::Uploading,
        Step::Uploaded,
        Step::Built,
        Step::WaitingQuota,
        Step::Submitted,
        Step::Passed,
        Step::Staged,
        Step::Online,
        Step::BuildFailed,
        Step::AuditFailed,
        Step::Held,
        Step::Halted,
        Step::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Pending => "pending",
            Step::Uploading => "uploading",
            Step::Uploaded => "uploaded",
            Step::Built => "built",
            Step::WaitingQuota => "waiting_quota",
            Step::Submitted => "submitted",
            Step::Passed => "passed",
            Step::Staged => "staged",
            Step::Online => "online",
            Step::BuildFailed => "build_failed",
            Step::AuditFailed => "audit_failed",
            Step::Held => "held",
            Step::Halted => "halted",
            Step::Error => "error",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Step> {
        Step::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .with_context(|| format!("unknown step {s:?} in the state file"))
    }

    /// Nothing more will happen to the mini program in this rollout.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Step::Online
                | Step::BuildFailed
                | Step::AuditFailed
                | Step::Held
                | Step::Halted
                | Step::Error
        )
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub app_id: i64,
    pub step: Step,
    pub package_id: Option<i64>,
    pub errno: Option<i64>,
    pub reason: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// The mini program that `app/info` says the current access token belongs to; `None`
    /// until it was asked. Anything but `app_id` stops the rollout of this entry.
    pub token_app_id: Option<i64>,
    /// The credentials the plan gave when this entry was first seen (see `given_tokens`).
    pub given: String,
}

pub struct StateFile {
    conn: Mutex<Connection>,
    pub path: PathBuf,
}

/// `plan.toml` → `plan.state.sqlite` in the same folder.
pub fn path_for(plan: &Path) -> PathBuf {
    path_with(plan, "")
}

/// `plan.toml` and `.wechat` → `plan.state.wechat.sqlite` in the same folder.
pub fn path_with(plan: &Path, suffix: &str) -> PathBuf {
    let stem = plan
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rollout".into());
    plan.with_file_name(format!("{stem}.state{suffix}.sqlite"))
}

/// Opens (or creates) a rollout's state database for `template_id` at `version`, readable by
/// its owner only (it holds tokens), with `schema` applied; refuses one left by a rollout of
/// something else.
pub fn open_db(
    path: &Path,
    template_id: i64,
    version: &str,
    schema: &str,
) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the state file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA busy_timeout = 5000;
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    conn.execute_batch(schema)?;
    let key = format!("{template_id}@{version}");
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'release'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match existing {
        Some(k) if k != key => bail!(
            "{} belongs to a rollout of template@version {k}, not {key}: move it away to start a new rollout",
            path.display()
        ),
        Some(_) => {}
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('release', ?1)",
                params![key],
            )?;
        }
    }
    Ok(conn)
}

impl StateFile {
    /// Opens (or creates) the state of a rollout of `template_id` at `version`; refuses a state
    /// file left by a rollout of something else.
    pub fn open(path: &Path, template_id: i64, version: &str) -> anyhow::Result<StateFile> {
        let conn = open_db(
            path,
            template_id,
            version,
            "CREATE TABLE IF NOT EXISTS apps (
                 app_id INTEGER PRIMARY KEY,
                 step TEXT NOT NULL,
                 package_id INTEGER,
                 errno INTEGER,
                 reason TEXT,
                 access_token TEXT,
                 refresh_token TEXT,
                 updated_at_ms INTEGER NOT NULL,
                 token_app_id INTEGER,
                 given TEXT NOT NULL DEFAULT ''
             );",
        )?;
        // State files of earlier versions lack the column: their tokens count as unchecked.
        let has_owner: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('apps') WHERE name = 'token_app_id'")?
            .exists([])?;
        if !has_owner {
            conn.execute_batch(
                "ALTER TABLE apps ADD COLUMN token_app_id INTEGER;
                 ALTER TABLE apps ADD COLUMN given TEXT NOT NULL DEFAULT ''",
            )?;
        }
        Ok(StateFile {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves a usable connection: SQLite's own state is
        // consistent after every statement.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn load(&self, app_id: i64) -> anyhow::Result<Option<AppState>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT step, package_id, errno, reason, access_token, refresh_token, token_app_id, given
                 FROM apps WHERE app_id = ?1",
                params![app_id],
                |r| {
                    let step: String = r.get(0)?;
                    let step = Step::parse(&step).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })?;
                    Ok(AppState {
                        app_id,
                        step,
                        package_id: r.get(1)?,
                        errno: r.get(2)?,
                        reason: r.get(3)?,
                        access_token: r.get(4)?,
                        refresh_token: r.get(5)?,
                        token_app_id: r.get(6)?,
                        given: r.get(7)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    pub fn save(&self, s: &AppState) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO apps (app_id, step, package_id, errno, reason, access_token, refresh_token, updated_at_ms, token_app_id, given)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (app_id) DO UPDATE SET step = ?2, package_id = ?3, errno = ?4,
                 reason = ?5, access_token = ?6, refresh_token = ?7, updated_at_ms = ?8,
                 token_app_id = ?9, given = ?10",
            params![
                s.app_id,
                s.step.name(),
                s.package_id,
                s.errno,
                s.reason,
                s.access_token,
                s.refresh_token,
                chrono::Utc::now().timestamp_millis(),
                s.token_app_id,
                s.given
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_of_another_release_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.state.sqlite");
        let s = StateFile::open(&path, 1, "1.0.0").expect("open");
        s.save(&AppState {
            app_id: 9,
            step: Step::Built,
            package_id: Some(4),
            errno: None,
            reason: None,
            access_token: Some("a".into()),
            refresh_token: None,
            token_app_id: Some(9),
            given: String::new(),
        })
        .expect("save");
        drop(s);
        let again = StateFile::open(&path, 1, "1.0.0").expect("reopen");
        let got = again.load(9).expect("load").expect("row");
        assert_eq!((got.step, got.package_id), (Step::Built, Some(4)));
        drop(again);
        let err = StateFile::open(&path, 1, "2.0.0").err().expect("refused");
        assert!(err.to_string().contains("1@1.0.0"), "{err}");
    }
}
