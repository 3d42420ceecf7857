//! The console in a real headless Chromium, driven through ChromeDriver (Debian's `chromium`
//! and `chromium-driver`; `.ci/run` installs them). Screenshots of every page are saved under
//! `target/console-screenshots/`.
//!
//! Without ChromeDriver the test says so and passes, unless `SPKG_REQUIRE_BROWSER=1` (CI sets
//! it), where a missing browser fails it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use smartpkg_testkit::sandbox::{Sandbox, AES_KEY, MSG_TOKEN};
use smartpkg_testkit::{Answer, Keys, Receiver};

const PW: &str = "correct horse battery";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    let given = std::env::var_os("SPKG_CHROMEDRIVER").map(PathBuf::from);
    given
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromedriver")])
        .find(|p| p.exists())
}

async fn start_driver(path: &PathBuf) -> (Driver, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Driver(child), url)
}

async fn browser(driver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US"]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

fn shots_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

/// The page's text once it contains `needle`. After a click that submits a form, the old
/// page stays in place until the answer arrives: waiting for an element both pages have
/// can return the old page, or an element that goes stale while it is read.
async fn wait_for_text(c: &Client, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = match c.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now.contains(needle) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {needle:?}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(c: &Client, base: &str, name: &str) {
    c.goto(&format!("{base}/console/login"))
        .await
        .expect("login page");
    type_in(c, Locator::Css("input[name=name]"), name).await;
    type_in(c, Locator::Css("input[name=password]"), PW).await;
    click(c, Locator::Css("button[type=submit]")).await;
    c.wait()
        .for_element(Locator::Css("header.top"))
        .await
        .expect("signed in");
}

async fn click(c: &Client, at: Locator<'_>) {
    c.find(at)
        .await
        .expect("the element")
        .click()
        .await
        .expect("click");
}

async fn type_in(c: &Client, at: Locator<'_>, text: &str) {
    c.find(at)
        .await
        .expect("the field")
        .send_keys(text)
        .await
        .expect("type");
}

async fn sign_out(c: &Client) {
    click(c, Locator::Css("form[action='/console/logout'] button")).await;
    c.wait()
        .for_element(Locator::Css("input[name=password]"))
        .await
        .expect("login page");
}

async fn account(sb: &Sandbox, name: &str, role: &str) {
    let (st, v) = sb
        .admin(
            reqwest::Method::POST,
            "/accounts",
            Some(json!({"name": name, "role": role, "password": PW})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

async fn baidu(sb: &Sandbox, token: &str, method: &str, params: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!(
            "{}/rest/2.0/smartapp/package/{method}?access_token={token}",
            sb.base_url
        ))
        .form(params)
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json")
}

async fn detail(sb: &Sandbox, token: &str, kind: &str) -> Value {
    baidu(sb, token, "getdetail", &[("type", kind)]).await
}

/// A package of a new mini program waiting for its audit: (package id, app token, app id).
async fn waiting(sb: &Sandbox, name: &str) -> (i64, String, i64) {
    let (app_id, token, _) = sb.new_app(name).await;
    let id = submitted(sb, &token, app_id, name, "1.0.0").await;
    (id, token, app_id)
}

/// Uploads `version` of the mini program, waits for its build and submits it: its package id.
async fn submitted(sb: &Sandbox, token: &str, app_id: i64, name: &str, version: &str) -> i64 {
    let t = sb.template_id.to_string();
    let ext = format!(r#"{{"extAppid":{app_id},"window":{{"navigationBarTitleText":"{name}"}}}}"#);
    let v = baidu(
        sb,
        token,
        "upload",
        &[
            ("template_id", &t),
            ("ext_json", &ext),
            ("user_version", version),
            ("user_desc", "d"),
        ],
    )
    .await;
    assert_eq!(v["errno"], 0, "{v}");
    let start = Instant::now();
    let id = loop {
        let v = detail(sb, token, "3").await;
        if let Some(id) = v["data"]["package_id"].as_i64() {
            break id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never built: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = baidu(
        sb,
        token,
        "submitaudit",
        &[
            ("package_id", &id.to_string()),
            ("content", "c"),
            ("remark", "r"),
            ("test_account", "tester"),
        ],
    )
    .await;
    assert_eq!(v["errno"], 0, "{v}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let Some(path) = chromedriver() else {
        assert!(
            std::env::var("SPKG_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "SPKG_REQUIRE_BROWSER=1 but no chromedriver (install chromium and chromium-driver)"
        );
        eprintln!("skipped: no chromedriver (install Debian's chromium and chromium-driver)");
        return;
    };
    let sb = Sandbox::start().await;
    let keys = Keys {
        encoding_aes_key: AES_KEY.into(),
        token: MSG_TOKEN.into(),
        client_id: sb.client_id.clone(),
    };
    let events = Receiver::start("127.0.0.1:0".parse().expect("addr"), keys, |_| {
        Answer::Success
    })
    .await
    .expect("receiver");
    sb.set_event_url(&events.url()).await;
    account(&sb, "olga", "operator").await;
    account(&sb, "rita", "reviewer").await;
    let (to_pass, pass_token, coffee) = waiting(&sb, "Coffee 咖啡").await;
    let (to_fail, _, _) = waiting(&sb, "Tea shop").await;
    // Left waiting: the reviewer's queue and the phone view show it.
    let (left, _, _) = waiting(&sb, "Noodle bar 面馆").await;
    let base = sb.base_url.clone();
    let (_driver, url) = start_driver(&path).await;
    let c = browser(&url).await;

    // Sign in; the dashboard counts two waiting audits.
    c.goto(&format!("{base}/console/login"))
        .await
        .expect("login page");
    shot(&c, "00-sign-in").await;
    sign_in(&c, &base, "olga").await;
    assert!(text(&c).await.contains("Audits waiting"));
    shot(&c, "01-dashboard").await;
    c.goto(&format!("{base}/console/queue"))
        .await
        .expect("queue");
    let queue = text(&c).await;
    assert!(
        queue.contains(&format!("#{to_pass}")) && queue.contains("tester"),
        "{queue}"
    );
    shot(&c, "02-audit-queue").await;

    // Pass one: the Baidu API shows it audit-passed (status 6).
    c.goto(&format!("{base}/console/packages/{to_pass}"))
        .await
        .expect("package");
    let page = text(&c).await;
    assert!(
        page.contains("pages/index/index.swan") && page.contains("Coffee 咖啡"),
        "{page}"
    );
    shot(&c, "03-package").await;
    // What the third party changed from the template, highlighted.
    let diff = c
        .find(Locator::Css("pre.diff"))
        .await
        .expect("the app.json diff");
    assert!(diff.text().await.expect("text").contains("Coffee 咖啡"));
    let png = diff.screenshot().await.expect("element screenshot");
    std::fs::write(shots_dir().join("03b-package-app-json-diff.png"), png).expect("write");
    assert!(
        !c.find_all(Locator::Css("pre.diff span.add"))
            .await
            .expect("added lines")
            .is_empty(),
        "the changed title is marked as added"
    );
    click(&c, Locator::Css("form[action$='/decide'] button")).await;
    wait_for_text(&c, "audit passed").await;
    let v = detail(&sb, &pass_token, "6").await;
    assert_eq!(
        (
            v["data"]["package_id"].as_i64(),
            v["data"]["status"].as_i64()
        ),
        (Some(to_pass), Some(6)),
        "{v}"
    );

    // Fail the other with a reason: the push reaches the receiver with it.
    c.goto(&format!("{base}/console/packages/{to_fail}"))
        .await
        .expect("package");
    type_in(&c, Locator::Css("textarea[name=reason]"), "logo is blurred").await;
    click(&c, Locator::Css("button.danger")).await;
    wait_for_text(&c, "audit failed").await;
    let got = events.wait_for(2, Duration::from_secs(20)).await;
    let failed = got
        .iter()
        .filter_map(|r| r.event.clone())
        .find(|e| e.to_string().contains("logo is blurred"))
        .unwrap_or_else(|| panic!("the failure's push: {got:?}"));
    assert!(
        failed.to_string().contains(&to_fail.to_string()),
        "{failed}"
    );

    // Replay that delivery from the deliveries page: the receiver gets it again, same event id.
    c.goto(&format!("{base}/console/deliveries"))
        .await
        .expect("deliveries");
    shot(&c, "04-deliveries").await;
    let before = events.received().len();
    c.find(Locator::XPath(
        "//tr[td[contains(., 'PACKAGE_AUDIT_FAIL')]]//input[@name='id']",
    ))
    .await
    .expect("a delivery")
    .click()
    .await
    .expect("tick");
    c.find(Locator::Css(
        "form[action='/console/deliveries/replay'] button",
    ))
    .await
    .expect("replay")
    .click()
    .await
    .expect("click");
    c.wait()
        .for_element(Locator::Css(".notice"))
        .await
        .expect("replayed");
    let got = events.wait_for(before + 1, Duration::from_secs(20)).await;
    let ids: Vec<_> = got.iter().filter_map(|r| r.event_id.clone()).collect();
    let last = ids.last().expect("an id").clone();
    assert!(
        ids[..ids.len() - 1].contains(&last),
        "the replay keeps its event id: {ids:?}"
    );

    for (name, path) in [
        ("05-mini-programs", "/console/apps".to_string()),
        ("06-mini-program", format!("/console/apps/{coffee}")),
        ("07-third-parties", "/console/tps".to_string()),
        ("08-third-party", format!("/console/tps/{}", sb.tp_id)),
        ("09-accounts", "/console/accounts".to_string()),
        ("09b-password", "/console/password".to_string()),
        (
            "10-file",
            format!("/console/packages/{to_pass}/files/app.json"),
        ),
    ] {
        c.goto(&format!("{base}{path}")).await.expect("page");
        assert!(!text(&c).await.contains("Not allowed"), "{path}");
        shot(&c, name).await;
    }

    // A form whose CSRF token was taken out is refused, and nothing changes.
    c.goto(&format!("{base}/console/apps/{}", sb.app_id))
        .await
        .expect("app");
    c.execute("document.querySelectorAll('form[action$=\"/gates\"] input[name=csrf]').forEach(e => e.remove()); return 1;", vec![])
        .await
        .expect("script");
    click(&c, Locator::Css("input[name=name_audited]")).await;
    click(&c, Locator::Css("form[action$='/gates'] button")).await;
    wait_for_text(&c, "Form refused").await;
    shot(&c, "11-csrf-refused").await;
    let (_, a) = sb
        .admin(reqwest::Method::GET, &format!("/apps/{}", sb.app_id), None)
        .await;
    assert_eq!(a["name_audited"], true, "{a}");

    // The session outlives a server restart; after sign-out its cookie opens nothing.
    let cookie = c
        .get_named_cookie("spkg_session")
        .await
        .expect("session cookie");
    sb.restart(Duration::from_millis(300)).await;
    c.goto(&format!("{base}/console")).await.expect("dashboard");
    assert!(
        text(&c).await.contains("olga"),
        "still signed in after the restart"
    );
    sign_out(&c).await;
    c.add_cookie(cookie).await.expect("the old cookie back");
    c.goto(&format!("{base}/console")).await.expect("dashboard");
    assert!(c
        .current_url()
        .await
        .expect("url")
        .path()
        .starts_with("/console/login"));

    // A reviewer reaches the queue but no operator page.
    sign_in(&c, &base, "rita").await;
    c.goto(&format!("{base}/console/tps")).await.expect("tps");
    assert!(text(&c).await.contains("Not allowed"));
    shot(&c, "12-reviewer-refused").await;
    c.goto(&format!("{base}/console/queue"))
        .await
        .expect("queue");
    let queue = text(&c).await;
    assert!(
        queue.contains("Audit queue") && queue.contains(&format!("#{left}")),
        "{queue}"
    );

    // An owner authorizes its mini program to the third party in one click on the
    // authorization page (the redirect comes back to this server, the only host tests reach).
    let (st, mine) = sb
        .admin(
            reqwest::Method::POST,
            "/apps",
            Some(json!({"name": "Owner's bakery"})),
        )
        .await;
    assert_eq!(st, 201, "{mine}");
    let mine_id = mine["app_id"].as_i64().expect("app id");
    let (st, v) = sb
        .admin(
            reqwest::Method::POST,
            "/accounts",
            Some(json!({"name": "oscar", "role": "owner", "password": PW, "apps": [mine_id]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = sb
        .admin(
            reqwest::Method::PATCH,
            &format!("/tps/{}", sb.tp_id),
            Some(json!({"redirect_domain": "127.0.0.1"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let code: Value = reqwest::Client::new()
        .post(format!(
            "{}/rest/2.0/smartapp/tp/createpreauthcode?access_token={}",
            sb.base_url, sb.tp_token
        ))
        .send()
        .await
        .expect("pre-auth code")
        .json()
        .await
        .expect("json");
    let code = code["data"]["pre_auth_code"]
        .as_str()
        .expect("code")
        .to_string();
    let back = format!("{base}/healthz");
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &sb.client_id)
        .append_pair("pre_auth_code", &code)
        .append_pair("redirect_uri", &back)
        .finish();
    sign_out(&c).await;
    sign_in(&c, &base, "oscar").await;
    c.goto(&format!("{base}/mappconsole/tp/authorization?{q}"))
        .await
        .expect("authorization page");
    let page = text(&c).await;
    assert!(
        page.contains("oscar") && page.contains("Owner's bakery"),
        "{page}"
    );
    shot(&c, "14-authorization-owner").await;
    click(&c, Locator::Css("form input[name=use_session] ~ button")).await;
    let start = Instant::now();
    let landed = loop {
        let u = c.current_url().await.expect("url");
        if u.path() == "/healthz" {
            break u;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not redirected: {u}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        landed.query().unwrap_or("").contains("authorization_code="),
        "{landed}"
    );
    let (_, a) = sb
        .admin(reqwest::Method::GET, &format!("/apps/{mine_id}"), None)
        .await;
    assert_eq!(a["tp_id"], sb.tp_id, "{a}");

    // Phone width: the queue still reads.
    c.goto(&format!("{base}/console")).await.expect("console");
    sign_out(&c).await;
    sign_in(&c, &base, "rita").await;
    c.goto(&format!("{base}/console/queue"))
        .await
        .expect("queue");
    c.set_window_size(390, 844).await.expect("resize");
    shot(&c, "13-queue-phone").await;
    c.close().await.expect("close");
    sb.stop().await;
}

/// Reports `n` devices launching `package_id` of `app_id`, the first `failing` crashing.
async fn report(
    sb: &Sandbox,
    host: &(String, String),
    app_id: i64,
    package_id: i64,
    n: usize,
    failing: usize,
) {
    let mut all = vec![];
    for i in 0..n {
        let device = format!("p{package_id}-{i}");
        all.push(json!({"device_id": device, "app_id": app_id, "package_id": package_id, "event": "launched"}));
        if i < failing {
            all.push(json!({"device_id": device, "app_id": app_id, "package_id": package_id, "event": "crashed"}));
        }
    }
    for chunk in all.chunks(500) {
        let r = reqwest::Client::new()
            .post(format!("{}/runtime/v1/reports", sb.base_url))
            .basic_auth(&host.0, Some(&host.1))
            .json(&json!({ "reports": chunk }))
            .send()
            .await
            .expect("reports");
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_health_is_drawn_and_acted_on_in_a_real_browser() {
    let Some(path) = chromedriver() else {
        assert!(
            std::env::var("SPKG_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "SPKG_REQUIRE_BROWSER=1 but no chromedriver (install chromium and chromium-driver)"
        );
        eprintln!("skipped: no chromedriver (install Debian's chromium and chromium-driver)");
        return;
    };
    let sb = Sandbox::start_with(|s| {
        s.report_flush_interval_s = 1;
        s.health_eval_interval_s = 1;
        s.health_step_min_s = 0;
    })
    .await;
    account(&sb, "olga", "operator").await;
    // Version 1 online, version 2 passed and staged by a plan.
    let (v1, token, app_id) = waiting(&sb, "Bakery 面包店").await;
    let pass = |id: i64| {
        let sb = &sb;
        async move {
            let (st, v) = sb
                .admin(
                    reqwest::Method::POST,
                    &format!("/packages/{id}/audit"),
                    Some(json!({"result": "pass"})),
                )
                .await;
            assert_eq!(st, 200, "{v}");
        }
    };
    pass(v1).await;
    let v = baidu(&sb, &token, "release", &[("package_id", &v1.to_string())]).await;
    assert_eq!(v["errno"], 0, "{v}");
    let v2 = submitted(&sb, &token, app_id, "Bakery 面包店", "2.0.0").await;
    pass(v2).await;
    let (st, v) = sb
        .admin(
            reqwest::Method::POST,
            &format!("/packages/{v2}/plan"),
            Some(json!({"steps": "10,50,100", "min_devices": 200})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, h) = sb
        .admin(
            reqwest::Method::POST,
            "/host-apps",
            Some(json!({"name": "phone app"})),
        )
        .await;
    assert_eq!(st, 201, "{h}");
    let host = (
        h["host_key"].as_str().expect("key").to_string(),
        h["host_secret"].as_str().expect("secret").to_string(),
    );
    // The new version crashes on one device in ten; the old one on one in two hundred.
    report(&sb, &host, app_id, v1, 800, 4).await;
    report(&sb, &host, app_id, v2, 400, 40).await;
    let start = Instant::now();
    loop {
        let (_, p) = sb
            .admin(reqwest::Method::GET, &format!("/packages/{v2}"), None)
            .await;
        if p["gray_status"] == "halted" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never halted: {p}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let base = sb.base_url.clone();
    let (_driver, url) = start_driver(&path).await;
    let c = browser(&url).await;
    sign_in(&c, &base, "olga").await;
    // The dashboard leads with the halted release and why.
    let page = text(&c).await;
    assert!(
        page.contains("Staged releases") && page.contains("halted"),
        "{page}"
    );
    assert!(page.contains("launching devices"), "{page}");
    shot(&c, "20-dashboard-halted-release").await;
    // The mini program's page: the plan, the halt with its figures, both charts.
    c.goto(&format!("{base}/console/apps/{app_id}#health"))
        .await
        .expect("app page");
    let page = wait_for_text(&c, "Release health").await;
    assert!(
        page.contains("Halted:") && page.contains("10.00% of"),
        "{page}"
    );
    let charts = c
        .find_all(Locator::Css("figure.chart svg"))
        .await
        .expect("charts");
    assert_eq!(charts.len(), 2);
    for (i, chart) in c
        .find_all(Locator::Css("figure.chart"))
        .await
        .expect("figures")
        .iter()
        .enumerate()
    {
        let arg = serde_json::to_value(chart).expect("element as an argument");
        c.execute("arguments[0].scrollIntoView()", vec![arg])
            .await
            .expect("scroll");
        let png = chart.screenshot().await.expect("chart screenshot");
        std::fs::write(shots_dir().join(format!("22-health-chart-{i}.png")), png).expect("write");
    }
    // The figures as a table, for screen readers and without images.
    click(&c, Locator::Css("figure.chart details summary")).await;
    let table = c
        .find(Locator::Css("figure.chart details table"))
        .await
        .expect("table")
        .text()
        .await
        .expect("text");
    assert!(
        table.contains("1.0.0 (#") && table.contains("2.0.0 (#") && table.contains('%'),
        "{table}"
    );
    c.execute("document.getElementById('health').scrollIntoView()", vec![])
        .await
        .expect("scroll");
    shot(&c, "21-release-health").await;
    // Resume: the plan runs again at its step.
    click(&c, Locator::Css("form input[value=resume] ~ button")).await;
    wait_for_text(&c, "running").await;
    let (_, p) = sb
        .admin(reqwest::Method::GET, &format!("/packages/{v2}"), None)
        .await;
    assert_eq!(
        (p["gray_status"].as_str(), p["staged_percent"].as_i64()),
        (Some("running"), Some(10)),
        "{p}"
    );
    c.execute("document.getElementById('health').scrollIntoView()", vec![])
        .await
        .expect("scroll");
    shot(&c, "23-release-resumed").await;
    c.close().await.expect("close");
    sb.stop().await;
}
