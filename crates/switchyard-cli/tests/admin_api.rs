//! The admin API's write: `PUT /upstreams/NAME/servers/ADDR/state` with
//! `ready`, `drain` or `maint`, who may make it, and what `check` refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use switchyard_testkit::origin::{Behavior, Script};
use switchyard_testkit::{Origin, client, within};

use common::{Running, TempConfig, run};

/// PUT `state` for `server` of group `app`, with `token` if given.
async fn put_state(
    admin: SocketAddr,
    server: SocketAddr,
    state: &str,
    token: Option<&str>,
) -> client::Collected {
    let mut request = http::Request::put(format!("/upstreams/app/servers/{server}/state"))
        .header("host", admin.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(state.to_string())))
        .unwrap();
    within(10, "PUT", client::send(admin, request))
        .await
        .unwrap()
}

/// `/upstreams` as JSON: the state word of `server` in group `app`.
async fn state_of(admin: SocketAddr, server: SocketAddr) -> String {
    let body = common::admin_get(admin, "/upstreams").await;
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    view["upstreams"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["addr"] == server.to_string())
        .map(|s| s["state"].as_str().unwrap().to_string())
        .unwrap()
}

/// Two servers in round robin, no slow start (a server back to ready takes
/// its full share at once), `extra` appended to `[server]`.
fn config(a: SocketAddr, b: SocketAddr, extra: &str, checks: bool) -> String {
    let checks = if checks {
        "\n[upstreams.app.health_check]\nkind = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\n"
    } else {
        ""
    };
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n{extra}\n\n\
         [log]\naccess = false\n\n[upstreams.app]\nservers = [\"{a}\", \"{b}\"]\n\
         connect_hedging = false\n\n[upstreams.app.outlier]\nslow_start = \"0s\"\n{checks}"
    )
}

/// Requests to `/x` (not health checks) `origin` has seen.
fn served(origin: &Origin) -> usize {
    origin.requests().iter().filter(|r| r.path == "/x").count()
}

async fn get_n(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        let reply = within(10, "GET", client::get(addr, "/x")).await.unwrap();
        assert_eq!(reply.status, 200);
    }
}

#[tokio::test]
async fn drain_sends_no_new_requests_and_ready_brings_the_server_back() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("drain", &config(a.addr(), b.addr(), "", false));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    get_n(proxy.addr, 4).await;
    assert!(served(&a) > 0 && served(&b) > 0);

    let reply = put_state(admin, a.addr(), "drain", None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(answer["state"], "drain");
    assert_eq!(answer["was"], "ready");
    assert_eq!(state_of(admin, a.addr()).await, "drain");
    let before = served(&a);
    get_n(proxy.addr, 6).await;
    assert_eq!(served(&a), before, "a drained server gets no new requests");

    let reply = put_state(admin, a.addr(), "ready\n", None).await;
    assert_eq!(reply.status, 200);
    get_n(proxy.addr, 6).await;
    assert!(served(&a) > before, "back in service");
    assert_eq!(state_of(admin, a.addr()).await, "ready");
}

#[tokio::test]
async fn with_every_server_drained_none_gets_a_request() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("all-drained", &config(a.addr(), b.addr(), "", false));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    assert_eq!(put_state(admin, a.addr(), "drain", None).await.status, 200);
    assert_eq!(put_state(admin, b.addr(), "maint", None).await.status, 200);
    let reply = within(10, "GET", client::get(proxy.addr, "/x"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(served(&a) + served(&b), 0, "an operator's choice stands");
    assert_eq!(put_state(admin, b.addr(), "ready", None).await.status, 200);
    get_n(proxy.addr, 2).await;
    assert_eq!(served(&b), 2);
}

#[tokio::test]
async fn a_request_in_flight_on_a_drained_server_finishes() {
    let slow = Script::always(Behavior::ok().after(Duration::from_millis(500)));
    let a = Origin::start("slow", slow).await;
    let b = Origin::healthy("b").await;
    // Round robin starts at the first server.
    let file = TempConfig::new("drain-in-flight", &config(a.addr(), b.addr(), "", false));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    // A POST: were it cut off by the drain, it would not be retried
    // elsewhere, and the client would see 502.
    let in_flight = tokio::spawn(client::post(proxy.addr, "/x", "order=1"));
    a.wait_for_requests(1, 10).await;
    assert_eq!(put_state(admin, a.addr(), "drain", None).await.status, 200);
    let reply = within(10, "the request in flight", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn maint_stops_health_checks_and_drain_keeps_them() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("maint", &config(a.addr(), b.addr(), "", true));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    let checks = |o: &Origin| o.requests().iter().filter(|r| r.path == "/health").count();

    assert_eq!(put_state(admin, a.addr(), "drain", None).await.status, 200);
    let before = checks(&a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(checks(&a) > before, "a drained server is still checked");

    assert_eq!(put_state(admin, a.addr(), "maint", None).await.status, 200);
    // A check already under way may land just after.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = checks(&a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(checks(&a), before, "no checks in maintenance");
    assert_eq!(state_of(admin, a.addr()).await, "maint");
    assert!(checks(&b) > 0);
}

#[tokio::test]
async fn a_bad_state_or_an_unknown_server_is_refused() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("bad-write", &config(a.addr(), b.addr(), "", false));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    assert_eq!(
        put_state(admin, a.addr(), "disabled", None).await.status,
        400
    );
    let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert_eq!(put_state(admin, nobody, "drain", None).await.status, 404);
    assert_eq!(state_of(admin, a.addr()).await, "ready");
}

#[tokio::test]
async fn with_a_token_file_every_write_needs_the_token() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let token = "0123456789abcdef0123456789abcdef";
    let dir = std::env::temp_dir().join(format!("switchyard-admin-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let extra = format!("admin_token_file = {token_file:?}");
    let file = TempConfig::new("token", &config(a.addr(), b.addr(), &extra, false));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();

    let refused = put_state(admin, a.addr(), "drain", None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.headers["www-authenticate"], "Bearer");
    let wrong = put_state(
        admin,
        a.addr(),
        "drain",
        Some("0123456789abcdef0123456789abcdeX"),
    )
    .await;
    assert_eq!(wrong.status, 401);
    proxy.wait_for_stderr("admin write refused").await;
    assert_eq!(state_of(admin, a.addr()).await, "ready");

    assert_eq!(
        put_state(admin, a.addr(), "drain", Some(token))
            .await
            .status,
        200
    );
    assert_eq!(state_of(admin, a.addr()).await, "drain");
    // The scheme's name in any case (RFC 9110).
    let request = http::Request::put(format!("/upstreams/app/servers/{}/state", a.addr()))
        .header("authorization", format!("bearer {token}"))
        .body(Full::new(Bytes::from_static(b"ready")))
        .unwrap();
    let lower = within(10, "PUT", client::send(admin, request))
        .await
        .unwrap();
    assert_eq!(lower.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reload_keeps_a_servers_admin_state() {
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("reload-keeps", &config(a.addr(), b.addr(), "", false));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    assert_eq!(put_state(admin, a.addr(), "maint", None).await.status, 200);
    // The same servers with another setting of the group: a new group.
    let changed = config(a.addr(), b.addr(), "", false).replace(
        "connect_hedging = false",
        "connect_hedging = false\nconnect_timeout = \"2s\"",
    );
    std::fs::write(&file.path, changed).unwrap();
    proxy.hangup();
    proxy.wait_for_stderr("reloaded").await;
    assert_eq!(state_of(admin, a.addr()).await, "maint");
    let before = served(&a);
    get_n(proxy.addr, 4).await;
    assert_eq!(served(&a), before);
}

#[tokio::test]
async fn a_tokenless_write_under_another_host_name_is_refused() {
    // A page served from evil.example that rebinds its name to 127.0.0.1.
    let a = Origin::healthy("a").await;
    let b = Origin::healthy("b").await;
    let file = TempConfig::new("rebinding", &config(a.addr(), b.addr(), "", false));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    let request = http::Request::put(format!("/upstreams/app/servers/{}/state", a.addr()))
        .header("host", format!("evil.example:{}", admin.port()))
        .body(Full::new(Bytes::from_static(b"drain")))
        .unwrap();
    let reply = within(10, "PUT", client::send(admin, request))
        .await
        .unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(state_of(admin, a.addr()).await, "ready");
    let local = put_state(admin, a.addr(), "drain", None).await;
    assert_eq!(local.status, 200);
}

#[test]
fn check_refuses_a_non_loopback_admin_without_a_token_file() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"0.0.0.0:9901\"\n\n\
                [upstreams.app]\nservers = [\"127.0.0.1:9\"]\n";
    let file = TempConfig::new("open-admin", text);
    let out = run(&["check", "-c", file.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("server.admin"), "{message}");
    assert!(message.contains("admin_token_file"), "{message}");
}
