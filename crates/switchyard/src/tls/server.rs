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
}

impl ServerTls {
    /// Load and check every file: each certificate must parse, be valid
    /// now and match its key; the client CA file must hold a certificate.
    /// Errors name the file.
    pub fn load(settings: &ServerTlsSettings) -> Result<Self> {
        let config = server_config(settings)?;
        Ok(ServerTls {
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Load `settings` again and, if that succeeds, use them for every new
    /// handshake. On error nothing changes.
    pub fn reload(&self, settings: &ServerTlsSettings) -> Result<()> {
        self.adopt(&ServerTls::load(settings)?);
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

fn server_config(settings: &ServerTlsSettings) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    if settings.certificates.is_empty() {
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
    let mut config = builder.with_cert_resolver(Arc::new(ByServerName { certificates }));
    // HTTP/2 preferred, HTTP/1.1 kept.
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Picks the certificate for the server name a client asked for.
#[derive(Debug)]
struct ByServerName {
    /// In the configured order; the first is the default.
    certificates: Vec<LoadedCertificate>,
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let default = self.certificates.first().map(|c| Arc::clone(&c.key));
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
