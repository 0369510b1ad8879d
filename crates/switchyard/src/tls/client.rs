//! TLS to upstreams: whom to trust, what to present, and naming a failed
//! handshake precisely enough for the failure contract.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;
use tracing::warn;

use super::certs::{CertificateFiles, load_certificate};
use super::{ALPN_H2, ALPN_HTTP11, provider, roots_from_file, tls_config_error};
use crate::error::{Error, ErrorKind, Result};
use crate::peer::UpstreamProtocol;

/// How to speak TLS to a group of upstreams.
///
/// | field | default |
/// |---|---|
/// | `ca_file` | none: the system's trusted roots only |
/// | `insecure_skip_verify` | false |
/// | `client_certificate` | none |
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamTlsSettings {
    /// More trusted CAs (PEM), on top of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate the upstream presents. The connection is
    /// encrypted but anyone on the path can pretend to be the upstream;
    /// loading such settings logs a warning.
    pub insecure_skip_verify: bool,
    /// A certificate to present when the upstream asks for one (mutual TLS).
    pub client_certificate: Option<CertificateFiles>,
}

/// Loaded TLS settings for upstreams, cheap to clone.
///
/// Two loads are equal when their settings and the contents of their files
/// are: a reload that changed nothing keeps its pooled connections, while
/// the pool never lets connections made under one set of trusted roots (or
/// one client certificate) serve requests meant for another
/// ([`HttpPeer::pool_key`](crate::HttpPeer::pool_key)).
///
/// ```
/// use switchyard::tls::{UpstreamTls, UpstreamTlsSettings};
/// use switchyard::HttpPeer;
///
/// let tls = UpstreamTls::load(&UpstreamTlsSettings::default())?;
/// let peer = HttpPeer::parse("127.0.0.1:8443")?.with_tls(tls, "origin.internal");
/// assert!(peer.tls);
/// # Ok::<(), Box<switchyard::Error>>(())
/// ```
#[derive(Clone)]
pub struct UpstreamTls {
    /// One connector per ALPN offer: `http/1.1`, `h2`, `h2` then `http/1.1`.
    connectors: Arc<[TlsConnector; 3]>,
    id: u64,
    insecure: bool,
}

impl UpstreamTls {
    /// Load `settings`: the system's roots, the CA file and the client
    /// certificate are read and checked now. Errors name the file.
    pub fn load(settings: &UpstreamTlsSettings) -> Result<Self> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_config_error("choosing TLS versions".into(), e))?;
        let builder = if settings.insecure_skip_verify {
            warn!(
                "TLS to upstreams with insecure_skip_verify: their certificates are not verified"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
        } else {
            let mut roots = system_roots().clone();
            if let Some(path) = &settings.ca_file {
                roots.roots.extend(roots_from_file(path)?.roots);
            }
            builder.with_root_certificates(roots)
        };
        let config = match &settings.client_certificate {
            None => builder.with_no_client_auth(),
            Some(files) => {
                let loaded = load_certificate(files, &provider)?;
                builder.with_client_cert_resolver(Arc::new(ClientCertificate(loaded.key)))
            }
        };
        let offering = |alpn: &[&[u8]]| {
            let mut config = config.clone();
            config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
            TlsConnector::from(Arc::new(config))
        };
        let connectors = [
            offering(&[ALPN_HTTP11]),
            offering(&[ALPN_H2]),
            offering(&[ALPN_H2, ALPN_HTTP11]),
        ];
        Ok(UpstreamTls {
            connectors: Arc::new(connectors),
            id: fingerprint(settings),
            insecure: settings.insecure_skip_verify,
        })
    }

    /// The settings a peer gets when it asks for TLS and names none: the
    /// system's roots, verification on, no client certificate.
    pub fn system() -> Result<Self> {
        static SYSTEM: OnceLock<std::result::Result<UpstreamTls, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                UpstreamTls::load(&UpstreamTlsSettings::default()).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| Error::explain(ErrorKind::Internal, e))
    }

    /// What tells these settings apart in the pool.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The connector whose ALPN offer speaks `protocol`.
    pub(crate) fn connector(&self, protocol: UpstreamProtocol) -> &TlsConnector {
        let index = match protocol {
            UpstreamProtocol::Http1 => 0,
            UpstreamProtocol::Http2 => 1,
            UpstreamProtocol::Auto => 2,
        };
        &self.connectors[index]
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for UpstreamTls {}

impl Hash for UpstreamTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("id", &self.id)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// What tells loaded settings apart: the settings and their files' bytes
/// (the system's roots are read once per process). Never 0 or `u64::MAX`,
/// which the pool key keeps for cleartext and the system default.
fn fingerprint(settings: &UpstreamTlsSettings) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    settings.hash(&mut hasher);
    let files = settings.ca_file.iter().chain(
        settings
            .client_certificate
            .iter()
            .flat_map(|files| [&files.cert, &files.key]),
    );
    for path in files {
        // Read fine a moment ago by the load; an error now only makes the id differ.
        std::fs::read(path).ok().hash(&mut hasher);
    }
    hasher.finish().clamp(1, u64::MAX - 1)
}

/// The system's trusted roots, read once. A store that cannot be read
/// leaves it empty (with a warning): only CA files are trusted then.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!(error = %e, "reading the system's trusted certificates");
        }
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            warn!(
                ignored,
                "system certificates that could not be parsed were skipped"
            );
        }
        roots
    })
}

/// The name to send as SNI and to verify the certificate against: the
/// given name, or the peer's IP address when none is given.
pub(crate) fn server_name(sni: &str, address: crate::PeerAddr) -> Result<ServerName<'static>> {
    if sni.is_empty() {
        let Some(address) = address.inet() else {
            return Err(Error::explain(
                ErrorKind::TlsHandshake,
                format!("{address} has no IP address to verify: give a server name"),
            ));
        };
        return Ok(ServerName::IpAddress(address.ip().into()));
    }
    ServerName::try_from(sni.to_string()).map_err(|e| {
        Error::because(
            ErrorKind::TlsHandshake,
            format!("{sni:?} is not a valid TLS server name"),
            e,
        )
    })
}

/// Name a failed client handshake: the upstream's certificate (or ours)
/// was refused, or the handshake itself failed.
pub(crate) fn handshake_error(e: io::Error) -> Box<Error> {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let kind = match tls {
        Some(tls) if is_certificate_error(tls) => ErrorKind::TlsCertificate,
        _ => ErrorKind::TlsHandshake,
    };
    Error::because(kind, "TLS handshake", e)
}

fn is_certificate_error(e: &rustls::Error) -> bool {
    use AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::InvalidCertRevocationList(_) => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
        ),
        _ => false,
    }
}

/// Presents one certificate whenever the upstream asks for one.
#[derive(Debug)]
struct ClientCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any certificate, but still checks that the upstream holds the
/// key of the one it sent (so the handshake itself is sound).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
