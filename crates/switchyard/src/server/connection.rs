//! A client's socket as the HTTP drivers see it ([`ClientStream`]: TLS
//! or not, a write timeout, bytes to give first), and what an HTTP/2
//! connection's driver counts of its responses ([`Activity`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::proxy_protocol::Prefixed;
use super::socket::ClientSocket;

/// The responses of a client's HTTP/2 connection, shared by its service
/// and its driver (which closes a connection idle for too long).
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Responses whose body hyper has not finished with.
    in_flight: AtomicUsize,
    /// Responses finished since the connection began.
    answered: AtomicU64,
}

impl Activity {
    /// Count a response as in flight until the returned guard drops.
    pub(super) fn start_response(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Responses finished, and whether one is in flight: unchanged between
    /// two looks, with none in flight, means nothing happened in between.
    pub(super) fn responses(&self) -> (u64, bool) {
        (
            self.answered.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed) > 0,
        )
    }
}

/// Keeps a response counted in flight; see [`Activity::start_response`].
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection from parking until hyper
/// drops it (sent, or abandoned).
#[derive(Debug)]
pub(super) struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> TrackedBody<B> {
    pub(super) fn new(inner: B, in_flight: InFlight) -> Self {
        TrackedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's socket with its write timeout (and any bytes read past a
/// PROXY header, replayed first).
type Socket = Pin<Box<TimeoutStream<Prefixed>>>;

/// What carries a client's bytes: the socket with its write timeout, TLS
/// over it, or the bare socket of a cleartext HTTP/1.1 connection (whose
/// driver times its writes itself, with the one timer it has).
enum Transport {
    Plain(Socket),
    Tls(Box<TlsStream<Socket>>),
    Bare(Prefixed),
}

/// Forward one `AsyncRead`/`AsyncWrite` call to whichever transport it is.
macro_rules! on_transport {
    ($transport:expr, $io:ident => $call:expr) => {
        match $transport {
            Transport::Plain($io) => $call,
            Transport::Tls($io) => $call,
            Transport::Bare($io) => $call,
        }
    };
}

/// A client's socket as the drivers see it: no Nagle delay, a write timeout
/// for clients that stop reading (kept by the driver itself on a bare
/// socket), TLS when the listener has it, and bytes to give first.
pub(super) struct ClientStream {
    inner: Transport,
    unread: Bytes,
    /// A cleartext connection that began with the HTTP/2 preface.
    h2: bool,
}

impl ClientStream {
    /// A cleartext client connection.
    pub(super) fn new(stream: Prefixed, write_timeout: Duration) -> Self {
        ClientStream {
            inner: Transport::Plain(socket(stream, write_timeout)),
            unread: Bytes::new(),
            h2: false,
        }
    }

    /// A cleartext client connection whose driver times its own writes.
    pub(super) fn bare(stream: Prefixed) -> Self {
        set_nodelay(&stream);
        ClientStream {
            inner: Transport::Bare(stream),
            unread: Bytes::new(),
            h2: false,
        }
    }

    /// A TLS client connection, once its handshake completed within
    /// `handshake_timeout`.
    pub(super) async fn tls(
        stream: Prefixed,
        write_timeout: Duration,
        acceptor: TlsAcceptor,
        handshake_timeout: Duration,
    ) -> io::Result<Self> {
        let socket = socket(stream, write_timeout);
        let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await;
        let tls = handshake.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {handshake_timeout:?}"),
            )
        })??;
        Ok(ClientStream {
            inner: Transport::Tls(Box::new(tls)),
            unread: Bytes::new(),
            h2: false,
        })
    }

    /// The same stream, known to carry HTTP/2 (it began with the preface).
    pub(super) fn with_h2(mut self, h2: bool) -> Self {
        self.h2 = h2;
        self
    }

    /// The same stream, giving `unread` (bytes read past a request head)
    /// first.
    pub(super) fn with_unread(mut self, unread: Bytes) -> Self {
        self.unread = unread;
        self
    }

    /// Wait until the socket is readable (without reading).
    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket().poll_read_ready(cx)
    }

    /// Whether this is a CA's `tls-alpn-01` validation handshake (ALPN
    /// `acme-tls/1`), which carries no requests.
    pub(super) fn is_acme_validation(&self) -> bool {
        match &self.inner {
            Transport::Plain(_) | Transport::Bare(_) => false,
            Transport::Tls(tls) => crate::tls::is_acme_validation(tls.get_ref().1),
        }
    }

    /// Whether the client speaks HTTP/2: chosen by ALPN, or by its preface.
    pub(super) fn speaks_h2(&self) -> bool {
        match &self.inner {
            Transport::Plain(_) | Transport::Bare(_) => self.h2,
            Transport::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }

    /// The socket under any TLS.
    fn socket(&self) -> &ClientSocket {
        match &self.inner {
            Transport::Plain(socket) => socket.get_ref().socket(),
            Transport::Bare(socket) => socket.socket(),
            Transport::Tls(tls) => tls.get_ref().0.get_ref().socket(),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
            if self.unread.is_empty() {
                // An empty slice still holds hyper's whole old read buffer.
                self.unread = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        on_transport!(&mut self.inner, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_transport!(&mut self.inner, io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_transport!(&mut self.inner, io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_transport!(&self.inner, io => io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_transport!(&mut self.inner, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_transport!(&mut self.inner, io => Pin::new(io).poll_shutdown(cx))
    }
}

/// Small responses should leave at once, not wait for an ACK.
fn set_nodelay(stream: &Prefixed) {
    if let Err(e) = stream.socket().set_nodelay() {
        debug!(error = %e, "setting TCP_NODELAY on a downstream connection");
    }
}

/// The socket with no Nagle delay and its write timeout.
fn socket(stream: Prefixed, write_timeout: Duration) -> Socket {
    set_nodelay(&stream);
    let mut inner = TimeoutStream::new(stream);
    inner.set_write_timeout(Some(write_timeout));
    Box::pin(inner)
}

/// Resolves once the server is stopping (or can no longer be told to).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: treat it as a stop.
    let _ = stop.wait_for(|stopping| *stopping).await;
}
