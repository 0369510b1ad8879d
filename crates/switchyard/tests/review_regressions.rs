//! Regressions found in review: framing that could make a truncated
//! response look whole, timers that did not cover every wait, and requests
//! that were silently changed on the way upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{OnFail, TestProxy, quick, start, start_with, summary};
use switchyard::{ErrorKind, PeerOptions, ServerOptions};
use switchyard_testkit::{Behavior, Origin, Script, client, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn content_length_beside_chunked_is_dropped_so_the_body_arrives_whole() {
    let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
               a\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n";
    let origin = Origin::start("both", Script::always(Behavior::Raw { bytes: raw.into() })).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "0123456789abcdefghij");
    assert!(!reply.headers.contains_key("content-length"));
}

#[tokio::test]
async fn a_connection_whose_response_framing_was_ambiguous_is_not_reused() {
    // RFC 9112 section 6.3: a response with both Content-Length and
    // Transfer-Encoding ought to be handled as an error; it is forwarded as
    // chunked, and its connection is closed rather than pooled.
    let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
               a\r\n0123456789\r\n0\r\n\r\n";
    let (connections, logged) = two_requests_answered_with(raw).await;
    assert_eq!(connections, 2, "one connection per response");
    assert!(!logged[1].trace.records()[0].reused, "{}", logged[1].trace);
}

#[tokio::test]
async fn a_connection_with_clear_framing_is_reused() {
    // The twin of the test above, so that it cannot pass for want of pooling.
    let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
               a\r\n0123456789\r\n0\r\n\r\n";
    let (connections, _) = two_requests_answered_with(raw).await;
    assert_eq!(connections, 1);
}

/// Two GETs in a row through a proxy whose upstream answers each with `raw`
/// (body `0123456789`) and keeps the connection: the connections it saw,
/// and what `logging` saw.
async fn two_requests_answered_with(raw: &'static str) -> (usize, Vec<common::Logged>) {
    let origin = Origin::start(
        "raw",
        Script::always(Behavior::RawKeepOpen { bytes: raw.into() }),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    for _ in 0..2 {
        let reply = within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.body, "0123456789");
    }
    (origin.stats().connections, proxy.logs.wait(2).await)
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_refused() {
    let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n";
    let origin = Origin::start("gzip", Script::always(Behavior::Raw { bytes: raw.into() })).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::InvalidResponse));
}

#[tokio::test]
async fn a_response_body_that_stops_arriving_times_out() {
    let chunks = vec!["first".into(), "never".into()];
    let gap = Duration::from_secs(5);
    let origin = Origin::start("stalls", Script::always(Behavior::Chunked { chunks, gap })).await;
    let proxy = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let reply = within(10, "request", client::get(proxy.addr, "/")).await;
    assert!(reply.is_err(), "the client must see the abort: {reply:?}");
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::ResponseBodyTimedOut));
    assert_eq!(
        summary(&logged[0].trace),
        ["response-body-timed-out -> stop (response-started)"]
    );
}

#[tokio::test]
async fn a_timeout_on_a_reused_connection_is_not_retried_by_default() {
    let origin = Origin::start(
        "slow-second",
        Script::per_connection(vec![Behavior::ok(), Behavior::Silence], Behavior::ok()),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    within(10, "warm-up", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 504);
    let logged = proxy.logs.wait(2).await;
    assert_eq!(
        summary(&logged[1].trace),
        ["response-head-timed-out -> stop (hook-declined)"]
    );
    assert_eq!(origin.stats().requests, 2);
}

#[tokio::test]
async fn after_a_reused_connection_fails_the_retry_takes_a_fresh_one() {
    let slow_ok = Behavior::Slow {
        delay: Duration::from_millis(200),
        then: Box::new(Behavior::ok()),
    };
    let origin = Origin::start(
        "stale-pool",
        Script::per_connection(vec![slow_ok, Behavior::CloseBeforeHead], Behavior::ok()),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    // Two concurrent requests leave two connections in the pool.
    let (a, b) = tokio::join!(client::get(proxy.addr, "/a"), client::get(proxy.addr, "/b"));
    assert_eq!(
        (a.unwrap().status.as_u16(), b.unwrap().status.as_u16()),
        (200, 200)
    );
    let reply = within(10, "request", client::get(proxy.addr, "/c"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let logged = proxy.logs.wait(3).await;
    let trace = &logged[2].trace;
    assert_eq!(
        summary(trace),
        ["closed-before-head -> retry", "200 -> done"]
    );
    assert!(trace.records()[0].reused);
    assert!(
        !trace.records()[1].reused,
        "the retry must not take the other stale connection"
    );
}

#[tokio::test]
async fn a_get_with_a_chunked_body_keeps_its_body() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let request = b"GET /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                    5\r\nhello\r\n0\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 5)).await;
    assert!(String::from_utf8_lossy(&raw.bytes).ends_with("hello"));
    let seen = &origin.requests()[0];
    assert_eq!(seen.body_len, 5);
    assert!(seen.body_complete);
}

#[tokio::test]
async fn a_client_that_stalls_its_upload_gets_408_and_no_retry() {
    let origin = Origin::start("sink", Script::always(Behavior::ok())).await;
    let options = PeerOptions {
        write_timeout: Duration::from_millis(300),
        ..quick()
    };
    let proxy = start(
        TestProxy::new(&[origin.addr()])
            .options(options)
            .on_proxy_error(OnFail::RetrySame),
    )
    .await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"PUT /file HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let logged = within(10, "stalled upload", proxy.logs.wait(1)).await;
    assert_eq!(logged[0].error, Some(ErrorKind::DownstreamTimedOut));
    assert_eq!(logged[0].status, Some(408));
    assert_eq!(
        summary(&logged[0].trace),
        ["downstream-timed-out -> stop (downstream-failed)"]
    );
    drop(client);
}

#[tokio::test]
async fn an_absolute_form_target_sets_host() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let request =
        b"GET http://a.example/x?y=1 HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n";
    within(10, "raw", client::raw(proxy.addr, request, 5)).await;
    let seen = &origin.requests()[0];
    assert_eq!(seen.headers["host"], "a.example");
    assert_eq!(seen.path, "/x?y=1");
}

#[tokio::test]
async fn an_upgrade_request_reaches_the_upstream_with_its_upgrade_headers() {
    // Not downgraded silently: the upstream sees what the client asked for
    // and decides; one that does not switch answers as usual.
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let request =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 2)).await;
    assert!(String::from_utf8_lossy(&raw.bytes).starts_with("HTTP/1.1 200"));
    let seen = &origin.requests()[0];
    assert_eq!(seen.headers["upgrade"], "websocket");
    assert_eq!(seen.headers["connection"], "upgrade");
}

#[tokio::test]
async fn connect_requests_get_501() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let request = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 2)).await;
    assert!(String::from_utf8_lossy(&raw.bytes).starts_with("HTTP/1.1 501"));
    assert_eq!(origin.stats().requests, 0);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_by_the_write_timeout() {
    let big = bytes::Bytes::from(vec![b'b'; 64 * 1024 * 1024]);
    let origin = Origin::start(
        "big",
        Script::always(Behavior::Respond {
            status: 200,
            body: big,
        }),
    )
    .await;
    let options = ServerOptions {
        write_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let proxy = start_with(TestProxy::new(&[origin.addr()]), options).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let logged = within(20, "a stuck client noticed", proxy.logs.wait(1)).await;
    assert_eq!(logged[0].error, Some(ErrorKind::DownstreamClosed));
    drop(client);
}

#[tokio::test]
async fn shutdown_closes_what_did_not_drain_in_time() {
    let origin = Origin::start("silent", Script::always(Behavior::Silence)).await;
    let options = ServerOptions {
        drain_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let patient = PeerOptions {
        read_timeout: Duration::from_secs(60),
        ..PeerOptions::default()
    };
    let proxy = start_with(TestProxy::new(&[origin.addr()]).options(patient), options).await;
    let in_flight = tokio::spawn(client::get(proxy.addr, "/"));
    origin.wait_for_requests(1, 5).await;
    proxy.shutdown.shutdown();
    within(5, "serve() returning after the drain timeout", proxy.task)
        .await
        .unwrap()
        .unwrap();
    let reply = within(5, "the client seeing its connection close", in_flight)
        .await
        .unwrap();
    assert!(reply.is_err());
}

/// hyper's read buffer on an upstream connection is capped at 32 KiB
/// (buffers.rs), which bounds body chunks, not response heads: a head
/// larger than the cap still passes.
#[tokio::test]
async fn an_upstream_response_head_larger_than_the_read_buffer_still_passes() {
    let raw = format!(
        "HTTP/1.1 200 OK\r\nx-filler: {}\r\nContent-Length: 2\r\n\r\nok",
        "f".repeat(40 * 1024)
    );
    let large = Origin::start("large", Script::always(Behavior::Raw { bytes: raw.into() })).await;
    let proxy = start(TestProxy::new(&[large.addr()]).options(quick())).await;
    let reply = within(10, "a 40 KiB head", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "ok");
}
