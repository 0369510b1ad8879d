//! HTTP/1.1 protocol upgrades (WebSocket first): until the upstream answers
//! `101 Switching Protocols` the request is an ordinary one under the
//! failure contract; on 101 the client's connection and the upstream's are
//! joined as a byte stream (a [`Tunnel`]) until either side closes, the
//! tunnel idles past its timeout, or the server's drain ends.
//!
//! The 101 goes to the client through hyper, which then hands the client's
//! socket back to the connection driver (`server/connection.rs`); the
//! driver finds the tunnel in the response's extensions and runs it there.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::headers::connection_tokens;
use crate::error::{Error, ErrorKind, Result};
use crate::upstream::UpstreamConn;

/// The protocol a request asks to switch to: its `Upgrade` header, when
/// `Connection` names `upgrade` too, in an HTTP/1.1 request (RFC 9110
/// section 7.8: an HTTP/1.0 request's `Upgrade` is ignored).
pub(crate) fn requested(request: &http::request::Parts) -> Option<&HeaderValue> {
    if request.version != http::Version::HTTP_11 {
        return None;
    }
    let headers = &request.headers;
    let upgrade = headers.get(header::UPGRADE)?;
    connection_tokens(headers)
        .any(|token| token.eq_ignore_ascii_case("upgrade"))
        .then_some(upgrade)
}

/// Ask the upstream to switch protocols as the client asked (the upgrade
/// headers are hop-by-hop, so they were removed with the others).
pub(crate) fn ask_upstream(upstream: &mut HeaderMap, protocol: &HeaderValue) {
    upstream.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    upstream.insert(header::UPGRADE, protocol.clone());
}

/// The 101 head for the client: the upstream's, with its `Upgrade` kept
/// and `Connection: upgrade`. A 101 the client did not ask for, or one
/// naming no protocol, is an invalid response.
pub(crate) fn switching_head(
    mut head: http::response::Parts,
    asked: Option<&HeaderValue>,
) -> Result<http::response::Parts> {
    if asked.is_none() {
        return Err(Error::explain(
            ErrorKind::InvalidResponse,
            "upstream switched protocols (101) for a request that asked for no upgrade",
        ));
    }
    let Some(protocol) = head.headers.get(header::UPGRADE).cloned() else {
        return Err(Error::explain(
            ErrorKind::InvalidResponse,
            "upstream switched protocols (101) without naming one in Upgrade",
        ));
    };
    super::headers::strip_hop_by_hop(&mut head.headers);
    head.headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    head.headers.insert(header::UPGRADE, protocol);
    Ok(head)
}

/// What became of an upgraded connection, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRecord {
    /// The protocol switched to (the `Upgrade` value), e.g. `websocket`.
    pub protocol: String,
    /// Bytes the client sent through the tunnel.
    pub to_upstream: u64,
    /// Bytes the upstream sent through the tunnel.
    pub to_client: u64,
    /// From the 101 to the close.
    pub duration: Duration,
    /// Why it closed.
    pub ended: TunnelEnd,
}

impl UpgradeRecord {
    /// A tunnel that never ran.
    pub(crate) fn not_started() -> Self {
        UpgradeRecord {
            protocol: String::new(),
            to_upstream: 0,
            to_client: 0,
            duration: Duration::ZERO,
            ended: TunnelEnd::NotStarted,
        }
    }
}

/// Why a tunnel closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunnelEnd {
    /// Both sides finished (each closed its half).
    Closed,
    /// Nothing went either way for the idle timeout.
    IdleTimeout,
    /// A side failed (reset, I/O error).
    Failed,
    /// The server shut down and its drain time ran out.
    Shutdown,
    /// The client's socket never came back from hyper.
    NotStarted,
}

impl TunnelEnd {
    /// A stable name for logs, e.g. `idle-timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelEnd::Closed => "closed",
            TunnelEnd::IdleTimeout => "idle-timeout",
            TunnelEnd::Failed => "failed",
            TunnelEnd::Shutdown => "shutdown",
            TunnelEnd::NotStarted => "not-started",
        }
    }
}

/// An upgrade waiting for the client's socket: the upstream side, how long
/// it may idle, and where to report how it ended.
#[derive(Debug)]
pub(crate) struct Tunnel {
    upstream: OnUpgrade,
    /// Keeps its place under the server's connection limit until closed.
    conn: UpstreamConn,
    protocol: String,
    idle_timeout: Duration,
    done: oneshot::Sender<UpgradeRecord>,
}

/// A [`Tunnel`] in a response's extensions, taken once by the driver.
#[derive(Debug, Clone)]
pub(crate) struct TunnelSlot(Arc<Mutex<Option<Tunnel>>>);

impl TunnelSlot {
    /// Take the tunnel out (once).
    pub(crate) fn take(&self) -> Option<Tunnel> {
        match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

impl Tunnel {
    /// A tunnel to the upstream whose 101 `upstream` resolves, and the
    /// receiver of its record once it closes.
    pub(crate) fn open(
        upstream: OnUpgrade,
        conn: UpstreamConn,
        protocol: &HeaderValue,
        idle_timeout: Duration,
    ) -> (TunnelSlot, oneshot::Receiver<UpgradeRecord>) {
        let (done, record) = oneshot::channel();
        let tunnel = Tunnel {
            upstream,
            conn,
            protocol: String::from_utf8_lossy(protocol.as_bytes()).into_owned(),
            idle_timeout,
            done,
        };
        (TunnelSlot(Arc::new(Mutex::new(Some(tunnel)))), record)
    }

    /// Join `client` to the upstream until both sides close or the tunnel
    /// idles out. If the task running it is aborted (a shutdown whose drain
    /// time ran out), it is reported as [`TunnelEnd::Shutdown`].
    pub(crate) async fn run<C>(self, client: C)
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let mut report = Report {
            done: Some(self.done),
            protocol: self.protocol,
            start: Instant::now(),
            to_upstream: Arc::new(AtomicU64::new(0)),
            to_client: Arc::new(AtomicU64::new(0)),
            ended: TunnelEnd::Shutdown,
        };
        let _conn = self.conn;
        report.ended = match self.upstream.await {
            Err(_) => TunnelEnd::Failed,
            Ok(upstream) => {
                let mut client = Counting::new(client, Arc::clone(&report.to_upstream));
                let upstream = TokioIo::new(upstream);
                let mut upstream = Counting::new(upstream, Arc::clone(&report.to_client));
                let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                let idle = idle_out(self.idle_timeout, &report.to_upstream, &report.to_client);
                tokio::select! {
                    copied = copy => match copied {
                        Ok(_) => TunnelEnd::Closed,
                        Err(_) => TunnelEnd::Failed,
                    },
                    () = idle => TunnelEnd::IdleTimeout,
                }
            }
        };
    }
}

/// Sends a tunnel's record when the tunnel ends, however it ends.
struct Report {
    done: Option<oneshot::Sender<UpgradeRecord>>,
    protocol: String,
    start: Instant,
    to_upstream: Arc<AtomicU64>,
    to_client: Arc<AtomicU64>,
    /// How it ended; [`TunnelEnd::Shutdown`] until known (an abort).
    ended: TunnelEnd,
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(UpgradeRecord {
                protocol: std::mem::take(&mut self.protocol),
                to_upstream: self.to_upstream.load(Ordering::Relaxed),
                to_client: self.to_client.load(Ordering::Relaxed),
                duration: self.start.elapsed(),
                ended: self.ended,
            });
        }
    }
}

/// Resolves once no byte moved either way for `timeout`.
async fn idle_out(timeout: Duration, a: &AtomicU64, b: &AtomicU64) {
    let moved = || a.load(Ordering::Relaxed) + b.load(Ordering::Relaxed);
    let mut seen = moved();
    loop {
        tokio::time::sleep(timeout).await;
        let now = moved();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// A stream that counts the bytes read from it.
struct Counting<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S> Counting<S> {
    fn new(inner: S, read: Arc<AtomicU64>) -> Self {
        Counting { inner, read }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
