//! The integration tests' proxy: a list of peers and a rule for each kind
//! of failure, with every finished request's trace captured from `logging`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::AttemptLog;
use switchyard::prelude::*;
use switchyard::proxy::default_error_while_proxy;

/// What a hook does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    /// The library's default hook.
    Default,
    /// Mark it retryable and keep the same peer.
    RetrySame,
    /// Mark it retryable and move to the next peer.
    Failover,
}

/// One finished request, as `logging` saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: http::Method,
    pub path: String,
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    /// The peer the final error names.
    pub error_peer: Option<String>,
    pub trace: AttemptLog,
    /// What went through the tunnel after a 101.
    pub upgrade: Option<switchyard::proxy::UpgradeRecord>,
    /// How a gRPC call ended.
    pub grpc: Option<switchyard::proxy::grpc::GrpcStatus>,
}

/// The requests `logging` saw, in the order they finished.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<Logged>>>);

impl Logs {
    /// Record a finished request.
    pub fn push(&self, session: &Session, e: Option<&Error>) {
        let head = session.req_header();
        self.0.lock().unwrap().push(Logged {
            method: head.method.clone(),
            path: head.uri.path().to_string(),
            status: session.response_status().map(|s| s.as_u16()),
            error: e.map(|e| e.kind()),
            error_peer: e.and_then(|e| e.peer().map(str::to_string)),
            trace: session.attempts().clone(),
            upgrade: session.upgrade().cloned(),
            grpc: session.grpc_status().cloned(),
        });
    }

    pub fn all(&self) -> Vec<Logged> {
        self.0.lock().unwrap().clone()
    }

    /// Wait until `n` requests were logged, then return them all.
    pub async fn wait(&self, n: usize) -> Vec<Logged> {
        switchyard_testkit::within(10, "logging of the expected requests", async {
            loop {
                let all = self.all();
                if all.len() >= n {
                    return all;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

/// A proxy over `peers` with a rule per failure point.
#[derive(Debug, Clone)]
pub struct TestProxy {
    pub peers: Vec<SocketAddr>,
    pub on_connect_fail: OnFail,
    pub on_proxy_error: OnFail,
    pub options: PeerOptions,
    pub logs: Logs,
    /// Race the next peer in the list when a connect is slow.
    pub hedge: bool,
    /// Reach every peer over TLS with these settings, as this server name.
    pub tls: Option<(switchyard::tls::UpstreamTls, String)>,
    /// The HTTP version spoken to every peer.
    pub protocol: switchyard::UpstreamProtocol,
}

impl TestProxy {
    pub fn new(peers: &[SocketAddr]) -> Self {
        TestProxy {
            peers: peers.to_vec(),
            on_connect_fail: OnFail::Failover,
            on_proxy_error: OnFail::Default,
            options: PeerOptions::default(),
            logs: Logs::default(),
            hedge: false,
            tls: None,
            protocol: switchyard::UpstreamProtocol::Http1,
        }
    }

    /// Reach every peer over TLS under `settings`, verified as `server_name`.
    pub fn upstream_tls(
        mut self,
        settings: switchyard::tls::UpstreamTls,
        server_name: &str,
    ) -> Self {
        self.tls = Some((settings, server_name.to_string()));
        self
    }

    /// Speak `protocol` to every peer.
    pub fn protocol(mut self, protocol: switchyard::UpstreamProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    pub fn on_connect_fail(mut self, rule: OnFail) -> Self {
        self.on_connect_fail = rule;
        self
    }

    pub fn on_proxy_error(mut self, rule: OnFail) -> Self {
        self.on_proxy_error = rule;
        self
    }

    pub fn hedged(mut self) -> Self {
        self.hedge = true;
        self
    }

    pub fn options(mut self, options: PeerOptions) -> Self {
        self.options = options;
        self
    }
}

/// Which peer the next attempt goes to.
pub struct Ctx {
    pub index: usize,
}

/// Mark `e` retryable per `rule`; failover only while another peer is left.
fn apply(rule: OnFail, peers: usize, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
    match rule {
        OnFail::Default => return e,
        OnFail::RetrySame => {}
        OnFail::Failover if ctx.index + 1 < peers => ctx.index += 1,
        OnFail::Failover => return e,
    }
    e.set_retry(true);
    e
}

impl ProxyHttp for TestProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx { index: 0 }
    }

    async fn upstream_peer(&self, _s: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let index = ctx.index.min(self.peers.len() - 1);
        let peer = |addr| {
            let peer = HttpPeer::new(addr, false, String::new())
                .with_options(self.options.clone())
                .with_protocol(self.protocol);
            match &self.tls {
                Some((settings, name)) => peer.with_tls(settings.clone(), name.as_str()),
                None => peer,
            }
        };
        let mut chosen = peer(self.peers[index]);
        if self.hedge && index + 1 < self.peers.len() {
            chosen = chosen.with_hedge(peer(self.peers[index + 1]));
        }
        Ok(Box::new(chosen))
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        _p: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        match self.on_connect_fail {
            OnFail::Default => e,
            rule => apply(rule, self.peers.len(), ctx, e),
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        reused: bool,
    ) -> Box<Error> {
        match self.on_proxy_error {
            OnFail::Default => default_error_while_proxy(peer, session, e, reused),
            rule => apply(rule, self.peers.len(), ctx, e),
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _ctx: &mut Ctx) {
        self.logs.push(session, e);
    }
}

/// A running proxy server.
pub struct Running {
    pub addr: SocketAddr,
    pub logs: Logs,
    pub shutdown: ShutdownHandle,
    pub task: tokio::task::JoinHandle<Result<()>>,
    pub pool: switchyard::UpstreamPool,
    pub counts: switchyard::server::ConnectionCounts,
}

pub async fn start(proxy: TestProxy) -> Running {
    start_with(proxy, ServerOptions::default()).await
}

pub async fn start_with<P: ProxyHttp + HasLogs>(proxy: P, options: ServerOptions) -> Running {
    start_serving(proxy, options, None).await
}

/// Start `proxy`, serving HTTPS when `tls` is given.
pub async fn start_serving<P: ProxyHttp + HasLogs>(
    proxy: P,
    options: ServerOptions,
    tls: Option<switchyard::tls::ServerTls>,
) -> Running {
    let logs = proxy.logs();
    let mut server = ProxyServer::bind("127.0.0.1:0".parse().unwrap(), proxy, options)
        .await
        .unwrap();
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    let pool = server.upstream_pool();
    let counts = server.connection_counts();
    let task = tokio::spawn(server.serve());
    Running {
        addr,
        logs,
        shutdown,
        task,
        pool,
        counts,
    }
}

/// Proxies whose `logging` the tests can read.
pub trait HasLogs {
    fn logs(&self) -> Logs;
}

impl HasLogs for TestProxy {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

/// A proxy over `peers` that speaks HTTP/2 to them, with [`quick`] timeouts.
pub fn h2_proxy(peers: &[SocketAddr]) -> TestProxy {
    TestProxy::new(peers)
        .options(quick())
        .protocol(switchyard::UpstreamProtocol::Http2)
}

/// Short timeouts so failure tests finish fast.
pub fn quick() -> PeerOptions {
    PeerOptions {
        connect_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(500),
        write_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
        max_idle: 64,
        ..PeerOptions::default()
    }
}

/// The `(error kind or status, decision)` of each attempt, as text.
pub fn summary(trace: &AttemptLog) -> Vec<String> {
    trace
        .records()
        .iter()
        .map(|r| {
            let what = match (r.error, r.status) {
                (Some(kind), _) => kind.as_str().to_string(),
                (None, Some(status)) => status.as_u16().to_string(),
                (None, None) => r.phase.as_str().to_string(),
            };
            format!("{what} -> {}", r.decision)
        })
        .collect()
}

/// What an [`answers_at_head`] upstream does with the request body after
/// its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAnswer {
    /// Read nothing more (a server that refuses an upload).
    Hold,
    /// Read and discard everything that comes.
    ReadAll,
}

/// An upstream that writes `answer` as soon as a request head arrives,
/// then holds or reads the rest of the connection; it never sends more.
pub async fn answers_at_head(answer: &'static [u8], after: AfterAnswer) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 16 * 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(answer).await;
                match after {
                    AfterAnswer::Hold => tokio::time::sleep(Duration::from_secs(30)).await,
                    AfterAnswer::ReadAll => while let Ok(1..) = stream.read(&mut buf).await {},
                }
            });
        }
    });
    addr
}

/// A TLS listener's settings serving `certs` (the first is the default).
pub fn listener(
    certs: &[&switchyard_testkit::tls::TestCert],
) -> switchyard::tls::ServerTlsSettings {
    switchyard::tls::ServerTlsSettings {
        certificates: certs
            .iter()
            .map(|c| switchyard::tls::CertificateFiles::new(&c.cert_path, &c.key_path))
            .collect(),
        client_ca: None,
    }
}

/// A TLS listener serving `cert`, loaded.
pub fn serving(cert: &switchyard_testkit::tls::TestCert) -> switchyard::tls::ServerTls {
    switchyard::tls::ServerTls::load(&listener(&[cert])).unwrap()
}
