//! Every package endpoint in every transport style, pinning the exact JSON answers.

use serde_json::json;

use crate::helpers::{blank_times, spawn_with, Style, STYLES};

async fn whole_lifecycle_in(style: Style) {
    // A build slow enough to observe the uploading row.
    let app = spawn_with(|s| {
        s.build_delay_ms = 400;
        s.rollback_delay_ms = 300;
    })
    .await;
    let tok = app.token.clone();
    let t = app.template_id.to_string();
    let ext = format!(
        r#"{{"extEnable":true,"extAppid":"{}","ext":{{"k":"v"}}}}"#,
        app.app_id
    );
    let call = |endpoint: &'static str, params: Vec<(&'static str, String)>| {
        let app = &app;
        let tok = tok.clone();
        async move {
            let ps: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            blank_times(app.call_as(style, &tok, endpoint, &ps).await)
        }
    };
    let ok = json!({"errno": 0, "msg": "success"});
    let upload = |version: &'static str| {
        call(
            "upload",
            vec![
                ("template_id", t.clone()),
                ("ext_json", ext.clone()),
                ("user_version", version.into()),
                ("user_desc", "描述 one".into()),
            ],
        )
    };

    assert_eq!(upload("1.0.0").await, ok, "{style:?}");
    assert_eq!(
        call("get", vec![]).await,
        json!({"errno":0,"msg":"success","data":[{"version":"1.0.0","commit_time":"T","version_desc":"描述 one","upload_status":1,"upload_status_desc":"上传中"}]}),
        "{style:?}"
    );
    let id = app.wait_built(&tok, "1.0.0").await;
    let sid = id.to_string();
    let dev = |status: i64, msg: &str| json!({"version":"1.0.0","remark":"","msg":msg,"committer":"--","status":status,"commit_time":"T","version_desc":"描述 one","package_id":id});
    assert_eq!(
        call("getdetail", vec![("type", "3".into())]).await,
        json!({"errno":0,"msg":"success","data":dev(3, "")})
    );
    assert_eq!(
        call("gettrial", vec![]).await,
        json!({"errno":0,"msg":"success","data":dev(3, "")})
    );

    assert_eq!(
        call(
            "submitaudit",
            vec![
                ("package_id", sid.clone()),
                ("content", "送审".into()),
                ("remark", "r1".into())
            ]
        )
        .await,
        ok
    );
    let mut auditing = dev(4, "");
    auditing["remark"] = json!("r1");
    assert_eq!(
        call("getdetail", vec![("package_id", sid.clone())]).await,
        json!({"errno":0,"msg":"success","data":auditing})
    );
    assert_eq!(
        call("withdraw", vec![("package_id", sid.clone())]).await,
        ok
    );
    assert_eq!(
        call("getdetail", vec![("package_id", sid.clone())]).await["data"]["status"],
        3
    );
    assert_eq!(
        call(
            "submitaudit",
            vec![
                ("package_id", sid.clone()),
                ("content", "送审".into()),
                ("remark", "r1".into())
            ]
        )
        .await,
        ok
    );
    app.decide(id, true, "").await;
    let mut passed = dev(6, "审核通过");
    passed["remark"] = json!("r1");
    assert_eq!(
        call("getdetail", vec![("type", "6".into())]).await,
        json!({"errno":0,"msg":"success","data":passed})
    );

    assert_eq!(call("release", vec![("package_id", sid.clone())]).await, ok);
    let mut online = dev(1, "审核通过");
    online["remark"] = json!("r1");
    online["rollback_version"] = json!("");
    assert_eq!(
        call("getdetail", vec![]).await,
        json!({"errno":0,"msg":"success","data":online})
    );
    assert_eq!(
        call("auditquota", vec![]).await,
        json!({"errno":0,"msg":"success","data":{"quota_type":2,"quota_times":-1,"remain_times":-1}})
    );

    // A second release keeps 1.0.0 as the rollback target.
    assert_eq!(upload("2.0.0").await, ok);
    let id2 = app.wait_built(&tok, "2.0.0").await;
    let sid2 = id2.to_string();
    assert_eq!(
        call(
            "submitaudit",
            vec![
                ("package_id", sid2.clone()),
                ("content", "c".into()),
                ("remark", "".into())
            ]
        )
        .await,
        ok
    );
    app.decide(id2, true, "").await;
    assert_eq!(
        call("release", vec![("package_id", sid2.clone())]).await,
        ok
    );
    let listed = call("get", vec![]).await;
    assert_eq!(
        listed["data"],
        json!([{"version":"2.0.0","remark":"","msg":"审核通过","committer":"--","status":1,"commit_time":"T","version_desc":"描述 one","package_id":id2,"rollback_version":"1.0.0"}])
    );

    assert_eq!(
        call("rollback", vec![("package_id", sid2.clone())]).await,
        ok
    );
    assert_eq!(
        call("getdetail", vec![]).await["data"]["status"],
        8,
        "{style:?}"
    );
    let back = app
        .wait_detail(&tok, &[], |v| {
            v["data"]["package_id"] == id && v["data"]["status"] == 1
        })
        .await;
    assert_eq!(
        blank_times(back),
        json!({"errno":0,"msg":"success","data":online})
    );
    app.stop().await;
}

#[tokio::test]
async fn lifecycle_with_everything_in_the_query_string() {
    whole_lifecycle_in(STYLES[0]).await
}

#[tokio::test]
async fn lifecycle_with_token_in_query_and_form_body_like_the_go_sdk() {
    whole_lifecycle_in(STYLES[1]).await
}

#[tokio::test]
async fn lifecycle_with_everything_in_a_form_body_like_the_java_sdk() {
    whole_lifecycle_in(STYLES[2]).await
}

#[tokio::test]
async fn lifecycle_with_query_and_json_body_like_the_csharp_sdk() {
    whole_lifecycle_in(STYLES[3]).await
}

#[tokio::test]
async fn lifecycle_with_a_json_body_only() {
    whole_lifecycle_in(STYLES[4]).await
}

#[tokio::test]
async fn json_clients_may_send_numbers_and_ext_json_as_an_object() {
    let app = spawn_with(|_| {}).await;
    let body = json!({
        "access_token": app.token,
        "template_id": app.template_id,
        "ext_json": {"extEnable": true, "extAppid": app.app_id},
        "user_version": "1.0.0",
        "user_desc": "d",
    });
    let v: serde_json::Value = app
        .client
        .post(format!("{}/rest/2.0/smartapp/package/upload", app.base))
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(v, json!({"errno": 0, "msg": "success"}));
    app.wait_built(&app.token, "1.0.0").await;
    app.stop().await;
}
