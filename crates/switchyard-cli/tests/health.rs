//! Health end to end: a dead primary costs only the first requests, active
//! checks take a server down and bring it back after `rise` passes, and
//! `/upstreams` says what each server's state is and why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Running, TempConfig, admin_get, wait_for_upstreams};
use switchyard_testkit::{Behavior, Blackhole, Origin, Script, client, refused_addr, within};

#[tokio::test]
async fn outlier_ejection_alone_makes_a_blackholed_primary_cost_two_requests() {
    let (slow, upstreams) = two_hundred_requests_past_a_blackhole(false).await;
    assert!(
        slow.len() <= 2 && slow.iter().all(|&i| i < 2),
        "slow requests: {slow:?}"
    );
    let primary = &upstreams["upstreams"][0]["servers"][0];
    assert_eq!(primary["usable"], false, "{upstreams}");
    assert_eq!(primary["ejections"], 1);
    let reason = primary["reason"].as_str().unwrap();
    assert!(
        reason.contains("2 consecutive failures, the last a timeout"),
        "{reason}"
    );
    assert_eq!(upstreams["upstreams"][0]["servers"][1]["usable"], true);
}

#[tokio::test]
async fn with_connect_hedging_not_even_the_first_requests_wait() {
    let (slow, upstreams) = two_hundred_requests_past_a_blackhole(true).await;
    assert!(slow.is_empty(), "slow requests: {slow:?}");
    // Losing hedge races counts against the primary: it is ejected too.
    assert_eq!(
        upstreams["upstreams"][0]["servers"][0]["usable"], false,
        "{upstreams}"
    );
}

/// 200 sequential GETs through a proxy whose primary is blackholed (connect
/// timeout 2 s) and whose backup is healthy: the indexes of the requests
/// that took over 100 ms, and `/upstreams` afterwards.
async fn two_hundred_requests_past_a_blackhole(hedging: bool) -> (Vec<usize>, serde_json::Value) {
    let dead = Blackhole::start().await;
    let backup = Origin::healthy("backup").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\nconnect_timeout = \"2s\"\n\
         connect_hedging = {hedging}\n",
        dead.addr(),
        backup.addr()
    );
    let file = TempConfig::new(&format!("blackholed-{hedging}"), &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let mut conn = client::KeepAlive::connect(proxy.addr).await;
    let mut slow = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        let request = http::Request::get("/").body(Default::default()).unwrap();
        let reply = within(10, "request", conn.send(request)).await.unwrap();
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(reply.body, "backup");
        if started.elapsed() > Duration::from_millis(100) {
            slow.push(i);
        }
    }
    let upstreams = admin_get(proxy.admin.unwrap(), "/upstreams").await;
    let state: serde_json::Value = serde_json::from_str(&upstreams).unwrap();
    assert_eq!(
        state["upstreams"][0]["servers"][0]["addr"],
        dead.addr().to_string()
    );
    (slow, state)
}

#[tokio::test]
async fn active_checks_take_a_server_down_and_bring_it_back_after_rise() {
    let addr = refused_addr().await;
    let other = Origin::healthy("other").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{addr}\", \"{}\"]\n\
         [upstreams.app.health_check]\ninterval = \"50ms\"\ndown_interval = \"50ms\"\n\
         timeout = \"200ms\"\nrise = 2\nfall = 2\n",
        other.addr()
    );
    let file = TempConfig::new("checks", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    let server = |state: &serde_json::Value| state["upstreams"][0]["servers"][0].clone();
    let down = wait_for_upstreams(admin, |s| server(s)["check"] == "down").await;
    assert_eq!(server(&down)["usable"], false);
    assert!(
        server(&down)["last_check"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{down}"
    );
    // While it is down, every request goes to the other server.
    for _ in 0..10 {
        let reply = within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.body, "other");
    }
    // It comes back: something listens there again.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _accepting = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let up = wait_for_upstreams(admin, |s| server(s)["check"] == "up").await;
    assert_eq!(server(&up)["usable"], true);
}

#[tokio::test]
async fn the_ejection_cap_keeps_half_the_servers_in_and_says_why() {
    let dead = [
        refused_addr().await,
        refused_addr().await,
        refused_addr().await,
    ];
    let alive = Origin::healthy("alive").await;
    let servers: Vec<String> = dead
        .iter()
        .chain([&alive.addr()])
        .map(|a| format!("\"{a}\""))
        .collect();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [{}]\nconnect_hedging = false\n\
         [upstreams.app.retry]\nmax_attempts = 4\n",
        servers.join(", ")
    );
    let file = TempConfig::new("cap", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for i in 0..40 {
        let reply = within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "request {i}");
    }
    let upstreams = admin_get(proxy.admin.unwrap(), "/upstreams").await;
    let state: serde_json::Value = serde_json::from_str(&upstreams).unwrap();
    let servers = state["upstreams"][0]["servers"].as_array().unwrap();
    let ejected = servers[..3].iter().filter(|s| s["usable"] == false).count();
    assert_eq!(ejected, 2, "4 servers, cap 50%: {upstreams}");
    let kept = servers[..3].iter().find(|s| s["usable"] == true).unwrap();
    let reason = kept["reason"].as_str().unwrap();
    assert!(
        reason.contains("not ejected: 2 of 4 already ejected (cap 50%)"),
        "{reason}"
    );
    assert_eq!(servers[3]["usable"], true);
}

#[tokio::test]
async fn in_panic_mode_servers_marked_down_take_traffic_again() {
    // Two of three servers fail their health check but serve requests fine
    // (a broken check): with one of three usable, below the 50% panic
    // threshold, all three are used rather than the one left.
    let failing_check = || {
        Script::from_fn(|step| match step.path.as_str() {
            "/health" => Behavior::status(503),
            _ => Behavior::ok(),
        })
    };
    let a = Origin::start("a", failing_check()).await;
    let b = Origin::start("b", failing_check()).await;
    let c = Origin::healthy("c").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\", \"{}\", \"{}\"]\n\
         [upstreams.app.health_check]\nkind = \"http\"\npath = \"/health\"\n\
         interval = \"50ms\"\ndown_interval = \"50ms\"\nfall = 2\n",
        a.addr(),
        b.addr(),
        c.addr()
    );
    let file = TempConfig::new("panic", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    let down = |s: &serde_json::Value, i: usize| s["upstreams"][0]["servers"][i]["check"] == "down";
    let state = wait_for_upstreams(admin, |s| down(s, 0) && down(s, 1)).await;
    assert_eq!(state["upstreams"][0]["panic"], true, "{state}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let reply = within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        seen.insert(String::from_utf8_lossy(&reply.body).to_string());
    }
    assert_eq!(seen.len(), 3, "all three served: {seen:?}");
}

#[tokio::test]
async fn a_healthy_backup_serves_before_primaries_marked_down() {
    // Both primaries refuse and active checks take them down: one of three
    // servers is usable, below the panic threshold, but that one is a
    // healthy backup, so it serves every request and no request is sent to
    // a dead primary first (with 2 attempts that would end in 502).
    let (a, b) = (refused_addr().await, refused_addr().await);
    let backup = Origin::healthy("backup").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{a}\", \"{b}\"]\nbackup = [\"{}\"]\n\
         [upstreams.app.retry]\nmax_attempts = 2\n\
         [upstreams.app.health_check]\ninterval = \"50ms\"\ndown_interval = \"50ms\"\nfall = 2\n",
        backup.addr()
    );
    let file = TempConfig::new("backup-tier", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    let down = |s: &serde_json::Value, i: usize| s["upstreams"][0]["servers"][i]["check"] == "down";
    let state = wait_for_upstreams(admin, |s| down(s, 0) && down(s, 1)).await;
    assert_eq!(state["upstreams"][0]["panic"], false, "{state}");
    for i in 0..10 {
        let reply = within(10, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(reply.body, "backup");
    }
    let log = proxy.wait_for_log(10).await;
    for line in &log {
        assert!(
            !line.contains(&a.to_string()),
            "a dead primary was tried: {line}"
        );
        assert!(
            !line.contains(&b.to_string()),
            "a dead primary was tried: {line}"
        );
    }
}

#[tokio::test]
async fn resets_and_broken_bodies_count_towards_ejection() {
    // The flaky server resets its first request before answering, then
    // breaks off its second response after a good head. Both are failures:
    // two in a row eject it. (A reset used to be no verdict and a broken
    // body a success, so it was never ejected.)
    let flaky = Origin::start(
        "flaky",
        Script::sequence(
            vec![Behavior::ResetBeforeHead, Behavior::ResetAfterHead],
            Behavior::ok(),
        ),
    )
    .await;
    let good = Origin::healthy("good").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\", \"{}\"]\n",
        flaky.addr(),
        good.addr()
    );
    let file = TempConfig::new("passive", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let mut sent = 0;
    while flaky.stats().requests < 2 {
        assert!(sent < 10, "the flaky server never got its two requests");
        // The broken body is an error for the client; the others are 200.
        let _ = within(10, "request", client::get(proxy.addr, "/")).await;
        sent += 1;
    }
    proxy.wait_for_log(sent).await;
    let state: serde_json::Value =
        serde_json::from_str(&admin_get(proxy.admin.unwrap(), "/upstreams").await).unwrap();
    let server = &state["upstreams"][0]["servers"][0];
    assert_eq!(server["usable"], false, "{state}");
    let reason = server["reason"].as_str().unwrap();
    assert!(
        reason.contains("2 consecutive failures, the last a broken exchange"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_bad_health_check_section_is_refused_with_its_key() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n\
                [upstreams.app.health_check]\nkind = \"icmp\"\n";
    let file = TempConfig::new("bad-check", text);
    let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("upstreams.app.health_check.kind") && stderr.contains("\"icmp\""),
        "{stderr}"
    );
}
