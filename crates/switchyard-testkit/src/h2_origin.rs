//! HTTP/2 upstreams for tests, well behaved or not: h2c (prior knowledge)
//! or over TLS with ALPN `h2`, built on the `h2` crate's server so each can
//! refuse a stream, reset one after its head, never answer, or advertise a
//! small `SETTINGS_MAX_CONCURRENT_STREAMS`. [`GoawayOrigin`] speaks raw
//! frames, for the one thing `h2`'s server will not do: a GOAWAY whose last
//! stream id is below a stream it received.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{HeaderMap, Method, Request, Response};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::digest;

/// What an [`H2Origin`] does with each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Behavior {
    /// Read the whole request, then answer 200 with the origin's name.
    Answer,
    /// Like `Answer`, after a pause (to keep streams busy).
    AnswerAfter(Duration),
    /// Reset every stream with `REFUSED_STREAM`, reading nothing.
    Refuse,
    /// Like `Refuse`, after a pause: the client has sent what the initial
    /// window allows and buffered what it would send next.
    RefuseAfter(Duration),
    /// Send a 200 head and a few body bytes, then reset (`INTERNAL_ERROR`).
    ResetAfterHead,
    /// Never answer (the stream stays open until the client resets it).
    Silent,
    /// A gRPC echo: answer `content-type: application/grpc`, send each
    /// request body chunk back as it arrives, and end with the trailers
    /// `grpc-status: 0` and `grpc-message: echoed`. The request is recorded
    /// once its body ended.
    GrpcEcho,
    /// A trailers-only gRPC answer with this status: a head with
    /// `grpc-status` and the end of the stream, after reading the request.
    GrpcTrailersOnly(u32),
}

/// A request an [`H2Origin`] read whole.
#[derive(Debug, Clone)]
pub struct H2Seen {
    /// The method.
    pub method: Method,
    /// The target, as `:scheme://:authority:path`.
    pub uri: String,
    /// The regular headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The body's FNV-1a 64 digest.
    pub digest: u64,
}

impl H2Seen {
    fn new(head: http::request::Parts, bytes: Vec<u8>) -> Self {
        H2Seen {
            method: head.method,
            uri: head.uri.to_string(),
            headers: head.headers,
            digest: digest(&bytes),
            body: Bytes::from(bytes),
        }
    }
}

/// What an [`H2Origin`] counted.
#[derive(Debug, Default)]
pub struct H2Counts {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Streams opened by the client.
    pub streams: AtomicUsize,
    /// Streams open now.
    pub open: AtomicUsize,
    /// The most streams open at once.
    pub most_open: AtomicUsize,
    /// Streams the client reset before an answer.
    pub reset_by_client: AtomicUsize,
}

/// An HTTP/2 upstream on `127.0.0.1:0`. Dropping it stops it.
pub struct H2Origin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<H2Seen>>>,
    counts: Arc<H2Counts>,
    accept: JoinHandle<()>,
}

/// How an [`H2Origin`] listens.
#[derive(Clone, Default)]
pub struct H2Options {
    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` to advertise (none: no limit).
    pub max_concurrent_streams: Option<u32>,
    /// Serve TLS with this configuration (its ALPN should offer `h2`).
    pub tls: Option<Arc<ServerConfig>>,
    /// After this many streams on a connection, send GOAWAY (graceful:
    /// the streams begun finish, later ones are ignored), as nginx's
    /// `http2_max_requests` does.
    pub max_requests: Option<usize>,
}

impl H2Origin {
    /// An h2c upstream named `name` that behaves as `behavior`.
    pub async fn start(name: &str, behavior: H2Behavior) -> H2Origin {
        H2Origin::start_with(name, behavior, H2Options::default()).await
    }

    /// An upstream with `options`.
    pub async fn start_with(name: &str, behavior: H2Behavior, options: H2Options) -> H2Origin {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = Shared {
            name: Bytes::from(name.to_string()),
            behavior,
            seen: Arc::default(),
            counts: Arc::default(),
        };
        let (seen, counts) = (Arc::clone(&origin.seen), Arc::clone(&origin.counts));
        let accept = tokio::spawn(accept_loop(listener, origin, options));
        H2Origin {
            addr,
            seen,
            counts,
            accept,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests it read whole, in order.
    pub fn seen(&self) -> Vec<H2Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Its counters.
    pub fn counts(&self) -> &H2Counts {
        &self.counts
    }
}

impl std::fmt::Debug for H2Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Origin")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for H2Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Options")
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Drop for H2Origin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[derive(Clone)]
struct Shared {
    name: Bytes,
    behavior: H2Behavior,
    seen: Arc<Mutex<Vec<H2Seen>>>,
    counts: Arc<H2Counts>,
}

async fn accept_loop(listener: TcpListener, origin: Shared, options: H2Options) {
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        origin.counts.connections.fetch_add(1, Ordering::AcqRel);
        let origin = origin.clone();
        let limit = (options.max_concurrent_streams, options.max_requests);
        match acceptor.clone() {
            None => drop(tokio::spawn(serve(socket, origin, limit))),
            Some(acceptor) => drop(tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(socket).await {
                    serve(tls, origin, limit).await;
                }
            })),
        }
    }
}

async fn serve<S>(socket: S, origin: Shared, limits: (Option<u32>, Option<usize>))
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (limit, max_requests) = limits;
    let mut builder = h2::server::Builder::new();
    if let Some(limit) = limit {
        builder.max_concurrent_streams(limit);
    }
    let mut accepted = 0;
    let Ok(mut conn) = builder.handshake::<_, Bytes>(socket).await else {
        return;
    };
    while let Some(Ok((request, respond))) = conn.accept().await {
        let counts = &origin.counts;
        counts.streams.fetch_add(1, Ordering::AcqRel);
        let open = counts.open.fetch_add(1, Ordering::AcqRel) + 1;
        counts.most_open.fetch_max(open, Ordering::AcqRel);
        tokio::spawn(stream(request, respond, origin.clone()));
        accepted += 1;
        if max_requests == Some(accepted) {
            conn.graceful_shutdown();
        }
    }
}

async fn stream(request: Request<RecvStream>, mut respond: SendResponse<Bytes>, origin: Shared) {
    let counts = Arc::clone(&origin.counts);
    match origin.behavior {
        H2Behavior::Refuse => respond.send_reset(Reason::REFUSED_STREAM),
        H2Behavior::RefuseAfter(pause) => {
            tokio::time::sleep(pause).await;
            respond.send_reset(Reason::REFUSED_STREAM);
        }
        H2Behavior::Silent => {
            if std::future::poll_fn(|cx| respond.poll_reset(cx))
                .await
                .is_ok()
            {
                counts.reset_by_client.fetch_add(1, Ordering::AcqRel);
            }
        }
        H2Behavior::ResetAfterHead => {
            if let Ok(mut body) = respond.send_response(Response::new(()), false) {
                let _ = body.send_data(Bytes::from_static(b"partial"), false);
                tokio::time::sleep(Duration::from_millis(20)).await;
                body.send_reset(Reason::INTERNAL_ERROR);
            }
        }
        H2Behavior::GrpcTrailersOnly(code) => {
            if let Some(seen) = read_whole(request).await {
                origin.seen.lock().unwrap().push(seen);
            }
            let answer = Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", code.to_string())
                .header("grpc-message", "from the origin")
                .body(());
            if let Ok(answer) = answer {
                let _ = respond.send_response(answer, true);
            }
        }
        H2Behavior::GrpcEcho => {
            if let Some(seen) = grpc_echo(request, respond).await {
                origin.seen.lock().unwrap().push(seen);
            }
        }
        H2Behavior::Answer | H2Behavior::AnswerAfter(_) => {
            let seen = read_whole(request).await;
            if let H2Behavior::AnswerAfter(pause) = origin.behavior {
                tokio::time::sleep(pause).await;
            }
            if let Some(seen) = seen {
                origin.seen.lock().unwrap().push(seen);
            }
            if let Ok(mut body) = respond.send_response(Response::new(()), false) {
                let _ = body.send_data(origin.name.clone(), true);
            }
        }
    }
    counts.open.fetch_sub(1, Ordering::AcqRel);
}

/// Echo each request body chunk as it arrives, then the gRPC trailers.
async fn grpc_echo(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Option<H2Seen> {
    let (head, mut body) = request.into_parts();
    let answer = Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .ok()?;
    let mut sending = respond.send_response(answer, false).ok()?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
        sending.send_data(chunk, false).ok()?;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("echoed"));
    sending.send_trailers(trailers).ok()?;
    Some(H2Seen::new(head, bytes))
}

/// The request with its whole body, or `None` if the body broke off.
async fn read_whole(request: Request<RecvStream>) -> Option<H2Seen> {
    let (head, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Some(H2Seen::new(head, bytes))
}

/// When a [`GoawayOrigin`] sends its GOAWAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoawayAt {
    /// At the first stream of each connection, with last stream id 0:
    /// nothing was processed.
    FirstStream,
    /// At the second stream: the first is held until then, the GOAWAY
    /// names it as the last processed, and then it is answered 200. The
    /// second was not processed.
    SecondStream,
}

/// An h2c upstream speaking raw frames, for the one thing `h2`'s server
/// will not do: a GOAWAY whose last stream id is below a stream it
/// received. Dropping it stops it.
#[derive(Debug)]
pub struct GoawayOrigin {
    addr: SocketAddr,
    streams: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl GoawayOrigin {
    /// Listen on `127.0.0.1:0`, sending GOAWAY `at`.
    pub async fn start(at: GoawayAt) -> GoawayOrigin {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let streams = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&streams);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(goaway_connection(socket, Arc::clone(&counted), at));
            }
        });
        GoawayOrigin {
            addr,
            streams,
            task,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Streams (HEADERS frames) it was sent.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }
}

impl Drop for GoawayOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Frame types and flags used below (RFC 9113 section 6).
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// HPACK: `:status: 200`, static table entry 8.
const STATUS_200: u8 = 0x88;

async fn goaway_connection(mut socket: TcpStream, streams: Arc<AtomicUsize>, at: GoawayAt) {
    let mut preface = [0u8; 24];
    if socket.read_exact(&mut preface).await.is_err() {
        return;
    }
    if write_frame(&mut socket, SETTINGS, 0, 0, &[]).await.is_err() {
        return;
    }
    let mut first: Option<u32> = None;
    let mut sent_goaway = false;
    loop {
        let mut header = [0u8; 9];
        if socket.read_exact(&mut header).await.is_err() {
            return;
        }
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        if socket.read_exact(&mut payload).await.is_err() {
            return;
        }
        if kind == SETTINGS && flags & ACK == 0 {
            let _ = write_frame(&mut socket, SETTINGS, ACK, 0, &[]).await;
        }
        if kind != HEADERS {
            continue;
        }
        streams.fetch_add(1, Ordering::AcqRel);
        if sent_goaway {
            continue;
        }
        match (at, first) {
            (GoawayAt::SecondStream, None) => first = Some(stream),
            (GoawayAt::SecondStream, Some(processed)) => {
                sent_goaway = true;
                let mut goaway = processed.to_be_bytes().to_vec();
                goaway.extend_from_slice(&[0; 4]);
                let _ = write_frame(&mut socket, GOAWAY, 0, 0, &goaway).await;
                let flags = END_HEADERS | END_STREAM;
                let _ = write_frame(&mut socket, HEADERS, flags, processed, &[STATUS_200]).await;
            }
            (GoawayAt::FirstStream, _) => {
                sent_goaway = true;
                // Last stream id 0, NO_ERROR: nothing was processed.
                let _ = write_frame(&mut socket, GOAWAY, 0, 0, &[0; 8]).await;
            }
        }
    }
}

async fn write_frame(
    socket: &mut TcpStream,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    socket.write_all(&frame(kind, flags, stream, payload)).await
}

/// One raw HTTP/2 frame: its 9-byte header, then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}
