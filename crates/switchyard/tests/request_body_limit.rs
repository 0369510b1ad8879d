//! The request body limit: a declared length over it is refused with 413
//! before anything goes upstream, and a chunked body that crosses it is cut
//! off before the upstream receives a byte past it. A body that fails after
//! the response head went out is the client's fault, not the upstream's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestProxy, start_with};
use switchyard::{ErrorKind, ServerOptions};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

const LIMIT: u64 = 1000;

fn limited() -> ServerOptions {
    ServerOptions {
        max_request_body: Some(LIMIT),
        ..ServerOptions::default()
    }
}

fn status_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// A POST whose declared length and body are one byte over the limit,
/// with `extra` fields.
fn post_over_the_limit(extra: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n",
        LIMIT + 1
    )
    .into_bytes();
    request.resize(request.len() + LIMIT as usize + 1, b'a');
    request
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_413_and_nothing_goes_upstream() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), limited()).await;
    let request = post_over_the_limit("Connection: close\r\n");
    let raw = within(10, "raw", client::raw(proxy.addr, &request, 5)).await;
    let text = raw.text();
    assert!(status_line(&text).starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("error=http_request_error; details=\"request-body-too-large\""),
        "{text}"
    );
    assert_eq!(origin.stats().connections, 0, "nothing went upstream");
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::RequestBodyTooLarge));
    assert!(logged[0].trace.is_empty());
}

#[tokio::test]
async fn a_body_at_the_limit_goes_through() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), limited()).await;
    let body = "a".repeat(LIMIT as usize);
    let reply = within(10, "post", client::post(proxy.addr, "/upload", body))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), LIMIT as usize);
}

#[tokio::test]
async fn a_chunked_body_that_crosses_the_limit_is_cut_off_with_413() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), limited()).await;
    let chunk = "b".repeat(600);
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let raw = within(10, "raw", client::raw(proxy.addr, request.as_bytes(), 5)).await;
    let text = raw.text();
    assert!(status_line(&text).starts_with("HTTP/1.1 413"), "{text}");
    let stats = origin.stats();
    assert!(
        stats.body_bytes <= LIMIT,
        "the upstream got {} body bytes",
        stats.body_bytes
    );
    assert_eq!(stats.completed_bodies, 0, "the upstream saw no whole body");
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::RequestBodyTooLarge));
    let attempt = &logged[0].trace.records()[0];
    assert_eq!(attempt.error, Some(ErrorKind::RequestBodyTooLarge));
}

#[tokio::test]
async fn crossing_the_limit_after_the_head_aborts_the_response_and_blames_the_client() {
    let chunk = format!("258\r\n{}\r\n", "c".repeat(600));
    let logged = body_failing_after_the_head(&chunk.repeat(2)).await;
    let attempt = &logged.trace.records()[0];
    assert_eq!(
        attempt.error,
        Some(ErrorKind::RequestBodyTooLarge),
        "{}",
        logged.trace
    );
}

#[tokio::test]
async fn a_malformed_body_after_the_head_is_the_clients_fault_not_the_upstreams() {
    // Found in review: it was logged as the upstream's read error, which
    // passive health counts against the server.
    let logged = body_failing_after_the_head("zz\r\nbad\r\n").await;
    let attempt = &logged.trace.records()[0];
    assert_eq!(
        attempt.error,
        Some(ErrorKind::InvalidDownstreamRequest),
        "{}",
        logged.trace
    );
}

/// A chunked POST to an upstream that starts its chunked response at once
/// and never finishes it: once the client has the head and the first chunk,
/// it sends `rest` of its body. Checks that the client's response is
/// aborted, not complete; returns what `logging` saw.
async fn body_failing_after_the_head(rest: &str) -> common::Logged {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nearly\r\n";
    let upstream = common::answers_at_head(head, common::AfterAnswer::ReadAll).await;
    let proxy = start_with(TestProxy::new(&[upstream]), limited()).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("early") {
        let n = within(5, "the early chunk", stream.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let _ = stream.write_all(rest.as_bytes()).await;
    let mut tail = Vec::new();
    let _ = within(5, "the abort", stream.read_to_end(&mut tail)).await;
    got.extend_from_slice(&tail);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the response must not look complete: {text}"
    );
    proxy.logs.wait(1).await.remove(0)
}

/// A body refused unread cannot be skipped: the connection closes after
/// the 413, whatever the client asked, so its bytes are never read as a
/// next request.
#[tokio::test]
async fn the_connection_closes_after_a_body_refused_unread() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start_with(TestProxy::new(&[origin.addr()]), limited()).await;
    let request = post_over_the_limit("");
    let raw = within(10, "raw", client::raw(proxy.addr, &request, 5)).await;
    let text = raw.text();
    assert!(status_line(&text).starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "one answer: {text}");
    assert!(raw.closed_by_server, "the connection must close: {text}");
}
