//! gRPC through the proxy: a call's status in `logging`, `grpc-timeout` as
//! the deadline (the upstream told what is left), and the proxy's own
//! failures answered as gRPC errors a gRPC client can read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{OnFail, h2_proxy, quick, start};
use http::{Method, Request};
use http_body_util::Full;
use switchyard::proxy::grpc;
use switchyard_testkit::h2::H2Conn;
use switchyard_testkit::h2_origin::{H2Behavior, H2Origin};
use switchyard_testkit::{refused_addr, within};

/// A unary gRPC call to `path` with `timeout` (a `grpc-timeout` value).
fn call(h2: &H2Conn, path: &str, timeout: Option<&str>) -> Request<Full<bytes::Bytes>> {
    let mut request = h2.request(Method::POST, path, vec![0, 0, 0, 0, 2, b'h', b'i']);
    let headers = request.headers_mut();
    headers.insert("te", "trailers".parse().unwrap());
    headers.insert("content-type", "application/grpc".parse().unwrap());
    if let Some(timeout) = timeout {
        headers.insert("grpc-timeout", timeout.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn a_call_the_proxy_cannot_place_gets_grpc_unavailable_not_an_http_error() {
    let running = start(h2_proxy(&[refused_addr().await]).on_connect_fail(OnFail::Default)).await;
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();

    let answer = within(5, "a gRPC call", h2.send(call(&h2, "/svc.S/M", None)))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "gRPC errors ride on HTTP 200");
    assert_eq!(answer.headers["content-type"], "application/grpc");
    assert_eq!(answer.headers["grpc-status"], "14", "{:?}", answer.headers);
    assert_eq!(
        answer.headers["grpc-message"],
        "switchyard: connect-refused"
    );
    assert!(answer.body.is_empty(), "trailers only");
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].grpc.as_ref().map(|g| g.code), Some(14));
}

#[tokio::test]
async fn grpc_timeout_is_the_deadline_and_the_upstream_gets_what_is_left() {
    let echo = H2Origin::start("echo", H2Behavior::GrpcEcho).await;
    let running = start(h2_proxy(&[echo.addr()])).await;
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();

    let answer = within(5, "a gRPC call", h2.send(call(&h2, "/svc.S/M", Some("2S"))))
        .await
        .unwrap();
    assert_eq!(answer.trailers.unwrap()["grpc-status"], "0");
    let sent = echo.seen()[0].headers["grpc-timeout"].clone();
    let left = grpc::parse_timeout(sent.to_str().unwrap()).unwrap();
    assert!(
        left < Duration::from_secs(2) && left > Duration::from_secs(1),
        "the upstream got {sent:?}"
    );
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].grpc.as_ref().map(|g| g.code), Some(0));

    // A silent upstream: the call ends at its deadline, not at the
    // upstream's 30 s read timeout, as DEADLINE_EXCEEDED.
    let silent = H2Origin::start("silent", H2Behavior::Silent).await;
    let running = start(h2_proxy(&[silent.addr()]).options(switchyard::PeerOptions {
        read_timeout: Duration::from_secs(30),
        ..quick()
    }))
    .await;
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();
    let started = Instant::now();
    let answer = within(
        5,
        "a gRPC call",
        h2.send(call(&h2, "/svc.S/M", Some("300m"))),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.headers["grpc-status"], "4", "{:?}", answer.headers);
}

#[tokio::test]
async fn a_trailers_only_answer_is_forwarded_with_its_status_logged() {
    let origin = H2Origin::start("unavailable", H2Behavior::GrpcTrailersOnly(14)).await;
    let running = start(h2_proxy(&[origin.addr()])).await;
    let h2 = H2Conn::cleartext(running.addr).await.unwrap();

    let answer = within(5, "a gRPC call", h2.send(call(&h2, "/svc.S/M", None)))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["grpc-status"], "14");
    assert_eq!(answer.headers["grpc-message"], "from the origin");
    let logged = running.logs.wait(1).await;
    let status = logged[0].grpc.clone().unwrap();
    assert_eq!(status.code, 14);
    assert_eq!(status.message.as_deref(), Some("from the origin"));
}

/// A gRPC message: not compressed, its length, then the bytes.
fn message(payload: &[u8]) -> bytes::Bytes {
    let mut framed = vec![0];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(payload);
    framed.into()
}

#[tokio::test]
async fn a_streaming_call_is_echoed_message_by_message() {
    let echo = H2Origin::start("echo", H2Behavior::GrpcEcho).await;
    let running = start(h2_proxy(&[echo.addr()])).await;
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut sender = sender.ready().await.unwrap();
    let request = Request::post(format!("http://{}/svc.S/Chat", running.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut outgoing) = sender.send_request(request, false).unwrap();
    outgoing.send_data(message(b"one"), false).unwrap();
    let response = within(5, "the response head", response).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut incoming = response.into_body();
    for (i, text) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        if i > 0 {
            // Sent only after the previous echo came back: nothing is
            // buffered whole on the way, either way.
            outgoing.send_data(message(text), false).unwrap();
        }
        let want = message(text);
        let mut got = Vec::new();
        while got.len() < want.len() {
            let chunk = within(5, "an echoed message", incoming.data())
                .await
                .expect("the stream ended early")
                .unwrap();
            let _ = incoming.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, want.as_ref());
    }
    outgoing.send_data(bytes::Bytes::new(), true).unwrap();
    assert!(
        within(5, "the end of the data", incoming.data())
            .await
            .is_none()
    );
    let trailers = within(5, "the trailers", incoming.trailers())
        .await
        .unwrap()
        .expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    let seen = echo.seen();
    assert_eq!(seen[0].body.len(), 3 * 5 + 3 + 3 + 5);
}
