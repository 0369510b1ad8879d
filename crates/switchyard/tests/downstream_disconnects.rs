//! Cancel behaviour: when the client goes away, the engine abandons the
//! upstream attempt, retries nothing, and still logs the request (as
//! `downstream-closed`, status 499).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{OnFail, TestProxy, start, summary};
use switchyard::policy::retry::StopReason;
use switchyard::{Decision, ErrorKind, PeerOptions};
use switchyard_testkit::{Behavior, Origin, Script, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn patient() -> PeerOptions {
    PeerOptions {
        read_timeout: Duration::from_secs(30),
        ..PeerOptions::default()
    }
}

#[tokio::test]
async fn a_client_that_leaves_while_the_upstream_thinks_ends_the_attempt() {
    let origin = Origin::start("silent", Script::always(Behavior::Silence)).await;
    let proxy = start(
        TestProxy::new(&[origin.addr()])
            .options(patient())
            .on_proxy_error(OnFail::RetrySame),
    )
    .await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    origin.wait_for_requests(1, 5).await;
    drop(client);
    let logged = within(5, "the engine noticing the client left", proxy.logs.wait(1)).await;
    assert_eq!(logged[0].error, Some(ErrorKind::DownstreamClosed));
    assert_eq!(logged[0].status, Some(499));
    assert_eq!(
        logged[0].trace.last().unwrap().decision,
        Decision::Stop(StopReason::DownstreamFailed)
    );
    assert_eq!(origin.stats().requests, 1, "nothing was retried");
}

#[tokio::test]
async fn a_request_body_that_breaks_off_is_not_retried() {
    let origin = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let proxy = start(
        TestProxy::new(&[origin.addr()])
            .options(patient())
            .on_proxy_error(OnFail::RetrySame),
    )
    .await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    client.write_all(&[b'a'; 1000]).await.unwrap();
    switchyard_testkit::eventually(5, "the first body bytes reaching the upstream", || {
        origin.stats().body_bytes >= 1000
    })
    .await;
    drop(client);
    let logged = within(
        5,
        "the engine noticing the body broke off",
        proxy.logs.wait(1),
    )
    .await;
    assert_eq!(logged[0].error, Some(ErrorKind::DownstreamClosed));
    assert_eq!(
        summary(&logged[0].trace),
        ["downstream-closed -> stop (downstream-failed)"]
    );
    let seen = origin.requests();
    assert!(seen.len() <= 1);
    assert!(
        seen.iter().all(|r| !r.body_complete),
        "the origin never got a complete body"
    );
}
