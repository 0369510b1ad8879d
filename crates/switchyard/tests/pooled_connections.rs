//! The upstream pool: connections are reused; a pooled connection the
//! upstream closed while idle does not cost a request an error; a reused
//! connection that fails after the request was written is retried for GET
//! (default `error_while_proxy`) and never for POST.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestProxy, start, summary};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

/// Answers the first request on each connection; drops the second unanswered.
async fn drops_second_request_per_connection() -> Origin {
    Origin::start(
        "stale",
        Script::per_connection(
            vec![Behavior::ok(), Behavior::CloseBeforeHead],
            Behavior::ok(),
        ),
    )
    .await
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let origin = Origin::healthy("warm").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    for _ in 0..3 {
        let reply = within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    assert_eq!(origin.stats().connections, 1);
    let logged = proxy.logs.wait(3).await;
    assert!(!logged[0].trace.records()[0].reused);
    assert!(logged[2].trace.records()[0].reused);
}

#[tokio::test]
async fn a_reused_connection_that_fails_is_retried_transparently_for_get() {
    let origin = drops_second_request_per_connection().await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    within(10, "first GET", client::get(proxy.addr, "/one"))
        .await
        .unwrap();
    let reply = within(10, "second GET", client::get(proxy.addr, "/two"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let logged = proxy.logs.wait(2).await;
    let trace = &logged[1].trace;
    assert_eq!(
        summary(trace),
        ["closed-before-head -> retry", "200 -> done"]
    );
    assert!(trace.records()[0].reused);
    assert!(!trace.records()[1].reused);
    assert_eq!(origin.stats().connections, 2);
}

#[tokio::test]
async fn a_reused_connection_that_fails_after_a_post_was_written_is_not_retried() {
    let origin = drops_second_request_per_connection().await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    within(10, "first GET", client::get(proxy.addr, "/one"))
        .await
        .unwrap();
    let reply = within(10, "POST", client::post(proxy.addr, "/pay", "amount=10"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let logged = proxy.logs.wait(2).await;
    assert_eq!(
        summary(&logged[1].trace),
        ["closed-before-head -> stop (hook-declined)"]
    );
    let posts = origin
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::POST)
        .count();
    assert_eq!(posts, 1, "the POST reached the origin exactly once");
}

#[tokio::test]
async fn connections_the_upstream_closed_while_idle_cost_no_error() {
    let origin = Origin::start(
        "killer",
        Script::always(Behavior::IdleKill {
            after: Duration::from_millis(20),
        }),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    for i in 0..5 {
        let reply = within(
            10,
            "request",
            client::post(proxy.addr, "/", format!("n={i}")),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200, "request {i}");
        // The origin closes the idle pooled connection before the next one.
        wait_ended(&origin, i + 1).await;
    }
    let logged = proxy.logs.wait(5).await;
    for entry in &logged {
        assert_eq!(summary(&entry.trace), ["200 -> done"], "{}", entry.trace);
    }
    assert_eq!(
        origin.stats().requests,
        5,
        "each POST reached the origin once"
    );
}

/// Polls until `origin` has seen `ended` connections end, or fails.
async fn wait_ended(origin: &Origin, ended: usize) {
    for _ in 0..200 {
        if origin.stats().ended >= ended {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("wanted {ended} ended connection(s): {:?}", origin.stats());
}

/// Polls until the pool holds `idle` connections, or fails (a connection
/// returns to the pool as its response ends, which may be just after the
/// client read it).
async fn wait_idle(pool: &switchyard::UpstreamPool, idle: usize) {
    for _ in 0..200 {
        if pool.idle_connections() == idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "wanted {idle} idle connection(s), have {}",
        pool.idle_connections()
    );
}

#[tokio::test]
async fn keep_only_closes_idle_connections_to_removed_servers_and_pools_none_after() {
    let origin = Origin::healthy("removed").await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let get = || within(10, "request", client::get(proxy.addr, "/"));
    assert_eq!(get().await.unwrap().status, 200);
    wait_idle(&proxy.pool, 1).await;

    // The server is removed: its idle connection closes at once.
    assert_eq!(proxy.pool.keep_only::<switchyard::PeerAddr>([]), 1);
    assert_eq!(proxy.pool.idle_connections(), 0);
    wait_ended(&origin, 1).await;

    // A request sent to it anyway (the library's pool does not choose
    // servers) still works, and its connection is closed afterwards
    // instead of pooled.
    assert_eq!(get().await.unwrap().status, 200);
    assert_eq!(origin.stats().connections, 2);
    wait_ended(&origin, 2).await;
    assert_eq!(proxy.pool.idle_connections(), 0);

    // Listed again, it is pooled again.
    assert_eq!(proxy.pool.keep_only([origin.addr()]), 0);
    assert_eq!(get().await.unwrap().status, 200);
    wait_idle(&proxy.pool, 1).await;
    assert_eq!(get().await.unwrap().status, 200);
    assert_eq!(origin.stats().connections, 3);
    wait_idle(&proxy.pool, 1).await;
}
