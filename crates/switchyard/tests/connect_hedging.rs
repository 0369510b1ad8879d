//! Connect hedging: a slow connect to the chosen peer is raced against its
//! hedge, so a blackholed peer costs milliseconds, not the connect timeout;
//! a fast or refusing peer never starts a race.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{OnFail, Running, TestProxy, start};
use switchyard::PeerOptions;
use switchyard_testkit::{Blackhole, Origin, client, digest, refused_addr, within};

/// A proxy whose first peer is blackholed (connect timeout 2 s) and hedged
/// by a healthy second one.
async fn hedged_past_a_blackhole() -> (Blackhole, Origin, Running) {
    let dead = Blackhole::start().await;
    let good = Origin::healthy("good").await;
    let options = PeerOptions {
        connect_timeout: Duration::from_secs(2),
        ..PeerOptions::default()
    };
    let proxy = start(
        TestProxy::new(&[dead.addr(), good.addr()])
            .options(options)
            .hedged(),
    )
    .await;
    (dead, good, proxy)
}

#[tokio::test]
async fn a_blackholed_peer_costs_the_hedge_delay_not_the_connect_timeout() {
    let (dead, good, proxy) = hedged_past_a_blackhole().await;
    for i in 0..10 {
        let started = Instant::now();
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(reply.body, "good");
        // The cold hedge delay is 50 ms; far below the 2 s connect timeout.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "request {i}: {:?}",
            started.elapsed()
        );
    }
    let logged = proxy.logs.wait(10).await;
    let first = &logged[0].trace.records()[0];
    assert_eq!(first.peer, good.addr(), "the hedge carried the attempt");
    assert_eq!(first.hedged, Some(dead.addr().into()));
    assert!(first.hedge_won);
    assert_eq!(logged[0].trace.len(), 1, "one attempt, not a retry");
    assert!(
        first
            .to_string()
            .contains(&format!("(raced {})", dead.addr()))
    );
}

#[tokio::test]
async fn a_hedged_post_is_delivered_once() {
    let (_dead, good, proxy) = hedged_past_a_blackhole().await;
    let body = Bytes::from(vec![b'p'; 256 * 1024]);
    let reply = within(
        10,
        "POST",
        client::post(proxy.addr, "/orders", body.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let stats = good.stats();
    assert_eq!(stats.requests, 1);
    let seen = &good.requests()[0];
    assert!(seen.body_complete);
    assert_eq!(seen.digest, digest(&body));
}

#[tokio::test]
async fn a_fast_peer_is_never_raced() {
    let first = Origin::healthy("first").await;
    let hedge = Origin::healthy("hedge").await;
    let proxy = start(TestProxy::new(&[first.addr(), hedge.addr()]).hedged()).await;
    for _ in 0..5 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.body, "first");
    }
    let logged = proxy.logs.wait(5).await;
    assert!(logged.iter().all(|l| l.trace.records()[0].hedged.is_none()));
    assert_eq!(
        hedge.stats().connections,
        0,
        "no connect was started to the hedge"
    );
}

#[tokio::test]
async fn a_refused_connect_fails_before_any_race() {
    let refused = refused_addr().await;
    let hedge = Origin::healthy("hedge").await;
    let proxy = start(
        TestProxy::new(&[refused, hedge.addr()])
            .on_connect_fail(OnFail::Default)
            .hedged(),
    )
    .await;
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(
        reply.status, 502,
        "a refusal is an ordinary connect failure"
    );
    assert_eq!(hedge.stats().connections, 0);
}
