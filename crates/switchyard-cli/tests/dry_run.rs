//! `mode = "dry-run"`: the policies decide, count and log what they would
//! have done, and the traffic goes exactly as with the policies off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Running, TempConfig};
use http::{Method, Request};
use http_body_util::Full;
use switchyard_testkit::{Behavior, Origin, Script, client, within};

/// A 503 asking for two seconds.
fn busy() -> Behavior {
    Behavior::Raw {
        bytes: Bytes::from_static(
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 4\r\n\r\nbusy",
        ),
    }
}

#[tokio::test]
async fn dry_run_policies_change_nothing_but_the_counters() {
    // The primary resets POSTs, answers /slow late, and is busy otherwise.
    let primary = Origin::start(
        "primary",
        Script::from_fn(|step| match (step.method.as_str(), step.path.as_str()) {
            ("POST", _) => Behavior::ResetBeforeHead,
            (_, "/slow") => Behavior::ok().after(Duration::from_millis(300)),
            _ => busy(),
        }),
    )
    .await;
    let backup = Origin::healthy("backup").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\n\
         [upstreams.app.retry]\nmode = \"dry-run\"\nidempotency_key = \"Idempotency-Key\"\n\
         retry_on = [\"connect-failure\", \"reset-before-response\", 503]\n\
         hedge = true\nhedge_min = \"20ms\"\nhedge_max = \"50ms\"\n",
        primary.addr(),
        backup.addr()
    );
    let file = TempConfig::new("dry-run", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    // The key would make the POST safe to resend: it is not resent.
    let keyed = Request::builder()
        .method(Method::POST)
        .uri("/pay")
        .header("idempotency-key", "\"k-9\"")
        .body(Full::new(Bytes::from_static(b"amount=1")))
        .unwrap();
    let reply = within(10, "POST", client::send(proxy.addr, keyed))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    // Retry-After would hold the primary: the next request still goes to it.
    for _ in 0..2 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.body, "backup", "the 503 is retried as before");
    }
    // A hedge would go after 50 ms: none goes.
    let reply = within(10, "GET", client::get(proxy.addr, "/slow"))
        .await
        .unwrap();
    assert_eq!(reply.body, "primary");

    assert_eq!(
        primary.requests().len(),
        4,
        "each request reached the primary"
    );
    let backup_paths: Vec<String> = backup.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(backup_paths, ["/", "/"], "only the two 503s were retried");

    let log = proxy.wait_for_log(4).await;
    assert!(
        log[0].ends_with("dry-run=idempotency-key:retry")
            || log[0].contains("dry-run=idempotency-key:retry "),
        "{}",
        log[0]
    );
    assert!(log[1].contains("dry-run=pushback:hold"), "{}", log[1]);
    assert!(log[3].contains("dry-run=hedge:send-copy"), "{}", log[3]);
    let admin = proxy.admin.unwrap();
    let metrics = common::admin_get(admin, "/metrics").await;
    for line in [
        "switchyard_policy_dry_run_total{policy=\"idempotency-key\",would=\"retry\"} 1",
        "switchyard_policy_dry_run_total{policy=\"pushback\",would=\"hold\"} 2",
        "switchyard_policy_dry_run_total{policy=\"hedge\",would=\"send-copy\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(
        !metrics.contains("switchyard_upstream_held_total{"),
        "{metrics}"
    );
    assert!(!metrics.contains("switchyard_hedges_total{"), "{metrics}");
    let view = common::admin_get(admin, "/upstreams").await;
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert!(
        view["upstreams"][0]["servers"][0]["held_for_ms"].is_null(),
        "{view}"
    );
}
