//! HTTP/3 from clients: QUIC on a UDP socket (quinn), HTTP/3 over it (h3),
//! and every request handed to the same engine as HTTP/1.1 and HTTP/2
//! (`proxy/engine.rs`): the third downstream driver, not a second proxy.
//!
//! Limits are on from the start ([`Http3Options`]): streams per connection,
//! the idle timeout, the UDP payload size, connections per client address,
//! and address validation: once more handshakes are in progress than
//! `retry_threshold`, a new client must first echo a Retry token, so a flood
//! of Initial packets from spoofed addresses costs the proxy no handshakes.
//! 0-RTT is off (early data could be replayed).

mod connection;
mod exchange;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::{ConnectionCounts, ServerOptions, ShutdownHandle, engine_shared};
use crate::error::{Error, ErrorKind, Result};
use crate::proxy::{EngineShared, ProxyHttp};
use crate::tls::ServerTls;
use crate::upstream::pool::{Pool, UpstreamPool};

/// The limits of an HTTP/3 listener.
///
/// | field | default |
/// |---|---|
/// | `max_concurrent_streams` | 100 requests at once per connection |
/// | `idle_timeout` | 30 s without a packet closes a connection |
/// | `max_udp_payload` | 1452 bytes (fits a 1500-byte Ethernet MTU over IPv6) |
/// | `max_connections_per_client` | 64 connections per client IP address (counted once the handshake proves the address) |
/// | `retry_threshold` | 64 handshakes in progress, then Retry tokens |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Http3Options {
    /// Requests one connection may have open at once (QUIC bidirectional
    /// streams); the client waits for a stream to end to open another.
    pub max_concurrent_streams: u32,
    /// A connection that carries no packet for this long is closed.
    pub idle_timeout: Duration,
    /// The largest UDP payload the proxy accepts and sends (1200 to 65527).
    pub max_udp_payload: u16,
    /// Connections one client IP address may have open; more are closed
    /// once their handshake proves the address (so spoofed packets cannot
    /// use up a real client's places).
    pub max_connections_per_client: usize,
    /// With more handshakes than this in progress, a client whose address
    /// was not validated gets a Retry packet and must come back with its
    /// token (one more round trip); `0`: always.
    pub retry_threshold: usize,
}

impl Default for Http3Options {
    fn default() -> Self {
        Http3Options {
            max_concurrent_streams: 100,
            idle_timeout: Duration::from_secs(30),
            max_udp_payload: 1452,
            max_connections_per_client: 64,
            retry_threshold: 64,
        }
    }
}

/// A bound HTTP/3 listener (UDP); [`serve`](Self::serve) runs it.
///
/// It shares nothing with a [`ProxyServer`](super::ProxyServer) but the
/// proxy and the certificates: give both the same `ServerTls` and
/// `Arc`-shared proxy to serve HTTPS over TCP and QUIC on the same port.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use switchyard::prelude::*;
/// # use switchyard::server::{Http3Options, Http3Server};
/// # async fn run<P: ProxyHttp>(proxy: Arc<P>, tls: switchyard::tls::ServerTls) -> Result<()> {
/// let h3 = Http3Server::bind("0.0.0.0:443".parse().unwrap(), proxy, ServerOptions::default(), Http3Options::default(), &tls)?;
/// tokio::spawn(h3.serve());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Http3Server<P> {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    proxy: Arc<P>,
    options: ServerOptions,
    limits: Http3Options,
    shutdown: watch::Sender<bool>,
    pool: Arc<Pool>,
    counts: ConnectionCounts,
}

impl<P: ProxyHttp> Http3Server<P> {
    /// Bind UDP `addr` (with `SO_REUSEPORT`, so that a binary upgrade's
    /// new process can bind beside it) and serve HTTP/3 there under `tls`'s
    /// certificates (those in force at each handshake: reloads and renewals
    /// apply). Call it on the runtime that will serve it.
    pub fn bind(
        addr: SocketAddr,
        proxy: Arc<P>,
        options: ServerOptions,
        limits: Http3Options,
        tls: &ServerTls,
    ) -> Result<Self> {
        let crypto = QuicServerConfig::try_from(tls.quic_config())
            .map_err(|e| Error::because(ErrorKind::Internal, "TLS for QUIC", e))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport(&limits)?));
        let mut endpoint = quinn::EndpointConfig::default();
        endpoint
            .max_udp_payload_size(limits.max_udp_payload)
            .map_err(|e| {
                Error::because(
                    ErrorKind::Internal,
                    format!("max_udp_payload {}", limits.max_udp_payload),
                    e.to_string(),
                )
            })?;
        let binding = |e: std::io::Error| {
            Error::because(ErrorKind::Internal, format!("binding UDP {addr}"), e)
        };
        let socket = udp_reusing_port(addr).map_err(binding)?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let endpoint =
            quinn::Endpoint::new(endpoint, Some(server), socket, runtime).map_err(binding)?;
        let local_addr = endpoint.local_addr().map_err(binding)?;
        Ok(Http3Server {
            endpoint,
            local_addr,
            proxy,
            options,
            limits,
            shutdown: watch::channel(false).0,
            pool: Pool::start(),
            counts: ConnectionCounts::default(),
        })
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to stop it later.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            signal: self.shutdown.clone(),
        }
    }

    /// Its pool of idle upstream connections.
    pub fn upstream_pool(&self) -> UpstreamPool {
        UpstreamPool::new(Arc::clone(&self.pool))
    }

    /// A live count of its client connections.
    pub fn connection_counts(&self) -> ConnectionCounts {
        self.counts.clone()
    }

    /// Serve until [`ShutdownHandle::shutdown`]; then tell every client to
    /// go away (GOAWAY), let requests in flight finish (up to the drain
    /// timeout), and return.
    pub async fn serve(self) -> Result<()> {
        let mut shared_options = self.options.clone();
        // HTTP/3 clients know where HTTP/3 is.
        shared_options.alt_svc = None;
        let every = Arc::new(EveryConnection {
            proxy: Arc::clone(&self.proxy),
            shared: engine_shared(Arc::clone(&self.pool), &shared_options),
            max_field_section_size: self.options.max_header_bytes as u64,
            counts: self.counts.clone(),
            per_client: Mutex::new(HashMap::new()),
            handshaking: AtomicUsize::new(0),
            limits: self.limits,
            handshake_timeout: self.options.tls_handshake_timeout,
            max_connections: self.options.max_connections.map(|max| max.max(1)),
        });
        let mut connections = JoinSet::new();
        let mut stop = self.shutdown.subscribe();
        loop {
            while connections.try_join_next().is_some() {}
            let incoming = tokio::select! {
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
                _ = async { stop.wait_for(|stopping| *stopping).await.is_ok() } => break,
            };
            if let Some(admitted) = every.admit(incoming) {
                let every = Arc::clone(&every);
                let stop = self.shutdown.subscribe();
                connections.spawn(connection::serve(every, admitted, stop));
            }
        }
        // The open connections were told to stop (GOAWAY); new ones are
        // refused at once while they finish, so a client (one that reached
        // this socket during a binary upgrade, say) tries again at once
        // rather than waiting out a handshake no one answers.
        let drained = tokio::time::timeout(self.options.drain_timeout, async {
            loop {
                tokio::select! {
                    joined = connections.join_next() => if joined.is_none() { break },
                    Some(incoming) = self.endpoint.accept() => incoming.refuse(),
                }
            }
        });
        if drained.await.is_err() {
            warn!(
                timeout = ?self.options.drain_timeout,
                open = connections.len(),
                "HTTP/3 drain timed out; closing the remaining connections"
            );
        }
        connections.shutdown().await;
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"shutting down");
        Ok(())
    }
}

/// A UDP socket on `addr` that another socket with `SO_REUSEPORT` may
/// share: the new process of a binary upgrade binds beside this one.
fn udp_reusing_port(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, socket_with, sockopt};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    // Close-on-exec: a process this one starts (the new process of an
    // upgrade) must not hold this socket, unread, in the port's group.
    let fd = socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    bind(&fd, &addr)?;
    Ok(std::net::UdpSocket::from(fd))
}

/// The transport limits of every connection.
fn transport(limits: &Http3Options) -> Result<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(limits.max_concurrent_streams));
    // The client's control stream and its two QPACK streams, and room.
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(8));
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(|e| {
        Error::because(
            ErrorKind::Internal,
            format!("idle_timeout {:?}", limits.idle_timeout),
            e.to_string(),
        )
    })?;
    transport.max_idle_timeout(Some(idle));
    Ok(transport)
}

/// What every connection of one listener shares.
pub(super) struct EveryConnection<P> {
    pub(super) proxy: Arc<P>,
    pub(super) shared: Arc<EngineShared>,
    /// The largest request head (QPACK-decoded) a client may send.
    pub(super) max_field_section_size: u64,
    pub(super) counts: ConnectionCounts,
    /// Connections open per client IP address.
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Handshakes in progress.
    handshaking: AtomicUsize,
    limits: Http3Options,
    /// Time a client has to complete its handshake.
    pub(super) handshake_timeout: Duration,
    /// The most connections open and in handshake at once, if limited.
    max_connections: Option<usize>,
}

/// A connection let in: its handshake, counted among those in progress
/// until `handshake` is dropped.
pub(super) struct Admitted<P> {
    pub(super) connecting: quinn::Connecting,
    pub(super) client: SocketAddr,
    pub(super) handshake: Handshaking<P>,
}

/// A handshake in progress, counted until dropped.
pub(super) struct Handshaking<P> {
    every: Arc<EveryConnection<P>>,
}

impl<P> Drop for Handshaking<P> {
    fn drop(&mut self) {
        self.every.handshaking.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's place in its client address's count, given back when
/// dropped.
pub(super) struct ClientSlot<P> {
    every: Arc<EveryConnection<P>>,
    ip: IpAddr,
}

impl<P> Drop for ClientSlot<P> {
    fn drop(&mut self) {
        let mut per_client = self.every.lock_per_client();
        if let Some(count) = per_client.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_client.remove(&self.ip);
            }
        }
    }
}

impl<P> EveryConnection<P> {
    fn lock_per_client(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Let a new connection in, ask it to validate its address first, or
    /// refuse it (the server has `max_connections`): `None` unless it was
    /// accepted.
    fn admit(self: &Arc<Self>, incoming: quinn::Incoming) -> Option<Admitted<P>> {
        let client = incoming.remote_address();
        let handshaking = self.handshaking.load(Ordering::Relaxed);
        if !incoming.remote_address_validated()
            && incoming.may_retry()
            && handshaking >= self.limits.retry_threshold
        {
            debug!(client = %client, "HTTP/3: asking a new client to validate its address (Retry)");
            self.counts.address_validation_sent();
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            return None;
        }
        if let Some(max) = self.max_connections
            && self.counts.open() + handshaking >= max
        {
            self.counts.reached(max);
            incoming.refuse();
            return None;
        }
        self.handshaking.fetch_add(1, Ordering::Relaxed);
        let handshake = Handshaking {
            every: Arc::clone(self),
        };
        match incoming.accept() {
            Ok(connecting) => Some(Admitted {
                connecting,
                client,
                handshake,
            }),
            Err(e) => {
                debug!(client = %client, error = %e, "HTTP/3: a new connection failed");
                None
            }
        }
    }

    /// A place for one more connection from `ip`, once its handshake
    /// proved the address is the client's (a spoofed address never gets
    /// this far, so cannot use up a real client's places); `None` if it
    /// has `max_connections_per_client` open.
    pub(super) fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot<P>> {
        let mut per_client = self.lock_per_client();
        let count = per_client.entry(ip).or_insert(0);
        if *count >= self.limits.max_connections_per_client {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            every: Arc::clone(self),
            ip,
        })
    }
}
