//! Automatic HTTPS against a real ACME CA: Pebble (Let's Encrypt's test
//! server), validating `tls-alpn-01` and `http-01` against the proxy's own
//! listeners, with names resolved by the test kit's DNS responder. Every
//! certificate is checked by a verified handshake under the root Pebble
//! issued it from.
//!
//! These need the `pebble` program (`apt-get install pebble`); `.ci/run`
//! installs it and runs them with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Running, TempConfig, admin_get, wait_for_metric};
use rustls_pki_types::CertificateDer;
use switchyard_testkit::acme::{
    Pebble, PebbleOptions, TestDns, client_trusting, free_port, served_chain,
};
use switchyard_testkit::{Behavior, Origin, Script};

const NEEDS_PEBBLE: &str = "needs pebble: apt-get install pebble";

/// Pebble with a DNS responder for `names`, validating on two ports
/// reserved for the proxy's listeners.
struct Ca {
    pebble: Pebble,
    dns: TestDns,
    https: SocketAddr,
    http: SocketAddr,
}

impl Ca {
    fn start(names: &[&str], validity: Option<Duration>) -> Ca {
        assert!(Pebble::installed(), "{NEEDS_PEBBLE}");
        let dns = TestDns::start(names);
        let (https, http) = (free_port(), free_port());
        let options = PebbleOptions {
            http_port: http,
            tls_port: https,
            validity,
        };
        let pebble = Pebble::start(&options, &dns);
        Ca {
            pebble,
            dns,
            https: SocketAddr::from(([127, 0, 0, 1], https)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
        }
    }

    /// A config serving HTTPS for `domains` by ACME to `origin`.
    fn config(&self, domains: &[&str], challenge: &str, origin: SocketAddr) -> String {
        let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
        format!(
            r#"[server]
listen = ["{http}"]
admin = "127.0.0.1:0"
workers = 1

[server.tls]
listen = ["{https}"]
acme = {{ domains = [{domains}], email = "ops@switchyard.test", directory = "{directory}", directory_ca = "{ca}", storage = "{storage}", challenge = "{challenge}", retry_after = "1s" }}

[upstreams.app]
servers = ["{origin}"]
"#,
            http = self.http,
            https = self.https,
            domains = domains.join(", "),
            directory = self.pebble.directory(),
            ca = self.pebble.directory_ca().display(),
            storage = self.storage().display(),
        )
    }

    fn storage(&self) -> std::path::PathBuf {
        self.pebble.scratch("acme")
    }
}

/// `switchyard run` on [`Ca::config`] for `domains`, with its origin and
/// config file (kept for as long as the proxy runs).
async fn run_proxy(ca: &Ca, domains: &[&str], challenge: &str) -> (Running, Origin, TempConfig) {
    let origin = Origin::start("from origin", Script::always(Behavior::ok())).await;
    let config = TempConfig::new("acme", &ca.config(domains, challenge, origin.addr()));
    let proxy = Running::start(&["run", "-c", config.path.to_str().unwrap()]);
    (proxy, origin, config)
}

/// The `/certificates` entry of `domain` once `ready` says so (60 s at most).
async fn wait_for_certificate(
    admin: SocketAddr,
    domain: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
    pebble: &Pebble,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = admin_get(admin, "/certificates").await;
        let all: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entry = all["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["domain"] == domain)
            .cloned()
            .unwrap_or_else(|| panic!("{domain} not in {body}"));
        if ready(&entry) {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "{domain} never got there: {body}\npebble said:\n{}",
            pebble.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_valid(entry: &serde_json::Value) -> bool {
    entry["state"] == "valid"
}

/// The leaf certificate served for `name`, verified under Pebble's root.
async fn served_leaf(ca: &Ca, name: &str) -> CertificateDer<'static> {
    let root = ca.pebble.issuing_root().await;
    let chain = served_chain(ca.https, name, &root).await.unwrap();
    chain[0].clone()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
#[ignore = "needs pebble: apt-get install pebble"]
async fn tls_alpn_01_gets_a_certificate_stores_it_privately_and_reports_its_expiry() {
    let domain = "www.switchyard.test";
    let ca = Ca::start(&[domain], None);
    let (proxy, _origin, _config) = run_proxy(&ca, &[domain], "tls-alpn-01").await;
    let admin = proxy.admin.unwrap();
    wait_for_certificate(admin, domain, is_valid, &ca.pebble).await;

    // A verified handshake for the name, and a request through it.
    let root = ca.pebble.issuing_root().await;
    let client = client_trusting(&root);
    let answer = switchyard_testkit::tls::get(ca.https, &client, domain, "/x")
        .await
        .unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_ref()),
        (200, &b"from origin"[..])
    );

    let metrics = wait_for_metric(
        admin,
        "switchyard_tls_certificate_expiry_seconds{domain=\"www.switchyard.test\"}",
    )
    .await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_tls_certificate_expiry_seconds{"))
        .unwrap();
    let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds > 86400.0, "{line}");

    // The account and key are private; the CA's directory has its own folder.
    let dir = std::fs::read_dir(ca.storage())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&ca.storage()), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("account.json")), 0o600);
    assert_eq!(mode(&dir.join(format!("{domain}.key"))), 0o600);
    assert!(dir.join(format!("{domain}.crt")).exists());
}

#[tokio::test]
#[ignore = "needs pebble: apt-get install pebble"]
async fn the_one_liner_gets_a_certificate_by_http_01_serves_http3_and_redirects_cleartext() {
    let domain = "one.switchyard.test";
    let ca = Ca::start(&[domain], None);
    let origin = Origin::start("one-liner origin", Script::always(Behavior::ok())).await;
    let (https, http) = (ca.https.to_string(), ca.http.to_string());
    let (directory, directory_ca) = (
        ca.pebble.directory(),
        ca.pebble.directory_ca().display().to_string(),
    );
    let storage = ca.storage().display().to_string();
    let to = origin.addr().to_string();
    let proxy = Running::start(&[
        "proxy",
        "--domain",
        domain,
        "--listen",
        &https,
        "--http-listen",
        &http,
        "--acme-directory",
        &directory,
        "--acme-ca",
        &directory_ca,
        "--acme-storage",
        &storage,
        "--acme-challenge",
        "http-01",
        "--http3",
        "--to",
        &to,
        "--admin",
        "127.0.0.1:0",
    ]);
    let admin = proxy.admin.unwrap();
    let entry = wait_for_certificate(admin, domain, is_valid, &ca.pebble).await;
    assert_eq!(entry["failures"], 0);

    let root = ca.pebble.issuing_root().await;
    let answer = switchyard_testkit::tls::get(ca.https, &client_trusting(&root), domain, "/a?b")
        .await
        .unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_ref()),
        (200, &b"one-liner origin"[..])
    );

    // HTTP/3 on the same port number (UDP) serves the same certificate.
    let mut h3 =
        switchyard_testkit::h3::H3Client::connect(ca.https, &client_trusting(&root), domain)
            .await
            .unwrap();
    let answer = h3.get(domain, "/h3").await.unwrap();
    assert_eq!(answer.body, "one-liner origin");

    // Cleartext requests are sent to HTTPS; the challenge path answered
    // only while a challenge is pending.
    let redirect = common::get_with(ca.http, "/a?b", &[("host", domain)]).await;
    assert_eq!(redirect.status, 308);
    let location = redirect.headers["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!("https://{domain}:{}/a?b", ca.https.port())
    );
    let stale = common::get_with(
        ca.http,
        "/.well-known/acme-challenge/none",
        &[("host", domain)],
    )
    .await;
    assert_eq!(
        stale.status, 308,
        "no pending challenge: redirected like any path"
    );
}

#[tokio::test]
#[ignore = "needs pebble: apt-get install pebble"]
async fn a_restart_serves_the_stored_certificate_without_asking_the_ca() {
    let domain = "stored.switchyard.test";
    let mut ca = Ca::start(&[domain], None);
    let origin = Origin::start("ok", Script::always(Behavior::ok())).await;
    let config = TempConfig::new(
        "acme-restart",
        &ca.config(&[domain], "tls-alpn-01", origin.addr()),
    );
    let args = ["run", "-c", config.path.to_str().unwrap()];
    let first = Running::start(&args);
    wait_for_certificate(first.admin.unwrap(), domain, is_valid, &ca.pebble).await;
    let root = ca.pebble.issuing_root().await;
    let issued = served_chain(ca.https, domain, &root).await.unwrap();
    drop(first);

    // The CA is down: only the stored certificate can be served.
    ca.pebble.stop();
    let second = Running::start(&args);
    let entry = wait_for_certificate(second.admin.unwrap(), domain, is_valid, &ca.pebble).await;
    assert_eq!(entry["failures"], 0, "{entry}");
    let again = served_chain(ca.https, domain, &root).await.unwrap();
    assert_eq!(
        again[0], issued[0],
        "the same certificate after the restart"
    );
}

#[tokio::test]
#[ignore = "needs pebble: apt-get install pebble"]
async fn renewal_under_traffic_serves_the_new_certificate_with_no_failed_handshake() {
    let domain = "renew.switchyard.test";
    // 30 s certificates: renewal is due 20 s after issuance.
    let ca = Ca::start(&[domain], Some(Duration::from_secs(30)));
    let (proxy, _origin, _config) = run_proxy(&ca, &[domain], "tls-alpn-01").await;
    let admin = proxy.admin.unwrap();
    wait_for_certificate(admin, domain, is_valid, &ca.pebble).await;
    let root = ca.pebble.issuing_root().await;
    let first = served_chain(ca.https, domain, &root).await.unwrap()[0].clone();

    // Clients handshake without pause until a new certificate is served.
    let (handshakes, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let renewed = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (handshakes, failures, renewed) =
            (handshakes.clone(), failures.clone(), renewed.clone());
        let (root, first, addr) = (root.clone(), first.clone(), ca.https);
        clients.push(tokio::spawn(async move {
            while !renewed.load(Ordering::Relaxed) && Instant::now() < deadline {
                match served_chain(addr, domain, &root).await {
                    Ok(chain) => {
                        handshakes.fetch_add(1, Ordering::Relaxed);
                        if chain[0] != first {
                            renewed.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("handshake failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        renewed.load(Ordering::Relaxed),
        "no renewal within 45 s: {}",
        admin_get(admin, "/certificates").await
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed handshakes");
    assert!(handshakes.load(Ordering::Relaxed) > 50);
}

#[tokio::test]
#[ignore = "needs pebble: apt-get install pebble"]
async fn a_ca_down_at_renewal_keeps_the_current_certificate_and_says_why() {
    let domain = "down.switchyard.test";
    // 45 s certificates: renewal is due 30 s after issuance.
    let mut ca = Ca::start(&[domain], Some(Duration::from_secs(45)));
    let (proxy, _origin, _config) = run_proxy(&ca, &[domain], "tls-alpn-01").await;
    let admin = proxy.admin.unwrap();
    wait_for_certificate(admin, domain, is_valid, &ca.pebble).await;
    let root = ca.pebble.issuing_root().await;
    let first = served_chain(ca.https, domain, &root).await.unwrap()[0].clone();
    ca.pebble.stop();

    let failing =
        wait_for_certificate(admin, domain, |e| e["state"] == "failing", &ca.pebble).await;
    let why = failing["last_error"].as_str().unwrap();
    assert!(why.contains("Connection refused"), "{why}");
    assert!(failing["failures"].as_u64().unwrap() >= 1);
    // Still served, still valid.
    let served = served_chain(ca.https, domain, &root).await.unwrap();
    assert_eq!(served[0], first);
    let metrics = admin_get(admin, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "switchyard_tls_certificate_renewal_failures{domain=\"down.switchyard.test\"}"
        ) && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        proxy
            .stderr()
            .iter()
            .any(|l| l.contains("could not obtain a certificate") && l.contains(domain)),
        "{:?}",
        proxy.stderr()
    );

    // The CA is back (with a new root and no accounts): a retry renews.
    ca.pebble.resume();
    let entry = wait_for_certificate(admin, domain, |e| e["state"] == "valid", &ca.pebble).await;
    assert_eq!(entry["failures"], 0);
    let new_root = ca.pebble.issuing_root().await;
    let renewed = served_chain(ca.https, domain, &new_root).await.unwrap();
    assert_ne!(renewed[0], first);
}

#[tokio::test]
#[ignore = "needs pebble: apt-get install pebble"]
async fn a_domain_failing_validation_is_reported_and_the_others_are_served() {
    let (good, bad) = ("good.switchyard.test", "bad.switchyard.test");
    // The DNS responder does not know the bad name: validation fails.
    let ca = Ca::start(&[good], None);
    let (proxy, _origin, _config) = run_proxy(&ca, &[bad, good], "tls-alpn-01").await;
    let admin = proxy.admin.unwrap();
    let failing = wait_for_certificate(admin, bad, |e| e["state"] == "failing", &ca.pebble).await;
    wait_for_certificate(admin, good, is_valid, &ca.pebble).await;
    let why = failing["last_error"].as_str().unwrap();
    assert!(why.contains(bad) && why.contains("tls-alpn-01"), "{why}");
    assert!(
        why.contains("resolve") || why.contains("DNS"),
        "the CA's reason: {why}"
    );
    served_leaf(&ca, good).await;
    // A client asking for the bad name gets the default certificate (the
    // good one), which does not verify for it.
    let root = ca.pebble.issuing_root().await;
    assert!(served_chain(ca.https, bad, &root).await.is_err());
    let _ = &ca.dns;
}
