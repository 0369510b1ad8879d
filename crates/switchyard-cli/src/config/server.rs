//! `[server]`: the settings of the listeners, checked and turned into the
//! library's `ServerOptions` parts (HTTP/2 limits, the connection limit,
//! the client's identity, path normalization). `build.rs` assembles them.

use std::net::IpAddr;

use ipnet::IpNet;
use switchyard::path::PathRules;
use switchyard::proxy::identity::{ClientIdentity, ForwardedStyle};
use toml::Spanned;

use super::file::{ForwardedName, Http2Section, ServerSection};
use super::{ConfigError, Source};

/// `[server] normalize_path`, `merge_slashes` and `escaped_slashes`.
pub(super) fn path_rules(server: &ServerSection) -> PathRules {
    PathRules {
        normalize: server.normalize_path,
        merge_slashes: server.merge_slashes,
        escaped_slashes: server.escaped_slashes.into(),
    }
}

/// `[server.http2]`, checked.
pub(super) fn http2_options(
    source: &Source<'_>,
    section: &Http2Section,
) -> Result<switchyard::server::Http2Options, ConfigError> {
    if section.max_concurrent_streams == 0 {
        let message = "must be at least 1 (0 would refuse every request)";
        return Err(source.error(None, "server.http2.max_concurrent_streams", message));
    }
    let max_header_list_size = u32::try_from(section.max_header_list_size.0)
        .ok()
        .filter(|size| *size >= 1024)
        .ok_or_else(|| {
            source.error(
                None,
                "server.http2.max_header_list_size",
                "must be between 1KiB and 4GiB",
            )
        })?;
    Ok(switchyard::server::Http2Options {
        max_concurrent_streams: section.max_concurrent_streams,
        max_header_list_size,
        max_pending_accept_reset_streams: section.max_pending_accept_reset_streams,
        max_local_error_reset_streams: section.max_local_error_reset_streams,
        keep_alive_interval: Some(section.keep_alive_interval.0).filter(|d| !d.is_zero()),
        keep_alive_timeout: section.keep_alive_timeout.0,
        idle_timeout: Some(section.idle_timeout.0).filter(|d| !d.is_zero()),
    })
}

/// `[server] max_connections`, at least 1; by default from the open-file limit.
pub(super) fn max_connections(
    source: &Source<'_>,
    given: Option<usize>,
) -> Result<usize, ConfigError> {
    match given {
        Some(0) => Err(source.error(
            None,
            "server.max_connections",
            "must be at least 1 (leave it out for the default from the open-file limit)",
        )),
        Some(n) => Ok(n),
        None => Ok(crate::limits::default_max_connections()),
    }
}

/// `[server] forwarded` and `trusted_proxies`.
pub(super) fn client_identity(
    source: &Source<'_>,
    forwarded: ForwardedName,
    trusted: &[Spanned<String>],
) -> Result<ClientIdentity, ConfigError> {
    let style = match forwarded {
        ForwardedName::XForwarded => ForwardedStyle::XForwarded,
        ForwardedName::Forwarded => ForwardedStyle::Forwarded,
        ForwardedName::Both => ForwardedStyle::Both,
        ForwardedName::None => ForwardedStyle::None,
    };
    let trusted_proxies = trusted
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let text = entry.get_ref().trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    source.error(
                        Some(entry.span()),
                        &format!("server.trusted_proxies[{i}]"),
                        format!(
                            "{text:?} is not an IP address or a CIDR range such as \"10.0.0.0/8\""
                        ),
                    )
                })
        })
        .collect::<Result<Vec<IpNet>, ConfigError>>()?;
    Ok(ClientIdentity {
        style,
        trusted_proxies,
    })
}
