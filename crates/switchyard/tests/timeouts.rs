//! Timeouts on both sides: an upstream that never answers costs a 504 after
//! the read timeout; a client that is slow to send its head, or idles on a
//! keep-alive connection, is disconnected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestProxy, quick, start, start_with, summary};
use switchyard::{ErrorKind, ServerOptions};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

#[tokio::test]
async fn no_response_head_within_the_read_timeout_gives_504() {
    let origin = Origin::start("silent", Script::always(Behavior::Silence)).await;
    let proxy = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let started = Instant::now();
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(
        reply.headers["proxy-status"],
        "switchyard; error=http_response_timeout; details=\"response-head-timed-out\""
    );
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::ResponseHeadTimedOut));
    assert_eq!(
        summary(&logged[0].trace),
        ["response-head-timed-out -> stop (hook-declined)"]
    );
}

fn short_client_timeouts() -> ServerOptions {
    ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    let origin = Origin::healthy("unused").await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), short_client_timeouts()).await;
    let raw = within(
        10,
        "slow client",
        client::raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n", 5),
    )
    .await;
    assert!(
        raw.closed_by_server,
        "the proxy must close, not wait forever"
    );
    assert_eq!(origin.stats().requests, 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let origin = Origin::healthy("origin").await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), short_client_timeouts()).await;
    let raw = within(
        10,
        "idle client",
        client::raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5),
    )
    .await;
    assert!(String::from_utf8_lossy(&raw.bytes).starts_with("HTTP/1.1 200"));
    assert!(
        raw.closed_by_server,
        "an idle keep-alive connection must be closed"
    );
}
