//! The runtime channel through HTTP: devices asking what to run (staged releases, rollback to
//! a chosen version, pause, minimum runtime version, domains), the single-app form's 304s,
//! downloads, host apps.

use std::collections::HashSet;
use std::io::Read;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smartpkg_core::runtime::bucket;

use crate::helpers::{spawn_app, TestApp};

pub(crate) struct Host {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) secret: String,
}

pub(crate) async fn host(app: &TestApp, name: &str) -> Host {
    let (st, h) = app.admin_post("/host-apps", json!({"name": name})).await;
    assert_eq!(st, StatusCode::CREATED, "{h}");
    Host {
        id: h["host_id"].as_i64().expect("host_id"),
        key: h["host_key"].as_str().expect("key").into(),
        secret: h["host_secret"].as_str().expect("secret").into(),
    }
}

async fn check(app: &TestApp, h: &Host, device: &str, runtime: &str, apps: Value) -> Value {
    let r = app
        .client
        .post(format!("{}/runtime/v1/update-check", app.base))
        .basic_auth(&h.key, Some(&h.secret))
        .json(&json!({"device_id": device, "runtime_version": runtime, "apps": apps}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

/// An update check with a body written by hand (sizes and escapes `json!` would not make).
async fn raw_check(app: &TestApp, h: &Host, body: String) -> (StatusCode, Value) {
    let r = app
        .client
        .post(format!("{}/runtime/v1/update-check", app.base))
        .basic_auth(&h.key, Some(&h.secret))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.json().await.expect("json"))
}

/// What one device is told about the test app.
async fn one(app: &TestApp, h: &Host, device: &str) -> Value {
    let v = check(app, h, device, "3.140.0", json!([{"app_id": app.app_id}])).await;
    v["apps"][0].clone()
}

/// The package id each of `devices` is told to run (None when told something else).
pub(crate) async fn versions_of(app: &TestApp, h: &Host, devices: &[String]) -> Vec<Option<i64>> {
    let mut out = vec![None; devices.len()];
    // 32 devices at a time, to keep the test quick.
    for (chunk_i, chunk) in devices.chunks(32).enumerate() {
        let mut tasks = vec![];
        for d in chunk {
            let (client, base, key, secret, app_id, d) = (
                app.client.clone(),
                app.base.clone(),
                h.key.clone(),
                h.secret.clone(),
                app.app_id,
                d.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let v: Value = client
                    .post(format!("{base}/runtime/v1/update-check"))
                    .basic_auth(key, Some(secret))
                    .json(&json!({"device_id": d, "runtime_version": "3.140.0", "apps": [{"app_id": app_id}]}))
                    .send()
                    .await
                    .expect("request")
                    .json()
                    .await
                    .expect("json");
                v["apps"][0]["package"]["package_id"].as_i64()
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            out[chunk_i * 32 + i] = t.await.expect("task");
        }
    }
    out
}

/// Uploads, submits and passes `version` (not released); its package id.
async fn passed(app: &TestApp, version: &str) -> i64 {
    let id = app.built(version).await;
    let sid = id.to_string();
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &sid), ("content", "c"), ("remark", "")],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    app.decide(id, true, "").await;
    id
}

async fn app_call(app: &TestApp, path: &str, params: &[(&str, &str)]) -> Value {
    app.client
        .post(format!("{}/rest/2.0/smartapp/{path}", app.base))
        .query(&[("access_token", app.token.as_str())])
        .form(params)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn a_staged_release_moves_a_stable_share_of_devices_grows_and_reverts() {
    let app = spawn_app().await;
    let h = host(&app, "host").await;
    let devices: Vec<String> = (0..10_000).map(|i| format!("device-{i}")).collect();
    let v1 = app.online("1.0.0").await;
    assert!(versions_of(&app, &h, &devices[..50])
        .await
        .iter()
        .all(|v| *v == Some(v1)));
    let v2 = passed(&app, "2.0.0").await;
    let s2 = v2.to_string();
    let gray = |p: &'static str| {
        let s2 = s2.clone();
        let app = &app;
        async move {
            app.call(
                "grayrelease",
                &[("package_id", &s2), ("gray_percentage", p)],
            )
            .await
        }
    };
    assert_eq!(gray("10").await["errno"], 0);
    let at10 = versions_of(&app, &h, &devices).await;
    let moved10: HashSet<usize> = (0..devices.len())
        .filter(|i| at10[*i] == Some(v2))
        .collect();
    assert!(
        (850..=1150).contains(&moved10.len()),
        "{} of 10,000 at 10%",
        moved10.len()
    );
    assert!(at10.iter().all(|v| *v == Some(v1) || *v == Some(v2)));
    // The same devices on every call, and exactly those of the documented bucket rule.
    let again = versions_of(&app, &h, &devices).await;
    assert_eq!(at10, again);
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(moved10.contains(&i), bucket(app.app_id, d) < 10, "{d}");
    }
    // get and getdetail show the staged state as an extra field.
    let detail = app.call("getdetail", &[("package_id", &s2)]).await;
    assert_eq!(detail["data"]["gray_percentage"], 10, "{detail}");
    assert_eq!(detail["data"]["status"], 6);
    // Lowering is refused; a new audit waits; raising keeps the first tenth.
    assert_eq!(gray("5").await["errno"], 69509);
    let v3 = app.built("3.0.0").await.to_string();
    let sub = app
        .call(
            "submitaudit",
            &[("package_id", &v3), ("content", "c"), ("remark", "")],
        )
        .await;
    assert_eq!(sub["errno"], 69508, "{sub}");
    assert_eq!(gray("50").await["errno"], 0);
    let at50 = versions_of(&app, &h, &devices).await;
    let moved50: HashSet<usize> = (0..devices.len())
        .filter(|i| at50[*i] == Some(v2))
        .collect();
    assert!(
        moved10.is_subset(&moved50),
        "raising the percentage keeps every device in"
    );
    assert!(
        (4700..=5300).contains(&moved50.len()),
        "{} at 50%",
        moved50.len()
    );
    // Revert: everyone back to version 1; release: everyone on version 2.
    let revert = app.call("revertgrayrelease", &[("package_id", &s2)]).await;
    assert_eq!(revert["errno"], 0, "{revert}");
    assert_eq!(
        app.call("revertgrayrelease", &[("package_id", &s2)]).await["errno"],
        69510
    );
    let sample = &devices[..2000];
    assert!(versions_of(&app, &h, sample)
        .await
        .iter()
        .all(|v| *v == Some(v1)));
    assert_eq!(gray("20").await["errno"], 0);
    assert_eq!(
        app.call("release", &[("package_id", &s2)]).await["errno"],
        0
    );
    assert!(versions_of(&app, &h, sample)
        .await
        .iter()
        .all(|v| *v == Some(v2)));
    let detail = app.call("getdetail", &[]).await;
    assert_eq!(detail["data"]["package_id"], v2);
    assert!(detail["data"].get("gray_percentage").is_none(), "{detail}");
    app.stop().await;
}

#[tokio::test]
async fn rollback_to_a_chosen_version_reaches_devices() {
    let app = spawn_app().await;
    let h = host(&app, "host").await;
    let v1 = app.online("1.0.0").await;
    let v2 = app.online("2.0.0").await;
    let v3 = app.online("3.0.0").await;
    let history = app.call("gethistory", &[]).await;
    let ids: Vec<i64> = history["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["package_id"].as_i64())
        .collect();
    assert_eq!(ids, vec![v2, v1], "{history}");
    assert_eq!(history["data"][1]["version"], "1.0.0");
    let s3 = v3.to_string();
    let bad = app
        .call(
            "rollbackto",
            &[("package_id", &s3), ("target_package_id", "999999")],
        )
        .await;
    assert_eq!(bad["errno"], 69511, "{bad}");
    let ok = app
        .call(
            "rollbackto",
            &[("package_id", &s3), ("target_package_id", &v1.to_string())],
        )
        .await;
    assert_eq!(ok["errno"], 0, "{ok}");
    let online = app
        .wait_detail(&app.token, &[], |v| {
            v["data"]["status"] == 1 && v["data"]["package_id"] == v1
        })
        .await;
    assert_eq!(online["data"]["version"], "1.0.0");
    assert_eq!(one(&app, &h, "d1").await["package"]["package_id"], v1);
    app.stop().await;
}

#[tokio::test]
async fn pause_minimum_runtime_and_domains_reach_devices() {
    // Tickets to a local receiver: the third party's own token is needed for its domains.
    let app = crate::tp::tp_app().await;
    let h = host(&app, "host").await;
    app.online("1.0.0").await;
    assert_eq!(one(&app, &h, "d").await["status"], "update");

    assert_eq!(app_call(&app, "app/pause", &[]).await["errno"], 0);
    assert_eq!(one(&app, &h, "d").await["status"], "paused");
    let info = app_call(&app, "app/info", &[]).await;
    assert_eq!(info["data"]["status"], 4, "{info}");
    assert_eq!(app_call(&app, "app/resume", &[]).await["errno"], 0);
    assert_eq!(one(&app, &h, "d").await["status"], "update");

    let versions = app_call(&app, "app/getsupportversion", &[]).await;
    assert_eq!(versions["data"]["now_version"], "");
    assert_eq!(versions["data"]["items"][2]["version"], "3.100.0");
    let bad = app_call(&app, "app/setsupportversion", &[("version", "9.9.9")]).await;
    assert_eq!(bad["errno"], 40001, "{bad}");
    assert_eq!(
        app_call(&app, "app/setsupportversion", &[("version", "3.100.0")]).await["errno"],
        0
    );
    let old = check(&app, &h, "d", "3.80.0", json!([{"app_id": app.app_id}])).await;
    assert_eq!(old["apps"][0]["status"], "host_update_required", "{old}");
    assert!(old["apps"][0].get("package").is_none());
    let new = check(&app, &h, "d", "3.120.0", json!([{"app_id": app.app_id}])).await;
    assert_eq!(new["apps"][0]["status"], "update");
    assert_eq!(new["apps"][0]["settings"]["min_runtime_version"], "3.100.0");
    let info = app_call(&app, "app/info", &[]).await;
    assert_eq!(info["data"]["min_swan_version"], "3.100.0");

    // Domains: add, get, delete, set; refused when not https://host.
    let add = app_call(
        &app,
        "app/modifydomain",
        &[
            ("action", "add"),
            (
                "request_domain",
                "https://api.shop.com,https://img.shop.com",
            ),
            ("socket_domain", "wss://ws.shop.com"),
        ],
    )
    .await;
    assert_eq!(
        add["data"]["request_domain"], "https://api.shop.com,https://img.shop.com",
        "{add}"
    );
    assert_eq!(add["data"]["socket_domain"], "wss://ws.shop.com");
    let del = app_call(
        &app,
        "app/modifydomain",
        &[
            ("action", "delete"),
            ("request_domain", "https://img.shop.com"),
        ],
    )
    .await;
    assert_eq!(del["data"]["request_domain"], "https://api.shop.com");
    let bad = app_call(
        &app,
        "app/modifydomain",
        &[
            ("action", "add"),
            ("request_domain", "http://plain.shop.com"),
        ],
    )
    .await;
    assert_eq!(bad["errno"], 40001, "{bad}");
    let set = app_call(
        &app,
        "app/modifydomain",
        &[("action", "set"), ("upload_domain", "https://up.shop.com")],
    )
    .await;
    assert_eq!(set["data"]["upload_domain"], "https://up.shop.com");
    let get = app_call(&app, "app/modifydomain", &[("action", "get")]).await;
    assert_eq!(get["data"]["request_domain"], "https://api.shop.com");
    // A list set blank is emptied; the lists not given stay as they were.
    let emptied = app_call(
        &app,
        "app/modifydomain",
        &[("action", "set"), ("upload_domain", "")],
    )
    .await;
    assert_eq!(emptied["data"]["upload_domain"], "", "{emptied}");
    assert_eq!(emptied["data"]["request_domain"], "https://api.shop.com");
    let web = app_call(
        &app,
        "app/modifywebviewdomain",
        &[
            ("action", "add"),
            ("web_view_domain", "https://h5.shop.com"),
        ],
    )
    .await;
    assert_eq!(web["data"], "https://h5.shop.com", "{web}");

    // The third party's registered domains, then added to the app by a call without action.
    let tp = crate::tp::tp_token(&app, app.tp_id).await;
    let reg: Value = app
        .client
        .post(format!("{}/rest/2.0/smartapp/tp/modifydomain", app.base))
        .query(&[("access_token", tp.as_str())])
        .form(&[("action", "add"), ("download_domain", "https://cdn.tp.com")])
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(
        reg["data"]["download_domain"],
        json!(["https://cdn.tp.com"]),
        "{reg}"
    );
    let defaults = app_call(&app, "app/modifydomain", &[]).await;
    assert_eq!(
        defaults["data"]["download_domain"], "https://cdn.tp.com",
        "{defaults}"
    );

    let seen = one(&app, &h, "d").await;
    assert_eq!(
        seen["settings"]["request_domain"],
        json!(["https://api.shop.com"])
    );
    assert_eq!(
        seen["settings"]["download_domain"],
        json!(["https://cdn.tp.com"])
    );
    assert_eq!(
        seen["settings"]["web_view_domain"],
        json!(["https://h5.shop.com"])
    );
    app.stop().await;
}

#[tokio::test]
async fn the_single_app_form_answers_304_until_something_changes() {
    let app = spawn_app().await;
    let h = host(&app, "host").await;
    app.online("1.0.0").await;
    let url = format!(
        "{}/runtime/v1/apps/{}?device_id=d7&runtime_version=3.140.0",
        app.base, app.app_id
    );
    let get = |etag: Option<String>| {
        let mut r = app.client.get(&url).basic_auth(&h.key, Some(&h.secret));
        if let Some(e) = etag {
            r = r.header("if-none-match", e);
        }
        r.send()
    };
    let first = get(None).await.expect("request");
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    let body: Value = first.json().await.expect("json");
    assert_eq!(body["status"], "update");
    let again = get(Some(etag.clone())).await.expect("request");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.text().await.expect("body"), "");
    app.online("2.0.0").await;
    let changed = get(Some(etag.clone())).await.expect("request");
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "a release changes the answer at once"
    );
    assert_ne!(changed.headers()["etag"].to_str().expect("etag"), etag);
    app.stop().await;
}

#[tokio::test]
async fn downloads_are_the_package_archive_immutable_with_ranges() {
    let app = spawn_app().await;
    let h = host(&app, "host").await;
    let id = app.online("1.0.0").await;
    let seen = one(&app, &h, "d").await;
    let url = seen["package"]["url"].as_str().expect("url").to_string();
    let sha = seen["package"]["sha256"].as_str().expect("sha").to_string();
    let size = seen["package"]["size"].as_u64().expect("size");
    assert!(url.ends_with(&format!("/runtime/v1/packages/{sha}")));
    let r = app.client.get(&url).send().await.expect("download");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        r.headers()["etag"].to_str().expect("etag"),
        format!("\"{sha}\"")
    );
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    let bytes = r.bytes().await.expect("bytes").to_vec();
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(smartpkg_store::blobs::sha256_hex(&bytes), sha);
    // The same files as the admin API's archive of the package.
    let admin = app
        .client
        .get(format!("{}/admin/v1/packages/{id}/archive", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("admin archive")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    assert_eq!(
        bytes, admin,
        "the admin API shows the very bytes devices get"
    );
    let names: Vec<String> = entries(&bytes).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"ext.json".to_string()) && names.contains(&"app.json".to_string()));
    // Ranges.
    let part = app
        .client
        .get(&url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"].to_str().expect("cr"),
        format!("bytes 0-99/{size}")
    );
    assert_eq!(
        part.bytes().await.expect("b").to_vec(),
        bytes[..100].to_vec()
    );
    let tail = app
        .client
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .expect("range");
    assert_eq!(
        tail.bytes().await.expect("b").to_vec(),
        bytes[bytes.len() - 10..].to_vec()
    );
    let beyond = app
        .client
        .get(&url)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .expect("range");
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let cached = app
        .client
        .get(&url)
        .header("if-none-match", format!("\"{sha}\""))
        .send()
        .await
        .expect("conditional");
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    // If-None-Match compares weakly: our tag marked weak, or in a list, is still ours.
    for inm in [format!("W/\"{sha}\""), format!("\"other\", W/\"{sha}\"")] {
        let r = app
            .client
            .get(&url)
            .header("if-none-match", &inm)
            .send()
            .await
            .expect("conditional");
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{inm}");
    }
    // If-Range compares strongly: only our exact tag keeps the range; a weak tag, another tag
    // or a date asks for the whole file.
    for (if_range, want) in [
        (format!("\"{sha}\""), StatusCode::PARTIAL_CONTENT),
        (format!("W/\"{sha}\""), StatusCode::OK),
        ("\"0000\"".to_string(), StatusCode::OK),
        ("Sat, 05 Dec 2026 08:00:00 GMT".to_string(), StatusCode::OK),
    ] {
        let r = app
            .client
            .get(&url)
            .header("range", "bytes=0-99")
            .header("if-range", &if_range)
            .send()
            .await
            .expect("if-range");
        assert_eq!(r.status(), want, "{if_range}");
        let len = r.bytes().await.expect("body").len();
        assert_eq!(
            len,
            if want == StatusCode::OK {
                bytes.len()
            } else {
                100
            },
            "{if_range}"
        );
    }
    // Only package archives: not an unknown hash, not a template's blob.
    let unknown = app
        .client
        .get(format!(
            "{}/runtime/v1/packages/{}",
            app.base,
            "0".repeat(64)
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let zip = smartpkg_core::archive::sample_template(&["pages/index/index", "pages/about/about"])
        .expect("zip");
    let template_sha = smartpkg_store::blobs::sha256_hex(&zip);
    let template = app
        .client
        .get(format!("{}/runtime/v1/packages/{template_sha}", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(
        template.status(),
        StatusCode::NOT_FOUND,
        "templates are not served"
    );
    app.stop().await;
}

/// Every entry of a zip: (name, bytes), sorted.
fn entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
    let mut out = vec![];
    for i in 0..a.len() {
        let mut f = a.by_index(i).expect("entry");
        let mut b = vec![];
        f.read_to_end(&mut b).expect("read");
        out.push((f.name().to_string(), b));
    }
    out.sort();
    out
}

#[tokio::test]
async fn host_apps_see_only_their_mini_programs_and_bad_credentials_are_refused() {
    let app = spawn_app().await;
    let a = host(&app, "host a").await;
    let b = host(&app, "host b").await;
    app.online("1.0.0").await;
    let (st, v) = app
        .admin(
            Method::PUT,
            &format!("/apps/{}/host-apps", app.app_id),
            Some(json!({"host_ids": [a.id]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(one(&app, &a, "d").await["status"], "update");
    let other = one(&app, &b, "d").await;
    assert_eq!(other["status"], "not_available", "{other}");
    assert!(other.get("package").is_none() && other.get("settings").is_none());
    let (st, _) = app
        .admin(
            Method::PUT,
            &format!("/apps/{}/host-apps", app.app_id),
            Some(json!({"host_ids": [a.id, 424242]})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // No credentials, a wrong secret, an unknown key: 401 with a challenge.
    let url = format!("{}/runtime/v1/update-check", app.base);
    let body = json!({"device_id": "d", "runtime_version": "3.140.0", "apps": []});
    for auth in [
        None,
        Some((a.key.clone(), "wrong".to_string())),
        Some(("hk_unknown".to_string(), a.secret.clone())),
    ] {
        let mut r = app.client.post(&url).json(&body);
        if let Some((k, s)) = auth {
            r = r.basic_auth(k, Some(s));
        }
        let r = r.send().await.expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key("www-authenticate"));
    }
    // Bad input is a 400 that says why.
    let many: Vec<Value> = (0..101).map(|i| json!({"app_id": i})).collect();
    let r = app
        .client
        .post(&url)
        .basic_auth(&a.key, Some(&a.secret))
        .json(&json!({"device_id": "d", "runtime_version": "3.140.0", "apps": many}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A body past the update check's 64 KiB is refused as too large, before it is parsed.
    let body = format!(
        r#"{{"device_id": "{}", "runtime_version": "3.140.0", "apps": []}}"#,
        "d".repeat(70 * 1024)
    );
    let (st, v) = raw_check(&app, &a, body).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"]["code"], "too_large", "{v}");
    // Strings with JSON escapes are read as well as plain ones (the hot path borrows the
    // plain ones from the body): an escaped letter is a letter, an escaped newline is still
    // a control character.
    for (device, status) in [
        (r"d\u00e9vice", StatusCode::OK),
        (r"d\nvice", StatusCode::BAD_REQUEST),
    ] {
        let body = format!(
            r#"{{"device_id": "{device}", "runtime_version": "3.140.0", "apps": [{{"app_id": {}}}]}}"#,
            app.app_id
        );
        let (st, v) = raw_check(&app, &a, body).await;
        assert_eq!(st, status, "{device}");
        if status == StatusCode::OK {
            assert_eq!(v["apps"][0]["status"], "update", "{v}");
        } else {
            assert!(v["error"]["message"].to_string().contains("control"), "{v}");
        }
    }
    let unknown_app = check(&app, &a, "d", "3.140.0", json!([{"app_id": 987654}])).await;
    assert_eq!(unknown_app["apps"][0]["status"], "not_available");
    app.stop().await;
}
