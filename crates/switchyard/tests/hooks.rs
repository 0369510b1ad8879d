//! Hooks that misbehave or change the request: the engine still answers,
//! logs, keeps the trace true, and judges idempotency by what was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{HasLogs, Logs, start_with, summary};
use switchyard::Decision;
use switchyard::policy::retry::StopReason;
use switchyard::prelude::*;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

/// A proxy to one peer whose hooks can be made to misbehave.
struct Quirky {
    peer: SocketAddr,
    logs: Logs,
    panic_in_request_filter: bool,
    peer_fails_on_retry: bool,
    rewrite_to_post: bool,
}

impl Quirky {
    fn new(peer: SocketAddr) -> Self {
        Quirky {
            peer,
            logs: Logs::default(),
            panic_in_request_filter: false,
            peer_fails_on_retry: false,
            rewrite_to_post: false,
        }
    }
}

impl HasLogs for Quirky {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

impl ProxyHttp for Quirky {
    type CTX = usize;

    fn new_ctx(&self) -> usize {
        0
    }

    async fn upstream_peer(&self, _s: &mut Session, calls: &mut usize) -> Result<Box<HttpPeer>> {
        *calls += 1;
        if self.peer_fails_on_retry && *calls > 1 {
            return Err(Error::explain(ErrorKind::Internal, "no peer left"));
        }
        Ok(Box::new(HttpPeer::new(self.peer, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _s: &mut Session,
        upstream_request: &mut RequestHeader,
        _calls: &mut usize,
    ) -> Result<()> {
        if self.panic_in_request_filter {
            panic!("a hook panics");
        }
        if self.rewrite_to_post {
            upstream_request.method = http::Method::POST;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _s: &mut Session,
        _p: &HttpPeer,
        _c: &mut usize,
        mut e: Box<Error>,
    ) -> Box<Error> {
        e.set_retry(true);
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _calls: &mut usize) {
        self.logs.push(session, e);
    }
}

#[tokio::test]
async fn a_panicking_hook_gets_a_500_and_is_still_logged() {
    let origin = Origin::healthy("origin").await;
    let quirky = Quirky {
        panic_in_request_filter: true,
        ..Quirky::new(origin.addr())
    };
    let proxy = start_with(quirky, ServerOptions::default()).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 500);
    let logged = proxy.logs.wait(1).await;
    assert_eq!(logged[0].error, Some(ErrorKind::Internal));
    // The server keeps serving.
    let again = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(again.status, 500);
}

#[tokio::test]
async fn when_upstream_peer_fails_on_a_retry_the_trace_says_no_attempt_followed() {
    let dead = refused_addr().await;
    let quirky = Quirky {
        peer_fails_on_retry: true,
        ..Quirky::new(dead)
    };
    let proxy = start_with(quirky, ServerOptions::default()).await;
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 500);
    let logged = proxy.logs.wait(1).await;
    let trace = &logged[0].trace;
    assert_eq!(trace.len(), 1);
    assert_eq!(
        trace.last().unwrap().decision,
        Decision::Stop(StopReason::InternalError)
    );
}

#[tokio::test]
async fn idempotency_is_judged_by_the_method_sent_upstream() {
    // A GET rewritten to POST on a reused connection that drops it is not retried.
    let origin = Origin::start(
        "stale",
        Script::per_connection(
            vec![Behavior::ok(), Behavior::CloseBeforeHead],
            Behavior::ok(),
        ),
    )
    .await;
    let quirky = Quirky {
        rewrite_to_post: true,
        ..Quirky::new(origin.addr())
    };
    let proxy = start_with(quirky, ServerOptions::default()).await;
    within(10, "warm-up", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    let reply = within(10, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let logged = proxy.logs.wait(2).await;
    assert_eq!(
        summary(&logged[1].trace),
        ["closed-before-head -> stop (hook-declined)"]
    );
}
