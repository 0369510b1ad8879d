//! Making a [`ProxyServer`]: binding an address, or adopting a socket
//! already listening (inherited in a binary upgrade, bound by a
//! supervisor, a Unix socket), and handing a duplicate of its socket on.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::socket::ServerListener;
use super::{ConnectionCounts, ListenAddr, Listening, ProxyServer, ServerOptions, UNIX_CLIENT};
use crate::error::{Error, ErrorKind, Result};
use crate::proxy::ProxyHttp;
use crate::upstream::pool::Pool;

impl<P: ProxyHttp> ProxyServer<P> {
    /// Bind `addr` for `proxy`. Port 0 picks a free port; see [`local_addr`](Self::local_addr).
    pub async fn bind(addr: SocketAddr, proxy: P, options: ServerOptions) -> Result<Self> {
        let bound = if options.reuse_port {
            reusing_port(addr)
        } else {
            TcpListener::bind(addr).await
        };
        let listener =
            bound.map_err(|e| Error::because(ErrorKind::Internal, format!("binding {addr}"), e))?;
        Self::serving(ServerListener::Tcp(listener), proxy, options)
    }

    /// Serve a socket already listening (TCP or Unix): one inherited from
    /// the process this one replaces (a binary upgrade), or bound by a
    /// supervisor or by [`bind_unix`](super::bind_unix). Call it on the runtime that will
    /// serve it.
    pub fn from_listener(
        listener: impl Into<Listening>,
        proxy: P,
        options: ServerOptions,
    ) -> Result<Self> {
        let listener = listener
            .into()
            .into_tokio()
            .map_err(|e| Error::because(ErrorKind::Internal, "adopting a listening socket", e))?;
        Self::serving(listener, proxy, options)
    }

    fn serving(listener: ServerListener, proxy: P, options: ServerOptions) -> Result<Self> {
        let local_addr = match listener.listen_addr() {
            Ok(ListenAddr::Tcp(addr)) => addr,
            Ok(ListenAddr::Unix(_)) => UNIX_CLIENT,
            Err(e) => {
                return Err(Error::because(
                    ErrorKind::Internal,
                    "reading the bound address",
                    e,
                ));
            }
        };
        Ok(ProxyServer {
            listener,
            local_addr,
            proxy: Arc::new(proxy),
            options,
            shutdown: watch::channel(false).0,
            pool: Pool::start(),
            counts: ConnectionCounts::default(),
            tls: None,
        })
    }

    /// A duplicate of the listening socket (the same socket, another file
    /// descriptor), to hand to a process that takes over from this one:
    /// connections waiting in its backlog are then accepted by whichever
    /// process still serves it. Close it when done: while it is open the
    /// port stays bound.
    pub fn listening_socket(&self) -> std::io::Result<Listening> {
        self.listener.duplicate()
    }

    /// Where the server listens: its TCP address (see
    /// [`local_addr`](Self::local_addr)) or its Unix socket's path.
    pub fn listen_addr(&self) -> std::io::Result<ListenAddr> {
        self.listener.listen_addr()
    }
}

/// A listening socket on `addr` that other sockets with `SO_REUSEPORT`
/// may share (`SO_REUSEADDR` too, as `TcpListener::bind` sets it): one
/// more for a worker thread, to serve with [`ProxyServer::from_listener`]
/// or [`Workers::serve_listeners`](super::Workers::serve_listeners). Call it on a runtime.
pub fn bind_reusing_port(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    reusing_port(addr)?.into_std()
}

fn reusing_port(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // The backlog `TcpListener::bind` uses.
    socket.listen(1024)
}
