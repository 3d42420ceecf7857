//! `smartpkg pkg …`: one mini program's packages (its access token).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use smartpkg_client::types::{
    GetDetailRequest, PackageInfo, QrCodeRequest, SubmitAuditRequest, UploadRequest, WireStatus,
};

use super::{fail, print_json, print_table, value_or_file, Resolved};

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
  smartpkg pkg detail --package-id 58210
  smartpkg pkg detail --status 4")]
    Detail {
        #[arg(long)]
        package_id: Option<i64>,
        /// 1 online, 3 development, 4 auditing, 5 audit failed, 6 audit passed, 8 rolling back.
        #[arg(long)]
        status: Option<i64>,
    },
    /// Submit a built package for audit.
    #[command(
        after_help = "Example:\n  smartpkg pkg submit --package-id 58210 --content 'new menu page'"
    )]
    Submit {
        #[arg(long)]
        package_id: i64,
        /// What the reviewer should know.
        #[arg(long)]
        content: String,
        #[arg(long, default_value = "")]
        remark: String,
        #[arg(long)]
        test_account: Option<String>,
        #[arg(long)]
        test_password: Option<String>,
    },
    /// Release a package that passed its audit.
    #[command(after_help = "Example:\n  smartpkg pkg release --package-id 58210")]
    Release {
        #[arg(long)]
        package_id: i64,
    },
    /// Roll the online package back to the version it replaced.
    #[command(after_help = "Example:\n  smartpkg pkg rollback --package-id 58210")]
    Rollback {
        #[arg(long)]
        package_id: i64,
    },
    /// Withdraw a package from audit.
    #[command(after_help = "Example:\n  smartpkg pkg withdraw --package-id 58210")]
    Withdraw {
        #[arg(long)]
        package_id: i64,
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

pub async fn run(cmd: PkgCmd, r: &Resolved) -> anyhow::Result<()> {
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
                return done(
                    r,
                    &format!("uploaded {user_version}; it builds now (see: smartpkg pkg list)"),
                );
            }
            let built = c
                .wait_built(token, &user_version, Duration::from_secs(600))
                .await
                .map_err(fail)?;
            show(r, &[built])
        }
        PkgCmd::List => show(r, &c.get(token).await.map_err(fail)?),
        PkgCmd::Detail { package_id, status } => {
            let status = status
                .map(|s| {
                    WireStatus::from_code(s)
                        .with_context(|| format!("--status must be 1, 3, 4, 5, 6 or 8, not {s}"))
                })
                .transpose()?;
            let req = GetDetailRequest { status, package_id };
            show(r, &[c.get_detail(token, &req).await.map_err(fail)?])
        }
        PkgCmd::Submit {
            package_id,
            content,
            remark,
            test_account,
            test_password,
        } => {
            let req = SubmitAuditRequest {
                package_id,
                content,
                remark,
                test_account,
                test_password,
            };
            c.submit_audit(token, &req).await.map_err(fail)?;
            done(r, &format!("package {package_id} submitted for audit"))
        }
        PkgCmd::Release { package_id } => {
            c.release(token, package_id).await.map_err(fail)?;
            done(r, &format!("package {package_id} released"))
        }
        PkgCmd::Rollback { package_id } => {
            c.rollback(token, package_id).await.map_err(fail)?;
            done(r, &format!("package {package_id} is rolling back"))
        }
        PkgCmd::Withdraw { package_id } => {
            c.withdraw(token, package_id).await.map_err(fail)?;
            done(r, &format!("package {package_id} withdrawn from audit"))
        }
        PkgCmd::Quota => {
            let q = c.audit_quota(token).await.map_err(fail)?;
            if r.json {
                return print_json(&q);
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
            Ok(())
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
            done(r, &format!("wrote {} ({} bytes)", out.display(), png.len()))
        }
    }
}
