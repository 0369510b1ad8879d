//! `[upstreams.NAME] sticky`: the first answer sets a cookie with an
//! opaque id of the server; requests carrying it go back to that server
//! (whatever the selection would say) while it is usable, and to another,
//! with a new cookie, when it is not; the cookie never reaches the
//! upstream; `check` refuses a bad cookie name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use switchyard_testkit::{Origin, client, within};

use common::{Running, TempConfig};

fn config(a: SocketAddr, b: SocketAddr, sticky: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"{a}\", \"{b}\"]\nconnect_hedging = false\nsticky = {sticky}\n"
    )
}

const STICKY: &str = "{ cookie = \"sy_srv\", max_age = \"1h\", secure = true, http_only = true }";

async fn get(addr: SocketAddr, cookie: Option<&str>) -> client::Collected {
    let cookie: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    common::get_with(addr, "/", &cookie).await
}

/// The `name=value` of a response's `Set-Cookie`.
fn cookie_of(reply: &client::Collected) -> String {
    let set = reply.headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn a_client_returns_to_its_server_until_it_is_out_of_service() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("sticky", &config(a.addr(), b.addr(), STICKY));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let first = get(proxy.addr, None).await;
    let set = first.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.ends_with("; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"),
        "{set}"
    );
    let cookie = cookie_of(&first);
    let id = cookie.strip_prefix("sy_srv=").unwrap();
    assert_eq!(id.len(), 16, "an opaque id: {cookie}");
    for server in [a.addr(), b.addr()] {
        assert!(
            !set.contains(&server.port().to_string()),
            "{set} names {server}"
        );
    }
    let home = first.body.clone();
    // Round robin would alternate: the cookie keeps the client home, and
    // no new cookie is set while it does.
    let with_others = format!("a=1; {cookie}; b=2");
    for _ in 0..6 {
        let reply = get(proxy.addr, Some(&with_others)).await;
        assert_eq!(reply.body, home);
        assert!(!reply.headers.contains_key("set-cookie"));
    }
    let (home_origin, other) = if home == "a" { (&a, &b) } else { (&b, &a) };
    assert_eq!(home_origin.requests().len(), 7);
    // The upstream never sees the proxy's cookie, and sees the others.
    let seen = &home_origin.requests()[1].headers;
    assert_eq!(seen["cookie"], "a=1; b=2");

    // Out of service: the next request goes elsewhere, with a new cookie.
    let server = home_origin.addr();
    let admin = proxy.admin.unwrap();
    let request = http::Request::put(format!("/upstreams/app/servers/{server}/state"))
        .header("host", admin.to_string())
        .body(Full::new(Bytes::from("maint")))
        .unwrap();
    let put = within(10, "PUT", client::send(admin, request))
        .await
        .unwrap();
    assert_eq!(put.status, 200, "{:?}", put.body);
    let moved = get(proxy.addr, Some(&cookie)).await;
    assert_eq!(moved.body, other.name());
    let new_cookie = cookie_of(&moved);
    assert_ne!(new_cookie, cookie);
    assert_eq!(get(proxy.addr, Some(&new_cookie)).await.body, other.name());
}

#[test]
fn check_refuses_a_bad_sticky_cookie() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let other: SocketAddr = "127.0.0.1:10".parse().unwrap();
    for (sticky, key, says) in [
        (
            "{ cookie = \"a b\" }",
            "upstreams.app.sticky.cookie",
            "not a cookie name",
        ),
        (
            "{ cookie = \"s\", max_age = \"0s\" }",
            "upstreams.app.sticky.max_age",
            "at least 1s",
        ),
    ] {
        let stderr = common::check_refusal("sticky-bad", &config(addr, other, sticky));
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{sticky}: {stderr}"
        );
    }
}
