//! The HTTP/1.1 connection to an upstream, on Switchyard's own codec:
//! answers hyper's client took care of that the codec now must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{TestProxy, start};
use http::Method;
use http_body_util::Full;
use switchyard::ErrorKind;
use switchyard_testkit::{Behavior, Origin, Script, client, within};

/// An origin that answers every request with `raw` and keeps the connection.
async fn answering(raw: impl Into<Bytes>) -> Origin {
    let bytes = raw.into();
    Origin::start("raw", Script::always(Behavior::RawKeepOpen { bytes })).await
}

#[tokio::test]
async fn informational_answers_before_the_response_are_skipped() {
    let origin = answering(
        "HTTP/1.1 100 Continue\r\n\r\n\
         HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
         HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    for _ in 0..2 {
        let reply = within(10, "a request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok");
        assert!(!reply.headers.contains_key("link"));
    }
    assert_eq!(origin.stats().connections, 1, "the connection was reused");
}

#[tokio::test]
async fn a_response_head_over_64_kib_is_an_invalid_response() {
    let raw = format!(
        "HTTP/1.1 200 OK\r\nx-filler: {}\r\nContent-Length: 2\r\n\r\nok",
        "f".repeat(65 * 1024)
    );
    let origin = answering(raw).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let reply = within(10, "a 65 KiB head", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::InvalidResponse));
}

#[tokio::test]
async fn a_head_request_reads_no_body_whatever_the_length_says() {
    // The answer to a HEAD declares the length of the body a GET would
    // get; reading that many bytes would swallow the next response.
    let origin = answering("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    for _ in 0..2 {
        let request = http::Request::builder()
            .method(Method::HEAD)
            .uri(format!("http://{}/", proxy.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = within(10, "a HEAD request", client::send(proxy.addr, request))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-length"], "10");
        assert!(reply.body.is_empty());
    }
    assert_eq!(origin.stats().connections, 1, "the connection was reused");
}
