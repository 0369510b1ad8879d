//! TLS for a listener: certificates chosen by SNI, optional client
//! certificates, and reloading without dropping connections.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::certs::{CertificateFiles, LoadedCertificate, load_certificate, name_matches};
use super::{ALPN_H2, ALPN_HTTP11, provider, roots_from_file, tls_config_error};
use crate::acme::{ALPN_ACME_TLS, Acme};
use crate::error::{Error, ErrorKind, Result};

/// What a TLS listener serves: its certificates and whom it asks for one.
///
/// The first certificate is the default, sent when the client names no
/// server (no SNI) or a name no certificate covers; otherwise the first
/// certificate whose subject alternative names cover the asked name is
/// sent (`*.example.com` covers `a.example.com`). TLS 1.2 and 1.3 only;
/// ALPN offers `h2`, then `http/1.1`.
///
/// ```no_run
/// use switchyard::tls::{CertificateFiles, ServerTls, ServerTlsSettings};
///
/// let settings = ServerTlsSettings {
///     certificates: vec![CertificateFiles::new("site.pem", "site.key")],
///     client_ca: None,
/// };
/// let tls = ServerTls::load(&settings)?; // a bad file is an error here
/// // ... ProxyServer::bind(..).await?.with_tls(tls.clone())
/// tls.reload(&settings)?; // later, e.g. on SIGHUP: new handshakes use the new files
/// # Ok::<(), Box<switchyard::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerTlsSettings {
    /// The certificates with their keys; the first is the default.
    pub certificates: Vec<CertificateFiles>,
    /// Ask every client for a certificate and accept only those issued by a
    /// CA in this PEM file (mutual TLS). `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
}

/// A listener's loaded TLS configuration; clones share it, and
/// [`reload`](Self::reload) replaces it for new handshakes (connections
/// already open keep going).
#[derive(Debug, Clone)]
pub struct ServerTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    /// The ACME certificates served beside the files, kept by reloads.
    acme: Option<Acme>,
}

impl ServerTls {
    /// Load and check every file: each certificate must parse, be valid
    /// now and match its key; the client CA file must hold a certificate.
    /// Errors name the file.
    pub fn load(settings: &ServerTlsSettings) -> Result<Self> {
        ServerTls::load_with_acme(settings, None)
    }

    /// [`load`](Self::load), also serving `acme`'s certificates: for a
    /// name ACME holds a certificate for, that certificate; else the files'
    /// as usual (the first file's is the default, else the first ACME
    /// domain's). With ACME, `settings.certificates` may be empty, and a
    /// `tls-alpn-01` challenge is answered with its certificate (ALPN
    /// `acme-tls/1`; the connection then closes).
    pub fn load_with_acme(settings: &ServerTlsSettings, acme: Option<&Acme>) -> Result<Self> {
        let config = server_config(settings, acme)?;
        Ok(ServerTls {
            current: Arc::new(RwLock::new(config)),
            acme: acme.cloned(),
        })
    }

    /// Load `settings` again and, if that succeeds, use them for every new
    /// handshake (with the same ACME certificates, if any). On error
    /// nothing changes.
    pub fn reload(&self, settings: &ServerTlsSettings) -> Result<()> {
        self.adopt(&ServerTls::load_with_acme(settings, self.acme.as_ref())?);
        Ok(())
    }

    /// Serve what `other` loaded from now on (new handshakes; open
    /// connections keep going): how a reload that already loaded and
    /// checked its files applies them to a running listener.
    pub fn adopt(&self, other: &ServerTls) {
        if Arc::ptr_eq(&self.current, &other.current) {
            return;
        }
        let config = other.config();
        match self.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// The TLS configuration for QUIC (HTTP/3): the same certificates, the
    /// one in force at each handshake (a reload or a renewed ACME
    /// certificate applies at once), the client certificates asked for
    /// when it is made, ALPN `h3`, and no 0-RTT data (it could be
    /// replayed).
    pub(crate) fn quic_config(&self) -> Arc<ServerConfig> {
        let mut config = (*self.config()).clone();
        config.cert_resolver = Arc::new(FollowCurrent(self.clone()));
        config.alpn_protocols = vec![ALPN_H3.to_vec()];
        config.max_early_data_size = 0;
        Arc::new(config)
    }

    /// An acceptor for one handshake, with the configuration in force now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

fn server_config(settings: &ServerTlsSettings, acme: Option<&Acme>) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    if settings.certificates.is_empty() && acme.is_none() {
        return Err(Error::explain(
            ErrorKind::Internal,
            "a TLS listener needs at least one certificate",
        ));
    }
    let certificates = settings
        .certificates
        .iter()
        .map(|files| load_certificate(files, &provider))
        .collect::<Result<Vec<_>>>()?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_config_error("choosing TLS versions".into(), e))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots: RootCertStore = roots_from_file(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_config_error(format!("client CAs from {}", path.display()), e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(ByServerName {
        certificates,
        acme: acme.cloned(),
    }));
    // HTTP/2 preferred, HTTP/1.1 kept.
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    if acme.is_some_and(Acme::answers_tls_alpn) {
        // Only a CA validating offers it, and offers nothing else.
        config.alpn_protocols.push(ALPN_ACME_TLS.to_vec());
    }
    Ok(Arc::new(config))
}

/// Picks the certificate for the server name a client asked for.
#[derive(Debug)]
struct ByServerName {
    /// In the configured order; the first is the default.
    certificates: Vec<LoadedCertificate>,
    /// Certificates obtained by ACME, looked at first.
    acme: Option<Acme>,
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(acme) = &self.acme {
            if offers_acme_tls(&hello) {
                return acme.challenge_certificate(hello.server_name()?);
            }
            if let Some(key) = hello.server_name().and_then(|name| acme.certificate(name)) {
                return Some(key);
            }
        }
        let default = self
            .certificates
            .first()
            .map(|c| Arc::clone(&c.key))
            .or_else(|| self.acme.as_ref().and_then(Acme::any_certificate));
        let Some(asked) = hello.server_name() else {
            return default;
        };
        self.certificates
            .iter()
            .find(|c| c.names.iter().any(|name| name_matches(name, asked)))
            .map(|c| Arc::clone(&c.key))
            .or(default)
    }
}

/// Whether the client offers ALPN `acme-tls/1` (a CA validating).
fn offers_acme_tls(hello: &ClientHello<'_>) -> bool {
    hello
        .alpn()
        .is_some_and(|mut offered| offered.any(|protocol| protocol == ALPN_ACME_TLS))
}

/// Whether a finished handshake chose `acme-tls/1`: a CA's validation,
/// to be closed rather than served.
pub(crate) fn is_acme_validation(connection: &rustls::ServerConnection) -> bool {
    connection.alpn_protocol() == Some(ALPN_ACME_TLS)
}

/// The ALPN name of HTTP/3.
const ALPN_H3: &[u8] = b"h3";

/// Picks the certificate with whatever a listener's [`ServerTls`] holds at
/// the moment of the handshake.
#[derive(Debug)]
struct FollowCurrent(ServerTls);

impl ResolvesServerCert for FollowCurrent {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.config().cert_resolver.resolve(hello)
    }
}
