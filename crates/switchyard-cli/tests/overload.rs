//! The binary's overload protection end to end: the retry budget, request
//! body limits, per-server connection limits and the client connection
//! limit, each with what `/metrics` says of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Running, TempConfig};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

#[tokio::test]
async fn the_retry_budget_bounds_the_load_an_outage_adds() {
    // Both servers answer 503, which is retried with up to 3 attempts: with
    // no budget the servers would see 3 x 2,000 requests. The default budget
    // lets retries add 20% to the requests of the last 10 s, plus 10/s.
    let a = Origin::start("a", Script::always(Behavior::status(503))).await;
    let b = Origin::start("b", Script::always(Behavior::status(503))).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n[log]\naccess = false\n\
         [upstreams.app]\nservers = [\"{}\", \"{}\"]\n\
         [upstreams.app.retry]\nmax_attempts = 3\nretry_on = [503]\n",
        a.addr(),
        b.addr()
    );
    let file = TempConfig::new("budget", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    const REQUESTS: usize = 2_000;
    const CLIENTS: usize = 8;
    let started = std::time::Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let addr = proxy.addr;
        clients.push(tokio::spawn(async move {
            let mut conn = client::KeepAlive::connect(addr).await;
            for _ in 0..REQUESTS / CLIENTS {
                let request = http::Request::get("/").body(Default::default()).unwrap();
                let reply = within(10, "request", conn.send(request)).await.unwrap();
                assert_eq!(reply.status, 503, "the upstream's answer is forwarded");
            }
        }));
    }
    for c in clients {
        within(120, "the clients", c).await.unwrap();
    }
    // The floor adds 10/s over each 10 s window the test spanned.
    let windows = started.elapsed().as_secs() / 10 + 1;
    let allowed = REQUESTS + REQUESTS / 5 + 100 * windows as usize;
    let seen = a.stats().requests + b.stats().requests;
    assert!(
        seen <= allowed,
        "the servers saw {seen} requests for {REQUESTS}; allowed {allowed}"
    );
    assert!(seen > REQUESTS, "some retries were made: {seen}");
    let metrics = common::admin_get(proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_retries_not_taken_total")
                && l.contains("reason=\"budget-exhausted\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_route_sets_its_own_request_body_limit() {
    let echo = Origin::start("echo", Script::always(Behavior::Echo)).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nmax_request_body = \"1KiB\"\n\
         [upstreams.app]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/small\"\nupstream = \"app\"\nmax_request_body = 10\n\
         [[routes]]\npath_prefix = \"/any\"\nupstream = \"app\"\nmax_request_body = 0\n\
         [[routes]]\nupstream = \"app\"\n",
        echo.addr()
    );
    let file = TempConfig::new("body-limit", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let post = |path: &'static str, len: usize| {
        let body = "x".repeat(len);
        within(10, "post", client::post(proxy.addr, path, body))
    };
    assert_eq!(post("/small", 11).await.unwrap().status, 413);
    assert_eq!(post("/small", 10).await.unwrap().status, 200);
    assert_eq!(post("/other", 1025).await.unwrap().status, 413);
    assert_eq!(post("/other", 1024).await.unwrap().status, 200);
    assert_eq!(post("/any", 4096).await.unwrap().status, 200);
    assert_eq!(echo.stats().requests, 3, "no refused body went upstream");
}

#[tokio::test]
async fn a_server_at_its_connection_limit_sends_requests_elsewhere_then_503() {
    // Slow enough that both servers are still busy when the third request comes.
    let slow = || Script::always(Behavior::ok().after(Duration::from_millis(1500)));
    let a = Origin::start("a", slow()).await;
    let b = Origin::start("b", slow()).await;
    // retry_on without connect-failure: a busy server moves on all the same.
    // One worker: the limit of 1 is then not shared out among workers.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\n\
         max_connections_per_server = 1\nmax_pending = 0\nconnect_hedging = false\n\
         [upstreams.app.retry]\nretry_on = [\"reset-before-response\"]\n",
        a.addr(),
        b.addr()
    );
    let file = TempConfig::new("conn-limit", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let addr = proxy.addr;
    let first = tokio::spawn(client::get(addr, "/"));
    a.wait_for_requests(1, 5).await;
    // The primary is full: the backup takes the second request.
    let second = tokio::spawn(client::get(addr, "/"));
    b.wait_for_requests(1, 5).await;
    // Both are full: 503.
    let third = within(10, "third", client::get(addr, "/")).await.unwrap();
    assert_eq!(third.status, 503);
    let status = third.headers["proxy-status"].to_str().unwrap();
    assert!(
        status.contains("error=connection_limit_reached"),
        "{status}"
    );
    let first = within(10, "first", first).await.unwrap().unwrap();
    let second = within(10, "second", second).await.unwrap().unwrap();
    assert_eq!((first.status.as_u16(), &first.body[..]), (200, &b"a"[..]));
    assert_eq!((second.status.as_u16(), &second.body[..]), (200, &b"b"[..]));
    assert_eq!((a.stats().connections, b.stats().connections), (1, 1));
    let metrics = common::admin_get(proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_upstream_errors_total")
                && l.contains("reason=\"connection-limit-reached\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn at_max_connections_the_binary_stops_accepting_and_says_so() {
    let origin = Origin::healthy("origin").await;
    // One worker: with more, each would take a share of at least 1.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nmax_connections = 1\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("max-connections", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let mut first = client::KeepAlive::connect(proxy.addr).await;
    let request = || http::Request::get("/").body(Default::default()).unwrap();
    assert_eq!(
        within(10, "first", first.send(request()))
            .await
            .unwrap()
            .status,
        200
    );
    let second = tokio::spawn(client::get(proxy.addr, "/"));
    let limit = "switchyard_downstream_connection_limit_reached_total 1";
    let metrics = common::wait_for_metric(proxy.admin.unwrap(), limit).await;
    assert!(!second.is_finished(), "served beyond max_connections");
    assert!(
        metrics.contains("switchyard_downstream_connections_open 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_downstream_connection_limit_reached_total 1"),
        "{metrics}"
    );
    drop(first);
    assert_eq!(
        within(10, "second", second).await.unwrap().unwrap().status,
        200
    );
}
