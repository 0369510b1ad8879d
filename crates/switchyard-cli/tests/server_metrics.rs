//! Metrics an operator can alert on: per-server gauges (state,
//! connections), the retry budget left, and the Grafana dashboard in
//! `dist/grafana/`, every metric of which must exist in `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use switchyard_testkit::{Behavior, Origin, Script, client, within};

use common::{Running, TempConfig};

fn config(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [log]\naccess = false\n\n[upstreams.app]\nservers = [\"{a}\", \"{b}\"]\n\
         connect_hedging = false\n"
    )
}

async fn metrics(admin: SocketAddr) -> String {
    common::admin_get(admin, "/metrics").await
}

/// The value of the series `line` starts (its labels included), if any.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn each_server_has_a_state_and_its_connections() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("server-gauges", &config(a.addr(), b.addr()));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    for _ in 0..4 {
        within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
    }
    let request = http::Request::put(format!("/upstreams/app/servers/{}/state", a.addr()))
        .header("host", admin.to_string())
        .body(Full::new(Bytes::from_static(b"drain")))
        .unwrap();
    assert_eq!(
        within(10, "PUT", client::send(admin, request))
            .await
            .unwrap()
            .status,
        200
    );

    let text = metrics(admin).await;
    let state = |server: SocketAddr, state: &str| {
        value(
            &text,
            &format!(
                "switchyard_upstream_server_state{{upstream=\"app\",server=\"{server}\",state=\"{state}\"}}"
            ),
        )
    };
    assert_eq!(state(a.addr(), "drain"), Some(1.0), "{text}");
    assert_eq!(state(a.addr(), "ready"), Some(0.0), "{text}");
    assert_eq!(state(b.addr(), "ready"), Some(1.0), "{text}");
    // Keep-alive connections back in the pool after their requests.
    for server in [a.addr(), b.addr()] {
        let idle = value(
            &text,
            &format!(
                "switchyard_upstream_connections{{upstream=\"app\",server=\"{server}\",state=\"idle\"}}"
            ),
        );
        assert!(idle.is_some_and(|n| n >= 1.0), "{server}: {text}");
    }
    // 10 retries a second at least, less none spent.
    let budget = value(&text, "switchyard_retry_budget_available{upstream=\"app\"}");
    assert!(budget.is_some_and(|n| n >= 10.0), "{text}");
}

/// The metric families a PromQL expression names (`switchyard_...`), with
/// the suffixes the text format adds taken off.
fn families(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("switchyard_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_string();
        found.push(base);
    }
    found
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_exists() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/grafana/switchyard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(families(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");

    // Traffic that makes every family have a series: a GET retried from a
    // server that drops it to a healthy one, a POST not retried.
    let drops = Origin::start("drops", Script::always(Behavior::CloseBeforeHead)).await;
    let drops_posts = Origin::start("drops-posts", Script::always(Behavior::CloseBeforeHead)).await;
    let good = Origin::healthy("good").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [upstreams.get]\nservers = [\"{}\", \"{}\"]\nconnect_hedging = false\n\n\
         [upstreams.post]\nservers = [\"{}\"]\n\n\
         [[routes]]\nname = \"posts\"\npath_prefix = \"/post\"\nupstream = \"post\"\n\n\
         [[routes]]\nname = \"gets\"\nupstream = \"get\"\n",
        drops.addr(),
        good.addr(),
        drops_posts.addr()
    );
    let file = TempConfig::new("dashboard", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let got = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    let posted = within(10, "POST", client::post(proxy.addr, "/post", "x=1"))
        .await
        .unwrap();
    assert_eq!(posted.status, 502);
    proxy.wait_for_log(2).await;
    let text = metrics(proxy.admin.unwrap()).await;
    for family in &queried {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {family}, which /metrics does not have:\n{text}"
        );
    }
}
