//! The README's first command: `smartpkg serve --demo` prints curl lines that work as pasted.

mod common;

use std::process::Command;

#[tokio::test]
async fn the_printed_demo_lines_run_the_whole_lifecycle_as_pasted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("SMARTPKG_BUILD_DELAY_MS", "300"),
        ("SMARTPKG_ROLLBACK_DELAY_MS", "300"),
    ];
    let server = common::start_demo(&dir.path().join("data"), &env);
    let start = server
        .lines
        .iter()
        .position(|l| l.starts_with("export BASE="))
        .expect("export line");
    // The last line plays a fleet until interrupted: run before it, then it for two rounds.
    let simulate = server
        .lines
        .iter()
        .rposition(|l| l.starts_with("smartpkg device simulate"))
        .expect("the demo ends with the fleet's line");
    assert_eq!(
        simulate,
        server.lines.len() - 1,
        "the fleet's line comes last"
    );
    let script = server.lines[start..simulate].join("\n");
    let work = dir.path().join("cwd");
    std::fs::create_dir_all(&work).expect("cwd");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .current_dir(&work)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "script failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // 17 Baidu-dialect answers, 6 of the WeChat dialect's walk-through, 4 of the staged plan.
    assert_eq!(answers.len(), 27, "one answer per call: {stdout}");
    for a in &answers {
        assert!(
            a.get("error").is_none()
                && a.get("errno").is_none_or(|e| e == 0)
                && a.get("errcode").is_none_or(|e| e == 0),
            "a step failed: {a}\n{stdout}"
        );
    }
    // WeChat's audit passed, and its release kept 1.0.0 as the version to revert to.
    let status = answers
        .iter()
        .find(|a| a.get("status").is_some() && a.get("screenshot").is_some())
        .expect("get_auditstatus's answer");
    assert_eq!(status["status"], 0, "{status}");
    let history = answers
        .iter()
        .find(|a| a.get("version_list").is_some())
        .expect("the history");
    assert_eq!(
        history["version_list"][0]["user_version"], "1.0.0",
        "{history}"
    );
    // After WeChat's release 2.0.0 is online (1.0.0 kept to roll back to); the withdrawn
    // 1.2.0 was replaced by WeChat's commit.
    let server_view = server.call("get", &[]).await;
    let versions: Vec<(&str, i64)> = server_view["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| {
            (
                p["version"].as_str().unwrap_or(""),
                p["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(versions, vec![("2.0.0", 1), ("2.1.0", 6)], "{server_view}");
    let staged = &server_view["data"][1];
    assert_eq!(
        (
            staged["gray_percentage"].as_i64(),
            staged["gray_status"].as_str()
        ),
        (Some(10), Some("running")),
        "{server_view}"
    );
    // The fleet's line, as printed, for two quick rounds.
    let line = &server.lines[simulate];
    let args = line
        .strip_prefix("smartpkg ")
        .expect("a smartpkg command")
        .replace("$BASE", &server.base)
        .replace("--devices 6000", "--devices 300");
    let out = Command::new(env!("CARGO_BIN_EXE_smartpkg"))
        .args(args.split_whitespace())
        .args(["--rounds", "2", "--every", "100ms"])
        .output()
        .expect("simulate runs");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("round 2:") && printed.contains(":2.1.0 on"),
        "{printed}"
    );
    // The Baidu part, as the device saw it before WeChat's release.
    // The device was told to run the online version and downloaded it.
    let check = answers
        .iter()
        .find(|a| a.get("apps").is_some())
        .expect("the update check's answer");
    assert_eq!(check["apps"][0]["status"], "update", "{check}");
    assert_eq!(check["apps"][0]["package"]["version"], "1.0.0");
    let downloaded = std::fs::read(work.join("device.zip")).expect("device.zip");
    assert_eq!(
        downloaded.len() as i64,
        check["apps"][0]["package"]["size"].as_i64().expect("size")
    );
    let zip = std::fs::read(work.join("package.zip")).expect("package.zip downloaded");
    assert!(zip.starts_with(b"PK"), "package.zip is a zip");
    server.stop();
}
