//! Request hedging: a GET the first server is slow to answer gets a copy
//! sent to another server, the first answer wins, and the copy is spent
//! from the group's retry budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Running, TempConfig};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

#[tokio::test]
async fn a_hedge_beats_a_slow_server_and_is_spent_from_the_retry_budget() {
    let slow = Origin::start(
        "slow",
        Script::always(Behavior::ok().after(Duration::from_millis(1000))),
    )
    .await;
    let fast = Origin::healthy("fast").await;
    // A budget of one retry per second: the first hedge spends it.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\n\
         [upstreams.app.retry]\nbudget_percent = 0\nbudget_min_per_second = 1\nbudget_window = \"1s\"\n\
         [[routes]]\nupstream = \"app\"\nhost_header = \"upstream\"\n\
         retry = {{ hedge = true, hedge_min = \"50ms\", hedge_max = \"100ms\" }}\n",
        slow.addr(),
        fast.addr()
    );
    let file = TempConfig::new("hedging", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let started = Instant::now();
    let hedged = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(hedged.status, 200);
    assert_eq!(hedged.body, "fast", "the copy answered first");
    assert!(took < Duration::from_millis(800), "{took:?}");

    // The budget is spent: no copy, the slow server's answer.
    let started = Instant::now();
    let unhedged = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(unhedged.body, "slow");
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(slow.requests().len(), 2);
    assert_eq!(fast.requests().len(), 1);
    // The copy was filtered as a request to its own server.
    let host = &fast.requests()[0].headers["host"];
    assert_eq!(host, fast.addr().to_string().as_str());

    let log = proxy.wait_for_log(2).await;
    let copy = fast.addr().to_string();
    let first = slow.addr().to_string();
    assert!(
        log[0].contains(&format!("{copy} 200 (hedge after "))
            && log[0].contains(&format!("ms, beat {first}) -> done")),
        "{}",
        log[0]
    );
    assert!(log[0].contains("attempts=1"), "{}", log[0]);
    assert!(!log[1].contains("hedge"), "{}", log[1]);
    let metrics = common::admin_get(proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("switchyard_hedges_total{upstream=\"app\",won=\"copy\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_post_is_not_hedged() {
    let slow = Origin::start(
        "slow",
        Script::always(Behavior::ok().after(Duration::from_millis(300))),
    )
    .await;
    let fast = Origin::healthy("fast").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\n\
         [upstreams.app.retry]\nhedge = true\nhedge_min = \"20ms\"\nhedge_max = \"50ms\"\n",
        slow.addr(),
        fast.addr()
    );
    let file = TempConfig::new("hedging-post", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let reply = within(10, "POST", client::post(proxy.addr, "/pay", "amount=1"))
        .await
        .unwrap();
    assert_eq!(reply.body, "slow");
    assert!(fast.requests().is_empty(), "a POST is not sent twice");
}

#[tokio::test]
async fn a_copy_fits_in_the_requests_deadline_too() {
    // Found in review: only the first server's timeouts were fitted to the
    // deadline, so the race waited for a copy past it.
    let slow = || Script::always(Behavior::ok().after(Duration::from_millis(1000)));
    let first = Origin::start("first", slow()).await;
    let second = Origin::start("second", slow()).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\n\
         [upstreams.app.retry]\nhedge = true\nhedge_min = \"20ms\"\nhedge_max = \"50ms\"\n\
         deadline = \"300ms\"\n",
        first.addr(),
        second.addr()
    );
    let file = TempConfig::new("hedge-deadline", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let started = Instant::now();
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(reply.status, 504);
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert_eq!(second.requests().len(), 1, "the copy went");
}

#[tokio::test]
async fn no_copy_for_want_of_another_server_spends_nothing() {
    // Found in review: the budget was drawn before a copy existed. One
    // server: its slow answer gets no copy, so the 503 after it may still
    // be retried from a budget of one retry a second.
    let only = Origin::start(
        "only",
        Script::sequence(
            vec![
                Behavior::ok().after(Duration::from_millis(200)),
                Behavior::status(503),
            ],
            Behavior::ok(),
        ),
    )
    .await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"{}\"]\n\
         [upstreams.app.retry]\nhedge = true\nhedge_min = \"20ms\"\nhedge_max = \"50ms\"\n\
         retry_on = [503]\nbudget_percent = 0\nbudget_min_per_second = 1\nbudget_window = \"1s\"\n",
        only.addr()
    );
    let file = TempConfig::new("hedge-one-server", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let slow = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(slow.status, 200);
    let retried = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(retried.status, 200, "the 503 was retried");
    assert_eq!(only.requests().len(), 3);
}
