//! A route's `mirror`: copies (body included) of a share of its requests
//! go to a shadow group with `-shadow` on their `Host`; the client never
//! waits for the shadow, even a blackholed one under load; copies in
//! flight are bounded, and what is not mirrored is counted by why; `check`
//! refuses what cannot work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use switchyard_testkit::{Blackhole, Origin, client, within};

use common::{Running, TempConfig, wait_for_metric};

fn config(primary: SocketAddr, shadow: SocketAddr, mirror: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{primary}\"]\n\
         [upstreams.shadow]\nservers = [\"{shadow}\"]\nconnect_timeout = \"30s\"\nresponse_timeout = \"30s\"\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"app\"\nmirror = {mirror}\n"
    )
}

async fn post(addr: SocketAddr, path: &str, body: &'static str) -> client::Collected {
    let request = http::Request::post(path)
        .header("host", "app.test:8080")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    within(10, "POST", client::send(addr, request))
        .await
        .unwrap()
}

#[tokio::test]
async fn copies_reach_the_shadow_with_their_body_and_a_shadow_host() {
    let primary = Origin::healthy("primary").await;
    let shadow = Origin::healthy("shadow").await;
    let mirror = "{ upstream = \"shadow\", percent = 100, max_body = \"16B\" }";
    let file = TempConfig::new("mirror", &config(primary.addr(), shadow.addr(), mirror));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let reply = post(proxy.addr, "/orders?id=7", "order 7").await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_ref()),
        (200, &b"primary"[..])
    );
    shadow.wait_for_requests(1, 10).await;
    let copy = &shadow.requests()[0];
    assert_eq!(
        (copy.method.as_str(), copy.path.as_str()),
        ("POST", "/orders?id=7")
    );
    assert_eq!(copy.body_len, 7);
    assert_eq!(copy.headers["host"], "app.test-shadow:8080");
    assert_eq!(primary.requests()[0].headers["host"], "app.test:8080");

    // A body over max_body is not copied, and the count says why.
    assert_eq!(
        post(proxy.addr, "/big", "seventeen bytes!!").await.status,
        200
    );
    let admin = proxy.admin.unwrap();
    let line =
        "switchyard_mirror_requests_total{route=\"api\",outcome=\"dropped-body-too-large\"} 1";
    let metrics = wait_for_metric(admin, line).await;
    assert!(metrics.contains("outcome=\"answered\"} 1"), "{metrics}");
    assert_eq!(shadow.requests().len(), 1);
}

#[tokio::test]
async fn a_share_of_requests_is_mirrored() {
    let primary = Origin::healthy("primary").await;
    let shadow = Origin::healthy("shadow").await;
    let mirror = "{ upstream = \"shadow\", percent = 10 }";
    let file = TempConfig::new(
        "mirror-share",
        &config(primary.addr(), shadow.addr(), mirror),
    );
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for _ in 0..200 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    let line = "switchyard_mirror_requests_total{route=\"api\",outcome=\"answered\"} 20";
    wait_for_metric(proxy.admin.unwrap(), line).await;
    assert_eq!(shadow.requests().len(), 20);
    assert_eq!(primary.requests().len(), 200);
}

#[tokio::test]
async fn a_blackholed_shadow_costs_the_client_nothing() {
    let primary = Origin::healthy("primary").await;
    let shadow = Blackhole::start().await;
    let mirror = "{ upstream = \"shadow\", percent = 100, max_in_flight = 4 }";
    let file = TempConfig::new(
        "mirror-blackhole",
        &config(primary.addr(), shadow.addr(), mirror),
    );
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let addr = proxy.addr;
    // Each copy hangs for 30 s connecting: a client that waited for one
    // would not see 200 answers in 10 s.
    within(10, "200 requests beside a blackholed shadow", async move {
        let clients = (0..4).map(|_| {
            tokio::spawn(async move {
                for _ in 0..50 {
                    let reply = client::get(addr, "/").await.unwrap();
                    assert_eq!(reply.status, 200);
                }
            })
        });
        for client in clients.collect::<Vec<_>>() {
            client.await.unwrap();
        }
    })
    .await;
    assert_eq!(primary.requests().len(), 200);
    let admin = proxy.admin.unwrap();
    let line = "switchyard_mirror_requests_total{route=\"api\",outcome=\"dropped-in-flight\"} 196";
    let metrics = wait_for_metric(admin, line).await;
    assert!(
        metrics.contains("switchyard_mirror_in_flight{route=\"api\"} 4"),
        "{metrics}"
    );
}

#[test]
fn check_refuses_mirrors_that_cannot_work() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let other: SocketAddr = "127.0.0.1:10".parse().unwrap();
    for (mirror, key, says) in [
        (
            "{ upstream = \"nope\" }",
            "routes[0].mirror.upstream",
            "no upstream group",
        ),
        (
            "{ upstream = \"app\" }",
            "routes[0].mirror.upstream",
            "own group",
        ),
        (
            "{ upstream = \"shadow\", percent = 0 }",
            "routes[0].mirror.percent",
            "above 0",
        ),
        (
            "{ upstream = \"shadow\", percent = 150 }",
            "routes[0].mirror.percent",
            "at most 100",
        ),
        (
            "{ upstream = \"shadow\", max_in_flight = 0 }",
            "routes[0].mirror.max_in_flight",
            "at least 1",
        ),
        (
            "{ upstream = \"shadow\", max_body = \"0\" }",
            "routes[0].mirror.max_body",
            "at least 1 byte",
        ),
    ] {
        let stderr = common::check_refusal("mirror-bad", &config(addr, other, mirror));
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{mirror}: {stderr}"
        );
    }
}
