//! `/rest/2.0/smartapp/package/*` (spec §3). Handlers parse, load, ask the domain through the
//! store, and shape the answer; the rules themselves live in `smartpkg_core::lifecycle`.

use axum::extract::State;
use chrono::FixedOffset;
use smartpkg_core::lifecycle::{AuditRequest, Command, PkgState, Slot};
use smartpkg_store::PackageRecord;
use smartpkg_types::{upload_status, AuditQuota, Errno, HistoryVersion, PackageInfo, WireStatus};

use super::{check_grant, done, Answer, Data, Params, Reply};
use crate::application;
use crate::clock;
use crate::state::AppState;

/// The `committer` the real platform shows for packages a third party submitted.
const COMMITTER: &str = "--";
const MAX_VERSION_CHARS: usize = 64;
const MAX_DESC_CHARS: usize = 2048;
const MAX_ACCOUNT_CHARS: usize = 256;

/// A stored package as `get`/`getdetail` show it; None for states the wire never shows.
pub fn to_wire(p: &PackageRecord, offset: FixedOffset) -> Option<PackageInfo> {
    let status = p.state.wire_status()?;
    let mut info = PackageInfo {
        version: Some(p.version.clone()),
        commit_time: Some(clock::commit_time(p.commit_time_ms, offset)),
        version_desc: Some(p.version_desc.clone()),
        ..Default::default()
    };
    match p.state {
        // A package still uploading carries only these five fields (the seed's example).
        PkgState::Building => {
            info.upload_status = Some(upload_status::UPLOADING);
            info.upload_status_desc = Some(upload_status::UPLOADING_DESC.into());
        }
        PkgState::BuildFailed => {
            info.upload_status = Some(upload_status::FAILED);
            info.upload_status_desc = Some(upload_status::FAILED_DESC.into());
            info.upload_err_code = p.upload_err_code;
            info.upload_err_msg = p.upload_err_msg.clone();
        }
        _ => {
            info.remark = Some(p.remark.clone());
            info.msg = Some(p.msg.clone());
            info.committer = Some(COMMITTER.into());
            info.status = Some(status);
            info.package_id = Some(p.package_id);
            info.gray_percentage = p.staged_percent;
            if p.state.slot() == Some(Slot::Online) {
                info.rollback_version = Some(p.rollback_version.clone().unwrap_or_default());
            }
        }
    }
    Some(info)
}

async fn run(state: &AppState, app_id: i64, cmd: Command) -> Answer {
    application::package_command(state, app_id, cmd, smartpkg_store::Actor::ThirdParty).await?;
    done()
}

pub async fn upload(State(state): State<AppState>, p: Params) -> Answer {
    let grant = p.app_write_grant(&state).await?;
    let template_id = p.required_i64("template_id")?;
    let ext_json = p.required("ext_json")?.to_string();
    p.required("user_version")?;
    p.required("user_desc")?;
    let upload = application::Upload {
        app_id: grant.app_id,
        tp_id: grant.tp_id,
        template_id,
        ext_json,
        version: p
            .text("user_version", MAX_VERSION_CHARS)?
            .unwrap_or_default(),
        version_desc: p.text("user_desc", MAX_DESC_CHARS)?.unwrap_or_default(),
        test_account: p.text("test_account", MAX_ACCOUNT_CHARS)?,
        test_password: p.text("test_password", MAX_ACCOUNT_CHARS)?,
    };
    application::upload(&state, upload, smartpkg_store::Actor::ThirdParty).await?;
    done()
}

pub async fn submitaudit(State(state): State<AppState>, p: Params) -> Answer {
    let grant = p.app_write_grant(&state).await?;
    let package_id = p.required_i64("package_id")?;
    p.required("content")?;
    let request = AuditRequest {
        content: p.text("content", MAX_DESC_CHARS)?.unwrap_or_default(),
        remark: p.text("remark", MAX_DESC_CHARS)?.unwrap_or_default(),
        test_account: p.text("test_account", MAX_ACCOUNT_CHARS)?,
        test_password: p.text("test_password", MAX_ACCOUNT_CHARS)?,
    };
    let cmd = Command::SubmitAudit {
        package_id,
        request,
    };
    run(&state, grant.app_id, cmd).await
}

async fn by_package_id(state: AppState, p: Params, cmd: fn(i64) -> Command) -> Answer {
    let grant = p.app_write_grant(&state).await?;
    let package_id = p.required_i64("package_id")?;
    run(&state, grant.app_id, cmd(package_id)).await
}

pub async fn release(State(state): State<AppState>, p: Params) -> Answer {
    by_package_id(state, p, |package_id| Command::Release { package_id }).await
}

pub async fn rollback(State(state): State<AppState>, p: Params) -> Answer {
    by_package_id(state, p, |package_id| Command::Rollback { package_id }).await
}

pub async fn withdraw(State(state): State<AppState>, p: Params) -> Answer {
    by_package_id(state, p, |package_id| Command::Withdraw { package_id }).await
}

/// Online first, then the audit version, then the development version.
fn slot_order(p: &PackageRecord) -> u8 {
    match p.state.slot() {
        Some(Slot::Online) => 0,
        Some(Slot::Audit) => 1,
        _ => 2,
    }
}

pub async fn get(State(state): State<AppState>, p: Params) -> Answer<Vec<PackageInfo>> {
    let found = state
        .store
        .visible_packages_by_token(p.token_hash()?)
        .await?;
    let (grant, mut packages) = match found {
        Some((grant, packages)) => (Some(grant), packages),
        None => (None, vec![]),
    };
    check_grant(grant)?;
    packages.sort_by_key(slot_order);
    let offset = state.settings.utc_offset;
    let list: Vec<PackageInfo> = packages.iter().filter_map(|r| to_wire(r, offset)).collect();
    Ok(Data(list))
}

fn not_found() -> Reply {
    Reply::err(Errno::PackageNotFound)
}

pub async fn getdetail(State(state): State<AppState>, p: Params) -> Answer<PackageInfo> {
    let grant = p.app_grant(&state).await?;
    let wanted = match p.optional_i64("type")? {
        None => None,
        Some(code) => Some(WireStatus::from_code(code).ok_or_else(|| {
            Reply::err_msg(
                Errno::ParamError,
                format!("type must be one of 1, 3, 4, 5, 6, 8; got {code}"),
            )
        })?),
    };
    let offset = state.settings.utc_offset;
    let record = match p.optional_i64("package_id")? {
        Some(id) => state
            .store
            .get_package(id)
            .await?
            .filter(|r| r.app_id == grant.app_id)
            .filter(|r| wanted.is_none() || r.state.wire_status() == wanted),
        None => {
            let visible = state.store.visible_packages(grant.app_id).await?;
            visible.into_iter().find(|r| match wanted {
                Some(w) => r.state.wire_status() == Some(w),
                // With neither parameter: the online version (rolling back counts).
                None => r.state.slot() == Some(Slot::Online),
            })
        }
    };
    let info = record
        .as_ref()
        .and_then(|r| to_wire(r, offset))
        .ok_or_else(not_found)?;
    Ok(Data(info))
}

pub async fn gettrial(State(state): State<AppState>, p: Params) -> Answer<PackageInfo> {
    let grant = p.app_grant(&state).await?;
    let visible = state.store.visible_packages(grant.app_id).await?;
    let offset = state.settings.utc_offset;
    visible
        .iter()
        .find(|r| r.state.slot() == Some(Slot::Development))
        .and_then(|r| to_wire(r, offset))
        .map(Data)
        .ok_or_else(not_found)
}

pub async fn auditquota(State(state): State<AppState>, p: Params) -> Answer<AuditQuota> {
    let grant = p.app_grant(&state).await?;
    let q = state
        .store
        .audit_quota(
            grant.tp_id,
            state.decision_context(smartpkg_store::Actor::ThirdParty),
        )
        .await?;
    Ok(Data(AuditQuota {
        quota_type: 2,
        quota_times: q.limit.unwrap_or(-1),
        remain_times: q.remaining().unwrap_or(-1),
    }))
}

/// `grayrelease` (smartpkg's extension): an audit-passed package to a percentage of devices.
pub async fn grayrelease(State(state): State<AppState>, p: Params) -> Answer {
    let grant = p.app_write_grant(&state).await?;
    let package_id = p.required_i64("package_id")?;
    let percent = p.required_i64("gray_percentage")?;
    let cmd = Command::StageRelease {
        package_id,
        percent,
    };
    run(&state, grant.app_id, cmd).await
}

/// `revertgrayrelease` (smartpkg's extension): every device back to the online version.
pub async fn revertgrayrelease(State(state): State<AppState>, p: Params) -> Answer {
    by_package_id(state, p, |package_id| Command::RevertStage { package_id }).await
}

/// `rollbackto` (smartpkg's extension): the online package back to a chosen former version.
pub async fn rollbackto(State(state): State<AppState>, p: Params) -> Answer {
    let grant = p.app_write_grant(&state).await?;
    let package_id = p.required_i64("package_id")?;
    let target = p.required_i64("target_package_id")?;
    run(
        &state,
        grant.app_id,
        Command::RollbackTo { package_id, target },
    )
    .await
}

/// `gethistory` (smartpkg's extension): the versions `rollbackto` may choose, newest first.
pub async fn gethistory(State(state): State<AppState>, p: Params) -> Answer<Vec<HistoryVersion>> {
    let grant = p.app_grant(&state).await?;
    let limit = smartpkg_core::lifecycle::ROLLBACK_CHOICES as i64;
    let rows = state.store.recent_history(grant.app_id, limit).await?;
    let offset = state.settings.utc_offset;
    Ok(Data(
        rows.iter()
            .map(|r| HistoryVersion {
                package_id: r.package_id,
                version: r.version.clone(),
                version_desc: r.version_desc.clone(),
                commit_time: clock::commit_time(r.commit_time_ms, offset),
            })
            .collect(),
    ))
}
