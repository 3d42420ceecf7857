//! Runs the real `smartpkg` binary as a child process, as an operator would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub admin: String,
    pub template_id: i64,
    pub lines: Vec<String>,
}

fn next_line(rx: &Receiver<String>, deadline: Instant) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    rx.recv_timeout(left)
        .expect("the server printed what was expected in time")
}

/// Starts `smartpkg serve --demo` on a free port with `env`, and reads the demo block.
pub fn start_demo(data_dir: &Path, env: &[(&str, &str)]) -> Server {
    start_demo_with(data_dir, env, Stdio::inherit())
}

/// As [`start_demo`], with the server's log going to `stderr`.
pub fn start_demo_with(data_dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> Server {
    start_demo_command(
        Command::new(env!("CARGO_BIN_EXE_smartpkg")),
        data_dir,
        env,
        stderr,
    )
}

/// As [`start_demo`], started by a shell that first runs `setup` (`ulimit -n 256`, say: soft
/// and hard, so the server cannot raise it; or `umask 000`) and then becomes the server.
pub fn start_demo_after(data_dir: &Path, env: &[(&str, &str)], setup: &str) -> Server {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_smartpkg"));
    start_demo_command(cmd, data_dir, env, Stdio::inherit())
}

fn start_demo_command(
    mut cmd: Command,
    data_dir: &Path,
    env: &[(&str, &str)],
    stderr: Stdio,
) -> Server {
    cmd.args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("SMARTPKG_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("smartpkg starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = vec![];
    loop {
        let line = next_line(&rx, deadline);
        lines.push(line.clone());
        // The walk-through's last line (the simulated fleet of the release-health part).
        if line.starts_with("smartpkg device simulate") {
            break;
        }
    }
    let base = lines
        .iter()
        .find_map(|l| l.strip_prefix("listening on "))
        .expect("listening line")
        .to_string();
    let export = lines
        .iter()
        .find(|l| l.starts_with("export BASE="))
        .expect("export line");
    let field = |name: &str| {
        export
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .expect("field")
            .to_string()
    };
    let template_id = lines
        .iter()
        .find_map(|l| l.split(", template ").nth(1))
        .and_then(|rest| rest.trim_end_matches('.').parse().ok())
        .expect("template id");
    Server {
        child,
        base,
        token: field("TOKEN"),
        admin: field("ADMIN"),
        template_id,
        lines,
    }
}

/// A failing test must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }

    pub fn stop(mut self) {
        // SIGTERM, the way an init system stops it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    pub async fn call(&self, endpoint: &str, params: &[(&str, &str)]) -> Value {
        reqwest::Client::new()
            .post(format!(
                "{}/rest/2.0/smartapp/package/{endpoint}",
                self.base
            ))
            .query(&[("access_token", self.token.as_str())])
            .form(params)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/admin/v1{path}", self.base))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    pub async fn wait_detail(
        &self,
        params: &[(&str, &str)],
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self.call("getdetail", params).await;
            if done(&v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out; last {v}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn upload(&self, version: &str) -> Value {
        let t = self.template_id.to_string();
        self.call(
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", r#"{"extEnable":true}"#),
                ("user_version", version),
                ("user_desc", "d"),
            ],
        )
        .await
    }

    /// Upload, build, submit, pass and release `version`; returns the package id.
    pub async fn release(&self, version: &str) -> i64 {
        assert_eq!(self.upload(version).await["errno"], 0);
        let v = self
            .wait_detail(&[("type", "3")], |v| {
                v["data"]["version"] == version && v["data"]["package_id"].is_i64()
            })
            .await;
        let id = v["data"]["package_id"].as_i64().expect("id");
        let sid = id.to_string();
        assert_eq!(
            self.call("submitaudit", &[("package_id", &sid), ("content", "c")])
                .await["errno"],
            0
        );
        let p = self
            .admin(
                reqwest::Method::POST,
                &format!("/packages/{id}/audit"),
                Some(serde_json::json!({"result": "pass"})),
            )
            .await;
        assert_eq!(p["status"], 6, "{p}");
        assert_eq!(
            self.call("release", &[("package_id", &sid)]).await["errno"],
            0
        );
        id
    }
}
