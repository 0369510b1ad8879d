//! Property tests of the request head sent upstream: whatever headers and
//! target a client sends, no hop-by-hop header and nothing `Connection`
//! names goes upstream, every other header does, `Host` is always there
//! (the absolute-form authority first, then the client's, then the peer's),
//! and nothing panics.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use http::{HeaderName, HeaderValue, Request, header};
use proptest::prelude::*;

use super::{head_for_upstream, routed_host};

/// Header names a client might send: hop-by-hop ones, end-to-end ones, and
/// made-up ones that `Connection` may name.
const NAMES: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "host",
    "content-length",
    "accept",
    "x-a",
    "x-b",
    "x-c",
    "authorization",
];

/// Hop-by-hop whatever `Connection` says.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

fn header() -> impl Strategy<Value = (String, String)> {
    let name = prop::sample::select(NAMES.to_vec()).prop_map(str::to_string);
    // Values: printable text, or comma-separated names for `Connection`.
    let value = prop_oneof![
        "[ -~]{0,20}",
        prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..4)
            .prop_map(|names| names.join(", ")),
    ];
    (name, value)
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        "/[a-z0-9/?=&]{0,12}".prop_map(|p| p),
        ("[a-z]{1,8}\\.test", "/[a-z0-9]{0,8}").prop_map(|(h, p)| format!("http://{h}{p}")),
        ("[a-z]{1,8}\\.test", 1u16..65535, "/[a-z]{0,4}")
            .prop_map(|(h, port, p)| format!("http://{h}:{port}{p}")),
    ]
}

proptest! {
    #[test]
    fn the_upstream_head_keeps_end_to_end_headers_only(
        headers in prop::collection::vec(header(), 0..12),
        target in target(),
    ) {
        let mut request = Request::builder().method("GET").uri(target.as_str());
        for (name, value) in &headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                request = request.header(name.as_str(), value);
            }
        }
        let Ok(request) = request.body(()) else {
            return Ok(());
        };
        let (downstream, ()) = request.into_parts();
        let peer: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let up = head_for_upstream(&downstream, peer.into(), routed_host(&downstream).as_ref());

        let named: Vec<String> = super::super::headers::connection_tokens(&downstream.headers)
            .map(str::to_ascii_lowercase)
            .collect();
        for name in HOP_BY_HOP {
            // A chunked body stays chunked: the one hop-by-hop header set anew.
            if name == "transfer-encoding" && downstream.headers.contains_key(name) {
                prop_assert_eq!(up.headers.get(name).unwrap(), "chunked");
                prop_assert!(!up.headers.contains_key(header::CONTENT_LENGTH));
                continue;
            }
            prop_assert!(!up.headers.contains_key(name), "{} went upstream", name);
        }
        for (name, _) in downstream.headers.iter() {
            let protected = name == header::HOST || name == header::CONTENT_LENGTH;
            if HOP_BY_HOP.contains(&name.as_str()) || protected {
                continue;
            }
            let went = up.headers.contains_key(name);
            prop_assert_eq!(went, !named.contains(&name.as_str().to_string()), "{}", name);
        }
        // Host: the absolute-form authority, else the client's, else the peer's.
        let host = up.headers.get(header::HOST).unwrap().to_str().unwrap().to_string();
        let expected = match downstream.uri.authority() {
            Some(authority) => authority.to_string(),
            None => match downstream.headers.get(header::HOST) {
                Some(client) => client.to_str().unwrap_or_default().to_string(),
                None => peer.to_string(),
            },
        };
        prop_assert_eq!(host, expected);
        // Origin form, never the absolute form, goes upstream.
        prop_assert!(up.uri.authority().is_none());
        prop_assert!(up.uri.path().starts_with('/'));
        prop_assert_eq!(up.version, http::Version::HTTP_11);
        let _ = HeaderName::from_static("x-a");
    }
}
