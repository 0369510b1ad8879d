//! What a server listens on and what it accepts: a TCP socket, or a Unix
//! domain socket (for a proxy or load balancer on the same host). A client
//! of a Unix socket has no address of its own: it is local, and is given
//! [`UNIX_CLIENT`] (`127.0.0.1:0`) wherever a client address is needed
//! (logs, forwarding headers, `trusted_proxies`), unless a PROXY header
//! names the client.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// The address a client of a Unix socket listener is given: local, port 0.
pub const UNIX_CLIENT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// Where a server listens: `ip:port`, or `unix:/path` for a Unix domain
/// socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix domain socket's path.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match crate::peer_addr::unix_path(text) {
            Some(path) => Ok(ListenAddr::Unix(path?.to_path_buf())),
            None => text.parse().map(ListenAddr::Tcp).map_err(|_| {
                format!("{text:?} is not ip:port or unix:/path (e.g. \"127.0.0.1:8080\")")
            }),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listening socket, not yet served: to hand to
/// [`ProxyServer::from_listener`](super::ProxyServer::from_listener) or
/// [`Workers::serve_listeners`](super::Workers::serve_listeners), or to
/// another process.
#[derive(Debug)]
pub enum Listening {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A Unix domain socket listener.
    Unix(std::os::unix::net::UnixListener),
}

impl From<std::net::TcpListener> for Listening {
    fn from(listener: std::net::TcpListener) -> Self {
        Listening::Tcp(listener)
    }
}

impl From<std::os::unix::net::UnixListener> for Listening {
    fn from(listener: std::os::unix::net::UnixListener) -> Self {
        Listening::Unix(listener)
    }
}

impl Listening {
    /// Another descriptor of the same socket.
    pub fn try_clone(&self) -> io::Result<Listening> {
        Ok(match self {
            Listening::Tcp(listener) => Listening::Tcp(listener.try_clone()?),
            Listening::Unix(listener) => Listening::Unix(listener.try_clone()?),
        })
    }

    /// Serve it on the current runtime.
    pub(super) fn into_tokio(self) -> io::Result<ServerListener> {
        Ok(match self {
            Listening::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                ServerListener::Tcp(TcpListener::from_std(listener)?)
            }
            Listening::Unix(listener) => {
                listener.set_nonblocking(true)?;
                ServerListener::Unix(UnixListener::from_std(listener)?)
            }
        })
    }
}

impl std::os::fd::AsFd for Listening {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listening::Tcp(listener) => listener.as_fd(),
            Listening::Unix(listener) => listener.as_fd(),
        }
    }
}

/// Bind a Unix domain socket at `path`, with `mode` (e.g. `0o660`) if
/// given. A socket file left there by a process that is gone (a crash:
/// connecting is refused) is replaced; one a live process listens on is
/// not, nor one this process may not connect to (the bind fails). The file
/// stays after the listener closes: remove it when done.
///
/// The mode is set right after the bind; until then the file has the
/// process's umask (with the usual `022`, nobody else may connect).
pub async fn bind_unix(
    path: &Path,
    mode: Option<u32>,
) -> io::Result<std::os::unix::net::UnixListener> {
    remove_stale(path).await?;
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(listener)
}

/// Remove the socket file at `path` if nothing listens on it.
async fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    // Not blocking: a live listener with a full backlog answers at once.
    match UnixStream::connect(path).await {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process listens on {}", path.display()),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{} is there and may be in use: {e}", path.display()),
        )),
    }
}

/// A listener being served.
#[derive(Debug)]
pub(super) enum ServerListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl ServerListener {
    /// The next client, and its address.
    pub(super) async fn accept(&self) -> io::Result<(ClientSocket, SocketAddr)> {
        match self {
            ServerListener::Tcp(listener) => {
                let (stream, client) = listener.accept().await?;
                Ok((ClientSocket::Tcp(stream), client))
            }
            ServerListener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((ClientSocket::Unix(stream), UNIX_CLIENT))
            }
        }
    }

    /// Another descriptor of the same socket.
    pub(super) fn duplicate(&self) -> io::Result<Listening> {
        use std::os::fd::AsFd;
        Ok(match self {
            ServerListener::Tcp(listener) => {
                Listening::Tcp(listener.as_fd().try_clone_to_owned()?.into())
            }
            ServerListener::Unix(listener) => {
                Listening::Unix(listener.as_fd().try_clone_to_owned()?.into())
            }
        })
    }

    /// Where it listens.
    pub(super) fn listen_addr(&self) -> io::Result<ListenAddr> {
        match self {
            ServerListener::Tcp(listener) => listener.local_addr().map(ListenAddr::Tcp),
            ServerListener::Unix(listener) => {
                let addr = listener.local_addr()?;
                let path = addr.as_pathname().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "an unnamed Unix socket")
                })?;
                Ok(ListenAddr::Unix(path.to_path_buf()))
            }
        }
    }
}

/// A client's connection, TCP or Unix.
#[derive(Debug)]
pub(super) enum ClientSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ClientSocket {
    /// Wait until the socket is readable (without reading).
    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientSocket::Tcp(stream) => stream.poll_read_ready(cx),
            ClientSocket::Unix(stream) => stream.poll_read_ready(cx),
        }
    }

    /// No Nagle delay (TCP only: a Unix socket has none).
    pub(super) fn set_nodelay(&self) -> io::Result<()> {
        match self {
            ClientSocket::Tcp(stream) => stream.set_nodelay(true),
            ClientSocket::Unix(_) => Ok(()),
        }
    }
}

/// Forward one `AsyncRead`/`AsyncWrite` call to whichever socket it is.
macro_rules! on_socket {
    ($socket:expr, $io:ident => $call:expr) => {
        match $socket {
            ClientSocket::Tcp($io) => $call,
            ClientSocket::Unix($io) => $call,
        }
    };
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_socket!(self.get_mut(), io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_socket!(self.get_mut(), io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_socket!(self.get_mut(), io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_socket!(self, io => io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_socket!(self.get_mut(), io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_socket!(self.get_mut(), io => Pin::new(io).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::ListenAddr;

    #[test]
    fn listen_addresses_read_as_written() {
        let tcp: ListenAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(tcp.to_string(), "127.0.0.1:8080");
        let unix: ListenAddr = "unix:/run/switchyard/http.sock".parse().unwrap();
        assert_eq!(unix.to_string(), "unix:/run/switchyard/http.sock");
        assert!("unix:relative.sock".parse::<ListenAddr>().is_err());
        assert!("localhost:80".parse::<ListenAddr>().is_err());
    }
}
