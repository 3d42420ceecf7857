//! `smartpkg serve --demo`: a third party, a mini program authorized to it, a template and a
//! fresh access token, so there is something to call right away. Seeding is idempotent: the
//! ids are remembered in `<data dir>/demo.json` and reused; each start mints a new token.

use serde::{Deserialize, Serialize};
use smartpkg_core::archive;
use smartpkg_core::ids::{AppId, TemplateId, TpId};
use smartpkg_store::{App, NewApp, NewTemplate, NewTp, Tp};

use crate::state::AppState;
use crate::{clock, secrets};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DemoIds {
    tp_id: i64,
    app_id: i64,
    template_id: i64,
    /// The demo host app's credentials (a demo's secret may live in its data directory).
    #[serde(default)]
    host_key: Option<String>,
    #[serde(default)]
    host_secret: Option<String>,
    /// The demo console operator's password (the demo's own data directory keeps it).
    #[serde(default)]
    console_password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Demo {
    pub tp: Tp,
    pub app: App,
    pub template_id: i64,
    pub access_token: String,
    /// A host app's key and secret, for the device's update check.
    pub host_key: String,
    pub host_secret: String,
    /// A console operator account, [`DEMO_OPERATOR`], and its password.
    pub console_password: String,
    /// The demo third party's WeChat-dialect appsecret, issued afresh at each start.
    pub component_appsecret: String,
}

/// The demo's console operator.
pub const DEMO_OPERATOR: &str = "demo-operator";

#[derive(Debug, thiserror::Error)]
#[error("cannot seed the demo data: {0}")]
pub struct DemoError(String);

fn err(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

async fn existing(state: &AppState, ids: &DemoIds) -> Result<Option<(Tp, App)>, DemoError> {
    let tp = state.store.get_tp(TpId(ids.tp_id)).await.map_err(err)?;
    let app = state.store.get_app(AppId(ids.app_id)).await.map_err(err)?;
    let template = state
        .store
        .get_template(TemplateId(ids.template_id))
        .await
        .map_err(err)?;
    Ok(match (tp, app, template) {
        (Some(tp), Some(app), Some(_)) => Some((tp, app)),
        _ => None,
    })
}

pub async fn seed(state: &AppState) -> Result<Demo, DemoError> {
    let path = state.settings.data_dir.join("demo.json");
    let remembered: Option<DemoIds> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let found = match &remembered {
        Some(ids) => existing(state, ids)
            .await?
            .map(|(tp, app)| (tp, app, TemplateId(ids.template_id))),
        None => None,
    };
    let known_host = remembered
        .as_ref()
        .filter(|_| found.is_some())
        .and_then(|ids| Some((ids.host_key.clone()?, ids.host_secret.clone()?)));
    let known_console = remembered
        .as_ref()
        .filter(|_| found.is_some())
        .and_then(|ids| ids.console_password.clone());
    let (tp, app, template_id) = match found {
        Some(f) => f,
        None => {
            let tp = state
                .store
                .create_tp(NewTp {
                    client_id: secrets::random_alnum(32),
                    name: "Demo third party".into(),
                    event_url: String::new(),
                    auth_event_url: String::new(),
                    msg_token: secrets::random_alnum(32),
                    encoding_aes_key: secrets::encoding_aes_key(),
                    audit_quota: None,
                    redirect_domain: "localhost".into(),
                    wechat: smartpkg_store::WechatIdentity {
                        component_appid: secrets::wx_appid(),
                        token: secrets::random_alnum(32),
                        encoding_aes_key: secrets::encoding_aes_key(),
                        auth_event_url: String::new(),
                        message_url: String::new(),
                    },
                    // Nobody holds it: an operator issues one to use the WeChat dialect.
                    component_secret_hash: secrets::sha256_hex(&secrets::random_alnum(32)),
                })
                .await
                .map_err(err)?;
            let app = new_app(state, "Demo shop").await?;
            let zip = archive::sample_template(&["pages/index/index", "pages/detail/detail"])
                .map_err(err)?;
            let manifest = archive::inspect(&zip, &state.settings.archive()).map_err(err)?;
            let sha = state.blobs.put(zip).await.map_err(err)?;
            let t = state
                .store
                .create_template(
                    NewTemplate {
                        tp_id: tp.tp_id,
                        user_version: "1.0.0".into(),
                        user_desc: "demo shop template".into(),
                        blob_sha256: sha,
                        manifest: serde_json::to_string(&manifest).map_err(err)?,
                    },
                    clock::now_ms(),
                )
                .await
                .map_err(err)?;
            waiting_for_review(state, &tp, t.template_id.get()).await?;
            (tp, app, t.template_id)
        }
    };
    let (host_key, host_secret) = match known_host {
        Some(h) => h,
        None => {
            let key = format!("hk_{}", secrets::random_alnum(24));
            let secret = secrets::random_alnum(40);
            state
                .store
                .create_host_app(
                    "Demo host app".into(),
                    key.clone(),
                    secrets::sha256_hex(&secret),
                    clock::now_ms(),
                )
                .await
                .map_err(err)?;
            let ids = DemoIds {
                tp_id: tp.tp_id.get(),
                app_id: app.app_id.get(),
                template_id: template_id.get(),
                host_key: Some(key.clone()),
                host_secret: Some(secret.clone()),
                console_password: None,
            };
            crate::secrets::write_owner_only(&path, &serde_json::to_vec(&ids).map_err(err)?)
                .map_err(err)?;
            (key, secret)
        }
    };
    let console_password = match known_console {
        Some(p) => p,
        None => {
            let (_, generated) = crate::application::create_account(
                state,
                DEMO_OPERATOR,
                smartpkg_store::Role::Operator,
                None,
                crate::application::Creator::Operator(None),
                vec![],
            )
            .await
            .map_err(|e| DemoError(e.to_string()))?;
            let password = generated.unwrap_or_default();
            let ids = DemoIds {
                tp_id: tp.tp_id.get(),
                app_id: app.app_id.get(),
                template_id: template_id.get(),
                host_key: Some(host_key.clone()),
                host_secret: Some(host_secret.clone()),
                console_password: Some(password.clone()),
            };
            crate::secrets::write_owner_only(&path, &serde_json::to_vec(&ids).map_err(err)?)
                .map_err(err)?;
            password
        }
    };
    let access_token = authorize(state, tp.tp_id, app.app_id).await?;
    // The third party speaks both dialects: a fresh appsecret each start, shown with the
    // walk-through (the demo's own data; nobody else holds it).
    let component_appsecret = secrets::random_alnum(32);
    state
        .store
        .set_component_secret(tp.tp_id, secrets::sha256_hex(&component_appsecret))
        .await
        .map_err(err)?;
    Ok(Demo {
        component_appsecret,
        tp,
        app,
        template_id: template_id.get(),
        access_token,
        host_key,
        host_secret,
        console_password,
    })
}

/// The ready-to-paste shell lines for the whole lifecycle (bash; needs curl and sed).
pub fn curl_lines(
    demo: &Demo,
    base: &str,
    admin_token: &str,
    build_delay_ms: u64,
    rollback_delay_ms: u64,
) -> String {
    let wait_build = build_delay_ms / 1000 + 1;
    let wait_rollback = rollback_delay_ms / 1000 + 1;
    let p = "$BASE/rest/2.0/smartapp/package";
    let app_id = demo.app.app_id;
    let t = demo.template_id;
    let upload = |version: &str, desc: &str| {
        format!(
            "curl -s -X POST \"{p}/upload?access_token=$TOKEN\" --data-urlencode template_id={t} \\\n  --data-urlencode 'ext_json={{\"extEnable\":true,\"extAppid\":{app_id},\"ext\":{{\"shop\":\"demo\"}}}}' \\\n  --data-urlencode user_version={version} --data-urlencode 'user_desc={desc}'; echo"
        )
    };
    let dev_id = format!(
        "curl -s \"{p}/getdetail?access_token=$TOKEN&type=3\" | sed -E 's/.*\"package_id\":([0-9]+).*/\\1/'"
    );
    let submit_pass_release = |var: &str| {
        format!(
            "curl -s -X POST \"{p}/submitaudit?access_token=$TOKEN\" -d package_id=${var} -d content=demo -d remark=; echo\n\
             curl -s -X POST -H \"Authorization: Bearer $ADMIN\" \"$BASE/admin/v1/packages/${var}/audit\" -d '{{\"result\":\"pass\"}}'; echo\n\
             curl -s -X POST \"{p}/release?access_token=$TOKEN\" -d package_id=${var}; echo"
        )
    };
    format!(
        r#"Demo data: third party {tp_id} (client_id {client_id}), mini program {app_id} "{app_name}", template {t}.
Paste these lines into bash (they need curl and sed):

export BASE={base} TOKEN={token} ADMIN={admin}
# 1. Upload version 1.0.0 from the template; it builds for {build_delay_ms} ms (upload_status 1).
{up1}
curl -s "{p}/get?access_token=$TOKEN"; echo
sleep {wait_build}
# 2. The built development version: submit it, pass the audit (admin API), release it.
PKG1=$({dev_id}); echo "package $PKG1"
{spr1}
# 3. Version 1.1.0 the same way; 1.0.0 becomes its rollback_version.
{up2}
sleep {wait_build}
PKG2=$({dev_id}); echo "package $PKG2"
{spr2}
curl -s "{p}/getdetail?access_token=$TOKEN"; echo
# 4. Roll back: status 8 for {rollback_delay_ms} ms, then 1.0.0 is online again.
curl -s -X POST "{p}/rollback?access_token=$TOKEN" -d package_id=$PKG2; echo
sleep {wait_rollback}
curl -s "{p}/get?access_token=$TOKEN"; echo
# 5. Submit 1.2.0 and withdraw the audit; then the weekly audit quota.
{up3}
sleep {wait_build}
PKG3=$({dev_id}); echo "package $PKG3"
curl -s -X POST "{p}/submitaudit?access_token=$TOKEN" -d package_id=$PKG3 -d content=demo -d remark=; echo
curl -s -X POST "{p}/withdraw?access_token=$TOKEN" -d package_id=$PKG3; echo
curl -s "{p}/auditquota?access_token=$TOKEN"; echo
# 6. The full package archive of 1.0.0 (template files + generated ext.json).
curl -s -H "Authorization: Bearer $ADMIN" -o package.zip "$BASE/admin/v1/packages/$PKG1/archive" && ls -l package.zip
# 7. A device asks what to run (docs/runtime.md) and downloads it.
curl -s -u {host_key}:{host_secret} "$BASE/runtime/v1/update-check" -H 'Content-Type: application/json' \
  -d '{{"device_id":"demo-phone","runtime_version":"3.140.0","apps":[{{"app_id":{app_id}}}]}}' | tee check.json; echo
curl -s -o device.zip "$(sed -E 's/.*"url":"([^"]+)".*/\1/' check.json)" && ls -l device.zip
# 8. The same mini program through WeChat's dialect (docs/wechat.md): component appid
#    {component_appid} (appsecret {component_appsecret}), mini program {wx_appid};
#    $TOKEN is its authorizer_access_token. Commit 2.0.0, audit it, release it.
W=$BASE/wxa
curl -s -X POST "$W/commit?access_token=$TOKEN" -d '{{"template_id":{t},"ext_json":"{{\"extEnable\":true,\"extAppid\":\"{wx_appid}\"}}","user_version":"2.0.0","user_desc":"from WeChat tooling"}}'; echo
sleep {wait_build}
curl -s "$W/get_page?access_token=$TOKEN"; echo
AUDIT=$(curl -s -X POST "$W/submit_audit?access_token=$TOKEN" -d '{{"version_desc":"demo"}}' | sed -E 's/.*"auditid":([0-9]+).*/\1/'); echo "audit $AUDIT"
curl -s -X POST -H "Authorization: Bearer $ADMIN" "$BASE/admin/v1/packages/$AUDIT/audit" -d '{{"result":"pass"}}'; echo
curl -s -X POST "$W/get_auditstatus?access_token=$TOKEN" -d "{{\"auditid\":$AUDIT}}"; echo
curl -s -X POST "$W/release?access_token=$TOKEN" -d '{{}}'; echo
curl -s "$W/revertcoderelease?access_token=$TOKEN&action=get_history_version"; echo
# 9. Release health (docs/release-health.md): 2.1.0 staged by a plan the platform advances
#    on healthy figures and halts on bad ones, watched in the console ({base}/console/apps/{app_id}).
{up4}
sleep {wait_build}
PKG4=$({dev_id}); echo "package $PKG4"
curl -s -X POST "{p}/submitaudit?access_token=$TOKEN" -d package_id=$PKG4 -d content=demo -d remark=; echo
curl -s -X POST -H "Authorization: Bearer $ADMIN" "$BASE/admin/v1/packages/$PKG4/audit" -d '{{"result":"pass"}}'; echo
curl -s -X POST "{p}/grayrelease?access_token=$TOKEN" -d package_id=$PKG4 -d gray_percentage=10 -d gray_steps=10,50,100 -d gray_auto=1; echo
# A fleet of 6,000 devices on which 2.1.0 crashes one time in twenty (2.0.0: one in two
# hundred): the plan halts once 500 devices of each have launched (Ctrl-C to stop).
smartpkg device simulate --base-url $BASE --host-key {host_key} --host-secret {host_secret} --app-id {app_id} --devices 6000 --fail-rate 2.1.0=0.05 --fail-rate 2.0.0=0.005
"#,
        component_appid = demo.tp.wechat.component_appid,
        component_appsecret = demo.component_appsecret,
        wx_appid = demo.app.wx_appid,
        host_key = demo.host_key,
        host_secret = demo.host_secret,
        tp_id = demo.tp.tp_id,
        client_id = demo.tp.client_id,
        app_name = demo.app.name,
        token = demo.access_token,
        admin = admin_token,
        up1 = upload("1.0.0", "first release"),
        up2 = upload("1.1.0", "second release"),
        up3 = upload("1.2.0", "withdrawn"),
        up4 = upload("2.1.0", "staged by a plan"),
        spr1 = submit_pass_release("PKG1"),
        spr2 = submit_pass_release("PKG2"),
    )
}

/// A second demo mini program, "Demo café", whose package waits in the console's audit queue:
/// uploaded now, submitted for audit once the worker has built it (in the background, so the
/// server starts at once). Seeded with the rest of the demo, once per data directory.
async fn waiting_for_review(state: &AppState, tp: &Tp, template_id: i64) -> Result<(), DemoError> {
    use smartpkg_core::lifecycle::{AuditRequest, Command, PkgState};
    use smartpkg_store::{Actor, NewPackage};

    let cafe = new_app(state, "Demo café").await?;
    authorize(state, tp.tp_id, cafe.app_id).await?;
    let ext_json = format!(
        r##"{{"extEnable":true,"extAppid":{},"window":{{"navigationBarTitleText":"Demo café","navigationBarBackgroundColor":"#6f4e37"}},"ext":{{"shop":"café","currency":"CNY"}}}}"##,
        cafe.app_id
    );
    let new = NewPackage {
        app_id: cafe.app_id,
        tp_id: tp.tp_id,
        template_id: TemplateId(template_id),
        version: "1.0.0".into(),
        version_desc: "the café's first version".into(),
        ext_json,
        direct_commit: false,
        test_account: Some("demo-tester".into()),
        test_password: Some("demo-pass-123".into()),
    };
    let (package_id, plan) = match state
        .store
        .upload(new, state.decision_context(Actor::ThirdParty))
        .await
        .map_err(err)?
    {
        Ok(x) => x,
        Err(refusal) => return Err(DemoError(refusal.msg)),
    };
    state.jobs_ready.notify(crate::job_signal::lanes_of(&plan));
    let state = state.clone();
    let app_id = cafe.app_id;
    tokio::spawn(async move {
        // The build takes `build_delay_ms`; give it a generous minute.
        for _ in 0..600 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            match state.store.get_package(package_id).await {
                Ok(Some(p)) if p.state == PkgState::Development => {
                    let submit = Command::SubmitAudit {
                        package_id,
                        request: AuditRequest {
                            content: "demo: please review the café's menu".into(),
                            remark: String::new(),
                            test_account: None,
                            test_password: None,
                        },
                    };
                    if let Err(e) = state
                        .execute(app_id.get(), submit, Actor::ThirdParty, None)
                        .await
                    {
                        tracing::warn!(error = %e, "demo: the café's package was not submitted");
                    }
                    return;
                }
                Ok(Some(p)) if p.state != PkgState::Building => return,
                Ok(_) | Err(_) => {}
            }
        }
    });
    Ok(())
}

/// A demo mini program with every gate passed, not yet authorized to anyone.
async fn new_app(state: &AppState, name: &str) -> Result<App, DemoError> {
    state
        .store
        .create_app(NewApp {
            app_key: secrets::random_alnum(32),
            name: name.into(),
            name_audited: true,
            category_audited: true,
            authenticity_certified: true,
            tp_id: None,
            wx_appid: secrets::wx_appid(),
        })
        .await
        .map_err(err)
}

/// Authorizes `app_id` to the third party as an operator would; the new access token.
async fn authorize(state: &AppState, tp_id: TpId, app_id: AppId) -> Result<String, DemoError> {
    crate::application::authorize(state, tp_id, app_id)
        .await
        .map(|g| g.access_token)
        .map_err(|e| DemoError(e.to_string()))
}
