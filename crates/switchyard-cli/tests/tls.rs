//! HTTPS through the binary: the one-liner's TLS flags, `[server.tls]` and
//! `[upstreams.NAME.tls]` in a config file, certificates reloaded on SIGHUP,
//! and `check` naming a bad certificate file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{Running, TempConfig, run, run_refused};
use switchyard_testkit::tls::{TestCa, TlsOrigin, client_config, get};
use switchyard_testkit::{Origin, within};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn the_https_one_liner_serves_tls_and_reaches_an_https_origin() {
    let ca = TestCa::new("private CA");
    let origin_cert = ca.issue(&["127.0.0.1"]);
    let origin = TlsOrigin::start("origin", &origin_cert, None).await;
    let proxy_cert = ca.issue(&["proxy.test"]);
    let to = format!("https://{}", origin.addr());
    let proxy = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        path(&proxy_cert.cert_path),
        "--tls-key",
        path(&proxy_cert.key_path),
        "--to",
        &to,
        "--upstream-ca",
        path(ca.cert_path()),
    ]);
    let client = client_config(&ca, None);
    let answer = within(
        10,
        "GET over TLS",
        get(proxy.addr, &client, "proxy.test", "/hello"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
    let (_, headers) = &origin.seen().requests[0];
    assert_eq!(headers["x-forwarded-proto"], "https");
    // Verified by its IP address: no SNI is sent for an IP.
    assert_eq!(origin.seen().server_names, [None]);
}

#[test]
fn one_liner_tls_flags_that_cannot_work_are_refused() {
    let out = run_refused(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        "127.0.0.1:9",
        "--upstream-insecure",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
    let out = run_refused(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        "127.0.0.1:9",
        "--tls-cert",
        "a.pem",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn a_config_file_serves_https_and_verifies_the_upstream_by_its_server_name() {
    let ca = TestCa::new("private CA");
    let origin_cert = ca.issue(&["origin.internal"]);
    let origin = TlsOrigin::start("origin", &origin_cert, None).await;
    let site = ca.issue(&["site.test"]);
    let text = format!(
        "[server]\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [upstreams.app]\nservers = [\"https://{}\"]\n[upstreams.app.tls]\nca = \"{}\"\nserver_name = \"origin.internal\"\n",
        path(&site.cert_path),
        path(&site.key_path),
        origin.addr(),
        path(ca.cert_path()),
    );
    let file = TempConfig::new("tls", &text);
    let proxy = Running::start(&["run", "-c", path(&file.path)]);
    let client = client_config(&ca, None);
    let answer = within(10, "GET", get(proxy.addr, &client, "site.test", "/"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        origin.seen().server_names,
        [Some("origin.internal".to_string())]
    );
}

#[tokio::test]
async fn sighup_reloads_certificates_without_dropping_requests() {
    let ca = TestCa::new("private CA");
    let origin = Origin::healthy("origin").await;
    let site = ca.issue(&["site.test", "old.test"]);
    let renewed = ca.issue(&["site.test", "new.test"]);
    let text = format!(
        "[server]\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        path(&site.cert_path),
        path(&site.key_path),
        origin.addr(),
    );
    let file = TempConfig::new("tls-reload", &text);
    let proxy = Running::start(&["run", "-c", path(&file.path)]);
    let client = client_config(&ca, None);
    let addr = proxy.addr;
    assert!(get(addr, &client, "old.test", "/").await.is_ok());

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (stop, ok, failed, client) = (stop.clone(), ok.clone(), failed.clone(), client.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(addr, &client, "site.test", "/").await {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    site.replace_files_with(&renewed);
    proxy.hangup();
    proxy
        .wait_for_stderr("certificate(s) for new TLS handshakes")
        .await;
    // Traffic goes on after the reload.
    let before = ok.load(Ordering::Relaxed);
    switchyard_testkit::eventually(10, "requests after the reload", || {
        ok.load(Ordering::Relaxed) >= before + 3
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert!(get(addr, &client, "new.test", "/").await.is_ok());
    assert!(get(addr, &client, "old.test", "/").await.is_err());
}

#[test]
fn check_names_a_missing_or_expired_certificate() {
    let ca = TestCa::new("private CA");
    let expired = ca.issue_expired(&["site.test"]);
    let config = |cert: &str, key: &str| {
        format!(
            "[server]\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{cert}\"\nkey = \"{key}\"\n\n\
             [upstreams.app]\nservers = [\"127.0.0.1:9\"]\n"
        )
    };
    let missing = TempConfig::new(
        "missing-cert",
        &config("/nonexistent/site.pem", "/nonexistent/site.key"),
    );
    let out = run(&["check", "-c", path(&missing.path)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.tls") && stderr.contains("/nonexistent/site.pem"),
        "{stderr}"
    );

    let old = TempConfig::new(
        "expired-cert",
        &config(path(&expired.cert_path), path(&expired.key_path)),
    );
    let out = run(&["check", "-c", path(&old.path)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expired"), "{stderr}");
}

#[tokio::test]
async fn failed_client_handshakes_are_counted() {
    let ca = TestCa::new("private CA");
    let site = ca.issue(&["site.test"]);
    let origin = Origin::healthy("origin").await;
    let to = origin.addr().to_string();
    let proxy = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        path(&site.cert_path),
        "--tls-key",
        path(&site.key_path),
        "--to",
        &to,
        "--admin",
        "127.0.0.1:0",
    ]);
    // Cleartext HTTP to an HTTPS listener: not a TLS handshake.
    let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    within(
        5,
        "a cleartext request",
        switchyard_testkit::client::raw(proxy.addr, raw, 2),
    )
    .await;
    // The worker thread that failed the handshake may count it a moment
    // after the client saw its connection close.
    let admin = proxy.admin.unwrap();
    within(5, "the failure counted", async {
        loop {
            let metrics = common::admin_get(admin, "/metrics").await;
            if metrics.contains("switchyard_downstream_tls_handshake_failures_total 1") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
