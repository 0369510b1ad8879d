//! gRPC through the binary: the opt-in retry on a trailers-only
//! UNAVAILABLE, and each call's grpc-status in the access log and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, TempConfig, admin_get};
use switchyard_testkit::h2::H2Conn;
use switchyard_testkit::h2_origin::{H2Behavior, H2Origin};
use switchyard_testkit::within;

/// A unary gRPC call over `h2`.
async fn call(h2: &H2Conn) -> switchyard_testkit::client::Collected {
    let mut request = h2.request(http::Method::POST, "/svc.S/M", vec![0, 0, 0, 0, 1, b'x']);
    let headers = request.headers_mut();
    headers.insert("te", "trailers".parse().unwrap());
    headers.insert("content-type", "application/grpc".parse().unwrap());
    within(10, "a gRPC call", h2.send(request)).await.unwrap()
}

fn config(retry_on: &str, servers: &[&H2Origin]) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|s| format!("\"h2c://{}\"", s.addr()))
        .collect();
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [{}]\nconnect_hedging = false\n\
         [upstreams.app.retry]\nretry_on = [{retry_on}]\n",
        servers.join(", ")
    )
}

#[tokio::test]
async fn unavailable_is_retried_only_when_asked_and_every_call_is_counted_by_status() {
    let unavailable = H2Origin::start("down", H2Behavior::GrpcTrailersOnly(14)).await;
    let echo = H2Origin::start("echo", H2Behavior::GrpcEcho).await;

    // Opted in: the UNAVAILABLE answer is not forwarded; the call moves on.
    let file = TempConfig::new(
        "grpc-retry",
        &config("\"grpc-unavailable\"", &[&unavailable, &echo]),
    );
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let h2 = within(10, "h2c", H2Conn::cleartext(proxy.addr))
        .await
        .unwrap();
    for _ in 0..2 {
        let answer = call(&h2).await;
        assert_eq!(answer.trailers.unwrap()["grpc-status"], "0");
    }
    let log = proxy.wait_for_log(2).await;
    let retried = log
        .iter()
        .find(|line| line.contains("upstream-status"))
        .expect("one call went to the unavailable server first");
    assert!(
        retried.contains("upstream-status -> retry [grpc-unavailable]")
            && retried.contains(" grpc=0"),
        "{retried}"
    );
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("switchyard_grpc_calls_total{upstream=\"app\",code=\"0\"} 2"),
        "{metrics}"
    );

    // Not opted in: the upstream's own UNAVAILABLE reaches the client.
    let file = TempConfig::new(
        "grpc-no-retry",
        &config("\"connect-failure\"", &[&unavailable]),
    );
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let h2 = within(10, "h2c", H2Conn::cleartext(proxy.addr))
        .await
        .unwrap();
    let answer = call(&h2).await;
    assert_eq!(answer.headers["grpc-status"], "14");
    let log = proxy.wait_for_log(1).await;
    assert!(
        log[0].contains(" grpc=14") && log[0].contains("200 -> done"),
        "{}",
        log[0]
    );
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("switchyard_grpc_calls_total{upstream=\"app\",code=\"14\"} 1"),
        "{metrics}"
    );
}
