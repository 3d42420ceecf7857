//! What reaches the operator's terminal and log files: nothing a client sends can forge a log
//! line or smuggle a terminal escape sequence into it.

mod common;

use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn client_text_in_a_logged_build_failure_cannot_forge_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let data = dir.path().join("data");
    let server = common::start_demo_with(
        &data,
        &[("SMARTPKG_LOG", "info"), ("SMARTPKG_BUILD_DELAY_MS", "0")],
        Stdio::from(log),
    );
    let t = server.template_id.to_string();
    // extAppid is echoed into the build failure's message, which the server logs.
    let ext = r#"{"extAppid":"1\n2026-01-01T00:00:00Z  INFO FORGED line\u001b[31m"}"#;
    let v = server
        .call(
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", ext),
                ("user_version", "9.9.9"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    server
        .wait_detail(&[("type", "3")], |v| v["data"]["upload_status"] == 3)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop();
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        text.contains("build failed"),
        "the failure is logged: {text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a client forged a log line: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the log: {text:?}"
    );
}
