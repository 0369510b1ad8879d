//! `[server.tls] acme` and the one-liner's `--domain`, checked without a CA:
//! what `check` refuses, and at which key; what it accepts without touching
//! the network or the storage directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TempConfig, check_refusal, run, run_refused};

fn config(acme: &str, listen: &str) -> String {
    format!(
        r#"[server]
listen = [{listen}]

[server.tls]
listen = ["127.0.0.1:0"]
acme = {{ {acme} }}

[upstreams.app]
servers = ["127.0.0.1:9"]
"#
    )
}

#[test]
fn check_refuses_acme_settings_no_ca_could_use() {
    let storage = r#"storage = "/nonexistent/switchyard-acme""#;
    for (acme, listen, key, why) in [
        (
            format!("domains = [], {storage}"),
            r#""127.0.0.1:0""#,
            "server.tls.acme",
            "at least one domain",
        ),
        (
            format!(r#"domains = ["10.0.0.1"], {storage}"#),
            r#""127.0.0.1:0""#,
            "server.tls.acme",
            "not a DNS name",
        ),
        (
            format!(
                r#"domains = ["a.example.com"], directory = "http://ca.example/dir", {storage}"#
            ),
            r#""127.0.0.1:0""#,
            "server.tls.acme",
            "not an https:// URL",
        ),
        (
            format!(
                r#"domains = ["a.example.com"], directory_ca = "/nonexistent/ca.pem", {storage}"#
            ),
            r#""127.0.0.1:0""#,
            "server.tls.acme",
            "/nonexistent/ca.pem",
        ),
        (
            format!(r#"domains = ["a.example.com"], challenge = "http-01", {storage}"#),
            r#""unix:/tmp/switchyard-acme-config.sock""#,
            "server.tls.acme.challenge",
            "cleartext listener",
        ),
        (
            format!(r#"domains = ["a.example.com", "A.example.com"], {storage}"#),
            r#""127.0.0.1:0""#,
            "server.tls.acme",
            "listed twice",
        ),
        (
            format!(r#"domains = ["a.example.com"], retry_after = "0s", {storage}"#),
            r#""127.0.0.1:0""#,
            "server.tls.acme",
            "retry delays",
        ),
        (
            format!(r#"domains = ["a.example.com"], challenge = "dns-01", {storage}"#),
            r#""127.0.0.1:0""#,
            "challenge",
            "dns-01",
        ),
    ] {
        let stderr = check_refusal("acme-refused", &config(&acme, listen));
        assert!(
            stderr.contains(key) && stderr.contains(why),
            "{acme}: {stderr}"
        );
    }
}

#[test]
fn check_accepts_acme_without_certificate_files_and_touches_no_storage() {
    let storage =
        std::env::temp_dir().join(format!("switchyard-acme-check-{}", std::process::id()));
    let acme = format!(
        r#"domains = ["a.example.com", "www.example.com"], email = "ops@example.com", storage = "{}", challenge = "http-01""#,
        storage.display()
    );
    let file = TempConfig::new("acme-ok", &config(&acme, r#""127.0.0.1:0""#));
    let out = run(&["check", "-c", file.path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(!storage.exists(), "check created {}", storage.display());
}

#[test]
fn the_one_liner_refuses_domain_flags_that_cannot_work() {
    // --domain gets its own certificate.
    let out = run_refused(&[
        "proxy",
        "--domain",
        "a.example.com",
        "--tls-cert",
        "a.pem",
        "--tls-key",
        "a.key",
        "--to",
        "127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{out:?}"
    );
    // Without --domain, --listen is needed.
    let out = run_refused(&["proxy", "--to", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listen"),
        "{out:?}"
    );
    // The ACME flags need --domain.
    let out = run_refused(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        "127.0.0.1:9",
        "--acme-directory",
        "https://ca.example/dir",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--domain"),
        "{out:?}"
    );
}

/// The `failures` of `domain` in `/certificates`.
async fn failures(admin: std::net::SocketAddr, domain: &str) -> u64 {
    let body = common::admin_get(admin, "/certificates").await;
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    all["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["domain"] == domain)
        .map_or(0, |c| c["failures"].as_u64().unwrap())
}

#[tokio::test]
async fn a_reload_keeps_unchanged_acme_going_and_starts_changed_acme_afresh() {
    // A CA that is not there: every attempt fails, one a second.
    let storage =
        std::env::temp_dir().join(format!("switchyard-acme-reload-{}", std::process::id()));
    let acme = |domains: &str| {
        format!(
            r#"domains = [{domains}], directory = "https://127.0.0.1:9/dir", storage = "{}", retry_after = "1s""#,
            storage.display()
        )
    };
    let text = |domains: &str| {
        config(&acme(domains), r#""127.0.0.1:0""#)
            .replace("[server]\n", "[server]\nadmin = \"127.0.0.1:0\"\n")
    };
    let file = TempConfig::new("acme-reload", &text(r#""a.example.com""#));
    let proxy = common::Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let admin = proxy.admin.unwrap();
    switchyard_testkit::within(10, "two failures", async {
        while failures(admin, "a.example.com").await < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;

    // The same acme table: the running attempts go on (their count too).
    proxy.hangup();
    proxy.wait_for_stderr("reloaded").await;
    assert!(failures(admin, "a.example.com").await >= 2);

    // Another table: started afresh, with the new domain.
    std::fs::write(&file.path, text(r#""a.example.com", "b.example.com""#)).unwrap();
    let before = failures(admin, "a.example.com").await;
    proxy.hangup();
    switchyard_testkit::within(10, "the new domain listed", async {
        while !common::admin_get(admin, "/certificates")
            .await
            .contains("b.example.com")
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        failures(admin, "a.example.com").await < before,
        "not started afresh"
    );
    // And it runs: the new domain is being attempted.
    switchyard_testkit::within(10, "the new domain attempted", async {
        while failures(admin, "b.example.com").await < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&storage);
}

#[test]
fn check_refuses_tls_alpn_01_beside_client_certificates() {
    let ca = switchyard_testkit::tls::TestCa::new("clients");
    let text = config(
        r#"domains = ["a.example.com"], storage = "/nonexistent/switchyard-acme""#,
        r#""127.0.0.1:0""#,
    )
    .replace(
        "[server.tls]\n",
        &format!(
            "[server.tls]\nclient_ca = \"{}\"\n",
            ca.cert_path().display()
        ),
    );
    let stderr = check_refusal("acme-mtls", &text);
    assert!(
        stderr.contains("server.tls.acme.challenge") && stderr.contains("http-01"),
        "{stderr}"
    );
}
