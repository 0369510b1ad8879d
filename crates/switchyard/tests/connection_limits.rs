//! Per-server connection limits (`PeerOptions::max_connections` and
//! `max_pending`): a request beyond them fails fast before anything is sent,
//! goes to another server when the hook fails over, or gets 503
//! `connection_limit_reached`; a waiting request takes the connection the
//! first one gives back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{OnFail, TestProxy, quick, start};
use switchyard::{ErrorKind, PeerOptions};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

/// One connection per server and `pending` waiting requests; the wait (the
/// connect timeout) and the read timeout are far longer than a slow answer.
fn one_connection(pending: usize) -> PeerOptions {
    PeerOptions {
        max_connections: Some(1),
        max_pending: pending,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        ..quick()
    }
}

/// A proxy to one slow server allowed one connection and `pending` waiting
/// requests, whose hook never fails over, with a first request busy on
/// that connection.
async fn one_busy_connection(
    pending: usize,
) -> (
    Origin,
    common::Running,
    tokio::task::JoinHandle<Result<client::Collected, String>>,
) {
    let a = slow("a").await;
    let proxy = start(
        TestProxy::new(&[a.addr()])
            .options(one_connection(pending))
            .on_connect_fail(OnFail::Default),
    )
    .await;
    let first = tokio::spawn(client::get(proxy.addr, "/"));
    a.wait_for_requests(1, 5).await;
    (a, proxy, first)
}

/// A server that answers after 1 s: long enough that its first request is
/// still busy when a test's next one arrives, however loaded the machine.
async fn slow(name: &str) -> Origin {
    Origin::start(
        name,
        Script::always(Behavior::ok().after(Duration::from_secs(1))),
    )
    .await
}

#[tokio::test]
async fn a_full_server_is_skipped_for_one_with_room() {
    let a = slow("a").await;
    let b = Origin::healthy("b").await;
    let proxy = start(TestProxy::new(&[a.addr(), b.addr()]).options(one_connection(0))).await;
    let first = tokio::spawn(client::get(proxy.addr, "/"));
    a.wait_for_requests(1, 5).await;
    let second = within(10, "second", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(second.body, "b", "a was full: the request went to b");
    assert_eq!(within(10, "first", first).await.unwrap().unwrap().body, "a");
    let logged = proxy.logs.wait(2).await;
    let to_b = logged.iter().find(|l| l.trace.len() == 2).unwrap();
    assert_eq!(
        to_b.trace.records()[0].error,
        Some(ErrorKind::ConnectionLimitReached),
        "{}",
        to_b.trace
    );
    assert_eq!(a.stats().connections, 1);
}

#[tokio::test]
async fn with_no_server_left_the_client_gets_503_connection_limit_reached() {
    let (a, proxy, first) = one_busy_connection(0).await;
    let second = within(10, "second", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(second.status, 503);
    let status = second.headers["proxy-status"].to_str().unwrap();
    assert!(
        status.contains("error=connection_limit_reached"),
        "{status}"
    );
    assert_eq!(
        within(10, "first", first).await.unwrap().unwrap().status,
        200
    );
    assert_eq!(a.stats().connections, 1, "never a second connection");
}

#[tokio::test]
async fn a_waiting_request_takes_the_connection_given_back() {
    let (a, proxy, first) = one_busy_connection(1).await;
    let second = within(10, "second", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(
        within(10, "first", first).await.unwrap().unwrap().status,
        200
    );
    assert_eq!(
        a.stats().connections,
        1,
        "the second request reused the first's"
    );
    assert_eq!(a.stats().requests, 2);
}

#[tokio::test]
async fn a_connection_given_back_goes_to_the_request_waiting_longest() {
    // Client 1 pipelines /first and /third on one connection; /second, from
    // client 2, waits for the only upstream connection while /first is
    // served. When /first ends, /third is read at once on the same client
    // connection, before /second's task runs again: the connection must
    // still go to /second, which waited longer.
    let (a, proxy, first) = {
        let a = slow("a").await;
        let proxy = start(
            TestProxy::new(&[a.addr()])
                .options(one_connection(4))
                .on_connect_fail(OnFail::Default),
        )
        .await;
        let pipelined = b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n\
                          GET /third HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let first = tokio::spawn(client::raw(proxy.addr, pipelined, 10));
        (a, proxy, first)
    };
    a.wait_for_requests(1, 5).await;
    let second = within(10, "second", client::get(proxy.addr, "/second"))
        .await
        .unwrap();
    assert_eq!(second.status, 200);
    let pipelined = within(10, "first and third", first).await.unwrap();
    let text = String::from_utf8_lossy(&pipelined.bytes);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    let order: Vec<String> = a.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(order, ["/first", "/second", "/third"]);
    assert_eq!(a.stats().connections, 1);
}

#[tokio::test]
async fn at_max_connections_a_new_client_waits_until_one_closes() {
    use switchyard::ServerOptions;
    let origin = Origin::healthy("origin").await;
    let options = ServerOptions {
        max_connections: Some(1),
        ..ServerOptions::default()
    };
    let proxy = common::start_with(TestProxy::new(&[origin.addr()]), options).await;
    let mut first = client::KeepAlive::connect(proxy.addr).await;
    let request = || http::Request::get("/").body(Default::default()).unwrap();
    assert_eq!(
        within(10, "first", first.send(request()))
            .await
            .unwrap()
            .status,
        200
    );
    // The first connection stays open: the second client is not served yet.
    let second = tokio::spawn(client::get(proxy.addr, "/"));
    switchyard_testkit::eventually(5, "the second client meeting the limit", || {
        proxy.counts.limit_reached() >= 1
    })
    .await;
    assert!(!second.is_finished(), "served beyond max_connections");
    assert_eq!(proxy.counts.open(), 1);
    assert!(proxy.counts.limit_reached() >= 1);
    drop(first);
    let reply = within(10, "second", second).await.unwrap().unwrap();
    assert_eq!(reply.status, 200);
}
