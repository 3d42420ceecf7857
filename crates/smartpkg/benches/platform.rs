//! Platform benchmarks (`cargo bench -p smartpkg --bench platform`). Each figure is a ratio
//! against a baseline measured in the same run, on the same machine and disk, because these
//! machines are noisy. Everything talks to 127.0.0.1 only, and every loop is bounded.
//!
//! 1. `package/get` throughput at 32 connections with 10,000 apps, ÷ a trivial handler
//!    (`/healthz`) on the same server stack.
//! 2. Complete lifecycles per second (upload → built → submitaudit → pass → release) for
//!    1,000 apps with the build delay at 0, ÷ raw durable SQLite commits per second.
//! 3. Bytes of storage added per package built from a 5 MB, 500-file template.
//! 5. Peak memory (VmHWM) of the process, which holds the server and the load generator.
//! 4. Pushes per second to a local receiver that answers `success`: end to end while 16
//!    reviewers decide, and the push path alone (10,000 queued deliveries due at once); and
//!    the latency from an audit decision to the receiver's decryption of it (p50, p99).
//! 6. On PostgreSQL (a fresh database on the local server): `package/get` ÷ the trivial
//!    handler; lifecycles per second on SQLite, on one PostgreSQL instance and on three
//!    sharing the database (one connection budget), in rounds that run all three back to
//!    back, each ratio the median of the rounds' own.
//! 7. The WeChat dialect: lifecycles per second (commit → built → submit_audit → pass →
//!    release) ÷ the Baidu dialect's on the same server, in alternating rounds on fresh apps;
//!    and push sealing (a rendered audit result, encrypted and enveloped) per second, WeChat's
//!    XML ÷ Baidu's JSON, in process. `SPKG_BENCH_ONLY=wechat` runs only these.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Client;
use serde_json::{json, Value};
use smartpkg_server::{secrets, Running, Settings};

mod common;
use common::{big_template, contains, seed_apps, Ratios};

const ADMIN: &str = "bench-admin-token-0123456789";
const APPS: usize = 10_000;
const CONNECTIONS: usize = 32;
const LOAD_SECONDS: u64 = 2;
const ROUNDS: usize = 5;
/// `SPKG_BENCH_ONLY=get` stops after the first figure; `=push` measures only the pushes (4);
/// `=storage` measures only the
/// lifecycles on SQLite and everything on PostgreSQL; `=pg-get` only `package/get` on
/// PostgreSQL, `=pg-life` only the lifecycles on PostgreSQL (for quick iterations and
/// profiles).
fn only(what: &str) -> bool {
    std::env::var("SPKG_BENCH_ONLY").is_ok_and(|v| v == what)
}

fn only_get() -> bool {
    only("get")
}
const LIFECYCLE_APPS: usize = 1_000;
/// Rounds of (one instance, three instances) on PostgreSQL, each on fresh apps.
const LIFECYCLE_ROUNDS: usize = 4;
/// Pool connections to PostgreSQL however many instances share the database.
const PG_POOL: u32 = 12;

/// An instance's connection budget for `pool` pool connections: the pool plus `get`'s own
/// two (which the lifecycles never open: they do not call `get`), so that one instance and
/// three run on the same 12 pool connections in all.
fn pg_budget(pool: u32) -> u32 {
    pool + 2
}
const LIFECYCLE_CONCURRENCY: usize = 32;
const STORAGE_PACKAGES: usize = 200;
const PUSH_EVENTS: usize = 10_000;
const PUSH_LATENCY_EVENTS: usize = 500;
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

// The same allocator as the `smartpkg` binary, so the server measured is the one shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::Res;

fn settings(dir: &Path) -> Settings {
    let mut s = Settings {
        admin_token: Some(ADMIN.into()),
        build_delay_ms: 0,
        rollback_delay_ms: 0,
        app_token_ttl_s: 86_400,
        allow_private_targets: true,
        job_concurrency: 16,
        // Every benchmark push goes to one third party's receiver: let it take the whole
        // lane (the default cap of 4 per third party is for fairness among many).
        push_per_target: 64,
        // The benchmark measures capacity, not policy: one third party drives 1,000 apps.
        app_writes_per_minute: 0,
        tp_writes_per_minute: 0,
        // The load generator is one address standing for many clients.
        max_connections_per_client: 4096,
        // Capacity, not policy: the byte budgets are off as the call limits are, and so is
        // WeChat's monthly audit quota (Baidu's is unlimited by default).
        app_upload_bytes_per_window: 0,
        tp_upload_bytes_per_window: 0,
        wechat_audit_quota_per_month: -1,
        // The harness's test settings underneath (tests and benchmarks start alike).
        ..smartpkg_testkit::platform::test_settings(dir)
    };
    s.max_template_ratio = 1000;
    s
}

struct Api {
    base: String,
    client: Client,
}

impl Api {
    fn new(r: &Running) -> Api {
        Api {
            base: format!("http://{}", r.addr),
            client: Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
        }
    }

    async fn admin(&self, path: &str, body: Value) -> Res<Value> {
        Ok(self
            .client
            .post(format!("{}/admin/v1{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await?
            .json()
            .await?)
    }

    /// A new third party and a one-page template of it: (tp, template).
    async fn tp_with_template(&self, name: &str) -> Res<(i64, i64)> {
        let tp = self.admin("/tps", json!({"name": name})).await?;
        let tp_id = tp["tp_id"].as_i64().ok_or("tp")?;
        let zip = smartpkg_core::archive::sample_template(&["pages/index/index"])?;
        Ok((tp_id, self.template(tp_id, zip).await?))
    }

    async fn template(&self, tp_id: i64, zip: Vec<u8>) -> Res<i64> {
        let v: Value = self
            .client
            .post(format!(
                "{}/admin/v1/tps/{tp_id}/templates?user_version=1&user_desc=bench",
                self.base
            ))
            .bearer_auth(ADMIN)
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .await?
            .json()
            .await?;
        v["template_id"]
            .as_i64()
            .ok_or_else(|| format!("template upload failed: {v}").into())
    }

    async fn call(&self, token: &str, endpoint: &str, params: &[(&str, &str)]) -> Res<Value> {
        Ok(self
            .client
            .post(format!(
                "{}/rest/2.0/smartapp/package/{endpoint}",
                self.base
            ))
            .query(&[("access_token", token)])
            .form(params)
            .send()
            .await?
            .json()
            .await?)
    }
}

/// Requests per second over `LOAD_SECONDS` from `CONNECTIONS` concurrent callers.
async fn load(api: &Arc<Api>, tokens: Option<Arc<Vec<(i64, String)>>>) -> Res<f64> {
    let api = api.clone();
    common::rate(CONNECTIONS, LOAD_SECONDS, move || {
        let (api, tokens) = (api.clone(), tokens.clone());
        async move {
            // Both loads read the whole body and check it, so the client does comparable
            // work for either; `get` must really return the app's online package.
            match &tokens {
                None => match api.client.get(format!("{}/healthz", api.base)).send().await {
                    Ok(r) => r.bytes().await.is_ok_and(|b| &b[..] == b"ok"),
                    Err(_) => false,
                },
                Some(t) => {
                    let token = t[rand::thread_rng().gen_range(0..t.len())].1.clone();
                    let url = format!(
                        "{}/rest/2.0/smartapp/package/get?access_token={token}",
                        api.base
                    );
                    match api.client.get(url).send().await {
                        Ok(r) => r.bytes().await.is_ok_and(|b| {
                            b.starts_with(br#"{"errno":0,"#) && contains(&b, br#""status":1,"#)
                        }),
                        Err(_) => false,
                    }
                }
            }
        }
    })
    .await
}

/// `package/get` and the trivial handler in paired rounds: (mean get, mean trivial, ratios).
async fn get_rounds(
    api: &Arc<Api>,
    tokens: &Arc<Vec<(i64, String)>>,
    rounds: usize,
) -> Res<(f64, f64, Ratios)> {
    let (mut trivial, mut get, mut ratios) = (0.0, 0.0, Ratios::default());
    for _ in 0..rounds {
        let t = load(api, None).await?;
        let g = load(api, Some(tokens.clone())).await?;
        ratios.push(g, t);
        trivial += t / rounds as f64;
        get += g / rounds as f64;
    }
    Ok((get, trivial, ratios))
}

/// Durable single-row commits per second on the same disk, same pragmas as the server.
fn raw_commits_per_second(dir: &Path) -> Res<f64> {
    let conn = rusqlite::Connection::open(dir.join("raw-baseline.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
    let n = 2_000;
    let start = Instant::now();
    for i in 0..n {
        conn.execute("INSERT INTO t (id, v) VALUES (?1, 'x')", [i])?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn lifecycle(api: &Api, token: &str, template_id: &str, app_id: i64) -> Res<()> {
    let ext = format!(r#"{{"extEnable":true,"extAppid":{app_id}}}"#);
    let v = api
        .call(
            token,
            "upload",
            &[
                ("template_id", template_id),
                ("ext_json", &ext),
                ("user_version", "2.0.0"),
                ("user_desc", "b"),
            ],
        )
        .await?;
    if v["errno"] != 0 {
        return Err(format!("upload: {v}").into());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let v = api.call(token, "getdetail", &[("type", "3")]).await?;
        if let Some(id) = v["data"]["package_id"].as_i64() {
            break id.to_string();
        }
        if Instant::now() > deadline {
            return Err(format!("build did not finish: {v}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let v = api
        .call(
            token,
            "submitaudit",
            &[("package_id", &id), ("content", "c")],
        )
        .await?;
    if v["errno"] != 0 {
        return Err(format!("submitaudit: {v}").into());
    }
    let v = api
        .admin(&format!("/packages/{id}/audit"), json!({"result": "pass"}))
        .await?;
    if v["status"] != 6 {
        return Err(format!("audit: {v}").into());
    }
    let v = api.call(token, "release", &[("package_id", &id)]).await?;
    if v["errno"] != 0 {
        return Err(format!("release: {v}").into());
    }
    Ok(())
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

async fn run() -> Res<()> {
    let dir = tempfile::tempdir_in(std::env::var("SPKG_BENCH_DIR").unwrap_or_else(|_| ".".into()))?;
    println!(
        "smartpkg platform benchmark (data in {})",
        dir.path().display()
    );
    if only("pg-get") || only("pg-life") {
        return pg_bench(dir.path()).await;
    }
    if only("wechat") {
        return wechat_bench(dir.path()).await;
    }

    // --- setup: a TP and a small template, then 10,000 apps seeded in bulk ---
    let t = Instant::now();
    let (tp_id, template_id, tokens) = sqlite_fleet(dir.path(), "bench", APPS).await?;
    let tokens = Arc::new(tokens);
    println!(
        "seeded {APPS} apps with an online package each in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    if only("push") {
        return push_bench(dir.path(), tp_id, template_id, &tokens).await;
    }
    // --- 1. get vs a trivial handler, same server, same run ---
    let server = smartpkg_server::start(settings(dir.path())).await?;
    let api = Arc::new(Api::new(&server));
    // Alternate the two loads so drift in the machine's speed hits both alike.
    let rounds = if only("storage") { 0 } else { ROUNDS };
    let (get, trivial, ratios) = get_rounds(&api, &tokens, rounds).await?;
    println!("[1] package/get, {CONNECTIONS} connections, {APPS} apps: {get:.0} req/s; trivial handler: {trivial:.0} req/s (means of {rounds} rounds of {LOAD_SECONDS} s each); ratio {} (goal >= 0.5)", ratios.describe());
    if only_get() {
        server.stop().await;
        return Ok(());
    }

    // --- 2. lifecycles per second vs raw durable commits ---
    let raw = raw_commits_per_second(dir.path())?;
    let tid = template_id.to_string();
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = vec![];
    for _ in 0..LIFECYCLE_CONCURRENCY {
        let (api, tokens, next, tid) = (api.clone(), tokens.clone(), next.clone(), tid.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= LIFECYCLE_APPS {
                    return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
                }
                let (app_id, token) = &tokens[i];
                lifecycle(&api, token, &tid, *app_id).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let lps = LIFECYCLE_APPS as f64 / start.elapsed().as_secs_f64();
    println!("[2] lifecycles (upload→built→submitaudit→pass→release), {LIFECYCLE_APPS} apps, build delay 0: {lps:.1}/s; raw durable SQLite commits: {raw:.0}/s; ratio {:.4} ({:.1} commits' time per lifecycle)", lps / raw, raw / lps);
    server.stop().await;
    if only("storage") {
        return pg_bench(dir.path()).await;
    }

    // --- 3. storage per package from a 5 MB, 500-file template ---
    let server = smartpkg_server::start(settings(dir.path())).await?;
    let api = Arc::new(Api::new(&server));
    let big = big_template()?;
    let big_len = big.len();
    let big_id = api.template(tp_id, big).await?.to_string();
    server.stop().await;
    let before = dir_bytes(dir.path());
    let server = smartpkg_server::start(settings(dir.path())).await?;
    let api = Arc::new(Api::new(&server));
    for (_, token) in tokens.iter().skip(LIFECYCLE_APPS).take(STORAGE_PACKAGES) {
        let v = api
            .call(
                token,
                "upload",
                &[
                    ("template_id", &big_id),
                    ("ext_json", r#"{"extEnable":true,"ext":{"shop":"bench"}}"#),
                    ("user_version", "3.0.0"),
                    ("user_desc", "big"),
                ],
            )
            .await?;
        if v["errno"] != 0 {
            return Err(format!("upload: {v}").into());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for (_, token) in tokens.iter().skip(LIFECYCLE_APPS).take(STORAGE_PACKAGES) {
        loop {
            let v = api.call(token, "getdetail", &[("type", "3")]).await?;
            if v["data"]["package_id"].is_i64() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("big build did not finish: {v}").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    server.stop().await;
    let after = dir_bytes(dir.path());
    let per = (after.saturating_sub(before)) as f64 / STORAGE_PACKAGES as f64;
    println!("[3] storage per package built from a {:.1} MB, 500-file template: {per:.0} bytes ({:.2} KiB; goal <= 16 KiB) over {STORAGE_PACKAGES} packages", big_len as f64 / 1e6, per / 1024.0);

    // --- 5. pushes: throughput and decision-to-receipt latency ---
    push_bench(dir.path(), tp_id, template_id, &tokens).await?;

    // --- 6. PostgreSQL: get, and lifecycles with one and three instances ---
    pg_bench(dir.path()).await?;

    println!(
        "[5] peak memory (VmHWM) of the process (server + load generator): {:.1} MiB",
        peak_rss_kib() as f64 / 1024.0
    );
    Ok(())
}

/// Authorized apps with an online package each, straight into PostgreSQL (the API would spend
/// minutes hashing owner passwords). Returns (app_id, access token) pairs.
async fn seed_pg(url: &str, tp_id: i64, template_id: i64, n: usize) -> Res<Vec<(i64, String)>> {
    let pool = sqlx::PgPool::connect(url).await?;
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(app_id), 0) + 1 FROM apps")
        .fetch_one(&pool)
        .await?;
    let ids: Vec<i64> = (first..first + n as i64).collect();
    let tokens: Vec<String> = ids.iter().map(|_| secrets::access_token("45")).collect();
    let hashes: Vec<String> = tokens.iter().map(|t| secrets::sha256_hex(t)).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO apps (app_id, app_key, name, name_audited, category_audited, authenticity_certified, tp_id, created_at, wx_appid) \
         SELECT id, 'key' || id, 'bench app ' || id, TRUE, TRUE, TRUE, $2, 0, 'wx' || lpad(to_hex(id), 16, '0') FROM UNNEST($1::BIGINT[]) AS id",
    )
    .bind(&ids)
    .bind(tp_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT setval('apps_app_id_seq', (SELECT MAX(app_id) FROM apps))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO access_tokens (token_hash, kind, tp_id, app_id, expires_at, created_at) \
         SELECT h, 'app', $3, id, $4, 0 FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS t(h, id)",
    )
    .bind(&hashes)
    .bind(&ids)
    .bind(tp_id)
    .bind(i64::MAX)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, version_desc, ext_json, built_ext_json, direct_commit, msg, commit_time, updated_at) \
         SELECT nextval('package_ids'), id, $2, $3, 'online', '1.0.0', 'seeded', '{}', '{}', FALSE, '审核通过', 0, 0 FROM UNNEST($1::BIGINT[]) AS id",
    )
    .bind(&ids)
    .bind(tp_id)
    .bind(template_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    pool.close().await;
    Ok(ids.into_iter().zip(tokens).collect())
}

/// Lifecycles per second for `apps`, their workers spread round-robin over `apis`.
async fn lifecycles_over(apis: &[Arc<Api>], apps: &[(i64, String)], template_id: i64) -> Res<f64> {
    let apps = Arc::new(apps.to_vec());
    let tid = template_id.to_string();
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = vec![];
    for w in 0..LIFECYCLE_CONCURRENCY {
        let (api, apps, next, tid) = (
            apis[w % apis.len()].clone(),
            apps.clone(),
            next.clone(),
            tid.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= apps.len() {
                    return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
                }
                let (app_id, token) = &apps[i];
                lifecycle(&api, token, &tid, *app_id).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(apps.len() as f64 / start.elapsed().as_secs_f64())
}

async fn pg_bench(dir: &Path) -> Res<()> {
    let db = smartpkg_store_postgres::testing::FreshDatabase::create().await?;
    let pg_dir = dir.join("pg");
    // One pool budget for the database however many instances share it: 12 for one
    // instance, 4 each for three (PostgreSQL runs on the same two cores as everything else,
    // where more backends than that only add switching: see docs/storage.md).
    let pg_settings = |connections: u32| {
        let mut s = settings(&pg_dir);
        s.database_url = Some(db.url.clone());
        s.database_max_connections = connections;
        s
    };
    let first = smartpkg_server::start(pg_settings(pg_budget(PG_POOL))).await?;
    let api = Arc::new(Api::new(&first));
    let (tp_id, template_id) = api.tp_with_template("bench pg").await?;
    let t = Instant::now();
    let tokens = Arc::new(seed_pg(&db.url, tp_id, template_id, APPS).await?);
    println!(
        "seeded {APPS} apps into PostgreSQL in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // `=pg-life` skips this figure, and says so rather than printing a ratio of no rounds.
    if only("pg-life") {
        println!("[6a] package/get on PostgreSQL: skipped (SPKG_BENCH_ONLY=pg-life)");
    } else {
        let (get, trivial, ratios) = get_rounds(&api, &tokens, ROUNDS).await?;
        println!("[6a] package/get on PostgreSQL, {CONNECTIONS} connections, {APPS} apps: {get:.0} req/s; trivial handler: {trivial:.0} req/s (means); ratio {} (goal >= 0.3)", ratios.describe());
    }
    if only("pg-get") {
        first.stop().await;
        return Ok(());
    }
    first.stop().await;
    // SQLite beside it, on its own data directory and fresh apps, so that every round
    // measures all three stores back to back (the machine's speed drifts between minutes).
    let sq_dir = dir.join("sqlite-rounds");
    std::fs::create_dir_all(&sq_dir)?;
    let (_, sq_template, sq_apps) =
        sqlite_fleet(&sq_dir, "bench rounds", LIFECYCLE_APPS * LIFECYCLE_ROUNDS).await?;
    // Rounds of SQLite, one PostgreSQL instance, three; each on fresh apps.
    let (mut sqlite, mut one, mut three) = (0.0, 0.0, 0.0);
    let (mut one_ratios, mut three_ratios) = (Ratios::default(), Ratios::default());
    let mut fresh = tokens.chunks(LIFECYCLE_APPS);
    for (round, sq_chunk) in sq_apps.chunks(LIFECYCLE_APPS).enumerate() {
        let (Some(a), Some(b)) = (fresh.next(), fresh.next()) else {
            return Err("not enough seeded apps for the lifecycle rounds".into());
        };
        // Every other round runs in reverse order, so that a database growing over the run
        // (or a machine slowing) does not always fall on the same store.
        let mut order = [Store::Sqlite, Store::One, Store::Three];
        if round % 2 == 1 {
            order.reverse();
        }
        let (mut s, mut o, mut t) = (0.0, 0.0, 0.0);
        for store in order {
            match store {
                Store::Sqlite => {
                    let embedded = smartpkg_server::start(settings(&sq_dir)).await?;
                    let apis = [Arc::new(Api::new(&embedded))];
                    s = lifecycles_over(&apis, sq_chunk, sq_template).await?;
                    embedded.stop().await;
                }
                Store::One => {
                    let single = smartpkg_server::start(pg_settings(pg_budget(PG_POOL))).await?;
                    o = lifecycles_over(&[Arc::new(Api::new(&single))], a, template_id).await?;
                    single.stop().await;
                }
                Store::Three => {
                    let each = pg_budget(PG_POOL / 3);
                    let servers = [
                        smartpkg_server::start(pg_settings(each)).await?,
                        smartpkg_server::start(pg_settings(each)).await?,
                        smartpkg_server::start(pg_settings(each)).await?,
                    ];
                    let apis: Vec<Arc<Api>> =
                        servers.iter().map(|r| Arc::new(Api::new(r))).collect();
                    t = lifecycles_over(&apis, b, template_id).await?;
                    for server in servers {
                        server.stop().await;
                    }
                }
            }
        }
        one_ratios.push(o, s);
        three_ratios.push(t, o);
        sqlite += s / LIFECYCLE_ROUNDS as f64;
        one += o / LIFECYCLE_ROUNDS as f64;
        three += t / LIFECYCLE_ROUNDS as f64;
    }
    println!("[6b] lifecycles, {LIFECYCLE_APPS} apps per run, {LIFECYCLE_CONCURRENCY} callers, PostgreSQL pool connections {PG_POOL} for one instance and {} per instance for three (each instance also has its get reader); means of {LIFECYCLE_ROUNDS} rounds, each SQLite, one instance, three; ratios are medians of each round's own:", PG_POOL / 3);
    println!("     | storage                     | lifecycles/s | ratio");
    println!("     | SQLite                      | {sqlite:>12.1} |");
    println!(
        "     | PostgreSQL, one instance    | {one:>12.1} | x SQLite: {} (goal >= 0.5)",
        one_ratios.describe()
    );
    println!(
        "     | PostgreSQL, three instances | {three:>12.1} | x one instance: {} (goal >= 1)",
        three_ratios.describe()
    );
    Ok(())
}

/// A third party with a small template and `n` authorized apps with an online package each
/// in an SQLite data directory (the server stopped again): (tp, template, (app, token)s).
async fn sqlite_fleet(dir: &Path, name: &str, n: usize) -> Res<(i64, i64, Vec<(i64, String)>)> {
    let server = smartpkg_server::start(settings(dir)).await?;
    let (tp_id, template_id) = Api::new(&server).tp_with_template(name).await?;
    server.stop().await;
    let apps = seed_apps(&dir.join("smartpkg.db"), tp_id, template_id, n)?;
    Ok((tp_id, template_id, apps))
}

/// The stores a lifecycle round runs on.
#[derive(Clone, Copy)]
enum Store {
    Sqlite,
    One,
    Three,
}

/// Inserts an auditing package for each seeded app (server stopped), returning their ids.
fn seed_auditing(db: &Path, tp_id: i64, template_id: i64, apps: &[(i64, String)]) -> Res<Vec<i64>> {
    let mut conn = rusqlite::Connection::open(db)?;
    let tx = conn.transaction()?;
    let first: i64 = tx.query_row(
        "SELECT COALESCE(MAX(package_id), 0) + 1 FROM packages",
        [],
        |r| r.get(0),
    )?;
    let mut ids = vec![];
    for (i, (app_id, _)) in apps.iter().enumerate() {
        let id = first + i as i64;
        tx.execute(
            "INSERT INTO packages (package_id, app_id, tp_id, template_id, state, version, version_desc, ext_json, built_ext_json, direct_commit, commit_time, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 'auditing', '9.0.0', 'push bench', '{}', '{}', 0, 0, 0)",
            rusqlite::params![id, app_id, tp_id, template_id],
        )?;
        ids.push(id);
    }
    tx.commit()?;
    Ok(ids)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn push_bench(dir: &Path, tp_id: i64, template_id: i64, tokens: &[(i64, String)]) -> Res<()> {
    use smartpkg_testkit::{Answer, Keys, Receiver};
    let server = smartpkg_server::start(settings(dir)).await?;
    let api = Api::new(&server);
    let v: Value = api
        .client
        .patch(format!("{}/admin/v1/tps/{tp_id}", api.base))
        .bearer_auth(ADMIN)
        .json(&json!({"msg_token": "bench", "encoding_aes_key": AES_KEY}))
        .send()
        .await?
        .json()
        .await?;
    let client_id = v["client_id"].as_str().ok_or("client_id")?.to_string();
    let keys = Keys {
        encoding_aes_key: AES_KEY.into(),
        token: "bench".into(),
        client_id,
    };
    let receiver = Receiver::start("127.0.0.1:0".parse()?, keys, |_| Answer::Success).await?;
    api.client
        .patch(format!("{}/admin/v1/tps/{tp_id}", api.base))
        .bearer_auth(ADMIN)
        .json(&json!({"event_url": receiver.url()}))
        .send()
        .await?;
    server.stop().await;
    let ids = seed_auditing(
        &dir.join("smartpkg.db"),
        tp_id,
        template_id,
        &tokens[..PUSH_EVENTS],
    )?;
    let server = smartpkg_server::start(settings(dir)).await?;
    let api = Arc::new(Api::new(&server));

    // Throughput: decide the first events as fast as 16 reviewers can, while pushes flow.
    let bulk = &ids[..PUSH_EVENTS - PUSH_LATENCY_EVENTS];
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let bulk_ids = Arc::new(bulk.to_vec());
    let mut reviewers = vec![];
    for _ in 0..16 {
        let (api, next, bulk_ids) = (api.clone(), next.clone(), bulk_ids.clone());
        reviewers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = bulk_ids.get(i) else {
                    return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
                };
                let v = api
                    .admin(&format!("/packages/{id}/audit"), json!({"result": "pass"}))
                    .await?;
                if v["status"] != 6 {
                    return Err(format!("audit: {v}").into());
                }
            }
        }));
    }
    for r in reviewers {
        r.await??;
    }
    let decided = start.elapsed().as_secs_f64();
    receiver
        .wait_for(bulk.len(), Duration::from_secs(300))
        .await;
    let all = start.elapsed().as_secs_f64();
    println!(
        "[4a] pushes to a local receiver answering success: {} events delivered in {all:.2} s = {:.0} pushes/s (decisions alone took {decided:.2} s = {:.0}/s; goal >= 1000 pushes/s)",
        bulk.len(),
        bulk.len() as f64 / all,
        bulk.len() as f64 / decided
    );

    // Latency: one decision at a time, nothing else running; from sending the decision to
    // the receiver having decrypted the event.
    let mut sent_at = std::collections::HashMap::new();
    for id in &ids[PUSH_EVENTS - PUSH_LATENCY_EVENTS..] {
        sent_at.insert(*id, Instant::now());
        api.admin(&format!("/packages/{id}/audit"), json!({"result": "pass"}))
            .await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = receiver
        .wait_for(PUSH_EVENTS, Duration::from_secs(120))
        .await;
    let mut lat: Vec<f64> = got
        .iter()
        .filter_map(|g| {
            let id = g.event.as_ref()?["packageId"].as_i64()?;
            Some(g.at.duration_since(*sent_at.get(&id)?).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "[4b] decision-to-receipt latency over {} sequential decisions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p99 <= 100 ms)",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    if got.iter().any(|g| !g.signature_ok) {
        return Err("a push failed its signature check".into());
    }
    server.stop().await;

    // The push path alone: 10,000 deliveries already queued (as decisions would have left
    // them), all due at one moment; from that moment to the last receipt.
    let due_in = Duration::from_secs(3);
    // The same moment on both clocks: the jobs' run_at (wall clock) and the receipts' Instant.
    let (due, due_at_ms) = (
        Instant::now() + due_in,
        now_ms() + due_in.as_millis() as i64,
    );
    seed_pending_pushes(
        &dir.join("smartpkg.db"),
        tp_id,
        &tokens[..PUSH_EVENTS],
        due_at_ms,
    )?;
    let server = smartpkg_server::start(settings(dir)).await?;
    let before = receiver.received().len();
    let got = receiver
        .wait_for(before + PUSH_EVENTS, Duration::from_secs(300))
        .await;
    let last = got.iter().map(|g| g.at).max().ok_or("no receipts")?;
    let secs = last.saturating_duration_since(due).as_secs_f64();
    println!(
        "[4c] push path alone (one receiver, push_per_target 64): {PUSH_EVENTS} queued deliveries, all due at once, delivered in {secs:.2} s = {:.0} pushes/s (goal >= 1000 pushes/s)",
        PUSH_EVENTS as f64 / secs
    );
    server.stop().await;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Queues one audit-pass event per app with its delivery and push job, due at `due_at_ms`,
/// exactly as the decision transaction writes them (server stopped).
fn seed_pending_pushes(db: &Path, tp_id: i64, apps: &[(i64, String)], due_at_ms: i64) -> Res<()> {
    let mut conn = rusqlite::Connection::open(db)?;
    let tx = conn.transaction()?;
    let url: String = tx.query_row("SELECT event_url FROM tps WHERE tp_id = ?1", [tp_id], |r| {
        r.get(0)
    })?;
    for (i, (app_id, _)) in apps.iter().enumerate() {
        let package_id = 1_000_000 + i as i64;
        tx.execute(
            "INSERT INTO events (uid, tp_id, app_id, package_id, event, package_version, created_at, channel) \
             VALUES (?1, ?2, ?3, ?4, 'PACKAGE_AUDIT_PASS', '9.9.9', ?5, 'event')",
            rusqlite::params![format!("bench{i:08}"), tp_id, app_id, package_id, due_at_ms],
        )?;
        let event_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO deliveries (event_id, tp_id, url, state, next_attempt_at, created_at) VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
            rusqlite::params![event_id, tp_id, url, due_at_ms],
        )?;
        let delivery_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO jobs (kind, package_id, delivery_id, run_at, created_at, target) VALUES ('push', ?1, ?2, ?3, ?3, ?4)",
            rusqlite::params![package_id, delivery_id, due_at_ms, tp_id],
        )?;
    }
    tx.commit()?;
    Ok(())
}

const WX_APPS_PER_BATCH: usize = 500;
const WX_ROUNDS: usize = 6;
const SEALS: usize = 20_000;
const SEAL_ROUNDS: usize = 9;

impl Api {
    /// A WeChat-dialect call with the authorizer's token; the answer's fields.
    async fn wx(&self, path: &str, token: &str, body: Option<Value>) -> Res<Value> {
        let url = format!("{}/wxa/{path}", self.base);
        let req = match body {
            Some(b) => self.client.post(url).json(&b),
            None => self.client.get(url),
        };
        Ok(req
            .query(&[("access_token", token)])
            .send()
            .await?
            .json()
            .await?)
    }
}

/// The WeChat dialect's lifecycle, the same work as [`lifecycle`] in WeChat's calls.
async fn wechat_lifecycle(api: &Api, token: &str, template_id: i64, app_id: i64) -> Res<()> {
    let ext = json!({"extEnable": true, "extAppid": format!("wx{app_id:016x}")}).to_string();
    let body = json!({"template_id": template_id, "ext_json": ext, "user_version": "2.0.0", "user_desc": "b"});
    let v = api.wx("commit", token, Some(body)).await?;
    if v["errcode"] != 0 {
        return Err(format!("commit: {v}").into());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = api.wx("get_page", token, None).await?;
        if v["errcode"] == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("build did not finish: {v}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let v = api.wx("submit_audit", token, Some(json!({}))).await?;
    let id = v["auditid"]
        .as_i64()
        .ok_or_else(|| format!("submit_audit: {v}"))?;
    let v = api
        .admin(&format!("/packages/{id}/audit"), json!({"result": "pass"}))
        .await?;
    if v["status"] != 6 {
        return Err(format!("audit: {v}").into());
    }
    let v = api.wx("release", token, Some(json!({}))).await?;
    if v["errcode"] != 0 {
        return Err(format!("release: {v}").into());
    }
    Ok(())
}

/// Lifecycles per second over `apps`, `LIFECYCLE_CONCURRENCY` at a time, in one dialect, and
/// the CPU time (server and callers, this process) each took, in ms: unlike the rate, which
/// waits on the disk's syncs, it does not move when the disk has a slow minute.
async fn lifecycles_in(
    api: &Arc<Api>,
    apps: &[(i64, String)],
    template_id: i64,
    wechat: bool,
) -> Res<(f64, f64)> {
    let apps = Arc::new(apps.to_vec());
    let cpu = common::cpu_seconds();
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = vec![];
    for _ in 0..LIFECYCLE_CONCURRENCY {
        let (api, apps, next) = (api.clone(), apps.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((app_id, token)) = apps.get(i) else {
                    return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
                };
                if wechat {
                    wechat_lifecycle(&api, token, template_id, *app_id).await?;
                } else {
                    lifecycle(&api, token, &template_id.to_string(), *app_id).await?;
                }
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let n = apps.len() as f64;
    Ok((
        n / start.elapsed().as_secs_f64(),
        (common::cpu_seconds() - cpu) * 1000.0 / n,
    ))
}

/// Seals `SEALS` audit results as a push to a third party would carry them; per second.
fn seal_rate(wechat: bool) -> Res<f64> {
    use smartpkg_push::{seal, wechat as wx, Sealing};
    let start = Instant::now();
    for i in 0..SEALS {
        let nonce = (1_000_000 + i).to_string();
        let s = Sealing {
            encoding_aes_key: AES_KEY,
            token: "bench-token",
            client_id: "wx0123456789abcdef",
            random16: [7; 16],
            timestamp: "1700000000",
            nonce: &nonce,
        };
        let body = if wechat {
            let msg = wx::message(&[
                ("ToUserName", wx::Field::Text("gh_0123456789ab")),
                ("FromUserName", wx::Field::Text("wx0123456789abcdef")),
                ("CreateTime", wx::Field::Number(1_700_000_000)),
                ("MsgType", wx::Field::Text("event")),
                ("Event", wx::Field::Text("weapp_audit_success")),
                ("SuccTime", wx::Field::Number(1_700_000_000)),
            ]);
            wx::seal(&msg, &s, wx::Addressee::ToUserName("gh_0123456789ab"))?.body
        } else {
            let msg = serde_json::to_string(&smartpkg_types::push::AuditResultPush {
                app_id: 1_452_365,
                tp_app_id: 17,
                event_time: "2023-11-15 06:13:20".into(),
                event: smartpkg_types::push::AUDIT_PASS.into(),
                reason: None,
                package_id: i as i64,
                package_version: "2.0.0".into(),
            })?;
            serde_json::to_string(&seal(&msg, &s)?)?
        };
        std::hint::black_box(body);
    }
    Ok(SEALS as f64 / start.elapsed().as_secs_f64())
}

async fn wechat_bench(dir: &Path) -> Res<()> {
    let n = WX_APPS_PER_BATCH * 2 * WX_ROUNDS;
    let (_, template_id, apps) = sqlite_fleet(dir, "wx", n).await?;
    let server = smartpkg_server::start(settings(dir)).await?;
    let api = Arc::new(Api::new(&server));
    let mut ratios = Ratios::default();
    let mut cpu_ratios = Ratios::default();
    let (mut baidu_sum, mut wx_sum, mut baidu_cpu, mut wx_cpu) = (0.0, 0.0, 0.0, 0.0);
    for (round, batch) in apps.chunks(WX_APPS_PER_BATCH * 2).enumerate() {
        let (a, b) = batch.split_at(WX_APPS_PER_BATCH);
        // Alternate which dialect goes first, so drift in the machine hits both alike.
        let (baidu, wx) = if round % 2 == 0 {
            let baidu = lifecycles_in(&api, a, template_id, false).await?;
            (baidu, lifecycles_in(&api, b, template_id, true).await?)
        } else {
            let wx = lifecycles_in(&api, a, template_id, true).await?;
            (lifecycles_in(&api, b, template_id, false).await?, wx)
        };
        ratios.push(wx.0, baidu.0);
        // Rate-equivalent: Baidu's CPU per lifecycle over WeChat's.
        cpu_ratios.push(baidu.1, wx.1);
        baidu_sum += baidu.0;
        wx_sum += wx.0;
        baidu_cpu += baidu.1;
        wx_cpu += wx.1;
    }
    server.stop().await;
    let rounds = WX_ROUNDS as f64;
    println!("[7a] lifecycles, {WX_APPS_PER_BATCH} apps per dialect per round, {LIFECYCLE_CONCURRENCY} callers: WeChat dialect {:.1}/s, Baidu dialect {:.1}/s (means); ratio {} (goal >= 0.9)", wx_sum / rounds, baidu_sum / rounds, ratios.describe());
    println!("     CPU per lifecycle (server and callers): WeChat {:.2} ms, Baidu {:.2} ms (means); Baidu's ÷ WeChat's {}", wx_cpu / rounds, baidu_cpu / rounds, cpu_ratios.describe());
    let mut seals = Ratios::default();
    let (mut baidu_sum, mut wx_sum) = (0.0, 0.0);
    for round in 0..SEAL_ROUNDS {
        let (baidu, wx) = if round % 2 == 0 {
            let b = seal_rate(false)?;
            (b, seal_rate(true)?)
        } else {
            let w = seal_rate(true)?;
            (seal_rate(false)?, w)
        };
        seals.push(wx, baidu);
        baidu_sum += baidu;
        wx_sum += wx;
    }
    let rounds = SEAL_ROUNDS as f64;
    println!("[7b] push sealing (render + encrypt + envelope), {SEALS} per round: WeChat {:.0}/s, Baidu {:.0}/s (means); ratio {} (goal >= 0.9)", wx_sum / rounds, baidu_sum / rounds, seals.describe());
    Ok(())
}

fn main() -> Res<()> {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("platform benchmark: run with `cargo bench -p smartpkg --bench platform`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}
