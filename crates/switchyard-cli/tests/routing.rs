//! Routes in the binary: wildcard hosts, methods and headers choose the
//! group; the path, `Host` and headers are rewritten on the way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, TempConfig};
use switchyard_testkit::{Origin, client, within};

#[tokio::test]
async fn routes_match_on_wildcard_host_method_and_header_and_rewrite_what_they_forward() {
    let beta = Origin::healthy("beta").await;
    let api = Origin::healthy("api").await;
    let web = Origin::healthy("web").await;
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.beta]
servers = ["localhost:{beta_port}"]
[upstreams.api]
servers = ["{api}"]
[upstreams.web]
servers = ["{web}"]

[[routes]]
host = "*.example.test"
path_prefix = "/api"
methods = ["GET"]
headers = [{{ name = "x-beta", value = "1" }}]
upstream = "beta"
strip_prefix = true
host_header = "upstream"
request_headers = {{ set = {{ x-env = "beta" }}, remove = ["x-debug"] }}
response_headers = {{ add = {{ x-served-by = "beta" }}, remove = ["x-origin"] }}

[[routes]]
host = "*.example.test"
path_prefix = "/api"
upstream = "api"
replace_prefix = "/v2"
host_header = "api.internal"

[[routes]]
upstream = "web"
"#,
        beta_port = beta.addr().port(),
        api = api.addr(),
        web = web.addr(),
    );
    let file = TempConfig::new("routing", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let send = |request: &'static str| {
        let addr = proxy.addr;
        async move {
            within(10, request, client::raw(addr, request.as_bytes(), 5))
                .await
                .text()
        }
    };

    // Every condition holds: the beta route, rewritten.
    let answer = send("GET /api/users?id=3 HTTP/1.1\r\nHost: shop.example.test\r\nX-Beta: 1\r\nX-Debug: yes\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("x-served-by: beta"), "{answer}");
    assert!(!lower.contains("x-origin:"), "{answer}");
    let seen = &beta.requests()[0];
    assert_eq!(seen.path, "/users?id=3");
    assert_eq!(
        seen.headers["host"],
        format!("localhost:{}", beta.addr().port())
    );
    assert_eq!(seen.headers["x-env"], "beta");
    assert!(!seen.headers.contains_key("x-debug"));

    // A POST, or no header: the next route, with its own rewrite.
    send("POST /api/users HTTP/1.1\r\nHost: shop.example.test\r\nX-Beta: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    send("GET /api/users HTTP/1.1\r\nHost: a.b.example.test\r\nConnection: close\r\n\r\n").await;
    let seen = api.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v2/users");
    assert_eq!(seen[1].headers["host"], "api.internal");

    // The bare domain is not under the wildcard: the catch-all.
    send("GET /api/users HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n").await;
    let seen = web.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/users");
    assert_eq!(seen[0].headers["host"], "example.test");
    assert_eq!(beta.requests().len(), 1);
}

#[tokio::test]
async fn the_upstream_host_names_the_server_a_hedge_reached() {
    let blackhole = switchyard_testkit::Blackhole::start().await;
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.app]\nservers = [\"{}\", \"{}\"]\nconnect_timeout = \"5s\"\n\n[[routes]]\nupstream = \"app\"\nhost_header = \"upstream\"\n",
        blackhole.addr(),
        origin.addr()
    );
    let file = TempConfig::new("routing-hedge", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    // Round robin: one of the two starts at the blackholed server, and the
    // hedge to the origin carries it.
    for _ in 0..2 {
        let request = b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        let raw = within(4, "a request", client::raw(proxy.addr, request, 3)).await;
        assert!(raw.text().starts_with("HTTP/1.1 200"), "{}", raw.text());
    }
    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.headers["host"], origin.addr().to_string());
    }
    let log = proxy.wait_for_log(2).await;
    assert!(log.iter().any(|l| l.contains("(raced")), "{log:?}");
}

#[tokio::test]
async fn routes_match_the_normalized_path_which_is_the_one_forwarded() {
    let public = Origin::healthy("public").await;
    let admin = Origin::healthy("admin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [upstreams.public]\nservers = [\"{}\"]\n[upstreams.admin]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/public/\"\nupstream = \"public\"\n\
         [[routes]]\nupstream = \"admin\"\n",
        public.addr(),
        admin.addr()
    );
    let file = TempConfig::new("routing-paths", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for target in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2e/admin?q",
    ] {
        let answer = get_text(proxy.addr, target).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{target}: {answer}");
        assert!(
            answer.ends_with("admin"),
            "{target} went to the wrong group: {answer}"
        );
    }
    let answer = get_text(proxy.addr, "/public/..%2fadmin").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        get_text(proxy.addr, "/public/%61pp")
            .await
            .ends_with("public")
    );
    let paths: Vec<String> = admin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/admin", "/admin", "/admin?q"]);
    assert_eq!(public.requests()[0].path, "/public/app");
    assert_eq!(public.requests().len(), 1);
}

#[test]
fn path_settings_are_checked() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\nescaped_slashes = \"sometimes\"\n\
                [upstreams.app]\nservers = [\"127.0.0.1:9\"]\n";
    let file = TempConfig::new("paths-bad", text);
    let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("escaped_slashes"), "{stderr}");
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\nescaped_slashes = \"decode\"\nmerge_slashes = true\nnormalize_path = true\n\
                [upstreams.app]\nservers = [\"127.0.0.1:9\"]\n";
    let file = TempConfig::new("paths-good", text);
    let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_route_may_keep_or_refuse_encoded_slashes_apart_from_the_server() {
    let origin = Origin::healthy("origin").await;
    let addr = origin.addr();
    // The server refuses them; /files/ keeps them.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"{addr}\"]\n\
         [[routes]]\npath_prefix = \"/files/\"\nupstream = \"app\"\nescaped_slashes = \"keep\"\n\
         [[routes]]\nupstream = \"app\"\n"
    );
    let file = TempConfig::new("slashes-route-keeps", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    assert!(
        get_text(proxy.addr, "/files/a%2fb")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        get_text(proxy.addr, "/other/a%2fb")
            .await
            .starts_with("HTTP/1.1 400")
    );
    // The server keeps them; /admin/ refuses them.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nescaped_slashes = \"keep\"\n[upstreams.app]\nservers = [\"{addr}\"]\n\
         [[routes]]\npath_prefix = \"/admin/\"\nupstream = \"app\"\nescaped_slashes = \"reject\"\n\
         [[routes]]\nupstream = \"app\"\n"
    );
    let file = TempConfig::new("slashes-route-refuses", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    assert!(
        get_text(proxy.addr, "/admin/a%5Cb")
            .await
            .starts_with("HTTP/1.1 400")
    );
    assert!(
        get_text(proxy.addr, "/public/a%5cb")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let paths: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/files/a%2Fb", "/public/a%5Cb"]);
    // A route cannot decode them, nor keep what the server decodes.
    for (server, route) in [("reject", "decode"), ("decode", "keep")] {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nescaped_slashes = \"{server}\"\n[upstreams.app]\nservers = [\"{addr}\"]\n\
             [[routes]]\nupstream = \"app\"\nescaped_slashes = \"{route}\"\n"
        );
        let file = TempConfig::new("slashes-route-bad", &text);
        let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("routes[0].escaped_slashes"), "{stderr}");
    }
}

#[tokio::test]
async fn a_prefix_rewrite_that_would_bring_back_a_dot_segment_is_refused() {
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/api\"\nupstream = \"app\"\nreplace_prefix = \"/v2\"\n\
         [[routes]]\npath_prefix = \"/old\"\nupstream = \"app\"\nstrip_prefix = true\n",
        origin.addr()
    );
    let file = TempConfig::new("rewrite-dots", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    // "/api../admin" is already normal, and matches "/api" as text: the
    // rewrite would send "/v2/../admin".
    for target in ["/api../admin", "/api.%2e/admin", "/old../admin"] {
        let answer = get_text(proxy.addr, target).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
        assert!(
            answer.contains("details=\"path-rewrite\""),
            "{target}: {answer}"
        );
    }
    assert!(
        get_text(proxy.addr, "/api/users?id=1")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let paths: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v2/users?id=1"]);
}

/// `GET target` on a new connection (closed after the answer), as text.
async fn get_text(addr: std::net::SocketAddr, target: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    within(5, "a GET", client::raw(addr, request.as_bytes(), 3))
        .await
        .text()
}
