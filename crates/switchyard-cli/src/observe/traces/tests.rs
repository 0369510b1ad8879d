#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use http::StatusCode;
use switchyard::trace::Phase;
use switchyard::{AttemptLog, AttemptRecord, Decision};

use super::{MAX_KEPT_PATH, TraceRing, approx_bytes, story_json};
use crate::observe::Finished;

fn attempt(port: u16, status: Option<u16>, decision: Decision) -> AttemptRecord {
    AttemptRecord {
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], port)).into(),
        reused: true,
        stale_replaced: 0,
        phase: Phase::Complete,
        error: None,
        status: status.map(|s| StatusCode::from_u16(s).unwrap()),
        request_body_bytes: 0,
        response_body_bytes: 512,
        started: Duration::from_micros(10),
        duration: Duration::from_micros(900),
        decision,
        note: None,
        backoff: Duration::ZERO,
        hedged: None,
        hedge_won: false,
        request_hedge: None,
        span_id: None,
    }
}

/// A request `id` to `path` answered by one attempt, or retried once first.
fn story(id: &str, path: &str, retried: bool) -> Finished {
    let mut records = Vec::new();
    if retried {
        records.push(attempt(9001, None, Decision::Retry));
    }
    records.push(attempt(9002, Some(200), Decision::Done));
    Finished {
        client: "127.0.0.1:50112".to_string(),
        method: "GET".to_string(),
        path: path.to_string(),
        status: 200,
        bytes: 512,
        duration: Duration::from_millis(1),
        upstream: Some("app".to_string()),
        error: None,
        trace: AttemptLog::from_records(Instant::now(), records),
        request_id: id.to_string(),
        upgrade: None,
        grpc: None,
        dry_runs: Vec::new(),
        proxy_status: None,
        trace_id: None,
        refused: None,
        split: None,
        protocol: crate::observe::ClientProtocol::Http11,
    }
}

#[test]
fn a_retried_request_outlives_the_ordinary_ones_after_it() {
    let ring = TraceRing::new(2, 2);
    ring.keep(story("retried", "/", true));
    for n in 0..5 {
        ring.keep(story(&format!("plain-{n}"), "/", false));
    }
    assert!(ring.find("retried").is_some());
    assert!(ring.find("plain-4").is_some());
    assert!(ring.find("plain-3").is_some());
    assert!(
        ring.find("plain-2").is_none(),
        "only the last 2 ordinary ones"
    );
    assert_eq!(ring.held(), (2, 1));
}

#[test]
fn a_ring_of_size_zero_keeps_nothing() {
    let off = TraceRing::new(0, 0);
    assert!(!off.is_on());
    off.keep(story("one", "/", true));
    assert!(off.find("one").is_none());
    let failed_only = TraceRing::new(0, 2);
    failed_only.keep(story("retried", "/", true));
    failed_only.keep(story("plain", "/", false));
    assert!(failed_only.find("plain").is_none());
    assert!(failed_only.find("retried").is_some());
}

#[test]
fn a_long_path_is_cut_so_a_story_stays_small() {
    let ring = TraceRing::new(1, 0);
    let long = format!("/{}", "é".repeat(40_000));
    ring.keep(story("long", &long, false));
    let kept = ring.find("long").unwrap();
    assert!(kept.path.len() <= MAX_KEPT_PATH + 3, "{}", kept.path.len());
    assert!(kept.path.ends_with("..."));
    assert!(approx_bytes(&kept) < 2048, "{}", approx_bytes(&kept));
}

#[test]
fn a_typical_story_takes_under_a_kilobyte() {
    let one = story("0123456789abcdef0123456789abcdef", "/orders?page=2", false);
    let two = story("0123456789abcdef0123456789abcdef", "/orders?page=2", true);
    // The figures docs/config.md gives for sizing keep_traces.
    println!(
        "one attempt: {} bytes; two: {} bytes",
        approx_bytes(&one),
        approx_bytes(&two)
    );
    assert!(approx_bytes(&one) < 1024);
    assert!(approx_bytes(&two) < 1024);
}

#[test]
fn the_story_says_each_attempt_in_words() {
    let json = story_json(&story("abc", "/x", true));
    let lines = json["story"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].as_str().unwrap().starts_with("127.0.0.1:9001"));
    assert!(lines[1].as_str().unwrap().contains("200"));
    assert_eq!(json["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(json["request_id"], "abc");
}
