//! Racing calls through the API (on whichever backend the suite runs): exactly one winner
//! where only one can win, a clear errno for every other caller, and never a 5xx.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_with, Style, TestApp};

const RACERS: usize = 50;

/// Sends the same call from `RACERS` tasks at once; the errnos they got.
async fn race(app: &Arc<TestApp>, token: &str, endpoint: &'static str, id: &str) -> Vec<i64> {
    let mut tasks = vec![];
    for _ in 0..RACERS {
        let (app, token, id) = (app.clone(), token.to_string(), id.to_string());
        tasks.push(tokio::spawn(async move {
            let v = app
                .call_as(
                    Style::QueryAndForm,
                    &token,
                    endpoint,
                    &[("package_id", &id), ("content", "c")],
                )
                .await;
            v["errno"].as_i64().expect("an errno")
        }));
    }
    let mut got = vec![];
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    got
}

fn one_winner(errnos: &[i64], losers: &[i64], what: &str) {
    assert_eq!(
        errnos.iter().filter(|e| **e == 0).count(),
        1,
        "{what}: {errnos:?}"
    );
    assert!(
        errnos.iter().all(|e| *e == 0 || losers.contains(e)),
        "{what}: {errnos:?}"
    );
}

#[tokio::test]
async fn racing_releases_rollbacks_submissions_and_withdrawals_have_one_winner_each() {
    let app = Arc::new(
        spawn_with(|s| {
            s.app_writes_per_minute = 0;
            s.tp_writes_per_minute = 0;
            s.rollback_delay_ms = 0;
        })
        .await,
    );
    let token = app.token.clone();
    app.online("1.0.0").await;
    for round in 0..5 {
        let version = format!("2.0.{round}");
        // Release race.
        let id = app.built(&version).await.to_string();
        let v = app
            .call("submitaudit", &[("package_id", &id), ("content", "c")])
            .await;
        assert_eq!(v["errno"], 0, "{v}");
        app.decide(id.parse().expect("id"), true, "").await;
        one_winner(
            &race(&app, &token, "release", &id).await,
            &[69501],
            "release",
        );
        // Rollback race on the fresh online version.
        let got = race(&app, &token, "rollback", &id).await;
        one_winner(&got, &[69501, 69504, 69505, 50031], "rollback");
        app.wait_detail(&token, &[], |v| {
            v["data"]["status"] == 1 && v["data"]["version"] != version.as_str()
        })
        .await;
    }
    // Submission and withdrawal races on one package.
    let id = app.built("3.0.0").await.to_string();
    one_winner(
        &race(&app, &token, "submitaudit", &id).await,
        &[69501, 69502],
        "submitaudit",
    );
    one_winner(
        &race(&app, &token, "withdraw", &id).await,
        &[69501],
        "withdraw",
    );
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

#[tokio::test]
async fn racing_submissions_of_many_apps_stay_within_the_quota() {
    let app = spawn_with(|s| {
        s.app_writes_per_minute = 0;
        s.tp_writes_per_minute = 0;
    })
    .await;
    let (st, v) = app
        .admin(
            Method::PATCH,
            &format!("/tps/{}", app.tp_id),
            Some(json!({"audit_quota": 7})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut ready = vec![];
    for i in 0..20 {
        let (_, token) = app.new_app(&format!("racer {i}")).await;
        let t = app.template_id.to_string();
        let v = app
            .call_as(
                Style::QueryAndForm,
                &token,
                "upload",
                &[
                    ("template_id", &t),
                    ("ext_json", "{}"),
                    ("user_version", "1"),
                    ("user_desc", "d"),
                ],
            )
            .await;
        assert_eq!(v["errno"], 0, "{v}");
        let id = app.wait_built(&token, "1").await;
        ready.push((token, id.to_string()));
    }
    let app = Arc::new(app);
    let mut tasks = vec![];
    for (token, id) in ready {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.call_as(
                Style::QueryAndForm,
                &token,
                "submitaudit",
                &[("package_id", &id), ("content", "c")],
            )
            .await["errno"]
                .as_i64()
                .expect("errno")
        }));
    }
    let mut got = vec![];
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    assert_eq!(got.iter().filter(|e| **e == 0).count(), 7, "{got:?}");
    assert!(got.iter().all(|e| *e == 0 || *e == 69013), "{got:?}");
    let q = app.call("auditquota", &[]).await;
    assert_eq!(q["data"]["remain_times"], 0, "{q}");
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}
