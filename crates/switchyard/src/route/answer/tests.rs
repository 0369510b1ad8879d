use http::Request;

use super::{HttpsRedirect, Redirect, request_host};
use crate::proxy::RequestHeader;

fn head(target: &str, host: Option<&str>) -> RequestHeader {
    let mut request = Request::get(target);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    request.body(()).unwrap().into_parts().0
}

fn location(redirect: &Redirect, head: &RequestHeader, tls: bool) -> String {
    let response = redirect.response(head, tls);
    assert_eq!(response.status(), redirect.status);
    response.headers()["location"].to_str().unwrap().to_string()
}

#[test]
fn templates_fill_in_the_scheme_host_and_path() {
    let all = Redirect::new("{scheme}://{host}/v2{path}", 301).unwrap();
    let h = head("/a/b?q=1", Some("Example.com:8080"));
    assert_eq!(location(&all, &h, false), "http://Example.com/v2/a/b?q=1");
    assert_eq!(location(&all, &h, true), "https://Example.com/v2/a/b?q=1");
    let uri = Redirect::new("https://new.example{uri}", 302).unwrap();
    assert_eq!(location(&uri, &h, false), "https://new.example/a/b?q=1");
    let fixed = Redirect::new("https://example.org/", 307).unwrap();
    assert_eq!(location(&fixed, &h, false), "https://example.org/");
}

#[test]
fn bad_templates_and_statuses_are_refused() {
    for (to, status, says) in [
        ("/x", 200, "not a redirect"),
        ("/x{nope}", 301, "unknown {nope}"),
        ("/x{path", 301, "without its }"),
        ("", 301, "empty"),
        ("/x\ny", 301, "Location header cannot"),
    ] {
        let error = Redirect::new(to, status).unwrap_err();
        assert!(error.contains(says), "{to:?}: {error}");
    }
}

#[test]
fn a_path_cannot_turn_a_relative_redirect_into_another_host() {
    let relative = Redirect::new("{path}", 308).unwrap();
    let h = head("//evil.example/x", Some("app"));
    assert_eq!(location(&relative, &h, false), "/evil.example/x");
}

#[test]
fn hosts_lose_their_port_and_odd_ones_are_refused() {
    assert_eq!(request_host(&head("/", Some("[::1]:8443"))), Some("[::1]"));
    assert_eq!(request_host(&head("/", Some("[::1]"))), Some("[::1]"));
    assert_eq!(
        request_host(&head("/", Some("a.example"))),
        Some("a.example")
    );
    assert_eq!(
        request_host(&head("http://b.example:81/", None)),
        Some("b.example")
    );
    assert_eq!(request_host(&head("/", Some("a.example/evil"))), None);
    assert_eq!(request_host(&head("/", None)), None);
    let needs_host = Redirect::new("https://{host}/", 308).unwrap();
    assert_eq!(needs_host.response(&head("/", None), false).status(), 400);
}

#[test]
fn https_redirect_keeps_a_port_that_is_not_443_and_skips_exceptions() {
    let mut redirect = HttpsRedirect {
        port: 8443,
        except: vec!["/.well-known/acme-challenge/".to_string()],
    };
    let response = redirect
        .response(&head("/a?b", Some("app.example:8080")))
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://app.example:8443/a?b"
    );
    let acme = head("/.well-known/acme-challenge/token", Some("app.example"));
    assert!(redirect.response(&acme).is_none());
    redirect.port = 443;
    let response = redirect.response(&head("/", Some("app.example"))).unwrap();
    assert_eq!(response.headers()["location"], "https://app.example/");
}
