//! The third party's commands, run as a user runs them (the real binary), against a real
//! server started by the test.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use smartpkg_client::Client;
use smartpkg_testkit::sandbox::{Sandbox, AES_KEY, MSG_TOKEN};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smartpkg"));
    // No profile of the person running the tests leaks in.
    c.env("XDG_CONFIG_HOME", "/nonexistent-smartpkg-test")
        .env_remove("SPKG_BASE_URL")
        .env_remove("SPKG_ACCESS_TOKEN")
        .env_remove("SPKG_TP_TOKEN")
        .env_remove("SPKG_ADMIN_TOKEN")
        .env_remove("SPKG_PROFILE");
    c
}

/// Runs `smartpkg ARGS` with the sandbox's base URL and tokens in the environment.
fn run(s: &Sandbox, args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("SPKG_BASE_URL", &s.base_url)
        .env("SPKG_ACCESS_TOKEN", &s.app_token)
        .env("SPKG_TP_TOKEN", &s.tp_token)
        .env("SPKG_ADMIN_TOKEN", &s.admin_token)
        .output()
        .expect("runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).expect("JSON output")
}

async fn pass(s: &Sandbox, package_id: i64) {
    let (st, body) = s
        .admin(
            reqwest::Method::POST,
            &format!("/packages/{package_id}/audit"),
            Some(json!({"result": "pass"})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
}

/// Uploads 1.0.0 to the sandbox's mini program, builds it, submits it and passes its audit
/// (so the platform pushes the result); its package id.
async fn audit_passed(s: &Sandbox) -> i64 {
    let c = Client::new(&s.base_url).expect("client");
    let t = &s.app_token;
    c.upload(
        t,
        &smartpkg_client::types::UploadRequest {
            template_id: s.template_id,
            ext_json: "{}".into(),
            user_version: "1.0.0".into(),
            user_desc: "d".into(),
            test_account: None,
            test_password: None,
        },
    )
    .await
    .expect("upload");
    let id = c
        .wait_built(t, "1.0.0", Duration::from_secs(10))
        .await
        .expect("built")
        .package_id
        .expect("id");
    c.submit_audit(
        t,
        &smartpkg_client::types::SubmitAuditRequest {
            package_id: id,
            content: "c".into(),
            remark: String::new(),
            test_account: None,
            test_password: None,
        },
    )
    .await
    .expect("submit");
    pass(s, id).await;
    id
}

/// `spawn_blocking` for a command, so the in-process server keeps serving meanwhile.
async fn cli(s: &Sandbox, args: &[&str]) -> Output {
    let s2 = s.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&s2, &refs)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pkg_command_works_and_prints_tables_or_json() {
    let s = Sandbox::start().await;
    let t = s.template_id.to_string();
    let ext = format!(r#"{{"extEnable":true,"extAppid":{}}}"#, s.app_id);
    let up = cli(
        &s,
        &[
            "pkg",
            "upload",
            "--template-id",
            &t,
            "--version",
            "1.0.0",
            "--desc",
            "first",
            "--ext-json",
            &ext,
            "--wait",
            "--json",
        ],
    )
    .await;
    let rows = json_of(&up);
    let first = rows[0]["package_id"].as_i64().expect("package id");
    assert_eq!(rows[0]["status"], 3);

    let table = ok(&cli(&s, &["pkg", "list"]).await);
    assert!(table.starts_with("PACKAGE"), "{table}");
    assert!(table.contains("3 development"), "{table}");

    let id = first.to_string();
    ok(&cli(
        &s,
        &[
            "pkg",
            "submit",
            "--package-id",
            &id,
            "--content",
            "review me",
        ],
    )
    .await);
    let detail = json_of(&cli(&s, &["pkg", "detail", "--status", "4", "--json"]).await);
    assert_eq!(detail[0]["package_id"], first);
    let withdrawn = ok(&cli(&s, &["pkg", "withdraw", "--package-id", &id]).await);
    assert!(withdrawn.contains("withdrawn"), "{withdrawn}");
    ok(&cli(
        &s,
        &["pkg", "submit", "--package-id", &id, "--content", "again"],
    )
    .await);
    pass(&s, first).await;
    ok(&cli(&s, &["pkg", "release", "--package-id", &id]).await);
    let online = json_of(&cli(&s, &["pkg", "detail", "--json"]).await);
    assert_eq!(online[0]["status"], 1);

    // A second version online, then rolled back.
    let up = json_of(
        &cli(
            &s,
            &[
                "pkg",
                "upload",
                "--template-id",
                &t,
                "--version",
                "1.1.0",
                "--desc",
                "second",
                "--ext-json",
                &ext,
                "--wait",
                "--json",
            ],
        )
        .await,
    );
    let second = up[0]["package_id"].as_i64().expect("id").to_string();
    ok(&cli(
        &s,
        &["pkg", "submit", "--package-id", &second, "--content", "c"],
    )
    .await);
    pass(&s, second.parse().expect("id")).await;
    ok(&cli(&s, &["pkg", "release", "--package-id", &second]).await);
    let rb = ok(&cli(&s, &["pkg", "rollback", "--package-id", &second]).await);
    assert!(rb.contains("rolling back"), "{rb}");

    let quota = ok(&cli(&s, &["pkg", "quota"]).await);
    assert!(quota.contains("unlimited"), "{quota}");
    let png = s.dir.path().join("qr.png");
    let png_arg = png.display().to_string();
    ok(&cli(&s, &["pkg", "qrcode", "--out", &png_arg, "--width", "300"]).await);
    assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_one_line_with_the_errno_and_a_failure_status() {
    let s = Sandbox::start().await;
    let o = cli(&s, &["pkg", "release", "--package-id", "999999"]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("errno 69005"), "{err}");
    let o = cli(&s, &["pkg", "list", "--access-token", "45.nope"]).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("gateway error 110"), "{err}");
    // No token at all: the message says where one comes from.
    let o = bin()
        .args(["pkg", "list", "--base-url", &s.base_url])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("SPKG_ACCESS_TOKEN"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_pushed_from_a_folder_added_listed_and_deleted() {
    let s = Sandbox::start().await;
    let src = s.dir.path().join("src");
    std::fs::create_dir_all(src.join("pages/index")).expect("mkdir");
    std::fs::write(src.join("app.json"), r#"{"pages":["pages/index/index"]}"#).expect("write");
    std::fs::write(src.join("pages/index/index.swan"), "<view>hi</view>").expect("write");
    let dir = src.display().to_string();
    let tp = s.tp_id.to_string();
    let pushed = json_of(
        &cli(
            &s,
            &[
                "template",
                "push",
                &dir,
                "--tp-id",
                &tp,
                "--version",
                "3.0.0",
                "--desc",
                "d",
                "--json",
            ],
        )
        .await,
    );
    let draft = pushed["draft_id"].as_i64().expect("draft id").to_string();
    let drafts = ok(&cli(&s, &["template", "drafts"]).await);
    assert!(drafts.contains("3.0.0"), "{drafts}");
    let added = json_of(
        &cli(
            &s,
            &[
                "template",
                "add",
                "--draft-id",
                &draft,
                "--desc",
                "from cli",
                "--json",
            ],
        )
        .await,
    );
    let template = added["template_id"]
        .as_i64()
        .expect("template id")
        .to_string();
    let list = json_of(&cli(&s, &["template", "list", "--json"]).await);
    assert!(list["list"]
        .as_array()
        .expect("list")
        .iter()
        .any(|t| t["template_id"].as_i64().map(|i| i.to_string()) == Some(template.clone())));
    ok(&cli(&s, &["template", "delete", "--template-id", &template]).await);
    // A folder without app.json is refused before anything is sent.
    let empty = s.dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = cli(
        &s,
        &[
            "template",
            "push",
            &empty.display().to_string(),
            "--tp-id",
            &tp,
            "--version",
            "1",
            "--desc",
            "d",
        ],
    )
    .await;
    assert!(String::from_utf8_lossy(&o.stderr).contains("no app.json"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_a_ticket_a_code_and_a_refresh() {
    let s = Sandbox::start().await;
    let ticket = s.tickets().last().cloned().expect("a ticket");
    let t = json_of(
        &cli(
            &s,
            &[
                "auth",
                "tp-token",
                "--client-id",
                &s.client_id,
                "--ticket",
                &ticket,
                "--json",
            ],
        )
        .await,
    );
    assert!(t["access_token"]
        .as_str()
        .expect("token")
        .starts_with("42."));
    let code = Client::new(&s.base_url)
        .expect("client")
        .retrieve_authorization_code(&s.tp_token, s.app_id)
        .await
        .expect("code")
        .authorization_code;
    let pair = json_of(&cli(&s, &["auth", "exchange", "--code", &code, "--json"]).await);
    let refresh = pair["refresh_token"].as_str().expect("refresh").to_string();
    let next = json_of(
        &cli(
            &s,
            &["auth", "refresh", "--refresh-token", &refresh, "--json"],
        )
        .await,
    );
    assert_ne!(next["refresh_token"].as_str(), Some(refresh.as_str()));
    // The spent one is refused, in one line.
    let o = cli(&s, &["auth", "refresh", "--refresh-token", &refresh]).await;
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid_grant"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_supplies_what_flags_leave_out_and_flags_win() {
    let s = Sandbox::start().await;
    let cfg = s.dir.path().join("profiles.toml");
    std::fs::write(
        &cfg,
        format!(
            "[profiles.shop]\nbase_url = \"{}\"\naccess_token = \"{}\"\n",
            s.base_url, s.app_token
        ),
    )
    .expect("write");
    let cfg_arg = cfg.display().to_string();
    let o = tokio::task::spawn_blocking({
        let cfg_arg = cfg_arg.clone();
        move || {
            bin()
                .args([
                    "pkg",
                    "quota",
                    "--json",
                    "--profile",
                    "shop",
                    "--config-file",
                    &cfg_arg,
                ])
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("join");
    assert_eq!(json_of(&o)["quota_type"], 2);
    let o = tokio::task::spawn_blocking(move || {
        bin()
            .args([
                "pkg",
                "quota",
                "--profile",
                "shop",
                "--config-file",
                &cfg_arg,
                "--access-token",
                "45.flag-wins",
            ])
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    assert!(String::from_utf8_lossy(&o.stderr).contains("gateway error 110"));
    let o = bin()
        .args([
            "pkg",
            "quota",
            "--profile",
            "missing",
            "--config-file",
            &cfg.display().to_string(),
        ])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no profile \"missing\""));
    s.stop().await;
}

#[test]
fn every_command_has_help_with_an_example_and_completions_are_printed() {
    for cmd in [
        vec!["pkg", "upload"],
        vec!["pkg", "list"],
        vec!["pkg", "detail"],
        vec!["pkg", "submit"],
        vec!["pkg", "release"],
        vec!["pkg", "rollback"],
        vec!["pkg", "withdraw"],
        vec!["pkg", "quota"],
        vec!["pkg", "qrcode"],
        vec!["template", "drafts"],
        vec!["template", "add"],
        vec!["template", "list"],
        vec!["template", "delete"],
        vec!["template", "push"],
        vec!["account", "create"],
        vec!["auth", "tp-token"],
        vec!["auth", "exchange"],
        vec!["auth", "refresh"],
        vec!["events", "listen"],
        vec!["rollout"],
        vec!["serve"],
        vec!["completions"],
    ] {
        let o = bin().args(&cmd).arg("--help").output().expect("runs");
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(
            help.contains("Example"),
            "{cmd:?} --help has no example:\n{help}"
        );
    }
    let o = bin().args(["completions", "bash"]).output().expect("runs");
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(
        script.contains("_smartpkg") && script.contains("rollout"),
        "{script}"
    );
}

/// Starts `smartpkg events listen` on a free port; the child and the port.
fn listen(
    extra: &[&str],
) -> (
    std::process::Child,
    u16,
    BufReader<std::process::ChildStdout>,
) {
    listen_with(MSG_TOKEN, AES_KEY, extra)
}

/// As [`listen`], with the keys given.
fn listen_with(
    token: &str,
    aes_key: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    u16,
    BufReader<std::process::ChildStdout>,
) {
    let mut child = bin()
        .args(["events", "listen", "--port", "0"])
        .args(["--token", token, "--aes-key", aes_key])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("first line");
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    // Keep reading stderr in the background so the child never blocks on it.
    std::thread::spawn(move || {
        let mut rest = String::new();
        while err.read_line(&mut rest).unwrap_or(0) > 0 {
            eprint!("listener: {rest}");
            rest.clear();
        }
    });
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    (child, port, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_listen_prints_real_pushes_runs_the_hook_and_refuses_forgeries() {
    let s = Sandbox::start().await;
    let hook_out = s.dir.path().join("hook.log");
    let hook = format!("cat >> {}", hook_out.display());
    let (mut child, port, mut out) =
        listen(&["--client-id", &s.client_id.clone(), "--exec", &hook]);
    let url = format!("http://127.0.0.1:{port}/events");
    s.set_event_url(&url).await;

    // A real audit result, pushed by the platform.
    let id = audit_passed(&s).await;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).expect("a line");
        line
    })
    .await
    .expect("join");
    let event: Value = serde_json::from_str(&line).expect("one JSON line");
    assert_eq!(event["event"], "PACKAGE_AUDIT_PASS");
    assert_eq!(event["packageId"], id);

    // A forged push: right shape, wrong signature.
    let forged =
        json!({"Nonce": "1", "TimeStamp": "2", "Encrypt": "AAAA", "MsgSignature": "0".repeat(40)});
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&forged)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    assert_ne!(resp.text().await.expect("body"), "success");

    // The hook ran for the real event.
    let mut hooked = String::new();
    for _ in 0..50 {
        hooked = std::fs::read_to_string(&hook_out).unwrap_or_default();
        if !hooked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hooked.contains("PACKAGE_AUDIT_PASS"), "{hooked:?}");
    let _ = child.kill();
    let _ = child.wait();
    s.stop().await;
}

#[tokio::test]
async fn a_console_account_is_created_from_the_command_line() {
    let s = Sandbox::start().await;
    let o = cli(&s, &["account", "create", "Rita", "--role", "reviewer"]).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("account rita (reviewer) created"), "{out}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .expect("a generated password");
    assert!(password.len() >= 12, "{password}");
    let taken = cli(&s, &["account", "create", "rita", "--role", "operator"]).await;
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("exists"));
    let bad = cli(&s, &["account", "create", "x", "--role", "king"]).await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("operator, reviewer or owner"));
    let (_, list) = s.admin(reqwest::Method::GET, "/accounts", None).await;
    assert_eq!(list["total"], 1, "{list}");
    s.stop().await;
}

#[tokio::test]
async fn a_console_account_is_disabled_enabled_and_given_a_new_password_from_the_command_line() {
    let s = Sandbox::start().await;
    ok(&cli(&s, &["account", "create", "rita", "--role", "reviewer"]).await);
    let state = || async {
        let (_, v) = s
            .admin(reqwest::Method::GET, "/accounts?name=rita", None)
            .await;
        v["accounts"][0]["disabled_at_ms"].clone()
    };
    let out = ok(&cli(&s, &["account", "disable", "Rita"]).await);
    assert!(out.contains("account rita disabled"), "{out}");
    assert!(state().await.is_i64(), "disabled");
    let out = ok(&cli(&s, &["account", "enable", "rita"]).await);
    assert!(out.contains("account rita enabled"), "{out}");
    assert!(state().await.is_null(), "enabled");
    let out = ok(&cli(&s, &["account", "password", "rita"]).await);
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .expect("a generated password");
    assert!(password.chars().count() >= 12, "{password}");
    let missing = cli(&s, &["account", "disable", "nobody"]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no account named \"nobody\""),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    s.stop().await;
}

/// Runs `smartpkg ARGS` as [`run`] does, with `token` as the mini program's access token.
async fn cli_as(s: &Sandbox, token: &str, args: &[&str]) -> Output {
    let (base, token) = (s.base_url.clone(), token.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        bin()
            .args(&args)
            .env("SPKG_BASE_URL", base)
            .env("SPKG_ACCESS_TOKEN", token)
            .output()
            .expect("runs")
    })
    .await
    .expect("join")
}

/// Uploads `version` with the mini program of `token` and waits for its build; its id.
async fn built_as(s: &Sandbox, token: &str, app_id: i64, version: &str) -> String {
    let t = s.template_id.to_string();
    let ext = format!(r#"{{"extEnable":true,"extAppid":{app_id}}}"#);
    let up = cli_as(
        s,
        token,
        &[
            "pkg",
            "upload",
            "--template-id",
            &t,
            "--version",
            version,
            "--desc",
            "d",
            "--ext-json",
            &ext,
            "--wait",
            "--json",
        ],
    )
    .await;
    json_of(&up)[0]["package_id"]
        .as_i64()
        .expect("package id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_id_is_taken_as_people_type_it_or_as_a_flag() {
    let s = Sandbox::start().await;
    let id = built_as(&s, &s.app_token, s.app_id, "1.0.0").await;
    let detail = json_of(&cli(&s, &["pkg", "detail", &id, "--json"]).await);
    assert_eq!(detail[0]["package_id"].to_string(), id);
    let out = ok(&cli(&s, &["pkg", "submit", &id, "--content", "review me"]).await);
    assert!(out.contains("submitted"), "{out}");
    ok(&cli(&s, &["pkg", "withdraw", &id]).await);
    ok(&cli(
        &s,
        &["pkg", "submit", "--package-id", &id, "--content", "again"],
    )
    .await);
    pass(&s, id.parse().expect("id")).await;
    ok(&cli(&s, &["pkg", "release", &id]).await);
    let second = built_as(&s, &s.app_token, s.app_id, "1.1.0").await;
    ok(&cli(&s, &["pkg", "submit", &second, "--content", "c"]).await);
    pass(&s, second.parse().expect("id")).await;
    ok(&cli(&s, &["pkg", "release", &second]).await);
    let rb = ok(&cli(&s, &["pkg", "rollback", &second]).await);
    assert!(rb.contains("rolling back"), "{rb}");
    // Both at once, or neither: a usage error that says so, nothing sent.
    let both = cli(&s, &["pkg", "release", &id, "--package-id", &id]).await;
    assert_eq!(both.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let neither = cli(&s, &["pkg", "withdraw"]).await;
    assert_eq!(neither.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&neither.stderr).contains("PACKAGE_ID"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_standard_output_ends_every_command_quietly_with_status_141() {
    let s = Sandbox::start().await;
    built_as(&s, &s.app_token, s.app_id, "1.0.0").await;
    let plan = s.dir.path().join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "base_url = \"{}\"\ntemplate_id = {}\nversion = \"2.0.0\"\ndescription = \"d\"\nrelease = \"none\"\next_json = '{{}}'\n\n[[apps]]\napp_id = {}\naccess_token = \"{}\"\n",
            s.base_url, s.template_id, s.app_id, s.app_token
        ),
    )
    .expect("plan");
    let plan_arg = plan.display().to_string();
    for args in [
        vec!["completions", "bash"],
        vec!["pkg", "list"],
        vec!["pkg", "list", "--json"],
        vec!["pkg", "quota"],
        vec!["rollout", &plan_arg, "--dry-run"],
    ] {
        let (base, token) = (s.base_url.clone(), s.app_token.clone());
        let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let o = tokio::task::spawn_blocking(move || {
            // The reader is gone before the command writes a byte: every write fails.
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            bin()
                .args(&owned)
                .env("SPKG_BASE_URL", base)
                .env("SPKG_ACCESS_TOKEN", token)
                .stdout(writer)
                .stderr(Stdio::piped())
                .output()
                .expect("runs")
        })
        .await
        .expect("join");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said: {err}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_submit_release_and_rollback_to_their_next_state() {
    let s = Sandbox::start_with(|st| {
        st.audit_mode = smartpkg_server::config::AuditMode::Auto;
        st.auto_audit_delay_ms = 300;
        st.auto_audit_max_name_chars = 16;
        st.rollback_delay_ms = 500;
    })
    .await;
    let first = built_as(&s, &s.app_token, s.app_id, "1.0.0").await;
    let out = ok(&cli(&s, &["pkg", "submit", &first, "--content", "c", "--wait"]).await);
    assert!(
        out.contains(&format!("package {first}: 4 auditing"))
            && out.contains(&format!("package {first}: 6 audit passed")),
        "{out}"
    );
    let out = ok(&cli(&s, &["pkg", "release", &first, "--wait"]).await);
    assert!(out.contains(&format!("package {first}: 1 online")), "{out}");
    let second = built_as(&s, &s.app_token, s.app_id, "1.1.0").await;
    ok(&cli(&s, &["pkg", "submit", &second, "--content", "c", "--wait"]).await);
    // --json keeps standard output JSON (the final package); the changes go to stderr.
    let online = json_of(&cli(&s, &["pkg", "release", &second, "--wait", "--json"]).await);
    assert_eq!(online["status"], 1, "{online}");
    let rb = cli(&s, &["pkg", "rollback", &second, "--wait"]).await;
    let out = ok(&rb);
    assert!(
        out.contains(&format!("package {second}: 8 rolling back"))
            && out.contains(&format!("package {first}: 1 online (version 1.0.0)")),
        "{out}"
    );

    // A failed audit: exit 1 with the reviewer's reason.
    let (long_id, long_token, _) = s.new_app("一个名字很长很长很长很长很长的小程序").await;
    let pkg = built_as(&s, &long_token, long_id, "1.0.0").await;
    let failed = cli_as(
        &s,
        &long_token,
        &["pkg", "submit", &pkg, "--content", "c", "--wait"],
    )
    .await;
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("failed its audit") && err.contains("名称过长"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&failed.stdout).contains("5 audit failed"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_gives_up_after_its_timeout_with_status_124_and_says_where_the_package_is() {
    // Manual audits: nobody decides.
    let s = Sandbox::start().await;
    let id = built_as(&s, &s.app_token, s.app_id, "1.0.0").await;
    let started = std::time::Instant::now();
    let o = cli(
        &s,
        &[
            "pkg",
            "submit",
            &id,
            "--content",
            "c",
            "--wait",
            "--timeout",
            "1",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(124), "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("still 4 auditing after 1 s") && err.contains(&format!("pkg detail {id}")),
        "{err}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_listen_opens_wechat_dialect_pushes_with_the_wechat_keys() {
    let s = Sandbox::start().await;
    let (_, tp) = s
        .admin(reqwest::Method::GET, &format!("/tps/{}", s.tp_id), None)
        .await;
    let key = |k: &str| tp[k].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
    let (mut child, port, mut out) = listen_with(
        &key("wechat_token"),
        &key("wechat_encoding_aes_key"),
        &["--client-id", &key("component_appid")],
    );
    // Only the WeChat message URL is set: audit results go out in WeChat's XML.
    let (st, body) = s
        .admin(
            reqwest::Method::PATCH,
            &format!("/tps/{}", s.tp_id),
            Some(json!({"wechat_message_url": format!("http://127.0.0.1:{port}/wx/$APPID$")})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    audit_passed(&s).await;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).expect("a line");
        line
    })
    .await
    .expect("join");
    let event: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON line");
    assert_eq!(event["dialect"], "wechat", "{event}");
    assert_eq!(event["Event"], "weapp_audit_success", "{event}");
    assert_eq!(event["MsgType"], "event", "{event}");
    assert!(event["ToUserName"]
        .as_str()
        .is_some_and(|u| u.starts_with("gh_")));
    let _ = child.kill();
    let _ = child.wait();
    s.stop().await;
}
