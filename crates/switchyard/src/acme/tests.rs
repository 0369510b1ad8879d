#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use x509_cert::Certificate;
use x509_cert::der::Decode;

use super::schedule::{in_window, two_thirds};
use super::storage::{Storage, ca_directory_name};
use super::{Acme, AcmeSettings, Backoff, Challenge};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-acme-unit-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn settings(domains: &[&str], storage: &std::path::Path) -> AcmeSettings {
    let mut settings = AcmeSettings::new(domains.iter().map(|d| d.to_string()).collect(), storage);
    settings.directory = "https://127.0.0.1:14000/dir".into();
    settings
}

#[test]
fn the_retry_delay_doubles_up_to_its_cap() {
    let backoff = Backoff {
        first: Duration::from_secs(60),
        max: Duration::from_secs(3600),
    };
    let delays: Vec<u64> = (1..=8).map(|n| backoff.after(n).as_secs()).collect();
    assert_eq!(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(backoff.after(u32::MAX).as_secs(), 3600);
}

#[test]
fn renewal_is_due_two_thirds_through_the_lifetime_or_inside_the_ca_window() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let ninety_days = Duration::from_secs(90 * 86400);
    assert_eq!(
        two_thirds(start, start + ninety_days),
        start + Duration::from_secs(60 * 86400)
    );
    let end = start + Duration::from_secs(100);
    assert_eq!(in_window(start, end, 0.0), start);
    assert_eq!(in_window(start, end, 0.25), start + Duration::from_secs(25));
    assert_eq!(in_window(start, end, 7.0), end);
}

#[test]
fn settings_refuse_what_no_ca_issues_for() {
    let dir = scratch("check");
    for (domains, directory, why) in [
        (vec![], "https://ca.test/dir", "at least one domain"),
        (vec!["127.0.0.1"], "https://ca.test/dir", "not a DNS name"),
        (
            vec!["*.example.com"],
            "https://ca.test/dir",
            "not a DNS name",
        ),
        (vec!["localhost"], "https://ca.test/dir", "not a DNS name"),
        (
            vec!["example.com"],
            "http://ca.test/dir",
            "not an https:// URL",
        ),
    ] {
        let domains = domains.iter().map(|d: &&str| d.to_string()).collect();
        let mut settings = AcmeSettings::new(domains, &dir);
        settings.directory = directory.into();
        let error = settings.check().unwrap_err().to_string();
        assert!(error.contains(why), "{error}");
    }
    let twice = vec!["a.example.com".to_string(), "A.example.com".to_string()];
    let error = AcmeSettings::new(twice, &dir)
        .check()
        .unwrap_err()
        .to_string();
    assert!(error.contains("listed twice"), "{error}");
    let mut hammering = AcmeSettings::new(vec!["a.example.com".into()], &dir);
    hammering.retry.first = Duration::ZERO;
    let error = hammering.check().unwrap_err().to_string();
    assert!(error.contains("retry delays"), "{error}");
    let fine = AcmeSettings::new(vec!["a-b.example.com".into()], &dir);
    assert!(fine.check().is_ok());
    assert_eq!(fine.directory, super::LETS_ENCRYPT);
    assert_eq!(fine.challenge, Challenge::TlsAlpn01);
}

#[test]
fn a_ca_gets_a_folder_named_after_its_directory() {
    assert_eq!(
        ca_directory_name("https://acme-v02.api.letsencrypt.org/directory"),
        "acme-v02.api.letsencrypt.org-directory"
    );
    assert_eq!(
        ca_directory_name("https://127.0.0.1:14000/dir"),
        "127.0.0.1-14000-dir"
    );
    assert_eq!(ca_directory_name("https://x.test/../a"), "x.test-..-a");
    assert_eq!(ca_directory_name("https://.."), "ca..");
    assert_eq!(ca_directory_name("https://"), "ca");
}

#[test]
fn certificates_are_stored_with_private_keys_in_private_folders() {
    let dir = scratch("modes");
    // An existing, too open key file is made private when written over.
    let storage = Storage::new(&settings(&["a.example.com"], &dir));
    storage
        .save_certificate("a.example.com", "CHAIN", "KEY")
        .unwrap();
    let (chain, key) = storage.certificate_paths("A.example.com");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    storage
        .save_certificate("a.example.com", "CHAIN2", "KEY2")
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(chain.parent().unwrap()), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&chain), 0o644);
    assert_eq!(
        storage.certificate("a.example.com").unwrap(),
        Some(("CHAIN2".to_string(), "KEY2".to_string()))
    );
    assert_eq!(storage.certificate("b.example.com").unwrap(), None);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(chain.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(names.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A certificate for `name` valid from `not_before` to `not_after` (years),
/// stored where `settings` keeps it.
fn store(settings: &AcmeSettings, name: &str, years: (i32, i32)) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Storage::new(settings)
        .save_certificate(name, &cert.pem(), &key.serialize_pem())
        .unwrap();
}

#[test]
fn stored_certificates_are_served_at_once_and_expired_ones_skipped() {
    let dir = scratch("stored");
    let settings = settings(&["fresh.example.com", "old.example.com"], &dir);
    store(&settings, "fresh.example.com", (2020, 2099));
    store(&settings, "old.example.com", (2019, 2020));
    let acme = Acme::new(settings).unwrap();
    assert!(acme.certificate("fresh.example.com").is_some());
    assert!(acme.certificate("FRESH.example.com").is_some());
    assert!(acme.certificate("old.example.com").is_none());
    assert!(acme.any_certificate().is_some());
    let status = acme.status();
    assert_eq!(status[0].domain, "fresh.example.com");
    assert!(status[0].not_after.unwrap() > SystemTime::now());
    assert_eq!(status[1].not_after, None, "the expired one is not served");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_01_is_answered_only_for_a_pending_token() {
    let acme = Acme::new(settings(&["a.example.com"], &scratch("http"))).unwrap();
    let request = |path: &str| {
        let (parts, ()) = http::Request::get(path).body(()).unwrap().into_parts();
        parts
    };
    let path = "/.well-known/acme-challenge/tok3n";
    assert!(acme.http_challenge_response(&request(path)).is_none());
    acme.shared.challenges.put_http("tok3n", "tok3n.thumbprint");
    let answer = acme.http_challenge_response(&request(path)).unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body().as_ref(), b"tok3n.thumbprint");
    assert!(acme.http_challenge_response(&request("/tok3n")).is_none());
    assert!(
        acme.http_challenge_response(&request("/.well-known/acme-challenge/other"))
            .is_none()
    );
    acme.shared.challenges.forget_http("tok3n");
    assert!(acme.http_challenge_response(&request(path)).is_none());
}

#[test]
fn the_tls_alpn_01_answer_carries_the_digest_in_a_critical_acme_identifier() {
    let acme = Acme::new(settings(&["a.example.com"], &scratch("alpn"))).unwrap();
    assert!(acme.challenge_certificate("a.example.com").is_none());
    let digest = [7u8; 32];
    acme.shared
        .challenges
        .put_tls_alpn("a.example.com", &digest)
        .unwrap();
    let key = acme.challenge_certificate("A.EXAMPLE.COM").unwrap();
    let leaf = Certificate::from_der(key.cert[0].as_ref()).unwrap();
    let extension = leaf
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == "1.3.6.1.5.5.7.1.31")
        .expect("an acmeIdentifier extension");
    assert!(extension.critical);
    // An OCTET STRING of the 32-byte digest.
    let mut expected = vec![0x04, 32];
    expected.extend_from_slice(&digest);
    assert_eq!(extension.extn_value.as_bytes(), expected);
    acme.shared.challenges.forget_tls_alpn("a.example.com");
    assert!(acme.challenge_certificate("a.example.com").is_none());
}
