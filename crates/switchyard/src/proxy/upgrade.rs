//! HTTP/1.1 protocol upgrades (WebSocket first): until the upstream answers
//! `101 Switching Protocols` the request is an ordinary one under the
//! failure contract; on 101 the client's connection and the upstream's are
//! joined as a byte stream (a [`Tunnel`]) until either side closes, the
//! tunnel idles past its timeout, or the server's drain ends.
//!
//! The 101 goes to the client through its HTTP/1.1 connection
//! (`server/http1/`), which finds the tunnel in the response's extensions
//! and runs it on its socket once the 101 is written.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::headers::connection_tokens;
use crate::error::{Error, ErrorKind, Result};
use crate::upstream::UpstreamConn;

/// The protocols a request may upgrade to (its `Upgrade` header names
/// them). Only these are ever asked of an upstream and tunnelled; a request
/// naming none of them is served as an ordinary request with its upgrade
/// headers removed, as nginx and Envoy do.
///
/// The default allows `websocket` alone. `h2c` is never allowed, whatever
/// the list says: HTTP/2 to an upstream is the proxy's choice, and a
/// tunnelled h2c connection would carry every later request past routing,
/// header rules and identity headers ("h2c smuggling").
///
/// ```
/// use switchyard::proxy::AllowedUpgrades;
///
/// let allowed = AllowedUpgrades::new(["websocket", "x-game"]).unwrap();
/// assert!(allowed.allows("WebSocket"));
/// assert!(!allowed.allows("h2c"));
/// assert!(AllowedUpgrades::new(["h2c"]).is_err());
/// assert!(!AllowedUpgrades::none().allows("websocket"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedUpgrades(Allowed);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Allowed {
    /// `websocket` alone (no allocation: every request starts with it).
    #[default]
    WebSocket,
    /// These names, lower case.
    Listed(Arc<[Box<str>]>),
}

/// A name [`AllowedUpgrades::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUpgrade {
    /// The name as given.
    pub name: String,
    /// Why it is refused.
    pub reason: &'static str,
}

impl std::fmt::Display for InvalidUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upgrade {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for InvalidUpgrade {}

impl AllowedUpgrades {
    /// `websocket` alone: the default.
    pub fn websocket() -> Self {
        AllowedUpgrades(Allowed::WebSocket)
    }

    /// No upgrade at all: every `Upgrade` header is dropped.
    pub fn none() -> Self {
        AllowedUpgrades(Allowed::Listed(Arc::from(Vec::new())))
    }

    /// These protocol names (compared without case; a version such as
    /// `/1.1` in a request's `Upgrade` is ignored when matching). `h2c` and
    /// names that are not HTTP tokens are refused.
    pub fn new<I, S>(names: I) -> std::result::Result<Self, InvalidUpgrade>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut listed: Vec<Box<str>> = Vec::new();
        for name in names {
            let name = name.as_ref();
            let refuse = |reason| InvalidUpgrade {
                name: name.to_string(),
                reason,
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(refuse(
                    "not a protocol name (an HTTP token without a version)",
                ));
            }
            if name.eq_ignore_ascii_case("h2c") {
                return Err(refuse(
                    "h2c is never forwarded as an upgrade: HTTP/2 to the upstream is the proxy's choice (protocol = \"h2\")",
                ));
            }
            let lower = name.to_ascii_lowercase().into_boxed_str();
            if !listed.contains(&lower) {
                listed.push(lower);
            }
        }
        Ok(AllowedUpgrades(Allowed::Listed(Arc::from(listed))))
    }

    /// Whether a request may upgrade to `protocol` (a name, with or
    /// without a `/version`).
    pub fn allows(&self, protocol: &str) -> bool {
        let name = protocol_name(protocol);
        if name.eq_ignore_ascii_case("h2c") {
            return false;
        }
        match &self.0 {
            Allowed::WebSocket => name.eq_ignore_ascii_case("websocket"),
            Allowed::Listed(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }

    /// The names allowed, lower case.
    pub fn names(&self) -> Vec<&str> {
        match &self.0 {
            Allowed::WebSocket => vec!["websocket"],
            Allowed::Listed(names) => names.iter().map(|n| &**n).collect(),
        }
    }
}

/// A `tchar` of RFC 9110 section 5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The name of a protocol in an `Upgrade` list: `websocket` of
/// `websocket/13`, trimmed.
fn protocol_name(protocol: &str) -> &str {
    protocol.split('/').next().unwrap_or("").trim()
}

/// The protocols of an `Upgrade` value, trimmed, empty ones skipped.
fn protocols(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The upgrade a request asks for and `allowed` permits: the protocols of
/// its `Upgrade` header that are allowed, when `Connection` names
/// `upgrade` too, in an HTTP/1.1 request (RFC 9110 section 7.8: an HTTP/1.0
/// request's `Upgrade` is ignored). `None` when no protocol it names is
/// allowed: the request is then an ordinary one (its upgrade headers are
/// hop-by-hop and never go upstream).
pub(crate) fn requested(
    request: &http::request::Parts,
    allowed: &AllowedUpgrades,
) -> Option<HeaderValue> {
    if request.version != http::Version::HTTP_11 {
        return None;
    }
    let headers = &request.headers;
    let upgrade = headers.get(header::UPGRADE)?;
    if !connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade")) {
        return None;
    }
    let mut kept = protocols(upgrade).filter(|p| allowed.allows(p));
    let first = kept.next()?;
    let rest: Vec<&str> = kept.collect();
    if rest.is_empty() {
        return HeaderValue::from_str(first).ok();
    }
    let mut list = first.to_string();
    for protocol in rest {
        list.push_str(", ");
        list.push_str(protocol);
    }
    HeaderValue::from_str(&list).ok()
}

/// Ask the upstream to switch protocols as the client asked (the upgrade
/// headers are hop-by-hop, so they were removed with the others).
pub(crate) fn ask_upstream(upstream: &mut HeaderMap, protocol: HeaderValue) {
    upstream.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    upstream.insert(header::UPGRADE, protocol);
}

/// The 101 head for the client: the upstream's, with its `Upgrade` kept
/// and `Connection: upgrade`. A 101 the client did not ask for, one naming
/// no protocol, or one naming a protocol that was not asked for (and so
/// not allowed) is an invalid response.
pub(crate) fn switching_head(
    mut head: http::response::Parts,
    asked: Option<&HeaderValue>,
) -> Result<http::response::Parts> {
    let Some(asked) = asked else {
        return Err(Error::explain(
            ErrorKind::InvalidResponse,
            "upstream switched protocols (101) for a request that asked for no upgrade",
        ));
    };
    let Some(protocol) = head.headers.get(header::UPGRADE).cloned() else {
        return Err(Error::explain(
            ErrorKind::InvalidResponse,
            "upstream switched protocols (101) without naming one in Upgrade",
        ));
    };
    let was_asked =
        |p: &str| protocols(asked).any(|a| protocol_name(a).eq_ignore_ascii_case(protocol_name(p)));
    let all_asked = {
        let mut switched = protocols(&protocol).peekable();
        switched.peek().is_some() && switched.all(was_asked)
    };
    if !all_asked {
        return Err(Error::explain(
            ErrorKind::InvalidResponse,
            format!(
                "upstream switched protocols (101) to {:?}, which the request did not ask for (asked: {:?})",
                String::from_utf8_lossy(protocol.as_bytes()),
                String::from_utf8_lossy(asked.as_bytes()),
            ),
        ));
    }
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
    /// The upstream connection that answered 101 (it keeps its place under
    /// the server's connection limit until closed).
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
    /// A tunnel to the upstream connection `conn`, which answered 101, and
    /// the receiver of its record once it closes.
    pub(crate) fn open(
        conn: UpstreamConn,
        protocol: &HeaderValue,
        idle_timeout: Duration,
    ) -> (TunnelSlot, oneshot::Receiver<UpgradeRecord>) {
        let (done, record) = oneshot::channel();
        let tunnel = Tunnel {
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
        let mut conn = self.conn;
        report.ended = match conn.upgraded() {
            None => TunnelEnd::Failed,
            Some(upstream) => {
                let mut client = Counting::new(client, Arc::clone(&report.to_upstream));
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
