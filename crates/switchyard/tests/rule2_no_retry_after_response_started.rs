//! Contract rule 2: once a response byte went downstream nothing is retried,
//! whatever the hooks say, and a late upstream failure aborts the downstream
//! response so that a real client sees an error, never a complete-looking
//! response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{OnFail, TestProxy, start, summary};
use switchyard::policy::retry::StopReason;
use switchyard::{Decision, ErrorKind};
use switchyard_testkit::{Behavior, Origin, Script, client, within};

const RAW_GET: &[u8] = b"GET /file HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

fn split_head(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    (
        String::from_utf8_lossy(&bytes[..end]).to_lowercase(),
        &bytes[end + 4..],
    )
}

#[tokio::test]
async fn a_body_short_of_content_length_reaches_the_client_short() {
    let origin = Origin::start("short", Script::always(Behavior::TruncatedLength)).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;

    let err = within(10, "hyper client", client::get(proxy.addr, "/file")).await;
    assert!(
        err.is_err(),
        "a real client must see the truncation: {err:?}"
    );

    let raw = within(10, "raw client", client::raw(proxy.addr, RAW_GET, 5)).await;
    assert!(raw.closed_by_server);
    let (head, body) = split_head(&raw.bytes);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1000"), "{head}");
    assert!(
        body.len() < 1000,
        "the downstream must stop short, got {} bytes",
        body.len()
    );
}

#[tokio::test]
async fn a_chunked_body_without_its_last_chunk_reaches_the_client_without_it() {
    let origin = Origin::start("chunks", Script::always(Behavior::TruncatedChunked)).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;

    let err = within(10, "hyper client", client::get(proxy.addr, "/file")).await;
    assert!(
        err.is_err(),
        "a real client must see the truncation: {err:?}"
    );

    let raw = within(10, "raw client", client::raw(proxy.addr, RAW_GET, 5)).await;
    assert!(raw.closed_by_server);
    let (head, body) = split_head(&raw.bytes);
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!body.ends_with(b"0\r\n\r\n"), "no final chunk may be sent");
}

#[tokio::test]
async fn a_reset_after_the_head_is_an_error_for_the_client() {
    let origin = Origin::start("reset", Script::always(Behavior::ResetAfterHead)).await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let err = within(10, "hyper client", client::get(proxy.addr, "/file")).await;
    assert!(err.is_err(), "{err:?}");
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::ReadError));
    assert_eq!(
        logged[0].status,
        Some(200),
        "the client already had a 200 head"
    );
}

#[tokio::test]
async fn a_hook_that_sets_retry_after_the_response_started_is_overruled() {
    let origin = Origin::start("short", Script::always(Behavior::TruncatedLength)).await;
    let other = Origin::healthy("other").await;
    let proxy = start(
        TestProxy::new(&[origin.addr(), other.addr()])
            .on_proxy_error(OnFail::Failover)
            .on_connect_fail(OnFail::Failover),
    )
    .await;
    let err = within(10, "hyper client", client::get(proxy.addr, "/file")).await;
    assert!(err.is_err());
    let logged = proxy.logs.wait(1).await;
    let trace = &logged[0].trace;
    assert_eq!(trace.len(), 1, "{trace}");
    assert_eq!(
        trace.last().unwrap().decision,
        Decision::Stop(StopReason::ResponseStarted)
    );
    assert_eq!(summary(trace), ["read-error -> stop (response-started)"]);
    assert_eq!(origin.stats().requests, 1);
    assert_eq!(
        other.stats().requests,
        0,
        "no failover after the head went downstream"
    );
}

#[tokio::test]
async fn a_complete_chunked_response_is_forwarded_whole() {
    let chunks = vec!["alpha-".into(), "beta-".into(), "gamma".into()];
    let origin = Origin::start(
        "chunks",
        Script::always(Behavior::Chunked {
            chunks,
            gap: std::time::Duration::from_millis(5),
        }),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "alpha-beta-gamma");
    let logged = proxy.logs.wait(1).await;
    let record = logged[0].trace.last().unwrap();
    assert_eq!(record.response_body_bytes, 16);
    assert_eq!(record.decision, Decision::Done);
}

#[tokio::test]
async fn an_unframed_upstream_body_is_reframed_so_its_end_is_explicit() {
    let origin = Origin::start(
        "unframed",
        Script::always(Behavior::CloseDelimited {
            body: "until close".into(),
        }),
    )
    .await;
    let proxy = start(TestProxy::new(&[origin.addr()])).await;
    let raw = within(10, "raw client", client::raw(proxy.addr, RAW_GET, 5)).await;
    let (head, body) = split_head(&raw.bytes);
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        body.ends_with(b"0\r\n\r\n"),
        "a clean end is marked by the final chunk"
    );
    let reply = within(10, "hyper client", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "until close");
}
