//! The server as an operator runs it, at a low open-file limit (256: a connection cap of 128,
//! 32 per client address), against crowds of clients that connect and stall — in the request
//! head, or in the body — wave after wave, each from an address of its own.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(addr: std::net::SocketAddr, src: Ipv4Addr) -> Option<TcpStream> {
    let sock = TcpSocket::new_v4().ok()?;
    sock.bind((src, 0).into()).ok()?;
    tokio::time::timeout(Duration::from_secs(2), sock.connect(addr))
        .await
        .ok()?
        .ok()
}

/// 200 connections from 127.0.<wave>.2 onwards that each send part of a request and stop.
async fn wave(addr: std::net::SocketAddr, wave: u8, body: bool) -> Vec<TcpStream> {
    let mut held = vec![];
    for i in 0..200u8 {
        let Some(mut s) =
            connect_from(addr, Ipv4Addr::new(127, 0, wave, i.saturating_add(2))).await
        else {
            continue;
        };
        let part: &[u8] = if body {
            b"POST /rest/2.0/smartapp/package/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\ntemplate_id="
        } else {
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Stalling: "
        };
        let _ = s.write_all(part).await;
        held.push(s);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run with `cargo test -- --include-ignored` (README)"]
async fn at_an_open_file_limit_of_256_waves_of_stalled_clients_never_keep_healthz_waiting() {
    let dir = tempfile::tempdir().expect("dir");
    let server = common::start_demo_after(dir.path(), &[], "ulimit -n 256");
    let addr: std::net::SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let mut worst = Duration::ZERO;
    // Stalled heads, stalled bodies, then heads again from clients that reconnect: the
    // earlier waves stay open (until the server closes them) while the next one arrives.
    let mut all_waves = vec![];
    for (n, body) in [(1u8, false), (2, true), (3, false), (4, true)] {
        all_waves.push(wave(addr, n, body).await);
        let start = Instant::now();
        let r = client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("healthz answered");
        assert_eq!(r.status(), 200);
        let waited = start.elapsed();
        eprintln!(
            "wave {n} (stalled {}): /healthz answered in {waited:?}",
            if body { "bodies" } else { "heads" }
        );
        worst = worst.max(waited);
    }
    // Before connections were capped per client and stalled ones made room, this waited for
    // the header timeout (10 s) or the request timeout (60 s).
    assert!(worst < Duration::from_secs(2), "/healthz waited {worst:?}");
    drop(all_waves);
    server.stop();
}
