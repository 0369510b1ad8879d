//! What the proxy answers itself: a route's `redirect` and `respond`
//! (nothing upstream), `[server] https_redirect` on cleartext listeners
//! with its exceptions, `[server.error_pages]` in place of the proxy's own
//! error bodies (not for gRPC), and `check` refusing what cannot work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use switchyard_testkit::tls::TestCa;
use switchyard_testkit::{Origin, client, refused_addr};

use common::{Running, TempConfig};

/// `method path` with `Host: app.test:8080` and `headers`.
async fn send(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> client::Collected {
    let mut all = vec![("host", "app.test:8080")];
    all.extend_from_slice(headers);
    common::get_with(addr, path, &all).await
}

const ROUTES: &str = r#"
[[routes]]
path_prefix = "/old"
redirect = { to = "https://{host}/new{path}", status = 301 }

[[routes]]
path_prefix = "/healthz"
respond = { status = 200, body = "ok\n", content_type = "text/plain" }

[[routes]]
path_prefix = "/gone"
respond = { status = 410 }

[[routes]]
path_prefix = "/"
upstream = "app"
"#;

#[tokio::test]
async fn redirect_and_respond_routes_answer_without_the_upstream() {
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"{}\"]\n{ROUTES}",
        origin.addr()
    );
    let file = TempConfig::new("answers", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let moved = send(proxy.addr, "/old/a?b=1", &[]).await;
    assert_eq!(moved.status, 301);
    assert_eq!(moved.headers["location"], "https://app.test/new/old/a?b=1");
    let health = send(proxy.addr, "/healthz", &[]).await;
    assert_eq!(
        (health.status.as_u16(), health.body.as_ref()),
        (200, &b"ok\n"[..])
    );
    assert_eq!(health.headers["content-type"], "text/plain");
    let gone = send(proxy.addr, "/gone", &[]).await;
    assert_eq!(gone.status, 410);
    assert!(gone.body.is_empty());
    assert_eq!(send(proxy.addr, "/else", &[]).await.status, 200);

    let paths: Vec<String> = origin.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/else"], "only the proxied request went upstream");
    let log = proxy.wait_for_log(4).await;
    assert!(
        log[0].contains("\"GET /old/a?b=1\" 301 ") && log[0].contains("upstream=-"),
        "{}",
        log[0]
    );
}

#[tokio::test]
async fn cleartext_requests_are_redirected_to_the_https_listener_but_exceptions() {
    let origin = Origin::healthy("origin").await;
    let ca = TestCa::new("answers CA");
    let site = ca.issue(&["app.test"]);
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttps_redirect = true\n\
         https_redirect_except = [\"/.well-known/acme-challenge/\"]\n\
         [server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        site.cert_path.to_str().unwrap(),
        site.key_path.to_str().unwrap(),
        origin.addr()
    );
    let file = TempConfig::new("https-redirect", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let https_port = proxy
        .stderr()
        .iter()
        .find_map(|line| {
            let addr = line
                .strip_prefix("switchyard: listening on ")?
                .strip_suffix(" (https)")?;
            addr.parse::<std::net::SocketAddr>().ok()
        })
        .unwrap()
        .port();
    assert_ne!(proxy.addr.port(), https_port, "the cleartext listener");

    let moved = send(proxy.addr, "/a/b?c=d", &[]).await;
    assert_eq!(moved.status, 308);
    let expected = format!("https://app.test:{https_port}/a/b?c=d");
    assert_eq!(moved.headers["location"], expected.as_str());
    let challenge = send(proxy.addr, "/.well-known/acme-challenge/token", &[]).await;
    assert_eq!(challenge.status, 200, "an excepted path is served");
    let paths: Vec<String> = origin.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/.well-known/acme-challenge/token"]);
}

#[tokio::test]
async fn error_pages_replace_the_proxys_own_error_bodies_but_not_for_grpc() {
    let dir = std::env::temp_dir().join(format!("switchyard-pages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_gateway = dir.join("502.html");
    std::fs::write(&bad_gateway, "<h1>Back soon</h1>\n").unwrap();
    let other = dir.join("other.txt");
    std::fs::write(&other, "something went wrong\n").unwrap();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[server.error_pages]\n502 = \"{}\"\ndefault = \"{}\"\n\
         [upstreams.down]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/api\"\nupstream = \"down\"\n",
        bad_gateway.to_str().unwrap(),
        other.to_str().unwrap(),
        refused_addr().await
    );
    let file = TempConfig::new("error-pages", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let failed = send(proxy.addr, "/api/x", &[]).await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.body, "<h1>Back soon</h1>\n");
    assert_eq!(failed.headers["content-type"], "text/html; charset=utf-8");
    let status = failed.headers["proxy-status"].to_str().unwrap();
    assert!(status.contains("error=connection_refused"), "{status}");
    // No route: the default page, and its own status.
    let missing = send(proxy.addr, "/nothing", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, "something went wrong\n");
    // A gRPC call's failure is told in its own way, never with a page.
    let grpc = [("content-type", "application/grpc")];
    let failed = send(proxy.addr, "/api/svc/Method", &grpc).await;
    assert!(!failed.body.starts_with(b"<h1>"), "{:?}", failed.body);
    let unrouted = send(proxy.addr, "/svc/Method", &grpc).await;
    assert_eq!(unrouted.status, 404);
    assert_ne!(unrouted.body, "something went wrong\n");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_refuses_answers_that_cannot_work() {
    let group = "[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n";
    for (server, routes, key, says) in [
        (
            "",
            "redirect = { to = \"/x\", status = 200 }",
            "routes[0].redirect",
            "not a redirect",
        ),
        (
            "",
            "redirect = { to = \"/{nope}\" }",
            "routes[0].redirect",
            "unknown {nope}",
        ),
        (
            "",
            "respond = { status = 204, body = \"x\" }",
            "routes[0].respond.body",
            "no body",
        ),
        (
            "",
            "respond = { status = 700 }",
            "routes[0].respond.status",
            "200 to 599",
        ),
        (
            "",
            "upstream = \"app\"\nrespond = { status = 200 }",
            "routes[0].upstream",
            "one of upstream",
        ),
        (
            "",
            "respond = { status = 200 }\nstrip_prefix = true",
            "routes[0].strip_prefix",
            "route with upstream",
        ),
        ("", "path_prefix = \"/\"", "routes[0]", "needs upstream"),
        (
            "https_redirect = true\n",
            "upstream = \"app\"",
            "server.https_redirect",
            "[server.tls]",
        ),
        (
            "[server.error_pages]\n502 = \"/nonexistent/502.html\"\n",
            "upstream = \"app\"",
            "server.error_pages.502",
            "cannot read",
        ),
        (
            "[server.error_pages]\n302 = \"/dev/null\"\n",
            "upstream = \"app\"",
            "server.error_pages.302",
            "not an error status",
        ),
    ] {
        let text =
            format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{server}{group}[[routes]]\n{routes}\n");
        let stderr = common::check_refusal("answers-bad", &text);
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{routes}: {stderr}"
        );
    }
}
