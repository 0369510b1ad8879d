//! Why, by request ID: the admin listener's `GET /requests/ID` and
//! `switchyard why ID`, from the request ID a client or origin saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{Running, TempConfig, run};
use switchyard_testkit::{Origin, client, refused_addr, within};

/// `switchyard why ARGS... --admin ADMIN`: exit code, stdout, stderr.
fn why(admin: SocketAddr, args: &[&str]) -> (Option<i32>, String, String) {
    let admin = admin.to_string();
    let mut argv = vec!["why"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--admin", &admin]);
    let out = run(&argv);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A proxy in front of a refused server and a healthy one (round robin, one
/// worker, no connect hedging), keeping `recent` and `failed` stories.
async fn proxy(
    name: &str,
    recent: usize,
    failed: usize,
) -> (Running, TempConfig, Origin, SocketAddr) {
    let origin = Origin::healthy("origin").await;
    let dead = refused_addr().await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\
         keep_traces = {recent}\nkeep_failed_traces = {failed}\n\n[log]\naccess = false\n\n\
         [upstreams.app]\nservers = [\"{dead}\", \"{}\"]\nconnect_hedging = false\n",
        origin.addr()
    );
    let file = TempConfig::new(name, &text);
    let running = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    (running, file, origin, dead)
}

/// GET `/path`: the request ID the client got back.
async fn get_id(addr: SocketAddr, path: &str) -> String {
    let reply = within(10, "GET", client::get(addr, path)).await.unwrap();
    assert_eq!(reply.status, 200);
    reply.headers["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn why_tells_a_failed_over_requests_story_from_its_id() {
    let (proxy, _file, origin, dead) = proxy("story", 100, 100).await;
    let admin = proxy.admin.unwrap();
    // Round robin starts at the refused server: the first request fails over.
    let id = get_id(proxy.addr, "/orders?page=2").await;
    // The origin saw the same ID the client got.
    assert_eq!(origin.requests()[0].headers["x-request-id"], id.as_str());

    let (code, out, err) = why(admin, &[&id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("GET /orders?page=2 -> 200"), "{out}");
    assert!(out.contains("2 attempt(s)"), "{out}");
    assert!(
        out.contains(&format!("{dead} connect-refused -> retry")),
        "{out}"
    );
    assert!(out.contains(&format!("{} 200", origin.addr())), "{out}");

    let (code, json, _) = why(admin, &[&id, "--json"]);
    assert_eq!(code, Some(0));
    let story: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(story["request_id"], id.as_str());
    assert_eq!(story["attempts"][0]["error"], "connect-refused");
    assert_eq!(story["attempts"][0]["decision"], "retry");
    assert_eq!(story["attempts"][1]["status"], 200);
}

#[tokio::test]
async fn an_unknown_id_is_a_clear_error() {
    let (proxy, _file, _origin, _dead) = proxy("unknown", 100, 100).await;
    let (code, out, err) = why(proxy.admin.unwrap(), &["no-such-id"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("no request \"no-such-id\" is kept"), "{err}");
    assert!(err.contains("keep_traces"), "{err}");
}

#[tokio::test]
async fn a_retried_request_is_kept_after_newer_ordinary_ones_pushed_it_out() {
    // /first fails over from a refused server; everything else goes to
    // the healthy origin alone, in one attempt.
    let origin = Origin::healthy("origin").await;
    let dead = refused_addr().await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\
         keep_traces = 2\nkeep_failed_traces = 5\n\n[log]\naccess = false\n\n\
         [upstreams.flaky]\nservers = [\"{dead}\", \"{0}\"]\nconnect_hedging = false\n\n\
         [upstreams.ok]\nservers = [\"{0}\"]\n\n\
         [[routes]]\npath_prefix = \"/first\"\nupstream = \"flaky\"\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"ok\"\n",
        origin.addr()
    );
    let file = TempConfig::new("rings", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    let retried = get_id(proxy.addr, "/first").await;
    let mut plain = Vec::new();
    for n in 0..5 {
        plain.push(get_id(proxy.addr, &format!("/plain/{n}")).await);
    }
    let (code, out, _) = why(admin, &[&retried]);
    assert_eq!(code, Some(0));
    assert!(out.contains("GET /first"), "{out}");
    assert!(out.contains("2 attempt(s)"), "{out}");
    let (code, out, _) = why(admin, &[&plain[4]]);
    assert_eq!(code, Some(0));
    assert!(out.contains("GET /plain/4"), "{out}");
    let (code, _, err) = why(admin, &[&plain[2]]);
    assert_eq!(
        code,
        Some(1),
        "only the last 2 ordinary requests are kept: {err}"
    );
}

#[tokio::test]
async fn the_admin_listener_serves_a_story_as_json() {
    let (proxy, _file, _origin, _dead) = proxy("admin-json", 100, 100).await;
    let admin = proxy.admin.unwrap();
    let id = get_id(proxy.addr, "/").await;
    let reply = within(10, "admin", client::get(admin, &format!("/requests/{id}")))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let story: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(story["status"], 200);
    assert_eq!(story["story"].as_array().unwrap().len(), 2);
    let missing = within(10, "admin", client::get(admin, "/requests/nope"))
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_trusted_proxys_request_id_with_reserved_characters_is_found() {
    use bytes::Bytes;
    use http_body_util::Full;
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\
         trusted_proxies = [\"127.0.0.1\"]\n\n[upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("odd-id", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    // A request ID from the proxy in front: kept as it came.
    let id = "edge/42?a=1#b%20";
    let request = http::Request::get("/")
        .header("host", "app")
        .header("x-request-id", id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = within(10, "GET", client::send(proxy.addr, request))
        .await
        .unwrap();
    assert_eq!(reply.headers["x-request-id"], id);
    let (code, out, err) = why(proxy.admin.unwrap(), &[id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("request ID {id}")), "{out}");
}
