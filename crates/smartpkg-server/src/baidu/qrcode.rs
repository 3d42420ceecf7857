//! `/rest/2.0/smartapp/app/qrcode` (spec §4): a PNG QR code linking to a version of the mini
//! program and a page. Errors are JSON: 470018 width out of range, 470019 a package_id that is
//! not the app's audit, development or online version, 470020 no online version.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use qrcode::{Color, QrCode};
use smartpkg_core::ids::PackageId;
use smartpkg_core::lifecycle::Slot;
use smartpkg_types::Errno;

use super::{Params, Reply};
use crate::state::AppState;

const MIN_WIDTH: i64 = 200;
const MAX_WIDTH: i64 = 1280;
const QUIET_ZONE: usize = 4;

/// The QR code of `text` as a greyscale PNG of `width` × `width` pixels.
pub fn png(text: &str, width: u32) -> Result<Vec<u8>, String> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let modules = code.width();
    let colors = code.to_colors();
    let total = modules + 2 * QUIET_ZONE;
    let w = width as usize;
    let mut pixels = vec![255u8; w * w];
    for y in 0..w {
        let my = y * total / w;
        for x in 0..w {
            let mx = x * total / w;
            let inside = (QUIET_ZONE..QUIET_ZONE + modules).contains(&mx)
                && (QUIET_ZONE..QUIET_ZONE + modules).contains(&my);
            if inside && colors[(my - QUIET_ZONE) * modules + (mx - QUIET_ZONE)] == Color::Dark {
                pixels[y * w + x] = 0;
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, width);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

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
    // Our link: the public base, the app's key, the page, and the exact version.
    let base = state.public_url.trim_end_matches('/').to_string();
    let mut link = url::Url::parse(&format!("{base}/smartapp/{}/", app.app_key))
        .map_err(|e| Reply::err_msg(Errno::Busy, format!("public_url is not a URL: {e}")))?;
    if let Ok(joined) = link.join(path.trim_start_matches('/')) {
        link = joined;
    }
    link.query_pairs_mut()
        .append_pair("package_id", &package.package_id.to_string())
        .append_pair("version", &package.version);
    Ok((link.to_string(), width as u32))
}

pub async fn qrcode(State(state): State<AppState>, p: Params) -> Response {
    let (link, width) = match qrcode_inner(&state, &p).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    match tokio::task::spawn_blocking(move || png(&link, width)).await {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "image/png")], bytes).into_response(),
        Ok(Err(e)) => Reply::err_msg(Errno::QrcodeFailed, e).into_response(),
        Err(e) => Reply::err_msg(Errno::QrcodeFailed, e).into_response(),
    }
}
