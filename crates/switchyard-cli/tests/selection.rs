//! Selection end to end: least-loaded prefers the fast server of two, and
//! hashing keeps a key on its server; bad keys are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Running, TempConfig};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

#[tokio::test]
async fn least_loaded_prefers_the_fast_server_of_two() {
    let fast = Origin::healthy("fast").await;
    let slow_behavior = Behavior::Slow {
        delay: Duration::from_millis(40),
        then: Box::new(Behavior::ok()),
    };
    let slow = Origin::start("slow", Script::always(slow_behavior)).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"{}\", \"{}\"]\nselection = \"least-loaded\"\n",
        slow.addr(),
        fast.addr()
    );
    let file = TempConfig::new("p2c", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for _ in 0..40 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let (f, s) = (fast.stats().requests, slow.stats().requests);
    assert!(f >= 35 && s <= 5, "fast {f}, slow {s}");
}

#[tokio::test]
async fn hashing_on_a_header_keeps_each_key_on_one_server() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let c = Origin::healthy("c").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.app]\nservers = [\"{}\", \"{}\", \"{}\"]\n\
         selection = \"hash\"\nhash_key = \"header:x-user\"\n",
        a.addr(),
        b.addr(),
        c.addr()
    );
    let file = TempConfig::new("hash", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let mut placed: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for user in 0..20 {
            let request = http::Request::get("/")
                .header("x-user", format!("user-{user}"))
                .header("host", "x")
                .body(Default::default())
                .unwrap();
            let reply = within(10, "GET", client::send(proxy.addr, request))
                .await
                .unwrap();
            let server = String::from_utf8_lossy(&reply.body).to_string();
            let first = placed
                .entry(format!("user-{user}"))
                .or_insert(server.clone());
            assert_eq!(*first, server, "round {round}: user-{user} moved");
        }
    }
    let servers: std::collections::HashSet<&String> = placed.values().collect();
    assert!(servers.len() >= 2, "20 keys over 3 servers: {placed:?}");
}

#[test]
fn hash_selection_needs_a_valid_key() {
    for (extra, expected) in [
        ("selection = \"hash\"\n", "needs a hash_key"),
        (
            "selection = \"hash\"\nhash_key = \"query\"\n",
            "header:NAME",
        ),
        (
            "hash_key = \"path\"\n",
            "only used with selection = \"hash\"",
        ),
    ] {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n{extra}"
        );
        let file = TempConfig::new("bad-hash", &text);
        let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("upstreams.app.hash_key") && stderr.contains(expected),
            "{extra}: {stderr}"
        );
    }
}
