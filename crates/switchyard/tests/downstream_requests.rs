//! What the proxy accepts from clients and what it forwards: malformed or
//! oversized heads get a 4xx, hop-by-hop headers stay on their hop, Host is
//! kept, and pipelined requests are answered in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestProxy, start};
use switchyard_testkit::{Origin, client, within};

fn status_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_malformed_request_gets_400() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let raw = within(
        10,
        "raw",
        client::raw(proxy.addr, b"NOT HTTP AT ALL\r\n\r\n", 5),
    )
    .await;
    assert!(
        status_line(&raw.bytes).starts_with("HTTP/1.1 400"),
        "{:?}",
        status_line(&raw.bytes)
    );
    assert_eq!(origin.stats().requests, 0);
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;

    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..150 {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let raw = within(10, "many headers", client::raw(proxy.addr, &many, 5)).await;
    assert!(
        status_line(&raw.bytes).starts_with("HTTP/1.1 431"),
        "{:?}",
        status_line(&raw.bytes)
    );

    let mut large = b"GET / HTTP/1.1\r\nHost: x\r\nx-big: ".to_vec();
    large.extend(std::iter::repeat_n(b'a', 40 * 1024));
    large.extend_from_slice(b"\r\n\r\n");
    let raw = within(10, "large header", client::raw(proxy.addr, &large, 5)).await;
    assert!(
        status_line(&raw.bytes).starts_with("HTTP/1.1 431"),
        "{:?}",
        status_line(&raw.bytes)
    );
    assert_eq!(origin.stats().requests, 0);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded_and_host_is_kept() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let request = b"GET /path?q=1 HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, x-hop\r\n\
        x-hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: deflate\r\n\
        x-end-to-end: kept\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 2)).await;
    assert!(status_line(&raw.bytes).starts_with("HTTP/1.1 200"));
    let seen = &origin.requests()[0];
    assert_eq!(seen.path, "/path?q=1");
    assert_eq!(seen.headers["host"], "app.test");
    assert_eq!(seen.headers["x-end-to-end"], "kept");
    for name in [
        "connection",
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert!(!seen.headers.contains_key(name), "{name} was forwarded");
    }
    // A client that accepts trailers may get them through the proxy: the
    // upstream is told so, and of the client's TE only that.
    let request = b"GET / HTTP/1.1\r\nHost: app.test\r\nTE: deflate, trailers\r\n\r\n";
    within(10, "raw", client::raw(proxy.addr, request, 2)).await;
    assert_eq!(origin.requests()[1].headers["te"], "trailers");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let requests = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let raw = within(10, "pipelined", client::raw(proxy.addr, requests, 5)).await;
    let text = String::from_utf8_lossy(&raw.bytes);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    let paths: Vec<String> = origin.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/first", "/second"]);
}

#[tokio::test]
async fn an_early_answer_leaves_the_client_connection_usable() {
    let early = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly";
    let upstream = common::answers_at_head(early, common::AfterAnswer::Hold).await;
    let proxy = start(TestProxy::new(&[upstream])).await;
    // A raw client: hyper's client can hang in this very exchange (see
    // `client::RawConn`), which is what made this test fail one run in twenty.
    let mut conn = client::RawConn::connect(proxy.addr).await;
    let mut upload =
        format!("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {UPLOAD}\r\n\r\n")
            .into_bytes();
    upload.resize(upload.len() + UPLOAD, b'u');
    conn.start_write(upload);
    let reply = within(10, "the early answer", conn.read_response())
        .await
        .unwrap();
    assert_eq!((reply.status, &reply.body[..]), (200, &b"early"[..]));
    // The proxy reads and discards the rest of the upload...
    within(10, "the rest of the upload", conn.finish_write())
        .await
        .unwrap();
    // ...so the connection carries the next request.
    within(
        10,
        "the next request",
        conn.write(&b"GET /next HTTP/1.1\r\nhost: x\r\n\r\n"[..]),
    )
    .await
    .unwrap();
    let reply = within(10, "the next answer", conn.read_response())
        .await
        .unwrap();
    assert_eq!((reply.status, &reply.body[..]), (200, &b"early"[..]));
    let logged = proxy.logs.wait(2).await;
    assert!(logged.iter().all(|l| l.error.is_none()), "{logged:?}");
}

/// The upload in `an_early_answer_leaves_the_client_connection_usable`: far
/// more than the sockets between client, proxy and upstream buffer.
const UPLOAD: usize = 8 * 1024 * 1024;

#[tokio::test]
async fn a_malformed_request_body_gets_400_and_is_logged_as_the_clients() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    // "zz" is not a chunk size.
    let request = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 5)).await;
    let text = raw.text();
    assert!(
        status_line(&raw.bytes).starts_with("HTTP/1.1 400"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("proxy-status: switchyard; error=http_request_error"),
        "{text}"
    );
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].status, Some(400));
    assert_eq!(
        logged[0].error,
        Some(switchyard::ErrorKind::InvalidDownstreamRequest)
    );
    let attempt = &logged[0].trace.records()[0];
    assert_eq!(
        attempt.error,
        Some(switchyard::ErrorKind::InvalidDownstreamRequest),
        "{}",
        logged[0].trace
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_gets_no_made_up_status() {
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    // 5 of 100 promised bytes, then the client shuts down its side.
    let request = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello";
    let raw = within(10, "raw", client::raw_then_shutdown(proxy.addr, request, 5)).await;
    assert!(raw.closed_by_server, "the proxy closes the connection");
    assert!(
        !raw.text().contains("499"),
        "499 is for the log, never sent: {}",
        raw.text()
    );
    assert!(raw.bytes.is_empty(), "nothing to answer: {}", raw.text());
    let logged = proxy.logs.wait(1).await;
    assert_eq!(
        logged[0].error,
        Some(switchyard::ErrorKind::DownstreamClosed)
    );
    assert_eq!(logged[0].status, Some(499), "logged as nginx does");
}

#[tokio::test]
async fn connection_cannot_strip_the_host_header() {
    // Found by the property tests: `Connection: host` made the proxy send
    // its upstream's address as the host.
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let request =
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: host, x-hop\r\nx-hop: 1\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 2)).await;
    assert!(status_line(&raw.bytes).starts_with("HTTP/1.1 200"));
    let seen = &origin.requests()[0];
    assert_eq!(seen.headers["host"], "app.test");
    assert!(!seen.headers.contains_key("x-hop"));
}

#[test]
fn any_head_gets_200_within_the_limits_and_431_beyond_them() {
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (origin, proxy) = runtime.block_on(async {
        let origin = Origin::healthy("origin").await;
        let proxy = start(TestProxy::new(&[origin.addr()])).await;
        (origin, proxy)
    });
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    // Headers beside Host, and the length of each value. The limits are
    // 100 headers and 32 KiB; near them either answer is fine.
    let strategy = (0usize..160, 0usize..700);
    runner
        .run(&strategy, |(count, size)| {
            let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
            for i in 0..count {
                head.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(size)).as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            let raw = runtime.block_on(client::raw(proxy.addr, &head, 5));
            let line = status_line(&raw.bytes);
            let (headers, bytes) = (count + 2, head.len());
            if headers <= 95 && bytes <= 30 * 1024 {
                proptest::prop_assert!(
                    line.starts_with("HTTP/1.1 200"),
                    "{} {}: {}",
                    headers,
                    bytes,
                    line
                );
            } else if headers > 105 || bytes > 34 * 1024 {
                proptest::prop_assert!(
                    line.starts_with("HTTP/1.1 431"),
                    "{} {}: {}",
                    headers,
                    bytes,
                    line
                );
            } else {
                proptest::prop_assert!(
                    line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.1 431"),
                    "{} {}: {}",
                    headers,
                    bytes,
                    line
                );
            }
            Ok(())
        })
        .unwrap();
    drop(origin);
}

/// Read from `stream` into `got` until `done` says so (5 s at most);
/// panics if the proxy closes first.
async fn read_until(
    stream: &mut tokio::net::TcpStream,
    got: &mut Vec<u8>,
    what: &str,
    done: impl Fn(&[u8]) -> bool,
) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 1024];
    within(5, what, async {
        while !done(got) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed before {what}: {}",
                String::from_utf8_lossy(got)
            );
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
}

/// A client that sends `Expect: 100-continue` waits for `100 Continue`
/// before its body: it is sent once the body is wanted, and the body then
/// goes upstream whole.
#[tokio::test]
async fn a_client_expecting_100_continue_gets_it_then_sends_its_body() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::healthy("origin").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "100 Continue", |got| {
        got.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    stream.write_all(b"hello").await.unwrap();
    got.drain(..25);
    read_until(&mut stream, &mut got, "the final answer", |got| {
        got.ends_with(b"origin")
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_len, 5);
    assert!(seen[0].body_complete);
}

/// Answers every request itself (403) before reading its body.
#[derive(Clone, Default)]
struct Refusing {
    logs: common::Logs,
}

impl common::HasLogs for Refusing {
    fn logs(&self) -> common::Logs {
        self.logs.clone()
    }
}

impl switchyard::prelude::ProxyHttp for Refusing {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn request_filter(
        &self,
        session: &mut switchyard::prelude::Session,
        _: &mut (),
    ) -> switchyard::Result<bool> {
        session.respond_status(http::StatusCode::FORBIDDEN);
        Ok(true)
    }
    async fn upstream_peer(
        &self,
        _: &mut switchyard::prelude::Session,
        _: &mut (),
    ) -> switchyard::Result<Box<switchyard::HttpPeer>> {
        Err(switchyard::Error::explain(
            switchyard::ErrorKind::Internal,
            "never asked",
        ))
    }
    async fn logging(
        &self,
        session: &mut switchyard::prelude::Session,
        e: Option<&switchyard::Error>,
        _: &mut (),
    ) {
        self.logs.push(session, e);
    }
}

/// After an answer given before the request body was read, the body is
/// read and dropped so the connection can serve on; a body that turns out
/// malformed then closes the connection, and its bytes are never read as
/// a next request.
#[tokio::test]
async fn a_malformed_body_read_after_the_answer_closes_the_connection() {
    let proxy = common::start_with(Refusing::default(), switchyard::ServerOptions::default()).await;
    let request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 5)).await;
    let text = raw.text();
    assert!(
        status_line(&raw.bytes).starts_with("HTTP/1.1 403"),
        "{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "one answer: {text}");
    assert!(raw.closed_by_server, "the connection must close: {text}");
}

/// A connection closed while its request body is still being read after
/// the answer (here: shutdown past the drain timeout) tells whoever reads
/// the body at once: the request's engine, draining it on a task of its
/// own, ends and logs then, not after the drain's own 5 s limit.
#[tokio::test]
async fn a_connection_closed_while_its_body_drains_ends_the_drain_at_once() {
    use tokio::io::AsyncWriteExt;
    let options = switchyard::ServerOptions {
        drain_timeout: std::time::Duration::from_millis(100),
        ..switchyard::ServerOptions::default()
    };
    let proxy = common::start_with(Refusing::default(), options).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&[b'a'; 1000]).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "the answer", |got| {
        got.ends_with(b"403 Forbidden\n")
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let closed = std::time::Instant::now();
    proxy.shutdown.shutdown();
    within(5, "the request logged", proxy.logs.wait(1)).await;
    let waited = closed.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(2),
        "the drain went on for {waited:?} after its connection closed"
    );
    drop(stream);
}
