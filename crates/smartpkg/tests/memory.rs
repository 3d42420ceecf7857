//! What a hostile template archive costs the server in memory: a small zip whose nested
//! `app.json` entries inflate to hundreds of megabytes once cost that much (they were all
//! buffered); only the root `app.json` is held now.

mod common;

use std::io::{Cursor, Write};

use rand::RngCore;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A valid template whose seven nested `dN/app.json` each inflate to 32 MiB of zeros
/// (compressed once, copied raw), padded with 1.4 MB of incompressible bytes so the expansion
/// ratio stays within the default limit: about 1.7 MB that inflates to about 225 MB.
fn heavy_template() -> Vec<u8> {
    let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let mut one = ZipWriter::new(Cursor::new(Vec::new()));
    one.start_file("zeros", deflated).expect("start");
    let zeros = vec![0u8; 32 << 20];
    one.write_all(&zeros).expect("write");
    let one = one.finish().expect("finish").into_inner();
    let mut source = ZipArchive::new(Cursor::new(one)).expect("read back");

    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("app.json", deflated).expect("start");
    w.write_all(br#"{"pages":["pages/index/index"]}"#)
        .expect("write");
    w.start_file("pages/index/index.swan", deflated)
        .expect("start");
    w.write_all(b"<view/>").expect("write");
    let mut noise = vec![0u8; 1_400_000];
    rand::thread_rng().fill_bytes(&mut noise);
    w.start_file(
        "static/noise.bin",
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
    )
    .expect("start");
    w.write_all(&noise).expect("write");
    for i in 0..7 {
        let entry = source.by_index_raw(0).expect("entry");
        w.raw_copy_file_rename(entry, format!("d{i}/app.json"))
            .expect("copy");
    }
    w.finish().expect("finish").into_inner()
}

#[tokio::test]
async fn a_small_archive_of_nested_app_json_bombs_costs_little_memory() {
    let zip = heavy_template();
    assert!(zip.len() < 2_000_000, "{} bytes", zip.len());
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_demo(dir.path(), &[]);
    let pid = server.child.id();
    let before = peak_rss_kib(pid).expect("VmHWM");
    let r = reqwest::Client::new()
        .post(format!(
            "{}/admin/v1/tps/1/templates?user_version=9.9.9&user_desc=heavy",
            server.base
        ))
        .bearer_auth(&server.admin)
        .header("content-type", "application/zip")
        .body(zip)
        .send()
        .await
        .expect("upload");
    let status = r.status();
    let body = r.text().await.expect("body");
    assert_eq!(status, 201, "{body}");
    let after = peak_rss_kib(pid).expect("VmHWM");
    let grew_mib = after.saturating_sub(before) / 1024;
    eprintln!("peak RSS {before} KiB -> {after} KiB (+{grew_mib} MiB) for a 225 MB expansion");
    assert!(
        grew_mib < 64,
        "checking the archive raised peak memory by {grew_mib} MiB"
    );
    server.stop();
}
