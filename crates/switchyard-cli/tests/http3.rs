//! HTTP/3 through the binary: `[server.http3]` and the one-liner's
//! `--http3`, with an HTTP/3 client from the same crates (quinn, h3) and
//! HTTP/1.1 origins: the same engine and failure contract as the other
//! protocols (failover, timeouts, a client going away), Alt-Svc on the TLS
//! listener's answers, and `h3` in the access log and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Running, TempConfig, admin_get};
use switchyard_testkit::h3::H3Client;
use switchyard_testkit::tls::{TestCa, TestCert, client_config, get};
use switchyard_testkit::{Behavior, Origin, Script, refused_addr, within};

/// A proxy serving HTTP on TCP, HTTPS on TCP and HTTP/3 on UDP (all port
/// 0), to `servers` then `backup`.
struct H3Proxy {
    proxy: Running,
    https: SocketAddr,
    h3: SocketAddr,
    _cert: TestCert,
    _config: TempConfig,
}

fn start(
    ca: &TestCa,
    servers: &[SocketAddr],
    backup: &[SocketAddr],
    upstream_extra: &str,
) -> H3Proxy {
    let cert = ca.issue(&["proxy.test"]);
    let list = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 1

[server.tls]
listen = ["127.0.0.1:0"]
cert = "{cert}"
key = "{key}"

[server.http3]
listen = ["127.0.0.1:0"]

[upstreams.app]
servers = [{servers}]
backup = [{backup}]
{upstream_extra}
"#,
        cert = cert.cert_path.display(),
        key = cert.key_path.display(),
        servers = list(servers),
        backup = list(backup),
    );
    let config = TempConfig::new("http3", &text);
    let proxy = Running::start(&["run", "-c", config.path.to_str().unwrap()]);
    H3Proxy {
        https: listening(&proxy, " (https)"),
        h3: listening(&proxy, " (http3)"),
        proxy,
        _cert: cert,
        _config: config,
    }
}

/// The address of the stderr line `switchyard: listening on ADDR{suffix}`.
fn listening(proxy: &Running, suffix: &str) -> SocketAddr {
    proxy
        .stderr()
        .iter()
        .filter_map(|l| l.strip_prefix("switchyard: listening on "))
        .find_map(|rest| rest.strip_suffix(suffix)?.parse().ok())
        .unwrap_or_else(|| panic!("no listening line ending {suffix:?}: {:?}", proxy.stderr()))
}

async fn client(ca: &TestCa, addr: SocketAddr) -> H3Client {
    within(
        10,
        "HTTP/3 connect",
        H3Client::connect(addr, &client_config(ca, None), "proxy.test"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_get_over_http3_reaches_an_http1_origin_and_is_logged_and_counted_as_h3() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let h3 = start(&ca, &[origin.addr()], &[], "");
    let mut client = client(&ca, h3.h3).await;
    let answer = within(10, "GET", client.get("proxy.test", "/hello?x=1"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
    let seen = &origin.requests()[0];
    assert_eq!(seen.path, "/hello?x=1");
    assert_eq!(seen.headers["host"], "proxy.test");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    let line = h3.proxy.wait_for_log(1).await.remove(0);
    assert!(line.contains(" proto=h3"), "{line}");
    let metrics = admin_get(h3.proxy.admin.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("switchyard_downstream_requests_total{protocol=\"h3\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_10_mb_post_streams_through_http3_to_the_origin() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let h3 = start(&ca, &[origin.addr()], &[], "");
    let mut client = client(&ca, h3.h3).await;
    let body: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let digest = switchyard_testkit::digest(&body);
    let request = http::Request::post("https://proxy.test/upload")
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let answer = within(30, "10 MB POST", client.send(request, Bytes::from(body)))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let seen = &origin.requests()[0];
    assert_eq!(seen.body_len, 10 * 1024 * 1024);
    assert!(seen.body_complete);
    assert_eq!(seen.digest, digest);
}

#[tokio::test]
async fn over_http3_a_refused_primary_fails_over_to_the_backup() {
    let ca = TestCa::new("h3 CA");
    let backup = Origin::start("backup", Script::always(Behavior::ok())).await;
    let h3 = start(&ca, &[refused_addr().await], &[backup.addr()], "");
    let mut client = client(&ca, h3.h3).await;
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "backup");
    let line = h3.proxy.wait_for_log(1).await.remove(0);
    assert!(line.contains("connect-refused -> retry"), "{line}");
}

#[tokio::test]
async fn over_http3_a_response_timeout_gives_504() {
    let ca = TestCa::new("h3 CA");
    let slow = Behavior::ok().after(Duration::from_secs(5));
    let origin = Origin::start("slow", Script::always(slow)).await;
    let h3 = start(
        &ca,
        &[origin.addr()],
        &[],
        "response_timeout = \"300ms\"\nretry = { max_attempts = 1 }",
    );
    let mut client = client(&ca, h3.h3).await;
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 504);
    assert!(
        answer.headers["proxy-status"]
            .to_str()
            .unwrap()
            .contains("timeout")
    );
}

#[tokio::test]
async fn an_http3_client_that_goes_away_mid_response_cancels_the_upstream_request() {
    let ca = TestCa::new("h3 CA");
    // A head promising 10 MB, 64 KiB of it, then nothing: the upstream
    // connection stays open until the proxy closes it.
    let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 10485760\r\n\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
    let origin = Origin::start(
        "stalls",
        Script::always(Behavior::RawKeepOpen {
            bytes: Bytes::from(bytes),
        }),
    )
    .await;
    let h3 = start(&ca, &[origin.addr()], &[], "");
    let mut client = client(&ca, h3.h3).await;
    let request = http::Request::get("https://proxy.test/big")
        .body(())
        .unwrap();
    let mut stream = client.start(request).await.unwrap();
    stream.finish().await.unwrap();
    let head = within(10, "the head", stream.recv_response())
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    within(10, "some body", stream.recv_data())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(origin.stats().ended, 0, "the upstream connection is open");

    client.abandon();
    within(10, "the upstream connection closed", async {
        while origin.stats().ended == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let line = h3.proxy.wait_for_log(1).await.remove(0);
    assert!(line.contains(" proto=h3"), "{line}");
}

#[tokio::test]
async fn the_tls_listener_advertises_http3_and_the_cleartext_one_does_not() {
    let ca = TestCa::new("h3 CA");
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let h3 = start(&ca, &[origin.addr()], &[], "");
    let over_tls = within(
        10,
        "GET over TLS",
        get(h3.https, &client_config(&ca, None), "proxy.test", "/"),
    )
    .await
    .unwrap();
    assert_eq!(over_tls.status, 200);
    assert_eq!(
        over_tls.headers["alt-svc"],
        format!("h3=\":{}\"; ma=86400", h3.h3.port()).as_str()
    );
    let cleartext = common::get_with(h3.proxy.addr, "/", &[]).await;
    assert_eq!(cleartext.status, 200);
    assert!(!cleartext.headers.contains_key("alt-svc"));
    // Nor does HTTP/3 itself.
    let mut client = client(&ca, h3.h3).await;
    let over_h3 = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert!(!over_h3.headers.contains_key("alt-svc"));
}

#[tokio::test]
async fn the_one_liner_serves_http3_beside_https() {
    let ca = TestCa::new("h3 CA");
    let cert = ca.issue(&["proxy.test"]);
    let origin = Origin::start("one-liner", Script::always(Behavior::ok())).await;
    let to = origin.addr().to_string();
    let proxy = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.cert_path.to_str().unwrap(),
        "--tls-key",
        cert.key_path.to_str().unwrap(),
        "--http3",
        "--to",
        &to,
    ]);
    let h3 = listening(&proxy, " (http3)");
    let mut client = client(&ca, h3).await;
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.body, "one-liner");
    // Without HTTPS there is nothing to serve HTTP/3 with.
    let refused =
        common::run_refused(&["proxy", "--listen", "127.0.0.1:0", "--http3", "--to", &to]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--http3 needs HTTPS"));
}

#[test]
fn check_refuses_http3_settings_that_cannot_work() {
    let base = |tls: &str, http3: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{tls}\n[server.http3]\n{http3}\n\n[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n"
        )
    };
    let ca = TestCa::new("h3 CA");
    let cert = ca.issue(&["proxy.test"]);
    let tls = format!(
        "[server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.cert_path.display(),
        cert.key_path.display()
    );
    for (tls, http3, key, why) in [
        (
            "",
            "listen = [\"127.0.0.1:0\"]",
            "server.http3",
            "always encrypted",
        ),
        (
            tls.as_str(),
            "listen = []",
            "server.http3.listen",
            "at least one",
        ),
        (
            tls.as_str(),
            "listen = [\"127.0.0.1:0\"]\nmax_udp_payload = 1000",
            "server.http3.max_udp_payload",
            "1200",
        ),
        (
            tls.as_str(),
            "listen = [\"127.0.0.1:0\"]\nmax_concurrent_streams = 0",
            "server.http3.max_concurrent_streams",
            "at least 1",
        ),
        (
            tls.as_str(),
            "listen = [\"127.0.0.1:0\"]\nmax_connections_per_client = 0",
            "server.http3.max_connections_per_client",
            "at least 1",
        ),
        (
            tls.as_str(),
            "listen = [\"127.0.0.1:0\"]\nidle_timeout = \"0s\"",
            "server.http3.idle_timeout",
            "more than 0s",
        ),
    ] {
        let stderr = common::check_refusal("http3-refused", &base(tls, http3));
        assert!(
            stderr.contains(key) && stderr.contains(why),
            "{http3}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_serves_http3_on_the_same_port_from_the_new_process() {
    let ca = TestCa::new("h3 CA");
    let cert = ca.issue(&["proxy.test"]);
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    // A fixed UDP port: the new process binds it again (TCP is handed over).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let file = TempConfig::new("h3-upgrade", "");
    let pid_file = file.path.with_file_name("switchyard.pid");
    let text = format!(
        "[server]\nlisten = []\nworkers = 1\npid_file = \"{pid}\"\n\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{cert}\"\nkey = \"{key}\"\n\n[server.http3]\nlisten = [\"{udp}\"]\n\n[upstreams.app]\nservers = [\"{origin}\"]\n",
        pid = pid_file.display(),
        cert = cert.cert_path.display(),
        key = cert.key_path.display(),
        origin = origin.addr(),
    );
    std::fs::write(&file.path, text).unwrap();
    let mut old = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let mut before = client(&ca, udp).await;
    assert_eq!(
        within(10, "GET", before.get("proxy.test", "/"))
            .await
            .unwrap()
            .status,
        200
    );
    drop(before);

    let pid = pid_file.clone();
    let upgraded = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::BIN)
            .args(["upgrade", "--pid-file"])
            .arg(&pid)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&upgraded.stdout).into_owned()
        + &String::from_utf8_lossy(&upgraded.stderr);
    let new_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _kill_new = scopeguard_kill(new_pid);
    assert!(upgraded.status.success(), "{said}");
    assert_ne!(new_pid, old.pid());
    let status = tokio::task::block_in_place(|| old.wait(10));
    assert!(status.success(), "the old process exited with {status}");

    // Only the new process is left on the port: clients from several
    // source ports (the kernel spreads them over the port's sockets by
    // their addresses) all reach it.
    for _ in 0..6 {
        let mut after = within(
            10,
            "HTTP/3 connect after the upgrade",
            H3Client::connect(udp, &client_config(&ca, None), "proxy.test"),
        )
        .await
        .unwrap();
        let answer = within(10, "GET", after.get("proxy.test", "/"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
    }
}

/// Kills `pid` when dropped (the process that took over).
fn scopeguard_kill(pid: u32) -> impl Drop {
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .arg(self.0.to_string())
                .status();
        }
    }
    Kill(pid)
}

#[tokio::test]
async fn a_reload_gives_http3_handshakes_the_new_certificate() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let origin = Origin::start("origin", Script::always(Behavior::ok())).await;
    let h3 = start(&old_ca, &[origin.addr()], &[], "");
    assert!(
        H3Client::connect(h3.h3, &client_config(&new_ca, None), "proxy.test")
            .await
            .is_err(),
        "the new CA's client trusted the old certificate"
    );
    // Renewed under the same file names, then SIGHUP.
    h3._cert.replace_files_with(&new_ca.issue(&["proxy.test"]));
    h3.proxy.hangup();
    h3.proxy.wait_for_stderr("reloaded").await;
    let mut client = client(&new_ca, h3.h3).await;
    let answer = within(10, "GET", client.get("proxy.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}
