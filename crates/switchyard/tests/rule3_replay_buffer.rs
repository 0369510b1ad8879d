//! Contract rule 3: request bodies stream upstream through a bounded replay
//! buffer. A connect failure needs no buffer (the body is not read before a
//! connection exists); a mid-proxy failure is retried only while everything
//! sent is still buffered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{OnFail, TestProxy, start, summary};
use switchyard::ErrorKind;
use switchyard_testkit::{Behavior, Origin, Script, client, digest, refused_addr, within};

fn body_of(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn a_1_mib_post_fails_over_on_connect_failure_and_arrives_whole_once() {
    let body = body_of(1024 * 1024);
    let dead = refused_addr().await;
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start(TestProxy::new(&[dead, origin.addr()])).await;
    let reply = within(
        20,
        "1 MiB POST",
        client::post(proxy.addr, "/upload", body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(digest(&reply.body), digest(&body));
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_len, body.len() as u64);
    assert!(seen[0].body_complete);
    assert_eq!(seen[0].digest, digest(&body));
    let logged = proxy.logs.wait(1).await;
    assert_eq!(
        summary(&logged[0].trace),
        ["connect-refused -> retry", "200 -> done"]
    );
    assert_eq!(logged[0].trace.records()[0].request_body_bytes, 0);
    assert_eq!(
        logged[0].trace.records()[1].request_body_bytes,
        body.len() as u64
    );
}

#[tokio::test]
async fn a_10_mib_post_fails_over_on_connect_failure_exactly_once() {
    let body = body_of(10 * 1024 * 1024);
    let dead = refused_addr().await;
    let origin = Origin::start("sink", Script::always(Behavior::status(201))).await;
    let proxy = start(TestProxy::new(&[dead, origin.addr()])).await;
    let reply = within(
        60,
        "10 MiB POST",
        client::post(proxy.addr, "/upload", body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 201);
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].digest, digest(&body));
}

#[tokio::test]
async fn a_small_body_is_replayed_whole_after_a_mid_proxy_failure() {
    let body = body_of(10_000);
    let broken = Origin::start("broken", Script::always(Behavior::CloseBeforeHead)).await;
    let good = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy =
        start(TestProxy::new(&[broken.addr(), good.addr()]).on_proxy_error(OnFail::Failover)).await;
    let reply = within(10, "POST", client::post(proxy.addr, "/", body.clone()))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(digest(&reply.body), digest(&body));
    assert_eq!(broken.requests()[0].digest, digest(&body));
    assert_eq!(good.requests()[0].digest, digest(&body));
    let logged = proxy.logs.wait(1).await;
    assert_eq!(
        summary(&logged[0].trace),
        ["closed-before-head -> retry", "200 -> done"]
    );
}

#[tokio::test]
async fn a_body_over_the_buffer_is_not_retried_after_a_mid_proxy_failure() {
    let body = body_of(256 * 1024);
    let broken = Origin::start("broken", Script::always(Behavior::CloseBeforeHead)).await;
    let good = Origin::start("echo", Script::always(Behavior::Echo)).await;
    // The hook asks for a retry; the truncated buffer forbids it.
    let proxy =
        start(TestProxy::new(&[broken.addr(), good.addr()]).on_proxy_error(OnFail::Failover)).await;
    let reply = within(10, "POST", client::post(proxy.addr, "/", body))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let logged = proxy.logs.wait(1).await;
    assert_eq!(
        summary(&logged[0].trace),
        ["closed-before-head -> stop (body-not-replayable)"]
    );
    assert_eq!(logged[0].error, Some(ErrorKind::ClosedBeforeHead));
    assert_eq!(good.stats().requests, 0);
}
