//! Making a new connection to a peer, within its connect timeout, over TLS
//! when the peer asks for it, in the HTTP version it asks for (or the one
//! ALPN settles on), and naming what went wrong precisely enough for
//! `fail_to_connect`.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::goaway::{GoawaySignal, GoawayWatch};
use super::http1::{Http1Conn, UpstreamIo};
use super::multiplex::{Multiplexed, Signals, StreamLimit};
use super::slots::Slot;
use super::{Link, UpstreamConn};
use crate::error::{Error, ErrorKind, Result};
use crate::peer::{HttpPeer, UpstreamProtocol};
use crate::peer_addr::PeerAddr;
use crate::tls::{self, ALPN_H2, UpstreamTls};

/// The streams a new HTTP/2 connection may open before the upstream's
/// SETTINGS say how many it allows (RFC 9113 recommends allowing at least 100).
const INITIAL_MAX_STREAMS: usize = 100;
/// How often an HTTP/2 upstream connection is PINGed, and how long the
/// answer may take before the connection is given up as dead.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Connect to `peer` in the place `slot` holds under its connection limit
/// (over TLS when the peer asks for it), and set up a client connection in
/// the peer's HTTP version on its own task. A new HTTP/2 connection comes
/// with its first stream leased.
pub(crate) async fn connect(peer: &HttpPeer, slot: Slot) -> Result<UpstreamConn> {
    if let PeerAddr::Unix(path) = peer.address {
        let stream = unix_connect(peer, path.path()).await?;
        let link = match peer.protocol {
            UpstreamProtocol::Http2 => http2_handshake(peer, stream, slot).await?,
            _ => http1_link(UpstreamIo::Unix(stream), slot),
        };
        return Ok(new_conn(peer, link));
    }
    let stream = tcp_connect(peer).await?;
    let link = if peer.tls {
        // Boxed: a TLS handshake's state is tens of KB, and every request's
        // future (moved whole when it starts) would carry room for it.
        Box::pin(async {
            let stream = tls_handshake(peer, stream).await?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
            match (h2, peer.protocol) {
                (true, _) => http2_handshake(peer, stream, slot).await,
                (false, UpstreamProtocol::Http2) => Err(Error::explain(
                    ErrorKind::TlsHandshake,
                    "upstream did not agree to HTTP/2 by ALPN (it offers no h2)",
                )),
                (false, _) => Ok(http1_link(UpstreamIo::Tls(Box::new(stream)), slot)),
            }
        })
        .await?
    } else if peer.protocol == UpstreamProtocol::Http2 {
        http2_handshake(peer, stream, slot).await?
    } else {
        http1_link(UpstreamIo::Tcp(stream), slot)
    };
    Ok(new_conn(peer, link))
}

/// A new connection's pool entry.
fn new_conn(peer: &HttpPeer, link: Link) -> UpstreamConn {
    UpstreamConn {
        link,
        key: peer.pool_key(),
        idle_timeout: peer.options.idle_timeout,
        max_idle: peer.options.max_idle,
        reused: false,
        reusable: true,
        tls: peer.tls,
    }
}

/// A new connection to the Unix socket at `path`, within the peer's
/// connect timeout. A missing socket file is a refused connect (nothing
/// listens there): retried like one, for any method. TLS is not spoken
/// over a Unix socket.
async fn unix_connect(peer: &HttpPeer, path: &std::path::Path) -> Result<UnixStream> {
    if peer.tls {
        // Not a failure of the server: nothing to retry or count.
        return Err(Error::explain(
            ErrorKind::Internal,
            format!("TLS to a Unix socket ({}) is not supported", path.display()),
        ));
    }
    let timeout = peer.options.connect_timeout;
    match tokio::time::timeout(timeout, unix_connect_waiting(path)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => Err(Error::because(
            ErrorKind::ConnectRefused,
            format!("no socket file at {}", path.display()),
            e,
        )),
        Ok(Err(e)) => Err(connect_error(e)),
        Err(_) => Err(Error::explain(
            ErrorKind::ConnectTimedOut,
            format!("no connection within {timeout:?}"),
        )),
    }
}

/// The same connection, for the next request: a new stream of a shared
/// HTTP/2 connection, leased from `conn` (`force`: even past the
/// upstream's stream limit).
pub(crate) fn stream_of(conn: &Arc<Multiplexed>, force: bool) -> Option<UpstreamConn> {
    let (sender, lease, reused) = conn.lease(force)?;
    Some(UpstreamConn {
        link: Link::Http2 { sender, lease },
        key: conn.key.clone(),
        idle_timeout: conn.idle_timeout,
        max_idle: 0,
        reused,
        reusable: true,
        tls: conn.tls,
    })
}

/// hyper's HTTP/2 client over `stream`, its connection driven on a task
/// that keeps the upstream's stream limit up to date, with its first stream.
async fn http2_handshake<S>(peer: &HttpPeer, stream: S, slot: Slot) -> Result<Link>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let goaway = Arc::new(GoawaySignal::default());
    let watched = GoawayWatch::new(stream, Arc::clone(&goaway));
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_max_send_streams(INITIAL_MAX_STREAMS)
        .max_send_buf_size(crate::buffers::H2_SEND_BUFFER)
        .initial_stream_window_size(crate::buffers::H2_STREAM_WINDOW)
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(watched))
        .await
        .map_err(|e| Error::because(ErrorKind::ConnectError, "HTTP/2 handshake", e))?;
    // The task polls the connection; a lease asks it for the upstream's
    // current stream limit (hyper keeps it up to date from SETTINGS).
    let connection = Arc::new(Mutex::new(Box::pin(connection)));
    let asked = Arc::clone(&connection);
    let max_streams: StreamLimit = Box::new(move || {
        let connection = asked.lock().unwrap_or_else(|p| p.into_inner());
        connection.current_max_send_streams()
    });
    let address = peer.address;
    let task = tokio::spawn(async move {
        let ended = std::future::poll_fn(|cx| {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            connection.as_mut().poll(cx)
        })
        .await;
        if let Err(e) = ended {
            debug!(upstream = %address, error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    let shared = Multiplexed::new(
        sender,
        task.abort_handle(),
        slot,
        peer.pool_key(),
        peer.options.idle_timeout,
        Signals {
            max_streams,
            goaway,
        },
        peer.tls,
    );
    let (sender, lease, _) = shared.lease(true).ok_or_else(|| {
        Error::explain(
            ErrorKind::ConnectError,
            "new HTTP/2 connection closed at once",
        )
    })?;
    Ok(Link::Http2 { sender, lease })
}

/// An HTTP/1.1 connection over `io` (Switchyard's codec: nothing to
/// negotiate, and no task: the requests drive it).
fn http1_link(io: UpstreamIo, slot: Slot) -> Link {
    Link::Http1 {
        conn: Box::new(Http1Conn::new(io)),
        slot,
    }
}

/// A connection outside the pool, whatever carries it.
pub(crate) trait OneOffIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> OneOffIo for T {}

/// A fresh connection to `peer`, over TCP (with its TLS handshake done) or
/// a Unix socket, for one exchange outside the pool: a health check's, a
/// mirror's copy. The error says which step failed (`connect: ...`,
/// `TLS: ...`).
pub(crate) async fn connect_once(
    peer: &HttpPeer,
) -> std::result::Result<Box<dyn OneOffIo>, String> {
    if let Some(path) = peer.address.unix_path() {
        if peer.tls {
            return Err("TLS to a Unix socket is not supported".to_string());
        }
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        return Ok(Box::new(stream));
    }
    let stream = tcp_connect(peer)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if !peer.tls {
        return Ok(Box::new(stream));
    }
    let stream = tls_handshake(peer, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Box::new(stream))
}

/// The TLS handshake over a new TCP connection, within the connect
/// timeout (counted again from the end of the TCP connect).
pub(crate) async fn tls_handshake(
    peer: &HttpPeer,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>> {
    let settings = match &peer.tls_settings {
        Some(settings) => settings.clone(),
        None => UpstreamTls::system()?,
    };
    let name = tls::server_name(&peer.sni, peer.address)?;
    let timeout = peer.options.connect_timeout;
    match tokio::time::timeout(
        timeout,
        settings.connector(peer.protocol).connect(name, stream),
    )
    .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(tls::handshake_error(e)),
        Err(_) => Err(Error::explain(
            ErrorKind::ConnectTimedOut,
            format!("no TLS handshake within {timeout:?}"),
        )),
    }
}

/// Connect to the Unix socket at `path`. A socket whose backlog is full
/// answers a non-blocking connect at once (`EAGAIN`), where TCP would wait
/// for a SYN retransmit: wait and try again, as TCP does, until the caller's
/// timeout.
async fn unix_connect_waiting(path: &std::path::Path) -> io::Result<UnixStream> {
    let mut wait = Duration::from_millis(1);
    loop {
        match UnixStream::connect(path).await {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(50));
            }
            connected => return connected,
        }
    }
}

/// A new TCP connection to `peer`, within its connect timeout.
pub(crate) async fn tcp_connect(peer: &HttpPeer) -> Result<TcpStream> {
    let timeout = peer.options.connect_timeout;
    let Some(address) = peer.address.inet() else {
        return Err(Error::explain(
            ErrorKind::ConnectError,
            format!("{} is not a TCP address", peer.address),
        ));
    };
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(connect_error(e)),
        Err(_) => {
            return Err(Error::explain(
                ErrorKind::ConnectTimedOut,
                format!("no connection within {timeout:?}"),
            ));
        }
    };
    // Small heads and bodies should leave at once, not wait for an ACK.
    stream
        .set_nodelay(true)
        .map_err(|e| Error::because(ErrorKind::ConnectError, "setting TCP_NODELAY", e))?;
    Ok(stream)
}

/// Name a failed connect by its cause.
pub(crate) fn connect_error(e: io::Error) -> Box<Error> {
    let kind = match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
        io::ErrorKind::TimedOut => ErrorKind::ConnectTimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ErrorKind::ConnectNoRoute
        }
        _ => ErrorKind::ConnectError,
    };
    Error::because(kind, "connect", e)
}
