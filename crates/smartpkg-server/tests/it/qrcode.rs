//! The QR code endpoint: a real PNG, decoded back here with a QR reader.

use serde_json::Value;

use crate::helpers::{spawn_app, TestApp};

async fn qr(app: &TestApp, params: &[(&str, &str)]) -> reqwest::Response {
    let mut q = vec![("access_token", app.token.as_str())];
    q.extend_from_slice(params);
    app.client
        .get(format!("{}/rest/2.0/smartapp/app/qrcode", app.base))
        .query(&q)
        .send()
        .await
        .expect("request")
}

fn decode(png_bytes: &[u8]) -> (u32, String) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_, content) = grids[0].decode().expect("decodes");
    (info.width, content)
}

#[tokio::test]
async fn the_qr_code_is_a_png_that_decodes_to_the_requested_version_and_page() {
    let app = spawn_app().await;
    let (_, a) = app.admin_get(&format!("/apps/{}", app.app_id)).await;
    let key = a["app_key"].as_str().expect("app_key").to_string();
    let online = app.online("1.0.0").await;
    let dev = app.built("1.1.0").await;

    let r = qr(&app, &[("path", "pages/about/about"), ("width", "430")]).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    let (w, link) = decode(&r.bytes().await.expect("body"));
    assert_eq!(w, 430);
    assert_eq!(
        link,
        format!(
            "{}/smartapp/{key}/pages/about/about?package_id={online}&version=1.0.0",
            app.base
        )
    );

    let r = qr(&app, &[("package_id", &dev.to_string())]).await;
    let (w, link) = decode(&r.bytes().await.expect("body"));
    assert_eq!(w, 200, "the default width");
    assert_eq!(
        link,
        format!(
            "{}/smartapp/{key}/?package_id={dev}&version=1.1.0",
            app.base
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn qr_code_errors_are_json_with_their_errno() {
    let app = spawn_app().await;
    let errno = |v: Value| v["errno"].as_i64();
    let v: Value = qr(&app, &[]).await.json().await.expect("json");
    assert_eq!(
        errno(v),
        Some(470020),
        "no online version and no package_id"
    );
    app.online("1.0.0").await;
    for width in ["199", "1281", "-5"] {
        let v: Value = qr(&app, &[("width", width)])
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(errno(v), Some(470018), "{width}");
    }
    let v: Value = qr(&app, &[("package_id", "424242")])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(errno(v), Some(470019));
    app.stop().await;
}
