//! Each command of the binary, run as a process: `check`, `run`, `proxy`,
//! `demo`, and the exit code for a bad config (2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, TempConfig, run};
use switchyard_testkit::{Origin, client, refused_addr, within};

fn config_for(origin: std::net::SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nattempt_count_header = true\n\n[upstreams.app]\nservers = [\"{origin}\"]\n"
    )
}

#[test]
fn check_accepts_a_good_config() {
    let file = TempConfig::new(
        "good",
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.a]\nservers = [\"127.0.0.1:9\"]\n",
    );
    let out = run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

#[tokio::test]
async fn the_one_liner_tells_the_upstream_the_clients_address_not_a_spoofed_one() {
    let origin = Origin::healthy("origin").await;
    let to = origin.addr().to_string();
    let proxy = Running::start(&["proxy", "--listen", "127.0.0.1:0", "--to", &to]);
    let request = b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 5)).await;
    assert!(raw.text().starts_with("HTTP/1.1 200"), "{}", raw.text());
    let seen = &origin.requests()[0];
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-host"], "app.test");
    // The request's ID: upstream, in the response, and in the access log.
    let id = seen.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(
        raw.text()
            .to_ascii_lowercase()
            .contains(&format!("x-request-id: {id}")),
        "{}",
        raw.text()
    );
    let log = proxy.wait_for_log(1).await;
    assert!(log[0].contains(&format!(" id={id} ")), "{}", log[0]);
}

#[test]
fn every_example_config_passes_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = run(&["check", "-c", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked.push(path);
    }
    assert!(checked.len() >= 3, "examples found: {checked:?}");
}

#[test]
fn a_bad_config_gives_a_located_error_and_exit_code_2() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.a]\nservers = [\"127.0.0.1:9\"]\nconect_timeout = \"1s\"\n";
    let file = TempConfig::new("bad", text);
    let path = file.path.to_str().unwrap();
    for command in ["check", "run"] {
        let out = run(&[command, "-c", path]);
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "{path}:5:1: upstreams.a.conect_timeout: unknown field `conect_timeout`"
            )),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = run(&["check", "-c", "/nonexistent/switchyard.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[tokio::test]
async fn run_serves_a_config_and_stops_on_sigterm() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("run", &config_for(origin.addr()));
    let mut proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let reply = within(10, "request", client::get(proxy.addr, "/hello"))
        .await
        .unwrap();
    assert_eq!(reply.body, "origin");
    assert_eq!(reply.headers["x-switchyard-attempts"], "1");
    let admin = proxy.admin.expect("admin address announced");
    assert_eq!(common::admin_get(admin, "/healthz").await, "ok\n");
    let config = common::admin_get(admin, "/config").await;
    assert!(
        config.contains("connect_timeout = \"3s\""),
        "effective config with defaults: {config}"
    );
    proxy.terminate();
    assert!(proxy.wait(10).success());
}

#[tokio::test]
async fn the_one_liner_fails_over_from_a_refused_server_to_the_backup() {
    let dead = refused_addr().await;
    let backup = Origin::healthy("backup").await;
    let proxy = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &dead.to_string(),
        "--backup",
        &backup.addr().to_string(),
        "--connect-timeout",
        "500ms",
    ]);
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "backup");
    let log = proxy.wait_for_log(1).await;
    assert!(
        log[0].contains(&format!(
            "{dead} connect-refused -> retry [next-peer]; {} 200 -> done",
            backup.addr()
        )),
        "{}",
        log[0]
    );
}

#[test]
fn the_one_liner_refuses_a_bad_duration() {
    let out = run(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        "127.0.0.1:9",
        "--connect-timeout",
        "fast",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--connect-timeout \"fast\" is not a duration")
    );
}

#[test]
fn the_demo_runs_and_explains_itself() {
    let out = run(&["demo"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("connect-refused -> retry [next-peer]"),
        "{text}"
    );
    assert!(text.contains("200 (raced 127.0.0.1:"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let cart = lines.iter().position(|l| l.contains("GET /cart")).unwrap();
    assert!(lines[cart].contains("1 attempt(s)"), "{text}");
    assert!(
        !lines[cart + 1].contains("raced"),
        "the ejected server is not raced: {text}"
    );
    assert!(
        text.contains("stop (hook-declined) [not-idempotent]"),
        "{text}"
    );
    assert!(
        text.contains("retries not taken      hook-declined [not-idempotent] 1"),
        "{text}"
    );
    let keyed = lines
        .iter()
        .rposition(|l| l.contains("POST /api/orders"))
        .unwrap();
    assert!(lines[keyed].contains("200 in"), "{text}");
    assert!(
        lines[keyed + 1].contains("-> retry [idempotency-key]"),
        "{text}"
    );
}

#[tokio::test]
async fn behind_a_balancer_the_proxy_protocol_names_the_client_in_the_log_and_upstream() {
    let origin = Origin::healthy("origin").await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol = true\n\n[upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("proxy-protocol", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let request = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let raw = within(10, "raw", client::raw(proxy.addr, request, 5)).await;
    assert!(raw.text().starts_with("HTTP/1.1 200"), "{}", raw.text());
    assert_eq!(
        origin.requests()[0].headers["x-forwarded-for"],
        "203.0.113.7"
    );
    let log = proxy.wait_for_log(1).await;
    assert!(log[0].starts_with("203.0.113.7:51234 "), "{}", log[0]);
}

#[tokio::test]
async fn the_one_liner_speaks_http2_with_prior_knowledge() {
    let origin = Origin::healthy("origin").await;
    let to = origin.addr().to_string();
    let proxy = Running::start(&["proxy", "--listen", "127.0.0.1:0", "--to", &to]);
    let h2 = within(
        10,
        "h2c",
        switchyard_testkit::h2::H2Conn::cleartext(proxy.addr),
    )
    .await
    .unwrap();
    let answer = within(10, "GET", h2.send(h2.request(http::Method::GET, "/", "")))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
}

#[tokio::test]
async fn the_one_liner_reaches_an_h2c_upstream() {
    use switchyard_testkit::h2_origin::{H2Behavior, H2Origin};
    let origin = H2Origin::start("h2-origin", H2Behavior::Answer).await;
    let to = format!("h2c://{}", origin.addr());
    // One worker: each worker keeps its own upstream connections.
    let proxy = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &to,
        "--workers",
        "1",
    ]);
    for path in ["/one", "/two"] {
        let answer = within(10, "GET", client::get(proxy.addr, path))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "h2-origin");
    }
    assert_eq!(origin.seen().len(), 2);
    assert_eq!(
        origin
            .counts()
            .connections
            .load(std::sync::atomic::Ordering::Acquire),
        1,
        "both requests on one HTTP/2 connection"
    );
}

#[test]
fn check_refuses_http1_for_h2c_servers() {
    let file = TempConfig::new(
        "h2c-http1",
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.a]\nservers = [\"h2c://127.0.0.1:9\"]\nprotocol = \"http1\"\n",
    );
    let out = run(&["check", "-c", file.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upstreams.a.protocol"), "{stderr}");
}

#[test]
fn the_packaged_config_passes_check() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/switchyard.toml");
    let out = run(&["check", "-c", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_and_the_man_page_are_printed() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("switchyard"), "{shell}: {script}");
        assert!(
            script.contains("why"),
            "{shell}: the subcommands are completed"
        );
    }
    let out = run(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH switchyard 1"),
        "{page}"
    );
    assert!(page.contains("SIGUSR1"), "the signals are in the page");
}
