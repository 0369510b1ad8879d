//! Where an upstream server is: a TCP address, or a Unix domain socket's
//! path (an app server on the same host). [`PeerAddr`] is what servers are
//! known by everywhere a TCP address was: the pool, health, selection,
//! metrics, the attempt trace. It is `Copy` like a `SocketAddr`: a path is
//! interned once (the paths come from the config, so they are few) and
//! kept for the life of the process.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

/// An upstream server's address: `ip:port`, or `unix:/path`.
///
/// ```
/// use switchyard::PeerAddr;
///
/// let tcp: PeerAddr = "127.0.0.1:8000".parse().unwrap();
/// assert_eq!(tcp, "127.0.0.1:8000".parse::<std::net::SocketAddr>().unwrap());
/// let unix: PeerAddr = "unix:/run/app.sock".parse().unwrap();
/// assert_eq!(unix.to_string(), "unix:/run/app.sock");
/// assert_eq!(unix.unix_path().unwrap().to_str(), Some("/run/app.sock"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerAddr {
    /// A TCP address.
    Inet(SocketAddr),
    /// A Unix domain socket.
    Unix(UnixPath),
}

/// A Unix socket's path, interned: copying it copies a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnixPath(&'static Path);

/// Every path interned so far (each kept once, for the process's life).
static INTERNED: Mutex<BTreeSet<&'static Path>> = Mutex::new(BTreeSet::new());

/// The longest Unix socket path the kernel takes (`sun_path` is 108 bytes
/// with its terminating NUL).
pub(crate) const MAX_UNIX_PATH: usize = 107;

impl UnixPath {
    /// `path`, interned: kept for the life of the process. Intern paths
    /// from a config, never ones a request could name.
    pub fn new(path: &Path) -> UnixPath {
        let mut interned = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = interned.get(path) {
            return UnixPath(kept);
        }
        let kept: &'static Path = Box::leak(path.to_path_buf().into_boxed_path());
        interned.insert(kept);
        UnixPath(kept)
    }

    /// `path` if it was interned already (nothing is kept otherwise).
    pub fn find(path: &Path) -> Option<UnixPath> {
        let interned = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        interned.get(path).map(|kept| UnixPath(kept))
    }

    /// The path.
    pub fn path(self) -> &'static Path {
        self.0
    }
}

impl PeerAddr {
    /// `text` as [`FromStr`] reads it, but only a Unix path interned
    /// already (one some config named): for text that comes from a
    /// request, which must not grow the interned set.
    pub fn find(text: &str) -> Option<PeerAddr> {
        let text = text.trim();
        match text.strip_prefix("unix:") {
            Some(path) => UnixPath::find(Path::new(path)).map(PeerAddr::Unix),
            None => text.parse().ok().map(PeerAddr::Inet),
        }
    }

    /// The `Host` that names this server when nothing better does: its
    /// `ip:port`, or `localhost` for a Unix socket (which has no name).
    pub fn host(self) -> String {
        match self {
            PeerAddr::Inet(addr) => addr.to_string(),
            PeerAddr::Unix(_) => "localhost".to_string(),
        }
    }

    /// The TCP address, if it is one.
    pub fn inet(self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Inet(addr) => Some(addr),
            PeerAddr::Unix(_) => None,
        }
    }

    /// The Unix socket's path, if it is one.
    pub fn unix_path(self) -> Option<&'static Path> {
        match self {
            PeerAddr::Inet(_) => None,
            PeerAddr::Unix(path) => Some(path.path()),
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr::Inet(addr)
    }
}

impl PartialEq<SocketAddr> for PeerAddr {
    fn eq(&self, other: &SocketAddr) -> bool {
        *self == PeerAddr::Inet(*other)
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        match unix_path(text) {
            Some(path) => Ok(PeerAddr::Unix(UnixPath::new(path?))),
            None => text
                .parse()
                .map(PeerAddr::Inet)
                .map_err(|_| format!("{text:?} is not ip:port or unix:/path")),
        }
    }
}

/// The path of `unix:/path` text: `None` if the text does not start with
/// `unix:`, an error if the path is not absolute, too long for a socket
/// address (over 107 bytes) or holds a NUL.
pub(crate) fn unix_path(text: &str) -> Option<Result<&Path, String>> {
    let path = text.strip_prefix("unix:")?;
    Some(if path.len() > MAX_UNIX_PATH || path.contains('\0') {
        Err(format!(
            "{text:?}: a Unix socket's path is at most {MAX_UNIX_PATH} bytes, without NUL"
        ))
    } else if path.starts_with('/') {
        Ok(Path::new(path))
    } else {
        Err(format!("{text:?}: a Unix socket's path must be absolute"))
    })
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Inet(addr) => write!(f, "{addr}"),
            PeerAddr::Unix(path) => write!(f, "unix:{}", path.path().display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PeerAddr;

    #[test]
    fn a_path_is_interned_once() {
        let a: PeerAddr = "unix:/tmp/one.sock".parse().unwrap();
        let b: PeerAddr = "unix:/tmp/one.sock".parse().unwrap();
        assert_eq!(a, b);
        let (Some(pa), Some(pb)) = (a.unix_path(), b.unix_path()) else {
            panic!("unix addresses");
        };
        assert!(std::ptr::eq(pa, pb), "the same interned path");
        assert!("unix:tmp/one.sock".parse::<PeerAddr>().is_err());
        let long = format!("unix:/{}", "x".repeat(120));
        assert!(long.parse::<PeerAddr>().is_err());
        assert_eq!(PeerAddr::find("unix:/tmp/one.sock"), Some(a));
        assert_eq!(PeerAddr::find("unix:/tmp/never-named.sock"), None);
    }
}
