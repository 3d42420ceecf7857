//! The test harness: a real server on 127.0.0.1:0 with a fresh data directory, seeded through
//! the admin API over HTTP, and a real HTTP client.

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

use smartpkg_server::Settings;
use smartpkg_store_postgres::testing::FreshDatabase;
use smartpkg_testkit::platform::Platform;

pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub client: Client,
    pub dir: Arc<tempfile::TempDir>,
    pub tp_id: i64,
    pub app_id: i64,
    pub template_id: i64,
    pub token: String,
    /// The platform underneath (testkit's, the one harness of tests and benchmarks).
    pub platform: Platform,
    /// The PostgreSQL database of this test, when the suite runs on PostgreSQL.
    pub database: Option<Arc<FreshDatabase>>,
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

/// The harness's settings: testkit's, with pushes to private addresses refused as in
/// production (the tests of target safety rely on it; a test that needs them allows them).
pub fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        allow_private_targets: false,
        ..smartpkg_testkit::platform::test_settings(dir)
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tune: impl FnOnce(&mut Settings)) -> TestApp {
    let platform = Platform::start(|s| {
        s.allow_private_targets = false;
        tune(s);
    })
    .await;
    let tp = platform.create_tp("tp one").await.tp;
    let (app, grant) = platform.authorized_app(tp.tp_id, "shop one").await;
    let template_id = platform
        .add_template(
            tp.tp_id,
            &["pages/index/index", "pages/about/about"],
            "1.0.0",
        )
        .await;
    TestApp {
        base: platform.base_url.clone(),
        admin: platform.admin_token.clone(),
        // The harness's own calls to a TLS server (made with a test certificate) skip the
        // check; the TLS test verifies the certificate with a client of its own.
        client: platform.http.clone(),
        dir: platform.dir.clone(),
        tp_id: tp.tp_id,
        app_id: app.app.app_id,
        template_id,
        token: grant.access_token,
        database: platform.database.clone(),
        platform,
    }
}

impl TestApp {
    pub async fn stop(self) {
        self.platform.stop().await;
    }

    /// Creates a mini program authorized to this app's TP; returns its id and access token.
    pub async fn new_app(&self, name: &str) -> (i64, String) {
        let (app, grant) = self.platform.authorized_app(self.tp_id, name).await;
        (app.app.app_id, grant.access_token)
    }

    pub async fn upload_template(&self, pages: &[&str]) -> i64 {
        self.platform.add_template(self.tp_id, pages, "1.0.0").await
    }

    pub async fn upload_template_bytes(&self, tp_id: i64, zip: Vec<u8>) -> (StatusCode, Value) {
        self.platform
            .upload_archive(
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
        self.platform
            .upload_archive(
                &format!("/tps/{tp_id}/drafts?user_version={version}&user_desc=d"),
                zip,
            )
            .await
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.platform.admin(method, path, body).await
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
