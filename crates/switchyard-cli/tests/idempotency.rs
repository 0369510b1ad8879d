//! `idempotency_key`: a POST carrying the named header is retried after it
//! was sent, because the origin deduplicates by the key; without the key,
//! or with the setting off, a POST is still never sent twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Running, TempConfig};
use http::{Method, Request};
use http_body_util::Full;
use switchyard_testkit::{Behavior, Origin, Script, client, within};

fn post(path: &str, key: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(Method::POST).uri(path);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request
        .body(Full::new(Bytes::from_static(b"amount=10")))
        .unwrap()
}

/// A group whose primary resets every request after reading it, with a
/// healthy backup; `retry` is the group's `[upstreams.app.retry]` table.
async fn proxy_over_a_resetting_server(
    name: &str,
    retry: &str,
) -> (Running, Origin, Origin, TempConfig) {
    let reset = Origin::start("reset", Script::always(Behavior::ResetBeforeHead)).await;
    let good = Origin::healthy("good").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{}\"]\nbackup = [\"{}\"]\n\
         [upstreams.app.retry]\n{retry}\n",
        reset.addr(),
        good.addr()
    );
    let file = TempConfig::new(name, &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    (proxy, reset, good, file)
}

fn posts_with_key(origin: &Origin, key: Option<&str>) -> usize {
    origin
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST)
        .filter(|r| {
            r.headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap())
                == key
        })
        .count()
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried_after_a_reset_and_reaches_each_server_once() {
    let (proxy, reset, good, _file) =
        proxy_over_a_resetting_server("keyed", "idempotency_key = \"Idempotency-Key\"").await;

    let keyed = within(
        10,
        "keyed POST",
        client::send(proxy.addr, post("/pay", Some("\"k-1\""))),
    )
    .await
    .unwrap();
    assert_eq!(keyed.status, 200, "{:?}", proxy.wait_for_log(1).await);
    assert_eq!(keyed.body, "good");
    let bare = within(10, "POST", client::send(proxy.addr, post("/pay", None)))
        .await
        .unwrap();
    assert_eq!(bare.status, 502, "without the key a POST is not sent twice");

    // Each server got the keyed POST once, with the client's key unchanged.
    assert_eq!(posts_with_key(&reset, Some("\"k-1\"")), 1);
    assert_eq!(posts_with_key(&good, Some("\"k-1\"")), 1);
    assert_eq!(posts_with_key(&reset, None), 1);
    assert_eq!(posts_with_key(&good, None), 0);

    let log = proxy.wait_for_log(2).await;
    assert!(
        log[0].contains("attempts=2") && log[0].contains("-> retry [idempotency-key]"),
        "{}",
        log[0]
    );
    assert!(
        log[1].contains("attempts=1") && log[1].contains("[not-idempotent]"),
        "{}",
        log[1]
    );
    let metrics = common::admin_get(proxy.admin.unwrap(), "/metrics").await;
    let retried = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_retries_total{upstream=\"app\""))
        .unwrap_or_default();
    assert!(
        retried.ends_with("note=\"idempotency-key\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_key_counts_only_when_its_header_is_named() {
    // The default config honours no key: a keyed POST is not resent.
    let (proxy, reset, good, _file) = proxy_over_a_resetting_server("unkeyed", "").await;
    let keyed = within(
        10,
        "keyed POST",
        client::send(proxy.addr, post("/pay", Some("\"k-2\""))),
    )
    .await
    .unwrap();
    assert_eq!(keyed.status, 502, "{:?}", proxy.wait_for_log(1).await);
    assert_eq!(posts_with_key(&reset, Some("\"k-2\"")), 1);
    assert_eq!(posts_with_key(&good, Some("\"k-2\"")), 0);
    let log = proxy.wait_for_log(1).await;
    assert!(log[0].contains("[not-idempotent]"), "{}", log[0]);
}
