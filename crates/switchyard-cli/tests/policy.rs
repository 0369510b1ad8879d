//! The binary's failure policy end to end: routes pick groups, retries go
//! to untried servers, a POST is not sent twice, and the access log and
//! `/metrics` say why each retry was or was not taken. SIGTERM drains.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Running, TempConfig};
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

#[tokio::test]
async fn routes_pick_their_group_first_match_wins() {
    let api = Origin::healthy("api").await;
    let web = Origin::healthy("web").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.api]\nservers = [\"{}\"]\n[upstreams.web]\nservers = [\"{}\"]\n\
         [[routes]]\nhost = \"api.test\"\nupstream = \"api\"\n\
         [[routes]]\npath_prefix = \"/api\"\nupstream = \"api\"\n\
         [[routes]]\nupstream = \"web\"\n",
        api.addr(),
        web.addr()
    );
    let file = TempConfig::new("routes", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let by_path = within(10, "request", client::get(proxy.addr, "/api/x"))
        .await
        .unwrap();
    assert_eq!(by_path.body, "api");
    let other = within(10, "request", client::get(proxy.addr, "/page"))
        .await
        .unwrap();
    assert_eq!(other.body, "web");
    let raw = b"GET /page HTTP/1.1\r\nHost: API.test:8080\r\nConnection: close\r\n\r\n";
    let by_host = within(10, "request", client::raw(proxy.addr, raw, 5)).await;
    assert!(String::from_utf8_lossy(&by_host.bytes).ends_with("api"));
}

#[tokio::test]
async fn retries_go_to_servers_not_yet_tried_and_post_is_not_sent_twice() {
    // Two servers that drop every request before answering, and one healthy.
    let drop_a = Origin::start("a", Script::always(Behavior::CloseBeforeHead)).await;
    let drop_b = Origin::start("b", Script::always(Behavior::CloseBeforeHead)).await;
    let good = Origin::healthy("good").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\", \"{}\", \"{}\"]\n",
        drop_a.addr(),
        drop_b.addr(),
        good.addr()
    );
    let file = TempConfig::new("untried", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(
        reply.body, "good",
        "three attempts, each on a different server"
    );
    let post = within(10, "POST", client::post(proxy.addr, "/pay", "amount=1"))
        .await
        .unwrap();
    assert_eq!(post.status, 502);

    let log = proxy.wait_for_log(2).await;
    assert!(log[0].contains("attempts=3"), "{}", log[0]);
    for origin in [&drop_a, &drop_b, &good] {
        assert!(log[0].contains(&origin.addr().to_string()), "{}", log[0]);
    }
    assert!(
        log[1].contains("attempts=1") && log[1].contains("[not-idempotent]"),
        "{}",
        log[1]
    );
    let posts: usize = [&drop_a, &drop_b, &good]
        .iter()
        .map(|o| {
            o.requests()
                .iter()
                .filter(|r| r.method == http::Method::POST)
                .count()
        })
        .sum();
    assert_eq!(posts, 1, "the POST reached one server, once");

    let metrics = common::admin_get(proxy.admin.unwrap(), "/metrics").await;
    // A retry is counted on the server whose failure caused it.
    for dropped in [&drop_a, &drop_b] {
        let line = format!(
            "switchyard_retries_total{{upstream=\"app\",server=\"{}\",reason=\"closed-before-head\",note=\"next-peer\"}} 1",
            dropped.addr()
        );
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
    assert!(
        metrics.lines().any(|l| l
            .starts_with("switchyard_retries_not_taken_total{upstream=\"app\",server=\"")
            && l.ends_with("reason=\"hook-declined\",note=\"not-idempotent\"} 1")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l
            .starts_with("switchyard_requests_total{upstream=\"app\",route=\"\",server=\"")
            && l.ends_with("status=\"502\"} 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_json_access_log_carries_every_attempt() {
    let dead = refused_addr().await;
    let good = Origin::healthy("good").await;
    let proxy = Running::start(&[
        "--log-format",
        "json",
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &dead.to_string(),
        "--to",
        &good.addr().to_string(),
    ]);
    // Round robin may start on either; send two so one starts on the dead one.
    for _ in 0..2 {
        within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
    }
    let log = proxy.wait_for_log(2).await;
    let entries: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed_over = entries
        .iter()
        .find(|e| e["attempts"].as_array().unwrap().len() == 2)
        .expect("one request started on the refused server");
    assert_eq!(failed_over["status"], 200);
    assert_eq!(failed_over["attempts"][0]["error"], "connect-refused");
    assert_eq!(failed_over["attempts"][0]["decision"], "retry");
    assert_eq!(failed_over["attempts"][0]["note"], "next-peer");
    assert_eq!(failed_over["attempts"][1]["decision"], "done");
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_slow_request_before_exit() {
    let slow = Behavior::Slow {
        delay: Duration::from_millis(700),
        then: Box::new(Behavior::ok()),
    };
    let origin = Origin::start("slow", Script::always(slow)).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("drain", &text);
    let mut proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let in_flight = tokio::spawn(client::get(proxy.addr, "/slow"));
    origin.wait_for_requests(1, 5).await;
    proxy.terminate();
    let reply = within(10, "the in-flight request", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "slow");
    assert!(proxy.wait(10).success());
    assert!(
        proxy
            .stderr()
            .iter()
            .any(|l| l.contains("stopping; letting in-flight requests finish"))
    );
}

#[tokio::test]
async fn a_keep_alive_race_costs_no_attempt_even_with_max_attempts_1() {
    let origin = racy().await;
    // One worker, so the second request finds the first one's pooled connection.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{}\"]\n[upstreams.app.retry]\nmax_attempts = 1\n",
        origin.addr()
    );
    let file = TempConfig::new("stale", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for i in 0..2 {
        let reply = within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "request {i}");
    }
    let log = proxy.wait_for_log(2).await;
    assert!(
        log[1].contains("closed-before-head (reused) -> retry [same-peer]"),
        "{}",
        log[1]
    );
    assert_eq!(origin.stats().connections, 2);
}

#[tokio::test]
async fn a_post_sent_again_after_a_keep_alive_race_still_counts_against_max_attempts() {
    // Found in review: with non_idempotent = true the free retry let a POST
    // be sent twice although max_attempts = 1 means never retry.
    let origin = racy().await;
    // One worker, so the second request finds the first one's pooled connection.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{}\"]\n\
         [upstreams.app.retry]\nmax_attempts = 1\nnon_idempotent = true\n",
        origin.addr()
    );
    let file = TempConfig::new("stale-post", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let mut conn = client::KeepAlive::connect(proxy.addr).await;
    let get = http::Request::get("/").body(Default::default()).unwrap();
    assert_eq!(within(10, "GET", conn.send(get)).await.unwrap().status, 200);
    let post = within(10, "POST", client::post(proxy.addr, "/pay", "amount=1"))
        .await
        .unwrap();
    assert_eq!(post.status, 502);
    let log = proxy.wait_for_log(2).await;
    assert!(log[1].contains("stop (attempt-cap)"), "{}", log[1]);
    assert_eq!(origin.stats().requests, 2, "the POST was sent once");
}

/// An origin that answers the first request on each connection and closes
/// the connection on reading the second, without answering: a pooled
/// connection that looked fine at checkout dies after the write.
async fn racy() -> Origin {
    Origin::start(
        "racy",
        Script::per_connection(
            vec![Behavior::ok(), Behavior::CloseBeforeHead],
            Behavior::ok(),
        ),
    )
    .await
}

#[tokio::test]
async fn a_post_an_h2c_server_refused_goes_to_the_next_and_the_log_says_not_processed() {
    use switchyard_testkit::h2_origin::{H2Behavior, H2Origin};
    let refusing = H2Origin::start("refusing", H2Behavior::Refuse).await;
    let good = H2Origin::start("good", H2Behavior::Answer).await;
    // retry_on names no connect failure: a refused stream moves on anyway.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"h2c://{}\", \"h2c://{}\"]\nconnect_hedging = false\n\
         [upstreams.app.retry]\nretry_on = []\n",
        refusing.addr(),
        good.addr()
    );
    let file = TempConfig::new("refused", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    for i in 0..2 {
        let reply = within(
            10,
            "POST",
            client::post(proxy.addr, "/pay", format!("pay {i}")),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "good");
    }
    let bodies: Vec<_> = good.seen().iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, ["pay 0", "pay 1"], "each delivered once");
    let log = proxy.wait_for_log(2).await;
    let refused = log
        .iter()
        .find(|line| line.contains("stream-refused"))
        .expect("one POST went to the refusing server first");
    assert!(
        refused.contains("stream-refused -> retry [not-processed]"),
        "{refused}"
    );
}

#[tokio::test]
async fn metrics_count_each_group_and_status_apart() {
    // Two groups; one answers 200, 404, 200, the other 200 twice. The
    // handles kept for a group's successes must not mix groups or statuses.
    let a = Origin::start(
        "a",
        Script::sequence(vec![Behavior::ok(), Behavior::status(404)], Behavior::ok()),
    )
    .await;
    let b = Origin::healthy("b").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.a]\nservers = [\"{}\"]\n[upstreams.b]\nservers = [\"{}\"]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/a\"\nupstream = \"a\"\n\
         [[routes]]\nupstream = \"b\"\n",
        a.addr(),
        b.addr()
    );
    let file = TempConfig::new("metrics-apart", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for path in ["/a", "/a", "/a", "/b", "/b"] {
        within(10, "request", client::get(proxy.addr, path))
            .await
            .unwrap();
    }
    proxy.wait_for_log(5).await;
    let metrics = common::admin_get(proxy.admin.unwrap(), "/metrics").await;
    // Named routes label their requests; unnamed ones share route="".
    let (a, b) = (a.addr(), b.addr());
    for line in [
        format!(
            "switchyard_requests_total{{upstream=\"a\",route=\"api\",server=\"{a}\",status=\"200\"}} 2"
        ),
        format!(
            "switchyard_requests_total{{upstream=\"a\",route=\"api\",server=\"{a}\",status=\"404\"}} 1"
        ),
        format!(
            "switchyard_requests_total{{upstream=\"b\",route=\"\",server=\"{b}\",status=\"200\"}} 2"
        ),
        format!("switchyard_attempts_total{{upstream=\"a\",server=\"{a}\",reason=\"done\"}} 3"),
        format!("switchyard_attempts_total{{upstream=\"b\",server=\"{b}\",reason=\"done\"}} 2"),
        format!("switchyard_upstream_attempt_seconds_count{{upstream=\"a\",server=\"{a}\"}} 3"),
        format!("switchyard_upstream_attempt_seconds_count{{upstream=\"b\",server=\"{b}\"}} 2"),
    ] {
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
}
