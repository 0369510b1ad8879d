//! HTTP/2 to upstreams: h2c and h2 by ALPN, shared connections that honour
//! the upstream's stream limit, and the failure contract over HTTP/2 (a
//! refused stream or a GOAWAY below it is retried for any method, a reset
//! after the head resets the client, a client that leaves cancels the
//! upstream stream).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{TestProxy, h2_proxy, quick, start};
use http::Method;
use switchyard::{ErrorKind, UpstreamProtocol};
use switchyard_testkit::h2::H2Conn;
use switchyard_testkit::h2_origin::{GoawayAt, GoawayOrigin, H2Behavior, H2Options, H2Origin};
use switchyard_testkit::tls::{TestCa, TlsOrigin, server_config};
use switchyard_testkit::{client, digest, within};

#[tokio::test]
async fn an_h2c_upstream_carries_concurrent_requests_on_one_connection() {
    let origin = H2Origin::start("h2-origin", H2Behavior::Answer).await;
    let running = start(h2_proxy(&[origin.addr()])).await;

    // One request first, so the shared connection exists.
    let first = client::get(running.addr, "/warm").await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "h2-origin");
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..20 {
        let addr = running.addr;
        requests.spawn(async move { client::get(addr, &format!("/r/{i}?q=1")).await });
    }
    while let Some(answer) = requests.join_next().await {
        let answer = answer.unwrap().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "h2-origin");
    }
    let body = vec![b'x'; 100_000];
    let answer = client::post(running.addr, "/upload", body.clone())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);

    assert_eq!(
        origin.counts().connections.load(Ordering::Acquire),
        1,
        "every request shared one HTTP/2 connection"
    );
    let seen = origin.seen();
    assert_eq!(seen.len(), 22);
    let upload = seen.iter().find(|s| s.method == Method::POST).unwrap();
    assert_eq!(upload.digest, digest(&body), "the body went whole");
    let one = seen.iter().find(|s| s.uri.ends_with("/r/3?q=1")).unwrap();
    assert_eq!(
        one.uri,
        format!("http://{}/r/3?q=1", running.addr),
        "Host became :authority"
    );
    assert!(!one.headers.contains_key("host"), "{:?}", one.headers);
    assert!(one.headers.contains_key("x-request-id"));
}

/// An h2c upstream that allows one stream at a time and answers after `pause`.
async fn one_stream_origin(pause: Duration) -> H2Origin {
    let options = H2Options {
        max_concurrent_streams: Some(1),
        ..H2Options::default()
    };
    H2Origin::start_with("one", H2Behavior::AnswerAfter(pause), options).await
}

#[tokio::test]
async fn an_upstream_allowing_one_stream_gets_more_connections() {
    let origin = one_stream_origin(Duration::from_millis(300)).await;
    let running = start(h2_proxy(&[origin.addr()]).options(switchyard::PeerOptions {
        read_timeout: Duration::from_secs(5),
        ..quick()
    }))
    .await;

    // The first exchange teaches the proxy the upstream's limit.
    assert_eq!(client::get(running.addr, "/").await.unwrap().status, 200);
    three_at_once_all_200(running.addr).await;
    let connections = origin.counts().connections.load(Ordering::Acquire);
    assert!(
        connections >= 3,
        "3 requests at once on a one-stream upstream need 3 connections, made {connections}"
    );
}

#[tokio::test]
async fn a_post_refused_by_stream_is_retried_elsewhere_and_delivered_once() {
    let refusing = H2Origin::start("refusing", H2Behavior::Refuse).await;
    let good = H2Origin::start("good", H2Behavior::Answer).await;
    let running = start(h2_proxy(&[refusing.addr(), good.addr()])).await;

    let answer = client::post(running.addr, "/charge", b"pay 10".to_vec())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "good");
    assert!(refusing.counts().streams.load(Ordering::Acquire) >= 1);
    assert!(refusing.seen().is_empty());
    let seen = good.seen();
    assert_eq!(seen.len(), 1, "delivered exactly once");
    assert_eq!(seen[0].body.as_ref(), b"pay 10");

    let logged = running.logs.wait(1).await;
    let records = logged[0].trace.records();
    assert_eq!(records.len(), 2, "{:?}", common::summary(&logged[0].trace));
    assert_eq!(records[0].error, Some(ErrorKind::StreamRefused));
    assert_eq!(records[0].note, Some("not-processed"));
    assert_eq!(records[1].status.map(|s| s.as_u16()), Some(200));
}

#[tokio::test]
async fn large_posts_refused_by_stream_reach_the_backup_once_and_whole() {
    // The refusing upstream's stream window is the default 65,535 bytes:
    // at most that much of the body can have left before it refused, so
    // the proxy must still hold everything it took from the client.
    // It refuses after a pause, once the proxy has sent the window's worth
    // and buffered what it would send next.
    let pause = Duration::from_millis(200);
    let refusing = H2Origin::start("refusing", H2Behavior::RefuseAfter(pause)).await;
    let good = H2Origin::start("good", H2Behavior::Answer).await;
    let running = start(h2_proxy(&[refusing.addr(), good.addr()])).await;
    for (i, size) in [100_000usize, 1_000_000].into_iter().enumerate() {
        let body: Vec<u8> = (0..size).map(|n| (n % 251) as u8).collect();
        let answer = within(
            10,
            "a large POST",
            client::post(running.addr, "/upload", body.clone()),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{size} bytes: {:?}", answer.headers);
        assert_eq!(answer.body, "good");
        let seen = good.seen();
        assert_eq!(seen.len(), i + 1, "delivered exactly once");
        assert_eq!(seen[i].body.len(), size);
        assert_eq!(seen[i].digest, digest(&body), "delivered whole");
    }
    assert!(refusing.seen().is_empty());
}

#[tokio::test]
async fn a_post_above_a_goaway_is_retried_elsewhere_and_delivered_once() {
    let going = GoawayOrigin::start(GoawayAt::FirstStream).await;
    let good = H2Origin::start("good", H2Behavior::Answer).await;
    let running = start(h2_proxy(&[going.addr(), good.addr()])).await;

    let answer = client::post(running.addr, "/order", b"one book".to_vec())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "good");
    assert_eq!(going.streams(), 1);
    assert_eq!(good.seen().len(), 1, "delivered exactly once");
    let logged = running.logs.wait(1).await;
    let records = logged[0].trace.records();
    assert_eq!(records[0].error, Some(ErrorKind::StreamRefused));
    assert_eq!(records[0].note, Some("not-processed"));
}

#[tokio::test]
async fn a_refused_stream_with_nowhere_else_to_go_is_a_503() {
    let refusing = H2Origin::start("refusing", H2Behavior::Refuse).await;
    let running = start(h2_proxy(&[refusing.addr()])).await;

    let answer = client::post(running.addr, "/", b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(answer.status, 503);
    assert!(
        answer.headers["proxy-status"]
            .to_str()
            .unwrap()
            .contains("destination_unavailable"),
        "{:?}",
        answer.headers
    );
}

#[tokio::test]
async fn a_reset_after_the_head_resets_the_http2_client_stream() {
    let origin = H2Origin::start("resets", H2Behavior::ResetAfterHead).await;
    let running = start(h2_proxy(&[origin.addr()])).await;

    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let result = within(
        5,
        "a reset stream",
        h2.send(h2.request(Method::GET, "/", "")),
    )
    .await;
    let error = result.expect_err("the stream must be reset, not ended cleanly");
    assert!(error.contains("internal error"), "{error}");
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].status, Some(200));
    assert_eq!(logged[0].error, Some(ErrorKind::ReadError));
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_stream() {
    let origin = H2Origin::start("silent", H2Behavior::Silent).await;
    let running = start(h2_proxy(&[origin.addr()]).options(switchyard::PeerOptions {
        read_timeout: Duration::from_secs(30),
        ..quick()
    }))
    .await;

    // An HTTP/2 client resets its stream (hyper does when the request is dropped).
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        h2.send(h2.request(Method::GET, "/", "")),
    )
    .await;
    assert!(gave_up.is_err(), "the origin never answers");
    within(5, "the upstream stream reset", async {
        while origin.counts().reset_by_client.load(Ordering::Acquire) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(origin.counts().open.load(Ordering::Acquire), 0);
}

#[tokio::test]
async fn https_negotiates_h2_when_the_origin_offers_it() {
    let ca = TestCa::new("private CA");
    let cert = ca.issue(&["origin.test"]);
    let options = H2Options {
        tls: Some(server_config(&cert, &[b"h2", b"http/1.1"])),
        ..H2Options::default()
    };
    let h2_origin = H2Origin::start_with("h2-tls", H2Behavior::Answer, options).await;
    let http1_origin = TlsOrigin::start("http1-tls", &cert, None).await;
    let settings = switchyard::tls::UpstreamTls::load(&switchyard::tls::UpstreamTlsSettings {
        ca_file: Some(ca.cert_path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let auto = |peer| {
        TestProxy::new(&[peer])
            .options(quick())
            .upstream_tls(settings.clone(), "origin.test")
            .protocol(UpstreamProtocol::Auto)
    };

    let running = start(auto(h2_origin.addr())).await;
    let answer = client::get(running.addr, "/a").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "h2-tls");
    assert!(h2_origin.seen()[0].uri.starts_with("https://"));

    // An origin without h2 is spoken to in HTTP/1.1...
    let running = start(auto(http1_origin.addr())).await;
    let answer = client::get(running.addr, "/b").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "http1-tls");
    // ...unless HTTP/2 is required, which fails before anything is sent.
    let running = start(
        auto(http1_origin.addr())
            .protocol(UpstreamProtocol::Http2)
            .on_connect_fail(common::OnFail::Default),
    )
    .await;
    let answer = client::get(running.addr, "/c").await.unwrap();
    assert_eq!(answer.status, 502);
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::TlsHandshake));
}

/// A gRPC message: not compressed, its length, then the bytes.
fn grpc_message(payload: &[u8]) -> Vec<u8> {
    let mut message = vec![0];
    message.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    message.extend_from_slice(payload);
    message
}

#[tokio::test]
async fn a_grpc_call_carries_te_and_trailers_both_ways() {
    let origin = H2Origin::start("grpc", H2Behavior::GrpcEcho).await;
    let running = start(h2_proxy(&[origin.addr()])).await;

    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let message = grpc_message(b"hello");
    let mut request = h2.request(Method::POST, "/echo.Echo/Say", message.clone());
    let headers = request.headers_mut();
    headers.insert("te", "trailers".parse().unwrap());
    headers.insert("content-type", "application/grpc".parse().unwrap());
    let answer = within(5, "a gRPC call", h2.send(request)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/grpc");
    assert_eq!(answer.body.as_ref(), message.as_slice());
    let trailers = answer.trailers.expect("the gRPC trailers came through");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "echoed");
    let seen = origin.seen();
    assert_eq!(seen[0].headers["te"], "trailers", "{:?}", seen[0].headers);
    assert_eq!(
        seen[0].uri,
        format!("http://{}/echo.Echo/Say", running.addr)
    );
}

#[tokio::test]
async fn a_goaway_mid_flight_finishes_the_stream_below_it_and_moves_the_one_above() {
    let going = GoawayOrigin::start(GoawayAt::SecondStream).await;
    let good = H2Origin::start("good", H2Behavior::Answer).await;
    let running = start(h2_proxy(&[going.addr(), good.addr()])).await;

    // The first request opens the connection and is held there...
    let addr = running.addr;
    let first = tokio::spawn(async move { client::get(addr, "/first").await });
    within(5, "the first stream to arrive", async {
        while going.streams() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // ...the second shares it, and the GOAWAY names the first as the last.
    let second = client::post(running.addr, "/second", b"once".to_vec())
        .await
        .unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.body, "good", "the stream above the GOAWAY moved on");
    let first = within(5, "the first request", first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.status, 200,
        "the stream below the GOAWAY was answered"
    );
    assert_eq!(going.streams(), 2, "both shared one connection");
    assert_eq!(
        good.seen().len(),
        1,
        "the POST reached the good server once"
    );
    let logged = running.logs.wait(2).await;
    let moved = logged.iter().find(|l| l.path == "/second").unwrap();
    assert_eq!(moved.trace.records()[0].note, Some("not-processed"));
}

#[tokio::test]
async fn an_upstream_that_goes_away_after_some_requests_gets_no_new_streams() {
    // As nginx's http2_max_requests: GOAWAY after 5 streams per connection,
    // and any stream opened after it is ignored, never answered.
    let options = H2Options {
        max_requests: Some(5),
        ..H2Options::default()
    };
    let origin = H2Origin::start_with("limited", H2Behavior::Answer, options).await;
    let running = start(h2_proxy(&[origin.addr()])).await;

    let mut workers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let addr = running.addr;
        workers.spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..15 {
                let answer = client::get(addr, &format!("/{w}/{i}")).await.unwrap();
                statuses.push(answer.status.as_u16());
            }
            statuses
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = workers.join_next().await {
        statuses.extend(done.unwrap());
    }
    assert!(
        statuses.iter().all(|&s| s == 200),
        "a request went to a connection that had gone away: {statuses:?}"
    );
    let connections = origin.counts().connections.load(Ordering::Acquire);
    assert!(
        connections >= 12,
        "60 requests, 5 per connection: {connections} connections"
    );
}

#[tokio::test]
async fn a_websocket_upgrade_is_refused_by_an_http2_only_peer() {
    let origin = H2Origin::start("h2-only", H2Behavior::Answer).await;
    let running = start(h2_proxy(&[origin.addr()])).await;
    let request = b"GET /chat HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    let reply = within(5, "an upgrade", client::raw(running.addr, request, 2)).await;
    assert!(reply.text().starts_with("HTTP/1.1 501"), "{}", reply.text());
    assert_eq!(origin.counts().streams.load(Ordering::Acquire), 0);
}

#[tokio::test]
async fn at_its_connection_limit_a_request_queues_on_the_shared_connection() {
    // One connection allowed, one stream at a time on it: the requests
    // beyond wait for a stream there instead of failing for a connection.
    let origin = one_stream_origin(Duration::from_millis(400)).await;
    let running = start(h2_proxy(&[origin.addr()]).options(switchyard::PeerOptions {
        read_timeout: Duration::from_secs(5),
        max_connections: Some(1),
        ..quick()
    }))
    .await;
    assert_eq!(client::get(running.addr, "/").await.unwrap().status, 200);
    three_at_once_all_200(running.addr).await;
    assert_eq!(origin.counts().connections.load(Ordering::Acquire), 1);
}

/// Three GETs at once through the proxy at `addr`, each answered 200.
async fn three_at_once_all_200(addr: std::net::SocketAddr) {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..3 {
        requests.spawn(async move { client::get(addr, "/").await });
    }
    while let Some(answer) = requests.join_next().await {
        assert_eq!(answer.unwrap().unwrap().status, 200);
    }
}
