//! Graceful shutdown: stop accepting, finish what is in flight, then return.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestProxy, start};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

#[tokio::test]
async fn an_in_flight_request_finishes_after_shutdown_begins() {
    let slow = Behavior::Slow {
        delay: Duration::from_millis(400),
        then: Box::new(Behavior::ok()),
    };
    let origin = Origin::start("slow", Script::always(slow)).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(client::get(addr, "/slow"));
    origin.wait_for_requests(1, 5).await;
    proxy.shutdown.shutdown();
    let reply = within(10, "in-flight request", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "slow");
    within(10, "server drain", proxy.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// A keep-alive client connection that sits idle in hyper (not parked) is
/// closed as soon as shutdown begins, not at its idle timeout: the
/// connection's driver notices the stop while it waits.
#[tokio::test]
async fn an_idle_keep_alive_connection_closes_when_shutdown_begins() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let origin = Origin::start("ok", Script::always(Behavior::ok())).await;
    let options = switchyard::ServerOptions {
        park_idle_after: None,
        header_read_timeout: Duration::from_secs(60),
        ..switchyard::ServerOptions::default()
    };
    let proxy = common::start_with(TestProxy::new(&[origin.addr()]), options).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /one HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).ends_with("ok") {
        let n = within(5, "the response", stream.read(&mut chunk))
            .await
            .unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&chunk[..n]);
    }
    proxy.shutdown.shutdown();
    let n = within(3, "the idle connection to close", stream.read(&mut chunk))
        .await
        .unwrap();
    assert_eq!(n, 0, "the connection closed without sending anything more");
    within(3, "server drain", proxy.task)
        .await
        .unwrap()
        .unwrap();
}

/// A client that connected before the stop is answered: a connection that
/// has not sent its first request yet is not idle (its client is about to
/// send it), so the stop waits for that request, answers it and closes.
/// Without this, a binary upgrade (or any graceful stop) would drop the
/// requests of clients that connected just before it.
#[tokio::test]
async fn a_client_that_connected_before_the_stop_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let origin = Origin::start("ok", Script::always(Behavior::ok())).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // Let the server accept it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.shutdown.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(b"GET /late HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    within(5, "the answer and the close", stream.read_to_end(&mut got))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    within(3, "server drain", proxy.task)
        .await
        .unwrap()
        .unwrap();
}

/// The same over TLS, where nothing is read before the HTTP/1.1 driver
/// starts: a client whose handshake finished before the stop, and whose
/// first request comes after it, is answered.
#[tokio::test]
async fn a_tls_client_that_connected_before_the_stop_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_origin, proxy, mut stream) =
        tls_client_connected(switchyard::ServerOptions::default()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.shutdown.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(b"GET /late HTTP/1.1\r\nhost: proxy.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    // The server may end TLS without close_notify after its answer.
    let _ = within(5, "the answer and the close", stream.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    within(3, "server drain", proxy.task)
        .await
        .unwrap()
        .unwrap();
}

/// But a connection quiet for `park_idle_after` without a request is idle:
/// a stop closes it at once, rather than letting it hold the drain.
#[tokio::test]
async fn a_quiet_connection_without_a_request_closes_at_the_stop() {
    use tokio::io::AsyncReadExt;

    let options = switchyard::ServerOptions {
        park_idle_after: Some(Duration::from_millis(200)),
        ..switchyard::ServerOptions::default()
    };
    let (_origin, proxy, mut stream) = tls_client_connected(options).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.shutdown.shutdown();
    let mut got = Vec::new();
    let _ = within(
        3,
        "the quiet connection to close",
        stream.read_to_end(&mut got),
    )
    .await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    within(3, "server drain", proxy.task)
        .await
        .unwrap()
        .unwrap();
}

/// An HTTPS proxy (`options`) in front of an origin answering `ok`, and a
/// client whose TLS handshake with it is done, no request sent yet.
async fn tls_client_connected(
    options: switchyard::ServerOptions,
) -> (
    Origin,
    common::Running,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    use switchyard_testkit::tls::{TestCa, client_config};

    let ca = TestCa::new("shutdown CA");
    let cert = ca.issue(&["proxy.test"]);
    let origin = Origin::start("ok", Script::always(Behavior::ok())).await;
    let tls = common::serving(&cert);
    let proxy = common::start_serving(TestProxy::new(&[origin.addr()]), options, Some(tls)).await;
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("proxy.test").unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, None));
    let stream = within(5, "TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    (origin, proxy, stream)
}
