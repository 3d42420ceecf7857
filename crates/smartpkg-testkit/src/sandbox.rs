//! A whole platform inside the test process: a real smartpkg server on 127.0.0.1 with a fresh
//! data directory, one third party (its token got from a real pushed ticket), one mini program
//! authorized to it (an access and a refresh token), and one template. For doc examples and
//! the tool's tests; everything is set up over HTTP, as a user would.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use smartpkg_server::Settings;

use crate::platform::Platform;
use crate::{Answer, Keys, Receiver};

pub use crate::platform::ADMIN_TOKEN;
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
    /// The platform underneath: the one harness tests and benchmarks start.
    pub platform: Platform,
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
        let platform = Platform::start(|s| {
            s.ticket_interval_s = 1;
            tune(s);
        })
        .await;
        let tp = platform.create_tp("sandbox tp").await;
        let (tp_id, client_id) = (tp.tp.tp_id, tp.tp.client_id);
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
        let (st, patched) = platform
            .admin(
                reqwest::Method::PATCH,
                &format!("/tps/{tp_id}"),
                Some(json!({"auth_event_url": tickets.url(), "msg_token": MSG_TOKEN, "encoding_aes_key": AES_KEY})),
            )
            .await;
        assert_eq!(st, 200, "{patched}");
        let got = tickets.wait_for(1, Duration::from_secs(15)).await;
        let ticket = got[0].event.as_ref().expect("decrypted ticket")["Ticket"]
            .as_str()
            .expect("Ticket")
            .to_string();
        let token: Value = platform
            .http
            .get(format!(
                "{}/public/2.0/smartapp/auth/tp/token",
                platform.base_url
            ))
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
            base_url: platform.base_url.clone(),
            admin_token: platform.admin_token.clone(),
            tp_id,
            client_id,
            tp_token,
            app_id: 0,
            app_token: String::new(),
            refresh_token: String::new(),
            template_id: 0,
            dir: platform.dir.clone(),
            settings: platform.settings.clone(),
            platform,
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
        let (status, v) = self.platform.admin(method, path, body).await;
        (status.as_u16(), v)
    }

    /// A new mini program (every gate passed) authorized to the sandbox's third party: its
    /// id, access token and refresh token.
    pub async fn new_app(&self, name: &str) -> (i64, String, String) {
        let (app, grant) = self.platform.authorized_app(self.tp_id, name).await;
        (app.app.app_id, grant.access_token, grant.refresh_token)
    }

    /// A template with these pages in the third party's library; its id.
    pub async fn add_template(&self, pages: &[&str], version: &str) -> i64 {
        self.platform.add_template(self.tp_id, pages, version).await
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
        self.platform.restart(down_for).await;
    }

    pub async fn stop(self) {
        self.platform.stop().await;
    }
}
