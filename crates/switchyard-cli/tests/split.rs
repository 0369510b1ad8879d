//! A route's `split` between groups: shares by weight, a side with no
//! usable server giving its share to the other (said in the access log),
//! `split_sticky` keeping a client on its side, a reload changing the
//! weights without dropping a request, and `check` refusing what cannot
//! work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use switchyard_testkit::{Origin, client, refused_addr, within};

use common::{Running, TempConfig, wait_for_upstreams};

fn config(stable: SocketAddr, canary: SocketAddr, route: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.stable]\nservers = [\"{stable}\"]\n\
         [upstreams.canary]\nservers = [\"{canary}\"]\n\
         [upstreams.canary.health_check]\ninterval = \"50ms\"\ndown_interval = \"50ms\"\n\
         timeout = \"200ms\"\nfall = 1\n\
         [[routes]]\npath_prefix = \"/\"\n{route}\n"
    )
}

const WEIGHTS_80_20: &str =
    "split = [{ upstream = \"stable\", weight = 80 }, { upstream = \"canary\", weight = 20 }]";

async fn get(addr: SocketAddr, cookie: Option<&str>) -> client::Collected {
    let cookie: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    common::get_with(addr, "/", &cookie).await
}

#[tokio::test]
async fn requests_are_shared_by_weight() {
    let stable = Origin::healthy("stable").await;
    let canary = Origin::healthy("canary").await;
    let file = TempConfig::new(
        "split",
        &config(stable.addr(), canary.addr(), WEIGHTS_80_20),
    );
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for _ in 0..2000 {
        assert_eq!(get(proxy.addr, None).await.status, 200);
    }
    let to_canary = canary.requests().len();
    // 20% of 2,000 is 400; within one percentage point is 380..=420.
    assert!(
        (380..=420).contains(&to_canary),
        "{to_canary} to the canary"
    );
    assert_eq!(stable.requests().len() + to_canary, 2000);
    let log = proxy.wait_for_log(2000).await;
    let named = log.iter().filter(|l| l.contains(" split=canary")).count();
    assert_eq!(named, to_canary, "each line names its side");
}

#[tokio::test]
async fn a_side_without_a_usable_server_gives_its_share_to_the_other() {
    let stable = Origin::healthy("stable").await;
    let down = refused_addr().await;
    let file = TempConfig::new("split-down", &config(stable.addr(), down, WEIGHTS_80_20));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let canary_down = |s: &serde_json::Value| {
        let groups = s["upstreams"].as_array().unwrap();
        let canary = groups.iter().find(|g| g["name"] == "canary").unwrap();
        canary["servers"][0]["usable"] == false
    };
    wait_for_upstreams(proxy.admin.unwrap(), canary_down).await;
    for _ in 0..50 {
        assert_eq!(get(proxy.addr, None).await.status, 200);
    }
    assert_eq!(stable.requests().len(), 50);
    let log = proxy.wait_for_log(50).await;
    let moved = log
        .iter()
        .filter(|l| l.contains("split=stable split-moved-from=canary"));
    assert!((5..=15).contains(&moved.count()), "{log:?}");
}

#[tokio::test]
async fn a_sticky_split_keeps_each_client_on_its_side() {
    let stable = Origin::healthy("stable").await;
    let canary = Origin::healthy("canary").await;
    let route = format!("{WEIGHTS_80_20}\nsplit_sticky = \"cookie:sy_split\"");
    let file = TempConfig::new(
        "split-sticky",
        &config(stable.addr(), canary.addr(), &route),
    );
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let mut cookies = Vec::new();
    for _ in 0..10 {
        let reply = get(proxy.addr, None).await;
        let set = reply.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.starts_with("sy_split=") && set.contains("HttpOnly"),
            "{set}"
        );
        cookies.push(set.split(';').next().unwrap().to_string());
    }
    assert!(
        cookies.contains(&"sy_split=canary".to_string()),
        "{cookies:?}"
    );
    let (stable_before, canary_before) = (stable.requests().len(), canary.requests().len());
    for _ in 0..20 {
        let reply = get(proxy.addr, Some("sy_split=canary")).await;
        assert!(
            !reply.headers.contains_key("set-cookie"),
            "already on its side"
        );
    }
    assert_eq!(canary.requests().len(), canary_before + 20);
    assert_eq!(stable.requests().len(), stable_before);
}

#[tokio::test]
async fn a_reload_changes_the_weights_without_dropping_a_request() {
    let stable = Origin::healthy("stable").await;
    let canary = Origin::healthy("canary").await;
    let file = TempConfig::new(
        "split-reload",
        &config(stable.addr(), canary.addr(), WEIGHTS_80_20),
    );
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let addr = proxy.addr;
    let load = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..600 {
            statuses.push(get(addr, None).await.status.as_u16());
        }
        statuses
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let all_canary =
        "split = [{ upstream = \"stable\", weight = 1 }, { upstream = \"canary\", weight = 99 }]";
    std::fs::write(&file.path, config(stable.addr(), canary.addr(), all_canary)).unwrap();
    proxy.hangup();
    proxy.wait_for_stderr("switchyard: reloaded").await;
    let statuses = within(30, "load", load).await.unwrap();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let before = canary.requests().len();
    for _ in 0..100 {
        get(proxy.addr, None).await;
    }
    let after = canary.requests().len() - before;
    assert!(after >= 97, "{after} of 100 to the canary after the reload");
}

#[test]
fn check_refuses_splits_that_cannot_work() {
    let stable: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (route, key, says) in [
        (format!("upstream = \"stable\"\n{WEIGHTS_80_20}"), "routes[0].upstream", "one of upstream"),
        ("split = [{ upstream = \"stable\", weight = 1 }]".into(), "routes[0].split", "two sides"),
        ("split = [{ upstream = \"stable\", weight = 1 }, { upstream = \"nope\", weight = 1 }]".into(), "routes[0].split[1].upstream", "no upstream group"),
        ("split = [{ upstream = \"stable\", weight = 1 }, { upstream = \"canary\", weight = 0 }]".into(), "routes[0].split", "weight of 0"),
        (format!("{WEIGHTS_80_20}\nsplit_sticky = \"header:x\""), "routes[0].split_sticky", "cookie:NAME"),
        ("upstream = \"stable\"\nsplit_sticky = \"cookie:a\"".into(), "routes[0].split_sticky", "only means something with split"),
        (format!("{WEIGHTS_80_20}\nretry = {{ max_attempts = 1 }}"), "routes[0].retry", "each group"),
    ] {
        let stderr = common::check_refusal("split-bad", &config(stable, stable, &route));
        assert!(stderr.contains(key) && stderr.contains(says), "{route}: {stderr}");
    }
}
