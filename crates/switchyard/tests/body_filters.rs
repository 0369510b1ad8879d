//! `response_body_filter`: a response whose hooks ask for it
//! (`Session::filter_response_body`) has its body passed through the hook,
//! piece by piece and once more at its end, and loses its
//! `Content-Length`; other responses stream untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{HasLogs, Logs, Running, start_with};
use switchyard::prelude::*;
use switchyard_testkit::{Behavior, Origin, Script, client, within};

/// What the test proxy's filter does with each piece.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// Upper case, and `!` added at the end.
    Shout,
    /// Drop every piece.
    Drop,
    /// Fail on the first piece.
    Fail,
    /// Panic on the first piece.
    Panic,
}

#[derive(Clone)]
struct FilteringProxy {
    upstream: SocketAddr,
    /// Whether `response_filter` asks for the body to be filtered.
    ask: bool,
    filter: Filter,
    /// The hook's calls, the last one included.
    calls: Arc<AtomicUsize>,
    logs: Logs,
}

impl FilteringProxy {
    fn new(upstream: SocketAddr, ask: bool, filter: Filter) -> Self {
        FilteringProxy {
            upstream,
            ask,
            filter,
            calls: Arc::default(),
            logs: Logs::default(),
        }
    }
}

impl HasLogs for FilteringProxy {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

impl ProxyHttp for FilteringProxy {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        _: &mut ResponseHeader,
        _: &mut (),
    ) -> Result<()> {
        if self.ask {
            session.filter_response_body();
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        _: &mut (),
    ) -> Result<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match self.filter {
            Filter::Shout if end_of_stream => *body = Some(Bytes::from_static(b"!")),
            Filter::Shout => {
                *body = body.take().map(|b| Bytes::from(b.to_ascii_uppercase()));
            }
            Filter::Drop => *body = None,
            Filter::Fail => {
                return Err(Error::explain(ErrorKind::Internal, "the filter refused"));
            }
            Filter::Panic => panic!("the filter panicked"),
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _: &mut ()) {
        self.logs.push(session, e);
    }
}

async fn start(proxy: FilteringProxy) -> Running {
    start_with(proxy, ServerOptions::default()).await
}

/// An origin answering `hello world` with a `Content-Length`.
async fn hello() -> Origin {
    let body = Bytes::from_static(b"hello world");
    Origin::start(
        "hello",
        Script::always(Behavior::Respond { status: 200, body }),
    )
    .await
}

#[tokio::test]
async fn a_filtered_body_changes_and_loses_its_content_length() {
    let origin = hello().await;
    let proxy = FilteringProxy::new(origin.addr(), true, Filter::Shout);
    let calls = Arc::clone(&proxy.calls);
    let running = start(proxy).await;
    let reply = within(10, "GET", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, Bytes::from_static(b"HELLO WORLD!"));
    assert!(
        reply.headers.get("content-length").is_none(),
        "{:?}",
        reply.headers
    );
    assert!(
        calls.load(Ordering::Relaxed) >= 2,
        "a piece and the last call"
    );
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].error, None);
    let sent = logged[0].trace.last().unwrap().response_body_bytes;
    assert_eq!(sent, 12, "the bytes the client got, not the upstream's 11");
}

#[tokio::test]
async fn a_chunked_body_is_filtered_piece_by_piece() {
    let chunks = vec![Bytes::from_static(b"one "), Bytes::from_static(b"two")];
    let gap = Duration::from_millis(20);
    let origin = Origin::start("chunks", Script::always(Behavior::Chunked { chunks, gap })).await;
    let proxy = FilteringProxy::new(origin.addr(), true, Filter::Shout);
    let calls = Arc::clone(&proxy.calls);
    let running = start(proxy).await;
    let reply = within(10, "GET", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, Bytes::from_static(b"ONE TWO!"));
    assert!(
        calls.load(Ordering::Relaxed) >= 3,
        "two pieces and the last call"
    );
}

#[tokio::test]
async fn without_asking_the_body_streams_untouched() {
    let origin = hello().await;
    let proxy = FilteringProxy::new(origin.addr(), false, Filter::Shout);
    let calls = Arc::clone(&proxy.calls);
    let running = start(proxy).await;
    let reply = within(10, "GET", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, Bytes::from_static(b"hello world"));
    assert_eq!(reply.headers["content-length"], "11");
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_filter_may_drop_every_byte() {
    let origin = hello().await;
    let running = start(FilteringProxy::new(origin.addr(), true, Filter::Drop)).await;
    let reply = within(10, "GET", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty(), "{:?}", reply.body);
}

#[tokio::test]
async fn a_failing_or_panicking_filter_aborts_the_response_and_ends_the_request() {
    for filter in [Filter::Fail, Filter::Panic] {
        let origin = hello().await;
        let running = start(FilteringProxy::new(origin.addr(), true, filter)).await;
        let reply = within(10, "GET", client::get(running.addr, "/")).await;
        assert!(reply.is_err(), "a cut-off body, not a whole one: {reply:?}");
        let logged = running.logs.wait(1).await;
        assert_eq!(logged[0].error, Some(ErrorKind::Internal));
    }
}

#[tokio::test]
async fn a_client_that_leaves_a_filtered_body_is_noticed_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The second piece would come only after 10 s.
    let chunks = vec![Bytes::from_static(b"one "), Bytes::from_static(b"two")];
    let gap = Duration::from_secs(10);
    let origin = Origin::start("quiet", Script::always(Behavior::Chunked { chunks, gap })).await;
    let running = start(FilteringProxy::new(origin.addr(), true, Filter::Shout)).await;
    let mut client = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !got.windows(3).any(|w| w == b"ONE") {
        let mut buf = [0; 1024];
        let n = within(5, "the first piece", client.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(client);
    let logged = within(3, "the request's end", running.logs.wait(1)).await;
    assert_eq!(logged[0].error, Some(ErrorKind::DownstreamClosed));
}
