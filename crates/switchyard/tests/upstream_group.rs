//! The upstream group behind a library user's proxy: each hook delegates to
//! an `UpstreamGroup`, and the group fails over, honours `Retry-After`,
//! hedges slow answers, ramps a server back in slowly, and keeps dry-run
//! policies to notes. These are the
//! library-level twins of the binary's tests of the same behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{HasLogs, Logs, Running, start_with};
use switchyard::group::{GroupCtx, RetryPolicy, UpstreamGroup};
use switchyard::health::OutlierPolicy;
use switchyard::lb::{Backend, Backends, Selection};
use switchyard::policy::dry_run::{Mode, WouldHave};
use switchyard::policy::limits::RetryLimits;
use switchyard::policy::request_hedge::HedgePolicy;
use switchyard::prelude::*;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

/// A user's proxy whose every upstream hook is the group's.
#[derive(Clone)]
struct GroupProxy {
    group: Arc<UpstreamGroup>,
    logs: Logs,
    /// What the group's `logging` returned, request by request.
    dry_runs: Arc<Mutex<Vec<Vec<WouldHave>>>>,
    /// The `Retry-After` holds each request made.
    holds: Arc<Mutex<Vec<u16>>>,
}

impl GroupProxy {
    fn new(group: UpstreamGroup) -> Self {
        GroupProxy {
            group: Arc::new(group),
            logs: Logs::default(),
            dry_runs: Arc::default(),
            holds: Arc::default(),
        }
    }
}

impl HasLogs for GroupProxy {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

impl ProxyHttp for GroupProxy {
    type CTX = GroupCtx;

    fn new_ctx(&self) -> GroupCtx {
        GroupCtx::default()
    }

    fn retry_limits(&self, _: &Session, ctx: &GroupCtx) -> RetryLimits {
        self.group.retry_limits(ctx)
    }

    async fn upstream_peer(&self, s: &mut Session, ctx: &mut GroupCtx) -> Result<Box<HttpPeer>> {
        self.group.upstream_peer(s, ctx)
    }

    fn fail_to_connect(
        &self,
        _: &mut Session,
        peer: &HttpPeer,
        ctx: &mut GroupCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.group.fail_to_connect(peer, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        s: &mut Session,
        e: Box<Error>,
        ctx: &mut GroupCtx,
        reused: bool,
    ) -> Box<Error> {
        self.group.error_while_proxy(peer, s, e, ctx, reused)
    }

    fn upstream_response_failure(
        &self,
        s: &mut Session,
        head: &ResponseHeader,
        ctx: &mut GroupCtx,
    ) -> Option<Box<Error>> {
        self.group.upstream_response_failure(s, head, ctx)
    }

    async fn logging(&self, s: &mut Session, e: Option<&Error>, ctx: &mut GroupCtx) {
        let dry_runs = self.group.logging(s, ctx);
        self.dry_runs.lock().unwrap().push(dry_runs);
        self.holds.lock().unwrap().extend(ctx.holds());
        self.logs.push(s, e);
    }
}

async fn start(proxy: GroupProxy) -> Running {
    start_with(proxy, ServerOptions::default()).await
}

/// A group over `primaries` and `backups`, taken in turn, with `policy`.
fn group(primaries: &[SocketAddr], backups: &[SocketAddr], policy: RetryPolicy) -> UpstreamGroup {
    group_with(primaries, backups, policy, OutlierPolicy::default())
}

/// The same, with `outlier` as its outlier ejection and slow start.
fn group_with(
    primaries: &[SocketAddr],
    backups: &[SocketAddr],
    policy: RetryPolicy,
    outlier: OutlierPolicy,
) -> UpstreamGroup {
    let tier = |addrs: &[SocketAddr]| addrs.iter().map(|&a| Backend::new(a)).collect();
    let backends = Backends::new(tier(primaries), tier(backups), Selection::RoundRobin).unwrap();
    UpstreamGroup::builder("app", backends)
        .peer_options(common::quick())
        .retry_policy(policy)
        .outlier(outlier)
        .build()
}

/// Retry a 503 on the next server.
fn retry_503() -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.rules.retry_on.statuses.push(503);
    policy
}

#[tokio::test]
async fn a_refused_primary_fails_over_to_the_backup() {
    let dead = refused_addr().await;
    let backup = Origin::healthy("backup").await;
    let proxy = GroupProxy::new(group(&[dead], &[backup.addr()], RetryPolicy::default()));
    let running = start(proxy).await;
    let reply = within(10, "the request", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, Bytes::from_static(b"backup"));
    let logged = running.logs.wait(1).await;
    assert_eq!(
        common::summary(&logged[0].trace),
        ["connect-refused -> retry", "200 -> done"]
    );
}

#[tokio::test]
async fn retry_after_holds_its_server_out_of_selection() {
    let retry_after = Bytes::from_static(
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 30\r\ncontent-length: 0\r\n\r\n",
    );
    let busy = Origin::start(
        "busy",
        Script::always(Behavior::RawKeepOpen { bytes: retry_after }),
    )
    .await;
    let fine = Origin::healthy("fine").await;
    let proxy = GroupProxy::new(group(&[busy.addr(), fine.addr()], &[], retry_503()));
    let holds = Arc::clone(&proxy.holds);
    let running = start(proxy).await;
    for _ in 0..6 {
        let reply = within(10, "a request", client::get(running.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "the retry, or the server not held");
    }
    running.logs.wait(6).await;
    // Asked once, held for 30 s: round robin would have sent it 3 of 6.
    assert_eq!(busy.stats().requests, 1);
    assert_eq!(*holds.lock().unwrap(), [503]);
}

#[tokio::test]
async fn a_slow_answer_is_hedged_to_another_server() {
    let slow = Origin::start(
        "slow",
        Script::always(Behavior::ok().after(Duration::from_secs(2))),
    )
    .await;
    let fast = Origin::healthy("fast").await;
    let mut policy = RetryPolicy::default();
    let after = Duration::from_millis(50);
    policy.limits.hedge = Some(HedgePolicy::new(after, after));
    let proxy = GroupProxy::new(group(&[slow.addr()], &[fast.addr()], policy));
    let running = start(proxy).await;
    let reply = within(10, "the request", client::get(running.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, Bytes::from_static(b"fast"), "the copy answered");
    let logged = running.logs.wait(1).await;
    let hedge = logged[0].trace.records()[0].request_hedge;
    assert!(hedge.is_some_and(|h| h.copy_won), "{}", logged[0].trace);
}

#[tokio::test]
async fn an_idempotency_key_retries_a_post_and_a_dry_run_only_says_so() {
    for dry_run in [false, true] {
        let busy = Origin::start("busy", Script::always(Behavior::status(503))).await;
        let fine = Origin::healthy("fine").await;
        let mut policy = retry_503();
        policy.idempotency_key = Some(http::HeaderName::from_static("idempotency-key"));
        if dry_run {
            policy.limits.mode = Mode::DryRun;
        }
        let proxy = GroupProxy::new(group(&[busy.addr(), fine.addr()], &[], policy));
        let dry_runs = Arc::clone(&proxy.dry_runs);
        let running = start(proxy).await;
        let key = [("idempotency-key", "order-42")];
        // Round robin: the first request goes to `busy`.
        let reply = within(
            10,
            "the POST",
            client::post_with(running.addr, "/", &key, "{}"),
        )
        .await
        .unwrap();
        let noted = dry_runs.lock().unwrap().concat();
        let would = WouldHave {
            policy: "idempotency-key",
            would: "retry",
        };
        if dry_run {
            assert_eq!(reply.status, 503, "a dry run does not retry");
            assert_eq!(noted, [would]);
        } else {
            assert_eq!(reply.status, 200, "the key made the POST safe to resend");
            assert!(noted.is_empty(), "{noted:?}");
            let logged = running.logs.wait(1).await;
            let note = logged[0].trace.records()[0].note;
            assert_eq!(note, Some("idempotency-key"));
        }
    }
}

#[tokio::test]
async fn a_server_back_from_an_ejection_ramps_up_its_share() {
    // One 500 ejects it for 200 ms; then it answers, ramping up over 10 s.
    let back = Origin::start(
        "back",
        Script::sequence(vec![Behavior::status(500)], Behavior::ok()),
    )
    .await;
    let other = Origin::healthy("other").await;
    let outlier = OutlierPolicy {
        consecutive_5xx: 1,
        base_ejection: Duration::from_millis(200),
        slow_start: Duration::from_secs(10),
        ..OutlierPolicy::default()
    };
    let proxy = GroupProxy::new(group_with(
        &[back.addr(), other.addr()],
        &[],
        RetryPolicy::default(),
        outlier,
    ));
    let group = Arc::clone(&proxy.group);
    let running = start(proxy).await;
    while back.requests().is_empty() {
        within(10, "a GET", client::get(running.addr, "/"))
            .await
            .unwrap();
    }
    // Ejected, then usable again: the ramp begins.
    let ejected = || {
        let now = std::time::Instant::now();
        let status = group.health().snapshot(now);
        status.iter().any(|s| s.peer == back.addr() && !s.usable)
    };
    switchyard_testkit::eventually(5, "the ejection", ejected).await;
    switchyard_testkit::eventually(5, "the end of the ejection", || !ejected()).await;
    let seen = back.requests().len();
    for _ in 0..40 {
        within(10, "a GET", client::get(running.addr, "/"))
            .await
            .unwrap();
    }
    let early = back.requests().len() - seen;
    // Round robin alone would send it 20 of the 40.
    assert!(early <= 12, "{early} of 40 early in its ramp");
}
