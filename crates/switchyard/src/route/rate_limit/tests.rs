use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::{RateLimit, RateLimitBuckets, RateLimitKey};

fn limit(requests: u32, per: Duration, burst: u32, key: RateLimitKey) -> RateLimit {
    let buckets = Arc::new(RateLimitBuckets::new(1000));
    RateLimit::new(requests, per, burst, key, "api", buckets)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn passed(limit: &RateLimit, client: &str, headers: &HeaderMap, n: usize) -> usize {
    (0..n)
        .filter(|_| limit.check(ip(client), headers).is_none())
        .count()
}

#[test]
fn a_client_gets_its_burst_then_waits_for_tokens() {
    let hour = Duration::from_secs(3600);
    let limit = limit(60, hour, 5, RateLimitKey::Client);
    let none = HeaderMap::new();
    assert_eq!(passed(&limit, "10.0.0.1", &none, 20), 5);
    // Another client has its own bucket.
    assert_eq!(passed(&limit, "10.0.0.2", &none, 20), 5);
    // One token comes back a minute (60 an hour): the wait says so.
    let refused = limit.check(ip("10.0.0.1"), &none).unwrap();
    assert!((59..=60).contains(&refused.retry_after_secs()));
}

#[test]
fn tokens_come_back_at_the_rate() {
    let limit = limit(10, Duration::from_secs(1), 1, RateLimitKey::Route);
    let none = HeaderMap::new();
    assert!(limit.check(ip("10.0.0.1"), &none).is_none());
    assert!(limit.check(ip("10.0.0.9"), &none).is_some(), "one bucket");
    std::thread::sleep(Duration::from_millis(150));
    assert!(limit.check(ip("10.0.0.1"), &none).is_none());
}

#[test]
fn a_header_key_counts_by_value_and_falls_back_to_the_client() {
    let name = http::header::HeaderName::from_static("x-api-key");
    let limit = limit(1, Duration::from_secs(60), 2, RateLimitKey::Header(name));
    let mut alice = HeaderMap::new();
    alice.insert("x-api-key", "alice".parse().unwrap());
    let mut bob = HeaderMap::new();
    bob.insert("x-api-key", "bob".parse().unwrap());
    assert_eq!(passed(&limit, "10.0.0.1", &alice, 5), 2);
    assert_eq!(passed(&limit, "10.0.0.1", &bob, 5), 2);
    assert_eq!(passed(&limit, "10.0.0.1", &HeaderMap::new(), 5), 2);
    assert_eq!(passed(&limit, "10.0.0.2", &HeaderMap::new(), 5), 2);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let mut limit = limit(1, Duration::from_secs(60), 1, RateLimitKey::Client);
    limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let from = |client: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", client.parse().unwrap());
        headers
    };
    assert_eq!(passed(&limit, "127.0.0.1", &from("10.1.1.1"), 3), 1);
    assert_eq!(passed(&limit, "127.0.0.1", &from("10.1.1.2"), 3), 1);
    // An untrusted peer's header is not believed: it is counted as itself.
    assert_eq!(passed(&limit, "10.9.9.9", &from("10.1.1.3"), 3), 1);
    assert_eq!(passed(&limit, "10.9.9.9", &from("10.1.1.4"), 3), 0);
}

#[test]
fn the_refusal_carries_the_drafts_fields() {
    let limit = limit(100, Duration::from_secs(60), 1, RateLimitKey::Route);
    let none = HeaderMap::new();
    assert!(limit.check(ip("10.0.0.1"), &none).is_none());
    let refused = limit.check(ip("10.0.0.1"), &none).unwrap();
    let answer = limit.answer(refused);
    assert_eq!(answer.status(), 429);
    let h = answer.headers();
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["ratelimit-policy"], "\"api\";q=100;w=60");
    assert_eq!(h["ratelimit"], "\"api\";r=0;t=1");
    assert_eq!(
        h["proxy-status"],
        "switchyard; error=http_request_denied; details=\"rate-limited\""
    );
    // A window under a second is advertised per second.
    let fast = super::policy_header("x", 5, Duration::from_millis(100));
    assert_eq!(fast, "\"x\";q=50;w=1");
}

#[test]
fn an_ipv6_client_is_counted_by_its_64_network() {
    let limit = limit(1, Duration::from_secs(60), 1, RateLimitKey::Client);
    let none = HeaderMap::new();
    assert_eq!(passed(&limit, "2001:db8:0:1::1", &none, 1), 1);
    assert_eq!(
        passed(&limit, "2001:db8:0:1::2", &none, 1),
        0,
        "the same /64"
    );
    assert_eq!(
        passed(&limit, "2001:db8:0:2::1", &none, 1),
        1,
        "another /64"
    );
    // An IPv4 client seen as IPv4-mapped IPv6 is the IPv4 client.
    assert_eq!(passed(&limit, "10.0.0.1", &none, 1), 1);
    assert_eq!(passed(&limit, "::ffff:10.0.0.1", &none, 1), 0);
}
