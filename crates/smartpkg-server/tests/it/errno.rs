//! Every refusal a third party can meet, with its errno (Baidu's where it has one, ours as
//! documented in docs/lifecycle.md otherwise) and the gateway's token errors.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_with, Style};

fn errno(v: &Value) -> i64 {
    v["errno"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errno in {v}"))
}

#[tokio::test]
async fn missing_invalid_or_expired_tokens_get_the_gateway_error() {
    let app = spawn_app().await;
    let invalid =
        json!({"error_code": 110, "error_msg": "Access token invalid or no longer valid"});
    for endpoint in [
        "upload",
        "submitaudit",
        "release",
        "rollback",
        "withdraw",
        "get",
        "getdetail",
        "auditquota",
        "gettrial",
    ] {
        assert_eq!(
            app.call_as(Style::QueryOnly, "", endpoint, &[]).await,
            invalid,
            "{endpoint} without token"
        );
        assert_eq!(
            app.call_as(Style::FormOnly, "45.nope", endpoint, &[]).await,
            invalid,
            "{endpoint} bad token"
        );
    }
    app.stop().await;

    let expired = spawn_with(|s| s.app_token_ttl_s = 0).await;
    assert_eq!(
        expired.call("get", &[]).await,
        json!({"error_code": 111, "error_msg": "Access token expired"})
    );
    expired.stop().await;
}

#[tokio::test]
async fn upload_checks_parameters_ext_json_and_template() {
    let app = spawn_app().await;
    let t = app.template_id.to_string();
    let full = [
        ("template_id", t.as_str()),
        ("ext_json", "{}"),
        ("user_version", "1"),
        ("user_desc", "d"),
    ];
    for skip in 0..full.len() {
        let params: Vec<_> = full
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, p)| *p)
            .collect();
        let v = app.call("upload", &params).await;
        assert_eq!(errno(&v), 40001, "without {}: {v}", full[skip].0);
        assert!(
            v["msg"].as_str().unwrap_or("").contains(full[skip].0),
            "{v}"
        );
    }
    let v = app
        .call(
            "upload",
            &[
                ("template_id", "abc"),
                ("ext_json", "{}"),
                ("user_version", "1"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(errno(&v), 41000, "{v}");
    for bad in ["{not json", "[1,2]", r#"{"directCommit":"perhaps"}"#] {
        let v = app
            .call(
                "upload",
                &[
                    ("template_id", &t),
                    ("ext_json", bad),
                    ("user_version", "1"),
                    ("user_desc", "d"),
                ],
            )
            .await;
        assert_eq!(errno(&v), 69004, "{bad}: {v}");
    }
    let v = app
        .call(
            "upload",
            &[
                ("template_id", "99999"),
                ("ext_json", "{}"),
                ("user_version", "1"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(errno(&v), 69008, "{v}");

    // Another third party's template is unknown to this one.
    let (_, other_tp) = app.admin_post("/tps", json!({"name": "tp two"})).await;
    let zip = smartpkg_core::archive::sample_template(&["pages/a/a"]).expect("zip");
    let (_, tpl) = app
        .upload_template_bytes(other_tp["tp_id"].as_i64().expect("id"), zip)
        .await;
    let other_t = tpl["template_id"].to_string();
    let v = app
        .call(
            "upload",
            &[
                ("template_id", &other_t),
                ("ext_json", "{}"),
                ("user_version", "1"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(errno(&v), 69008, "{v}");

    // Nothing was created by any refused upload.
    assert_eq!(
        app.call("get", &[]).await,
        json!({"errno": 0, "msg": "success", "data": []})
    );
    app.stop().await;
}

#[tokio::test]
async fn submitaudit_refusals() {
    let app = spawn_with(|s| s.build_delay_ms = 800).await;
    let v = app.call("submitaudit", &[("content", "c")]).await;
    assert_eq!(errno(&v), 40001);
    let v = app
        .call("submitaudit", &[("package_id", "x1"), ("content", "c")])
        .await;
    assert_eq!(errno(&v), 41000);
    let v = app
        .call("submitaudit", &[("package_id", "424242"), ("content", "c")])
        .await;
    assert_eq!(errno(&v), 69005);

    // Still building: processing, try later.
    assert_eq!(errno(&app.upload("1.0.0", "{}").await), 0);
    let (_, listed) = app
        .admin_get(&format!("/packages?app_id={}", app.app_id))
        .await;
    let building = listed["packages"][0]["package_id"].to_string();
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &building), ("content", "c")],
        )
        .await;
    assert_eq!(errno(&v), 50031, "{v}");
    let id = app.wait_built(&app.token, "1.0.0").await;
    let sid = id.to_string();

    // Another mini program's token cannot touch this package.
    let (_, other_token) = app.new_app("shop two").await;
    let v = app
        .call_as(
            Style::QueryAndForm,
            &other_token,
            "submitaudit",
            &[("package_id", &sid), ("content", "c")],
        )
        .await;
    assert_eq!(errno(&v), 69005, "{v}");
    let v = app
        .call_as(
            Style::QueryAndForm,
            &other_token,
            "getdetail",
            &[("package_id", &sid)],
        )
        .await;
    assert_eq!(errno(&v), 69005, "{v}");

    // Name and category gates.
    for (name, cat, want) in [
        (false, true, 69001),
        (true, false, 69002),
        (false, false, 69003),
    ] {
        let body = json!({"name_audited": name, "category_audited": cat});
        let (st, _) = app
            .admin(
                reqwest::Method::PATCH,
                &format!("/apps/{}", app.app_id),
                Some(body),
            )
            .await;
        assert_eq!(st, 200);
        let v = app
            .call("submitaudit", &[("package_id", &sid), ("content", "c")])
            .await;
        assert_eq!(errno(&v), want, "{v}");
    }
    let body = json!({"name_audited": true, "category_audited": true});
    app.admin(
        reqwest::Method::PATCH,
        &format!("/apps/{}", app.app_id),
        Some(body),
    )
    .await;

    // One audit in flight per mini program.
    assert_eq!(
        errno(
            &app.call("submitaudit", &[("package_id", &sid), ("content", "c")])
                .await
        ),
        0
    );
    let id2 = app.built("1.1.0").await;
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &id2.to_string()), ("content", "c")],
        )
        .await;
    assert_eq!(errno(&v), 69502, "{v}");
    // Submitting the one being audited again is a state error.
    let v = app
        .call("submitaudit", &[("package_id", &sid), ("content", "c")])
        .await;
    assert_eq!(errno(&v), 69501, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn weekly_audit_quota_is_shown_and_enforced() {
    let app = spawn_with(|s| s.audit_quota_per_week = 5).await;
    let (st, _) = app
        .admin(
            reqwest::Method::PATCH,
            &format!("/tps/{}", app.tp_id),
            Some(json!({"audit_quota": 1})),
        )
        .await;
    assert_eq!(st, 200);
    let quota = |q: i64, r: i64| json!({"errno":0,"msg":"success","data":{"quota_type":2,"quota_times":q,"remain_times":r}});
    assert_eq!(app.call("auditquota", &[]).await, quota(1, 1));
    let id = app.built("1.0.0").await;
    assert_eq!(
        errno(
            &app.call(
                "submitaudit",
                &[("package_id", &id.to_string()), ("content", "c")]
            )
            .await
        ),
        0
    );
    assert_eq!(app.call("auditquota", &[]).await, quota(1, 0));
    // Withdrawing does not give the submission back.
    assert_eq!(
        errno(
            &app.call("withdraw", &[("package_id", &id.to_string())])
                .await
        ),
        0
    );
    let v = app
        .call(
            "submitaudit",
            &[("package_id", &id.to_string()), ("content", "c")],
        )
        .await;
    assert_eq!(errno(&v), 69013, "{v}");
    // null returns the third party to the server's default.
    app.admin(
        reqwest::Method::PATCH,
        &format!("/tps/{}", app.tp_id),
        Some(json!({"audit_quota": null})),
    )
    .await;
    assert_eq!(app.call("auditquota", &[]).await, quota(5, 4));
    app.stop().await;
}

#[tokio::test]
async fn release_rollback_and_withdraw_refusals() {
    let app = spawn_app().await;
    let id = app.built("1.0.0").await;
    let sid = id.to_string();
    assert_eq!(
        errno(&app.call("release", &[("package_id", &sid)]).await),
        69501
    );
    assert_eq!(
        errno(&app.call("withdraw", &[("package_id", &sid)]).await),
        69501
    );
    assert_eq!(
        errno(&app.call("rollback", &[("package_id", &sid)]).await),
        69505
    );
    assert_eq!(errno(&app.call("release", &[]).await), 40001);

    assert_eq!(
        errno(
            &app.call("submitaudit", &[("package_id", &sid), ("content", "c")])
                .await
        ),
        0
    );
    app.decide(id, true, "").await;
    app.admin(
        reqwest::Method::PATCH,
        &format!("/apps/{}", app.app_id),
        Some(json!({"authenticity_certified": false})),
    )
    .await;
    assert_eq!(
        errno(&app.call("release", &[("package_id", &sid)]).await),
        50038
    );
    app.admin(
        reqwest::Method::PATCH,
        &format!("/apps/{}", app.app_id),
        Some(json!({"authenticity_certified": true})),
    )
    .await;
    assert_eq!(
        errno(&app.call("release", &[("package_id", &sid)]).await),
        0
    );
    assert_eq!(
        errno(&app.call("release", &[("package_id", &sid)]).await),
        69501
    );

    // The first online version has nothing to roll back to.
    assert_eq!(
        errno(&app.call("rollback", &[("package_id", &sid)]).await),
        69503
    );
    let id2 = app.online("2.0.0").await;
    assert_eq!(
        errno(
            &app.call("rollback", &[("package_id", &id2.to_string())])
                .await
        ),
        0
    );
    assert_eq!(
        errno(
            &app.call("rollback", &[("package_id", &id2.to_string())])
                .await
        ),
        50031
    );
    app.wait_detail(&app.token, &[], |v| v["data"]["package_id"] == id)
        .await;
    // Not twice in a row without a release between.
    assert_eq!(
        errno(&app.call("rollback", &[("package_id", &sid)]).await),
        69504
    );
    // The rolled-back version is gone for good.
    assert_eq!(
        errno(
            &app.call("getdetail", &[("package_id", &id2.to_string())])
                .await
        ),
        69005
    );
    app.stop().await;
}

#[tokio::test]
async fn getdetail_refusals() {
    let app = spawn_app().await;
    assert_eq!(
        errno(&app.call("getdetail", &[]).await),
        69005,
        "no online version yet"
    );
    assert_eq!(errno(&app.call("getdetail", &[("type", "7")]).await), 40001);
    assert_eq!(errno(&app.call("getdetail", &[("type", "x")]).await), 41000);
    assert_eq!(errno(&app.call("gettrial", &[]).await), 69005);
    let id = app.built("1.0.0").await;
    assert_eq!(
        errno(
            &app.call(
                "getdetail",
                &[("package_id", &id.to_string()), ("type", "1")]
            )
            .await
        ),
        69005
    );
    assert_eq!(
        errno(
            &app.call(
                "getdetail",
                &[("package_id", &id.to_string()), ("type", "3")]
            )
            .await
        ),
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = spawn_with(|s| s.max_body_bytes = 4096).await;
    let resp = app
        .client
        .post(format!(
            "{}/rest/2.0/smartapp/package/upload?access_token={}",
            app.base, app.token
        ))
        .form(&[("ext_json", "x".repeat(10_000))])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(errno(&v), 40001);
    let resp = app
        .client
        .post(format!("{}/admin/v1/apps", app.base))
        .bearer_auth(&app.admin)
        .json(&json!({"name": "y".repeat(10_000)}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 413);
    app.stop().await;
}
