//! A client's HTTP/1.1 connection, served with Switchyard's own codec
//! (`crate::h1`): read a request head, run the exchange (`exchange.rs`),
//! and again while the connection is kept; hand the socket to the tunnel
//! after a 101.
//!
//! A head that is malformed gets 400, one over the limits 431 (414 for a
//! target over 65,534 bytes), and the connection closes. A client has
//! `header_read_timeout` to send each head, counted from the moment the
//! connection is ready for it, so an idle keep-alive connection closes
//! after that long. A connection quiet for `park_idle_after` between
//! requests gives its buffers back and waits for the socket to become
//! readable with no buffer at all ("parked"). At shutdown, an idle
//! connection closes at once and a busy one after its exchange.

mod exchange;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tracing::debug;

use self::exchange::{Ended, Exchange, Inbound};
use self::wire::Wire;
use super::connection::ClientStream;
use super::counts::{ConnectionCounts, Counted};
use crate::body::client::{ClientBody, Feed};
use crate::h1::parse_request::{self, HeadLimits, ParsedRequest};
use crate::h1::request::BodySize;
use crate::h1::write_response::{Answering, encode_head};
use crate::h1::{CodecError, CodecErrorKind};
use crate::proxy::identity::ClientAddr;
use crate::proxy::{EngineShared, ProxyHttp, TunnelSlot, handle};

/// How a server treats its clients' HTTP/1.1 connections.
#[derive(Debug, Clone, Copy)]
pub(super) struct Http1Settings {
    pub(super) limits: HeadLimits,
    /// Time to send each request head, idle keep-alive time included.
    pub(super) header_read_timeout: Duration,
    /// Give the buffers back after this long without a request.
    pub(super) park_idle_after: Option<Duration>,
    /// Close a connection whose client takes no response bytes this long.
    pub(super) write_timeout: Duration,
    /// How much to read at once.
    pub(super) chunk: usize,
}

/// What serving a connection needs from its server.
pub(super) struct Serving<'a, P> {
    pub(super) proxy: &'a Arc<P>,
    pub(super) shared: &'a Arc<EngineShared>,
    pub(super) settings: &'a Http1Settings,
    pub(super) counts: &'a ConnectionCounts,
    /// Notified (all waiters at once) when the server stops.
    pub(super) stopping: &'a Notify,
}

/// What waiting for a request head came to. Only ever returned, never
/// kept across a wait: boxing the head would cost an allocation a request.
#[allow(clippy::large_enum_variant)]
enum NextHead {
    Parsed(ParsedRequest),
    /// The head is malformed or over the limits: answer, then close.
    Refused(CodecError),
    /// The client closed, idled out, or the server is stopping.
    Over,
}

/// Serve `stream` until it closes, idles out, or `stop` is raised.
///
/// An `async` block rather than an `async fn`, so that the arguments are
/// kept once (rust-lang/rust#62958): an idle connection's task holds this
/// state for as long as the connection lives.
#[allow(clippy::manual_async_fn)]
pub(super) fn serve<'a, P: ProxyHttp>(
    serving: Serving<'a, P>,
    stream: ClientStream,
    client: ClientAddr,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'a {
    // Made before the block, so that the block keeps it once (what a block
    // captures keeps its room even after it is moved out).
    let mut wire = Wire::new(stream, serving.settings.chunk);
    async move {
        let _open = serving.counts.opened();
        // Created before the server could be seen running: a stop sent
        // after this wakes it, one sent before is in `stop`'s value.
        let stop_wait = std::pin::pin!(serving.stopping.notified());
        let timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
        let mut waiting = Waiting::new(serving.settings, serving.counts, stop, stop_wait, timer);
        let end = loop {
            let parsed = match std::future::poll_fn(|cx| waiting.poll_head(&mut wire, cx)).await {
                NextHead::Parsed(parsed) => parsed,
                NextHead::Refused(e) => break End::Refuse(e),
                NextHead::Over => break End::Close,
            };
            // Boxed: an exchange is large, and the state of an idle
            // connection's task must not keep room for one.
            let mut exchange = Box::new(start(&serving, parsed, &client));
            let ended = std::future::poll_fn(|cx| {
                let stopping = waiting.stopping();
                let polled = exchange.poll(&mut wire, cx, stopping);
                if polled.is_pending() && waiting.poll_write_stall(wire.write_blocked(), cx) {
                    debug!("the client took no response bytes within the write timeout");
                    return Poll::Ready(Ended::Closed);
                }
                polled
            })
            .await;
            waiting.write_armed = false;
            drop(exchange);
            match ended {
                Ended::Answered { keep_alive: true } if !waiting.stopping() => {}
                Ended::Answered { .. } => break End::Close,
                Ended::Closed => break End::Drop,
                Ended::Upgraded(tunnel) => break End::Tunnel(tunnel),
            }
        };
        // Boxed: each happens once, at the end, and the task's state should
        // keep no room for it meanwhile.
        match end {
            End::Refuse(e) => {
                let write_timeout = serving.settings.write_timeout;
                Box::pin(refuse(wire, e, write_timeout)).await;
            }
            End::Close => Box::pin(close(wire)).await,
            End::Tunnel(tunnel) => Box::pin(run_tunnel(wire, tunnel)).await,
            End::Drop => {}
        }
    }
}

/// How a connection ends.
enum End {
    /// Answer a refused head, then close.
    Refuse(CodecError),
    /// Close politely.
    Close,
    /// Run the tunnel a 101 opened.
    Tunnel(TunnelSlot),
    /// Just drop the socket (the client is gone, or a write failed).
    Drop,
}

/// Hand the request to its engine; the exchange that answers it.
fn start<P: ProxyHttp>(
    serving: &Serving<'_, P>,
    parsed: ParsedRequest,
    client: &ClientAddr,
) -> Exchange {
    let ParsedRequest {
        head,
        body,
        keep_alive,
        expect_continue,
        accepts_trailers,
    } = parsed;
    let answering = Answering::new(&head.method, head.version, accepts_trailers);
    let (body, inbound) = if body.is_end() {
        (ClientBody::Empty, None)
    } else {
        let (feed, body_half) = Feed::new(body.size_hint().exact());
        let inbound = Inbound {
            feed,
            decoder: body,
            expect_continue,
            done: false,
        };
        (ClientBody::Http1(body_half), Some(inbound))
    };
    let handling = handle(
        Arc::clone(serving.proxy),
        Arc::clone(serving.shared),
        Request::from_parts(head, body),
        client.clone(),
    );
    Exchange::new(handling, inbound, answering, keep_alive)
}

/// Answer a refused head (400, 431 or 414) and close.
async fn refuse(mut wire: Wire, e: CodecError, write_timeout: Duration) {
    let status = match e.kind() {
        CodecErrorKind::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        CodecErrorKind::TargetTooLong => StatusCode::URI_TOO_LONG,
        _ => StatusCode::BAD_REQUEST,
    };
    debug!(error = %e, %status, "refused a client's request head");
    let (mut head, ()) = http::Response::new(()).into_parts();
    head.status = status;
    let answering = Answering::new(&http::Method::GET, http::Version::HTTP_11, false);
    encode_head(&mut head, BodySize::Empty, answering, false, wire.out());
    let written = tokio::time::timeout(
        write_timeout,
        std::future::poll_fn(|cx| wire.poll_write_out(cx)),
    );
    if matches!(written.await, Ok(Ok(()))) {
        close(wire).await;
    }
}

/// After a 101: join the client's connection to the upstream's, bytes the
/// client sent past its request first (the new protocol's).
async fn run_tunnel(wire: Wire, tunnel: TunnelSlot) {
    let (stream, unread) = wire.into_parts();
    if let Some(tunnel) = tunnel.take() {
        tunnel.run(stream.with_unread(unread)).await;
    }
}

/// Close the connection politely (TLS says `close_notify`).
async fn close(wire: Wire) {
    let (mut stream, _) = wire.into_parts();
    let _ = stream.shutdown().await;
}

/// Waiting for a request head: the deadline, parking, and the server's
/// stop. It lives in the connection's task (no allocation of its own).
struct Waiting<'a, 'w> {
    settings: &'a Http1Settings,
    counts: &'a ConnectionCounts,
    /// Looked at for a change (a version number: cheaper than polling
    /// the wait below at every wake-up of the connection).
    stop: watch::Receiver<bool>,
    /// Wakes the connection when the server stops; polled once.
    stop_wait: Pin<&'w mut Notified<'a>>,
    stop_wait_polled: bool,
    stop_seen: bool,
    /// A request came on this connection. Until one has (or it parks), a
    /// stop does not close it: the client connected before the server
    /// stopped accepting and is about to send its request.
    had_request: bool,
    /// The head's deadline, or parking's before it; or a stalled write's.
    timer: Pin<&'w mut Sleep>,
    /// When the current head's time is up.
    head_deadline: Instant,
    /// The timer is set for the current wait.
    armed: bool,
    /// The timer is set for a write the client does not take.
    write_armed: bool,
    /// Counts this connection as parked while it is.
    parked: Option<Counted>,
}

impl<'a, 'w> Waiting<'a, 'w> {
    fn new(
        settings: &'a Http1Settings,
        counts: &'a ConnectionCounts,
        stop: watch::Receiver<bool>,
        stop_wait: Pin<&'w mut Notified<'a>>,
        timer: Pin<&'w mut Sleep>,
    ) -> Self {
        // Stopped before this connection began: a change it will not see.
        let stop_seen = *stop.borrow();
        Waiting {
            settings,
            counts,
            stop,
            stop_wait,
            stop_wait_polled: false,
            stop_seen,
            had_request: false,
            timer,
            head_deadline: Instant::now(),
            armed: false,
            write_armed: false,
            parked: None,
        }
    }

    /// Whether the server is shutting down (an exchange is woken by its
    /// own work, and finishes before the connection closes).
    fn stopping(&mut self) -> bool {
        if !self.stop_seen {
            match self.stop.has_changed() {
                Ok(false) => {}
                Ok(true) => self.stop_seen = *self.stop.borrow_and_update(),
                // The server is gone: as good as stopping.
                Err(_) => self.stop_seen = true,
            }
        }
        self.stop_seen
    }

    /// Wait for the next request head on `wire`.
    fn poll_head(&mut self, wire: &mut Wire, cx: &mut Context<'_>) -> Poll<NextHead> {
        loop {
            if !wire.read.is_empty() {
                match parse_request::parse(&mut wire.read, self.settings.limits) {
                    Ok(Some(parsed)) => {
                        self.done_waiting();
                        self.had_request = true;
                        return Poll::Ready(NextHead::Parsed(parsed));
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(NextHead::Refused(e)),
                }
            }
            // Read before looking at the stop: a request already sent is
            // answered, not cut off.
            match self.poll_read(wire, cx) {
                Poll::Ready(Some(())) => continue,
                Poll::Ready(None) => return Poll::Ready(NextHead::Over),
                Poll::Pending => {}
            }
            // A connection that has had no request is about to send one,
            // unless it has been quiet long enough to park.
            let idle = self.had_request || self.parked.is_some();
            if wire.read.is_empty() && idle && self.poll_stopped(cx) {
                return Poll::Ready(NextHead::Over);
            }
            match self.poll_timer(wire, cx) {
                Poll::Ready(true) => continue,
                Poll::Ready(false) => return Poll::Ready(NextHead::Over),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Whether the server is stopping; if not, the connection's task is
    /// woken when it does.
    fn poll_stopped(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.stop_wait_polled {
            // Its waker stays registered: the same task polls every time.
            self.stop_wait_polled = true;
            self.stop_seen |= self.stop_wait.as_mut().poll(cx).is_ready();
        }
        self.stopping()
    }

    /// Read more of the head: `Some` when bytes came, `None` when the
    /// client closed or the socket failed. A parked connection first waits
    /// for the socket to be readable, so it takes a buffer only then (it
    /// parked after a read found nothing, so nothing waits above the
    /// socket, in TLS or in bytes read before the first head).
    fn poll_read(&mut self, wire: &mut Wire, cx: &mut Context<'_>) -> Poll<Option<()>> {
        if self.parked.is_some()
            && wire.released()
            && std::task::ready!(wire.stream.poll_read_ready(cx)).is_err()
        {
            return Poll::Ready(None);
        }
        match std::task::ready!(wire.poll_read_some(cx)) {
            Ok(0) => {
                if !wire.read.is_empty() {
                    debug!("client closed the connection inside a request head");
                }
                Poll::Ready(None)
            }
            Ok(_) => Poll::Ready(Some(())),
            Err(e) => {
                debug!(error = %e, "reading a request head failed");
                Poll::Ready(None)
            }
        }
    }

    /// Run the wait's timer: Ready(true) when it parked the connection and
    /// was set again, Ready(false) when the head's time is up.
    fn poll_timer(&mut self, wire: &mut Wire, cx: &mut Context<'_>) -> Poll<bool> {
        if !self.armed {
            self.armed = true;
            let now = Instant::now();
            let deadline = now + self.settings.header_read_timeout;
            let first = match self.settings.park_idle_after {
                Some(park) if self.parked.is_none() => deadline.min(now + park),
                _ => deadline,
            };
            self.timer.as_mut().reset(first);
            self.head_deadline = deadline;
        }
        std::task::ready!(self.timer.as_mut().poll(cx));
        if self.timer.deadline() >= self.head_deadline {
            return Poll::Ready(false);
        }
        // Quiet since the park time: give the buffers back, if nothing of
        // a head has come, and wait for the rest of the head's time.
        if wire.release() {
            self.parked = Some(self.counts.parked_now());
        }
        self.counts.hand_back();
        let deadline = self.head_deadline;
        self.timer.as_mut().reset(deadline);
        Poll::Ready(true)
    }

    /// Whether the client has taken nothing of a write for the write
    /// timeout (the timer, free during an exchange, counts from the moment
    /// a write found the socket full and is set again after any progress).
    fn poll_write_stall(&mut self, blocked: bool, cx: &mut Context<'_>) -> bool {
        if !blocked {
            self.write_armed = false;
            return false;
        }
        if !self.write_armed {
            self.write_armed = true;
            let deadline = Instant::now() + self.settings.write_timeout;
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// A head came: the next wait starts afresh.
    fn done_waiting(&mut self) {
        self.armed = false;
        self.parked = None;
    }
}

#[cfg(test)]
mod tests;
