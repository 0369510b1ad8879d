//! Automatic certificates from an ACME CA (RFC 8555), such as Let's
//! Encrypt: obtained at start, kept in a storage directory, renewed before
//! they expire, and served to new handshakes without a restart.
//!
//! [`Acme`] holds a listener's ACME certificates; give it to
//! [`ServerTls::load_with_acme`](crate::tls::ServerTls::load_with_acme) so
//! handshakes use them, then [`Acme::start`] the task that obtains and
//! renews them. Each domain gets a certificate of its own, so a domain that
//! fails validation does not hold up the others.
//!
//! The CA checks that we control each domain by one of two challenges:
//!
//! - `tls-alpn-01` (the default): the CA opens a TLS connection to port
//!   443 of the domain offering only the ALPN protocol `acme-tls/1`, and the
//!   listener answers with a certificate made for the challenge (RFC 8737).
//!   The HTTPS listener must be reachable on port 443.
//! - `http-01`: the CA asks for `http://DOMAIN/.well-known/acme-challenge/TOKEN`
//!   on port 80, answered by [`Acme::http_challenge_response`] (a
//!   [`Router`](crate::route::Router) given the handle answers it before
//!   routing).
//!
//! Renewal starts two thirds of the way through a certificate's lifetime,
//! or inside the window the CA's renewal information (ARI, RFC 9773)
//! suggests when its directory offers it. A failed attempt is retried
//! with a doubling delay; the certificate in hand is served meanwhile and
//! [`Acme::status`] says why the renewal failed.
//!
//! ```no_run
//! use switchyard::acme::{Acme, AcmeSettings};
//! use switchyard::tls::{ServerTls, ServerTlsSettings};
//!
//! # async fn run() -> switchyard::Result<()> {
//! let mut settings = AcmeSettings::new(vec!["example.com".into()], "/var/lib/switchyard/acme");
//! settings.email = Some("ops@example.com".into());
//! let acme = Acme::new(settings)?; // reads what earlier runs stored
//! let files = ServerTlsSettings { certificates: vec![], client_ca: None };
//! let tls = ServerTls::load_with_acme(&files, Some(&acme))?;
//! let _renewing = acme.start(); // obtains and renews until dropped
//! // ... ProxyServer::bind("0.0.0.0:443".parse()?, ..).await?.with_tls(tls)
//! # Ok(()) }
//! ```

mod challenges;
mod http_client;
mod issue;
mod schedule;
mod state;
mod storage;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::Response;
use rustls::sign::CertifiedKey;

use crate::error::{Error, ErrorKind, Result};
use crate::proxy::RequestHeader;

pub use schedule::Backoff;

use self::state::Shared;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The ALPN protocol a CA offers when it validates by `tls-alpn-01`.
pub(crate) const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

/// The shortest delay after a failed attempt (a CA is not hammered).
pub const MIN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest delay after a failed attempt (a certificate is renewed
/// weeks before it expires).
pub const MAX_RETRY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Where a request for an `http-01` answer is sent.
const HTTP_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// How the CA checks that we control a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Challenge {
    /// A TLS handshake on port 443 with ALPN `acme-tls/1` (RFC 8737).
    #[default]
    TlsAlpn01,
    /// An HTTP request on port 80 for `/.well-known/acme-challenge/TOKEN`.
    Http01,
}

impl Challenge {
    /// The name used in config files and logs: `tls-alpn-01`, `http-01`.
    pub fn name(self) -> &'static str {
        match self {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
        }
    }
}

/// What to ask the CA for, and where to keep it.
///
/// | field | default |
/// |---|---|
/// | `email` | none (no contact on the account) |
/// | `directory` | [`LETS_ENCRYPT`] |
/// | `directory_ca` | none: the system's roots only |
/// | `challenge` | `tls-alpn-01` |
/// | `retry` | 1 min after a failure, doubling to 1 h |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AcmeSettings {
    /// The DNS names to get certificates for, one certificate each.
    pub domains: Vec<String>,
    /// A contact address for the account (`mailto:` is added).
    pub email: Option<String>,
    /// The CA's directory URL (`https://` only).
    pub directory: String,
    /// A PEM file of an extra root to trust when talking to the directory
    /// itself (a private or test CA); the system's roots are trusted too.
    pub directory_ca: Option<PathBuf>,
    /// The directory for the account key and certificates (created 0700;
    /// keys written 0600). One subdirectory per CA.
    pub storage: PathBuf,
    /// How the CA validates each domain.
    pub challenge: Challenge,
    /// How long to wait after a failed attempt before the next.
    pub retry: Backoff,
}

impl AcmeSettings {
    /// Certificates for `domains` from Let's Encrypt, kept in `storage`,
    /// validated by `tls-alpn-01`.
    pub fn new(domains: Vec<String>, storage: impl Into<PathBuf>) -> Self {
        AcmeSettings {
            domains,
            email: None,
            directory: LETS_ENCRYPT.to_string(),
            directory_ca: None,
            storage: storage.into(),
            challenge: Challenge::default(),
            retry: Backoff::default(),
        }
    }

    /// The usual place for `storage`: `$STATE_DIRECTORY/acme` under
    /// systemd's `StateDirectory=`, else `$XDG_STATE_HOME/switchyard/acme`,
    /// else `$HOME/.local/state/switchyard/acme`; `None` when none of
    /// these variables is set.
    pub fn default_storage() -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        if let Some(state) = var("STATE_DIRECTORY") {
            // systemd may give several, separated by colons: the first.
            let first = state
                .to_string_lossy()
                .split(':')
                .next()
                .map(PathBuf::from)?;
            return Some(first.join("acme"));
        }
        if let Some(state) = var("XDG_STATE_HOME") {
            return Some(PathBuf::from(state).join("switchyard").join("acme"));
        }
        var("HOME").map(|home| PathBuf::from(home).join(".local/state/switchyard/acme"))
    }

    /// Check the settings without touching the network or the disk: at
    /// least one domain, each a DNS name and listed once, retry delays
    /// between [`MIN_RETRY`] and [`MAX_RETRY`], and an `https://` directory.
    /// ([`Acme::new`] also loads `directory_ca`.)
    pub fn check(&self) -> Result<()> {
        if self.domains.is_empty() {
            return Err(invalid("give at least one domain".into()));
        }
        for domain in &self.domains {
            if !is_dns_name(domain) {
                return Err(invalid(format!(
                    "{domain:?} is not a DNS name (ACME certificates are for names: no IP addresses, no wildcards)"
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for domain in &self.domains {
            if !seen.insert(domain.to_ascii_lowercase()) {
                return Err(invalid(format!("{domain:?} is listed twice")));
            }
        }
        if self.retry.first < MIN_RETRY || self.retry.max > MAX_RETRY {
            return Err(invalid(format!(
                "the retry delays must be between {MIN_RETRY:?} and {MAX_RETRY:?}"
            )));
        }
        if !self.directory.starts_with("https://") {
            return Err(invalid(format!(
                "the directory {:?} is not an https:// URL",
                self.directory
            )));
        }
        if self.directory.parse::<http::Uri>().is_err() {
            return Err(invalid(format!(
                "the directory {:?} is not a URL",
                self.directory
            )));
        }
        Ok(())
    }
}

fn invalid(message: String) -> Box<Error> {
    Error::explain(ErrorKind::Internal, message)
}

/// Whether `name` is a DNS name a CA can issue for: letters, digits and
/// hyphens in dot-separated labels, at least two labels, the last not all
/// digits (not an IPv4 address).
fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let top_level_is_numeric = labels
        .last()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    labels.len() >= 2
        && !top_level_is_numeric
        && name.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Where one domain's certificate stands, for logs, metrics and the admin
/// listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateStatus {
    /// The domain.
    pub domain: String,
    /// When the certificate being served expires (`None`: none yet).
    pub not_after: Option<SystemTime>,
    /// When it was issued (its `notBefore`).
    pub not_before: Option<SystemTime>,
    /// When the next attempt to obtain or renew it is due.
    pub next_attempt: Option<SystemTime>,
    /// Why the last attempt failed, if it did (cleared by a success).
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Whether the renewal time came from the CA's renewal information.
    pub ari: bool,
}

/// A listener's ACME certificates: what is served now, the answers to
/// pending challenges, and each domain's status. Clones share them.
#[derive(Debug, Clone)]
pub struct Acme {
    shared: Arc<Shared>,
}

impl Acme {
    /// Check `settings` and load what an earlier run stored for this CA (a
    /// stored certificate that is unreadable or expired is skipped with a
    /// warning and obtained again). Neither the network nor the storage
    /// directory is touched beyond reading.
    pub fn new(settings: AcmeSettings) -> Result<Acme> {
        settings.check()?;
        // The directory's extra root must load now, not at the first order.
        http_client::DirectoryClient::new(settings.directory_ca.as_deref())?;
        let shared = Shared::new(settings);
        shared.load_stored();
        Ok(Acme {
            shared: Arc::new(shared),
        })
    }

    /// The settings this was made with.
    pub fn settings(&self) -> &AcmeSettings {
        &self.shared.settings
    }

    /// Start obtaining and renewing the certificates on the current tokio
    /// runtime: one task per domain. Dropping the returned handle stops
    /// them (a certificate already obtained stays served).
    pub fn start(&self) -> Renewing {
        let tasks = self
            .shared
            .settings
            .domains
            .iter()
            .map(|domain| {
                tokio::spawn(schedule::keep_current(
                    Arc::clone(&self.shared),
                    domain.clone(),
                ))
            })
            .collect();
        Renewing { tasks }
    }

    /// Each domain's status, in the configured order.
    pub fn status(&self) -> Vec<CertificateStatus> {
        self.shared.status()
    }

    /// The answer to a CA's `http-01` request
    /// (`GET /.well-known/acme-challenge/TOKEN` for a pending challenge):
    /// 200 with the key authorization. `None` for any other request, which
    /// then goes on as usual.
    pub fn http_challenge_response(&self, request: &RequestHeader) -> Option<Response<Bytes>> {
        let token = request.uri.path().strip_prefix(HTTP_CHALLENGE_PREFIX)?;
        let answer = self.shared.challenges.http_answer(token)?;
        let mut response = Response::new(Bytes::from(answer));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        Some(response)
    }

    /// Whether new handshakes should offer `acme-tls/1` (the challenge is
    /// `tls-alpn-01`).
    pub(crate) fn answers_tls_alpn(&self) -> bool {
        self.shared.settings.challenge == Challenge::TlsAlpn01
    }

    /// The certificate to serve for `name`, if ACME holds one.
    pub(crate) fn certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.shared.certificate(name)
    }

    /// Any certificate ACME holds, for clients that name no server.
    pub(crate) fn any_certificate(&self) -> Option<Arc<CertifiedKey>> {
        self.shared.any_certificate()
    }

    /// The `tls-alpn-01` answer for `name`, while its challenge is pending.
    pub(crate) fn challenge_certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.shared.challenges.tls_alpn_answer(name)
    }
}

/// The tasks keeping a listener's ACME certificates current; dropping this
/// stops them.
#[derive(Debug)]
pub struct Renewing {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Renewing {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Seconds from `now` to `at`, negative once it has passed: how the
/// expiry metric counts.
pub fn seconds_until(at: SystemTime, now: SystemTime) -> f64 {
    match at.duration_since(now) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(passed) => -passed.duration().as_secs_f64(),
    }
}
