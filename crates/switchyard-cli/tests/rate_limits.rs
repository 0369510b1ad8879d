//! A route's `rate_limit`: over it, 429 with `Retry-After`, the draft's
//! `RateLimit-Policy` and `RateLimit`, `Proxy-Status` and nothing
//! upstream; counted by route and logged; per client (past trusted
//! proxies), per header value or per route; in dry-run mode only counted;
//! bad settings refused by `check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use switchyard_testkit::Origin;

use common::{Running, TempConfig, get_with as get};

fn config(origin: std::net::SocketAddr, routes: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"127.0.0.1\"]\n\
         [upstreams.app]\nservers = [\"{origin}\"]\n{routes}"
    )
}

const ROUTES: &str = r#"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
rate_limit = { requests = 2, per = "1m", key = "client" }

[[routes]]
name = "keyed"
path_prefix = "/keyed"
upstream = "app"
rate_limit = { requests = 60, per = "1h", burst = 1, key = "header:x-api-key" }

[[routes]]
name = "watch"
path_prefix = "/watch"
upstream = "app"
rate_limit = { requests = 1, per = "1h", key = "route", mode = "dry-run" }

[[routes]]
path_prefix = "/"
upstream = "app"
"#;

async fn statuses(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<u16> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(get(addr, path, headers).await.status.as_u16());
    }
    seen
}

#[tokio::test]
async fn over_the_limit_a_client_gets_429_and_nothing_goes_upstream() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("rate-limit", &config(origin.addr(), ROUTES));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    assert_eq!(statuses(proxy.addr, "/api/a", &[], 2).await, [200, 200]);
    let refused = get(proxy.addr, "/api/b", &[]).await;
    assert_eq!(refused.status, 429);
    let h = &refused.headers;
    assert_eq!(
        h["proxy-status"],
        "switchyard; error=http_request_denied; details=\"rate-limited\""
    );
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&wait), "a token every 30 s: {wait}");
    assert_eq!(h["ratelimit-policy"], "\"api\";q=2;w=60");
    assert_eq!(
        h["ratelimit"].to_str().unwrap(),
        format!("\"api\";r=0;t={wait}")
    );
    // Another client, named by the trusted proxy, has its own bucket.
    let other = [("x-forwarded-for", "198.51.100.7")];
    assert_eq!(
        statuses(proxy.addr, "/api/c", &other, 3).await,
        [200, 200, 429]
    );
    // Other routes are not limited.
    assert_eq!(get(proxy.addr, "/open", &[]).await.status, 200);

    let paths: Vec<String> = origin.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/api/a", "/api/a", "/api/c", "/api/c", "/open"]);
    let log = proxy.wait_for_log(7).await;
    assert!(
        log[2].contains(" 429 ") && log[2].contains("refused=rate-limited"),
        "{}",
        log[2]
    );
    assert!(!log[0].contains("refused="), "{}", log[0]);
    let metrics = common::wait_for_metric(
        proxy.admin.unwrap(),
        "switchyard_requests_refused_total{route=\"api\",reason=\"rate-limited\"} 2",
    )
    .await;
    let counted = metrics.lines().any(|line| {
        line.starts_with("switchyard_requests_total{upstream=\"app\",route=\"api\",")
            && line.ends_with("status=\"429\"} 2")
    });
    assert!(counted, "the 429s are counted on their route:\n{metrics}");
}

#[tokio::test]
async fn a_header_key_counts_each_value_and_dry_run_only_counts() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("rate-limit-keys", &config(origin.addr(), ROUTES));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let alice = [("x-api-key", "alice")];
    let bob = [("x-api-key", "bob")];
    assert_eq!(statuses(proxy.addr, "/keyed", &alice, 2).await, [200, 429]);
    assert_eq!(statuses(proxy.addr, "/keyed", &bob, 2).await, [200, 429]);
    // Without the header, the client's address is the key.
    assert_eq!(statuses(proxy.addr, "/keyed", &[], 2).await, [200, 429]);

    // One request an hour for the whole route, in dry-run: all pass.
    assert_eq!(
        statuses(proxy.addr, "/watch", &[], 3).await,
        [200, 200, 200]
    );
    let log = proxy.wait_for_log(9).await;
    assert!(log[8].contains("dry-run=rate-limit:refuse"), "{}", log[8]);
    assert!(!log[6].contains("dry-run="), "{}", log[6]);
    common::wait_for_metric(
        proxy.admin.unwrap(),
        "switchyard_policy_dry_run_total{policy=\"rate-limit\",would=\"refuse\"} 2",
    )
    .await;
}

#[test]
fn check_refuses_limits_that_cannot_work() {
    let origin: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (limit, key, says) in [
        (
            "{ requests = 0, per = \"1s\" }",
            "rate_limit.requests",
            "at least 1",
        ),
        (
            "{ requests = 5, per = \"0s\" }",
            "rate_limit.per",
            "longer than 0s",
        ),
        (
            "{ requests = 5, per = \"1s\", burst = 0 }",
            "rate_limit.burst",
            "at least 1",
        ),
        (
            "{ requests = 5, per = \"1s\", key = \"cookie:x\" }",
            "rate_limit.key",
            "header:NAME",
        ),
        (
            "{ requests = 5, per = \"1s\", key = \"header:bad name\" }",
            "rate_limit.key",
            "not a header name",
        ),
    ] {
        let routes =
            format!("[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\nrate_limit = {limit}\n");
        let stderr = common::check_refusal("rate-limit-bad", &config(origin, &routes));
        assert!(
            stderr.contains(&format!("routes[0].{key}")) && stderr.contains(says),
            "{limit}: {stderr}"
        );
    }
    let stderr = common::check_refusal(
        "rate-limit-keys-zero",
        &config(origin, "").replace("[upstreams", "rate_limit_keys = 0\n[upstreams"),
    );
    assert!(stderr.contains("server.rate_limit_keys"), "{stderr}");
}
