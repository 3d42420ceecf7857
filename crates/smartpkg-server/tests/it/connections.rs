//! Slow and hostile connections, TLS, and the last wire differences (app/info's shape, unknown
//! methods), each as a client would meet them.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{settings, spawn_with, Style};

/// Reads until the server closes the connection (or `limit` passes); what it sent.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut all = vec![];
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

async fn healthz(base: &str, within: Duration) -> bool {
    let c = reqwest::Client::builder()
        .timeout(within)
        .build()
        .expect("client");
    matches!(c.get(format!("{base}/healthz")).send().await, Ok(r) if r.status() == 200)
}

#[tokio::test]
async fn half_sent_request_heads_are_closed_after_the_header_timeout() {
    let app = spawn_with(|s| s.header_read_timeout_ms = 300).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut slow = vec![];
    for _ in 0..50 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        slow.push(s);
    }
    for s in &mut slow {
        assert!(
            read_until_closed(s, Duration::from_secs(5)).await.is_some(),
            "a half-sent head must not hold its connection"
        );
    }
    assert!(healthz(&app.base, Duration::from_secs(2)).await);
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_and_released() {
    let app = spawn_with(|s| s.request_timeout_ms = 400).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /rest/2.0/smartapp/package/get?access_token={} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\npackage_id=",
        app.token
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("closed in time");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    app.stop().await;
}

/// A connection from the loopback address `src` (any of 127.0.0.0/8 reaches the server).
async fn connect_from(addr: &str, src: std::net::Ipv4Addr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind((src, 0).into()).expect("bind");
    sock.connect(addr.parse().expect("addr"))
        .await
        .expect("connect")
}

/// The first bytes the server sends on `s` within `limit` (empty if it closed at once).
async fn first_bytes(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(limit, s.read(&mut buf)).await {
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(_)) => Some(String::new()),
        Err(_) => None,
    }
}

#[tokio::test]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn one_address_holds_at_most_its_share_and_its_own_stalled_connections_make_room() {
    let app = spawn_with(|s| {
        s.max_connections = 64;
        s.max_connections_per_client = 8;
        s.header_read_timeout_ms = 60_000;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let src = std::net::Ipv4Addr::new(127, 0, 0, 5);
    let mut held = vec![];
    for _ in 0..8 {
        let mut s = connect_from(&addr, src).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        held.push(s);
    }
    // A ninth while the eight are fresh (nothing to close yet): refused at once.
    let mut ninth = connect_from(&addr, src).await;
    let answer = first_bytes(&mut ninth, Duration::from_secs(2))
        .await
        .expect("answered at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    // Other addresses are not affected.
    assert!(healthz(&app.base, Duration::from_secs(2)).await);
    // Once the eight have stalled, a new connection of the same address closes the one that
    // has waited longest, and is served.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut tenth = connect_from(&addr, src).await;
    tenth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut tenth, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut closed = 0;
    for s in &mut held {
        if read_until_closed(s, Duration::from_millis(300))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "exactly the oldest stalled connection made room");
    app.stop().await;
}

/// `n` connections from `n` loopback addresses, each a stalled head or a stalled body.
async fn crowd(addr: &str, n: usize, third_octet: u8, body: bool) -> Vec<TcpStream> {
    let mut all = vec![];
    for i in 0..n {
        let src = std::net::Ipv4Addr::new(127, 0, third_octet, 2 + i as u8);
        let mut s = connect_from(addr, src).await;
        let bytes: &[u8] = if body {
            b"POST /rest/2.0/smartapp/package/get HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\naccess_token="
        } else {
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        };
        let _ = s.write_all(bytes).await;
        all.push(s);
    }
    all
}

#[tokio::test]
async fn a_full_house_of_stalled_clients_makes_room_for_a_new_one_within_a_second() {
    let app = spawn_with(|s| {
        s.max_connections = 32;
        s.header_read_timeout_ms = 60_000;
        s.idle_timeout_ms = 60_000;
        s.body_read_timeout_ms = 60_000;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    for (wave, body, trickle) in [
        (1u8, false, false),
        (2, true, false),
        (3, false, false),
        (4, false, true),
        (5, true, true),
    ] {
        // Sixty stalled clients for 32 slots, each from an address of its own; waves 4 and 5
        // keep sending a byte every 200 ms (a head, or a body, that never ends).
        let stalled = crowd(&addr, 60, wave, body).await;
        let _trickling = trickle.then(|| {
            tokio::spawn(async move {
                let mut stalled = stalled;
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    for s in &mut stalled {
                        let _ = s.write_all(b"x").await;
                    }
                }
            })
        });
        let start = Instant::now();
        assert!(
            healthz(&app.base, Duration::from_secs(5)).await,
            "wave {wave}: no answer"
        );
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_millis(1500),
            "wave {wave} (stalled {}, trickling: {trickle}): /healthz waited {waited:?}",
            if body { "bodies" } else { "heads" }
        );
        if let Some(t) = _trickling {
            t.abort();
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_small_body_that_stops_arriving_is_cut_after_the_body_grace_not_the_request_timeout() {
    let app = spawn_with(|s| {
        s.request_timeout_ms = 60_000;
        s.idle_timeout_ms = 60_000;
        s.body_read_timeout_ms = 300;
        s.body_min_bytes_per_s = 1000;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let head = |len: usize| {
        format!(
            "POST /rest/2.0/smartapp/package/get?access_token={} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n",
            app.token
        )
    };
    // Stalled after a few bytes: 408 after about the grace.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(format!("{}x=", head(1000)).as_bytes())
        .await
        .expect("write");
    let start = Instant::now();
    let answer = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("closed in time");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // A trickle (a byte every 150 ms, far below 1000 B/s) does not keep it alive either.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(head(1000).as_bytes()).await.expect("write");
    let start = Instant::now();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(150)).await;
            if s.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // A body arriving steadily above the rate is served, however long it takes overall.
    let body = format!("pad={}", "x".repeat(1996));
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(head(body.len()).as_bytes())
        .await
        .expect("write");
    for chunk in body.as_bytes().chunks(250) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(chunk).await.expect("write");
    }
    let answer = first_bytes(&mut s, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_cuts_connections_that_outlive_the_grace_period() {
    let app = spawn_with(|s| {
        s.header_read_timeout_ms = 60_000;
        s.idle_timeout_ms = 60_000;
        s.shutdown_grace_ms = 300;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("stop returns despite the half-sent request");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(read_until_closed(&mut s, Duration::from_secs(2))
        .await
        .is_some());
}

#[tokio::test]
async fn https_serves_the_same_api_with_a_given_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    let app = spawn_with(|s| {
        s.tls_cert = Some(cert_path.clone());
        s.tls_key = Some(key_path.clone());
    })
    .await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let addr: std::net::SocketAddr = app
        .base
        .trim_start_matches("https://")
        .parse()
        .expect("addr");
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("root"),
        )
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let v: serde_json::Value = client
        .get(format!(
            "https://localhost:{}/rest/2.0/smartapp/package/get",
            addr.port()
        ))
        .query(&[("access_token", app.token.as_str())])
        .send()
        .await
        .expect("https request")
        .json()
        .await
        .expect("json");
    assert_eq!(v, json!({"errno": 0, "msg": "success", "data": []}));
    // Plain HTTP on the TLS port gets nothing usable.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    app.stop().await;
}

#[tokio::test]
async fn tls_needs_both_a_certificate_and_a_key_and_says_which_file_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(dir.path());
    s.tls_cert = Some(dir.path().join("missing.pem"));
    let e = smartpkg_server::start(s.clone())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("tls_key"), "{e}");
    s.tls_key = Some(dir.path().join("missing-key.pem"));
    let e = smartpkg_server::start(s).await.err().expect("refused");
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

#[tokio::test]
async fn app_info_has_exactly_the_shape_baidus_sdks_decode() {
    let app = spawn_with(|_| {}).await;
    let v = app
        .client
        .get(format!("{}/rest/2.0/smartapp/app/info", app.base))
        .query(&[("access_token", app.token.as_str())])
        .send()
        .await
        .expect("info")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let key = v["data"]["app_key"].as_str().expect("app_key").to_string();
    assert_eq!(
        v,
        json!({"errno": 0, "msg": "success", "data": {
            "app_id": app.app_id,
            "app_key": key,
            "app_name": "shop one",
            "app_desc": "",
            "photo_addr": "",
            "min_swan_version": "",
            "status": 1,
            "web_status": 0,
            "qualification": {"name": "", "type": 2, "satus": 1, "ad_type": 0, "ad_status": 1},
            "category": [{"category_id": 0, "category_name": "", "category_desc": "",
                "audit_status": 2, "reason": "",
                "parent": {"category_id": 0, "category_name": "", "category_desc": ""}}],
            "auth_info": [{"scope_name": "smartapp_tp_smtapp_common", "type": 0}],
            "modify_count": {"name_modify_used": 0, "name_modify_quota": 0,
                "image_modify_used": 0, "image_modify_quota": 0,
                "signature_modify_used": 0, "signature_modify_quota": 0,
                "category_modify_used": 0, "category_modify_quota": 0},
            "annual_review_info": {"annual_review_status": 1, "annual_review_overdue_time": 0},
            "app_offline_info": [],
        }})
    );
    // A name still in review shows as auditing, with the name in audit_info.
    app.admin(
        reqwest::Method::PATCH,
        &format!("/apps/{}", app.app_id),
        Some(json!({"name_audited": false})),
    )
    .await;
    let v = app
        .client
        .get(format!("{}/rest/2.0/smartapp/app/info", app.base))
        .query(&[("access_token", app.token.as_str())])
        .send()
        .await
        .expect("info")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(v["data"]["status"], 2);
    assert_eq!(v["data"]["audit_info"]["audit_app_name"], "shop one");
    assert_eq!(v["data"]["audit_info"]["audit_app_name_status"], 1);
    app.stop().await;
}

#[tokio::test]
async fn unknown_methods_under_rest_answer_the_gateway_error_not_an_empty_404() {
    let app = spawn_with(|_| {}).await;
    for path in [
        "/rest/2.0/smartapp/package/nosuch",
        "/rest/2.0/smartapp/app/setnickname",
        "/rest/2.0/other",
        "/file/2.0/smartapp/upload/image",
        "/file/2.0/smartapp/tp/upload",
        "/public/2.0/smartapp/auth/nosuch",
    ] {
        let r = app
            .client
            .post(format!("{}{path}", app.base))
            .query(&[("access_token", app.token.as_str())])
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            r.json::<serde_json::Value>().await.expect("json"),
            json!({"error_code": 3, "error_msg": "Unsupported openapi method"}),
            "{path}"
        );
    }
    let r = app
        .client
        .get(format!("{}/nothing/here", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    // The served methods still answer normally.
    assert_eq!(
        app.call_as(Style::QueryOnly, &app.token, "get", &[]).await["errno"],
        0
    );
    app.stop().await;
}
