//! The test harness: a real server on 127.0.0.1:0 with a fresh data directory, seeded through
//! the admin API over HTTP, and a real HTTP client.

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use smartpkg_server::admin::answers::{AppWithOwnerPassword, ArchiveUploaded, Authorized};
use smartpkg_server::{Running, Settings};
use smartpkg_store_postgres::testing::FreshDatabase;

pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub tp_id: i64,
    pub app_id: i64,
    pub template_id: i64,
    pub token: String,
    running: Option<Running>,
    /// The PostgreSQL database of this test, when the suite runs on PostgreSQL.
    pub database: Option<FreshDatabase>,
}

/// Which backend the suite runs on: `SPKG_TEST_BACKEND=postgres` runs every test on a
/// fresh PostgreSQL database; anything else (the default) on embedded SQLite.
pub fn on_postgres() -> bool {
    std::env::var("SPKG_TEST_BACKEND").is_ok_and(|b| b.eq_ignore_ascii_case("postgres"))
}

/// Ways real clients send parameters (spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The doc's curl examples: everything in the query string, empty body.
    QueryOnly,
    /// Go and PHP SDKs: access_token in the query, the rest as a form.
    QueryAndForm,
    /// Java SDK: everything, access_token included, in the form body.
    FormOnly,
    /// C# SDK: the query string and the same fields as a JSON body.
    QueryAndJson,
    /// Some PHP clients: a JSON body only.
    JsonOnly,
}

pub const STYLES: [Style; 5] = [
    Style::QueryOnly,
    Style::QueryAndForm,
    Style::FormOnly,
    Style::QueryAndJson,
    Style::JsonOnly,
];

pub fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        admin_token: Some("test-admin-token-0123456789".into()),
        build_delay_ms: 50,
        rollback_delay_ms: 50,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tune: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(dir.path());
    let database = if on_postgres() {
        let db = FreshDatabase::create()
            .await
            .expect("a fresh PostgreSQL database");
        s.database_url = Some(db.url.clone());
        s.database_max_connections = 4;
        Some(db)
    } else {
        None
    };
    tune(&mut s);
    let running = smartpkg_server::start(s).await.expect("server starts");
    let mut app = TestApp {
        base: format!("{}://{}", running.scheme, running.addr),
        admin: running.state.admin_token.to_string(),
        // The harness's own calls to a TLS server (made with a test certificate) skip the
        // check; the TLS test verifies the certificate with a client of its own.
        client: Client::builder()
            .danger_accept_invalid_certs(running.scheme == "https")
            .build()
            .expect("client"),
        dir,
        tp_id: 0,
        app_id: 0,
        template_id: 0,
        token: String::new(),
        running: Some(running),
        database,
    };
    let (_, tp) = app.admin_post("/tps", json!({"name": "tp one"})).await;
    app.tp_id = tp["tp_id"].as_i64().expect("tp_id");
    let (app_id, token) = app.new_app("shop one").await;
    app.app_id = app_id;
    app.token = token;
    app.template_id = app
        .upload_template(&["pages/index/index", "pages/about/about"])
        .await;
    app
}

impl TestApp {
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Creates a mini program authorized to this app's TP; returns its id and access token.
    pub async fn new_app(&self, name: &str) -> (i64, String) {
        let (st, app) = self.admin_post("/apps", json!({"name": name})).await;
        assert_eq!(st, StatusCode::CREATED, "{app}");
        let app: AppWithOwnerPassword = serde_json::from_value(app).expect("the app's answer");
        let (st, grant) = self
            .admin_post(
                &format!("/tps/{}/authorizations", self.tp_id),
                json!({"app_id": app.app.app_id}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{grant}");
        let grant: Authorized = serde_json::from_value(grant).expect("the grant's answer");
        (app.app.app_id, grant.access_token)
    }

    pub async fn upload_template(&self, pages: &[&str]) -> i64 {
        let zip = smartpkg_core::archive::sample_template(pages).expect("zip");
        let (st, body) = self.upload_template_bytes(self.tp_id, zip).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let uploaded: ArchiveUploaded = serde_json::from_value(body).expect("the upload's answer");
        uploaded.template_id.expect("template_id")
    }

    pub async fn upload_template_bytes(&self, tp_id: i64, zip: Vec<u8>) -> (StatusCode, Value) {
        self.upload_archive(
            &format!("/tps/{tp_id}/templates?user_version=1.0.0&user_desc=t"),
            zip,
        )
        .await
    }

    /// Uploads a template zip as a draft only, at `version`.
    pub async fn upload_draft_bytes(
        &self,
        tp_id: i64,
        version: &str,
        zip: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.upload_archive(
            &format!("/tps/{tp_id}/drafts?user_version={version}&user_desc=d"),
            zip,
        )
        .await
    }

    /// Posts a zip to an admin archive route (`path` below `/admin/v1`).
    async fn upload_archive(&self, path: &str, zip: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(format!("{}/admin/v1{path}", self.base))
            .bearer_auth(&self.admin)
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .await
            .expect("request");
        let st = resp.status();
        (st, resp.json().await.expect("json"))
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/admin/v1{path}", self.base))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let st = resp.status();
        let text = resp.text().await.expect("body");
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin(Method::POST, path, Some(body)).await
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.admin(Method::GET, path, None).await
    }

    pub async fn decide(&self, package_id: i64, pass: bool, reason: &str) {
        let body = json!({"result": if pass {"pass"} else {"fail"}, "reason": reason});
        let (st, v) = self
            .admin_post(&format!("/packages/{package_id}/audit"), body)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }

    /// Calls a Baidu endpoint in the given style with `token` and `params`.
    pub async fn call_as(
        &self,
        style: Style,
        token: &str,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> Value {
        let url = format!("{}/rest/2.0/smartapp/package/{endpoint}", self.base);
        let reading = matches!(endpoint, "get" | "getdetail" | "auditquota" | "gettrial");
        let method = if reading && style == Style::QueryOnly {
            Method::GET
        } else {
            Method::POST
        };
        let mut all: Vec<(&str, &str)> = vec![("access_token", token)];
        all.extend_from_slice(params);
        let as_json = |ps: &[(&str, &str)]| {
            Value::Object(
                ps.iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect(),
            )
        };
        let req = self.client.request(method, url);
        let req = match style {
            Style::QueryOnly => req.query(&all),
            Style::QueryAndForm => req
                .query(&[
                    ("access_token", token),
                    ("sp_sdk_ver", "1.0"),
                    ("sp_sdk_lang", "go"),
                ])
                .form(params),
            Style::FormOnly => req.form(&all),
            Style::QueryAndJson => req.query(&all).json(&as_json(params)),
            Style::JsonOnly => req.json(&as_json(&all)),
        };
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("json answer")
    }

    /// The Go SDK's way, with this app's token.
    pub async fn call(&self, endpoint: &str, params: &[(&str, &str)]) -> Value {
        self.call_as(Style::QueryAndForm, &self.token, endpoint, params)
            .await
    }

    pub async fn upload(&self, version: &str, ext_json: &str) -> Value {
        let t = self.template_id.to_string();
        self.call(
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", ext_json),
                ("user_version", version),
                ("user_desc", "desc"),
            ],
        )
        .await
    }

    /// Polls `getdetail` with `params` until `done` holds.
    pub async fn wait_detail(
        &self,
        token: &str,
        params: &[(&str, &str)],
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self
                .call_as(Style::QueryAndForm, token, "getdetail", params)
                .await;
            if done(&v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting; last answer {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Uploads `version` and waits until it is built; returns its package id.
    pub async fn built(&self, version: &str) -> i64 {
        let v = self
            .upload(version, &format!(r#"{{"extAppid":{}}}"#, self.app_id))
            .await;
        assert_eq!(v, json!({"errno": 0, "msg": "success"}));
        self.wait_built(&self.token, version).await
    }

    pub async fn wait_built(&self, token: &str, version: &str) -> i64 {
        let v = self
            .wait_detail(token, &[("type", "3")], |v| {
                v["data"]["version"] == version && v["data"]["package_id"].is_i64()
            })
            .await;
        v["data"]["package_id"].as_i64().expect("package_id")
    }

    /// Uploads, submits, passes and releases `version`; returns its package id.
    pub async fn online(&self, version: &str) -> i64 {
        let id = self.built(version).await;
        let sid = id.to_string();
        assert_eq!(
            self.call(
                "submitaudit",
                &[("package_id", &sid), ("content", "c"), ("remark", "")]
            )
            .await["errno"],
            0
        );
        self.decide(id, true, "").await;
        assert_eq!(
            self.call("release", &[("package_id", &sid)]).await["errno"],
            0
        );
        id
    }
}

/// `commit_time` is the server's clock: check its shape, then blank it so the rest of the
/// answer can be compared exactly.
pub fn blank_times(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(t)) = m.get_mut("commit_time") {
                    let ok = t.len() == 19
                        && t.as_bytes()[4] == b'/'
                        && t.as_bytes()[7] == b'/'
                        && t.as_bytes()[13] == b':';
                    assert!(ok, "commit_time {t:?} is not YYYY/MM/DD HH:MM:SS");
                    *t = "T".into();
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}
