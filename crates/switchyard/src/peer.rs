//! Where a request goes: [`HttpPeer`] and its timeouts, [`PeerOptions`].
//!
//! `upstream_peer` returns one of these per attempt. The connector
//! (`upstream/connector.rs`) and the forwarding path (`proxy/forward.rs`)
//! read the timeouts; the pool (`upstream/pool.rs`) keys connections by
//! [`HttpPeer::pool_key`].

use std::fmt;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::peer_addr::PeerAddr;
use crate::tls::UpstreamTls;

/// Timeouts for talking to one peer.
///
/// Pingora ships no defaults for these (an unset timeout waits forever).
/// Ours are set so that a dead or silent upstream cannot hold a request
/// forever, and generous enough not to cut off a healthy but slow one:
///
/// | field | default | what runs out |
/// |---|---|---|
/// | `connect_timeout` | 3 s | TCP connect (room for one SYN retransmit at 1 s) |
/// | `read_timeout` | 60 s | waiting for the response head once the request body is sent, and between two response body frames (nginx's `proxy_read_timeout`) |
/// | `write_timeout` | 60 s | the request body making no progress upstream |
/// | `idle_timeout` | 10 s | an unused pooled connection is closed |
/// | `max_idle` | 64 | idle pooled connections kept to this peer |
/// | `max_connections` | none | connections to this peer at once (busy, idle or being made) |
/// | `max_pending` | 1024 | requests waiting for a connection when `max_connections` are open |
///
/// The idle timeout is shorter than most servers' keep-alive timeouts so
/// that we, not the upstream, usually close an idle connection; a pooled
/// connection the upstream closed anyway is noticed and skipped.
///
/// ```
/// use std::time::Duration;
/// use switchyard::PeerOptions;
///
/// let opts = PeerOptions { connect_timeout: Duration::from_millis(500), ..PeerOptions::default() };
/// assert_eq!(opts.read_timeout, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerOptions {
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long to wait for the response head after the request was sent,
    /// and for each next piece of the response body.
    pub read_timeout: Duration,
    /// How long the request body may make no progress upstream.
    pub write_timeout: Duration,
    /// How long an idle pooled connection to this peer is kept.
    pub idle_timeout: Duration,
    /// How many idle connections to this peer the pool keeps (0: no pooling).
    pub max_idle: usize,
    /// The most connections to this peer at once, busy, idle or being
    /// made (`None`: no limit; `Some(0)` counts as 1). A request that needs
    /// a new one beyond it
    /// waits (see `max_pending`), then fails with `connection-limit-reached`.
    pub max_connections: Option<usize>,
    /// The most requests waiting, up to the connect timeout, for a
    /// connection to this peer when `max_connections` are open; beyond it a
    /// request fails at once with `connection-limit-reached`.
    pub max_pending: usize,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(10),
            max_idle: 64,
            max_connections: None,
            max_pending: 1024,
        }
    }
}

/// The HTTP version spoken to a peer.
///
/// | variant | over TLS | over cleartext |
/// |---|---|---|
/// | `Http1` (the default) | ALPN `http/1.1` | HTTP/1.1 |
/// | `Http2` | ALPN `h2` only: an upstream that does not pick it fails the handshake | h2c with prior knowledge |
/// | `Auto` | ALPN `h2` then `http/1.1`: what the upstream picks | HTTP/1.1 |
///
/// HTTP/2 connections are shared: many requests at once go over one, up to
/// the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS`, and a new connection
/// is made (under `max_connections`) when every stream is taken. A
/// WebSocket or other upgrade needs HTTP/1.1: `Auto` asks for it alone for
/// such a request, and `Http2` refuses one.
///
/// ```
/// use switchyard::{HttpPeer, UpstreamProtocol};
///
/// let peer = HttpPeer::parse("127.0.0.1:50051").unwrap().with_protocol(UpstreamProtocol::Http2);
/// assert_eq!(peer.protocol.as_str(), "h2");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 only.
    #[default]
    Http1,
    /// HTTP/2 only (h2 over TLS, h2c over cleartext).
    Http2,
    /// Over TLS, HTTP/2 when the upstream offers it, else HTTP/1.1; over
    /// cleartext, HTTP/1.1.
    Auto,
}

impl UpstreamProtocol {
    /// A stable name for logs and config: `http1`, `h2` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::Http2 => "h2",
            UpstreamProtocol::Auto => "auto",
        }
    }
}

/// An upstream to send one attempt to.
///
/// ```
/// use switchyard::HttpPeer;
///
/// let addr: std::net::SocketAddr = "127.0.0.1:8000".parse().unwrap();
/// let peer = HttpPeer::new(addr, false, String::new());
/// assert_eq!(peer.to_string(), "127.0.0.1:8000");
/// let parsed = HttpPeer::parse("127.0.0.1:8000").unwrap();
/// assert_eq!(parsed.address, peer.address);
/// // An app server on this host, on a Unix domain socket:
/// let local = HttpPeer::parse("unix:/run/app.sock").unwrap();
/// assert_eq!(local.to_string(), "unix:/run/app.sock");
/// assert!(HttpPeer::parse("not an address").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpPeer {
    /// Where to connect: a TCP address or a Unix socket.
    pub address: PeerAddr,
    /// Whether to speak TLS to this peer.
    pub tls: bool,
    /// The TLS server name, sent as SNI and verified against the
    /// certificate; empty: the peer's IP address is verified and no SNI is
    /// sent. Unused without TLS.
    pub sni: String,
    /// Whom to trust and what to present over TLS; `None` with `tls` set:
    /// the system's roots ([`UpstreamTls::system`]).
    pub tls_settings: Option<UpstreamTls>,
    /// The HTTP version to speak ([`UpstreamProtocol::Http1`] unless set).
    pub protocol: UpstreamProtocol,
    /// Timeouts for this peer.
    pub options: PeerOptions,
    /// A peer to race when a new connection to this one is slow (connect
    /// hedging; see [`with_hedge`](Self::with_hedge)).
    pub hedge: Option<Box<HttpPeer>>,
}

impl HttpPeer {
    /// A peer at `address` with default [`PeerOptions`].
    ///
    /// Unlike Pingora's, this takes a parsed [`SocketAddr`](std::net::SocketAddr) (or a
    /// [`PeerAddr`]), so it cannot panic on a bad address; use
    /// [`HttpPeer::parse`] for text.
    pub fn new(address: impl Into<PeerAddr>, tls: bool, sni: String) -> Self {
        HttpPeer {
            address: address.into(),
            tls,
            sni,
            tls_settings: None,
            protocol: UpstreamProtocol::Http1,
            options: PeerOptions::default(),
            hedge: None,
        }
    }

    /// A plain-HTTP peer from `ip:port` or `unix:/path` text, or a clear
    /// error.
    pub fn parse(address: &str) -> Result<Self> {
        let address: PeerAddr = address
            .parse()
            .map_err(|why: String| Error::explain(ErrorKind::Internal, why))?;
        Ok(HttpPeer::new(address, false, String::new()))
    }

    /// The same peer with other options.
    pub fn with_options(mut self, options: PeerOptions) -> Self {
        self.options = options;
        self
    }

    /// The same peer spoken to in `protocol`.
    pub fn with_protocol(mut self, protocol: UpstreamProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The same peer reached over TLS with `settings`, verified as (and
    /// with SNI) `server_name`; an empty name verifies the IP address.
    pub fn with_tls(mut self, settings: UpstreamTls, server_name: impl Into<String>) -> Self {
        self.tls = true;
        self.sni = server_name.into();
        self.tls_settings = Some(settings);
        self
    }

    /// The same peer, with `other` raced for a new connection: if the TCP
    /// connect to this peer has not completed after a delay learned from
    /// its recent connect times (p99 × 3, between 5 ms and half the connect
    /// timeout; 50 ms until 4 connects were seen), a connect to `other`
    /// starts too and whichever completes first carries the attempt; the
    /// other is closed. Nothing has been sent before a connection exists,
    /// so this is safe for every method. A pooled connection is never
    /// hedged.
    ///
    /// ```
    /// # use switchyard::HttpPeer;
    /// let primary = HttpPeer::parse("127.0.0.1:8001").unwrap();
    /// let peer = primary.with_hedge(HttpPeer::parse("127.0.0.1:8002").unwrap());
    /// assert_eq!(peer.hedge.unwrap().address.to_string(), "127.0.0.1:8002");
    /// ```
    pub fn with_hedge(mut self, other: HttpPeer) -> Self {
        self.hedge = Some(Box::new(other));
        self
    }

    /// What pooled connections are keyed by: two peers with equal keys may
    /// share connections.
    pub fn pool_key(&self) -> PoolKey {
        let tls = match (&self.tls_settings, self.tls) {
            (_, false) => PLAIN,
            (None, true) => SYSTEM_TLS,
            (Some(settings), true) => settings.id(),
        };
        PoolKey {
            address: self.address,
            tls,
            sni: self.sni.as_str().into(),
            protocol: self.protocol,
        }
    }
}

impl fmt::Display for HttpPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        if self.tls {
            write!(f, " (tls, sni {:?})", self.sni)?;
        }
        if self.protocol != UpstreamProtocol::Http1 {
            write!(f, " ({})", self.protocol.as_str())?;
        }
        Ok(())
    }
}

/// The identity of a connection in the pool: address, TLS, server name,
/// the TLS settings it was verified under, and the HTTP version asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    address: PeerAddr,
    /// [`PLAIN`], [`SYSTEM_TLS`], or the id of the peer's TLS settings.
    tls: u64,
    sni: Box<str>,
    protocol: UpstreamProtocol,
}

/// A cleartext connection's TLS in its [`PoolKey`].
const PLAIN: u64 = 0;
/// A connection under [`UpstreamTls::system`] (whose ids start at 1).
const SYSTEM_TLS: u64 = u64::MAX;

impl PoolKey {
    /// The server's address.
    pub fn address(&self) -> PeerAddr {
        self.address
    }

    /// Whether connections under this key may be shared HTTP/2 ones.
    pub(crate) fn may_be_http2(&self) -> bool {
        self.protocol != UpstreamProtocol::Http1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::UpstreamTlsSettings;

    #[test]
    fn connections_under_different_tls_settings_are_never_shared() {
        let plain = HttpPeer::parse("127.0.0.1:8443").unwrap();
        let load = |insecure_skip_verify| {
            let settings = UpstreamTlsSettings {
                insecure_skip_verify,
                ..UpstreamTlsSettings::default()
            };
            UpstreamTls::load(&settings).unwrap()
        };
        let (one, other) = (load(false), load(true));
        // Loaded twice from the same settings: the same key, so a reload
        // that changed nothing keeps its pooled connections.
        assert_eq!(one, load(false));
        let a = plain.clone().with_tls(one.clone(), "a.internal");
        assert_ne!(plain.pool_key(), a.pool_key());
        assert_eq!(
            a.pool_key(),
            plain.clone().with_tls(one.clone(), "a.internal").pool_key()
        );
        assert_ne!(
            a.pool_key(),
            plain.clone().with_tls(one, "b.internal").pool_key()
        );
        assert_ne!(a.pool_key(), plain.with_tls(other, "a.internal").pool_key());
    }
}
