//! HTTP/3 in the config file: `[server.http3]` checked, with the
//! certificates of `[server.tls]`.

use std::net::SocketAddr;

use switchyard::server::Http3Options;
use toml::Spanned;

use super::file::Http3Section;
use super::tls::{ListenerTls, listen_addrs};
use super::{ConfigError, Source};

/// The HTTP/3 listeners of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http3Listeners {
    /// UDP addresses to serve HTTP/3 on.
    pub listen: Vec<SocketAddr>,
    /// Their limits.
    pub limits: Http3Options,
}

/// Check `[server.http3]`: it needs `[server.tls]` (QUIC is always TLS).
pub(super) fn http3_listeners(
    source: &Source<'_>,
    section: &Http3Section,
    tls: Option<&ListenerTls>,
    parse_addr: impl Fn(&Spanned<String>, &str) -> Result<SocketAddr, ConfigError>,
) -> Result<Http3Listeners, ConfigError> {
    let key = "server.http3";
    let Some(tls) = tls else {
        let message = "HTTP/3 is always encrypted: add [server.tls] with a certificate (or acme)";
        return Err(source.error(None, key, message));
    };
    if tls.settings.client_ca.is_some() {
        let message = "client certificates (client_ca) are not asked for over HTTP/3 yet: remove [server.http3] or client_ca";
        return Err(source.error(None, key, message));
    }
    let listen = listen_addrs(source, key, &section.listen, "HTTP/3 (UDP)", parse_addr)?;
    if section.max_concurrent_streams == 0 {
        let message = "must be at least 1 (0 would refuse every request)";
        return Err(source.error(None, &format!("{key}.max_concurrent_streams"), message));
    }
    if !(1200..=65527).contains(&section.max_udp_payload) {
        let message = "must be between 1200 (QUIC's minimum) and 65527";
        return Err(source.error(None, &format!("{key}.max_udp_payload"), message));
    }
    if section.max_connections_per_client == 0 {
        let message = "must be at least 1";
        return Err(source.error(None, &format!("{key}.max_connections_per_client"), message));
    }
    if section.idle_timeout.0.is_zero() {
        let message = "must be more than 0s";
        return Err(source.error(None, &format!("{key}.idle_timeout"), message));
    }
    Ok(Http3Listeners {
        listen,
        limits: Http3Options {
            max_concurrent_streams: section.max_concurrent_streams,
            idle_timeout: section.idle_timeout.0,
            max_udp_payload: section.max_udp_payload,
            max_connections_per_client: section.max_connections_per_client,
            retry_threshold: section.retry_threshold,
        },
    })
}
