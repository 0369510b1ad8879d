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
