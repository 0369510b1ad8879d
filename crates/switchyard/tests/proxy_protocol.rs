//! The PROXY protocol on a listener: the client's address comes from the
//! balancer's header (v1 or v2, before TLS too), and a connection without
//! one is closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{TestProxy, serving, start_serving, start_with};
use http_body_util::Full;
use switchyard::ServerOptions;
use switchyard_testkit::tls::{TestCa, client_config, send_over};
use switchyard_testkit::{Origin, client, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn expecting_proxy_headers() -> ServerOptions {
    ServerOptions {
        proxy_protocol: true,
        ..ServerOptions::default()
    }
}

#[tokio::test]
async fn a_v1_header_names_the_client_the_upstream_is_told_about() {
    let origin = Origin::healthy("origin").await;
    let running = start_with(TestProxy::new(&[origin.addr()]), expecting_proxy_headers()).await;
    // Header and request in one write: what follows the header is replayed.
    let request = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let raw = within(
        5,
        "a request after a PROXY header",
        client::raw(running.addr, request, 5),
    )
    .await;
    assert!(raw.text().starts_with("HTTP/1.1 200"), "{}", raw.text());
    assert_eq!(
        origin.requests()[0].headers["x-forwarded-for"],
        "203.0.113.7"
    );
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].status, Some(200));
}

#[tokio::test]
async fn a_v2_header_comes_before_the_tls_handshake() {
    let ca = TestCa::new("private CA");
    let cert = ca.issue(&["proxy.test"]);
    let origin = Origin::healthy("origin").await;
    let tls = serving(&cert);
    let running = start_serving(
        TestProxy::new(&[origin.addr()]),
        expecting_proxy_headers(),
        Some(tls),
    )
    .await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    // v2 signature, PROXY over TCP/IPv6, 36 address bytes: [2001:db8::5]:40000 -> [2001:db8::1]:443.
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    header.extend_from_slice(
        &"2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    header.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    header.extend_from_slice(&40000u16.to_be_bytes());
    header.extend_from_slice(&443u16.to_be_bytes());
    stream.write_all(&header).await.unwrap();
    let request = http::Request::get("/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = within(
        5,
        "HTTPS after a PROXY header",
        send_over(
            stream,
            running.addr,
            &client_config(&ca, None),
            "proxy.test",
            request,
        ),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let seen = &origin.requests()[0];
    assert_eq!(seen.headers["x-forwarded-for"], "2001:db8::5");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn a_connection_without_a_header_is_closed_and_counted() {
    let origin = Origin::healthy("origin").await;
    let running = start_with(TestProxy::new(&[origin.addr()]), expecting_proxy_headers()).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let raw = within(
        5,
        "a request without a PROXY header",
        client::raw(running.addr, request, 5),
    )
    .await;
    assert!(raw.bytes.is_empty(), "{}", raw.text());
    assert_eq!(origin.stats().requests, 0);
    assert_eq!(running.counts.proxy_header_failed(), 1);
    // A balancer's own health check (v1 UNKNOWN) keeps the socket's address.
    let check = b"PROXY UNKNOWN\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let raw = within(5, "a health check", client::raw(running.addr, check, 5)).await;
    assert!(raw.text().starts_with("HTTP/1.1 200"), "{}", raw.text());
    assert_eq!(origin.requests()[0].headers["x-forwarded-for"], "127.0.0.1");
}
