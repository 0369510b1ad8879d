//! WebSocket through the binary: the access log line and the metrics of an
//! upgraded connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, TempConfig, admin_get};
use switchyard_testkit::upgrade::{EchoOrigin, UpgradeClient};
use switchyard_testkit::within;

#[tokio::test]
async fn an_upgraded_connection_is_logged_and_counted_with_its_bytes_each_way() {
    let origin = EchoOrigin::start("echo").await;
    let to = origin.addr().to_string();
    let proxy = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &to,
        "--admin",
        "127.0.0.1:0",
    ]);
    let mut ws = within(
        5,
        "the upgrade",
        UpgradeClient::connect(proxy.addr, "/chat", "websocket"),
    )
    .await
    .unwrap();
    assert_eq!(ws.status(), 101, "{}", ws.head);
    assert_eq!(ws.echo(b"hello").await.unwrap(), b"hello");
    assert_eq!(ws.echo(b"again").await.unwrap(), b"again");
    ws.finish().await;
    within(5, "the tunnel to close", ws.read_to_close()).await;

    let log = proxy.wait_for_log(1).await;
    assert!(log[0].contains("\"GET /chat\" 101 "), "{}", log[0]);
    assert!(
        log[0].contains(" upgrade=websocket up=10B down=10B for="),
        "{}",
        log[0]
    );
    assert!(log[0].ends_with("ended=closed"), "{}", log[0]);
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await;
    for line in [
        "switchyard_upgrades_total{upstream=\"default\",protocol=\"websocket\",ended=\"closed\"} 1",
        "switchyard_upgrade_bytes_total{upstream=\"default\",direction=\"to_upstream\"} 10",
        "switchyard_upgrade_bytes_total{upstream=\"default\",direction=\"to_client\"} 10",
        "switchyard_upgrade_seconds_count{upstream=\"default\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
}

#[tokio::test]
async fn routes_allow_upgrades_by_name_and_never_h2c() {
    let origin = EchoOrigin::start("echo").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/plain\"\nupstream = \"app\"\nupgrades = []\n\
         [[routes]]\npath_prefix = \"/game\"\nupstream = \"app\"\nupgrades = [\"x-game\"]\n\
         [[routes]]\nupstream = \"app\"\n",
        origin.addr()
    );
    let file = TempConfig::new("upgrades", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let status = |path: &'static str, protocol: &'static str| {
        let addr = proxy.addr;
        async move {
            within(5, path, UpgradeClient::connect(addr, path, protocol))
                .await
                .unwrap()
                .status()
        }
    };
    // The default route: websocket, and nothing else.
    assert_eq!(status("/chat", "websocket").await, 101);
    assert_eq!(status("/chat", "x-game").await, 200);
    assert_eq!(status("/chat", "h2c").await, 200);
    // upgrades = []: none.
    assert_eq!(status("/plain", "websocket").await, 200);
    // upgrades = ["x-game"]: that one alone.
    assert_eq!(status("/game", "x-game").await, 101);
    assert_eq!(status("/game", "websocket").await, 200);
    assert_eq!(origin.upgrades(), 2);
    // The one-liner's route serves an h2c upgrade as an ordinary request.
    let to = origin.addr().to_string();
    let oneliner = Running::start(&["proxy", "--listen", "127.0.0.1:0", "--to", &to]);
    let request = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    let answer = within(5, "h2c", UpgradeClient::send(oneliner.addr, request))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert_eq!(origin.upgrades(), 2);
    assert!(
        !origin
            .heads()
            .last()
            .unwrap()
            .contains_key("http2-settings")
    );
}

#[test]
fn a_route_that_lists_h2c_is_refused_by_check() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n\
                [[routes]]\nupstream = \"app\"\nupgrades = [\"websocket\", \"h2c\"]\n";
    let file = TempConfig::new("upgrades-h2c", text);
    let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].upgrades") && stderr.contains("h2c is never forwarded"),
        "{stderr}"
    );
}
