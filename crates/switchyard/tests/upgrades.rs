//! HTTP/1.1 upgrades (WebSocket): the failure contract holds until the
//! upstream answers 101, then both connections are joined as a byte stream
//! with an idle timeout, drained at shutdown, and logged with bytes each way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{AfterAnswer, TestProxy, answers_at_head, quick, start, start_with, summary};
use switchyard::ServerOptions;
use switchyard::prelude::*;
use switchyard::proxy::{AllowedUpgrades, TunnelEnd};
use switchyard_testkit::upgrade::{EchoOrigin, UpgradeClient};
use switchyard_testkit::{refused_addr, within};

#[tokio::test]
async fn a_websocket_echo_goes_through_the_proxy_and_is_logged() {
    let origin = EchoOrigin::start("echo").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let mut ws = within(
        5,
        "the upgrade",
        UpgradeClient::connect(running.addr, "/chat", "websocket"),
    )
    .await
    .unwrap();
    assert_eq!(ws.status(), 101, "{}", ws.head);
    let head = ws.head.to_ascii_lowercase();
    assert!(
        head.contains("upgrade: websocket") && head.contains("connection: upgrade"),
        "{head}"
    );
    assert_eq!(
        within(5, "echo", ws.echo(b"hello")).await.unwrap(),
        b"hello"
    );
    let big = vec![7u8; 200_000];
    assert_eq!(
        within(5, "a large echo", ws.echo(&big))
            .await
            .unwrap()
            .len(),
        big.len()
    );
    ws.finish().await;
    within(5, "the echo to close", ws.read_to_close()).await;

    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].status, Some(101));
    let upgrade = logged[0].upgrade.clone().expect("the tunnel's record");
    assert_eq!(upgrade.protocol, "websocket");
    assert_eq!(upgrade.to_upstream, 5 + 200_000);
    assert_eq!(upgrade.to_client, 5 + 200_000);
    assert_eq!(upgrade.ended, TunnelEnd::Closed);
    assert_eq!(origin.upgrades(), 1);
}

#[tokio::test]
async fn before_the_101_a_connect_failure_goes_to_the_next_server() {
    let dead = refused_addr().await;
    let origin = EchoOrigin::start("echo").await;
    let running = start(TestProxy::new(&[dead, origin.addr()]).options(quick())).await;
    let mut ws = within(
        5,
        "the upgrade",
        UpgradeClient::connect(running.addr, "/", "websocket"),
    )
    .await
    .unwrap();
    assert_eq!(ws.status(), 101, "{}", ws.head);
    assert_eq!(
        within(5, "echo", ws.echo(b"after failover")).await.unwrap(),
        b"after failover"
    );
    ws.finish().await;
    let logged = running.logs.wait(1).await;
    assert_eq!(
        summary(&logged[0].trace),
        ["connect-refused -> retry", "101 -> done"]
    );
}

#[tokio::test]
async fn a_101_the_client_did_not_ask_for_is_an_invalid_response() {
    let rogue = answers_at_head(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        AfterAnswer::Hold,
    )
    .await;
    let proxy = TestProxy::new(&[rogue]).options(quick());
    let running = start(proxy).await;
    let answer = within(5, "GET", switchyard_testkit::client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 502);
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::InvalidResponse));
}

#[tokio::test]
async fn a_quiet_tunnel_is_closed_after_the_idle_timeout() {
    let origin = EchoOrigin::start("echo").await;
    let options = PeerOptions {
        read_timeout: Duration::from_millis(300),
        ..quick()
    };
    let running = start(TestProxy::new(&[origin.addr()]).options(options)).await;
    let mut ws = UpgradeClient::connect(running.addr, "/", "websocket")
        .await
        .unwrap();
    assert_eq!(ws.echo(b"ping").await.unwrap(), b"ping");
    within(5, "the idle tunnel to close", ws.read_to_close()).await;
    let logged = running.logs.wait(1).await;
    let upgrade = logged[0].upgrade.clone().unwrap();
    assert_eq!(upgrade.ended, TunnelEnd::IdleTimeout);
    // The attempt ended at the 101: its duration (latency for balancing and
    // metrics) is not the tunnel's.
    let attempt = logged[0].trace.records()[0].duration;
    assert!(
        attempt < upgrade.duration,
        "{attempt:?} vs {:?}",
        upgrade.duration
    );
    assert!(attempt < Duration::from_millis(250), "{attempt:?}");
}

#[tokio::test]
async fn shutdown_lets_a_tunnel_run_until_the_drain_time_then_closes_it() {
    let origin = EchoOrigin::start("echo").await;
    let options = ServerOptions {
        drain_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    };
    let running = start_with(TestProxy::new(&[origin.addr()]).options(quick()), options).await;
    let mut ws = UpgradeClient::connect(running.addr, "/", "websocket")
        .await
        .unwrap();
    assert_eq!(ws.echo(b"before").await.unwrap(), b"before");
    running.shutdown.shutdown();
    // Draining: the listener is closed, the tunnel still open.
    within(5, "the listener to close", async {
        while tokio::net::TcpStream::connect(running.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(ws.echo(b"while draining").await.unwrap(), b"while draining");
    within(
        5,
        "the tunnel to close at the end of the drain",
        ws.read_to_close(),
    )
    .await;
    within(5, "the server to stop", running.task)
        .await
        .unwrap()
        .unwrap();
    let logged = running.logs.wait(1).await;
    assert_eq!(
        logged[0].upgrade.as_ref().map(|u| u.ended),
        Some(TunnelEnd::Shutdown)
    );
}

#[tokio::test]
async fn an_http_1_0_upgrade_request_is_an_ordinary_request() {
    let origin = EchoOrigin::start("echo").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let request = b"GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let raw = within(
        5,
        "an HTTP/1.0 request",
        switchyard_testkit::client::raw(running.addr, request, 3),
    )
    .await;
    assert!(raw.text().contains(" 200 "), "{}", raw.text());
    assert!(raw.text().ends_with("echo"), "{}", raw.text());
    assert_eq!(origin.upgrades(), 0);
}

/// The h2c smuggling request: `Upgrade: h2c` with its settings, which an
/// h2c-capable origin would answer 101 and then take every later byte of
/// the connection past the proxy's routing and header rules.
fn h2c_upgrade_request(addr: std::net::SocketAddr) -> String {
    format!(
        "GET /public/x HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
}

#[tokio::test]
async fn an_h2c_upgrade_is_served_as_an_ordinary_request_and_never_tunnelled() {
    let origin = EchoOrigin::start("echo").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let answer = within(
        5,
        "the h2c request",
        UpgradeClient::send(running.addr, &h2c_upgrade_request(running.addr)),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert_eq!(origin.upgrades(), 0, "the origin switched protocols");
    let heads = origin.heads();
    assert_eq!(heads.len(), 1);
    for name in ["upgrade", "http2-settings"] {
        assert!(
            !heads[0].contains_key(name),
            "{name} went upstream: {heads:?}"
        );
    }
    let connection: Vec<_> = heads[0].get_all("connection").iter().collect();
    assert!(
        connection
            .iter()
            .all(|v| !v.to_str().unwrap().to_ascii_lowercase().contains("upgrade")),
        "{connection:?}"
    );
    // HTTP2-Settings never goes upstream, even when Connection does not name it.
    let sneaky = format!(
        "GET /public/y HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        running.addr
    );
    let answer = within(
        5,
        "the second h2c request",
        UpgradeClient::send(running.addr, &sneaky),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert!(!origin.heads()[1].contains_key("http2-settings"));
    // Even a server told to allow everything it can never allows h2c.
    assert!(AllowedUpgrades::new(["websocket", "h2c"]).is_err());
}

#[tokio::test]
async fn an_upgrade_the_server_does_not_allow_is_an_ordinary_request() {
    let origin = EchoOrigin::start("echo").await;
    let none = ServerOptions {
        upgrades: AllowedUpgrades::none(),
        ..ServerOptions::default()
    };
    let running = start_with(TestProxy::new(&[origin.addr()]).options(quick()), none).await;
    let answer = within(
        5,
        "the upgrade",
        UpgradeClient::connect(running.addr, "/", "websocket"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert_eq!(origin.upgrades(), 0);
    assert!(!origin.heads()[0].contains_key("upgrade"));

    // A protocol other than websocket goes through once it is listed, and
    // only the listed one of the client's offers is asked of the upstream.
    let listed = ServerOptions {
        upgrades: AllowedUpgrades::new(["x-game"]).unwrap(),
        ..ServerOptions::default()
    };
    let running = start_with(TestProxy::new(&[origin.addr()]).options(quick()), listed).await;
    let mut game = within(
        5,
        "the x-game upgrade",
        UpgradeClient::connect(running.addr, "/", "h2c, x-game/2"),
    )
    .await
    .unwrap();
    assert_eq!(game.status(), 101, "{}", game.head);
    assert_eq!(
        within(5, "echo", game.echo(b"move")).await.unwrap(),
        b"move"
    );
    let heads = origin.heads();
    assert_eq!(heads.last().unwrap()["upgrade"], "x-game/2");
    // The default (websocket alone) does not let x-game through.
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let answer = within(
        5,
        "x-game by default",
        UpgradeClient::connect(running.addr, "/", "x-game"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.head);
}

#[tokio::test]
async fn a_101_to_a_protocol_not_asked_for_is_invalid_and_its_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rogue = listener.local_addr().unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            )
            .await
            .unwrap();
        // The proxy must close this connection, not keep or reuse it.
        let eof = matches!(stream.read(&mut buf).await, Ok(0) | Err(_));
        let _ = closed_tx.send(eof);
    });
    let running = start(TestProxy::new(&[rogue]).options(quick())).await;
    let answer = within(
        5,
        "the upgrade",
        UpgradeClient::connect(running.addr, "/", "websocket"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 502, "{}", answer.head);
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::InvalidResponse));
    assert!(
        within(5, "the upstream connection to close", closed)
            .await
            .unwrap()
    );
}
