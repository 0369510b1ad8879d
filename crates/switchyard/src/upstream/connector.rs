//! Making a new connection to a peer, within its connect timeout, over TLS
//! when the peer asks for it, and naming what went wrong precisely enough
//! for `fail_to_connect`.

use std::io;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::slots::Slot;
use super::stream::UpstreamStream;
use super::{UpstreamBody, UpstreamConn};
use crate::error::{Error, ErrorKind, Result};
use crate::peer::HttpPeer;
use crate::tls::{self, UpstreamTls};

/// Connect to `peer` in the place `slot` holds under its connection limit
/// (over TLS when the peer asks for it), and set up an HTTP/1.1 client
/// connection on its own task.
pub(crate) async fn connect(peer: &HttpPeer, slot: Slot) -> Result<UpstreamConn> {
    let stream = tcp_connect(peer).await?;
    let (sender, task) = if peer.tls {
        // Boxed: a TLS handshake's state is tens of KB, and every request's
        // future (moved whole when it starts) would carry room for it.
        Box::pin(async {
            let stream = tls_handshake(peer, stream).await?;
            http1_handshake(peer, stream).await
        })
        .await?
    } else {
        http1_handshake(peer, stream).await?
    };
    Ok(UpstreamConn {
        sender,
        task,
        key: peer.pool_key(),
        idle_timeout: peer.options.idle_timeout,
        max_idle: peer.options.max_idle,
        reused: false,
        reusable: true,
        slot,
    })
}

/// hyper's HTTP/1.1 client over `stream`, its connection driven on a task.
async fn http1_handshake<S>(
    peer: &HttpPeer,
    stream: S,
) -> Result<(http1::SendRequest<UpstreamBody>, AbortHandle)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(UpstreamStream::new(stream)))
        .await
        .map_err(|e| Error::because(ErrorKind::ConnectError, "HTTP/1.1 handshake", e))?;
    let address = peer.address;
    let task = tokio::spawn(async move {
        // With upgrades: a 101 hands the socket over instead of closing it.
        if let Err(e) = connection.with_upgrades().await {
            debug!(upstream = %address, error = %e, "upstream connection ended with an error");
        }
    });
    Ok((sender, task.abort_handle()))
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
    match tokio::time::timeout(timeout, settings.connector().connect(name, stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(tls::handshake_error(e)),
        Err(_) => Err(Error::explain(
            ErrorKind::ConnectTimedOut,
            format!("no TLS handshake within {timeout:?}"),
        )),
    }
}

/// A new TCP connection to `peer`, within its connect timeout.
pub(crate) async fn tcp_connect(peer: &HttpPeer) -> Result<TcpStream> {
    let timeout = peer.options.connect_timeout;
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(peer.address)).await {
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
    Error::because(kind, "TCP connect", e)
}
