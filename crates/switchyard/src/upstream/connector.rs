//! Making a new connection to a peer, within its connect timeout, and
//! naming what went wrong precisely enough for `fail_to_connect`.

use std::io;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use super::UpstreamConn;
use super::slots::Slot;
use super::stream::UpstreamStream;
use crate::error::{Error, ErrorKind, Result};
use crate::peer::HttpPeer;

/// Connect to `peer` in the place `slot` holds under its connection limit,
/// and set up an HTTP/1.1 client connection on its own task.
pub(crate) async fn connect(peer: &HttpPeer, slot: Slot) -> Result<UpstreamConn> {
    if peer.tls {
        return Err(Error::explain(
            ErrorKind::TlsHandshake,
            "TLS to upstreams is not supported yet (it comes with HTTP/2)",
        ));
    }
    let stream = tcp_connect(peer).await?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(UpstreamStream::new(stream)))
        .await
        .map_err(|e| Error::because(ErrorKind::ConnectError, "HTTP/1.1 handshake", e))?;
    let address = peer.address;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(upstream = %address, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(UpstreamConn {
        sender,
        task: task.abort_handle(),
        key: peer.pool_key(),
        idle_timeout: peer.options.idle_timeout,
        max_idle: peer.options.max_idle,
        reused: false,
        reusable: true,
        slot,
    })
}

async fn tcp_connect(peer: &HttpPeer) -> Result<TcpStream> {
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
