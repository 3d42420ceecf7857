//! The operator's API: authentication, validation, hostile template archives, archives out.

use std::io::{Cursor, Read, Write};

use reqwest::StatusCode;
use serde_json::json;
use zip::write::SimpleFileOptions;

use crate::helpers::{spawn_app, spawn_with};

fn blob_count(dir: &std::path::Path) -> usize {
    walk(&dir.join("blobs"))
}

fn walk(p: &std::path::Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn the_admin_api_needs_the_bearer_token() {
    let app = spawn_app().await;
    for auth in [None, Some("wrong-token"), Some("")] {
        let mut req = app.client.get(format!("{}/admin/v1/packages", app.base));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let v: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_admin_tokens_lock_out_their_address_but_no_other() {
    let app = spawn_with(|s| {
        s.owner_attempts_per_client = 5;
        s.owner_lockout_s = 60;
    })
    .await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    };
    let guesser = from([127, 0, 0, 7]);
    let url = format!("{}/admin/v1/packages", app.base);
    // Requests with no token are not guesses.
    for _ in 0..10 {
        let r = guesser.get(&url).send().await.expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    for i in 0..5 {
        let r = guesser
            .get(&url)
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked now: even the right token is refused from that address, with when to retry.
    let r = guesser
        .get(&url)
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "too_many_attempts", "{v}");
    // Another address is not affected.
    let r = from([127, 0, 0, 8])
        .get(&url)
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(app
        .metrics()
        .await
        .contains("smartpkg_admin_token_failures_total 5"));
    app.stop().await;
}

#[tokio::test]
async fn bad_admin_input_is_a_400_with_a_precise_message() {
    let app = spawn_app().await;
    for (body, needle) in [
        (json!({}), "name"),
        (json!({"name": "x", "event_url": "ftp://x"}), "event_url"),
        (
            json!({"name": "x", "encoding_aes_key": "short"}),
            "encoding_aes_key",
        ),
        (json!({"name": "x", "evnt_url": "http://x"}), "evnt_url"),
    ] {
        let (st, v) = app.admin_post("/tps", body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{v}"
        );
    }
    let (st, v) = app
        .admin_post("/packages/1/audit", json!({"result": "maybe"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = app
        .admin_post("/packages/1/audit", json!({"result": "fail"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a fail needs a reason: {v}");
    let (st, _) = app
        .admin_post("/packages/424242/audit", json!({"result": "pass"}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = app.admin_post("/tps", json!({"name": "full", "msg_token": "tok", "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"})).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        (
            v["msg_token"].as_str(),
            v["client_id"].as_str().map(str::len)
        ),
        (Some("tok"), Some(32))
    );
    app.stop().await;
}

#[tokio::test]
async fn deciding_a_package_that_is_not_auditing_is_a_409() {
    let app = spawn_app().await;
    let id = app.built("1.0.0").await;
    let (st, v) = app
        .admin_post(&format!("/packages/{id}/audit"), json!({"result": "pass"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "invalid_state");
    app.stop().await;
}

fn zip_with(f: impl FnOnce(&mut zip::ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("app.json", SimpleFileOptions::default())
        .expect("start");
    w.write_all(br#"{"pages":["pages/index/index"]}"#)
        .expect("write");
    f(&mut w);
    w.finish().expect("finish").into_inner()
}

#[tokio::test]
async fn hostile_template_archives_are_rejected_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let blobs_before = blob_count(app.dir.path());
    let deflate = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "absolute path",
            zip_with(|w| w.start_file("/etc/cron.d/x", deflate).expect("s")),
            "absolute",
        ),
        (
            "parent dir",
            zip_with(|w| w.start_file("pages/../../x.js", deflate).expect("s")),
            "..",
        ),
        (
            "backslash",
            zip_with(|w| w.start_file("pages\\..\\x.js", deflate).expect("s")),
            "backslash",
        ),
        (
            "symlink",
            zip_with(|w| w.add_symlink("pages/l", "/etc/passwd", deflate).expect("s")),
            "symbolic link",
        ),
        (
            "zip bomb",
            zip_with(|w| {
                w.start_file("bomb.bin", deflate).expect("s");
                for _ in 0..40 {
                    w.write_all(&[0u8; 1 << 20]).expect("w");
                }
            }),
            "expands",
        ),
        (
            "no app.json",
            {
                let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
                w.start_file("index.js", deflate).expect("s");
                w.finish().expect("f").into_inner()
            },
            "app.json",
        ),
        ("not a zip", b"hello, not a zip".to_vec(), "zip"),
    ];
    for (what, bytes, needle) in cases {
        let (st, v) = app.upload_template_bytes(app.tp_id, bytes).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["error"]["code"], "invalid_archive", "{what}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{what}: {msg}");
    }
    assert_eq!(
        blob_count(app.dir.path()),
        blobs_before,
        "a rejected archive left a blob"
    );
    // Nothing was created: the next template gets the next id.
    let next = app.upload_template(&["pages/x/x"]).await;
    assert_eq!(next, app.template_id + 1);
    app.stop().await;
}

#[tokio::test]
async fn an_archive_over_the_size_limit_is_a_413() {
    let app = crate::helpers::spawn_with(|s| s.max_template_bytes = 10_000).await;
    let big = zip_with(|w| {
        w.start_file(
            "big.bin",
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
        )
        .expect("s");
        w.write_all(&vec![1u8; 20_000]).expect("w");
    });
    let (st, v) = app.upload_template_bytes(app.tp_id, big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn the_package_archive_is_the_template_plus_the_generated_ext_json() {
    let app = spawn_app().await;
    let ext = format!(
        r#"{{"extEnable":true,"extAppid":{},"directCommit":false,"ext":{{"shop":"s1"}}}}"#,
        app.app_id
    );
    assert_eq!(app.upload("1.0.0", &ext).await["errno"], 0);
    let id = app.wait_built(&app.token, "1.0.0").await;
    let resp = app
        .client
        .get(format!("{}/admin/v1/packages/{id}/archive", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let bytes = resp.bytes().await.expect("body");
    let mut z = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).expect("a zip");
    let mut names: Vec<String> = z.file_names().map(String::from).collect();
    names.sort();
    let template =
        smartpkg_core::archive::sample_template(&["pages/index/index", "pages/about/about"])
            .expect("zip");
    let mut t = zip::ZipArchive::new(Cursor::new(template)).expect("template");
    let mut expected: Vec<String> = t.file_names().map(String::from).collect();
    expected.push("ext.json".into());
    expected.sort();
    assert_eq!(names, expected);
    let mut ext_out = String::new();
    z.by_name("ext.json")
        .expect("ext.json")
        .read_to_string(&mut ext_out)
        .expect("read");
    let ext_out: serde_json::Value = serde_json::from_str(&ext_out).expect("json");
    assert_eq!(
        ext_out,
        json!({"extEnable": true, "extAppid": app.app_id, "ext": {"shop": "s1"}})
    );
    let mut a = String::new();
    z.by_name("app.json")
        .expect("app.json")
        .read_to_string(&mut a)
        .expect("read");
    let mut b = String::new();
    t.by_name("app.json")
        .expect("app.json")
        .read_to_string(&mut b)
        .expect("read");
    assert_eq!(a, b, "template entries are copied unchanged");
    app.stop().await;
}

#[tokio::test]
async fn packages_are_listed_by_status() {
    let app = spawn_app().await;
    let a = app.built("1.0.0").await;
    app.call(
        "submitaudit",
        &[("package_id", &a.to_string()), ("content", "c")],
    )
    .await;
    let (_, other) = app.new_app("shop two").await;
    let _ = other;
    let (st, v) = app.admin_get("/packages?status=4").await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<i64> = v["packages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["package_id"].as_i64())
        .collect();
    assert_eq!(ids, vec![a]);
    assert_eq!(v["packages"][0]["status"], 4);
    assert_eq!(v["packages"][0]["app_id"], app.app_id);
    let (st, _) = app.admin_get("/packages?status=abc").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_keeps_a_sane_one_given() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("request");
    let id = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(id.len(), 16, "{id}");
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "bad id; injected")
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.headers()["x-request-id"].len(),
        16,
        "an unsafe id is replaced"
    );
    app.stop().await;
}

/// The description is generated from the handlers that the router serves (utoipa): every
/// described operation exists and is protected (401 without the token, not 404/405), each has
/// a summary and its 401, and the typed request bodies carry their fields.
#[tokio::test]
async fn the_openapi_description_is_generated_from_the_served_admin_routes() {
    let app = spawn_app().await;
    let doc = served_openapi(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} has no 401"
            );
            let concrete = path
                .replace("{tp_id}", "1")
                .replace("{app_id}", "1")
                .replace("{package_id}", "1")
                .replace("{account_id}", "1")
                .replace("{id}", "1");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = app
                .client
                .request(m, format!("{}/admin/v1{concrete}", app.base))
                .send()
                .await
                .expect("request");
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} is not a protected route"
            );
        }
    }
    assert_eq!(operations, 30, "every admin operation is described");
    // A typed body: POST /tps requires its name.
    let body =
        &doc["paths"]["/tps"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let schema = match body["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().expect("name")],
        None => body,
    };
    assert!(
        schema["required"]
            .as_array()
            .expect("required")
            .contains(&serde_json::json!("name")),
        "{schema}"
    );
    app.stop().await;
}

/// The OpenAPI document the server serves.
async fn served_openapi(app: &crate::helpers::TestApp) -> serde_json::Value {
    app.client
        .get(format!("{}/openapi/admin-v1.json", app.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// Every object schema of `v` closed: an answer with a field the schema does not declare
/// fails, so a drift either way is caught. A plain object gets `additionalProperties: false`;
/// a composed one (`allOf`: a flattened struct) gets `unevaluatedProperties: false`, which
/// sees the properties of all its parts, and its parts (a `$ref` copied in from `open`, the
/// document's components as served) are left open themselves.
fn closed(v: &mut serde_json::Value, open: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Array(parts)) = m.get_mut("allOf") {
                for part in parts.iter_mut() {
                    if let Some(name) = part["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    {
                        *part = open["schemas"][name].clone();
                    }
                    if let serde_json::Value::Object(p) = part {
                        for x in p.values_mut() {
                            closed(x, open);
                        }
                    }
                }
                m.entry("unevaluatedProperties").or_insert(json!(false));
                return;
            }
            if m.get("type") == Some(&json!("object")) && m.contains_key("properties") {
                m.entry("additionalProperties").or_insert(json!(false));
            }
            for x in m.values_mut() {
                closed(x, open);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| closed(x, open)),
        _ => {}
    }
}

/// Where `answer` departs from the schema the served OpenAPI document gives `method path`
/// for `status` (its `$ref`s resolved within the document's components).
fn schema_errors(
    doc: &serde_json::Value,
    method: &str,
    path: &str,
    status: u16,
    answer: &serde_json::Value,
) -> Vec<String> {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} declares no body for {status}: {response}"
    );
    let mut components = doc["components"].clone();
    closed(&mut components, &doc["components"]);
    let mut root = schema.clone();
    root["components"] = components;
    let validator = jsonschema::validator_for(&root).expect("a valid schema");
    validator
        .iter_errors(answer)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn check_against_served_schema(
    doc: &serde_json::Value,
    method: &str,
    path: &str,
    status: u16,
    answer: &serde_json::Value,
) {
    let errors = schema_errors(doc, method, path, status, answer);
    assert!(
        errors.is_empty(),
        "{method} {path} answered outside its schema: {errors:?}\n{answer}"
    );
}

#[tokio::test]
async fn typed_admin_answers_match_the_schemas_the_server_serves() {
    let app = spawn_app().await;
    let doc = served_openapi(&app).await;
    let zip = smartpkg_core::archive::sample_template(&["pages/index/index"]).expect("zip");
    let (st, t) = app.upload_template_bytes(app.tp_id, zip.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    check_against_served_schema(&doc, "post", "/tps/{tp_id}/templates", 201, &t);
    let (st, d) = app.upload_draft_bytes(app.tp_id, "2", zip).await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    check_against_served_schema(&doc, "post", "/tps/{tp_id}/drafts", 201, &d);
    let (app_id, _) = {
        let (st, a) = app
            .admin_post("/apps", json!({"name": "schema shop"}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{a}");
        (a["app_id"].as_i64().expect("id"), a)
    };
    let (st, g) = app
        .admin_post(
            &format!("/tps/{}/authorizations", app.tp_id),
            json!({"app_id": app_id}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    check_against_served_schema(&doc, "post", "/tps/{tp_id}/authorizations", 201, &g);
    // Errors too: the 401 every operation declares.
    let r = app
        .client
        .get(format!("{}/admin/v1/packages", app.base))
        .send()
        .await
        .expect("request");
    let e: serde_json::Value = r.json().await.expect("json");
    check_against_served_schema(&doc, "get", "/packages", 401, &e);
    // The check can fail: the answer the docs once described is refused.
    let mut drifted = t.clone();
    drifted["sha256"] = drifted["blob_sha256"].take();
    let errors = schema_errors(&doc, "post", "/tps/{tp_id}/templates", 201, &drifted);
    assert!(
        errors.iter().any(|e| e.contains("sha256")),
        "a drifted answer passed: {errors:?}"
    );
    app.stop().await;
}

/// Every operation of the served document, with its JSON 2xx answer declared: only the
/// archive download (a zip) and the revocation (204) answer without a JSON body.
#[tokio::test]
async fn every_admin_operation_declares_the_body_of_its_success() {
    let app = spawn_app().await;
    let doc = served_openapi(&app).await;
    let mut undeclared = vec![];
    let mut operations = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            for (status, response) in op["responses"].as_object().expect("responses") {
                if !status.starts_with('2') || status == "204" {
                    continue;
                }
                operations += 1;
                let declared = response["content"]["application/json"]["schema"].is_object();
                if !declared && path != "/packages/{package_id}/archive" {
                    undeclared.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(operations >= 25, "only {operations} operations served");
    assert!(undeclared.is_empty(), "no body declared: {undeclared:?}");
    app.stop().await;
}

/// Calls every admin operation that answers JSON and checks each answer against the schema
/// the server serves for it.
#[tokio::test]
async fn every_admin_answer_matches_the_schema_the_server_serves_for_it() {
    use reqwest::Method;
    let app = spawn_app().await;
    let doc = served_openapi(&app).await;
    let check =
        |method: &str, path: &str, status: u16, (st, v): (StatusCode, serde_json::Value)| {
            assert_eq!(st.as_u16(), status, "{method} {path}: {v}");
            check_against_served_schema(&doc, method, path, status, &v);
            v
        };
    // Third parties.
    let tp = check(
        "post",
        "/tps",
        201,
        app.admin_post(
            "/tps",
            json!({"name": "schema tp", "event_url": "http://127.0.0.1:9/events"}),
        )
        .await,
    );
    let tp_id = tp["tp_id"].as_i64().expect("tp_id");
    // The flattened answer is closed: the appsecret is part of it, a field more is not.
    let mut less = tp.clone();
    less.as_object_mut()
        .expect("object")
        .remove("component_appsecret");
    assert!(!schema_errors(&doc, "post", "/tps", 201, &less).is_empty());
    check(
        "get",
        "/tps/{tp_id}",
        200,
        app.admin_get(&format!("/tps/{tp_id}")).await,
    );
    check(
        "post",
        "/tps/{tp_id}/component-secret",
        200,
        app.admin_post(&format!("/tps/{tp_id}/component-secret"), json!({}))
            .await,
    );
    check(
        "patch",
        "/tps/{tp_id}",
        200,
        app.admin(
            Method::PATCH,
            &format!("/tps/{tp_id}"),
            Some(json!({"audit_quota": 5})),
        )
        .await,
    );
    // Mini programs.
    let created = check(
        "post",
        "/apps",
        201,
        app.admin_post("/apps", json!({"name": "schema app"})).await,
    );
    let app_id = created["app_id"].as_i64().expect("app_id");
    // The flattened answer is closed too: a field more, or one of its own less, fails.
    let mut extra = created.clone();
    extra["surprise"] = json!(1);
    assert!(!schema_errors(&doc, "post", "/apps", 201, &extra).is_empty());
    let mut less = created.clone();
    less.as_object_mut()
        .expect("object")
        .remove("owner_password");
    assert!(!schema_errors(&doc, "post", "/apps", 201, &less).is_empty());
    check(
        "get",
        "/apps/{app_id}",
        200,
        app.admin_get(&format!("/apps/{app_id}")).await,
    );
    check(
        "patch",
        "/apps/{app_id}",
        200,
        app.admin(
            Method::PATCH,
            &format!("/apps/{app_id}"),
            Some(json!({"name_audited": false})),
        )
        .await,
    );
    check(
        "post",
        "/apps/{app_id}/owner-password",
        200,
        app.admin_post(&format!("/apps/{app_id}/owner-password"), json!({}))
            .await,
    );
    // Accounts: generated password (the optional key present) and a listing.
    let account = check(
        "post",
        "/accounts",
        201,
        app.admin_post(
            "/accounts",
            json!({"name": "schema-owner", "role": "owner", "apps": [app_id]}),
        )
        .await,
    );
    assert!(account["password"].is_string(), "{account}");
    let account_id = account["account_id"].as_i64().expect("id");
    check("get", "/accounts", 200, app.admin_get("/accounts").await);
    check(
        "get",
        "/accounts",
        200,
        app.admin_get("/accounts?name=schema-owner").await,
    );
    check(
        "patch",
        "/accounts/{account_id}",
        200,
        app.admin(
            Method::PATCH,
            &format!("/accounts/{account_id}"),
            Some(json!({"disabled": true})),
        )
        .await,
    );
    // Host apps.
    let host = check(
        "post",
        "/host-apps",
        201,
        app.admin_post("/host-apps", json!({"name": "schema host"}))
            .await,
    );
    check("get", "/host-apps", 200, app.admin_get("/host-apps").await);
    check(
        "put",
        "/apps/{app_id}/host-apps",
        200,
        app.admin(
            Method::PUT,
            &format!("/apps/{app_id}/host-apps"),
            Some(json!({"host_ids": [host["host_id"]]})),
        )
        .await,
    );
    // Packages: one submitted, decided, and so pushed (to a port nobody listens on).
    let id = app.built("1.0.0").await;
    let sid = id.to_string();
    assert_eq!(
        app.call("submitaudit", &[("package_id", &sid), ("content", "c")])
            .await["errno"],
        0
    );
    check("get", "/packages", 200, app.admin_get("/packages").await);
    check(
        "get",
        "/packages",
        200,
        app.admin_get(&format!("/packages?app_id={}", app.app_id))
            .await,
    );
    let detail = check(
        "get",
        "/packages/{package_id}",
        200,
        app.admin_get(&format!("/packages/{id}")).await,
    );
    assert!(detail["ext_json"].is_string(), "{detail}");
    check(
        "post",
        "/packages/{package_id}/audit",
        200,
        app.admin_post(
            &format!("/packages/{id}/audit"),
            json!({"result": "fail", "reason": "r"}),
        )
        .await,
    );
    // Deliveries and push targets.
    let list = check(
        "get",
        "/deliveries",
        200,
        app.admin_get("/deliveries").await,
    );
    let delivery = list["deliveries"][0]["id"].as_i64().expect("a delivery");
    let one = check(
        "get",
        "/deliveries/{id}",
        200,
        app.admin_get(&format!("/deliveries/{delivery}")).await,
    );
    assert!(
        one["payload"].is_object() && one["attempt_log"].is_array(),
        "{one}"
    );
    check(
        "post",
        "/deliveries/{id}/redeliver",
        202,
        app.admin_post(&format!("/deliveries/{delivery}/redeliver"), json!({}))
            .await,
    );
    check(
        "get",
        "/push-targets",
        200,
        app.admin_get("/push-targets").await,
    );
    check(
        "post",
        "/push-targets/{tp_id}/resume",
        200,
        app.admin_post(&format!("/push-targets/{}/resume", app.tp_id), json!({}))
            .await,
    );
    app.stop().await;
}

fn is_wx_appid(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 18
            && s.starts_with("wx")
            && s[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[tokio::test]
async fn a_third_party_gets_a_wechat_identity_and_sees_its_appsecret_once() {
    let app = spawn_app().await;
    let (st, a) = app
        .admin_post(
            "/tps",
            json!({
                "name": "both dialects",
                "wechat_auth_event_url": "https://tp.example/wx/auth",
                "wechat_message_url": "https://tp.example/wx/$APPID$/events",
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert!(is_wx_appid(&a["component_appid"]), "{a}");
    let secret = a["component_appsecret"]
        .as_str()
        .expect("shown at creation");
    assert_eq!(secret.len(), 32, "{a}");
    assert!(!a["wechat_token"].as_str().unwrap_or("").is_empty(), "{a}");
    let key = a["wechat_encoding_aes_key"].as_str().expect("key");
    assert!(
        smartpkg_core::push::aes_key(key).is_ok(),
        "a usable EncodingAESKey: {key}"
    );
    assert_ne!(
        a["wechat_encoding_aes_key"], a["encoding_aes_key"],
        "keys of their own"
    );
    assert_eq!(
        a["wechat_message_url"],
        "https://tp.example/wx/$APPID$/events"
    );
    let tp_id = a["tp_id"].as_i64().expect("tp_id");

    // Reads show everything but the appsecret.
    let (st, read) = app.admin_get(&format!("/tps/{tp_id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(read.get("component_appsecret").is_none(), "{read}");
    for field in [
        "component_appid",
        "wechat_token",
        "wechat_encoding_aes_key",
        "wechat_auth_event_url",
    ] {
        assert_eq!(read[field], a[field], "{field}");
    }
    // Every third party has its own appid.
    let (_, b) = app.admin_post("/tps", json!({"name": "another"})).await;
    assert!(is_wx_appid(&b["component_appid"]), "{b}");
    assert_ne!(a["component_appid"], b["component_appid"]);
    assert_eq!(b["wechat_auth_event_url"], "", "none given: none");

    // A new appsecret replaces the old, shown once, the identity otherwise unchanged.
    let (st, again) = app
        .admin_post(&format!("/tps/{tp_id}/component-secret"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    let renewed = again["component_appsecret"].as_str().expect("shown");
    assert_ne!(renewed, secret);
    assert_eq!(again["component_appid"], a["component_appid"]);
    let (st, _) = app
        .admin_post("/tps/987654/component-secret", json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The URLs change like the Baidu ones, and are checked like them.
    let (st, patched) = app
        .admin(
            reqwest::Method::PATCH,
            &format!("/tps/{tp_id}"),
            Some(json!({"wechat_auth_event_url": "http://127.0.0.1:9/wx"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{patched}");
    assert_eq!(patched["wechat_auth_event_url"], "http://127.0.0.1:9/wx");
    assert_eq!(patched["wechat_message_url"], a["wechat_message_url"]);
    for (method, path, field) in [
        (
            reqwest::Method::POST,
            "/tps".to_string(),
            "wechat_message_url",
        ),
        (
            reqwest::Method::PATCH,
            format!("/tps/{tp_id}"),
            "wechat_auth_event_url",
        ),
    ] {
        let mut body = json!({field: "ftp://tp.example/x"});
        if method == reqwest::Method::POST {
            body["name"] = json!("bad url");
        }
        let (st, v) = app.admin(method, &path, Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(field),
            "{v}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn every_mini_program_has_a_wx_appid_of_its_own() {
    let app = spawn_app().await;
    let (st, one) = app.admin_post("/apps", json!({"name": "one"})).await;
    assert_eq!(st, StatusCode::CREATED, "{one}");
    let (_, two) = app.admin_post("/apps", json!({"name": "two"})).await;
    assert!(
        is_wx_appid(&one["wx_appid"]) && is_wx_appid(&two["wx_appid"]),
        "{one} {two}"
    );
    assert_ne!(one["wx_appid"], two["wx_appid"]);
    let id = one["app_id"].as_i64().expect("app_id");
    let (_, read) = app.admin_get(&format!("/apps/{id}")).await;
    assert_eq!(read["wx_appid"], one["wx_appid"]);
    app.stop().await;
}
