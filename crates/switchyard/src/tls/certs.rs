//! Reading PEM files and checking what they hold, so that a bad certificate
//! or key is a clear error naming the file when it is loaded, never a failed
//! handshake later.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::error::{Error, ErrorKind, Result};

/// A certificate chain and its private key, as PEM files.
///
/// The chain file holds the server's (or client's) certificate first, then
/// any intermediates; the key file holds one PKCS#8, PKCS#1 or SEC1 key.
///
/// ```
/// use switchyard::tls::CertificateFiles;
///
/// let files = CertificateFiles::new("site.pem", "site.key");
/// assert_eq!(files.cert.to_str(), Some("site.pem"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateFiles {
    /// The PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// The PEM private key of the leaf certificate.
    pub key: PathBuf,
}

impl CertificateFiles {
    /// The chain in `cert` with its key in `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertificateFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// A loaded, checked certificate with the names it is valid for.
#[derive(Debug)]
pub(crate) struct LoadedCertificate {
    /// The chain and signing key, ready for rustls.
    pub(crate) key: Arc<CertifiedKey>,
    /// The DNS names (lower case, `*.` wildcards kept) and IP addresses of
    /// the leaf's subject alternative names.
    pub(crate) names: Vec<String>,
}

/// Load `files`: the chain must parse, its leaf must be valid now, and the
/// key must parse and match the leaf.
pub(crate) fn load_certificate(
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate> {
    let chain = load_chain(&files.cert)?;
    let leaf = parse_leaf(&files.cert, &chain[0])?;
    check_validity(&files.cert, &leaf, SystemTime::now())?;
    let names = subject_names(&leaf);
    let key = load_key(&files.key)?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        tls_config_error(
            format!(
                "the key in {} does not belong to the certificate in {}",
                files.key.display(),
                files.cert.display()
            ),
            e,
        )
    })?;
    Ok(LoadedCertificate {
        key: Arc::new(certified),
        names,
    })
}

/// Every certificate in the PEM file at `path` (at least one).
pub(crate) fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let reading = || format!("reading certificates from {}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_config_error(reading(), pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_config_error(reading(), pem_error(e)))?;
    if chain.is_empty() {
        return Err(Error::explain(
            ErrorKind::Internal,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(chain)
}

/// The first private key in the PEM file at `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::explain(
            ErrorKind::Internal,
            format!("{} holds no PEM private key", path.display()),
        ),
        e => tls_config_error(
            format!("reading the private key from {}", path.display()),
            pem_error(e),
        ),
    })
}

fn parse_leaf(path: &Path, der: &CertificateDer<'_>) -> Result<Certificate> {
    Certificate::from_der(der.as_ref()).map_err(|e| {
        tls_config_error(
            format!(
                "the first certificate in {} is not valid X.509",
                path.display()
            ),
            e,
        )
    })
}

/// The leaf must be valid at `now`: not expired, not yet to come.
fn check_validity(path: &Path, leaf: &Certificate, now: SystemTime) -> Result<()> {
    let validity = &leaf.tbs_certificate.validity;
    if now > validity.not_after.to_system_time() {
        return Err(Error::explain(
            ErrorKind::Internal,
            format!(
                "the certificate in {} expired on {}",
                path.display(),
                validity.not_after
            ),
        ));
    }
    if now < validity.not_before.to_system_time() {
        return Err(Error::explain(
            ErrorKind::Internal,
            format!(
                "the certificate in {} is not valid before {}",
                path.display(),
                validity.not_before
            ),
        ));
    }
    Ok(())
}

/// The DNS names and IP addresses the leaf names as subject alternatives.
fn subject_names(leaf: &Certificate) -> Vec<String> {
    let extensions = leaf.tbs_certificate.extensions.iter().flatten();
    let Some(san) = extensions
        .filter(|ext| ext.extn_id == SubjectAltName::OID)
        .find_map(|ext| SubjectAltName::from_der(ext.extn_value.as_bytes()).ok())
    else {
        return Vec::new();
    };
    san.0
        .iter()
        .filter_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.as_str().to_ascii_lowercase()),
            GeneralName::IpAddress(bytes) => ip_text(bytes.as_bytes()),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}

/// Whether a certificate name (`example.com`, `*.example.com`, an IP)
/// covers the server name a client asked for: exactly, or by a wildcard
/// standing for one whole left-most label.
pub(crate) fn name_matches(pattern: &str, asked: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return match asked.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        };
    }
    pattern.eq_ignore_ascii_case(asked)
}

/// A PEM error with the I/O error inside it brought forward.
fn pem_error(e: rustls_pki_types::pem::Error) -> crate::error::Cause {
    match e {
        rustls_pki_types::pem::Error::Io(io) => Box::new(io),
        other => other.to_string().into(),
    }
}

/// An error in TLS material (a file, a key, a setting), with its cause.
pub(crate) fn tls_config_error(
    context: String,
    cause: impl Into<crate::error::Cause>,
) -> Box<Error> {
    Error::because(ErrorKind::Internal, context, cause)
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("example.com", "EXAMPLE.com"));
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(!name_matches("example.com", "a.example.com"));
    }
}
