//! QR codes of a mini program's version, for both dialects: the link they carry and the
//! image (Baidu's `app/qrcode` answers a PNG, WeChat's `get_qrcode` a JPEG).

use qrcode::{Color, QrCode};
use smartpkg_store::PackageRecord;

use crate::state::AppState;

const QUIET_ZONE: usize = 4;

/// The link a QR code carries: the public base, the app's key, the page, and the exact
/// version (package id and version string).
pub fn link(
    state: &AppState,
    app_key: &str,
    path: &str,
    package: &PackageRecord,
) -> Result<String, String> {
    let base = state.public_url.trim_end_matches('/').to_string();
    let mut link = url::Url::parse(&format!("{base}/smartapp/{app_key}/"))
        .map_err(|e| format!("public_url is not a URL: {e}"))?;
    if let Ok(joined) = link.join(path.trim_start_matches('/')) {
        link = joined;
    }
    link.query_pairs_mut()
        .append_pair("package_id", &package.package_id.to_string())
        .append_pair("version", &package.version);
    Ok(link.to_string())
}

/// The QR code of `text` as `width` × `width` grey pixels (0 dark, 255 light).
fn pixels(text: &str, width: u32) -> Result<Vec<u8>, String> {
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
    Ok(pixels)
}

/// The QR code of `text` as a greyscale PNG of `width` × `width` pixels.
pub fn png(text: &str, width: u32) -> Result<Vec<u8>, String> {
    let pixels = pixels(text, width)?;
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

/// The QR code of `text` as a greyscale JPEG of `width` × `width` pixels (at most 65535).
pub fn jpeg(text: &str, width: u32) -> Result<Vec<u8>, String> {
    let side = u16::try_from(width).map_err(|_| format!("width {width} is too large"))?;
    let pixels = pixels(text, width)?;
    let mut out = Vec::new();
    // Quality 90 keeps the modules' edges sharp enough for any reader.
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&pixels, side, side, jpeg_encoder::ColorType::Luma)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_code_is_drawn_as_png_and_as_jpeg() {
        let png = png("https://example.com/smartapp/k/", 200).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let jpeg = jpeg("https://example.com/smartapp/k/", 200).expect("jpeg");
        assert_eq!(&jpeg[..3], [0xFF, 0xD8, 0xFF], "a JPEG starts with SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], [0xFF, 0xD9], "and ends with EOI");
    }
}
