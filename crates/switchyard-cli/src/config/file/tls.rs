//! `[server.tls]` and `[upstreams.NAME.tls]` as the file spells them
//! (`config/tls.rs` checks them and loads the files they name).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::super::units::Dur;
use super::defaults;

/// `[server.tls]`: HTTPS listeners.
///
/// ```toml
/// [server.tls]
/// listen = ["0.0.0.0:443"]
/// cert = "site.pem"            # or several: certificates = [{ cert = "..", key = ".." }, ..]
/// key = "site.key"
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSection {
    /// Addresses to serve HTTPS on, `ip:port`.
    pub listen: Vec<Spanned<String>>,
    /// The certificate chain (PEM) of the one certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The private key (PEM) of `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Several certificates, chosen by the name the client asks for (SNI);
    /// the first (after `cert`, if given) is the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateEntry>,
    /// Require client certificates issued by a CA in this PEM file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<String>,
    /// Time a client has to complete its TLS handshake.
    #[serde(default = "defaults::tls_handshake_timeout")]
    pub handshake_timeout: Dur,
    /// Certificates obtained and renewed automatically from an ACME CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeSection>,
}

/// `[server.tls] acme = { domains = [..], email = "..", .. }`: certificates
/// from an ACME CA (Let's Encrypt by default).
///
/// ```toml
/// [server.tls]
/// listen = ["0.0.0.0:443"]
/// acme = { domains = ["example.com", "www.example.com"], email = "ops@example.com" }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The names to get certificates for (one certificate each).
    pub domains: Vec<String>,
    /// A contact address for the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The CA's directory URL.
    #[serde(default = "defaults::acme_directory")]
    pub directory: String,
    /// A PEM root to trust for the directory itself (a private or test CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_ca: Option<String>,
    /// Where the account and certificates are kept (created 0700).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// How the CA validates: `tls-alpn-01` or `http-01`.
    #[serde(default)]
    pub challenge: AcmeChallengeName,
    /// The wait after a failed attempt, doubling each time (at most 1 h,
    /// or this if longer).
    #[serde(default = "defaults::acme_retry_after")]
    pub retry_after: Dur,
}

/// `challenge = "tls-alpn-01" | "http-01"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum AcmeChallengeName {
    /// A TLS handshake on the HTTPS listener (port 443).
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// An HTTP request on a cleartext listener (port 80).
    #[serde(rename = "http-01")]
    Http01,
}

/// One certificate of a listener: `{ cert = "a.pem", key = "a.key" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// The certificate chain, PEM, leaf first.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
}

/// `[upstreams.NAME.tls]`: how to reach a group's `https://` servers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// More trusted CAs (PEM), on top of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The name sent as SNI and verified; by default each server's host
    /// name as written (an `ip:port` server: its IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Do not verify the servers' certificates (logged as a warning).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A client certificate (PEM) to present when a server asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// The private key of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}
