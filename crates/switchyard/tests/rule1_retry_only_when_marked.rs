//! Contract rule 1: an error is retried only when a hook marked it
//! retryable; `upstream_peer` then picks the same peer (retry) or another
//! (failover). When nothing is left, `fail_to_proxy` answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{OnFail, TestProxy, quick, start, summary};
use switchyard::Decision;
use switchyard::ErrorKind;
use switchyard::policy::retry::StopReason;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

#[tokio::test]
async fn both_peers_down_gives_502_with_two_attempts_and_a_proxy_status() {
    let (a, b) = (refused_addr().await, refused_addr().await);
    let proxy = start(TestProxy::new(&[a, b]).options(quick())).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.headers["proxy-status"],
        "switchyard; error=connection_refused; details=\"connect-refused\""
    );
    let logged = proxy.logs.wait(1).await;
    let trace = &logged[0].trace;
    assert_eq!(
        summary(trace),
        [
            "connect-refused -> retry",
            "connect-refused -> stop (hook-declined)"
        ]
    );
    assert_eq!(trace.records()[0].peer, a);
    assert_eq!(trace.records()[1].peer, b);
    assert_eq!(logged[0].status, Some(502));
    assert_eq!(logged[0].error, Some(ErrorKind::ConnectRefused));
    assert_eq!(
        logged[0].error_peer,
        Some(b.to_string()),
        "the error names its peer"
    );
}

#[tokio::test]
async fn without_a_hook_a_connect_failure_is_not_retried() {
    let origin = Origin::healthy("second").await;
    let dead = refused_addr().await;
    let proxy =
        start(TestProxy::new(&[dead, origin.addr()]).on_connect_fail(OnFail::Default)).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(origin.stats().requests, 0);
    let logged = proxy.logs.wait(1).await;
    assert_eq!(
        summary(&logged[0].trace),
        ["connect-refused -> stop (hook-declined)"]
    );
}

#[tokio::test]
async fn same_peer_retry_after_a_transient_failure() {
    // The first request on the origin is dropped before a head; the retry on
    // the same peer is answered.
    let origin = Origin::start(
        "flaky",
        Script::sequence(vec![Behavior::CloseBeforeHead], Behavior::ok()),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()]).on_proxy_error(OnFail::RetrySame)).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "flaky");
    let logged = proxy.logs.wait(1).await;
    let trace = &logged[0].trace;
    assert_eq!(
        summary(trace),
        ["closed-before-head -> retry", "200 -> done"]
    );
    assert!(trace.records().iter().all(|r| r.peer == origin.addr()));
    assert_eq!(origin.stats().requests, 2);
}

#[tokio::test]
async fn failover_after_a_mid_proxy_failure_goes_to_the_next_peer() {
    let broken = Origin::start("broken", Script::always(Behavior::Garbage)).await;
    let good = Origin::healthy("good").await;
    let proxy =
        start(TestProxy::new(&[broken.addr(), good.addr()]).on_proxy_error(OnFail::Failover)).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "good");
    let logged = proxy.logs.wait(1).await;
    assert_eq!(
        summary(&logged[0].trace),
        ["invalid-response -> retry", "200 -> done"]
    );
}

#[tokio::test]
async fn a_fresh_connection_failing_is_not_retried_by_default() {
    // Default error_while_proxy: the connection was new, so the upstream may
    // have processed the request: no retry, 502.
    let origin = Origin::start(
        "flaky",
        Script::sequence(vec![Behavior::CloseBeforeHead], Behavior::ok()),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.headers["proxy-status"],
        "switchyard; error=http_response_incomplete; details=\"closed-before-head\""
    );
    let logged = proxy.logs.wait(1).await;
    let last = logged[0].trace.last().unwrap();
    assert_eq!(last.decision, Decision::Stop(StopReason::HookDeclined));
    assert!(!last.reused);
    assert_eq!(origin.stats().requests, 1);
}
