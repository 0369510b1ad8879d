//! The answers to pending challenges: an `http-01` key authorization by
//! token, a `tls-alpn-01` certificate by domain. Each is put in place just
//! before the CA is told to validate, and removed once the order is done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The pending answers.
#[derive(Debug, Default)]
pub(super) struct Challenges {
    /// `http-01`: token to key authorization.
    http: Mutex<HashMap<String, String>>,
    /// `tls-alpn-01`: domain (lower case) to the challenge certificate.
    tls_alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// Answer `token` with `key_authorization` until [`forget_http`](Self::forget_http).
    pub(super) fn put_http(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_string(), key_authorization.to_string());
    }

    /// Stop answering `token`.
    pub(super) fn forget_http(&self, token: &str) {
        lock(&self.http).remove(token);
    }

    /// The key authorization for `token`, if pending.
    pub(super) fn http_answer(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    /// Answer `acme-tls/1` handshakes for `domain` with a certificate
    /// carrying `digest` (the SHA-256 of the key authorization).
    pub(super) fn put_tls_alpn(&self, domain: &str, digest: &[u8]) -> Result<(), String> {
        let certificate = challenge_certificate(domain, digest)?;
        lock(&self.tls_alpn).insert(domain.to_ascii_lowercase(), certificate);
        Ok(())
    }

    /// Stop answering `acme-tls/1` handshakes for `domain`.
    pub(super) fn forget_tls_alpn(&self, domain: &str) {
        lock(&self.tls_alpn).remove(&domain.to_ascii_lowercase());
    }

    /// The `tls-alpn-01` certificate for `name`, if pending.
    pub(super) fn tls_alpn_answer(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.tls_alpn)
            .get(&name.to_ascii_lowercase())
            .cloned()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A self-signed certificate for `domain` with the critical
/// `acmeIdentifier` extension holding `digest` (RFC 8737 section 3).
/// Loaded without rustls' check of the certificate, which refuses the
/// critical extension it does not know (the CA knows it).
fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let failed = |e: rcgen::Error| format!("making the tls-alpn-01 certificate for {domain}: {e}");
    let mut params = CertificateParams::new(vec![domain.to_string()]).map_err(failed)?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = crate::tls::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("loading the tls-alpn-01 key for {domain}: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}
