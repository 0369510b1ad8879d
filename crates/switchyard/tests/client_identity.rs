//! The client's identity as the upstream sees it: `X-Forwarded-For`,
//! `-Proto` and `-Host` by default, a spoofed one from an untrusted client
//! replaced, a trusted proxy's chain kept with this hop appended, and RFC
//! 7239 `Forwarded` when asked for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestProxy, start_with};
use switchyard::ServerOptions;
use switchyard::proxy::identity::{ClientIdentity, ForwardedStyle};
use switchyard_testkit::{Origin, client, within};

/// What the origin saw of one spoofing request sent through a proxy with
/// `identity`.
async fn seen_with(identity: ClientIdentity) -> std::collections::BTreeMap<String, String> {
    let origin = Origin::healthy("origin").await;
    let options = ServerOptions {
        client_identity: identity,
        ..ServerOptions::default()
    };
    let proxy = start_with(TestProxy::new(&[origin.addr()]), options).await;
    let request = b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\
        X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: bank.test\r\nForwarded: for=10.1.2.3\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 5)).await;
    assert!(raw.text().starts_with("HTTP/1.1 200"), "{}", raw.text());
    let headers = &origin.requests()[0].headers;
    headers
        .keys()
        .map(|name| {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            (name.to_string(), values.join(", "))
        })
        .collect()
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_from_an_untrusted_client_is_replaced() {
    let seen = seen_with(ClientIdentity::default()).await;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "app.test");
    // Forwarded is not managed by default: it passes as it came.
    assert_eq!(seen["forwarded"], "for=10.1.2.3");
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_chain_and_this_hop_is_appended() {
    let seen = seen_with(ClientIdentity {
        style: ForwardedStyle::Both,
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
    })
    .await;
    assert_eq!(seen["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "bank.test");
    assert_eq!(
        seen["forwarded"],
        "for=10.1.2.3, for=127.0.0.1;proto=http;host=\"app.test\""
    );
}

#[tokio::test]
async fn every_request_gets_an_id_that_goes_upstream_and_back() {
    let origin = Origin::healthy("origin").await;
    let trusted = ServerOptions {
        client_identity: ClientIdentity {
            style: ForwardedStyle::XForwarded,
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        },
        ..ServerOptions::default()
    };
    let plain = start_with(TestProxy::new(&[origin.addr()]), ServerOptions::default()).await;
    let trusting = start_with(TestProxy::new(&[origin.addr()]), trusted).await;
    let with_id = || {
        http::Request::get("/")
            .header("x-request-id", "from-the-edge-1")
            .body(Default::default())
            .unwrap()
    };
    // An untrusted client's ID is replaced by a new one, the same upstream
    // and in the response.
    let reply = within(10, "plain", client::send(plain.addr, with_id()))
        .await
        .unwrap();
    let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(origin.requests()[0].headers["x-request-id"], id.as_str());
    // A trusted proxy's ID is kept.
    let reply = within(10, "trusting", client::send(trusting.addr, with_id()))
        .await
        .unwrap();
    assert_eq!(reply.headers["x-request-id"], "from-the-edge-1");
    assert_eq!(
        origin.requests()[1].headers["x-request-id"],
        "from-the-edge-1"
    );
    // A response the proxy makes itself carries the ID too.
    let dead = switchyard_testkit::refused_addr().await;
    let failing = start_with(TestProxy::new(&[dead]), ServerOptions::default()).await;
    let reply = within(10, "failing", client::get(failing.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(reply.headers["x-request-id"].len(), 32);
}

/// Both header styles, nobody trusted.
fn both_styles() -> ServerOptions {
    ServerOptions {
        client_identity: ClientIdentity {
            style: ForwardedStyle::Both,
            ..ClientIdentity::default()
        },
        ..ServerOptions::default()
    }
}

/// The host headers an origin saw: `Host`, `X-Forwarded-Host` and the
/// `host=` of `Forwarded`.
fn host_headers(origin: &Origin) -> [String; 3] {
    let seen = origin.requests();
    let headers = &seen.last().unwrap().headers;
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let forwarded_host = text("forwarded")
        .split(';')
        .find_map(|part| {
            part.trim()
                .strip_prefix("host=")
                .map(|h| h.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    [text("host"), text("x-forwarded-host"), forwarded_host]
}

#[tokio::test]
async fn the_forwarded_host_is_the_routed_host_over_http1_h2c_and_h2() {
    let origin = Origin::healthy("origin").await;
    let routed = ["shop.test"; 3].map(String::from);

    // HTTP/1.1 with an absolute-form target: its authority wins over Host.
    let proxy = start_with(TestProxy::new(&[origin.addr()]), both_styles()).await;
    let request =
        b"GET http://shop.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n";
    let raw = within(5, "absolute form", client::raw(proxy.addr, request, 3)).await;
    assert!(raw.text().starts_with("HTTP/1.1 200"), "{}", raw.text());
    assert_eq!(host_headers(&origin), routed, "HTTP/1.1 absolute form");

    // h2c: the host is in :authority alone.
    let h2 = within(
        5,
        "h2c",
        switchyard_testkit::h2::H2Conn::cleartext(proxy.addr),
    )
    .await
    .unwrap();
    let mut request = h2.request(http::Method::GET, "/x", "");
    *request.uri_mut() = "http://shop.test/x".parse().unwrap();
    let answer = within(5, "GET over h2c", h2.send(request)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(host_headers(&origin), routed, "h2c");

    // h2 over TLS.
    let ca = switchyard_testkit::tls::TestCa::new("private CA");
    let cert = ca.issue(&["shop.test"]);
    let tls = common::serving(&cert);
    let proxy =
        common::start_serving(TestProxy::new(&[origin.addr()]), both_styles(), Some(tls)).await;
    let config =
        switchyard_testkit::h2::with_h2(&switchyard_testkit::tls::client_config(&ca, None));
    let h2 = within(
        5,
        "h2 over TLS",
        switchyard_testkit::h2::H2Conn::tls(proxy.addr, &config, "shop.test"),
    )
    .await
    .unwrap();
    let answer = within(
        5,
        "GET over h2",
        h2.send(h2.request(http::Method::GET, "/x", "")),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(host_headers(&origin), routed, "h2 over TLS");
}
