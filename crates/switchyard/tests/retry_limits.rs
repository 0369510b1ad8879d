//! Per-request retry limits (cap, backoff, deadline) and retries on an
//! upstream's status, where an answer not retried is forwarded as it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{HasLogs, Logs, start_with, summary};
use switchyard::policy::backoff::{Backoff, Jitter};
use switchyard::policy::budget::BudgetPolicy;
use switchyard::policy::limits::RetryLimits;
use switchyard::prelude::*;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

/// Walks `peers` in order, retrying connect failures and 503s, with `limits`.
struct Limited {
    peers: Vec<SocketAddr>,
    limits: RetryLimits,
    logs: Logs,
}

impl HasLogs for Limited {
    fn logs(&self) -> Logs {
        self.logs.clone()
    }
}

impl ProxyHttp for Limited {
    type CTX = usize;

    fn new_ctx(&self) -> usize {
        0
    }

    fn retry_limits(&self, _s: &Session, _c: &usize) -> RetryLimits {
        self.limits.clone()
    }

    async fn upstream_peer(&self, _s: &mut Session, next: &mut usize) -> Result<Box<HttpPeer>> {
        let addr = self.peers[(*next).min(self.peers.len() - 1)];
        *next += 1;
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
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

    fn upstream_response_failure(
        &self,
        _s: &mut Session,
        head: &ResponseHeader,
        _c: &mut usize,
    ) -> Option<Box<Error>> {
        (head.status == 503).then(|| {
            let mut e = Error::explain(ErrorKind::UpstreamStatus, "503");
            e.set_retry(true);
            e
        })
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, _c: &mut usize) {
        self.logs.push(session, e);
    }
}

async fn run(peers: Vec<SocketAddr>, limits: RetryLimits) -> (client::Collected, common::Logged) {
    run_with(peers, limits, ServerOptions::default()).await
}

/// `run` with `options`, whose backoff jitter is fixed at 0.5: every delay
/// is half its window, exactly.
async fn run_with(
    peers: Vec<SocketAddr>,
    limits: RetryLimits,
    options: ServerOptions,
) -> (client::Collected, common::Logged) {
    let proxy = start_with(
        Limited {
            peers,
            limits,
            logs: Logs::default(),
        },
        ServerOptions {
            backoff_jitter: Jitter::Fixed { per_mille: 500 },
            ..options
        },
    )
    .await;
    let reply = within(20, "request", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    let logged = proxy.logs.wait(1).await.remove(0);
    (reply, logged)
}

#[tokio::test]
async fn a_spent_budget_stops_retries_with_its_reason() {
    let dead = refused_addr().await;
    // No share of requests, and a floor of 1 retry/s over 2 s: two retries.
    let options = ServerOptions {
        retry_budget: Some(BudgetPolicy {
            percent: 0,
            min_per_second: 1,
            window: Duration::from_secs(2),
        }),
        ..ServerOptions::default()
    };
    let (reply, logged) = run_with(vec![dead], RetryLimits::default(), options).await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        summary(&logged.trace),
        [
            "connect-refused -> retry",
            "connect-refused -> retry",
            "connect-refused -> stop (budget-exhausted)"
        ]
    );
}

#[tokio::test]
async fn without_a_budget_only_the_cap_stops_retries() {
    // 120 requests to a refused peer, 16 retries each: far more than the
    // default budget allows (20% of 120 plus 10/s over 10 s, 124), so with
    // it the later requests would stop at budget-exhausted. Without one,
    // every request makes its 17 attempts.
    let dead = refused_addr().await;
    let proxy = start_with(
        Limited {
            peers: vec![dead],
            limits: RetryLimits::default(),
            logs: Logs::default(),
        },
        ServerOptions {
            retry_budget: None,
            ..ServerOptions::default()
        },
    )
    .await;
    for _ in 0..120 {
        let reply = within(20, "request", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 502);
    }
    let logged = proxy.logs.wait(120).await;
    for request in &logged {
        assert_eq!(request.trace.len(), 17, "{}", request.trace);
        assert_eq!(
            summary(&request.trace)[16],
            "connect-refused -> stop (attempt-cap)"
        );
    }
}

#[tokio::test]
async fn a_per_request_cap_holds_below_the_servers() {
    let dead = refused_addr().await;
    let limits = RetryLimits {
        max_retries: Some(2),
        ..RetryLimits::default()
    };
    let (reply, logged) = run(vec![dead], limits).await;
    assert_eq!(reply.status, 502);
    assert_eq!(logged.trace.len(), 3);
    assert_eq!(
        summary(&logged.trace)[2],
        "connect-refused -> stop (attempt-cap)"
    );
}

#[tokio::test]
async fn retries_wait_their_backoff_and_record_it() {
    let dead = refused_addr().await;
    // Windows of 100 ms, 200 ms, 200 ms (capped); the jitter draws 0.5.
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(200));
    let limits = RetryLimits {
        max_retries: Some(3),
        backoff: Some(backoff),
        ..RetryLimits::default()
    };
    let (_, logged) = run(vec![dead], limits).await;
    let records = logged.trace.records();
    assert_eq!(records.len(), 4);
    let planned: Vec<Duration> = records.iter().map(|r| r.backoff).collect();
    let ms = Duration::from_millis;
    assert_eq!(planned, [ms(50), ms(100), ms(100), ms(0)]);
    for pair in records.windows(2) {
        let gap = pair[1].started - (pair[0].started + pair[0].duration);
        assert!(
            gap + ms(2) >= pair[0].backoff,
            "waited {gap:?}, planned {:?}",
            pair[0].backoff
        );
    }
}

#[tokio::test]
async fn no_retry_starts_after_the_deadline() {
    let dead = refused_addr().await;
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(100));
    let limits = RetryLimits {
        max_retries: Some(100),
        backoff: Some(backoff),
        deadline: Some(Duration::from_millis(300)),
        ..RetryLimits::default()
    };
    let started = Instant::now();
    let (reply, logged) = run(vec![dead], limits).await;
    assert_eq!(reply.status, 504, "past the deadline: gateway timeout");
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(
        logged.trace.last().unwrap().decision,
        Decision::Stop(StopReason::Deadline)
    );
}

#[tokio::test]
async fn a_503_is_retried_on_the_next_peer() {
    let busy = Origin::start("busy", Script::always(Behavior::status(503))).await;
    let good = Origin::healthy("good").await;
    let (reply, logged) = run(vec![busy.addr(), good.addr()], RetryLimits::default()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "good");
    assert_eq!(
        summary(&logged.trace),
        ["upstream-status -> retry", "200 -> done"]
    );
}

#[tokio::test]
async fn the_last_503_is_forwarded_as_it_is_when_no_retry_is_left() {
    let busy = Origin::start("busy", Script::always(Behavior::status(503))).await;
    let limits = RetryLimits {
        max_retries: Some(1),
        ..RetryLimits::default()
    };
    let (reply, logged) = run(vec![busy.addr()], limits).await;
    assert_eq!(reply.status, 503, "the upstream's answer, not a 502");
    assert_eq!(reply.body, "busy");
    assert_eq!(
        summary(&logged.trace),
        [
            "upstream-status -> retry",
            "upstream-status -> stop (attempt-cap)"
        ]
    );
    assert_eq!(logged.error, None);
    assert_eq!(logged.status, Some(503));
}

use switchyard::Decision;
use switchyard::policy::retry::StopReason;
