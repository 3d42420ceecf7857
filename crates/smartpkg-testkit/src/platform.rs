//! The one way tests and benchmarks start a platform: a real smartpkg server on 127.0.0.1:0
//! over a fresh data directory (and, with `SPKG_TEST_BACKEND=postgres`, a fresh PostgreSQL
//! database), with the admin API calls that set one up, each reading the server's own answer
//! types. The server's HTTP-level suite, the [`crate::sandbox::Sandbox`] and the benchmarks all
//! stand on it.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use smartpkg_server::admin::answers::{
    AppWithOwnerPassword, ArchiveUploaded, Authorized, TpWithComponentSecret,
};
use smartpkg_server::{Running, Settings};
use smartpkg_store_postgres::testing::FreshDatabase;

/// The admin token of every test platform.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Whether tests run on PostgreSQL: `SPKG_TEST_BACKEND=postgres` gives every platform a fresh
/// database; anything else (the default) the embedded SQLite file.
pub fn on_postgres() -> bool {
    std::env::var("SPKG_TEST_BACKEND").is_ok_and(|b| b.eq_ignore_ascii_case("postgres"))
}

/// Settings for a test: an ephemeral port, `dir` for data, a known admin token, builds and
/// rollbacks after 50 ms (not seconds), pushes to 127.0.0.1 allowed.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        admin_token: Some(ADMIN_TOKEN.into()),
        build_delay_ms: 50,
        rollback_delay_ms: 50,
        allow_private_targets: true,
        ..Settings::default()
    }
}

/// A running platform. Clones share one server; it stops at [`Platform::stop`].
#[derive(Clone)]
pub struct Platform {
    /// `http://127.0.0.1:PORT` (or `https://` when the settings give a certificate).
    pub base_url: String,
    pub admin_token: String,
    /// The settings it runs with, its listen address fixed once it started (a restart comes
    /// back on the same port).
    pub settings: Settings,
    pub dir: Arc<tempfile::TempDir>,
    /// Accepts the test certificate of a TLS platform; its own calls only.
    pub http: reqwest::Client,
    /// The PostgreSQL database it runs on, when it does.
    pub database: Option<Arc<FreshDatabase>>,
    running: Arc<Mutex<Option<Running>>>,
}

impl Platform {
    /// Starts on [`test_settings`] tuned by `tune` (after the database is chosen, so a test
    /// may still point it elsewhere).
    pub async fn start(tune: impl FnOnce(&mut Settings)) -> Platform {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = test_settings(dir.path());
        let database = if on_postgres() {
            let db = FreshDatabase::create()
                .await
                .expect("a fresh PostgreSQL database");
            settings.database_url = Some(db.url.clone());
            settings.database_max_connections = 4;
            Some(Arc::new(db))
        } else {
            None
        };
        tune(&mut settings);
        Platform::on(settings, dir, database).await
    }

    /// Starts on exactly `settings` (a benchmark's), keeping `dir` for as long as it runs.
    pub async fn start_on(settings: Settings, dir: tempfile::TempDir) -> Platform {
        Platform::on(settings, dir, None).await
    }

    async fn on(
        mut settings: Settings,
        dir: tempfile::TempDir,
        database: Option<Arc<FreshDatabase>>,
    ) -> Platform {
        let running = smartpkg_server::start(settings.clone())
            .await
            .expect("server starts");
        settings.listen = running.addr;
        Platform {
            base_url: format!("{}://{}", running.scheme, running.addr),
            admin_token: running.state.admin_token.to_string(),
            http: reqwest::Client::builder()
                .danger_accept_invalid_certs(running.scheme == "https")
                .build()
                .expect("client"),
            settings,
            dir: Arc::new(dir),
            running: Arc::new(Mutex::new(Some(running))),
            database,
        }
    }

    /// The running server (its state, for tests that look inside), while it runs.
    pub fn with_running<T>(&self, f: impl FnOnce(&Running) -> T) -> Option<T> {
        let running = self.running.lock().ok()?;
        running.as_ref().map(f)
    }

    /// An admin API call: the status and the answer (JSON, or the text as a JSON string).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/admin/v1{path}", self.base_url))
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status();
        let text = resp.text().await.expect("admin body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A zip POSTed to an archive route (`/tps/{id}/templates?…` or `/drafts?…`).
    pub async fn upload_archive(&self, path: &str, zip: Vec<u8>) -> (reqwest::StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/admin/v1{path}", self.base_url))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .await
            .expect("archive upload");
        let status = resp.status();
        (status, resp.json().await.expect("json"))
    }

    /// A new third party, with its component appsecret (shown this once).
    pub async fn create_tp(&self, name: &str) -> TpWithComponentSecret {
        let (st, tp) = self
            .admin(reqwest::Method::POST, "/tps", Some(json!({"name": name})))
            .await;
        assert_eq!(st, 201, "{tp}");
        serde_json::from_value(tp).expect("the third party's answer")
    }

    /// A new mini program (every gate passed) authorized to `tp_id`, with its tokens.
    pub async fn authorized_app(
        &self,
        tp_id: i64,
        name: &str,
    ) -> (AppWithOwnerPassword, Authorized) {
        let (st, app) = self
            .admin(reqwest::Method::POST, "/apps", Some(json!({"name": name})))
            .await;
        assert_eq!(st, 201, "{app}");
        let app: AppWithOwnerPassword = serde_json::from_value(app).expect("the app's answer");
        let (st, grant) = self
            .admin(
                reqwest::Method::POST,
                &format!("/tps/{tp_id}/authorizations"),
                Some(json!({"app_id": app.app.app_id})),
            )
            .await;
        assert_eq!(st, 201, "{grant}");
        let grant = serde_json::from_value(grant).expect("the grant's answer");
        (app, grant)
    }

    /// A template of these pages in `tp_id`'s library, at `version`; its id.
    pub async fn add_template(&self, tp_id: i64, pages: &[&str], version: &str) -> i64 {
        let zip = smartpkg_core::archive::sample_template(pages).expect("sample template");
        let (st, body) = self
            .upload_archive(
                &format!("/tps/{tp_id}/templates?user_version={version}&user_desc=t"),
                zip,
            )
            .await;
        assert_eq!(st, 201, "{body}");
        let uploaded: ArchiveUploaded = serde_json::from_value(body).expect("the upload's answer");
        uploaded.template_id.expect("template_id")
    }

    /// Stops the server, waits `down_for`, and starts it again on the same address and data
    /// (a deploy or a crash-and-restart, as clients see it).
    pub async fn restart(&self, down_for: std::time::Duration) {
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
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the server does not start again: {e}"),
            }
        };
        if let Ok(mut slot) = self.running.lock() {
            *slot = Some(running);
        }
    }

    pub async fn stop(&self) {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = running {
            r.stop().await;
        }
    }
}
