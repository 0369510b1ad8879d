//! HTTP/2 from clients: chosen by ALPN over TLS or by the preface over
//! cleartext (h2c), many streams on one connection, to HTTP/1.1 upstreams,
//! with a late upstream failure resetting the client's stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestProxy, quick, serving, start, start_serving};
use http::Method;
use switchyard::ServerOptions;
use switchyard_testkit::h2::{H2Conn, with_h2};
use switchyard_testkit::tls::{TestCa, client_config, get};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

#[tokio::test]
async fn a_tls_client_that_offers_h2_gets_http2() {
    let ca = TestCa::new("private CA");
    let cert = ca.issue(&["proxy.test"]);
    let origin = Origin::healthy("origin").await;
    let tls = serving(&cert);
    let running = start_serving(
        TestProxy::new(&[origin.addr()]).options(quick()),
        ServerOptions::default(),
        Some(tls),
    )
    .await;

    let h2 = within(
        5,
        "an h2 handshake",
        H2Conn::tls(
            running.addr,
            &with_h2(&client_config(&ca, None)),
            "proxy.test",
        ),
    )
    .await
    .unwrap();
    let answer = within(
        5,
        "GET over h2",
        h2.send(h2.request(Method::GET, "/x?y=1", "")),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
    let seen = &origin.requests()[0];
    assert_eq!(seen.path, "/x?y=1");
    assert_eq!(seen.headers["host"], "proxy.test", ":authority became Host");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    // A client that offers only HTTP/1.1 still gets it.
    let answer = get(running.addr, &client_config(&ca, None), "proxy.test", "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_and_http1_share_a_cleartext_listener() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;

    let h2 = within(5, "an h2c handshake", H2Conn::cleartext(running.addr))
        .await
        .unwrap();
    let answer = within(
        5,
        "POST over h2c",
        h2.send(h2.request(Method::POST, "/upload", "a body")),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "a body");
    // HTTP/1.1 requests, one starting with P like the preface, still work.
    let answer = client::post(running.addr, "/h1", "one").await.unwrap();
    assert_eq!(answer.body, "one");
    let answer = client::get(running.addr, "/h1").await.unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn many_streams_share_one_connection() {
    let origin = Origin::start(
        "slow",
        Script::always(Behavior::ok().after(Duration::from_millis(100))),
    )
    .await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let requests: Vec<_> = (0..20)
        .map(|i| {
            let request = h2.request(Method::GET, &format!("/{i}"), "");
            tokio::spawn(switchyard_testkit::h2::send(h2.sender(), request))
        })
        .collect();
    for request in requests {
        let answer = within(5, "20 streams at once", request)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.status, 200);
    }
    assert_eq!(origin.stats().requests, 20);
    assert_eq!(running.counts.open(), 1, "one client connection");
    // Served at once, not one after another: each slow answer held its
    // own upstream connection.
    assert!(origin.stats().connections >= 10, "{:?}", origin.stats());
}

#[tokio::test]
async fn an_upstream_failure_after_the_head_resets_the_clients_stream() {
    let origin = Origin::start("truncated", Script::always(Behavior::TruncatedLength)).await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let answer = within(
        5,
        "a truncated response",
        h2.send(h2.request(Method::GET, "/", "")),
    )
    .await;
    let error = answer.unwrap_err();
    // RST_STREAM with INTERNAL_ERROR, not a clean end of the stream.
    assert!(error.contains("response body"), "{error}");
    assert!(error.contains("internal error"), "{error}");
}

#[tokio::test]
async fn shutdown_sends_goaway_and_lets_streams_in_flight_finish() {
    let origin = Origin::start(
        "slow",
        Script::always(Behavior::ok().after(Duration::from_millis(300))),
    )
    .await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let in_flight = tokio::spawn(switchyard_testkit::h2::send(
        h2.sender(),
        h2.request(Method::GET, "/slow", ""),
    ));
    // The stream is in flight: the origin has the request.
    origin.wait_for_requests(1, 5).await;
    running.shutdown.shutdown();
    let answer = within(5, "the stream in flight", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 200);
    within(5, "the server to stop", running.task)
        .await
        .unwrap()
        .unwrap();
    let after = h2.send(h2.request(Method::GET, "/late", "")).await;
    assert!(after.is_err(), "a stream after GOAWAY: {after:?}");
}

#[tokio::test]
async fn a_rapid_reset_flood_is_cut_off_and_other_clients_are_served() {
    let origin = Origin::healthy("origin").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let cut_off = within(
        10,
        "the flood",
        switchyard_testkit::h2::rapid_reset(running.addr, 10_000),
    )
    .await;
    assert!(cut_off, "the flooding connection was not closed");
    // Served alongside and after it.
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let answer = within(
        5,
        "a well-behaved client",
        h2.send(h2.request(Method::GET, "/", "")),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let reached = origin.stats().requests;
    assert!(
        reached < 1_000,
        "{reached} of the flood's streams reached the upstream"
    );
}

/// Requests from a well-behaved client while `flood` runs: all answered.
async fn served_during(
    addr: std::net::SocketAddr,
    counts: &switchyard::server::ConnectionCounts,
    flood: switchyard_testkit::h2::Flood,
) -> switchyard_testkit::h2::Flooded {
    let flooding = tokio::spawn(switchyard_testkit::h2::flood(addr, flood, 3));
    // Under way: its connection is open, or was cut off already.
    switchyard_testkit::eventually(5, "the flood", || {
        counts.open() >= 1 || flooding.is_finished()
    })
    .await;
    let h2 = H2Conn::cleartext(addr).await.unwrap();
    for i in 0..20 {
        let answer = within(
            5,
            "a well-behaved client during a flood",
            h2.send(h2.request(Method::GET, &format!("/{i}"), "")),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    flooding.await.unwrap()
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off_at_the_header_list_limit() {
    let origin = Origin::healthy("origin").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let flooded = served_during(
        running.addr,
        &running.counts,
        switchyard_testkit::h2::Flood::Continuation,
    )
    .await;
    assert!(
        flooded.closed,
        "the flooding connection was not closed: {flooded:?}"
    );
    // Closed at the 32 KiB header list limit: what was written past it sat
    // in the sockets' buffers (a few MiB on loopback), not in the proxy.
    assert!(flooded.frames < 512, "{flooded:?}");
    assert_eq!(
        origin.stats().requests,
        20,
        "the flood's request never went upstream"
    );
}

#[tokio::test]
async fn settings_and_ping_floods_leave_the_proxy_serving() {
    let origin = Origin::healthy("origin").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    for flood in [
        switchyard_testkit::h2::Flood::Settings,
        switchyard_testkit::h2::Flood::Ping,
    ] {
        // Either cut off or held back by flow control (a flooder that
        // reads nothing stops being read); never served at others' expense.
        let flooded = served_during(running.addr, &running.counts, flood).await;
        assert!(flooded.frames > 0, "{flood:?}: {flooded:?}");
    }
}

#[tokio::test]
async fn an_idle_http2_client_gets_goaway_and_a_busy_one_does_not() {
    use switchyard_testkit::h2_origin::{H2Behavior, H2Origin};
    let slow = H2Origin::start("slow", H2Behavior::AnswerAfter(Duration::from_millis(400))).await;
    let mut options = ServerOptions::default();
    options.http2.idle_timeout = Some(Duration::from_millis(200));
    let running = start_serving(
        TestProxy::new(&[slow.addr()])
            .options(quick())
            .protocol(switchyard::UpstreamProtocol::Http2),
        options,
        None,
    )
    .await;

    // A stream open longer than the idle timeout keeps the connection:
    // another stream goes on it after.
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let first = within(
        5,
        "a slow stream",
        h2.send(h2.request(Method::GET, "/1", "")),
    )
    .await
    .unwrap();
    assert_eq!(first.status, 200);
    let second = within(
        5,
        "the next stream",
        h2.send(h2.request(Method::GET, "/2", "")),
    )
    .await
    .unwrap();
    assert_eq!(second.status, 200);
    // Then nothing: GOAWAY within the idle timeout and a quarter.
    within(2, "the idle connection to close", async {
        while !h2.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
