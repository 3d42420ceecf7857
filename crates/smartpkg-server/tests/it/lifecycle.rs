//! Builds, automatic submission, the automatic audit and the slot rules, over HTTP.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_with, TestApp};

async fn failed_build(app: &TestApp, version: &str) -> Value {
    let v = app
        .wait_detail(&app.token, &[("type", "3")], |v| {
            v["data"]["upload_status"] == 3
        })
        .await;
    assert_eq!(v["data"]["version"], version);
    v["data"].clone()
}

#[tokio::test]
async fn a_page_missing_from_the_template_fails_the_build_with_its_name() {
    let app = spawn_app().await;
    let ext = r#"{"extEnable":true,"tabBar":{"list":[{"pagePath":"pages/index/index"},{"pagePath":"pages/cart/cart"}]}}"#;
    assert_eq!(app.upload("1.0.0", ext).await["errno"], 0);
    let row = failed_build(&app, "1.0.0").await;
    let msg = row["upload_err_msg"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(row["upload_err_code"], 69506, "{row}");
    assert!(msg.contains("pages/cart/cart"), "{msg}");
    let listed = app.call("get", &[]).await;
    assert_eq!(
        crate::helpers::blank_times(listed)["data"],
        json!([{"version":"1.0.0","commit_time":"T","version_desc":"desc","upload_status":3,"upload_status_desc":"上传失败","upload_err_code":69506,"upload_err_msg":msg}])
    );
    // extPages is checked the same way; with extEnable false the custom part is ignored.
    assert_eq!(
        app.upload("1.0.1", r#"{"extPages":{"pages/nope/nope":{}}}"#)
            .await["errno"],
        0
    );
    assert_eq!(failed_build(&app, "1.0.1").await["upload_err_code"], 69506);
    assert_eq!(
        app.upload(
            "1.0.2",
            r#"{"extEnable":false,"extPages":{"pages/nope/nope":{}}}"#
        )
        .await["errno"],
        0
    );
    app.wait_built(&app.token, "1.0.2").await;
    app.stop().await;
}

#[tokio::test]
async fn ext_appid_of_another_mini_program_fails_the_build() {
    let app = spawn_app().await;
    assert_eq!(
        app.upload("1.0.0", r#"{"extAppid":"100000282"}"#).await["errno"],
        0
    );
    assert_eq!(failed_build(&app, "1.0.0").await["upload_err_code"], 69507);
    app.stop().await;
}

#[tokio::test]
async fn a_broken_template_archive_fails_the_build_with_69010() {
    let app = spawn_app().await;
    // Damage the stored blob behind the server's back, before any build has read it.
    let blobs = app.dir.path().join("blobs");
    let mut damaged = 0;
    for dir in std::fs::read_dir(&blobs).expect("blobs") {
        let dir = dir.expect("entry").path();
        if dir.file_name().is_some_and(|n| n == "tmp") {
            continue;
        }
        for f in std::fs::read_dir(&dir).expect("dir") {
            std::fs::write(f.expect("file").path(), b"not a zip any more").expect("damage");
            damaged += 1;
        }
    }
    assert_eq!(damaged, 1);
    assert_eq!(app.upload("1.0.0", "{}").await["errno"], 0);
    let row = failed_build(&app, "1.0.0").await;
    assert_eq!(row["upload_err_code"], 69010, "{row}");
    app.stop().await;
}

#[tokio::test]
async fn a_new_upload_replaces_the_development_version() {
    let app = spawn_with(|s| s.build_delay_ms = 300).await;
    assert_eq!(app.upload("1.0.0", "{}").await["errno"], 0);
    assert_eq!(app.upload("1.0.1", "{}").await["errno"], 0);
    let id = app.wait_built(&app.token, "1.0.1").await;
    let listed = app.call("get", &[]).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["data"][0]["package_id"], id);
    let (_, all) = app
        .admin_get(&format!("/packages?app_id={}", app.app_id))
        .await;
    let states: Vec<&str> = all["packages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["state"].as_str())
        .collect();
    assert_eq!(
        states,
        vec!["development", "retired"],
        "the first upload's build found nothing to do"
    );
    app.stop().await;
}

#[tokio::test]
async fn direct_commit_submits_the_built_package_and_keeps_the_test_account() {
    let app = spawn_app().await;
    let t = app.template_id.to_string();
    let v = app
        .call(
            "upload",
            &[
                ("template_id", &t),
                ("ext_json", r#"{"directCommit":"true"}"#),
                ("user_version", "1.0.0"),
                ("user_desc", "d"),
                ("test_account", "reviewer"),
                ("test_password", "pw"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0);
    let v = app
        .wait_detail(&app.token, &[("type", "4")], |v| v["errno"] == 0)
        .await;
    let id = v["data"]["package_id"].as_i64().expect("id");
    let (_, p) = app.admin_get(&format!("/packages/{id}")).await;
    assert_eq!(
        (p["test_account"].as_str(), p["test_password"].as_str()),
        (Some("reviewer"), Some("pw"))
    );
    assert_eq!(
        app.call("auditquota", &[]).await["data"]["remain_times"],
        -1
    );

    // With the name gate closed the package is built but stays in development, saying why.
    app.admin(
        reqwest::Method::PATCH,
        &format!("/apps/{}", app.app_id),
        Some(json!({"name_audited": false})),
    )
    .await;
    app.call(
        "upload",
        &[
            ("template_id", &t),
            ("ext_json", r#"{"directCommit":true}"#),
            ("user_version", "1.0.1"),
            ("user_desc", "d"),
        ],
    )
    .await;
    let v = app
        .wait_detail(&app.token, &[("type", "3")], |v| {
            v["data"]["package_id"].is_i64()
        })
        .await;
    let msg = v["data"]["msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("自动送审失败") && msg.contains("小程序名称审核通过后"),
        "{msg}"
    );
    app.stop().await;
}

#[tokio::test]
async fn automatic_audit_passes_or_fails_with_the_rule_reason() {
    let app = spawn_with(|s| {
        s.audit_mode = smartpkg_server::AuditMode::Auto;
        s.auto_audit_delay_ms = 100;
        s.auto_audit_max_name_chars = 10;
    })
    .await;
    let id = app.built("1.0.0").await;
    app.call(
        "submitaudit",
        &[("package_id", &id.to_string()), ("content", "c")],
    )
    .await;
    let v = app
        .wait_detail(&app.token, &[("package_id", &id.to_string())], |v| {
            v["data"]["status"] != 4
        })
        .await;
    assert_eq!(
        (v["data"]["status"].as_i64(), v["data"]["msg"].as_str()),
        (Some(6), Some("审核通过"))
    );

    // A name over the configured length fails.
    app.admin(
        reqwest::Method::PATCH,
        &format!("/apps/{}", app.app_id),
        Some(json!({"name": "一二三四五六七八九十一"})),
    )
    .await;
    let id = app.built("1.0.1").await;
    app.call(
        "submitaudit",
        &[("package_id", &id.to_string()), ("content", "c")],
    )
    .await;
    let v = app
        .wait_detail(&app.token, &[("package_id", &id.to_string())], |v| {
            v["data"]["status"] != 4
        })
        .await;
    assert_eq!(v["data"]["status"], 5);
    assert_eq!(v["data"]["msg"], "名称过长（名称控制在10个字以内）。");
    app.stop().await;
}

#[tokio::test]
async fn automatic_audit_fails_a_page_without_its_file() {
    let app = spawn_with(|s| {
        s.audit_mode = smartpkg_server::AuditMode::Auto;
        s.auto_audit_delay_ms = 50;
    })
    .await;
    let zip = smartpkg_core::archive::zip_files([
        (
            "app.json",
            br#"{"pages":["pages/index/index","pages/ghost/ghost"]}"#.as_slice(),
        ),
        ("pages/index/index.swan", b"<view/>".as_slice()),
    ])
    .expect("zip");
    let (_, t) = app.upload_template_bytes(app.tp_id, zip).await;
    let tid = t["template_id"].to_string();
    app.call(
        "upload",
        &[
            ("template_id", &tid),
            ("ext_json", "{}"),
            ("user_version", "9"),
            ("user_desc", "d"),
        ],
    )
    .await;
    let id = app.wait_built(&app.token, "9").await;
    app.call(
        "submitaudit",
        &[("package_id", &id.to_string()), ("content", "c")],
    )
    .await;
    let v = app
        .wait_detail(&app.token, &[("package_id", &id.to_string())], |v| {
            v["data"]["status"] != 4
        })
        .await;
    assert_eq!(v["data"]["status"], 5);
    assert!(
        v["data"]["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("pages/ghost/ghost"),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_audit_shows_the_reviewers_reason_and_can_be_resubmitted_by_a_new_upload() {
    let app = spawn_app().await;
    let id = app.built("1.0.0").await;
    app.call(
        "submitaudit",
        &[("package_id", &id.to_string()), ("content", "c")],
    )
    .await;
    app.decide(id, false, "名称与实际打开后的名称不符。").await;
    let v = app.call("getdetail", &[("type", "5")]).await;
    assert_eq!(
        (v["data"]["package_id"].as_i64(), v["data"]["msg"].as_str()),
        (Some(id), Some("名称与实际打开后的名称不符。"))
    );
    let id2 = app.built("1.0.1").await;
    assert_eq!(
        app.call(
            "submitaudit",
            &[("package_id", &id2.to_string()), ("content", "c")]
        )
        .await["errno"],
        0
    );
    // The failed version left the audit slot when the new one entered it.
    assert_eq!(
        app.call("getdetail", &[("type", "5")]).await["errno"],
        69005
    );
    app.stop().await;
}
