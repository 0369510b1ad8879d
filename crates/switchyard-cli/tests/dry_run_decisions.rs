//! One test per dry-run decision not covered by `dry_run.rs`: each policy
//! in `mode = "dry-run"` notes what it would have done (access log,
//! `switchyard_policy_dry_run_total`) and the traffic goes as if it were
//! off. Each test fails if its dry run acts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Running, TempConfig, admin_get, get_n, two_servers};
use http::Request;
use http_body_util::Full;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

fn start(name: &str, text: &str) -> (Running, TempConfig) {
    let file = TempConfig::new(name, text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    (proxy, file)
}

async fn dry_run_count(admin: SocketAddr, policy: &str, would: &str) -> u64 {
    let metrics = admin_get(admin, "/metrics").await;
    let prefix =
        format!("switchyard_policy_dry_run_total{{policy=\"{policy}\",would=\"{would}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn deadline_skip_retry_in_a_dry_run_still_retries() {
    // Eight answers after 200 ms teach the proxy the median; then the
    // server drops a request before answering.
    let slow = || Behavior::ok().after(Duration::from_millis(200));
    let mut script = vec![slow(); 8];
    script.push(Behavior::CloseBeforeHead);
    let origin = Origin::start("slow", Script::sequence(script, slow())).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{}\"]\n\
         [upstreams.app.retry]\nmode = \"dry-run\"\ndeadline_header = \"x-deadline-ms\"\n",
        origin.addr()
    );
    let (proxy, _file) = start("dry-deadline", &text);
    get_n(proxy.addr, 8).await;
    // 150 ms left, below the 200 ms median: the retry would be skipped.
    let request = Request::builder()
        .uri("/")
        .header("x-deadline-ms", "150")
        .body(Full::new(Bytes::new()))
        .unwrap();
    within(10, "GET", client::send(proxy.addr, request))
        .await
        .unwrap();
    assert_eq!(
        origin.requests().len(),
        10,
        "the retry was made all the same"
    );
    let log = proxy.wait_for_log(9).await;
    assert!(log[8].contains("dry-run=deadline:skip-retry"), "{}", log[8]);
    let admin = proxy.admin.unwrap();
    assert_eq!(dry_run_count(admin, "deadline", "skip-retry").await, 1);
}

/// A 503 asking for `secs` seconds.
fn busy_for(secs: u64) -> Behavior {
    let text = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {secs}\r\ncontent-length: 4\r\n\r\nbusy"
    );
    Behavior::Raw {
        bytes: Bytes::from(text),
    }
}

#[tokio::test]
async fn pushback_wait_in_a_dry_run_retries_at_once() {
    // A lone server asks for 3 s; honoured, the retry would wait that long.
    let a = Origin::start("a", Script::sequence(vec![busy_for(3)], Behavior::ok())).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\"]\n\
         [upstreams.app.retry]\nmode = \"dry-run\"\nretry_on = [503]\nmax_retry_after = \"3s\"\n",
        a.addr()
    );
    let (proxy, _file) = start("dry-wait", &text);
    let started = Instant::now();
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    // The wait is the behaviour under test: well under the 3 s asked for.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 200);
    assert_eq!(a.requests().len(), 2);
    let log = proxy.wait_for_log(1).await;
    assert!(log[0].contains("pushback:wait"), "{}", log[0]);
    assert!(!log[0].contains("[retry-after]"), "{}", log[0]);
    assert_eq!(
        dry_run_count(proxy.admin.unwrap(), "pushback", "wait").await,
        1
    );
}

#[tokio::test]
async fn one_layer_retries_in_a_dry_run_still_retries() {
    let dead = refused_addr().await;
    let good = Origin::healthy("good").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{dead}\"]\nbackup = [\"{}\"]\nconnect_hedging = false\n\
         [upstreams.app.retry]\nmode = \"dry-run\"\n\
         [upstreams.app.outlier]\nconsecutive_failures = 0\n",
        good.addr()
    );
    let (proxy, _file) = start("dry-one-layer", &text);
    // From another Switchyard: left to it to retry, but only noted here.
    let request = Request::builder()
        .uri("/")
        .header("x-switchyard-attempt", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = within(10, "GET", client::send(proxy.addr, request))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(good.requests().len(), 1);
    let log = proxy.wait_for_log(1).await;
    assert!(
        log[0].contains("dry-run=one-layer-retries:not-retry"),
        "{}",
        log[0]
    );
    let admin = proxy.admin.unwrap();
    assert_eq!(
        dry_run_count(admin, "one-layer-retries", "not-retry").await,
        1
    );
}

#[tokio::test]
async fn slow_start_in_a_dry_run_gives_a_returning_server_its_full_share() {
    // One 500 ejects it for 300 ms (consecutive failures act in any mode);
    // then it answers, and slow start would ramp its share over 10 s.
    let back = Origin::start(
        "back",
        Script::sequence(vec![Behavior::status(500)], Behavior::ok()),
    )
    .await;
    let other = Origin::healthy("other").await;
    let (proxy, _file) = two_servers(
        "dry-slow-start",
        back.addr(),
        other.addr(),
        "mode = \"dry-run\"\nconsecutive_5xx = 1\nbase_ejection = \"300ms\"\nslow_start = \"10s\"",
    );
    while back.requests().is_empty() {
        get_n(proxy.addr, 1).await;
    }
    // The ejection is over: it is usable again, ramping up.
    let admin = proxy.admin.unwrap();
    common::wait_for_upstreams(admin, |s| s["upstreams"][0]["servers"][0]["usable"] == true).await;
    // Early in the ramp, yet half the requests: round robin as without it.
    let seen = back.requests().len();
    get_n(proxy.addr, 40).await;
    let early = back.requests().len() - seen;
    assert!(early >= 16, "{early} of 40: the dry run held it back");
    assert!(dry_run_count(admin, "slow-start", "pick-again").await >= 1);
    let log = proxy.access_log();
    assert!(
        log.iter()
            .any(|l| l.contains("dry-run=slow-start:pick-again")),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_latency_ejection_in_a_dry_run_keeps_the_slow_server() {
    let slow = Origin::start(
        "slow",
        Script::always(Behavior::ok().after(Duration::from_millis(40))),
    )
    .await;
    let fast = Origin::healthy("fast").await;
    let (proxy, _file) = two_servers(
        "dry-latency",
        slow.addr(),
        fast.addr(),
        "mode = \"dry-run\"\nlatency_factor = 5\nslow_start = \"0s\"",
    );
    get_n(proxy.addr, 44).await;
    let admin = proxy.admin.unwrap();
    let view = admin_get(admin, "/upstreams").await;
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["upstreams"][0]["servers"][0]["usable"], true, "{view}");
    let before = slow.requests().len();
    get_n(proxy.addr, 10).await;
    assert_eq!(slow.requests().len(), before + 5, "still half the traffic");
    assert!(dry_run_count(admin, "outlier", "eject").await >= 1);
}
