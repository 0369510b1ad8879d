//! WebSocket through the binary: the access log line and the metrics of an
//! upgraded connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, admin_get};
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
