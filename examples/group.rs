//! A library user's proxy over an upstream group: two primaries and a
//! backup, active health checks, least-loaded selection, request hedging and
//! an Idempotency-Key rule. Each hook delegates to the group in a line.
//!
//! ```text
//! cargo run --example group
//! ```
//!
//! It starts its own loopback upstreams: primary `a` refuses connections
//! (its checks take it down), primary `b` answers 503 after 300 ms (so a
//! GET is hedged to the backup, and a POST with an idempotency key is
//! retried there), backup `c` answers 200. Then it sends a few requests
//! through the proxy and prints each one's attempts.

use std::{sync::Arc, time::Duration};

use switchyard::group::{GroupCtx, RetryPolicy, UpstreamGroup};
use switchyard::health::checker::CheckOptions;
use switchyard::lb::{Backend, Backends, Selection};
use switchyard::policy::{limits::RetryLimits, request_hedge::HedgePolicy};
use switchyard::prelude::*;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr};

/// The proxy: one group, shared with `main` (which watches its health).
struct Proxy(Arc<UpstreamGroup>);

impl ProxyHttp for Proxy {
    type CTX = GroupCtx;

    fn new_ctx(&self) -> GroupCtx {
        GroupCtx::default()
    }

    fn retry_limits(&self, _: &Session, ctx: &GroupCtx) -> RetryLimits {
        self.0.retry_limits(ctx)
    }

    async fn upstream_peer(&self, s: &mut Session, ctx: &mut GroupCtx) -> Result<Box<HttpPeer>> {
        self.0.upstream_peer(s, ctx)
    }

    fn fail_to_connect(
        &self,
        _: &mut Session,
        p: &HttpPeer,
        ctx: &mut GroupCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.0.fail_to_connect(p, ctx, e)
    }

    fn error_while_proxy(
        &self,
        p: &HttpPeer,
        s: &mut Session,
        e: Box<Error>,
        ctx: &mut GroupCtx,
        reused: bool,
    ) -> Box<Error> {
        self.0.error_while_proxy(p, s, e, ctx, reused)
    }

    fn upstream_response_failure(
        &self,
        s: &mut Session,
        head: &ResponseHeader,
        ctx: &mut GroupCtx,
    ) -> Option<Box<Error>> {
        self.0.upstream_response_failure(s, head, ctx)
    }

    async fn logging(&self, s: &mut Session, _: Option<&Error>, ctx: &mut GroupCtx) {
        self.0.logging(s, ctx);
        let (head, trace) = (s.req_header(), s.attempts());
        println!("{} {} via {trace}", head.method, head.uri);
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let ms = Duration::from_millis;
    let (a, c) = (refused_addr().await, Origin::healthy("c").await);
    let b = Origin::start("b", Script::always(Behavior::status(503).after(ms(300)))).await;
    let primaries = vec![Backend::new(a), Backend::new(b.addr())];
    let backups = vec![Backend::new(c.addr())];
    let backends = Backends::new(primaries, backups, Selection::LeastLoaded)?;
    let mut policy = RetryPolicy::default();
    policy.rules.retry_on.statuses.push(503);
    policy.idempotency_key = Some(http::HeaderName::from_static("idempotency-key"));
    policy.limits.hedge = Some(HedgePolicy::new(ms(50), ms(100)));
    let group = UpstreamGroup::builder("app", backends).retry_policy(policy);
    let group = Arc::new(group.checks(CheckOptions::every(ms(100))).build());
    let _checker = group.start_checks();
    let listen = ([127, 0, 0, 1], 0).into();
    let server = ProxyServer::bind(listen, Proxy(group.clone()), ServerOptions::default()).await?;
    let addr = server.local_addr();
    tokio::spawn(server.serve());
    client::get(addr, "/").await.ok();
    tokio::time::sleep(ms(500)).await;
    println!("a is down after its checks: {}", group.health().is_down(a));
    client::get(addr, "/").await.ok();
    client::post(addr, "/pay", "{}").await.ok();
    let key = [("idempotency-key", "order-42")];
    client::post_with(addr, "/pay", &key, "{}").await.ok();
    Ok(())
}
