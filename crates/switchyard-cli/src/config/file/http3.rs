//! `[server.http3]` as the file spells it (`config/http3.rs` checks it).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::super::units::Dur;

/// `[server.http3]`: HTTP/3 (QUIC, UDP) listeners, with the certificates of
/// `[server.tls]`.
///
/// ```toml
/// [server.http3]
/// listen = ["0.0.0.0:443"]
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Http3Section {
    /// UDP addresses to serve HTTP/3 on, `ip:port`.
    pub listen: Vec<Spanned<String>>,
    /// Requests one connection may have open at once.
    #[serde(default = "max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// A connection with no packet for this long is closed.
    #[serde(default = "idle_timeout")]
    pub idle_timeout: Dur,
    /// The largest UDP payload accepted and sent (1200 to 65527).
    #[serde(default = "max_udp_payload")]
    pub max_udp_payload: u16,
    /// Connections one client IP address may have open at once.
    #[serde(default = "max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Handshakes in progress beyond which new clients must validate their
    /// address with a Retry token.
    #[serde(default = "retry_threshold")]
    pub retry_threshold: usize,
}

fn library() -> switchyard::server::Http3Options {
    switchyard::server::Http3Options::default()
}
fn max_concurrent_streams() -> u32 {
    library().max_concurrent_streams
}
fn idle_timeout() -> Dur {
    Dur(library().idle_timeout)
}
fn max_udp_payload() -> u16 {
    library().max_udp_payload
}
fn max_connections_per_client() -> usize {
    library().max_connections_per_client
}
fn retry_threshold() -> usize {
    library().retry_threshold
}

impl Http3Section {
    /// HTTP/3 on `listen` with every limit at its default.
    pub fn on(listen: Vec<Spanned<String>>) -> Self {
        Http3Section {
            listen,
            max_concurrent_streams: max_concurrent_streams(),
            idle_timeout: idle_timeout(),
            max_udp_payload: max_udp_payload(),
            max_connections_per_client: max_connections_per_client(),
            retry_threshold: retry_threshold(),
        }
    }
}
