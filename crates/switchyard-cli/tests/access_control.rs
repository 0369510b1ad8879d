//! A route's `allow` and `deny` lists: a refused client gets 403 with
//! `Proxy-Status: ...; error=http_request_denied` and nothing goes
//! upstream; behind a trusted proxy the client is the one
//! `X-Forwarded-For` names; contradictions are refused by `check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use switchyard_testkit::{Origin, client};

use common::{Running, TempConfig};

fn config(origin: std::net::SocketAddr, routes: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [upstreams.app]\nservers = [\"{origin}\"]\n{routes}"
    )
}

const ROUTES: &str = r#"
[[routes]]
path_prefix = "/staff"
upstream = "app"
allow = ["127.0.0.1", "10.0.0.0/8"]

[[routes]]
path_prefix = "/private"
upstream = "app"
deny = ["127.0.0.0/8"]

[[routes]]
path_prefix = "/"
upstream = "app"
"#;

/// `GET path` with `header` (name and value) if given.
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    header: Option<(&str, &str)>,
) -> client::Collected {
    common::get_with(addr, path, header.as_slice()).await
}

/// `X-Forwarded-For: client`.
fn forwarded_for(client: &str) -> Option<(&'static str, &str)> {
    Some(("x-forwarded-for", client))
}

/// `Authorization: value`.
fn authorization(value: &str) -> Option<(&'static str, &str)> {
    Some(("authorization", value))
}

#[tokio::test]
async fn refused_clients_get_403_and_nothing_goes_upstream() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("access", &config(origin.addr(), ROUTES));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    // The connection's own address (the trusted proxy sent no header).
    assert_eq!(get(proxy.addr, "/staff/a", None).await.status, 200);
    let denied = get(proxy.addr, "/private/a", None).await;
    assert_eq!(denied.status, 403);
    let status = denied.headers["proxy-status"].to_str().unwrap();
    assert!(status.contains("error=http_request_denied"), "{status}");
    // Through the trusted proxy, the client it names is judged.
    let named = forwarded_for("198.51.100.7");
    assert_eq!(get(proxy.addr, "/staff/b", named).await.status, 403);
    assert_eq!(get(proxy.addr, "/private/b", named).await.status, 200);
    assert_eq!(
        get(proxy.addr, "/staff/c", forwarded_for("10.1.2.3"))
            .await
            .status,
        200
    );
    assert_eq!(get(proxy.addr, "/open", named).await.status, 200);

    let paths: Vec<String> = origin.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/staff/a", "/private/b", "/staff/c", "/open"]);
}

#[test]
fn an_allow_inside_a_deny_is_refused_by_check() {
    let routes = "[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
                  allow = [\"10.1.0.0/16\"]\ndeny = [\"10.0.0.0/8\"]\n";
    let file = TempConfig::new(
        "access-bad",
        &config("127.0.0.1:9".parse().unwrap(), routes),
    );
    let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("routes[0].allow[0]"), "{said}");
    assert!(said.contains("can never be allowed"), "{said}");
    let garbled = routes.replace("10.1.0.0/16", "ten");
    std::fs::write(&file.path, config("127.0.0.1:9".parse().unwrap(), &garbled)).unwrap();
    let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an address or a range"));
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[tokio::test]
async fn basic_auth_lets_known_users_in_and_keeps_their_credentials_from_upstream() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("basic-auth", "");
    let users = file.path.with_file_name("users.htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&users, format!("# staff\nann:{hash}\n")).unwrap();
    let routes = format!(
        "[[routes]]\npath_prefix = \"/staff\"\nupstream = \"app\"\n\
         basic_auth = {{ realm = \"staff\", users_file = \"{0}\" }}\n\
         [[routes]]\npath_prefix = \"/pass\"\nupstream = \"app\"\n\
         basic_auth = {{ realm = \"pass\", users_file = \"{0}\", forward_credentials = true }}\n",
        users.display()
    );
    std::fs::write(&file.path, config(origin.addr(), &routes)).unwrap();
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let none = get(proxy.addr, "/staff/a", None).await;
    assert_eq!(none.status, 401);
    let challenge = none.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Basic realm=\"staff\""),
        "{challenge}"
    );
    assert!(
        none.headers["proxy-status"]
            .to_str()
            .unwrap()
            .contains("http_request_denied")
    );
    let wrong = get(
        proxy.addr,
        "/staff/b",
        authorization(&basic("ann", "guess")),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let nobody = get(
        proxy.addr,
        "/staff/c",
        authorization(&basic("eve", "s3cret")),
    )
    .await;
    assert_eq!(nobody.status, 401);
    let right = get(
        proxy.addr,
        "/staff/d",
        authorization(&basic("ann", "s3cret")),
    )
    .await;
    assert_eq!(right.status, 200);
    let forwarded = get(
        proxy.addr,
        "/pass/e",
        authorization(&basic("ann", "s3cret")),
    )
    .await;
    assert_eq!(forwarded.status, 200);

    let seen = origin.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/staff/d", "/pass/e"]);
    assert!(
        seen[0].headers.get("authorization").is_none(),
        "not forwarded"
    );
    assert!(
        seen[1].headers.get("authorization").is_some(),
        "forward_credentials"
    );
    let said = proxy.wait_for_stderr("basic authentication failed").await;
    assert!(!proxy.stderr().join("\n").contains("guess"), "{said}");
}

#[test]
fn a_users_file_without_bcrypt_hashes_is_refused_by_check() {
    let file = TempConfig::new("basic-auth-bad", "");
    let users = file.path.with_file_name("users.htpasswd");
    std::fs::write(&users, "ann:$apr1$abcdefgh$0123456789abcdefghijkl\n").unwrap();
    let routes = format!(
        "[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
         basic_auth = {{ realm = \"staff\", users_file = \"{}\" }}\n",
        users.display()
    );
    std::fs::write(&file.path, config("127.0.0.1:9".parse().unwrap(), &routes)).unwrap();
    let out = common::run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("routes[0].basic_auth.users_file"), "{said}");
    assert!(
        said.contains("line 1") && said.contains("htpasswd -B"),
        "{said}"
    );
}
