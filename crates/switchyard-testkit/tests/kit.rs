//! The kit tests itself: origins answer and count, scripts pick behaviours,
//! faults refuse or hang, and the client reports broken responses as errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use switchyard_testkit::client::{self, KeepAlive};
use switchyard_testkit::{Behavior, Blackhole, Origin, Script, digest, refused_addr, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn get_req(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(path)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn healthy_origin_answers_and_counts() {
    let origin = Origin::healthy("alpha").await;
    for path in ["/a", "/b?q=1"] {
        let resp = within(5, "get", client::get(origin.addr(), path))
            .await
            .unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.body, "alpha");
        assert_eq!(resp.headers["x-origin"], "alpha");
    }
    origin.wait_for_requests(2, 5).await;
    let stats = origin.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.completed_bodies, 2);
    assert_eq!(stats.body_bytes, 0);
    let seen = origin.requests();
    assert_eq!(seen[1].path, "/b?q=1");
    assert_eq!(seen[1].method, Method::GET);
    assert_eq!(seen[1].connection, 1);
    assert_eq!(seen[1].global_index, 1);
    assert_eq!(seen[1].headers["host"], origin.addr().to_string());
    assert!(seen[0].body_complete);
}

#[tokio::test]
async fn per_connection_script_restarts_on_each_connection() {
    let script = Script::per_connection(vec![Behavior::status(201)], Behavior::status(202));
    let origin = Origin::start("pc", script).await;
    let mut conn = KeepAlive::connect(origin.addr()).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(conn.send(get_req("/")).await.unwrap().status.as_u16());
    }
    assert_eq!(statuses, [201, 202, 202]);
    let fresh = client::get(origin.addr(), "/").await.unwrap();
    assert_eq!(fresh.status.as_u16(), 201);
    assert_eq!(fresh.body, "pc");
    let stats = origin.stats();
    assert_eq!((stats.connections, stats.requests), (2, 4));
    let seen = origin.requests();
    let idx: Vec<_> = seen
        .iter()
        .map(|r| (r.connection, r.index_on_connection, r.global_index))
        .collect();
    assert_eq!(idx, [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 3)]);
}

#[tokio::test]
async fn sequence_script_and_slow_behaviour() {
    let script = Script::sequence(
        vec![
            Behavior::status(503),
            Behavior::ok().after(Duration::from_millis(50)),
        ],
        Behavior::status(204),
    );
    let origin = Origin::start("seq", script).await;
    let a = client::get(origin.addr(), "/").await.unwrap();
    let b = client::get(origin.addr(), "/").await.unwrap();
    let c = client::get(origin.addr(), "/").await.unwrap();
    assert_eq!(
        (a.status.as_u16(), b.status.as_u16(), c.status.as_u16()),
        (503, 200, 204)
    );
    assert_eq!(b.body, "seq");
    assert!(c.body.is_empty());
}

#[tokio::test]
async fn chunked_post_body_digest_matches_whole() {
    let origin = Origin::healthy("chunky").await;
    let request = b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
        5;ext=1\r\nhello\r\n1\r\n,\r\nA\r\n chunked w\r\n4\r\norld\r\n0\r\nx-trailer: yes\r\n\r\n";
    let reply = client::raw(origin.addr(), request, 5).await;
    assert!(reply.closed_by_server, "connection: close must be honoured");
    assert!(
        reply.text().starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        reply.text()
    );
    assert!(reply.text().contains("connection: close\r\n"));
    let seen = &origin.requests()[0];
    let whole = b"hello, chunked world";
    assert!(seen.body_complete);
    assert_eq!(seen.body_len, whole.len() as u64);
    assert_eq!(seen.digest, digest(whole));
    assert_eq!(origin.stats().body_bytes, whole.len() as u64);
}

#[tokio::test]
async fn one_mib_echo_arrives_whole() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let resp = within(
        5,
        "1 MiB echo",
        client::post(origin.addr(), "/e", body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(resp.body.len(), body.len());
    assert_eq!(digest(&resp.body), digest(&body));
    let seen = &origin.requests()[0];
    assert_eq!(
        (seen.body_len, seen.digest),
        (body.len() as u64, digest(&body))
    );
    assert_eq!(origin.stats().completed_bodies, 1);
}

#[tokio::test]
async fn chunked_response_behaviour() {
    let chunks = vec![Bytes::from("ab"), Bytes::new(), Bytes::from("cd")];
    let script = Script::always(Behavior::Chunked {
        chunks,
        gap: Duration::from_millis(10),
    });
    let origin = Origin::start("ch", script).await;
    let resp = client::get(origin.addr(), "/").await.unwrap();
    assert_eq!(resp.body, "abcd");
    assert_eq!(resp.headers["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn head_request_gets_no_body() {
    let origin = Origin::healthy("headless").await;
    let reply = client::raw(
        origin.addr(),
        b"HEAD / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        5,
    )
    .await;
    assert!(reply.closed_by_server);
    assert!(reply.text().contains("content-length: 8\r\n"));
    assert!(reply.text().ends_with("\r\n\r\n"), "{}", reply.text());
}

#[tokio::test]
async fn client_gone_mid_body_is_recorded_incomplete() {
    let origin = Origin::healthy("mid").await;
    let mut stream = TcpStream::connect(origin.addr()).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    drop(stream);
    origin.wait_for_requests(1, 5).await;
    let seen = &origin.requests()[0];
    assert!(!seen.body_complete);
    assert_eq!(seen.body_len, 10);
    assert_eq!(seen.digest, digest(b"0123456789"));
    let stats = origin.stats();
    assert_eq!(
        (stats.requests, stats.completed_bodies, stats.body_bytes),
        (1, 0, 10)
    );
}

#[tokio::test]
async fn idle_kill_closes_an_idle_keep_alive_connection() {
    let script = Script::always(Behavior::IdleKill {
        after: Duration::from_millis(100),
    });
    let origin = Origin::start("idle", script).await;
    let reply = client::raw(origin.addr(), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", 3).await;
    assert!(reply.closed_by_server);
    assert!(reply.text().ends_with("\r\n\r\nidle"), "{}", reply.text());
}

#[tokio::test]
async fn keep_alive_is_the_default() {
    let origin = Origin::healthy("ka").await;
    let reply = client::raw(origin.addr(), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", 1).await;
    assert!(!reply.closed_by_server);
    assert!(reply.text().ends_with("\r\n\r\nka"));
}

#[tokio::test]
async fn refused_addr_refuses() {
    let addr = refused_addr().await;
    assert!(addr.ip().is_loopback());
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let err = client::get(addr, "/").await.unwrap_err();
    assert!(err.contains("connect"), "{err}");
}

#[tokio::test]
async fn blackhole_connect_times_out() {
    let hole = Blackhole::start().await;
    assert!(hole.addr().ip().is_loopback());
    // Two attempts at once: both must hang, neither connect nor be refused.
    let attempt =
        || tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(hole.addr()));
    let (a, b) = tokio::join!(attempt(), attempt());
    assert!(a.is_err(), "connect to the blackhole must hang, got {a:?}");
    assert!(b.is_err(), "connect to the blackhole must hang, got {b:?}");
}

#[tokio::test]
async fn silence_hangs_the_client() {
    let origin = Origin::start("mute", Script::always(Behavior::Silence)).await;
    let attempt =
        tokio::time::timeout(Duration::from_millis(200), client::get(origin.addr(), "/")).await;
    assert!(attempt.is_err(), "expected a hang, got {attempt:?}");
    assert_eq!(origin.stats().requests, 1);
}

async fn get_error(behavior: Behavior) -> String {
    let origin = Origin::start("bad", Script::always(behavior)).await;
    within(
        5,
        "get from a broken origin",
        client::get(origin.addr(), "/"),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn truncated_length_is_an_error() {
    let err = get_error(Behavior::TruncatedLength).await;
    assert!(err.contains("body"), "{err}");
}

#[tokio::test]
async fn garbage_is_an_error() {
    let err = get_error(Behavior::Garbage).await;
    assert!(err.contains("head"), "{err}");
}

#[tokio::test]
async fn other_broken_responses_are_errors() {
    get_error(Behavior::TruncatedChunked).await;
    get_error(Behavior::ResetAfterHead).await;
    get_error(Behavior::CloseBeforeHead).await;
}

#[tokio::test]
async fn reset_before_head_resets_the_connection() {
    use tokio::io::AsyncReadExt;
    let origin = Origin::start("reset", Script::always(Behavior::ResetBeforeHead)).await;
    let mut stream = TcpStream::connect(origin.addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = within(5, "read from a resetting origin", stream.read(&mut buf)).await;
    let err = read.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
#[should_panic(expected = "slow thing did not finish within 0 s")]
async fn within_names_the_hang() {
    within(0, "slow thing", std::future::pending::<()>()).await;
}

#[tokio::test]
async fn dropping_the_origin_closes_its_connections() {
    use tokio::io::AsyncReadExt;
    let origin = Origin::start("gone", Script::always(Behavior::Silence)).await;
    let addr = origin.addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    origin.wait_for_requests(1, 5).await;
    drop(origin);
    let mut buf = [0u8; 16];
    let read = within(
        2,
        "read after the origin was dropped",
        stream.read(&mut buf),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}
