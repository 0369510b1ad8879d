//! Idle keep-alive connections are parked outside hyper (to free its
//! buffers) and taken back when the client speaks again: parking must be
//! invisible to the client, whatever it was doing when parked. Each test
//! also reads the server's parked-connection count, so it fails if parking
//! never happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestProxy, start_with};
use switchyard::ServerOptions;
use switchyard_testkit::{Origin, client, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PARK_AFTER: Duration = Duration::from_millis(30);

fn parking_quickly() -> ServerOptions {
    ServerOptions {
        park_idle_after: Some(PARK_AFTER),
        ..ServerOptions::default()
    }
}

/// Wait (5 s at most) until the server has `n` connections parked.
async fn wait_parked(counts: &switchyard::server::ConnectionCounts, n: usize) {
    within(5, "the parked count to reach its value", async {
        while counts.parked() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Read one response whose body is `body`; return the head and body text.
async fn read_response(stream: &mut TcpStream, body: &str) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n")
            && text[end + 4..].len() >= body.len()
        {
            return text.into_owned();
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the proxy closed the connection; read so far: {text}"
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_parked_connection_serves_the_next_requests() {
    let origin = Origin::healthy("origin").await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), parking_quickly()).await;
    let mut conn = client::KeepAlive::connect(proxy.addr).await;
    for round in 0..3 {
        let request = http::Request::get("/").body(Default::default()).unwrap();
        let reply = within(10, "request", conn.send(request))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "origin");
        wait_parked(&proxy.counts, 1).await;
    }
    assert_eq!(origin.stats().requests, 3);
    assert_eq!(proxy.counts.open(), 1, "one connection all along");
}

#[tokio::test]
async fn a_head_begun_before_parking_is_finished_after_it() {
    let origin = Origin::healthy("origin").await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), parking_quickly()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // One request and half the next in one write: the half head is in
    // hyper's buffer before the connection can go quiet.
    stream
        .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let first = within(5, "first response", read_response(&mut stream, "origin")).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Quiet: hyper hands the connection back with the half head.
    within(5, "the hand-back with half a head", async {
        while proxy.counts.handed_back() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    stream.write_all(b"st: x\r\n\r\n").await.unwrap();
    let second = within(5, "second response", read_response(&mut stream, "origin")).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        !second.to_ascii_lowercase().contains("connection: close"),
        "parking must not end keep-alive: {second}"
    );
    stream
        .write_all(b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let third = within(5, "third response", read_response(&mut stream, "origin")).await;
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
    assert_eq!(origin.stats().requests, 3);
}

#[tokio::test]
async fn a_parked_connection_still_idles_out() {
    let origin = Origin::healthy("origin").await;
    let options = ServerOptions {
        header_read_timeout: Duration::from_millis(400),
        ..parking_quickly()
    };
    let proxy = start_with(TestProxy::new(&[origin.addr()]), options).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = within(5, "response", read_response(&mut stream, "origin")).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    wait_parked(&proxy.counts, 1).await;
    let mut rest = Vec::new();
    let n = within(5, "the idle close", stream.read_to_end(&mut rest)).await;
    assert_eq!(n.unwrap_or(0), 0, "a parked connection must idle out");
    wait_parked(&proxy.counts, 0).await;
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    let origin = Origin::healthy("origin").await;
    let options = ServerOptions {
        drain_timeout: Duration::from_secs(30),
        ..parking_quickly()
    };
    let proxy = start_with(TestProxy::new(&[origin.addr()]), options).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    within(5, "response", read_response(&mut stream, "origin")).await;
    wait_parked(&proxy.counts, 1).await;
    proxy.shutdown.shutdown();
    // Well inside the 30 s drain timeout: nothing was in flight.
    within(5, "server drain", proxy.task)
        .await
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    let n = within(5, "close", stream.read_to_end(&mut rest)).await;
    assert_eq!(n.unwrap_or(0), 0, "no bytes after the response");
}
