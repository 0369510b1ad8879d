//! `GET /certificates`: each ACME domain's certificate, as JSON: when it
//! was issued and expires, when the next attempt to renew it is due, and
//! why the last attempt failed, if it did.

use std::time::SystemTime;

use serde_json::json;
use switchyard::acme::{Acme, CertificateStatus, seconds_until};

/// The JSON of `acme`'s certificates (`{"certificates": []}` without ACME).
pub(super) fn certificates(acme: Option<&Acme>) -> String {
    let now = SystemTime::now();
    let certificates: Vec<serde_json::Value> = acme
        .map(Acme::status)
        .unwrap_or_default()
        .iter()
        .map(|status| one(status, now))
        .collect();
    let challenge = acme.map(|acme| acme.settings().challenge.name());
    let directory = acme.map(|acme| acme.settings().directory.clone());
    let body = json!({
        "directory": directory,
        "challenge": challenge,
        "certificates": certificates,
    });
    format!("{body:#}\n")
}

fn one(status: &CertificateStatus, now: SystemTime) -> serde_json::Value {
    let time =
        |at: Option<SystemTime>| at.map(|at| humantime::format_rfc3339_seconds(at).to_string());
    json!({
        "domain": status.domain,
        "state": state(status),
        "not_before": time(status.not_before),
        "not_after": time(status.not_after),
        "expires_in_seconds": status.not_after.map(|at| seconds_until(at, now).round() as i64),
        "next_attempt": time(status.next_attempt),
        "renewal_window_from_ca": status.ari,
        "failures": status.failures,
        "last_error": status.last_error,
    })
}

/// `valid`, `expired`, `obtaining` (none yet), or `failing` (the last
/// attempt failed; a valid certificate may still be served).
fn state(status: &CertificateStatus) -> &'static str {
    match (status.not_after, &status.last_error) {
        (_, Some(_)) => "failing",
        (None, None) => "obtaining",
        (Some(at), None) if at <= SystemTime::now() => "expired",
        (Some(_), None) => "valid",
    }
}
