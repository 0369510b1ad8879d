//! The health model beyond consecutive failures: ejection by success rate
//! and by latency against the group, and slow start for a server coming
//! back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{get_n, two_servers};
use switchyard_testkit::{Behavior, Origin, Script};

async fn first_server(admin: SocketAddr) -> serde_json::Value {
    let view = common::admin_get(admin, "/upstreams").await;
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    view["upstreams"][0]["servers"][0].clone()
}

#[tokio::test]
async fn a_server_much_slower_than_its_group_is_ejected() {
    let slow = Origin::start(
        "slow",
        Script::always(Behavior::ok().after(Duration::from_millis(40))),
    )
    .await;
    let fast = Origin::healthy("fast").await;
    let (proxy, _file) = two_servers(
        "latency",
        slow.addr(),
        fast.addr(),
        "latency_factor = 5\nslow_start = \"0s\"",
    );
    // Twenty answers from each make both medians known; the slow server is
    // judged at its next answer.
    get_n(proxy.addr, 44).await;
    let server = first_server(proxy.admin.unwrap()).await;
    assert_eq!(server["usable"], false, "{server}");
    let reason = server["reason"].as_str().unwrap();
    assert!(reason.contains("median response time"), "{reason}");
    let before = slow.requests().len();
    get_n(proxy.addr, 10).await;
    assert_eq!(slow.requests().len(), before, "ejected: no more traffic");
}

#[tokio::test]
async fn a_server_failing_too_often_is_ejected_by_its_success_rate() {
    // Every other answer a 502: never two failures in a row.
    let flaky = Origin::start(
        "flaky",
        Script::from_fn(|step| {
            if step.global_index % 2 == 0 {
                Behavior::status(502)
            } else {
                Behavior::ok()
            }
        }),
    )
    .await;
    let good = Origin::healthy("good").await;
    let (proxy, _file) = two_servers(
        "success-rate",
        flaky.addr(),
        good.addr(),
        "success_rate_window = 10\nmin_success_percent = 60\nslow_start = \"0s\"",
    );
    get_n(proxy.addr, 20).await;
    let server = first_server(proxy.admin.unwrap()).await;
    assert_eq!(server["usable"], false, "{server}");
    let reason = server["reason"].as_str().unwrap();
    assert!(
        reason.contains("success rate 50% over the last 10 attempts"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_server_back_from_an_ejection_ramps_its_share_up() {
    // One 500 ejects it for 300 ms; then it answers.
    let back = Origin::start(
        "back",
        Script::sequence(vec![Behavior::status(500)], Behavior::ok()),
    )
    .await;
    let other = Origin::healthy("other").await;
    let (proxy, _file) = two_servers(
        "slow-start",
        back.addr(),
        other.addr(),
        "consecutive_5xx = 1\nbase_ejection = \"300ms\"\nslow_start = \"2s\"",
    );
    let admin = proxy.admin.unwrap();
    while back.requests().is_empty() {
        get_n(proxy.addr, 1).await;
    }
    assert_eq!(first_server(admin).await["usable"], false);
    // The ejection is over: it is usable again, ramping up.
    let usable = |s: &serde_json::Value| s["upstreams"][0]["servers"][0]["usable"] == true;
    common::wait_for_upstreams(admin, usable).await;

    // Early in the ramp it takes a small share (10-20%), not half.
    let seen = back.requests().len();
    get_n(proxy.addr, 40).await;
    let early = back.requests().len() - seen;
    assert!(early <= 12, "{early} of 40 early in the ramp");
    let server = first_server(admin).await;
    assert!(server["slow_start_permille"].as_u64().is_some(), "{server}");

    // Once the ramp is over, a full share.
    let ramped =
        |s: &serde_json::Value| s["upstreams"][0]["servers"][0]["slow_start_permille"].is_null();
    common::wait_for_upstreams(admin, ramped).await;
    let seen = back.requests().len();
    get_n(proxy.addr, 40).await;
    let late = back.requests().len() - seen;
    assert!(late >= 16, "{late} of 40 after the ramp");
    assert!(first_server(admin).await["slow_start_permille"].is_null());
}
