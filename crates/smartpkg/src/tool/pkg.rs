//! `smartpkg pkg …`: one mini program's packages (its access token).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use smartpkg_client::types::{
    GetDetailRequest, PackageInfo, QrCodeRequest, SubmitAuditRequest, UploadRequest, WireStatus,
};

use super::{fail, print_json, print_table, value_or_file, Resolved};

/// A package id, as people type it (`pkg release 58210`) or as a flag (`--package-id 58210`).
#[derive(clap::Args, Debug)]
pub struct PackageId {
    /// The package id.
    #[arg(value_name = "PACKAGE_ID", required_unless_present = "package_id")]
    id: Option<i64>,
    /// The package id, as a flag (the same as the positional argument).
    #[arg(long, conflicts_with = "id", hide_short_help = true)]
    package_id: Option<i64>,
}

impl PackageId {
    fn get(&self) -> anyhow::Result<i64> {
        self.id
            .or(self.package_id)
            .context("give the package id: `smartpkg pkg … 58210` or --package-id 58210")
    }
}

/// `--wait`: follow the package to its next state.
#[derive(clap::Args, Debug)]
pub struct Wait {
    /// Follow the package to its next state, printing each change.
    #[arg(long)]
    wait: bool,
    /// How long --wait follows it, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, requires = "wait")]
    timeout: u64,
}

/// Exit status of `--wait` when the package failed its audit.
const EXIT_AUDIT_FAILED: u8 = 1;
/// Exit status of `--wait` when the timeout passed first (as timeout(1)).
const EXIT_TIMED_OUT: u8 = 124;

const WAIT_HELP: &str = "With --wait: 0 when the package reached its next state, 1 when its audit
failed (the reason is printed), 124 when --timeout passed first (it goes on without us:
look again with `smartpkg pkg detail PACKAGE_ID`).";

#[derive(Subcommand, Debug)]
pub enum PkgCmd {
    /// Build a package from a template and the mini program's ext.json.
    #[command(after_help = "Examples:
  smartpkg pkg upload --template-id 12 --version 1.2.0 --desc 'spring menu' --ext-json @ext.json --wait
  smartpkg pkg upload --template-id 12 --version 1.2.0 --desc d --ext-json '{\"extEnable\":true}'")]
    Upload {
        #[arg(long)]
        template_id: i64,
        /// The ext.json text, `@FILE`, or `-` for standard input.
        #[arg(long)]
        ext_json: String,
        #[arg(long = "version")]
        user_version: String,
        #[arg(long = "desc")]
        user_desc: String,
        #[arg(long)]
        test_account: Option<String>,
        #[arg(long)]
        test_password: Option<String>,
        /// Wait until the package is built and print it.
        #[arg(long)]
        wait: bool,
    },
    /// The mini program's packages: online, audit and development versions.
    #[command(after_help = "Examples:\n  smartpkg pkg list\n  smartpkg pkg list --json")]
    List,
    /// One package: by id, by status, or (with neither) the online version.
    #[command(after_help = "Examples:
  smartpkg pkg detail
  smartpkg pkg detail 58210
  smartpkg pkg detail --status 4")]
    Detail {
        /// The package id.
        #[arg(value_name = "PACKAGE_ID")]
        id: Option<i64>,
        /// The package id, as a flag.
        #[arg(long, conflicts_with = "id", hide_short_help = true)]
        package_id: Option<i64>,
        /// 1 online, 3 development, 4 auditing, 5 audit failed, 6 audit passed, 8 rolling back.
        #[arg(long)]
        status: Option<i64>,
    },
    /// Submit a built package for audit.
    #[command(after_help = format!("Examples:
  smartpkg pkg submit 58210 --content 'new menu page'
  smartpkg pkg submit 58210 --content 'new menu page' --wait --timeout 3600

{WAIT_HELP}"))]
    Submit {
        #[command(flatten)]
        package: PackageId,
        /// What the reviewer should know.
        #[arg(long)]
        content: String,
        #[arg(long, default_value = "")]
        remark: String,
        #[arg(long)]
        test_account: Option<String>,
        #[arg(long)]
        test_password: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Release a package that passed its audit.
    #[command(after_help = format!("Examples:
  smartpkg pkg release 58210
  smartpkg pkg release 58210 --wait

{WAIT_HELP}"))]
    Release {
        #[command(flatten)]
        package: PackageId,
        #[command(flatten)]
        wait: Wait,
    },
    /// Roll the online package back to the version it replaced.
    #[command(after_help = format!("Examples:
  smartpkg pkg rollback 58210
  smartpkg pkg rollback 58210 --wait

{WAIT_HELP}"))]
    Rollback {
        #[command(flatten)]
        package: PackageId,
        #[command(flatten)]
        wait: Wait,
    },
    /// Withdraw a package from audit.
    #[command(after_help = "Example:\n  smartpkg pkg withdraw 58210")]
    Withdraw {
        #[command(flatten)]
        package: PackageId,
    },
    /// The third party's weekly audit quota.
    #[command(after_help = "Example:\n  smartpkg pkg quota")]
    Quota,
    /// Save a QR code (PNG) that opens the mini program.
    #[command(after_help = "Examples:
  smartpkg pkg qrcode --out online.png
  smartpkg pkg qrcode --package-id 58210 --path pages/about/about --width 430 --out trial.png")]
    Qrcode {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        package_id: Option<i64>,
        #[arg(long)]
        path: Option<String>,
        /// 200 to 1280.
        #[arg(long)]
        width: Option<u32>,
    },
}

fn status_name(s: Option<WireStatus>, row: &PackageInfo) -> String {
    match s {
        Some(WireStatus::Online) => "1 online".into(),
        Some(WireStatus::Development) => "3 development".into(),
        Some(WireStatus::Auditing) => "4 auditing".into(),
        Some(WireStatus::AuditFailed) => "5 audit failed".into(),
        Some(WireStatus::AuditPassed) => "6 audit passed".into(),
        Some(WireStatus::RollingBack) => "8 rolling back".into(),
        None => row.upload_status_desc.clone().unwrap_or_default(),
    }
}

fn rows(list: &[PackageInfo]) -> Vec<Vec<String>> {
    list.iter()
        .map(|p| {
            let note = match (&p.upload_err_msg, &p.msg) {
                (Some(e), _) => e.clone(),
                (None, Some(m)) => m.clone(),
                _ => String::new(),
            };
            vec![
                p.package_id.map(|i| i.to_string()).unwrap_or_default(),
                p.version.clone().unwrap_or_default(),
                status_name(p.status, p),
                p.commit_time.clone().unwrap_or_default(),
                p.rollback_version.clone().unwrap_or_default(),
                note,
            ]
        })
        .collect()
}

const HEADERS: [&str; 6] = [
    "PACKAGE",
    "VERSION",
    "STATUS",
    "COMMITTED",
    "ROLLBACK TO",
    "NOTE",
];

fn show(r: &Resolved, list: &[PackageInfo]) -> anyhow::Result<()> {
    if r.json {
        return print_json(&list);
    }
    print_table(&HEADERS, &rows(list));
    Ok(())
}

fn done(r: &Resolved, what: &str) -> anyhow::Result<()> {
    if r.json {
        print_json(&serde_json::json!({"ok": true}))
    } else {
        println!("{what}");
        Ok(())
    }
}

/// What `--wait` follows a package to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// The audit's result.
    Audited,
    /// Online.
    Online,
    /// Another version online in its place, once the rollback delay is over.
    RolledBack,
}

/// How a followed package ended.
enum Followed {
    Reached(PackageInfo),
    AuditFailed(PackageInfo),
    TimedOut(String),
}

/// Follows `package_id` (in `get`'s list: the online, audit and development versions) until
/// it reaches `goal`, printing each state it is seen in.
async fn follow(
    c: &smartpkg_client::Client,
    token: &str,
    package_id: i64,
    goal: Goal,
    timeout: Duration,
    r: &Resolved,
) -> anyhow::Result<Followed> {
    let until = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(100);
    let mut last = String::new();
    loop {
        let rows = c.get(token).await.map_err(fail)?;
        let row = rows.iter().find(|p| p.package_id == Some(package_id));
        let seen = match row {
            Some(p) => format!("package {package_id}: {}", status_name(p.status, p)),
            None => format!("package {package_id}: no longer listed"),
        };
        if seen != last {
            // Progress goes to standard error under --json, so standard output stays JSON.
            if r.json {
                eprintln!("{seen}");
            } else {
                println!("{seen}");
            }
            last = seen;
        }
        match (goal, row.and_then(|p| p.status)) {
            (Goal::Audited, Some(WireStatus::AuditPassed | WireStatus::Online)) => {
                return Ok(Followed::Reached(row.cloned().unwrap_or_default()))
            }
            (Goal::Audited, Some(WireStatus::AuditFailed)) => {
                return Ok(Followed::AuditFailed(row.cloned().unwrap_or_default()))
            }
            (Goal::Audited, Some(WireStatus::Auditing)) => {}
            (Goal::Audited, _) => {
                anyhow::bail!(
                    "package {package_id} left the audit without a result (withdrawn?); see: smartpkg pkg list"
                )
            }
            (Goal::Online, Some(WireStatus::Online)) => {
                return Ok(Followed::Reached(row.cloned().unwrap_or_default()))
            }
            (Goal::Online, Some(WireStatus::AuditPassed)) => {}
            (Goal::Online, _) => {
                anyhow::bail!("package {package_id} did not go online; see: smartpkg pkg list")
            }
            (Goal::RolledBack, Some(WireStatus::RollingBack)) => {}
            (Goal::RolledBack, _) => {
                let online = rows.iter().find(|p| {
                    p.status == Some(WireStatus::Online) && p.package_id != Some(package_id)
                });
                match online {
                    Some(p) => {
                        println_or_err(
                            r,
                            &format!(
                                "package {}: {} (version {})",
                                p.package_id.unwrap_or_default(),
                                status_name(p.status, p),
                                p.version.as_deref().unwrap_or("")
                            ),
                        );
                        return Ok(Followed::Reached(p.clone()));
                    }
                    None => anyhow::bail!(
                        "package {package_id} is not rolling back and nothing else is online; see: smartpkg pkg list"
                    ),
                }
            }
        }
        if tokio::time::Instant::now() >= until {
            return Ok(Followed::TimedOut(format!(
                "still {} after {} s; it goes on without us: smartpkg pkg detail {package_id}",
                last.split(": ").nth(1).unwrap_or("unchanged"),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(wait.min(until - tokio::time::Instant::now())).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

fn println_or_err(r: &Resolved, line: &str) {
    if r.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Follows the package when `--wait` was given; the exit status it earns.
async fn then_wait(
    c: &smartpkg_client::Client,
    token: &str,
    package_id: i64,
    goal: Goal,
    wait: &Wait,
    r: &Resolved,
) -> anyhow::Result<ExitCode> {
    if !wait.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let timeout = Duration::from_secs(wait.timeout);
    match follow(c, token, package_id, goal, timeout, r).await? {
        Followed::Reached(p) => {
            if r.json {
                print_json(&p)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Followed::AuditFailed(p) => {
            let reason = p.msg.clone().unwrap_or_default();
            if r.json {
                print_json(&p)?;
            }
            eprintln!("smartpkg: package {package_id} failed its audit: {reason}");
            Ok(ExitCode::from(EXIT_AUDIT_FAILED))
        }
        Followed::TimedOut(why) => {
            eprintln!("smartpkg: package {package_id}: {why}");
            Ok(ExitCode::from(EXIT_TIMED_OUT))
        }
    }
}

pub async fn run(cmd: PkgCmd, r: &Resolved) -> anyhow::Result<ExitCode> {
    let ok = ExitCode::SUCCESS;
    let c = r.client()?;
    let token = r.access_token()?;
    match cmd {
        PkgCmd::Upload {
            template_id,
            ext_json,
            user_version,
            user_desc,
            test_account,
            test_password,
            wait,
        } => {
            let ext_json = value_or_file(&ext_json)?;
            // Checked here so a typo is told before a call is spent on it.
            serde_json::from_str::<serde_json::Value>(&ext_json)
                .context("ext_json is not valid JSON")?;
            let req = UploadRequest {
                template_id,
                ext_json,
                user_version: user_version.clone(),
                user_desc,
                test_account,
                test_password,
            };
            c.upload(token, &req).await.map_err(fail)?;
            if !wait {
                done(
                    r,
                    &format!("uploaded {user_version}; it builds now (see: smartpkg pkg list)"),
                )?;
                return Ok(ok);
            }
            let built = c
                .wait_built(token, &user_version, Duration::from_secs(600))
                .await
                .map_err(fail)?;
            show(r, &[built])?;
            Ok(ok)
        }
        PkgCmd::List => show(r, &c.get(token).await.map_err(fail)?).map(|_| ok),
        PkgCmd::Detail {
            id,
            package_id,
            status,
        } => {
            let status = status
                .map(|s| {
                    WireStatus::from_code(s)
                        .with_context(|| format!("--status must be 1, 3, 4, 5, 6 or 8, not {s}"))
                })
                .transpose()?;
            let req = GetDetailRequest {
                status,
                package_id: id.or(package_id),
            };
            show(r, &[c.get_detail(token, &req).await.map_err(fail)?]).map(|_| ok)
        }
        PkgCmd::Submit {
            package,
            content,
            remark,
            test_account,
            test_password,
            wait,
        } => {
            let package_id = package.get()?;
            let req = SubmitAuditRequest {
                package_id,
                content,
                remark,
                test_account,
                test_password,
            };
            c.submit_audit(token, &req).await.map_err(fail)?;
            if !wait.wait {
                done(r, &format!("package {package_id} submitted for audit"))?;
            }
            then_wait(&c, token, package_id, Goal::Audited, &wait, r).await
        }
        PkgCmd::Release { package, wait } => {
            let package_id = package.get()?;
            c.release(token, package_id).await.map_err(fail)?;
            if !wait.wait {
                done(r, &format!("package {package_id} released"))?;
            }
            then_wait(&c, token, package_id, Goal::Online, &wait, r).await
        }
        PkgCmd::Rollback { package, wait } => {
            let package_id = package.get()?;
            c.rollback(token, package_id).await.map_err(fail)?;
            if !wait.wait {
                done(r, &format!("package {package_id} is rolling back"))?;
            }
            then_wait(&c, token, package_id, Goal::RolledBack, &wait, r).await
        }
        PkgCmd::Withdraw { package } => {
            let package_id = package.get()?;
            c.withdraw(token, package_id).await.map_err(fail)?;
            done(r, &format!("package {package_id} withdrawn from audit")).map(|_| ok)
        }
        PkgCmd::Quota => {
            let q = c.audit_quota(token).await.map_err(fail)?;
            if r.json {
                return print_json(&q).map(|_| ok);
            }
            let n = |v: i64| {
                if v < 0 {
                    "unlimited".to_string()
                } else {
                    v.to_string()
                }
            };
            print_table(
                &["PERIOD", "QUOTA", "REMAINING"],
                &[vec!["week".into(), n(q.quota_times), n(q.remain_times)]],
            );
            Ok(ok)
        }
        PkgCmd::Qrcode {
            out,
            package_id,
            path,
            width,
        } => {
            let req = QrCodeRequest {
                path,
                package_id,
                width,
            };
            let png = c.qrcode(token, &req).await.map_err(fail)?;
            std::fs::write(&out, &png)
                .with_context(|| format!("cannot write {}", out.display()))?;
            done(r, &format!("wrote {} ({} bytes)", out.display(), png.len())).map(|_| ok)
        }
    }
}
