//! `/rest/2.0/smartapp/package/*` (spec §3). Handlers parse, load, ask the domain through the
//! store, and shape the answer; the rules themselves live in `smartpkg_core::lifecycle`.

use chrono::FixedOffset;
use smartpkg_core::ids::{AppId, PackageId, TemplateId};
use smartpkg_core::lifecycle::{AuditRequest, Command, PkgState, Refusal, Slot};
use smartpkg_store::PackageRecord;
use smartpkg_types::{
    call, upload_status, AuditQuota, Endpoint, Errno, HistoryVersion, PackageIdRequest, PackageInfo,
};

use super::{check_grant, checked_text, done, Answer, Call, Data, Reply};
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
            info.package_id = Some(p.package_id.get());
            info.gray_percentage = p.staged_percent;
            info.gray_status = application::gray_status(p).map(str::to_string);
            if p.state.slot() == Some(Slot::Online) {
                info.rollback_version = Some(p.rollback_version.clone().unwrap_or_default());
            }
        }
    }
    Some(info)
}

async fn run(state: &AppState, app_id: i64, cmd: Command) -> Answer {
    application::package_command(state, AppId(app_id), cmd, smartpkg_store::Actor::ThirdParty)
        .await?;
    done()
}

fn account(name: &str, value: Option<String>) -> Result<Option<String>, Reply> {
    value
        .map(|v| checked_text(name, v, MAX_ACCOUNT_CHARS, false))
        .transpose()
}

pub async fn upload(state: AppState, call: Call<call::Upload>) -> Answer {
    let grant = call.app(&state).await?;
    let req = call.request()?;
    let upload = application::Upload {
        app_id: grant.app_id,
        tp_id: grant.tp_id,
        template_id: TemplateId(req.template_id),
        ext_json: req.ext_json,
        version: checked_text("user_version", req.user_version, MAX_VERSION_CHARS, false)?,
        version_desc: checked_text("user_desc", req.user_desc, MAX_DESC_CHARS, true)?,
        test_account: account("test_account", req.test_account)?,
        test_password: account("test_password", req.test_password)?,
    };
    application::upload(&state, upload, smartpkg_store::Actor::ThirdParty).await?;
    done()
}

pub async fn submitaudit(state: AppState, call: Call<call::SubmitAudit>) -> Answer {
    let grant = call.app(&state).await?;
    let req = call.request()?;
    let request = AuditRequest {
        content: checked_text("content", req.content, MAX_DESC_CHARS, true)?,
        remark: checked_text("remark", req.remark, MAX_DESC_CHARS, true)?,
        test_account: account("test_account", req.test_account)?,
        test_password: account("test_password", req.test_password)?,
    };
    let cmd = Command::SubmitAudit {
        package_id: PackageId(req.package_id),
        request,
    };
    run(&state, grant.app_id.get(), cmd).await
}

async fn by_package_id<E>(state: AppState, call: Call<E>, cmd: fn(i64) -> Command) -> Answer
where
    E: Endpoint<Request = PackageIdRequest>,
{
    let grant = call.app(&state).await?;
    let req = call.request()?;
    run(&state, grant.app_id.get(), cmd(req.package_id)).await
}

pub async fn release(state: AppState, call: Call<call::Release>) -> Answer {
    by_package_id(state, call, |package_id| Command::Release {
        package_id: PackageId(package_id),
    })
    .await
}

pub async fn rollback(state: AppState, call: Call<call::Rollback>) -> Answer {
    by_package_id(state, call, |package_id| Command::Rollback {
        package_id: PackageId(package_id),
    })
    .await
}

pub async fn withdraw(state: AppState, call: Call<call::Withdraw>) -> Answer {
    by_package_id(state, call, |package_id| Command::Withdraw {
        package_id: PackageId(package_id),
    })
    .await
}

/// Online first, then the audit version, then the development version.
fn slot_order(p: &PackageRecord) -> u8 {
    match p.state.slot() {
        Some(Slot::Online) => 0,
        Some(Slot::Audit) => 1,
        _ => 2,
    }
}

pub async fn get(state: AppState, call: Call<call::GetPackages>) -> Answer<Vec<PackageInfo>> {
    // One query resolves the token and reads the packages: this is the hottest read.
    let found = state
        .store
        .visible_packages_by_token(call.params.token_hash()?)
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

pub async fn getdetail(state: AppState, call: Call<call::GetDetail>) -> Answer<PackageInfo> {
    let grant = call.app(&state).await?;
    let req = call.request()?;
    let wanted = req.status;
    let offset = state.settings.utc_offset;
    let record = match req.package_id {
        Some(id) => state
            .store
            .get_package(PackageId(id))
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

pub async fn gettrial(state: AppState, call: Call<call::GetTrial>) -> Answer<PackageInfo> {
    let grant = call.app(&state).await?;
    let visible = state.store.visible_packages(grant.app_id).await?;
    let offset = state.settings.utc_offset;
    visible
        .iter()
        .find(|r| r.state.slot() == Some(Slot::Development))
        .and_then(|r| to_wire(r, offset))
        .map(Data)
        .ok_or_else(not_found)
}

pub async fn auditquota(state: AppState, call: Call<call::AuditQuota>) -> Answer<AuditQuota> {
    let grant = call.app(&state).await?;
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
pub async fn grayrelease(state: AppState, call: Call<call::GrayRelease>) -> Answer {
    let grant = call.app(&state).await?;
    let req = call.request()?;
    let auto = match req.gray_auto {
        None | Some(0) => false,
        Some(1) => true,
        Some(n) => {
            return Err(Reply::from(Refusal::new(
                Errno::ParamError,
                format!("参数错误: gray_auto is 0 or 1, not {n}"),
            )))
        }
    };
    let package_id = PackageId(req.package_id);
    let cmd = if req.gray_steps.is_some() || auto {
        let spec = application::PlanSpec {
            steps: req.gray_steps.clone(),
            auto,
            start_percent: Some(req.gray_percentage),
            ..Default::default()
        };
        let plan = application::plan_for(&state, spec).map_err(|why| {
            Reply::from(Refusal::new(Errno::ParamError, format!("参数错误: {why}")))
        })?;
        Command::StartPlan { package_id, plan }
    } else {
        Command::StageRelease {
            package_id,
            percent: req.gray_percentage,
        }
    };
    run(&state, grant.app_id.get(), cmd).await
}

/// `revertgrayrelease` (smartpkg's extension): every device back to the online version.
pub async fn revertgrayrelease(state: AppState, call: Call<call::RevertGrayRelease>) -> Answer {
    by_package_id(state, call, |package_id| Command::RevertStage {
        package_id: PackageId(package_id),
    })
    .await
}

/// `resumegrayrelease` (smartpkg's extension): a halted plan runs again, with a fresh sample.
pub async fn resumegrayrelease(state: AppState, call: Call<call::ResumeGrayRelease>) -> Answer {
    by_package_id(state, call, |package_id| Command::ResumeStage {
        package_id: PackageId(package_id),
        at_ms: clock::now_ms(),
    })
    .await
}

/// `rollbackto` (smartpkg's extension): the online package back to a chosen former version.
pub async fn rollbackto(state: AppState, call: Call<call::RollbackTo>) -> Answer {
    let grant = call.app(&state).await?;
    let req = call.request()?;
    let cmd = Command::RollbackTo {
        package_id: PackageId(req.package_id),
        target: PackageId(req.target_package_id),
    };
    run(&state, grant.app_id.get(), cmd).await
}

/// `gethistory` (smartpkg's extension): the versions `rollbackto` may choose, newest first.
pub async fn gethistory(
    state: AppState,
    call: Call<call::GetHistory>,
) -> Answer<Vec<HistoryVersion>> {
    let grant = call.app(&state).await?;
    let limit = smartpkg_core::lifecycle::ROLLBACK_CHOICES as i64;
    let rows = state.store.recent_history(grant.app_id, limit).await?;
    let offset = state.settings.utc_offset;
    Ok(Data(
        rows.iter()
            .map(|r| HistoryVersion {
                package_id: r.package_id.get(),
                version: r.version.clone(),
                version_desc: r.version_desc.clone(),
                commit_time: clock::commit_time(r.commit_time_ms, offset),
            })
            .collect(),
    ))
}
