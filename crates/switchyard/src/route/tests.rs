//! Route matching and rewriting.

use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri};

use super::*;

fn host(text: &str) -> HostPattern {
    HostPattern::parse(text).unwrap()
}

#[test]
fn wildcards_match_subdomains_only() {
    let any = host("*.example.com");
    assert!(any.matches("a.example.com"));
    assert!(any.matches("a.b.example.com"));
    assert!(!any.matches("example.com"));
    assert!(!any.matches("badexample.com"));
    assert!(!any.matches(".example.com"));
    assert!(host("Example.COM").matches("example.com"));
    for bad in ["", "*", "*.", "a.*.com", "exa mple.com", "a..b"] {
        assert_eq!(HostPattern::parse(bad), None, "{bad:?}");
    }
    assert!(host("a.example.com").within(&any));
    assert!(host("*.a.example.com").within(&any));
    assert!(!any.within(&host("*.a.example.com")));
    assert!(!any.within(&host("a.example.com")));
}

#[test]
fn prefixes_are_stripped_or_replaced_keeping_the_query() {
    let rewrite = |to: &str| Rewrite {
        path: PathRewrite::Replace(to.to_string()),
        ..Rewrite::default()
    };
    let uri: Uri = "/api/users?id=3".parse().unwrap();
    assert_eq!(rewrite("/").path_for("/api", &uri).unwrap(), "/users?id=3");
    assert_eq!(
        rewrite("/v2").path_for("/api", &uri).unwrap(),
        "/v2/users?id=3"
    );
    assert_eq!(
        rewrite("/v2/").path_for("/api/", &uri).unwrap(),
        "/v2/users?id=3"
    );
    let bare: Uri = "/api".parse().unwrap();
    assert_eq!(rewrite("/").path_for("/api", &bare).unwrap(), "/");
    assert_eq!(Rewrite::default().path_for("/api", &uri), None);
}

#[test]
fn an_earlier_route_covers_a_later_one_only_when_it_takes_all_its_requests() {
    let route = |host: Option<&str>,
                 prefix: &str,
                 methods: &[Method],
                 headers: &[(&str, Option<&str>)]| RouteMatch {
        host: host.map(|h| HostPattern::parse(h).unwrap()),
        path_prefix: prefix.to_string(),
        methods: methods.to_vec(),
        headers: headers
            .iter()
            .map(|(n, v)| HeaderCondition {
                name: HeaderName::from_bytes(n.as_bytes()).unwrap(),
                value: v.map(|v| HeaderValue::from_str(v).unwrap()),
            })
            .collect(),
    };
    let all = route(None, "/", &[], &[]);
    assert!(all.covers(&route(
        Some("a.test"),
        "/x",
        &[Method::GET],
        &[("x-a", None)]
    )));
    assert!(!route(Some("a.test"), "/", &[], &[]).covers(&all));
    assert!(route(Some("*.test"), "/", &[], &[]).covers(&route(Some("a.test"), "/", &[], &[])));
    assert!(!route(None, "/api", &[], &[]).covers(&route(None, "/", &[], &[])));
    assert!(!route(None, "/", &[Method::GET], &[]).covers(&all));
    assert!(
        route(None, "/", &[Method::GET, Method::POST], &[]).covers(&route(
            None,
            "/",
            &[Method::GET],
            &[]
        ))
    );
    assert!(!route(None, "/", &[], &[("x-a", None)]).covers(&all));
    assert!(route(None, "/", &[], &[("x-a", None)]).covers(&route(
        None,
        "/",
        &[],
        &[("x-a", Some("1"))]
    )));
    assert!(!route(None, "/", &[], &[("x-a", Some("1"))]).covers(&route(
        None,
        "/",
        &[],
        &[("x-a", None)]
    )));
}
