//! `request_body_filter`: the filter it returns changes the request body on
//! its way upstream (which gets it without the client's `Content-Length`),
//! a retry replays the filtered bytes without filtering them again, and a
//! filter that fails or panics ends the request with its error, unretried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{HasLogs, Logs, Running, start_with};
use http_body_util::Full;
use switchyard::prelude::*;
use switchyard::proxy::RequestBodyFilter;
use switchyard_testkit::client::RawConn;
use switchyard_testkit::{Behavior, Origin, Script, client, within};

/// What the test proxy's filter does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// No filter at all.
    None,
    /// Upper case, and `!` added at the end.
    Shout,
    /// Every piece as it came, nothing added.
    Quiet,
    /// Hold every piece back; send them at the end, upper case.
    Hold,
    /// Refuse the body as the client's fault.
    Refuse,
    /// Panic on the first piece.
    Panic,
}

#[derive(Clone)]
struct FilteringProxy {
    upstream: SocketAddr,
    filter: Filter,
    /// The filter's end-of-stream calls.
    ends: Arc<AtomicUsize>,
    /// Retry every failure while sending (once).
    retry_once: bool,
    /// The upstream's write timeout, when not the default.
    write_timeout: Option<Duration>,
    logs: Logs,
}

impl FilteringProxy {
    fn new(upstream: SocketAddr, filter: Filter) -> Self {
        FilteringProxy {
            upstream,
            filter,
            ends: Arc::default(),
            retry_once: false,
            write_timeout: None,
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
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        if let Some(timeout) = self.write_timeout {
            peer.options.write_timeout = timeout;
        }
        Ok(Box::new(peer))
    }

    fn request_body_filter(
        &self,
        _: &mut Session,
        _: &mut (),
    ) -> Option<Box<dyn RequestBodyFilter>> {
        let ends = Arc::clone(&self.ends);
        let filter = self.filter;
        if filter == Filter::None {
            return None;
        }
        let mut held = Vec::new();
        Some(Box::new(move |body: &mut Option<Bytes>, end: bool| {
            match filter {
                Filter::Quiet => return Ok(()),
                Filter::Hold => {
                    held.extend_from_slice(&body.take().unwrap_or_default());
                    if end {
                        *body = Some(Bytes::from(held.to_ascii_uppercase()));
                    }
                    return Ok(());
                }
                Filter::Refuse => {
                    return Err(Error::explain(
                        ErrorKind::InvalidDownstreamRequest,
                        "no thanks",
                    ));
                }
                Filter::Panic => panic!("the filter panicked"),
                _ => {}
            }
            if end {
                ends.fetch_add(1, Ordering::Relaxed);
                *body = Some(Bytes::from_static(b"!"));
            } else {
                *body = body.take().map(|b| Bytes::from(b.to_ascii_uppercase()));
            }
            Ok(())
        }))
    }

    fn error_while_proxy(
        &self,
        _: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        _: &mut (),
        _: bool,
    ) -> Box<Error> {
        e.set_retry(self.retry_once && session.attempts().len() < 2);
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _: &mut ()) {
        self.logs.push(session, e);
    }
}

async fn start(proxy: FilteringProxy) -> Running {
    start_with(proxy, ServerOptions::default()).await
}

async fn echo(script: Script) -> Origin {
    Origin::start("echo", script).await
}

#[tokio::test]
async fn a_filtered_request_body_goes_upstream_changed_without_its_length() {
    let origin = echo(Script::always(Behavior::Echo)).await;
    let running = start(FilteringProxy::new(origin.addr(), Filter::Shout)).await;
    let reply = within(10, "POST", client::post(running.addr, "/", "hello world"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, Bytes::from_static(b"HELLO WORLD!"));
    let seen = origin.requests();
    assert_eq!(seen[0].body_len, 12);
    assert!(
        seen[0].headers.get("content-length").is_none(),
        "{:?}",
        seen[0].headers
    );
}

#[tokio::test]
async fn without_a_filter_the_body_and_its_length_go_as_they_came() {
    let origin = echo(Script::always(Behavior::Echo)).await;
    let running = start(FilteringProxy::new(origin.addr(), Filter::None)).await;
    let reply = within(10, "POST", client::post(running.addr, "/", "hello world"))
        .await
        .unwrap();
    assert_eq!(reply.body, Bytes::from_static(b"hello world"));
    // Its length is known: not sent chunked, as a filtered body is.
    let seen = origin.requests();
    assert_eq!(seen[0].headers["content-length"], "11");
    assert!(seen[0].headers.get("transfer-encoding").is_none());
}

#[tokio::test]
async fn a_retry_replays_the_filtered_body_without_filtering_it_again() {
    let script = Script::sequence(vec![Behavior::CloseBeforeHead], Behavior::Echo);
    let origin = echo(script).await;
    let mut proxy = FilteringProxy::new(origin.addr(), Filter::Shout);
    proxy.retry_once = true;
    let ends = Arc::clone(&proxy.ends);
    let running = start(proxy).await;
    let reply = within(10, "POST", client::post(running.addr, "/", "hello world"))
        .await
        .unwrap();
    assert_eq!(reply.body, Bytes::from_static(b"HELLO WORLD!"));
    let logged = running.logs.wait(1).await;
    assert_eq!(logged[0].trace.len(), 2, "the first attempt failed");
    assert_eq!(ends.load(Ordering::Relaxed), 1, "filtered once");
}

#[tokio::test]
async fn a_failing_filter_ends_the_request_with_its_error_unretried() {
    for (filter, status, kind) in [
        (Filter::Refuse, 400, ErrorKind::InvalidDownstreamRequest),
        (Filter::Panic, 500, ErrorKind::Internal),
    ] {
        let origin = echo(Script::always(Behavior::Echo)).await;
        let mut proxy = FilteringProxy::new(origin.addr(), filter);
        proxy.retry_once = true;
        let running = start(proxy).await;
        let reply = within(10, "POST", client::post(running.addr, "/", "hello world"))
            .await
            .unwrap();
        assert_eq!(reply.status, status);
        let logged = running.logs.wait(1).await;
        assert_eq!(logged[0].error, Some(kind));
        assert_eq!(logged[0].trace.len(), 1, "not retried");
    }
}

#[tokio::test]
async fn a_get_with_a_body_is_filtered_and_sent_chunked() {
    let origin = echo(Script::always(Behavior::Echo)).await;
    let running = start(FilteringProxy::new(origin.addr(), Filter::Shout)).await;
    let request = http::Request::get("/")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let reply = within(10, "GET", client::send(running.addr, request))
        .await
        .unwrap();
    assert_eq!(reply.body, Bytes::from_static(b"HELLO!"));
    assert_eq!(origin.requests()[0].headers["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn a_bodyless_get_keeps_no_body_unless_the_filter_adds_one() {
    let origin = echo(Script::always(Behavior::Echo)).await;
    let proxy = FilteringProxy::new(origin.addr(), Filter::Quiet);
    let running = start(proxy).await;
    let reply = within(10, "GET", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    let seen = &origin.requests()[0];
    assert!(
        seen.headers.get("transfer-encoding").is_none(),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.body_len, 0);

    let proxy = FilteringProxy::new(origin.addr(), Filter::Shout);
    let ends = Arc::clone(&proxy.ends);
    let running = start(proxy).await;
    let reply = within(10, "GET", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(
        reply.body,
        Bytes::from_static(b"!"),
        "the end-of-stream call's bytes"
    );
    assert_eq!(ends.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_filter_that_holds_the_body_back_is_not_a_stall() {
    let origin = echo(Script::always(Behavior::Echo)).await;
    let mut proxy = FilteringProxy::new(origin.addr(), Filter::Hold);
    proxy.write_timeout = Some(Duration::from_millis(300));
    let running = start(proxy).await;
    let mut conn = RawConn::connect(running.addr).await;
    conn.write("POST / HTTP/1.1\r\nHost: a.test\r\ncontent-length: 20\r\n\r\n")
        .await
        .unwrap();
    // 20 bytes over a second: more than the write timeout, though the
    // client never pauses longer than it.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.write("abcd").await.unwrap();
    }
    let reply = within(10, "the response", conn.read_response())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, Bytes::from_static(b"ABCDABCDABCDABCDABCD"));
}
