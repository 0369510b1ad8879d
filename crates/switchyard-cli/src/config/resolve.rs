//! Servers given by name: telling `ip:port` from `host:port`, and resolving
//! the names when a config is loaded. Loading blocks (it runs before
//! serving, or off the serving threads on a reload); while serving, names
//! are re-resolved by `serve.rs` through the library's async resolver.

use std::net::{SocketAddr, ToSocketAddrs};

use switchyard::PeerAddr;
use switchyard::discovery::{Answers, ServerName};

use super::file::{FileConfig, ServerEntry};
use super::protocol::Scheme;
use super::{ConfigError, Source};

/// A server entry's address: an IP address or Unix socket, or a name to
/// resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ServerAddr {
    /// `ip:port` or `unix:/path`.
    Ip(PeerAddr),
    /// `host:port`.
    Name(ServerName),
}

impl ServerAddr {
    /// Read `text` as `ip:port` or `unix:/path`, else as `host:port`.
    pub(super) fn parse(text: &str) -> Result<ServerAddr, String> {
        if text.contains("://") {
            return Err(format!(
                "{text:?}: only http://, https:// and h2c:// servers are supported"
            ));
        }
        if text.trim().starts_with("unix:") {
            return text.parse().map(ServerAddr::Ip);
        }
        if let Ok(addr) = text.trim().parse::<SocketAddr>() {
            return Ok(ServerAddr::Ip(addr.into()));
        }
        ServerName::parse(text)
            .map(ServerAddr::Name)
            .map_err(|why| format!("{text:?} is not ip:port or host:port: {why}"))
    }
}

/// The address text (without its scheme) and weight of an entry.
pub(super) fn entry_parts(entry: &ServerEntry) -> (&str, u32) {
    let (text, weight) = match entry {
        ServerEntry::Addr(addr) => (addr.as_str(), 1),
        ServerEntry::Weighted(server) => (server.addr.as_str(), server.weight),
    };
    (Scheme::split(text).1, weight)
}

/// How an entry is written: `http://` (or no scheme), `https://` or `h2c://`.
pub(super) fn entry_scheme(entry: &ServerEntry) -> Scheme {
    let text = match entry {
        ServerEntry::Addr(addr) => addr.as_str(),
        ServerEntry::Weighted(server) => server.addr.as_str(),
    };
    Scheme::split(text).0
}

/// Resolve every server name in `file` with the system resolver. A name
/// that does not resolve keeps its addresses in `previous` if it has some
/// there (with a note saying so), else it is an error. Entries that are not
/// addresses at all are left for the build to report.
pub(super) fn resolve_names(
    file: &FileConfig,
    source: &Source<'_>,
    previous: &Answers,
) -> Result<(Answers, Vec<String>), ConfigError> {
    let mut answers = Answers::default();
    let mut notes = Vec::new();
    for (group, section) in &file.upstreams {
        let lists = [("servers", &section.servers), ("backup", &section.backup)];
        for (list, entries) in lists {
            for (i, entry) in entries.iter().enumerate() {
                let (text, _) = entry_parts(entry.get_ref());
                let Ok(ServerAddr::Name(name)) = ServerAddr::parse(text) else {
                    continue;
                };
                if answers.get(&name).is_some() {
                    continue;
                }
                let found = match (resolve_now(&name), previous.get(&name)) {
                    (Ok(found), _) => found,
                    (Err(why), Some(kept)) => {
                        notes.push(format!(
                            "cannot resolve {name} ({why}); keeping its previous addresses"
                        ));
                        kept.to_vec()
                    }
                    (Err(why), None) => {
                        let key = format!("upstreams.{group}.{list}[{i}]");
                        let message = format!("cannot resolve {name}: {why}");
                        return Err(source.error(Some(entry.span()), &key, message));
                    }
                };
                answers.insert(name, found);
            }
        }
    }
    Ok((answers, notes))
}

fn resolve_now(name: &ServerName) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> = (name.host(), name.port())
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    if found.is_empty() {
        return Err("the name has no addresses".to_string());
    }
    Ok(found)
}
