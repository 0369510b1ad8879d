//! One client connection's life: hyper while requests flow, a bare parked
//! socket while the connection idles.
//!
//! hyper keeps two 8 KiB buffers per HTTP/1 connection for as long as the
//! connection lives, idle or not, and has no knob to release them. A
//! keep-alive connection that has been quiet for `park_idle_after` is
//! therefore taken back from hyper (a graceful shutdown of an idle hyper
//! connection closes nothing: `poll_without_shutdown` hands the socket
//! back), held as a bare socket waiting to become readable, and given to a
//! fresh hyper connection when the client speaks again. Any bytes hyper had
//! read ahead are replayed first.
//!
//! Parking never cuts an exchange short: the connection must have answered
//! at least one request, have no response in flight, no write waiting on the
//! client, and no bytes read or written for a whole tick.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::counts::ConnectionCounts;
use super::proxy_protocol::Prefixed;
use crate::proxy::TunnelSlot;

/// What a client connection has been doing, shared by its socket, its
/// service and its driver.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Bumped on every read or write that moved bytes (or saw end of file).
    io_events: AtomicU64,
    /// Responses whose body hyper has not finished with.
    in_flight: AtomicUsize,
    /// Responses finished since the current hyper connection began.
    answered: AtomicU64,
    /// The last write found the client's socket full.
    write_blocked: AtomicBool,
    /// A 101 is on its way: the tunnel to run once hyper hands the socket back.
    tunnel: Mutex<Option<TunnelSlot>>,
}

impl Activity {
    /// Count a response as in flight until the returned guard drops.
    pub(super) fn start_response(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Run `tunnel` once the 101 is written (see [`drive`]).
    pub(super) fn expect_tunnel(&self, tunnel: TunnelSlot) {
        if let Ok(mut slot) = self.tunnel.lock() {
            *slot = Some(tunnel);
        }
    }

    fn take_tunnel(&self) -> Option<TunnelSlot> {
        self.tunnel.lock().ok().and_then(|mut slot| slot.take())
    }

    fn bump(&self) {
        self.io_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Responses finished, and whether one is in flight: unchanged between
    /// two looks, with none in flight, means nothing happened in between.
    pub(super) fn responses(&self) -> (u64, bool) {
        (
            self.answered.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed) > 0,
        )
    }

    /// True when the connection may be parked: it answered something, has
    /// nothing in flight or waiting to be written, and its I/O count is the
    /// one seen at the previous tick (`last_seen` is updated).
    fn quiet_since(&self, last_seen: &mut u64) -> bool {
        let now = self.io_events.load(Ordering::Relaxed);
        let unchanged = now == *last_seen;
        *last_seen = now;
        unchanged
            && self.answered.load(Ordering::Relaxed) > 0
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.write_blocked.load(Ordering::Relaxed)
    }
}

/// Keeps a response counted in flight; see [`Activity::start_response`].
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    /// The connection's activity this response counts in.
    pub(super) fn activity(&self) -> &Activity {
        &self.0
    }
}

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

/// What carries a client's bytes: the socket, or TLS over it.
enum Transport {
    Plain(Socket),
    Tls(Box<TlsStream<Socket>>),
}

/// Forward one `AsyncRead`/`AsyncWrite` call to whichever transport it is.
macro_rules! on_transport {
    ($transport:expr, $io:ident => $call:expr) => {
        match $transport {
            Transport::Plain($io) => $call,
            Transport::Tls($io) => $call,
        }
    };
}

/// The client socket as hyper sees it: no Nagle delay, a write timeout for
/// clients that stop reading, TLS when the listener has it, bytes to
/// replay after parking, and activity counting.
pub(super) struct ClientStream {
    inner: Transport,
    unread: Bytes,
    pub(super) activity: Arc<Activity>,
    /// A cleartext connection that began with the HTTP/2 preface.
    h2: bool,
}

impl ClientStream {
    /// A cleartext client connection.
    pub(super) fn new(stream: Prefixed, write_timeout: Duration, activity: Arc<Activity>) -> Self {
        ClientStream {
            inner: Transport::Plain(socket(stream, write_timeout)),
            unread: Bytes::new(),
            activity,
            h2: false,
        }
    }

    /// A TLS client connection, once its handshake completed within
    /// `handshake_timeout`.
    pub(super) async fn tls(
        stream: Prefixed,
        write_timeout: Duration,
        activity: Arc<Activity>,
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
            activity,
            h2: false,
        })
    }

    /// The same stream, known to carry HTTP/2 (it began with the preface).
    pub(super) fn with_h2(mut self, h2: bool) -> Self {
        self.h2 = h2;
        self
    }

    /// Whether the client speaks HTTP/2: chosen by ALPN, or by its preface.
    pub(super) fn speaks_h2(&self) -> bool {
        match &self.inner {
            Transport::Plain(_) => self.h2,
            Transport::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }

    /// The TCP socket under any TLS.
    fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Transport::Plain(socket) => socket.get_ref().tcp(),
            Transport::Tls(tls) => tls.get_ref().0.get_ref().tcp(),
        }
    }

    /// Record a write's outcome: blocked on a full socket, or bytes moved.
    fn note_write(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        self.note_flush(&result);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            self.activity.bump();
        }
        result
    }

    /// Record whether the socket refused to take more (a flush moves no
    /// new bytes, so it is not activity by itself).
    fn note_flush<T>(&self, result: &Poll<T>) {
        let blocked = result.is_pending();
        self.activity
            .write_blocked
            .store(blocked, Ordering::Relaxed);
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
        let result = on_transport!(&mut self.inner, io => Pin::new(io).poll_read(cx, buf));
        if result.is_ready() {
            self.activity.bump();
        }
        result
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = on_transport!(&mut self.inner, io => Pin::new(io).poll_write(cx, buf));
        self.note_write(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result =
            on_transport!(&mut self.inner, io => Pin::new(io).poll_write_vectored(cx, bufs));
        self.note_write(result)
    }

    fn is_write_vectored(&self) -> bool {
        on_transport!(&self.inner, io => io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = on_transport!(&mut self.inner, io => Pin::new(io).poll_flush(cx));
        self.note_flush(&result);
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_transport!(&mut self.inner, io => Pin::new(io).poll_shutdown(cx))
    }
}

/// The socket with no Nagle delay and its write timeout.
fn socket(stream: Prefixed, write_timeout: Duration) -> Socket {
    // Small responses should leave at once, not wait for an ACK.
    if let Err(e) = stream.tcp().set_nodelay(true) {
        debug!(error = %e, "setting TCP_NODELAY on a downstream connection");
    }
    let mut inner = TimeoutStream::new(stream);
    inner.set_write_timeout(Some(write_timeout));
    Box::pin(inner)
}

/// How a client connection is driven.
#[derive(Debug, Clone, Copy)]
pub(super) struct Driving {
    /// Park after this long without activity; `None` never parks.
    pub(super) park_idle_after: Option<Duration>,
    /// How long a keep-alive connection may idle in all.
    pub(super) idle_timeout: Duration,
}

/// How a hyper connection ended.
enum Ended<S> {
    /// Closed, failed, or shut down: the connection is over.
    Over,
    /// Handed back idle: park it.
    Parked(http1::Parts<TokioIo<ClientStream>, S>),
    /// Handed back after a 101: join it to the upstream.
    Upgraded(http1::Parts<TokioIo<ClientStream>, S>, TunnelSlot),
}

/// Serve one client connection until it closes, idles out, or `stop` is
/// raised (then the exchange in flight finishes and the connection closes).
///
/// An `async` block rather than an `async fn`: a parked connection's task
/// holds this state for as long as the connection lives, and an `async fn`
/// keeps its arguments twice, once as passed and once as moved into its
/// body (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)]
pub(super) fn drive<'a, S>(
    builder: &'a http1::Builder,
    mut stream: ClientStream,
    mut service: S,
    driving: Driving,
    mut stop: watch::Receiver<bool>,
    counts: &'a ConnectionCounts,
) -> impl Future<Output = ()> + 'a
where
    S: HttpService<Incoming> + Unpin + 'a,
    S::Future: Unpin,
    S::ResBody: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async move {
        let activity = Arc::clone(&stream.activity);
        let _open = counts.opened();
        loop {
            activity.answered.store(0, Ordering::Relaxed);
            let connection = Box::new(builder.serve_connection(TokioIo::new(stream), service));
            // What hyper hands back is taken apart at once: a `Parts` (or
            // an `Ended`) kept whole would hold its room in the parked state.
            let http1::Parts {
                io,
                read_buf,
                service: handed_back,
                ..
            } = match Box::pin(run_hyper(connection, &activity, driving, &mut stop)).await {
                Ended::Over => return,
                Ended::Parked(parts) => parts,
                Ended::Upgraded(parts, tunnel) => {
                    // Boxed, as above: a parked connection's task should
                    // not carry room for a tunnel's state.
                    Box::pin(run_tunnel(parts, tunnel)).await;
                    return;
                }
            };
            counts.hand_back();
            service = handed_back;
            stream = io.into_inner();
            if !read_buf.is_empty() {
                stream.unread = read_buf;
                continue;
            }
            // Even empty, hyper's leftover slice keeps its 8 KiB read buffer alive.
            drop(read_buf);
            let parked = counts.parked_now();
            let woke = wait_parked(&stream, driving, &mut stop).await;
            drop(parked);
            if !woke {
                // Idle too long or shutting down: close politely.
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// After a 101: join the client's connection to the upstream's.
async fn run_tunnel<S>(parts: http1::Parts<TokioIo<ClientStream>, S>, tunnel: TunnelSlot) {
    let mut stream = parts.io.into_inner();
    // What the client sent after its request: the new protocol's first bytes.
    stream.unread = parts.read_buf;
    if let Some(tunnel) = tunnel.take() {
        tunnel.run(stream).await;
    }
}

/// Drive one hyper connection; park it when it goes quiet.
async fn run_hyper<S>(
    mut connection: Box<http1::Connection<TokioIo<ClientStream>, S>>,
    activity: &Activity,
    driving: Driving,
    stop: &mut watch::Receiver<bool>,
) -> Ended<S>
where
    S: HttpService<Incoming> + Unpin,
    S::Future: Unpin,
    S::ResBody: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // With parking off the tick branch is disabled; the period only has to be valid.
    let park_every = driving.park_idle_after.unwrap_or(Duration::from_secs(3600));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + park_every, park_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stopping = *stop.borrow();
    let mut parking = false;
    if stopping {
        Pin::new(&mut *connection).graceful_shutdown();
    }
    let mut last_seen = u64::MAX;
    // A second receiver only to look, cheaply, whether a stop was sent.
    let probe = stop.clone();
    loop {
        tokio::select! {
            biased;
            done = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                if let Err(e) = done {
                    debug!(error = %e, "downstream connection ended with an error");
                    return Ended::Over;
                }
                if let Some(tunnel) = activity.take_tunnel() {
                    return Ended::Upgraded(connection.into_parts(), tunnel);
                }
                if parking && !stopping {
                    return Ended::Parked(connection.into_parts());
                }
                let mut stream = connection.into_parts().io.into_inner();
                let _ = stream.shutdown().await;
                return Ended::Over;
            }
            _ = Gated::new(stopped(stop), || probe.has_changed().unwrap_or(true)), if !stopping => {
                stopping = true;
                Pin::new(&mut *connection).graceful_shutdown();
            }
            _ = tick.tick(), if driving.park_idle_after.is_some() && !parking && !stopping => {
                if activity.quiet_since(&mut last_seen) {
                    parking = true;
                    Pin::new(&mut *connection).graceful_shutdown();
                }
            }
        }
    }
}

/// Wait for a parked connection to become readable. False when it idled
/// out or the server is stopping.
async fn wait_parked(
    stream: &ClientStream,
    driving: Driving,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let waited = driving.park_idle_after.unwrap_or_default();
    let left = driving.idle_timeout.saturating_sub(waited);
    let socket = stream.tcp();
    // Polled for readiness rather than awaiting `readable()`, whose future
    // is 150 bytes every parked connection would carry.
    let readable = std::future::poll_fn(|cx| socket.poll_read_ready(cx));
    tokio::select! {
        readable = readable => readable.is_ok(),
        _ = tokio::time::sleep(left) => false,
        _ = stopped(stop) => false,
    }
}

/// `inner`, polled only when `worth_polling` says something may have
/// happened (after its first poll, which registers its waker). The driver
/// polls every branch of its `select!` at each wake-up of the connection
/// (twice per request), and polling a watch channel's wait takes a lock:
/// looking at its version first does not.
struct Gated<F, P> {
    inner: Pin<Box<F>>,
    worth_polling: P,
    polled: bool,
}

impl<F: Future, P: FnMut() -> bool> Gated<F, P> {
    fn new(inner: F, worth_polling: P) -> Self {
        Gated {
            inner: Box::pin(inner),
            worth_polling,
            polled: false,
        }
    }
}

impl<F: Future, P: FnMut() -> bool + Unpin> Future for Gated<F, P> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // The same task polls again, so the waker registered first is still
        // the right one.
        if self.polled && !(self.worth_polling)() {
            return Poll::Pending;
        }
        self.polled = true;
        self.inner.as_mut().poll(cx)
    }
}

/// Resolves once the server is stopping (or can no longer be told to).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: treat it as a stop.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

#[cfg(test)]
mod tests;
