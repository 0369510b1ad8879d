//! The downstream side: a listener, one connection per client (HTTP/1.1 on
//! Switchyard's own codec: `http1/`; HTTP/2 by ALPN or its preface, on
//! hyper: `h2.rs`) with limits and timeouts on from the start, TLS (`tls/`)
//! and the PROXY protocol (`proxy_protocol.rs`) when asked, and graceful
//! shutdown.
//!
//! Every request goes to the engine (`proxy/engine.rs`). A slow or malformed
//! client gets a 4xx or a close, never a hang: a malformed head gets 400 and
//! an oversized one 431, and the header-read timeout closes a connection
//! that does not finish its head in time, idle keep-alive connections
//! included. A client that stops reading its response is cut off after the
//! write timeout. A keep-alive connection that idles gives its buffers back
//! (`http1/`).

mod bind;
mod connection;
mod counts;
mod h2;
mod http1;
mod http3;
mod proxy_protocol;
mod socket;
mod workers;

pub use bind::bind_reusing_port;
pub use counts::ConnectionCounts;
pub use h2::Http2Options;
pub use http3::{Http3Options, Http3Server};
pub use socket::{ListenAddr, Listening, UNIX_CLIENT, bind_unix};
pub use workers::{Started, Workers};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use self::connection::{Activity, ClientStream, InFlight, TrackedBody};
use self::http1::{Http1Settings, Serving as Http1Serving};
use self::proxy_protocol::Prefixed;
use self::socket::{ClientSocket, ServerListener};

use crate::body::DEFAULT_REPLAY_BUFFER;
use crate::body::client::ClientBody;
use crate::error::Result;
use crate::h1::parse_request::HeadLimits;
use crate::policy::backoff::Jitter;
use crate::policy::budget::BudgetPolicy;
use crate::policy::budget::RetryBudget;
use crate::policy::retry::DEFAULT_MAX_RETRIES;
use crate::proxy::EngineShared;
use crate::proxy::identity::{ClientAddr, ClientIdentity};
use crate::proxy::{ClientGone, Handling, ProxyHttp, ResponseBody, handle};
use crate::tls::ServerTls;
use crate::upstream::pool::{Pool, UpstreamPool};

/// The default limit on a request body: 1 GiB.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 1 << 30;

/// How a [`ProxyServer`] treats clients and retries.
///
/// | field | default |
/// |---|---|
/// | `max_retries` | 16 (at most 17 attempts per request) |
/// | `replay_buffer` | 64 KiB |
/// | `header_read_timeout` | 20 s, also the idle keep-alive timeout |
/// | `max_headers` | 100 |
/// | `max_header_bytes` | 32 KiB (request line and headers) |
/// | `write_timeout` | 60 s without progress writing to a client |
/// | `drain_timeout` | 30 s for in-flight requests at shutdown |
/// | `park_idle_after` | 1 s: an idle keep-alive connection then holds no buffers |
/// | `backoff_jitter` | random |
/// | `max_request_body` | 1 GiB |
/// | `max_connections` | none |
/// | `client_identity` | `X-Forwarded-For`/`-Proto`/`-Host` set, none trusted |
/// | `retry_budget` | on: retries add at most 20% to the last 10 s of requests, plus 10/s |
/// | `tls_handshake_timeout` | 10 s for a client's TLS handshake (with [`ProxyServer::with_tls`]) |
/// | `proxy_protocol` | off |
/// | `http2` | on (ALPN `h2`, or the preface on cleartext), see [`Http2Options`] |
/// | `start_traces` | off: an incoming `traceparent` is continued, none is started |
/// | `alt_svc` | none |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Hard cap on retries per request, whatever the hooks say.
    pub max_retries: usize,
    /// Request body bytes kept for replay on retry.
    pub replay_buffer: usize,
    /// Time a client has to send a request head, counted from the moment the
    /// connection is ready for one: an idle keep-alive connection is closed
    /// after this long.
    pub header_read_timeout: Duration,
    /// Most headers a request may have (more: 431).
    pub max_headers: usize,
    /// Largest request head in bytes (larger: 431).
    pub max_header_bytes: usize,
    /// How long writing to a client may make no progress before the
    /// connection is closed (a client that stopped reading).
    pub write_timeout: Duration,
    /// How long shutdown waits for in-flight requests before closing them.
    pub drain_timeout: Duration,
    /// After this long without a request, an HTTP/1.1 client connection
    /// gives its read and write buffers back and waits for the client with
    /// none ("parked"; 16 KiB or more saved per idle connection). `None`
    /// never parks.
    pub park_idle_after: Option<Duration>,
    /// Where retry backoff delays draw their random number: random, or a
    /// fixed number for tests and reproducible experiments.
    pub backoff_jitter: Jitter,
    /// The budget of the requests whose `ProxyHttp::retry_budget` gives
    /// none (by default, all of them): one budget for the whole server.
    /// `None`: no budget, only the per-request cap.
    pub retry_budget: Option<BudgetPolicy>,
    /// The most request body bytes a client may send (`None`: no limit); a
    /// hook may change it per request (`Session::set_max_request_body`).
    /// Over it: 413 before anything goes upstream when `Content-Length`
    /// says so, else the body is cut off as it crosses the limit.
    pub max_request_body: Option<u64>,
    /// The most client connections open at once (`None`: no limit; `Some(0)`
    /// counts as 1). At the
    /// limit the server accepts nothing more until one closes: new clients
    /// wait in the listen backlog (as nginx and HAProxy do), and each time
    /// the limit is reached is counted ([`ConnectionCounts::limit_reached`])
    /// and logged.
    pub max_connections: Option<usize>,
    /// How the client's address, protocol and host are told upstream
    /// (`X-Forwarded-*` by default; nobody trusted to bring their own).
    pub client_identity: ClientIdentity,
    /// How long a client has to complete its TLS handshake on a TLS
    /// listener; a client that fails or stalls it is closed and counted
    /// ([`ConnectionCounts::tls_handshake_failed`]), and holds up no one else.
    pub tls_handshake_timeout: Duration,
    /// Expect every connection to start with a PROXY protocol header (v1
    /// or v2) from an L4 balancer, and take the client's address from it.
    /// A connection without a valid one within `header_read_timeout` is
    /// closed. Turn it on only behind a balancer that always sends one:
    /// anyone who can connect directly could name any address.
    pub proxy_protocol: bool,
    /// Limits on client HTTP/2 connections.
    pub http2: Http2Options,
    /// Bind with `SO_REUSEPORT`, so that several servers (one per worker
    /// thread, each on its own runtime) can listen on the same address and
    /// the kernel spreads new connections among them. Bind the first with
    /// port 0 if wanted, then the others on the port it got.
    pub reuse_port: bool,
    /// The protocols a request may upgrade to (HTTP/1.1 `Upgrade`), unless
    /// a hook sets others for it (`Session::set_allowed_upgrades`):
    /// `websocket` by default. `h2c` never is.
    pub upgrades: crate::proxy::AllowedUpgrades,
    /// How request paths are normalized before `request_filter` (and so
    /// before routing): dot segments removed and unreserved escapes decoded,
    /// encoded slashes refused, by default. The normalized path is also the
    /// one sent upstream.
    pub paths: crate::path::PathRules,
    /// Start a W3C trace for a request that comes without a valid
    /// `traceparent` (one that comes with it is always continued; see
    /// [`trace_context`](crate::proxy::trace_context)).
    pub start_traces: bool,
    /// An `Alt-Svc` header for every response to a client that came over
    /// TLS on TCP, to tell it where HTTP/3 is (`h3=":443"; ma=86400`).
    pub alt_svc: Option<http::HeaderValue>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_retries: DEFAULT_MAX_RETRIES,
            replay_buffer: DEFAULT_REPLAY_BUFFER,
            header_read_timeout: Duration::from_secs(20),
            max_headers: 100,
            max_header_bytes: 32 * 1024,
            write_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            park_idle_after: Some(Duration::from_secs(1)),
            backoff_jitter: Jitter::Random,
            retry_budget: Some(BudgetPolicy::default()),
            max_request_body: Some(DEFAULT_MAX_REQUEST_BODY),
            max_connections: None,
            client_identity: ClientIdentity::default(),
            tls_handshake_timeout: Duration::from_secs(10),
            proxy_protocol: false,
            http2: Http2Options::default(),
            reuse_port: false,
            upgrades: crate::proxy::AllowedUpgrades::default(),
            paths: crate::path::PathRules::default(),
            start_traces: false,
            alt_svc: None,
        }
    }
}

/// A bound reverse proxy server. [`serve`](ProxyServer::serve) runs it.
///
/// ```no_run
/// # use switchyard::prelude::*;
/// # struct MyProxy;
/// # impl ProxyHttp for MyProxy {
/// #     type CTX = ();
/// #     fn new_ctx(&self) {}
/// #     async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
/// #         Ok(Box::new(HttpPeer::parse("127.0.0.1:8000")?))
/// #     }
/// # }
/// # async fn run() -> Result<()> {
/// let server = ProxyServer::bind("127.0.0.1:0".parse().unwrap(), MyProxy, ServerOptions::default()).await?;
/// println!("listening on {}", server.local_addr());
/// let shutdown = server.shutdown_handle();
/// let running = tokio::spawn(server.serve());
/// // ... later: stop accepting, let in-flight requests finish.
/// shutdown.shutdown();
/// running.await.ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ProxyServer<P> {
    listener: ServerListener,
    local_addr: SocketAddr,
    proxy: Arc<P>,
    options: ServerOptions,
    shutdown: watch::Sender<bool>,
    pool: Arc<Pool>,
    counts: ConnectionCounts,
    tls: Option<ServerTls>,
}

/// Asks a running [`ProxyServer`] to stop: it stops accepting, lets
/// in-flight requests finish (up to the drain timeout), then returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    signal: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Begin a graceful shutdown. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.signal.send_replace(true);
    }
}

impl<P: ProxyHttp> ProxyServer<P> {
    /// Serve HTTPS: every connection begins with a TLS handshake under
    /// `tls` (keep a clone to [`ServerTls::reload`] it later).
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TCP address the server listens on (`127.0.0.1:0` for a Unix
    /// socket: see [`listen_addr`](Self::listen_addr)).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to stop the server later.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            signal: self.shutdown.clone(),
        }
    }

    /// A handle on the pool of idle upstream connections, to close those to
    /// servers no longer used (see [`UpstreamPool::keep_only`]).
    pub fn upstream_pool(&self) -> UpstreamPool {
        UpstreamPool::new(Arc::clone(&self.pool))
    }

    /// A live count of the client connections open and parked.
    pub fn connection_counts(&self) -> ConnectionCounts {
        self.counts.clone()
    }

    /// Serve until [`ShutdownHandle::shutdown`], then drain and return.
    pub async fn serve(self) -> Result<()> {
        let shared = engine_shared(Arc::clone(&self.pool), &self.options);
        let h2_builder = h2::builder(&self.options.http2);
        let every = Arc::new(EveryConnection {
            proxy: Arc::clone(&self.proxy),
            shared,
            http1: self.http1_settings(),
            stopping: tokio::sync::Notify::new(),
            h2: h2_builder,
            h2_idle_timeout: self.options.http2.idle_timeout,
            header_read_timeout: self.options.header_read_timeout,
            counts: self.counts.clone(),
            write_timeout: self.options.write_timeout,
            tls_handshake_timeout: self.options.tls_handshake_timeout,
            proxy_header_timeout: self
                .options
                .proxy_protocol
                .then_some(self.options.header_read_timeout),
        });
        let mut connections = JoinSet::new();
        let mut stop = self.shutdown.subscribe();
        loop {
            while connections.try_join_next().is_some() {}
            if let Some(max) = self.options.max_connections.map(|max| max.max(1))
                && connections.len() >= max
            {
                // At the limit: accept nothing until a connection ends; new
                // clients wait in the listen backlog meanwhile.
                self.counts.reached(max);
                tokio::select! {
                    _ = connections.join_next() => continue,
                    _ = async { stop.wait_for(|stopping| *stopping).await.is_ok() } => break,
                }
            }
            let (stream, client) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = async { stop.wait_for(|stopping| *stopping).await.is_ok() } => break,
            };
            let accepted = Accepted {
                server: Arc::clone(&every),
                stop: self.shutdown.subscribe(),
                tls: self.tls.as_ref().map(ServerTls::acceptor),
            };
            connections.spawn(accepted.serve(stream, client));
        }
        drop(self.listener);
        // The stop is in the watch's value already: wake the idle HTTP/1.1
        // connections to see it (busy ones see it after their exchange).
        every.stopping.notify_waiters();
        let drained = tokio::time::timeout(self.options.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            warn!(
                timeout = ?self.options.drain_timeout,
                open = connections.len(),
                "drain timed out; closing the remaining connections"
            );
        }
        connections.shutdown().await;
        Ok(())
    }

    fn http1_settings(&self) -> Http1Settings {
        Http1Settings {
            limits: HeadLimits {
                max_headers: self.options.max_headers,
                max_head: self.options.max_header_bytes,
            },
            header_read_timeout: self.options.header_read_timeout,
            park_idle_after: self.options.park_idle_after,
            write_timeout: self.options.write_timeout,
            chunk: client_chunk(&self.options),
        }
    }
}

/// The largest piece of request body an HTTP/1.1 client connection hands
/// over at once (the most its read buffer holds): [`HTTP1_CLIENT_BUFFER`](crate::buffers::HTTP1_CLIENT_BUFFER)
/// or the largest head allowed (and 1 KiB) if that is more.
pub(crate) fn client_chunk(options: &ServerOptions) -> usize {
    crate::buffers::HTTP1_CLIENT_BUFFER.max(options.max_header_bytes.saturating_add(1024))
}

/// One accepted client connection and what serving it needs.
/// One accepted connection: what it shares with every other, and what is
/// its own. Small on purpose: a connection's task keeps it for as long as
/// the connection lives, parked or not.
struct Accepted<P> {
    server: Arc<EveryConnection<P>>,
    stop: watch::Receiver<bool>,
    /// The TLS configuration in force when it was accepted.
    tls: Option<TlsAcceptor>,
}

/// What every connection a server accepts shares, built once.
struct EveryConnection<P> {
    proxy: Arc<P>,
    shared: Arc<EngineShared>,
    http1: Http1Settings,
    /// Wakes every waiting HTTP/1.1 connection when the server stops.
    stopping: tokio::sync::Notify,
    h2: hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>,
    /// How long an HTTP/2 connection may have no stream open.
    h2_idle_timeout: Option<Duration>,
    /// For the first bytes of a cleartext connection (the h2c preface).
    header_read_timeout: Duration,
    counts: ConnectionCounts,
    write_timeout: Duration,
    tls_handshake_timeout: Duration,
    /// Read a PROXY header first, within this long.
    proxy_header_timeout: Option<Duration>,
}

impl<P: ProxyHttp> Accepted<P> {
    /// Read any PROXY header and complete any TLS handshake (on this
    /// connection's own task, so a slow client holds up no one), then
    /// serve requests until it closes.
    ///
    /// The task keeps this future for as long as the connection lives,
    /// parked or not, so it holds little: the opening is boxed and gone
    /// once done, and the driver is boxed.
    async fn serve(self, stream: ClientSocket, client: SocketAddr) {
        // Made within one statement, so that nothing but the driver is
        // kept across the wait.
        let driver = match Box::pin(self.open(stream, client)).await {
            Some((stream, client)) => self.driver(stream, client),
            None => return,
        };
        driver.await;
    }

    /// The connection ready for HTTP, and the client's address (the one a
    /// PROXY header names, if any); `None` if it failed or went quiet first.
    async fn open(
        &self,
        stream: ClientSocket,
        mut client: SocketAddr,
    ) -> Option<(ClientStream, ClientAddr)> {
        let every = &*self.server;
        let stream = match every.proxy_header_timeout {
            None => Prefixed::new(stream),
            Some(timeout) => match proxy_protocol::read_header(stream, timeout).await {
                Ok((named, stream)) => {
                    client = named.unwrap_or(client);
                    stream
                }
                Err(e) => {
                    every.counts.proxy_header_failed_now();
                    debug!(peer = %client, error = %e, "no valid PROXY header; connection closed");
                    return None;
                }
            },
        };
        let (stream, secure) = match &self.tls {
            None => {
                // HTTP/2 with prior knowledge starts with its preface.
                let (h2, stream) = match h2::sniff_preface(stream, every.header_read_timeout).await
                {
                    Ok(sniffed) => sniffed,
                    Err(e) => {
                        debug!(client = %client, error = %e, "reading a new connection failed");
                        return None;
                    }
                };
                let stream = if h2 {
                    ClientStream::new(stream, every.write_timeout).with_h2(true)
                } else {
                    ClientStream::bare(stream)
                };
                (stream, false)
            }
            Some(acceptor) => {
                let handshake = ClientStream::tls(
                    stream,
                    every.write_timeout,
                    acceptor.clone(),
                    every.tls_handshake_timeout,
                );
                match handshake.await {
                    Ok(stream) if stream.is_acme_validation() => {
                        debug!(client = %client, "answered an ACME tls-alpn-01 validation");
                        return None;
                    }
                    Ok(stream) => (stream, true),
                    Err(e) => {
                        every.counts.handshake_failed();
                        debug!(client = %client, error = %e, "TLS handshake with a client failed");
                        return None;
                    }
                }
            }
        };
        // With its IP's text for the forwarding headers, made once per connection.
        Some((stream, ClientAddr::new(client).with_tls(secure)))
    }

    /// Serve requests on `stream` until it closes, over HTTP/2 if it spoke
    /// the preface or chose `h2`, else HTTP/1.1.
    fn driver(
        &self,
        stream: ClientStream,
        client: ClientAddr,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let every = &*self.server;
        let stop = self.stop.clone();
        if !stream.speaks_h2() {
            let serving = Http1Serving {
                proxy: &every.proxy,
                shared: &every.shared,
                settings: &every.http1,
                counts: &every.counts,
                stopping: &every.stopping,
            };
            return Box::pin(http1::serve(serving, stream, client, stop));
        }
        let (proxy, shared) = (Arc::clone(&every.proxy), Arc::clone(&every.shared));
        // What the HTTP/2 driver counts to close an idle connection.
        let activity = Arc::new(Activity::default());
        let counted = Arc::clone(&activity);
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let (proxy, shared) = (Arc::clone(&proxy), Arc::clone(&shared));
            let in_flight = counted.start_response();
            Serving {
                handling: handle(
                    proxy,
                    shared,
                    request.map(ClientBody::Http2),
                    client.clone(),
                ),
                in_flight: Some(in_flight),
            }
        });
        let (h2, counts) = (every.h2.clone(), every.counts.clone());
        let idle = (activity, every.h2_idle_timeout);
        Box::pin(h2::drive(h2, stream, service, idle, stop, counts))
    }
}

/// The future hyper's HTTP/2 server awaits for one request's response: the
/// engine's [`Handling`], with the response counted in flight until its
/// body is done (the idle timeout counts from the last one).
struct Serving {
    handling: Handling,
    in_flight: Option<InFlight>,
}

impl Future for Serving {
    type Output = std::result::Result<http::Response<TrackedBody<ResponseBody>>, ClientGone>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let response = std::task::ready!(Pin::new(&mut this.handling).poll(cx))?;
        let Some(in_flight) = this.in_flight.take() else {
            // Polled again after it answered: hyper does not do that.
            return Poll::Ready(Err(ClientGone));
        };
        Poll::Ready(Ok(response.map(|body| TrackedBody::new(body, in_flight))))
    }
}

/// The state every request of one server shares.
fn engine_shared(pool: Arc<Pool>, options: &ServerOptions) -> Arc<EngineShared> {
    Arc::new(EngineShared {
        pool,
        max_retries: options.max_retries,
        replay_buffer: options.replay_buffer,
        max_request_body: options.max_request_body,
        jitter: options.backoff_jitter,
        identity: options.client_identity.clone(),
        upgrades: options.upgrades.clone(),
        paths: options.paths,
        start_traces: options.start_traces,
        client_chunk: client_chunk(options),
        budget: options
            .retry_budget
            .map(|policy| Arc::new(RetryBudget::new(policy, std::time::Instant::now()))),
        connect_times: Default::default(),
        response_times: Default::default(),
        alt_svc: options.alt_svc.clone(),
    })
}
