//! Paths are normalized before routing, and the normalized path is the one
//! the upstream gets: dot segments removed, unreserved escapes decoded,
//! encoded slashes, climbs above the root and NUL refused with 400.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestProxy, quick, start, start_with};
use switchyard::ServerOptions;
use switchyard::path::{EscapedSlashes, PathRules};
use switchyard_testkit::origin::Origin;
use switchyard_testkit::{client, within};

/// Send `GET target` and return the response text.
async fn get(addr: std::net::SocketAddr, target: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    within(5, "a request", client::raw(addr, request.as_bytes(), 3))
        .await
        .text()
}

#[tokio::test]
async fn the_upstream_gets_the_normalized_path_and_the_query_as_it_came() {
    let origin = Origin::healthy("origin").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    let cases = [
        ("/public/../admin?x=/../%2e%2e", "/admin?x=/../%2e%2e"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/./a/b/..", "/public/a/"),
        ("/%41b%63", "/Abc"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a//b", "/a//b"),
    ];
    for (sent, _) in cases {
        let answer = get(running.addr, sent).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{sent}: {answer}");
    }
    let seen: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    let expected: Vec<&str> = cases.iter().map(|(_, up)| *up).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn climbing_above_the_root_nul_and_encoded_slashes_get_400() {
    let origin = Origin::healthy("origin").await;
    let running = start(TestProxy::new(&[origin.addr()]).options(quick())).await;
    for sent in [
        "/public/..%2fadmin",
        "/public/..%5Cadmin",
        "/public\\..\\admin",
        "/..",
        "/a/../../etc/passwd",
        "/%2e%2e/x",
        "/a%00b",
        "/a%zz",
    ] {
        let answer = get(running.addr, sent).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{sent}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("proxy-status: switchyard; error=http_request_error"),
            "{sent}: {answer}"
        );
    }
    assert_eq!(origin.stats().requests, 0, "a refused path went upstream");
}

#[tokio::test]
async fn merged_slashes_and_kept_or_decoded_escaped_slashes_when_configured() {
    let origin = Origin::healthy("origin").await;
    let options = |merge_slashes, escaped_slashes| ServerOptions {
        paths: PathRules {
            normalize: true,
            merge_slashes,
            escaped_slashes,
        },
        ..ServerOptions::default()
    };
    let proxy = || TestProxy::new(&[origin.addr()]).options(quick());
    let merging = start_with(proxy(), options(true, EscapedSlashes::Reject)).await;
    assert!(
        get(merging.addr, "//a///b/../c")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let keeping = start_with(proxy(), options(false, EscapedSlashes::Keep)).await;
    assert!(
        get(keeping.addr, "/a/..%2fb")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let decoding = start_with(proxy(), options(false, EscapedSlashes::Decode)).await;
    assert!(
        get(decoding.addr, "/public/..%2fadmin")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let seen: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(seen, ["/a/c", "/a/..%2Fb", "/admin"]);
}
