//! Contract rule 4: the number of retries per request is capped whatever the
//! hooks say; past the cap the last error goes to `fail_to_proxy`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{OnFail, TestProxy, start, start_with};
use switchyard::policy::retry::StopReason;
use switchyard::{Decision, ServerOptions};
use switchyard_testkit::{client, refused_addr, within};

#[tokio::test]
async fn a_hook_that_always_retries_stops_at_the_default_cap() {
    let dead = refused_addr().await;
    let proxy = start(TestProxy::new(&[dead]).on_connect_fail(OnFail::RetrySame)).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let logged = proxy.logs.wait(1).await;
    let trace = &logged[0].trace;
    assert_eq!(trace.len(), 17, "16 retries after the first attempt");
    assert!(
        trace.records()[..16]
            .iter()
            .all(|r| r.decision == Decision::Retry)
    );
    assert_eq!(
        trace.last().unwrap().decision,
        Decision::Stop(StopReason::AttemptCap)
    );
}

#[tokio::test]
async fn a_configured_cap_holds() {
    let dead = refused_addr().await;
    let options = ServerOptions {
        max_retries: 2,
        ..ServerOptions::default()
    };
    let proxy = start_with(
        TestProxy::new(&[dead]).on_connect_fail(OnFail::RetrySame),
        options,
    )
    .await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].trace.len(), 3);
    assert_eq!(logged[0].trace.retries(), 2);
}
