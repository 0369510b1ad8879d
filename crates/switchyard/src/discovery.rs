//! Service discovery: servers named `host:port`, resolved to addresses and
//! re-resolved while the proxy runs.
//!
//! A [`Resolve`] turns a [`ServerName`] into addresses; [`SystemResolver`]
//! asks the operating system (`/etc/hosts`, then DNS), the same lookup
//! every other program on the machine makes. [`Answers`] keeps the last
//! good answer for each name: a refresh that fails or comes back empty
//! keeps the previous addresses (a resolver outage must not empty a
//! group), and only a different set of addresses counts as a change, not
//! the same ones in another order.
//!
//! The system resolver does not report record TTLs, so callers re-resolve
//! on an interval of their choosing: [`FollowDns`](crate::group::FollowDns)
//! does it for an upstream group (the binary's `resolve_every`).
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use switchyard::discovery::{Answers, ServerName, SystemResolver};
//!
//! let names = [ServerName::parse("localhost:8080").map_err(std::io::Error::other)?];
//! let resolver = SystemResolver::default();
//! let answers = Answers::resolve_all(&resolver, &names).await.map_err(|(_, e)| e)?;
//! // ... later, on a timer:
//! let refresh = answers.refresh(&resolver, &names).await;
//! if !refresh.changed.is_empty() {
//!     // Rebuild the backends from `refresh.answers`.
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

/// The longest a DNS name may be.
const MAX_NAME: usize = 253;
/// The longest one label of a name may be.
const MAX_LABEL: usize = 63;

/// A server given by name: a host name and a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName {
    host: String,
    port: u16,
}

impl ServerName {
    /// Parse `host:port`. The host is kept in lower case; it must be a DNS
    /// name (letters, digits, `-` and `.`), not an IP address.
    ///
    /// ```
    /// use switchyard::discovery::ServerName;
    /// let name = ServerName::parse("API.internal:8080").unwrap();
    /// assert_eq!((name.host(), name.port()), ("api.internal", 8080));
    /// assert!(ServerName::parse("api.internal").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<ServerName, String> {
        let text = text.trim();
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err("there is no port: write host:port".to_string());
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number"))?;
        if port == 0 {
            return Err("port 0 cannot be connected to".to_string());
        }
        check_host(host).map_err(|why| format!("{host:?} is not a host name: {why}"))?;
        Ok(ServerName {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The host name, lower case.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

fn check_host(host: &str) -> Result<(), &'static str> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME {
        return Err("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err("each dot-separated part must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("use only letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part may not begin or end with '-'");
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("it is all digits and dots, an IPv4 address rather than a name");
    }
    Ok(())
}

/// A lookup in progress.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns server names into addresses. Implement it to take addresses from
/// elsewhere (a service registry, a test).
pub trait Resolve: fmt::Debug + Send + Sync {
    /// The addresses `name` stands for now, each with the port to use.
    fn resolve<'a>(&'a self, name: &'a ServerName) -> Lookup<'a>;
}

/// The operating system's resolver (`getaddrinfo`: `/etc/hosts`, then DNS),
/// on tokio's blocking pool, given up on after a timeout.
#[derive(Debug, Clone)]
pub struct SystemResolver {
    /// How long one lookup may take.
    pub timeout: Duration,
}

impl Default for SystemResolver {
    /// Lookups time out after 5 s.
    fn default() -> Self {
        SystemResolver {
            timeout: Duration::from_secs(5),
        }
    }
}

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, name: &'a ServerName) -> Lookup<'a> {
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((name.host(), name.port()));
            match tokio::time::timeout(self.timeout, lookup).await {
                Ok(found) => Ok(found?.collect()),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", self.timeout),
                )),
            }
        })
    }
}

/// The last good addresses of each name, sorted and without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    by_name: BTreeMap<ServerName, Vec<SocketAddr>>,
}

/// What a [`Answers::refresh`] found.
#[derive(Debug)]
pub struct Refresh {
    /// The answers to use from now on.
    pub answers: Answers,
    /// Names whose addresses changed.
    pub changed: Vec<ServerName>,
    /// Names whose lookup failed or came back empty; their previous
    /// addresses were kept.
    pub failed: Vec<(ServerName, io::Error)>,
}

impl Answers {
    /// Resolve every name; the first that fails or has no address is the error.
    pub async fn resolve_all(
        resolver: &dyn Resolve,
        names: &[ServerName],
    ) -> Result<Answers, (ServerName, io::Error)> {
        let mut answers = Answers::default();
        for name in names {
            let found = lookup(resolver, name)
                .await
                .map_err(|e| (name.clone(), e))?;
            answers.insert(name.clone(), found);
        }
        Ok(answers)
    }

    /// Resolve `names` again. A lookup that fails or finds nothing keeps
    /// the name's previous addresses (and is listed in `failed`).
    pub async fn refresh(&self, resolver: &dyn Resolve, names: &[ServerName]) -> Refresh {
        let mut refresh = Refresh {
            answers: self.clone(),
            changed: Vec::new(),
            failed: Vec::new(),
        };
        for name in names {
            match lookup(resolver, name).await {
                Ok(found) => {
                    if refresh.answers.insert(name.clone(), found) {
                        refresh.changed.push(name.clone());
                    }
                }
                Err(e) => refresh.failed.push((name.clone(), e)),
            }
        }
        refresh
    }

    /// Set `name`'s addresses; says whether they differ from before.
    pub fn insert(&mut self, name: ServerName, mut addresses: Vec<SocketAddr>) -> bool {
        addresses.sort_unstable();
        addresses.dedup();
        let before = self.by_name.insert(name, addresses.clone());
        before.as_ref() != Some(&addresses)
    }

    /// The addresses `name` resolved to, if it was resolved.
    pub fn get(&self, name: &ServerName) -> Option<&[SocketAddr]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// Every name with its addresses, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&ServerName, &[SocketAddr])> {
        self.by_name.iter().map(|(n, a)| (n, a.as_slice()))
    }
}

async fn lookup(resolver: &dyn Resolve, name: &ServerName) -> io::Result<Vec<SocketAddr>> {
    let found = resolver.resolve(name).await?;
    if found.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the name has no addresses",
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
