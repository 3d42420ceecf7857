//! Third parties, mini programs, templates and authorizations.

use smartpkg_core::ids::{AppId, TpId};
use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::Deserialize;

use smartpkg_core::archive;
use smartpkg_store::{App, AppPatch, NewApp, NewTemplate, NewTp, TpPatch, WechatIdentity};

use super::answers::{
    AppAnswer, AppWithOwnerPassword, ArchiveUploaded, Authorized, TpAnswer, TpWithComponentSecret,
};
use super::{clean_text, AdminError, AdminResult, Body, ErrorBody};
use crate::state::AppState;
use crate::{clock, owner, secrets};

fn check_url(name: &str, url: &str) -> AdminResult<()> {
    if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(AdminError::bad_request(format!(
            "{name} must be an http:// or https:// URL"
        )))
    }
}

/// The URLs a third party gives, by field name; "" (none) is allowed.
fn check_urls(urls: &[(&str, Option<&str>)]) -> AdminResult<()> {
    for (name, url) in urls {
        check_url(name, url.unwrap_or(""))?;
    }
    Ok(())
}

fn check_tp_fields(
    event_url: Option<&str>,
    auth_event_url: Option<&str>,
    key: Option<&str>,
    token: Option<&str>,
) -> AdminResult<()> {
    check_urls(&[("event_url", event_url), ("auth_event_url", auth_event_url)])?;
    if let Some(k) = key {
        if !secrets::valid_encoding_aes_key(k) {
            return Err(AdminError::bad_request(
                "encoding_aes_key must be 43 base64 characters (32 bytes once decoded)",
            ));
        }
    }
    if token.is_some_and(|t| t.is_empty() || t.len() > 128) {
        return Err(AdminError::bad_request(
            "msg_token must be 1 to 128 characters",
        ));
    }
    Ok(())
}

/// A bare host name such as `tp.example.com` (lower-cased); "" clears it.
fn check_domain(d: Option<String>) -> AdminResult<Option<String>> {
    let Some(d) = d else { return Ok(None) };
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = d.is_empty()
        || (d.len() <= 253
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if !ok {
        return Err(AdminError::bad_request(
            "redirect_domain must be a host name such as tp.example.com (no scheme, port or path)",
        ));
    }
    Ok(Some(d))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTpBody {
    name: String,
    event_url: Option<String>,
    auth_event_url: Option<String>,
    msg_token: Option<String>,
    encoding_aes_key: Option<String>,
    audit_quota: Option<i64>,
    redirect_domain: Option<String>,
    /// Where WeChat-dialect tickets and authorization events go.
    wechat_auth_event_url: Option<String>,
    /// Where WeChat-dialect audit results go; `$APPID$` becomes the mini program's wx appid.
    wechat_message_url: Option<String>,
}

#[utoipa::path(
    post,
    path = "/tps",
    tag = "admin",
    summary = "Create a third party",
    request_body = NewTpBody,
    responses((status = 201, description = "the third party, secrets generated where not given; the component appsecret is shown this once", body = TpWithComponentSecret), (status = 400, description = "invalid field"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn create_tp(
    State(state): State<AppState>,
    Body(b): Body<NewTpBody>,
) -> AdminResult<(StatusCode, Json<TpWithComponentSecret>)> {
    if b.name.trim().is_empty() {
        return Err(AdminError::bad_request("name is required"));
    }
    clean_text("name", Some(&b.name), false)?;
    check_tp_fields(
        b.event_url.as_deref(),
        b.auth_event_url.as_deref(),
        b.encoding_aes_key.as_deref(),
        b.msg_token.as_deref(),
    )?;
    check_urls(&[
        ("wechat_auth_event_url", b.wechat_auth_event_url.as_deref()),
        ("wechat_message_url", b.wechat_message_url.as_deref()),
    ])?;
    let secret = secrets::random_alnum(32);
    let tp = NewTp {
        client_id: secrets::random_alnum(32),
        name: b.name.trim().to_string(),
        event_url: b.event_url.unwrap_or_default(),
        auth_event_url: b.auth_event_url.unwrap_or_default(),
        msg_token: b.msg_token.unwrap_or_else(|| secrets::random_alnum(32)),
        encoding_aes_key: b.encoding_aes_key.unwrap_or_else(secrets::encoding_aes_key),
        audit_quota: b.audit_quota.filter(|q| *q >= -1),
        redirect_domain: check_domain(b.redirect_domain)?.unwrap_or_default(),
        wechat: WechatIdentity {
            component_appid: secrets::wx_appid(),
            token: secrets::random_alnum(32),
            encoding_aes_key: secrets::encoding_aes_key(),
            auth_event_url: b.wechat_auth_event_url.unwrap_or_default(),
            message_url: b.wechat_message_url.unwrap_or_default(),
        },
        component_secret_hash: secrets::sha256_hex(&secret),
    };
    let tp = state.store.create_tp(tp).await?;
    let created = TpWithComponentSecret {
        tp: tp.into(),
        component_appsecret: secret,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    post,
    path = "/tps/{tp_id}/component-secret",
    tag = "admin",
    summary = "Issue a new component appsecret and show it once; the old one stops working",
    params(("tp_id" = i64, Path)),
    responses((status = 200, description = "the third party with its new component_appsecret", body = TpWithComponentSecret), (status = 404, description = "no such third party"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn reissue_component_secret(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
) -> AdminResult<Json<TpWithComponentSecret>> {
    let secret = secrets::random_alnum(32);
    let hash = secrets::sha256_hex(&secret);
    if !state.store.set_component_secret(TpId(tp_id), hash).await? {
        return Err(AdminError::not_found(format!("tp {tp_id}")));
    }
    let tp = state
        .store
        .get_tp(TpId(tp_id))
        .await?
        .ok_or_else(|| AdminError::not_found(format!("tp {tp_id}")))?;
    Ok(Json(TpWithComponentSecret {
        tp: tp.into(),
        component_appsecret: secret,
    }))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchTpBody {
    name: Option<String>,
    event_url: Option<String>,
    auth_event_url: Option<String>,
    msg_token: Option<String>,
    encoding_aes_key: Option<String>,
    /// null resets to the server's default.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i64>)]
    audit_quota: Option<Option<i64>>,
    redirect_domain: Option<String>,
    wechat_auth_event_url: Option<String>,
    wechat_message_url: Option<String>,
    /// The WeChat dialect's push keys: the token that signs and the 43-character key that
    /// seals (normally generated; set them to match what a third party already holds).
    wechat_token: Option<String>,
    wechat_encoding_aes_key: Option<String>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Option::<i64>::deserialize(d).map(Some)
    }
}

#[utoipa::path(
    patch,
    path = "/tps/{tp_id}",
    tag = "admin",
    summary = "Change a third party",
    params(("tp_id" = i64, Path)),
    request_body = PatchTpBody,
    responses((status = 200, description = "the third party", body = TpAnswer), (status = 400, description = "invalid field"), (status = 404, description = "no such third party"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn patch_tp(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
    Body(b): Body<PatchTpBody>,
) -> AdminResult<Json<TpAnswer>> {
    clean_text("name", b.name.as_deref(), false)?;
    check_tp_fields(
        b.event_url.as_deref(),
        b.auth_event_url.as_deref(),
        b.encoding_aes_key.as_deref(),
        b.msg_token.as_deref(),
    )?;
    check_urls(&[
        ("wechat_auth_event_url", b.wechat_auth_event_url.as_deref()),
        ("wechat_message_url", b.wechat_message_url.as_deref()),
    ])?;
    if b.wechat_encoding_aes_key
        .as_deref()
        .is_some_and(|k| !secrets::valid_encoding_aes_key(k))
    {
        return Err(AdminError::bad_request(
            "wechat_encoding_aes_key must be 43 base64 characters (32 bytes once decoded)",
        ));
    }
    if b.wechat_token
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.len() > 128)
    {
        return Err(AdminError::bad_request(
            "wechat_token must be 1 to 128 characters",
        ));
    }
    if b.audit_quota.flatten().is_some_and(|q| q < -1) {
        return Err(AdminError::bad_request(
            "audit_quota must be -1 (unlimited) or a count",
        ));
    }
    let patch = TpPatch {
        name: b.name,
        event_url: b.event_url,
        auth_event_url: b.auth_event_url,
        msg_token: b.msg_token,
        encoding_aes_key: b.encoding_aes_key,
        audit_quota: b.audit_quota,
        redirect_domain: check_domain(b.redirect_domain)?,
        wechat_auth_event_url: b.wechat_auth_event_url,
        wechat_message_url: b.wechat_message_url,
        wechat_token: b.wechat_token,
        wechat_encoding_aes_key: b.wechat_encoding_aes_key,
    };
    Ok(Json(
        state.store.update_tp(TpId(tp_id), patch).await?.into(),
    ))
}

#[utoipa::path(
    get,
    path = "/tps/{tp_id}",
    tag = "admin",
    summary = "Read a third party",
    params(("tp_id" = i64, Path)),
    responses((status = 200, description = "the third party", body = TpAnswer), (status = 404, description = "no such third party"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn get_tp(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
) -> AdminResult<Json<TpAnswer>> {
    let tp = state.store.get_tp(TpId(tp_id)).await?;
    tp.map(|t| Json(t.into()))
        .ok_or_else(|| AdminError::not_found(format!("tp {tp_id}")))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAppBody {
    name: String,
    name_audited: Option<bool>,
    category_audited: Option<bool>,
    authenticity_certified: Option<bool>,
}

async fn owner_hash(pw: String) -> AdminResult<String> {
    owner::hash_password(pw)
        .await
        .map_err(|e| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

#[utoipa::path(
    post,
    path = "/apps",
    tag = "admin",
    summary = "Create a mini program (audit gates default to true); the owner password is shown once",
    request_body = NewAppBody,
    responses((status = 201, description = "the mini program with owner_password", body = AppWithOwnerPassword), (status = 400, description = "invalid field"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn create_app(
    State(state): State<AppState>,
    Body(b): Body<NewAppBody>,
) -> AdminResult<(StatusCode, Json<AppWithOwnerPassword>)> {
    if b.name.trim().is_empty() {
        return Err(AdminError::bad_request("name is required"));
    }
    clean_text("name", Some(&b.name), false)?;
    // The gates default to open so that a sandbox app can go through the whole lifecycle;
    // an operator closes them to test the 69001-69003 and 50038 paths.
    let app = NewApp {
        app_key: secrets::random_alnum(32),
        name: b.name.trim().to_string(),
        name_audited: b.name_audited.unwrap_or(true),
        category_audited: b.category_audited.unwrap_or(true),
        authenticity_certified: b.authenticity_certified.unwrap_or(true),
        tp_id: None,
        wx_appid: secrets::wx_appid(),
    };
    let owner_password = owner::generate_password();
    let hash = owner_hash(owner_password.clone()).await?;
    let app = state.store.create_app(app).await?;
    state.store.set_owner_password(app.app_id, hash).await?;
    let app = App {
        owner_credential_set: true,
        ..app
    };
    Ok((
        StatusCode::CREATED,
        Json(AppWithOwnerPassword::new(app, owner_password)),
    ))
}

#[derive(utoipa::ToSchema, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OwnerPasswordBody {
    /// The operator's choice; absent = a random one is generated.
    password: Option<String>,
}

#[utoipa::path(
    post,
    path = "/apps/{app_id}/owner-password",
    tag = "admin",
    summary = "Set a new owner credential (given, or generated) and show it once; the old one stops working",
    params(("app_id" = i64, Path)),
    request_body = OwnerPasswordBody,
    responses((status = 200, description = "the mini program with owner_password", body = AppWithOwnerPassword), (status = 400, description = "the password is too weak"), (status = 404, description = "no such mini program"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
/// `POST /apps/{app_id}/owner-password`: sets a new owner credential (the given one, or a
/// generated one) and shows it this once. The old one stops working at once.
pub async fn reset_owner_password(
    State(state): State<AppState>,
    Path(app_id): Path<i64>,
    Body(b): Body<OwnerPasswordBody>,
) -> AdminResult<Json<AppWithOwnerPassword>> {
    let pw = match b.password {
        Some(p) => {
            owner::check_password_shape(&p).map_err(|e| AdminError::bad_request(e.to_string()))?;
            p
        }
        None => owner::generate_password(),
    };
    let hash = owner_hash(pw.clone()).await?;
    if !state.store.set_owner_password(AppId(app_id), hash).await? {
        return Err(AdminError::not_found(format!("app {app_id}")));
    }
    state.guards.per_app.clear(&owner::Guards::app_key(app_id));
    let app = state
        .store
        .get_app(AppId(app_id))
        .await?
        .ok_or_else(|| AdminError::not_found(format!("app {app_id}")))?;
    Ok(Json(AppWithOwnerPassword::new(app, pw)))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchAppBody {
    name: Option<String>,
    name_audited: Option<bool>,
    category_audited: Option<bool>,
    authenticity_certified: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/apps/{app_id}",
    tag = "admin",
    summary = "Change a mini program's name or gates",
    params(("app_id" = i64, Path)),
    request_body = PatchAppBody,
    responses((status = 200, description = "the mini program", body = AppAnswer), (status = 400, description = "invalid field"), (status = 404, description = "no such mini program"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn patch_app(
    State(state): State<AppState>,
    Path(app_id): Path<i64>,
    Body(b): Body<PatchAppBody>,
) -> AdminResult<Json<AppAnswer>> {
    let patch = AppPatch {
        name: b.name,
        name_audited: b.name_audited,
        category_audited: b.category_audited,
        authenticity_certified: b.authenticity_certified,
    };
    Ok(Json(
        crate::application::patch_app(&state, AppId(app_id), patch)
            .await?
            .into(),
    ))
}

#[utoipa::path(
    get,
    path = "/apps/{app_id}",
    tag = "admin",
    summary = "Read a mini program",
    params(("app_id" = i64, Path)),
    responses((status = 200, description = "the mini program", body = AppAnswer), (status = 404, description = "no such mini program"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn get_app(
    State(state): State<AppState>,
    Path(app_id): Path<i64>,
) -> AdminResult<Json<AppAnswer>> {
    let app = state.store.get_app(AppId(app_id)).await?;
    app.map(|a| Json(a.into()))
        .ok_or_else(|| AdminError::not_found(format!("app {app_id}")))
}

/// A template archive received, checked in full and stored by hash: what a draft needs.
/// A rejected archive leaves nothing behind (nothing is stored before every check passed).
async fn intake(
    state: &AppState,
    tp_id: i64,
    q: &HashMap<String, String>,
    req: Request,
) -> AdminResult<(NewTemplate, archive::TemplateManifest)> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/") {
        return Err(AdminError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the zip itself as the body (curl --data-binary @template.zip -H 'Content-Type: application/zip')",
        ));
    }
    let user_version = q
        .get("user_version")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AdminError::bad_request("user_version is required (query parameter)"))?;
    let user_desc = q.get("user_desc").cloned().unwrap_or_default();
    if user_version.chars().count() > 64 || user_desc.chars().count() > 2048 {
        return Err(AdminError::bad_request(
            "user_version is at most 64 characters, user_desc at most 2048",
        ));
    }
    clean_text("user_version", Some(&user_version), false)?;
    clean_text("user_desc", Some(&user_desc), true)?;
    if state.store.get_tp(TpId(tp_id)).await?.is_none() {
        return Err(AdminError::not_found(format!("tp {tp_id}")));
    }
    // A slot before the body is read: waiting uploads hold a connection, not their archive.
    let _slot = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        state.template_slots.acquire(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{} template uploads are being checked; try again shortly",
                state.settings.template_upload_concurrency
            ),
        )
    })?;
    let limits = state.settings.archive();
    let bytes = axum::body::to_bytes(req.into_body(), limits.max_archive_bytes as usize)
        .await
        .map_err(|_| {
            AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the archive is larger than {} bytes",
                    limits.max_archive_bytes
                ),
            )
        })?;
    if bytes.is_empty() {
        return Err(AdminError::bad_request(
            "the body is empty; send the template's zip",
        ));
    }
    let bytes = Vec::from(bytes);
    let internal = |e: String| AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
    let (manifest, bytes) =
        tokio::task::spawn_blocking(move || archive::inspect(&bytes, &limits).map(|m| (m, bytes)))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| {
                AdminError::new(StatusCode::BAD_REQUEST, "invalid_archive", e.to_string())
            })?;
    let manifest_json = serde_json::to_string(&manifest).map_err(|e| internal(e.to_string()))?;
    let blob_sha256 = state.blobs.put(bytes).await?;
    let t = NewTemplate {
        tp_id: TpId(tp_id),
        user_version,
        user_desc,
        blob_sha256,
        manifest: manifest_json,
    };
    Ok((t, manifest))
}

fn archive_answer(uploaded: ArchiveUploaded) -> (StatusCode, Json<ArchiveUploaded>) {
    (StatusCode::CREATED, Json(uploaded))
}

#[utoipa::path(
    post,
    path = "/tps/{tp_id}/templates",
    tag = "admin",
    summary = "Upload a template zip: a draft and a template from it",
    params(("tp_id" = i64, Path), ("user_version" = String, Query), ("user_desc" = String, Query)),
    request_body(content = Vec<u8>, content_type = "application/zip", description = "the template's zip archive"),
    responses((status = 201, description = "the template and its draft, with what the archive holds", body = ArchiveUploaded), (status = 400, description = "not a template archive"), (status = 404, description = "no such third party"), (status = 413, description = "larger than the limit"), (status = 415, description = "not application/zip"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
/// `POST /tps/{tp_id}/templates?user_version=&user_desc=` with the zip as the raw body: a
/// draft and a template from it in one step (the operator contract).
pub async fn upload_template(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> AdminResult<(StatusCode, Json<ArchiveUploaded>)> {
    let (new, manifest) = intake(&state, tp_id, &q, req).await?;
    let sha = new.blob_sha256.clone();
    let t = state.store.create_template(new, clock::now_ms()).await?;
    Ok(archive_answer(ArchiveUploaded {
        template_id: Some(t.template_id.get()),
        draft_id: t.draft_id,
        user_version: t.user_version,
        user_desc: t.user_desc,
        blob_sha256: sha,
        pages: manifest.pages,
        file_count: manifest.files.len(),
    }))
}

#[utoipa::path(
    post,
    path = "/tps/{tp_id}/drafts",
    tag = "admin",
    summary = "Upload a template zip as a draft only",
    params(("tp_id" = i64, Path), ("user_version" = String, Query), ("user_desc" = String, Query)),
    request_body(content = Vec<u8>, content_type = "application/zip", description = "the template's zip archive"),
    responses((status = 201, description = "the draft, with what the archive holds", body = ArchiveUploaded), (status = 400, description = "not a template archive"), (status = 404, description = "no such third party"), (status = 413, description = "larger than the limit"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
/// `POST /tps/{tp_id}/drafts?user_version=&user_desc=`: a draft only; the third party turns
/// it into a template with `addtotemplate`.
pub async fn upload_draft(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> AdminResult<(StatusCode, Json<ArchiveUploaded>)> {
    let (new, manifest) = intake(&state, tp_id, &q, req).await?;
    let sha = new.blob_sha256.clone();
    let d = state.store.create_draft(new, clock::now_ms()).await?;
    Ok(archive_answer(ArchiveUploaded {
        template_id: None,
        draft_id: d.draft_id,
        user_version: d.user_version,
        user_desc: d.user_desc,
        blob_sha256: sha,
        pages: manifest.pages,
        file_count: manifest.files.len(),
    }))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    app_id: i64,
}

#[utoipa::path(
    post,
    path = "/tps/{tp_id}/authorizations",
    tag = "admin",
    summary = "Authorize a mini program to the third party and mint its tokens",
    params(("tp_id" = i64, Path)),
    request_body = AuthorizeBody,
    responses((status = 201, description = "the mini program's tokens (shown once)", body = Authorized), (status = 404, description = "no such third party or mini program"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
pub async fn authorize(
    State(state): State<AppState>,
    Path(tp_id): Path<i64>,
    Body(b): Body<AuthorizeBody>,
) -> AdminResult<(StatusCode, Json<Authorized>)> {
    let g = crate::application::authorize(&state, TpId(tp_id), AppId(b.app_id)).await?;
    Ok((
        StatusCode::CREATED,
        Json(Authorized {
            access_token: g.access_token,
            refresh_token: g.refresh_token,
            expires_in: g.expires_in,
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/tps/{tp_id}/authorizations/{app_id}",
    tag = "admin",
    summary = "Revoke: the app's tokens die and the TP is told UNAUTHORIZED",
    params(("tp_id" = i64, Path), ("app_id" = i64, Path)),
    responses((status = 204, description = "revoked"), (status = 404, description = "no such authorization"), (status = 401, description = "missing or wrong admin token", body = ErrorBody))
)]
/// `DELETE /tps/{tp_id}/authorizations/{app_id}`: the app's tokens stop working at once and
/// the TP is told UNAUTHORIZED.
pub async fn revoke(
    State(state): State<AppState>,
    Path((tp_id, app_id)): Path<(i64, i64)>,
) -> AdminResult<StatusCode> {
    crate::application::revoke(&state, TpId(tp_id), AppId(app_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
