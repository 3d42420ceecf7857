//! A whole platform inside the test process: a real smartpkg server on 127.0.0.1 with a fresh
//! data directory, one third party (its token got from a real pushed ticket), one mini program
//! authorized to it (an access and a refresh token), and one template. For doc examples and
//! the tool's tests; everything is set up over HTTP, as a user would.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use smartpkg_server::admin::answers::{ArchiveUploaded, TpAnswer};
use smartpkg_server::{Running, Settings};

use crate::{Answer, Keys, Receiver};

pub const ADMIN_TOKEN: &str = "sandbox-admin-token-0123456789";
/// The third party's push keys (the spec's test vector key).
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const MSG_TOKEN: &str = "sandbox-msg-token";

/// Clones share one server; it stops when [`Sandbox::stop`] is called or every clone is gone.
#[derive(Clone)]
pub struct Sandbox {
    pub base_url: String,
    pub admin_token: String,
    pub tp_id: i64,
    pub client_id: String,
    pub tp_token: String,
    pub app_id: i64,
    pub app_token: String,
    pub refresh_token: String,
    pub template_id: i64,
    pub dir: Arc<tempfile::TempDir>,
    /// The settings the server runs with (its listen address fixed once it started).
    pub settings: Settings,
    http: reqwest::Client,
    running: Arc<Mutex<Option<Running>>>,
    _tickets: Arc<Receiver>,
}

/// Runs an async example on a fresh sandbox (for doc tests).
pub fn doc<F, Fut>(f: F)
where
    F: FnOnce(Sandbox) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sandbox = Sandbox::start().await;
        // The example may keep only some fields; this clone keeps the server up meanwhile.
        f(sandbox.clone()).await.expect("the example runs");
        sandbox.stop().await;
    });
}

impl Sandbox {
    pub async fn start() -> Sandbox {
        Sandbox::start_with(|_| {}).await
    }

    /// Starts with settings tuned by `tune` (build and rollback delays are 50 ms, tickets
    /// every second, pushes to 127.0.0.1 allowed).
    pub async fn start_with(tune: impl FnOnce(&mut Settings)) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Settings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            admin_token: Some(ADMIN_TOKEN.into()),
            build_delay_ms: 50,
            rollback_delay_ms: 50,
            allow_private_targets: true,
            ticket_interval_s: 1,
            ..Settings::default()
        };
        tune(&mut s);
        Sandbox::on(s, dir).await
    }

    async fn on(mut settings: Settings, dir: tempfile::TempDir) -> Sandbox {
        let running = smartpkg_server::start(settings.clone())
            .await
            .expect("server starts");
        // A restart comes back on the same port: clients keep their base URL.
        settings.listen = running.addr;
        let base_url = format!("http://{}", running.addr);
        let http = reqwest::Client::new();
        let admin = |m: reqwest::Method, path: &str, body: Value| {
            http.request(m, format!("{base_url}/admin/v1{path}"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
        };
        let tp: TpAnswer = admin(reqwest::Method::POST, "/tps", json!({"name": "sandbox tp"}))
            .await
            .expect("create tp")
            .json()
            .await
            .expect("tp json");
        let (tp_id, client_id) = (tp.tp_id, tp.client_id);
        let keys = Keys {
            encoding_aes_key: AES_KEY.into(),
            token: MSG_TOKEN.into(),
            client_id: client_id.clone(),
        };
        let tickets = Receiver::start("127.0.0.1:0".parse().expect("addr"), keys, |_| {
            Answer::Success
        })
        .await
        .expect("ticket receiver");
        admin(
            reqwest::Method::PATCH,
            &format!("/tps/{tp_id}"),
            json!({"auth_event_url": tickets.url(), "msg_token": MSG_TOKEN, "encoding_aes_key": AES_KEY}),
        )
        .await
        .expect("patch tp");
        let got = tickets.wait_for(1, Duration::from_secs(15)).await;
        let ticket = got[0].event.as_ref().expect("decrypted ticket")["Ticket"]
            .as_str()
            .expect("Ticket")
            .to_string();
        let token: Value = http
            .get(format!("{base_url}/public/2.0/smartapp/auth/tp/token"))
            .query(&[("client_id", &client_id), ("ticket", &ticket)])
            .send()
            .await
            .expect("tp token")
            .json()
            .await
            .expect("tp token json");
        let tp_token = token["data"]["access_token"]
            .as_str()
            .expect("tp access token")
            .to_string();
        let mut sandbox = Sandbox {
            base_url,
            admin_token: ADMIN_TOKEN.into(),
            tp_id,
            client_id,
            tp_token,
            app_id: 0,
            app_token: String::new(),
            refresh_token: String::new(),
            template_id: 0,
            dir: Arc::new(dir),
            settings,
            http,
            running: Arc::new(Mutex::new(Some(running))),
            _tickets: Arc::new(tickets),
        };
        let (app_id, access, refresh) = sandbox.new_app("sandbox shop").await;
        sandbox.app_id = app_id;
        sandbox.app_token = access;
        sandbox.refresh_token = refresh;
        sandbox.template_id = sandbox
            .add_template(&["pages/index/index", "pages/about/about"], "1.0.0")
            .await;
        sandbox
    }

    /// An admin API call; the status and the JSON answer.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/admin/v1{path}", self.base_url))
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("admin body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A new mini program (every gate passed) authorized to the sandbox's third party: its
    /// id, access token and refresh token.
    pub async fn new_app(&self, name: &str) -> (i64, String, String) {
        let (st, app) = self
            .admin(reqwest::Method::POST, "/apps", Some(json!({"name": name})))
            .await;
        assert_eq!(st, 201, "{app}");
        let app_id = app["app_id"].as_i64().expect("app_id");
        let (st, grant) = self
            .admin(
                reqwest::Method::POST,
                &format!("/tps/{}/authorizations", self.tp_id),
                Some(json!({"app_id": app_id})),
            )
            .await;
        assert_eq!(st, 201, "{grant}");
        let s = |k: &str| grant[k].as_str().expect("token").to_string();
        (app_id, s("access_token"), s("refresh_token"))
    }

    /// A template with these pages in the third party's library; its id.
    pub async fn add_template(&self, pages: &[&str], version: &str) -> i64 {
        let zip = sample_zip(pages);
        let resp = self
            .http
            .post(format!(
                "{}/admin/v1/tps/{}/templates?user_version={version}&user_desc=sandbox",
                self.base_url, self.tp_id
            ))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .await
            .expect("template upload");
        let v: ArchiveUploaded = resp.json().await.expect("template json");
        v.template_id.expect("template_id")
    }

    /// Points the third party's audit-result pushes at `url`.
    pub async fn set_event_url(&self, url: &str) {
        let (st, body) = self
            .admin(
                reqwest::Method::PATCH,
                &format!("/tps/{}", self.tp_id),
                Some(
                    json!({"event_url": url, "msg_token": MSG_TOKEN, "encoding_aes_key": AES_KEY}),
                ),
            )
            .await;
        assert_eq!(st, 200, "{body}");
    }

    /// Every ticket pushed so far, oldest first.
    pub fn tickets(&self) -> Vec<String> {
        self._tickets
            .received()
            .iter()
            .filter_map(|r| r.event.as_ref()?["Ticket"].as_str().map(str::to_string))
            .collect()
    }

    /// Stops the server, waits `down_for`, and starts it again on the same address and data
    /// (a deploy or a crash-and-restart, as clients see it).
    pub async fn restart(&self, down_for: Duration) {
        let old = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = old {
            r.stop().await;
        }
        tokio::time::sleep(down_for).await;
        let mut tries = 0;
        let running = loop {
            match smartpkg_server::start(self.settings.clone()).await {
                Ok(r) => break r,
                // The old socket may linger for a moment.
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the server does not start again: {e}"),
            }
        };
        if let Ok(mut slot) = self.running.lock() {
            *slot = Some(running);
        }
    }

    pub async fn stop(self) {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = running {
            r.stop().await;
        }
    }
}

/// A template archive with `app.json` naming these pages and one file per page.
fn sample_zip(pages: &[&str]) -> Vec<u8> {
    smartpkg_core::archive::sample_template(pages).expect("sample template")
}
