//! Graceful shutdown: stop accepting, finish what is in flight, then return.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestProxy, start};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

#[tokio::test]
async fn an_in_flight_request_finishes_after_shutdown_begins() {
    let slow = Behavior::Slow {
        delay: Duration::from_millis(400),
        then: Box::new(Behavior::ok()),
    };
    let origin = Origin::start("slow", Script::always(slow)).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(client::get(addr, "/slow"));
    origin.wait_for_requests(1, 5).await;
    proxy.shutdown.shutdown();
    let reply = within(10, "in-flight request", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "slow");
    within(10, "server drain", proxy.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
