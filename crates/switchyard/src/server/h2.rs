//! HTTP/2 from clients: chosen by ALPN (`h2`) on a TLS listener, or by the
//! connection preface on a cleartext one (h2c with prior knowledge; the
//! HTTP/1.1 `Upgrade: h2c` dance is not offered). Requests go to the same
//! engine as HTTP/1.1 ones.
//!
//! Limits are on from the start ([`Http2Options`]): concurrent streams, the
//! header list size, and the two reset caps that blunt rapid-reset floods
//! (CVE-2023-44487); the `h2` crate also bounds CONTINUATION frames by the
//! header list size and answers SETTINGS and PING at a bounded rate. A
//! keep-alive PING finds dead connections; shutdown sends GOAWAY and lets
//! the streams in flight finish within the drain time.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tracing::debug;

use super::connection::{Activity, ClientStream, stopped};
use super::counts::ConnectionCounts;
use super::proxy_protocol::Prefixed;

/// The connection preface every HTTP/2 client sends first (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Limits on client HTTP/2 connections.
///
/// | field | default |
/// |---|---|
/// | `max_concurrent_streams` | 100 per connection |
/// | `max_header_list_size` | 32 KiB (CONTINUATION frames included) |
/// | `max_pending_accept_reset_streams` | 20: streams the client reset before the proxy saw them |
/// | `max_local_error_reset_streams` | 1024: streams the proxy had to reset for the client's errors |
/// | `keep_alive_interval` | 20 s of silence before a PING |
/// | `keep_alive_timeout` | 20 s for its answer, else the connection closes |
/// | `idle_timeout` | 3 min with no stream open: GOAWAY, and the connection closes |
///
/// A client over either reset cap, or otherwise abusive, gets a GOAWAY
/// and its connection is closed; other clients are not affected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Options {
    /// Streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Largest header list a client may send, in bytes.
    pub max_header_list_size: u32,
    /// Streams reset by the client before the proxy accepted them that
    /// may be pending at once (rapid-reset protection).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the proxy reset because of the client's protocol errors,
    /// over the connection's life, before it is closed.
    pub max_local_error_reset_streams: usize,
    /// Silence after which the proxy PINGs the client (`None`: never).
    pub keep_alive_interval: Option<Duration>,
    /// How long the PING's answer may take before the connection closes.
    pub keep_alive_timeout: Duration,
    /// How long a connection may have no stream open before the proxy
    /// sends GOAWAY and closes it (`None`: never). Noticed within a quarter
    /// of it.
    pub idle_timeout: Option<Duration>,
}

impl Default for Http2Options {
    fn default() -> Self {
        Http2Options {
            max_concurrent_streams: 100,
            max_header_list_size: 32 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            keep_alive_interval: Some(Duration::from_secs(20)),
            keep_alive_timeout: Duration::from_secs(20),
            idle_timeout: Some(Duration::from_secs(180)),
        }
    }
}

/// hyper's HTTP/2 server with `options` applied.
pub(super) fn builder(options: &Http2Options) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(options.max_header_list_size)
        .max_pending_accept_reset_streams(options.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(options.max_local_error_reset_streams)
        .keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout)
        .initial_stream_window_size(crate::buffers::H2_STREAM_WINDOW)
        .max_send_buf_size(crate::buffers::H2_SEND_BUFFER);
    builder
}

/// Read the start of a cleartext connection, within `timeout`: whether it
/// is the HTTP/2 preface, and the stream with what was read put back.
pub(super) async fn sniff_preface(
    mut stream: Prefixed,
    timeout: Duration,
) -> io::Result<(bool, Prefixed)> {
    let mut seen = BytesMut::with_capacity(PREFACE.len());
    let read = async {
        loop {
            let n = stream.read_buf(&mut seen).await?;
            let prefix_of_preface = PREFACE.starts_with(&seen);
            if n == 0 || !prefix_of_preface || seen.len() >= PREFACE.len() {
                return Ok::<bool, io::Error>(seen.starts_with(PREFACE));
            }
        }
    };
    let h2 = match tokio::time::timeout(timeout, read).await {
        Ok(h2) => h2?,
        // Silent for the whole header timeout: HTTP/1.1 will close it.
        Err(_) => false,
    };
    stream.put_back(seen.freeze());
    Ok((h2, stream))
}

/// Serve one HTTP/2 client connection until it closes, idles for
/// `idle_timeout`, or `stop` is raised (then GOAWAY, and the streams in
/// flight finish).
pub(super) async fn drive<S>(
    builder: http2::Builder<TokioExecutor>,
    stream: ClientStream,
    service: S,
    idle: (Arc<Activity>, Option<Duration>),
    mut stop: watch::Receiver<bool>,
    counts: ConnectionCounts,
) where
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _open = counts.opened();
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let (activity, idle_timeout) = idle;
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = idled_out(&activity, idle_timeout) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        debug!(error = %e, "HTTP/2 client connection ended with an error");
    }
}

/// Resolve once the connection had no stream open and finished none for
/// `idle_timeout` (checked four times per period); never without one.
async fn idled_out(activity: &Activity, idle_timeout: Option<Duration>) {
    const CHECKS: u32 = 4;
    let Some(idle_timeout) = idle_timeout else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(idle_timeout / CHECKS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = activity.responses();
    let mut quiet = 0;
    loop {
        tick.tick().await;
        let now = activity.responses();
        quiet = if now == last && !now.1 { quiet + 1 } else { 0 };
        last = now;
        // Ticks start at once: CHECKS + 1 quiet looks span a whole period.
        if quiet > CHECKS {
            return;
        }
    }
}
