//! Pushback: a 503 with `Retry-After` keeps its server out of selection for
//! that long (capped by `max_retry_after`), and a retry goes elsewhere or
//! waits for it; every attempt tells the upstream its number in
//! `x-switchyard-attempt`, and a request that arrives with one is left to
//! the proxy in front to retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Running, TempConfig};
use http::Request;
use http_body_util::Full;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

/// A 503 asking the client to come back after `secs` seconds.
fn busy_for(secs: u64) -> Behavior {
    let text = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {secs}\r\ncontent-length: 4\r\n\r\nbusy"
    );
    Behavior::Raw {
        bytes: Bytes::from(text),
    }
}

fn start(name: &str, text: &str) -> (Running, TempConfig) {
    let file = TempConfig::new(name, text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    (proxy, file)
}

#[tokio::test]
async fn a_server_asking_for_time_is_held_and_its_retry_goes_elsewhere() {
    let a = Origin::start("a", Script::sequence(vec![busy_for(2)], Behavior::ok())).await;
    let b = Origin::healthy("b").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\n\
         [upstreams.app.retry]\nretry_on = [\"connect-failure\", 503]\n",
        a.addr(),
        b.addr()
    );
    let (proxy, _file) = start("held", &text);

    let first = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "b");
    // Held: the next request goes straight to the backup.
    let second = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(second.body, "b");
    assert_eq!(a.requests().len(), 1);

    let admin = proxy.admin.unwrap();
    let view = common::admin_get(admin, "/upstreams").await;
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    let server_a = &view["upstreams"][0]["servers"][0];
    assert_eq!(server_a["usable"], false, "{view}");
    assert!(server_a["held_for_ms"].as_u64().unwrap() > 1000, "{view}");
    assert!(
        server_a["held_because"]
            .as_str()
            .unwrap()
            .starts_with("503 with Retry-After"),
        "{view}"
    );
    let metrics = common::admin_get(admin, "/metrics").await;
    assert!(
        metrics.contains("switchyard_upstream_held_total{upstream=\"app\",status=\"503\"} 1"),
        "{metrics}"
    );
    let log = proxy.wait_for_log(2).await;
    assert!(
        log[0].contains("503 then upstream-status -> retry [next-peer]"),
        "{}",
        log[0]
    );
    assert!(log[1].contains("attempts=1"), "{}", log[1]);

    // Once the wait is over, the primary is used again.
    let free = |s: &serde_json::Value| s["upstreams"][0]["servers"][0]["held_for_ms"].is_null();
    common::wait_for_upstreams(admin, free).await;
    let third = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(third.body, "a");
}

#[tokio::test]
async fn a_lone_server_asking_for_time_is_retried_after_it_at_most_max_retry_after() {
    // It asks for 30 s; the group honours at most 1 s.
    let a = Origin::start("a", Script::sequence(vec![busy_for(30)], Behavior::ok())).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"{}\"]\n\
         [upstreams.app.retry]\nretry_on = [503]\nmax_retry_after = \"1s\"\n",
        a.addr()
    );
    let (proxy, _file) = start("lone", &text);
    let started = Instant::now();
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "a");
    assert!(
        took >= Duration::from_millis(990) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let log = proxy.wait_for_log(1).await;
    assert!(
        log[0].contains("503 then upstream-status -> retry [retry-after]"),
        "{}",
        log[0]
    );
}

#[tokio::test]
async fn the_upstream_is_told_the_attempt_and_one_layer_retries() {
    let dead = refused_addr().await;
    let good = Origin::healthy("good").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"{dead}\"]\nbackup = [\"{}\"]\nconnect_hedging = false\n\
         [upstreams.app.outlier]\nconsecutive_failures = 0\n\
         [[routes]]\npath_prefix = \"/nested\"\nupstream = \"app\"\n\
         retry = {{ retry_when_attempt_header = true }}\n\
         [[routes]]\nupstream = \"app\"\n",
        good.addr()
    );
    let (proxy, _file) = start("attempt-header", &text);
    let from_outer = |path: &str| {
        Request::builder()
            .uri(path)
            .header("x-switchyard-attempt", "1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(good.requests()[0].headers["x-switchyard-attempt"], "2");
    // From another Switchyard: not retried here.
    let reply = within(10, "GET", client::send(proxy.addr, from_outer("/")))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(good.requests().len(), 1);
    // Unless the route says so.
    let reply = within(10, "GET", client::send(proxy.addr, from_outer("/nested")))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(good.requests()[1].headers["x-switchyard-attempt"], "2");

    let log = proxy.wait_for_log(3).await;
    assert!(
        log[1].contains("connect-refused -> stop (outer-layer-retries)"),
        "{}",
        log[1]
    );
}
