//! TLS on both sides, with rustls and its ring provider: a listener's
//! certificates ([`ServerTls`]) and the trust settings for HTTPS upstreams
//! ([`UpstreamTls`]).
//!
//! Files are PEM. Everything is read and checked when loaded (a missing or
//! unreadable file, a key that does not match its certificate, an expired
//! certificate), so a mistake is an error naming the file at start or on a
//! reload (which then keeps what it had), never a failed handshake later.
//! TLS 1.2 and 1.3 only. A listener offers ALPN `h2` and `http/1.1`; upstream
//! connections offer what the peer's [`UpstreamProtocol`](crate::UpstreamProtocol)
//! asks for.

mod certs;
mod client;
mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;

pub use certs::CertificateFiles;
pub use client::{UpstreamTls, UpstreamTlsSettings};
pub(crate) use server::is_acme_validation;
pub use server::{ServerTls, ServerTlsSettings};

pub(crate) use certs::tls_config_error;
pub(crate) use client::{handshake_error, server_name};

use crate::error::{Error, ErrorKind, Result};

/// The ALPN name of HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";
/// The ALPN name of HTTP/2 over TLS.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// The crypto provider of every TLS configuration here (ring: it builds
/// with the Rust toolchain and a C compiler, nothing more).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA certificates in the PEM file at `path` (at least one).
fn roots_from_file(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs::load_chain(path)? {
        roots
            .add(cert)
            .map_err(|e| tls_config_error(format!("a CA certificate in {}", path.display()), e))?;
    }
    if roots.is_empty() {
        return Err(Error::explain(
            ErrorKind::Internal,
            format!("{} holds no usable CA certificate", path.display()),
        ));
    }
    Ok(roots)
}
