//! HTTP/3 from clients, with the library's `Http3Server` directly: the
//! limits it starts with (connections per client address, address
//! validation by Retry tokens past a number of handshakes in progress, the
//! idle timeout, streams per connection), and trailers passed on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestProxy, listener, quick};
use switchyard::server::{ConnectionCounts, Http3Options, Http3Server};
use switchyard::tls::ServerTls;
use switchyard::{ServerOptions, ShutdownHandle};
use switchyard_testkit::h3::H3Client;
use switchyard_testkit::tls::{TestCa, TestCert, client_config};
use switchyard_testkit::{Behavior, Origin, Script, within};

struct Serving {
    addr: SocketAddr,
    counts: ConnectionCounts,
    _shutdown: ShutdownHandle,
    _cert: TestCert,
}

/// An HTTP/3 listener on 127.0.0.1 (UDP port 0) in front of `origin`.
fn serve(ca: &TestCa, origin: SocketAddr, limits: Http3Options) -> Serving {
    serve_with(ca, origin, limits, ServerOptions::default())
}

fn serve_with(
    ca: &TestCa,
    origin: SocketAddr,
    limits: Http3Options,
    options: ServerOptions,
) -> Serving {
    let cert = ca.issue(&["proxy.test"]);
    let tls = ServerTls::load(&listener(&[&cert])).unwrap();
    let proxy = Arc::new(TestProxy::new(&[origin]).options(quick()));
    let server =
        Http3Server::bind("127.0.0.1:0".parse().unwrap(), proxy, options, limits, &tls).unwrap();
    let serving = Serving {
        addr: server.local_addr(),
        counts: server.connection_counts(),
        _shutdown: server.shutdown_handle(),
        _cert: cert,
    };
    tokio::spawn(server.serve());
    serving
}

async fn connect(ca: &TestCa, addr: SocketAddr) -> Result<H3Client, String> {
    within(
        10,
        "HTTP/3 connect",
        H3Client::connect(addr, &client_config(ca, None), "proxy.test"),
    )
    .await
}

#[tokio::test]
async fn a_client_address_gets_at_most_max_connections_per_client() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let limits = Http3Options {
        max_connections_per_client: 2,
        ..Http3Options::default()
    };
    let serving = serve(&ca, origin.addr(), limits);
    let mut first = connect(&ca, serving.addr).await.unwrap();
    let mut second = connect(&ca, serving.addr).await.unwrap();
    within(10, "GET", second.get("proxy.test", "/"))
        .await
        .unwrap();
    // A third is closed once its handshake proves the address.
    let third = match connect(&ca, serving.addr).await {
        Ok(mut third) => third.get("proxy.test", "/").await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        third.is_err(),
        "a third connection from 127.0.0.1 was served"
    );
    assert_eq!(serving.counts.refused_per_client(), 1);
    // The first two still work; closing one makes room.
    let answer = within(10, "GET", first.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    drop(first);
    within(10, "room again", async {
        loop {
            if let Ok(mut client) = connect(&ca, serving.addr).await
                && client.get("proxy.test", "/").await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_body_that_breaks_its_content_length_never_reaches_the_origin_whole() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let serving = serve(&ca, origin.addr(), Http3Options::default());
    let mut client = connect(&ca, serving.addr).await.unwrap();
    for (length, body) in [("10", "short"), ("2", "longer"), ("+5", "hello")] {
        let request = http::Request::post("https://proxy.test/upload")
            .header("content-length", length)
            .body(())
            .unwrap();
        let answer = within(10, "POST", client.send(request, Bytes::from(body))).await;
        // A malformed request: its stream is reset, with no answer.
        assert!(
            answer.is_err(),
            "Content-Length {length} with {body:?}: {answer:?}"
        );
    }
    let whole: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|r| r.body_complete && r.body_len > 0)
        .collect();
    assert!(whole.is_empty(), "the origin took {whole:?}");
    // The connection still serves a good request.
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn past_the_retry_threshold_new_clients_validate_their_address_and_still_get_in() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    // Every new client must come back with a Retry token.
    let limits = Http3Options {
        retry_threshold: 0,
        ..Http3Options::default()
    };
    let serving = serve(&ca, origin.addr(), limits);
    let mut client = connect(&ca, serving.addr).await.unwrap();
    assert_eq!(serving.counts.address_validations(), 1);
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);

    // Under the threshold, none is asked.
    let relaxed = serve(&ca, origin.addr(), Http3Options::default());
    let _client = connect(&ca, relaxed.addr).await.unwrap();
    assert_eq!(relaxed.counts.address_validations(), 0);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let limits = Http3Options {
        idle_timeout: Duration::from_millis(300),
        ..Http3Options::default()
    };
    let serving = serve(&ca, origin.addr(), limits);
    let mut client = connect(&ca, serving.addr).await.unwrap();
    within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    within(10, "the connection closed", async {
        while serving.counts.open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(client.get("proxy.test", "/").await.is_err());
}

#[tokio::test]
async fn requests_beyond_max_concurrent_streams_wait_for_a_stream() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let limits = Http3Options {
        max_concurrent_streams: 1,
        ..Http3Options::default()
    };
    let serving = serve(&ca, origin.addr(), limits);
    let mut client = connect(&ca, serving.addr).await.unwrap();
    let first = client
        .start(http::Request::get("https://proxy.test/1").body(()).unwrap())
        .await
        .unwrap();
    // The first stream stays open while the client has not finished its
    // side: the second cannot open until it ends.
    let second = tokio::time::timeout(
        Duration::from_millis(200),
        client.start(http::Request::get("https://proxy.test/2").body(()).unwrap()),
    )
    .await;
    assert!(second.is_err(), "a second stream opened beside the first");
    let mut first = first;
    first.finish().await.unwrap();
    let answer = within(10, "first", switchyard_testkit::h3::collect(&mut first))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    drop(first);
    let answer = within(10, "then a second", client.get("proxy.test", "/2"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn response_trailers_reach_an_http3_client() {
    let ca = TestCa::new("h3 CA");
    let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-check\r\n\r\n5\r\nhello\r\n0\r\nx-check: done\r\n\r\n";
    let origin = Origin::start(
        "trailers",
        Script::always(Behavior::RawKeepOpen {
            bytes: Bytes::from_static(chunked.as_bytes()),
        }),
    )
    .await;
    let serving = serve(&ca, origin.addr(), Http3Options::default());
    let mut client = connect(&ca, serving.addr).await.unwrap();
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.body, "hello");
    let trailers = answer.trailers.expect("trailers");
    assert_eq!(trailers["x-check"], "done");
}

#[tokio::test]
async fn http3_answers_carry_no_alt_svc_even_when_the_options_set_one() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let options = ServerOptions {
        alt_svc: Some(http::HeaderValue::from_static("h3=\":443\"; ma=86400")),
        ..ServerOptions::default()
    };
    let serving = serve_with(&ca, origin.addr(), Http3Options::default(), options);
    let mut client = connect(&ca, serving.addr).await.unwrap();
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        !answer.headers.contains_key("alt-svc"),
        "{:?}",
        answer.headers
    );
}
