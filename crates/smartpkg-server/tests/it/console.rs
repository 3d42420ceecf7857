//! The console through HTTP, without a browser: every page, the roles, CSRF, sessions, the
//! audit decision and the owner's authorization (the browser drives the same in
//! `tests/browser.rs`).

use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_with, TestApp};

/// A person at a browser: one session cookie, kept by hand (no cookie store: the test sees
/// exactly what the server sets).
struct Person {
    base: String,
    http: Client,
    cookies: Vec<(String, String)>,
}

struct Answer {
    status: StatusCode,
    location: String,
    html: String,
    /// The raw `Set-Cookie` headers of the answer.
    set_cookies: Vec<String>,
}

impl Person {
    fn new(app: &TestApp) -> Person {
        Person {
            base: app.base.clone(),
            http: Client::builder()
                .redirect(Policy::none())
                .build()
                .expect("client"),
            cookies: vec![],
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let r = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("request");
        let mut set_cookies = vec![];
        for set in r.headers().get_all("set-cookie") {
            let set = set.to_str().expect("ascii");
            set_cookies.push(set.to_string());
            let (kv, _) = set.split_once(';').unwrap_or((set, ""));
            if let Some((k, v)) = kv.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                if !v.is_empty() {
                    self.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
        Answer {
            status: r.status(),
            location: r
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
                .to_string(),
            html: r.text().await.expect("body"),
            set_cookies,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// Posts `form` with the CSRF token of the page at `from`.
    async fn submit(&mut self, from: &str, path: &str, form: &[(&str, &str)]) -> Answer {
        let page = self.get(from).await;
        assert_eq!(page.status, StatusCode::OK, "{from}: {}", page.html);
        let csrf = csrf_of(&page.html);
        let mut all = form.to_vec();
        all.push(("csrf", &csrf));
        self.post(path, &all).await
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> Answer {
        self.submit(
            "/console/login",
            "/console/login",
            &[("name", name), ("password", password), ("next", "/console")],
        )
        .await
    }
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end")].to_string()
}

const PW: &str = "correct horse battery";

async fn account(app: &TestApp, name: &str, role: &str, apps: &[i64]) {
    let (st, v) = app
        .admin_post(
            "/accounts",
            json!({"name": name, "role": role, "password": PW, "apps": apps}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

async fn waiting_package(app: &TestApp, version: &str) -> i64 {
    let id = app.built(version).await;
    let v = app
        .call(
            "submitaudit",
            &[
                ("package_id", &id.to_string()),
                ("content", "c"),
                ("remark", ""),
                ("test_account", "tester"),
                ("test_password", "pw123456"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    id
}

#[tokio::test]
async fn the_first_operator_is_created_with_the_admin_token_once() {
    let app = spawn_app().await;
    let mut p = Person::new(&app);
    let page = p.get("/console/login").await;
    assert!(page.html.contains("Set up the console"), "{}", page.html);
    let wrong = p
        .submit(
            "/console/login",
            "/console/setup",
            &[("admin_token", "nope"), ("name", "olga"), ("password", PW)],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = p
        .submit(
            "/console/login",
            "/console/setup",
            &[
                ("admin_token", &app.admin),
                ("name", "Olga"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(
        (ok.status, ok.location.as_str()),
        (StatusCode::SEE_OTHER, "/console")
    );
    let home = p.get("/console").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.html.contains("olga") && home.html.contains("operator"));
    // Once an account exists the admin token creates no more.
    let mut q = Person::new(&app);
    let again = q
        .submit(
            "/console/login",
            "/console/setup",
            &[
                ("admin_token", &app.admin),
                ("name", "eve"),
                ("password", PW),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let (_, list) = app.admin_get("/accounts").await;
    assert_eq!(list["total"], 1, "{list}");
    app.stop().await;
}

#[tokio::test]
async fn every_page_renders_for_an_operator_and_lists_what_exists() {
    let app = spawn_app().await;
    account(&app, "olga", "operator", &[]).await;
    let id = waiting_package(&app, "1.0.0").await;
    let mut p = Person::new(&app);
    assert_eq!(p.sign_in("olga", PW).await.status, StatusCode::SEE_OTHER);
    let pages = [
        ("/console", "Audits waiting".to_string()),
        ("/console/queue", format!("#{id}")),
        (
            &*format!("/console/packages/{id}"),
            "pages/index/index.swan".into(),
        ),
        ("/console/packages/{id}/files/app.json", "pages".into()),
        ("/console/apps", "shop one".into()),
        (
            &*format!("/console/apps/{}", app.app_id),
            "submitted for audit".into(),
        ),
        ("/console/tps", "tp one".into()),
        (
            &*format!("/console/tps/{}", app.tp_id),
            "Rotate keys".into(),
        ),
        ("/console/deliveries", "Deliveries".into()),
        ("/console/accounts", "olga".into()),
    ];
    for (path, expect) in pages {
        let path = path.replace("{id}", &id.to_string());
        let page = p.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.html);
        assert!(
            page.html.contains(&expect),
            "{path} lacks {expect:?}: {}",
            page.html
        );
    }
    let css = p.get("/console/static/console.css").await;
    assert!(css.status.is_success() && css.html.contains("timeline"));
    app.stop().await;
}

#[tokio::test]
async fn a_reviewer_passes_an_audit_and_the_decision_shows_who_made_it() {
    let app = spawn_app().await;
    account(&app, "rita", "reviewer", &[]).await;
    let id = waiting_package(&app, "1.0.0").await;
    let mut p = Person::new(&app);
    p.sign_in("rita", PW).await;
    let path = format!("/console/packages/{id}");
    // Failing needs a reason; nothing changes without one.
    let refused = p
        .submit(
            &path,
            &format!("{path}/decide"),
            &[("result", "fail"), ("reason", "  ")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
    let passed = p
        .submit(&path, &format!("{path}/decide"), &[("result", "pass")])
        .await;
    assert_eq!(passed.status, StatusCode::SEE_OTHER, "{}", passed.html);
    let v = app.call("getdetail", &[("type", "6")]).await;
    assert_eq!(v["data"]["package_id"], id, "{v}");
    let page = p.get(&path).await;
    assert!(
        page.html.contains("audit passed") && page.html.contains("rita"),
        "{}",
        page.html
    );
    // Deciding again is refused: the package is no longer waiting.
    let csrf = csrf_of(&page.html);
    let twice = p
        .post(
            &format!("{path}/decide"),
            &[("result", "pass"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    app.stop().await;
}

#[tokio::test]
async fn a_reviewer_cannot_reach_operator_pages() {
    let app = spawn_app().await;
    account(&app, "rita", "reviewer", &[]).await;
    let mut p = Person::new(&app);
    p.sign_in("rita", PW).await;
    for path in [
        "/console/tps",
        "/console/accounts",
        "/console/deliveries",
        "/console/deliveries/1",
    ] {
        assert_eq!(p.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let tp = format!("/console/tps/{}", app.tp_id);
    assert_eq!(p.get(&tp).await.status, StatusCode::FORBIDDEN);
    let apps = format!("/console/apps/{}", app.app_id);
    let gates = p
        .submit(&apps, &format!("{apps}/gates"), &[("name_audited", "on")])
        .await;
    assert_eq!(gates.status, StatusCode::FORBIDDEN);
    let (_, a) = app.admin_get(&format!("/apps/{}", app.app_id)).await;
    assert_eq!(a["category_audited"], true, "nothing changed: {a}");
    assert!(
        !p.get("/console").await.html.contains("/console/tps\""),
        "no operator menu"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    account(&app, "olga", "operator", &[]).await;
    let id = waiting_package(&app, "1.0.0").await;
    let mut p = Person::new(&app);
    p.sign_in("olga", PW).await;
    let decide = format!("/console/packages/{id}/decide");
    let none = p.post(&decide, &[("result", "pass")]).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    let forged = p
        .post(&decide, &[("result", "pass"), ("csrf", "0123")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let v = app.call("getdetail", &[("type", "4")]).await;
    assert_eq!(v["data"]["package_id"], id, "still waiting: {v}");
    // Sign-in is protected too: a post without the pre-session token checks nothing.
    let mut q = Person::new(&app);
    let blind = q
        .post("/console/login", &[("name", "olga"), ("password", PW)])
        .await;
    assert_eq!(blind.status, StatusCode::FORBIDDEN);
    assert!(q.cookies.iter().all(|(k, _)| k != "spkg_session"));
    app.stop().await;
}

#[tokio::test]
async fn sign_out_ends_the_session_and_wrong_passwords_are_throttled() {
    let app = spawn_app().await;
    account(&app, "olga", "operator", &[]).await;
    let mut p = Person::new(&app);
    let signed = p.sign_in("olga", PW).await;
    let set = p.cookies.clone();
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let out = p.submit("/console", "/console/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // The old cookie, replayed after sign-out, no longer opens anything.
    p.cookies = set;
    let after = p.get("/console").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(
        after.location.starts_with("/console/login"),
        "{}",
        after.location
    );
    let mut e = Person::new(&app);
    for _ in 0..5 {
        assert_eq!(
            e.sign_in("olga", "wrong password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = e.sign_in("olga", PW).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_owner_sees_only_its_mini_programs_and_authorizes_in_one_click() {
    let app = crate::tp::tp_app().await;
    // A mini program of this owner, not yet authorized to anyone, with its owner password.
    let (st, mine) = app.admin_post("/apps", json!({"name": "mine"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let mine_id = mine["app_id"].as_i64().expect("id");
    let owner_pw = mine["owner_password"]
        .as_str()
        .expect("password")
        .to_string();
    account(&app, "oscar", "owner", &[]).await;
    let mut p = Person::new(&app);
    p.sign_in("oscar", PW).await;
    assert_eq!(
        p.get("/console").await.location,
        "/console/apps",
        "an owner's home"
    );
    // Claiming needs the owner credential.
    let wrong = p
        .submit(
            "/console/apps",
            "/console/apps/claim",
            &[
                ("app_id", &mine_id.to_string()),
                ("owner_password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = p
        .submit(
            "/console/apps",
            "/console/apps/claim",
            &[
                ("app_id", &mine_id.to_string()),
                ("owner_password", &owner_pw),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.html);
    let list = p.get("/console/apps").await;
    assert!(
        list.html.contains("mine") && !list.html.contains("shop one"),
        "{}",
        list.html
    );
    let other = p.get(&format!("/console/apps/{}", app.app_id)).await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "another's mini program looks missing"
    );
    // The authorization page offers the owned mini program and approves it without a password.
    let (_, tp) = app
        .admin(
            reqwest::Method::PATCH,
            &format!("/tps/{}", app.tp_id),
            Some(json!({"redirect_domain": "example.com"})),
        )
        .await;
    let client_id = tp["client_id"].as_str().expect("client_id").to_string();
    let tp_token = crate::tp::tp_token(&app, app.tp_id).await;
    let code = crate::onboarding::pre_auth_code(&app, &tp_token).await;
    let auth = format!(
        "/mappconsole/tp/authorization?client_id={client_id}&pre_auth_code={code}&redirect_uri=https%3A%2F%2Fexample.com%2Fback"
    );
    let page = p.get(&auth).await;
    assert!(
        page.html.contains("Signed in as") && page.html.contains("mine"),
        "{}",
        page.html
    );
    let csrf = csrf_of(&page.html);
    let approved = p
        .post(
            "/mappconsole/tp/authorization",
            &[
                ("client_id", &client_id),
                ("pre_auth_code", &code),
                ("redirect_uri", "https://example.com/back"),
                ("csrf", &csrf),
                ("use_session", "1"),
                ("app_id", &mine_id.to_string()),
            ],
        )
        .await;
    assert_eq!(approved.status, StatusCode::FOUND, "{}", approved.html);
    assert!(
        approved.location.contains("authorization_code="),
        "{}",
        approved.location
    );
    let (_, a) = app.admin_get(&format!("/apps/{mine_id}")).await;
    assert_eq!(a["tp_id"], app.tp_id, "{a}");
    app.stop().await;
}

#[tokio::test]
async fn revoking_and_rotating_keys_change_nothing_until_their_box_is_ticked() {
    let app = spawn_app().await;
    account(&app, "olga", "operator", &[]).await;
    let mut p = Person::new(&app);
    p.sign_in("olga", PW).await;
    let tp_path = format!("/console/tps/{}", app.tp_id);
    let keys = || async {
        let (st, tp) = app.admin_get(&format!("/tps/{}", app.tp_id)).await;
        assert_eq!(st, StatusCode::OK, "{tp}");
        (
            tp["msg_token"].clone(),
            tp["encoding_aes_key"].clone(),
            tp["wechat_token"].clone(),
            tp["wechat_encoding_aes_key"].clone(),
        )
    };
    let before = keys().await;
    // Both forms make the box required, so a browser cannot send them unticked.
    let page = p.get(&tp_path).await;
    assert!(
        page.html
            .contains(r#"<input type="checkbox" name="confirm" value="yes" required>"#),
        "{}",
        page.html
    );
    let rotate = format!("{tp_path}/rotate");
    let unticked = p.submit(&tp_path, &rotate, &[]).await;
    assert_eq!(unticked.status, StatusCode::BAD_REQUEST);
    assert!(
        unticked.html.contains("Nothing was changed"),
        "{}",
        unticked.html
    );
    assert_eq!(keys().await, before, "the keys are the same");
    let ticked = p.submit(&tp_path, &rotate, &[("confirm", "yes")]).await;
    assert_eq!(ticked.status, StatusCode::OK, "{}", ticked.html);
    let after = keys().await;
    assert!(
        after.0 != before.0 && after.1 != before.1 && after.2 != before.2 && after.3 != before.3,
        "new keys in both dialects"
    );
    // Shown once, the WeChat ones with the Baidu ones.
    let shown = after.2.as_str().expect("wechat_token");
    assert!(ticked.html.contains(shown), "{}", ticked.html);

    let app_path = format!("/console/apps/{}", app.app_id);
    let revoke = format!("{app_path}/revoke");
    let tp = app.tp_id.to_string();
    let unticked = p.submit(&app_path, &revoke, &[("tp_id", &tp)]).await;
    assert_eq!(unticked.status, StatusCode::BAD_REQUEST);
    let v = app.call("getdetail", &[("type", "3")]).await;
    assert!(
        v.get("error_code").is_none(),
        "the third party's token still works: {v}"
    );
    let ticked = p
        .submit(&app_path, &revoke, &[("tp_id", &tp), ("confirm", "yes")])
        .await;
    assert_eq!(ticked.status, StatusCode::SEE_OTHER, "{}", ticked.html);
    assert!(
        p.get(&app_path)
            .await
            .html
            .contains("not authorized to any"),
        "revoked"
    );
    let v = app.call("getdetail", &[("type", "3")]).await;
    assert_eq!(
        v["error_code"], 110,
        "the token died with the authorization: {v}"
    );
    app.stop().await;
}

/// The id of the account named `name`, from the admin API.
async fn account_id(app: &TestApp, name: &str) -> i64 {
    let (st, v) = app.admin_get("/accounts").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["name"] == name)
        .and_then(|a| a["account_id"].as_i64())
        .unwrap_or_else(|| panic!("no account {name}: {v}"))
}

/// The password in an accounts page's "shown this once" notice.
fn shown_password(html: &str) -> String {
    let at = html
        .find("shown this once: <code>")
        .expect("a password shown")
        + 23;
    html[at..at + html[at..].find('<').expect("end")].to_string()
}

/// A server with operator olga and reviewer rita, both signed in; rita's account id.
async fn operator_and_signed_in_reviewer() -> (TestApp, Person, Person, i64) {
    let app = spawn_app().await;
    account(&app, "olga", "operator", &[]).await;
    account(&app, "rita", "reviewer", &[]).await;
    let rita = account_id(&app, "rita").await;
    let mut op = Person::new(&app);
    assert_eq!(op.sign_in("olga", PW).await.status, StatusCode::SEE_OTHER);
    let mut r = Person::new(&app);
    assert_eq!(r.sign_in("rita", PW).await.status, StatusCode::SEE_OTHER);
    (app, op, r, rita)
}

#[tokio::test]
async fn a_disabled_account_is_signed_out_at_once_and_cannot_sign_in_until_enabled() {
    let (app, mut op, mut r, rita) = operator_and_signed_in_reviewer().await;
    assert_eq!(r.get("/console/queue").await.status, StatusCode::OK);

    let path = format!("/console/accounts/{rita}");
    let done = op
        .submit("/console/accounts", &path, &[("action", "disable")])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(done.html.contains("Account rita disabled"), "{}", done.html);
    assert!(
        done.html.contains("disabled</span> since"),
        "listed as disabled"
    );
    let out = r.get("/console/queue").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "the session ended");
    assert!(
        out.location.starts_with("/console/login"),
        "{}",
        out.location
    );
    let refused = Person::new(&app).sign_in("rita", PW).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.html.contains("This account is disabled"),
        "{}",
        refused.html
    );
    // A wrong password learns nothing about the account.
    let wrong = Person::new(&app).sign_in("rita", "not her password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.html.contains("disabled"), "{}", wrong.html);

    // An operator cannot disable itself (it would lock itself out).
    let olga = account_id(&app, "olga").await;
    let own = op
        .submit(
            "/console/accounts",
            &format!("/console/accounts/{olga}"),
            &[("action", "disable")],
        )
        .await;
    assert_eq!(own.status, StatusCode::BAD_REQUEST);
    assert_eq!(op.get("/console").await.status, StatusCode::OK);

    let enabled = op
        .submit("/console/accounts", &path, &[("action", "enable")])
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.html);
    assert_eq!(
        Person::new(&app).sign_in("rita", PW).await.status,
        StatusCode::SEE_OTHER
    );
    // A reviewer may not touch accounts.
    let mut r = Person::new(&app);
    r.sign_in("rita", PW).await;
    let not_hers = r
        .submit(
            "/console",
            &format!("/console/accounts/{olga}"),
            &[("action", "disable")],
        )
        .await;
    assert_eq!(not_hers.status, StatusCode::FORBIDDEN);
    assert_eq!(
        op.get("/console").await.status,
        StatusCode::OK,
        "olga unharmed"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_password_from_an_operator_is_shown_once_and_the_old_one_stops_working() {
    let (app, mut op, mut r, rita) = operator_and_signed_in_reviewer().await;
    let done = op
        .submit(
            "/console/accounts",
            &format!("/console/accounts/{rita}"),
            &[("action", "password")],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    let new = shown_password(&done.html);
    assert!(new.chars().count() >= 12, "{new}");
    assert!(
        !op.get("/console/accounts").await.html.contains(&new),
        "shown once"
    );
    assert_eq!(
        r.get("/console").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    assert_eq!(
        Person::new(&app).sign_in("rita", PW).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Person::new(&app).sign_in("rita", &new).await.status,
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one_and_ends_the_other_sessions() {
    let app = spawn_app().await;
    account(&app, "rita", "reviewer", &[]).await;
    let mut here = Person::new(&app);
    here.sign_in("rita", PW).await;
    let mut elsewhere = Person::new(&app);
    elsewhere.sign_in("rita", PW).await;
    let new = "a brand new passphrase";
    let form = |current: &'static str, repeat: &'static str| {
        [("current", current), ("new", new), ("repeat", repeat)]
    };
    let wrong = here
        .submit(
            "/console/password",
            "/console/password",
            &form("guess work here", new),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.html.contains("current password is wrong"),
        "{}",
        wrong.html
    );
    let differ = here
        .submit(
            "/console/password",
            "/console/password",
            &form(PW, "something else!"),
        )
        .await;
    assert_eq!(differ.status, StatusCode::BAD_REQUEST);
    let short = here
        .submit(
            "/console/password",
            "/console/password",
            &[("current", PW), ("new", "short"), ("repeat", "short")],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST, "{}", short.html);
    assert_eq!(
        elsewhere.get("/console").await.status,
        StatusCode::OK,
        "unchanged so far"
    );

    let done = here
        .submit("/console/password", "/console/password", &form(PW, new))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(done.html.contains("Password changed"), "{}", done.html);
    assert_eq!(
        here.get("/console").await.status,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        elsewhere.get("/console").await.status,
        StatusCode::SEE_OTHER,
        "the other session ended"
    );
    assert_eq!(
        Person::new(&app).sign_in("rita", PW).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        Person::new(&app).sign_in("rita", new).await.status,
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

#[tokio::test]
async fn the_admin_api_disables_accounts_and_sets_their_passwords() {
    use reqwest::Method;
    let app = spawn_app().await;
    account(&app, "rita", "reviewer", &[]).await;
    let rita = account_id(&app, "rita").await;
    let path = format!("/accounts/{rita}");
    let patch = |body: serde_json::Value| app.admin(Method::PATCH, &path, Some(body));
    for (body, why) in [
        (json!({}), "nothing to change"),
        (json!({"password": "short"}), "password"),
        (
            json!({"password": "long enough password", "generate_password": true}),
            "both",
        ),
        (json!({"disabled": "yes"}), "boolean"),
        (json!({"role": "operator"}), "unknown field"),
    ] {
        let (st, v) = patch(body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v.to_string().contains(why), "{body}: {v}");
    }
    let (st, v) = app
        .admin(
            Method::PATCH,
            "/accounts/999999",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    let mut r = Person::new(&app);
    r.sign_in("rita", PW).await;
    let (st, v) = patch(json!({"disabled": true})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["disabled_at_ms"].is_i64(), "{v}");
    assert!(v.get("password").is_none(), "{v}");
    assert_eq!(r.get("/console").await.status, StatusCode::SEE_OTHER);
    let (_, listed) = app.admin_get("/accounts").await;
    assert!(listed["accounts"][0]["disabled_at_ms"].is_i64(), "{listed}");

    let (st, v) = patch(json!({"disabled": false, "generate_password": true})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["disabled_at_ms"].is_null(), "{v}");
    let new = v["password"]
        .as_str()
        .expect("generated password")
        .to_string();
    assert_eq!(
        Person::new(&app).sign_in("rita", &new).await.status,
        StatusCode::SEE_OTHER
    );
    let (st, _) = patch(json!({"password": "chosen by the operator"})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        Person::new(&app)
            .sign_in("rita", "chosen by the operator")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

/// Every `href` on the page that starts with `prefix`, HTML-unescaped as a browser reads it.
fn links(html: &str, prefix: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|h| h.starts_with(prefix))
        .map(|h| {
            h.replace("&#x27;", "'")
                .replace("&#39;", "'")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

#[tokio::test]
async fn every_file_in_the_tree_opens_whatever_characters_its_name_holds() {
    let app = spawn_app().await;
    account(&app, "rita", "reviewer", &[]).await;
    let names = [
        "pages/index/q?x=1#frag.js",
        "a b/100%.js",
        "页面/首页 1.js",
        "x/literal%2Fslash.js",
        "x/semi;colon&amp.js",
    ];
    let app_json = json!({"pages": ["pages/index/index"]}).to_string();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("app.json".into(), app_json.into_bytes()),
        ("pages/index/index.swan".into(), b"<view/>".to_vec()),
    ];
    for (i, n) in names.iter().enumerate() {
        files.push((n.to_string(), format!("marker-{i}").into_bytes()));
    }
    let zip =
        smartpkg_core::archive::zip_files(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
            .expect("zip");
    let (st, t) = app.upload_template_bytes(app.tp_id, zip).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let template = t["template_id"].as_i64().expect("template_id").to_string();
    let v = app
        .call(
            "upload",
            &[
                ("template_id", &template),
                ("ext_json", "{}"),
                ("user_version", "1.0.0"),
                ("user_desc", "d"),
            ],
        )
        .await;
    assert_eq!(v["errno"], 0, "{v}");
    let id = app.wait_built(&app.token, "1.0.0").await;
    let mut p = Person::new(&app);
    assert_eq!(p.sign_in("rita", PW).await.status, StatusCode::SEE_OTHER);
    let page = p.get(&format!("/console/packages/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let hrefs = links(&page.html, &format!("/console/packages/{id}/files/"));
    assert_eq!(hrefs.len(), names.len() + 2, "{hrefs:?}");
    for (i, n) in names.iter().enumerate() {
        let href = hrefs
            .iter()
            .find(|h| {
                percent_encoding::percent_decode_str(h).decode_utf8_lossy()
                    == format!("/console/packages/{id}/files/{n}")
            })
            .unwrap_or_else(|| panic!("no link decodes to {n}: {hrefs:?}"));
        let file = p.get(href).await;
        assert_eq!(file.status, StatusCode::OK, "{n} via {href}: {}", file.html);
        assert!(
            file.html.contains(&format!("marker-{i}")),
            "{n} via {href} shows another file: {}",
            file.html
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn signing_in_goes_only_to_a_console_path_and_always_with_a_location() {
    let app = spawn_app().await;
    account(&app, "olga", "operator", &[]).await;
    for (next, expect) in [
        ("/console/apps", "/console/apps"),
        ("//evil.example.org/console", "/console"),
        ("https://evil.example.org/", "/console"),
        ("/console\\@evil.example.org", "/console"),
        ("/console\r\nSet-Cookie: spkg_session=forged", "/console"),
        ("/console/apps\n", "/console"),
        ("/console/apps\r", "/console"),
        ("/console/ä", "/console"),
    ] {
        let mut p = Person::new(&app);
        let a = p
            .submit(
                "/console/login",
                "/console/login",
                &[("name", "olga"), ("password", PW), ("next", next)],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{next:?}: {}", a.html);
        assert_eq!(a.location, expect, "{next:?}");
        // Signed in already, the login page sends the same way.
        let again = p
            .get(&format!(
                "/console/login?next={}",
                percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
            ))
            .await;
        assert_eq!(again.status, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(again.location, expect, "{next:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_a_tls_terminating_proxy() {
    for (public_url, secure) in [
        (Some("https://console.example.com"), true),
        (Some("http://console.example.com"), false),
        (None, false),
    ] {
        let app = spawn_with(|s| s.public_url = public_url.map(String::from)).await;
        account(&app, "olga", "operator", &[]).await;
        let mut p = Person::new(&app);
        let a = p.sign_in("olga", PW).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        let session = a
            .set_cookies
            .iter()
            .find(|c| c.starts_with("spkg_session="))
            .unwrap_or_else(|| panic!("no session cookie: {:?}", a.set_cookies));
        assert_eq!(
            session.contains("; Secure"),
            secure,
            "{public_url:?}: {session}"
        );
        app.stop().await;
    }
}
