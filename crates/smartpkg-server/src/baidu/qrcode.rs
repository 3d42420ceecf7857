//! `/rest/2.0/smartapp/app/qrcode` (spec §4): a PNG QR code linking to a version of the mini
//! program and a page. Errors are JSON: 470018 width out of range, 470019 a package_id that is
//! not the app's audit, development or online version, 470020 no online version.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use smartpkg_core::ids::PackageId;
use smartpkg_core::lifecycle::Slot;
use smartpkg_types::Errno;

use super::{Params, Reply};
use crate::state::AppState;

const MIN_WIDTH: i64 = 200;
const MAX_WIDTH: i64 = 1280;

async fn qrcode_inner(state: &AppState, p: &Params) -> Result<(String, u32), Reply> {
    let grant = p.app_grant(state).await?;
    let width = p.optional_i64("width")?.unwrap_or(MIN_WIDTH);
    if !(MIN_WIDTH..=MAX_WIDTH).contains(&width) {
        return Err(Reply::err_msg(
            Errno::QrcodeWidth,
            "width must be between 200 and 1280",
        ));
    }
    let path = p.text("path", 1024)?.unwrap_or_default();
    let visible = state.store.visible_packages(grant.app_id).await?;
    let package = match p.optional_i64("package_id")? {
        Some(id) => visible
            .into_iter()
            .find(|r| r.package_id == PackageId(id) && r.state.slot().is_some())
            .ok_or_else(|| {
                Reply::err_msg(
                    Errno::QrcodePackage,
                    "package_id is not this mini program's audit, development or online version",
                )
            })?,
        None => visible
            .into_iter()
            .find(|r| r.state.slot() == Some(Slot::Online))
            .ok_or_else(|| {
                Reply::err_msg(
                    Errno::QrcodeNoOnline,
                    "the mini program has no online version; give a package_id",
                )
            })?,
    };
    let app = state
        .store
        .get_app(grant.app_id)
        .await?
        .ok_or_else(|| Reply::err(Errno::AppNotFound))?;
    let link = crate::qr::link(state, &app.app_key, &path, &package)
        .map_err(|e| Reply::err_msg(Errno::Busy, e))?;
    Ok((link, width as u32))
}

pub async fn qrcode(State(state): State<AppState>, p: Params) -> Response {
    let (link, width) = match qrcode_inner(&state, &p).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    match tokio::task::spawn_blocking(move || crate::qr::png(&link, width)).await {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        Ok(Err(e)) => Reply::err_msg(Errno::QrcodeFailed, e).into_response(),
        Err(e) => Reply::err_msg(Errno::QrcodeFailed, e).into_response(),
    }
}
