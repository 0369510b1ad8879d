//! The retry decision as a table: facts in, verdict out.

use std::time::{Duration, Instant};

use super::{FailurePoint::*, RetryFacts, StopReason::*, Verdict, decide};
use crate::body::BufferState::{self, *};

fn facts(
    point: super::FailurePoint,
    hook_retry: bool,
    body: BufferState,
    retries: usize,
) -> RetryFacts {
    RetryFacts {
        point,
        hook_retry,
        body,
        stale_connection: false,
        retries_so_far: retries,
        max_retries: 3,
        deadline: None,
        next_attempt_at: Instant::now(),
        outer_layer_retries: false,
    }
}

#[test]
fn a_request_an_outer_proxy_retries_is_not_retried_here() {
    let outer = RetryFacts {
        outer_layer_retries: true,
        ..facts(Connect, true, Complete, 0)
    };
    assert_eq!(decide(&outer), Verdict::Stop(OuterLayerRetries));
    // The contract's own reasons come first.
    let started = RetryFacts {
        point: AfterResponseStarted,
        ..outer
    };
    assert_eq!(decide(&started), Verdict::Stop(ResponseStarted));
}

#[test]
fn decision_table() {
    let table = [
        // where, hook says retry, body, retries so far => verdict
        (Connect, true, Complete, 0, Verdict::Retry),
        (Connect, false, Complete, 0, Verdict::Stop(HookDeclined)),
        (BeforeResponseHead, true, Complete, 2, Verdict::Retry),
        (
            BeforeResponseHead,
            false,
            Complete,
            0,
            Verdict::Stop(HookDeclined),
        ),
        (
            BeforeResponseHead,
            true,
            Truncated,
            0,
            Verdict::Stop(BodyNotReplayable),
        ),
        (
            Connect,
            true,
            Truncated,
            0,
            Verdict::Stop(BodyNotReplayable),
        ),
        (Connect, true, Complete, 3, Verdict::Stop(AttemptCap)),
        (
            BeforeResponseHead,
            true,
            Complete,
            9,
            Verdict::Stop(AttemptCap),
        ),
        (
            AfterResponseStarted,
            true,
            Complete,
            0,
            Verdict::Stop(ResponseStarted),
        ),
        (
            AfterResponseStarted,
            false,
            Complete,
            0,
            Verdict::Stop(ResponseStarted),
        ),
        (
            Downstream,
            true,
            Complete,
            0,
            Verdict::Stop(DownstreamFailed),
        ),
        (Internal, true, Complete, 0, Verdict::Stop(InternalError)),
        (ResponseRejected, true, Complete, 0, Verdict::Retry),
        (
            ResponseRejected,
            false,
            Complete,
            0,
            Verdict::Stop(HookDeclined),
        ),
        (
            ResponseRejected,
            true,
            Truncated,
            0,
            Verdict::Stop(BodyNotReplayable),
        ),
    ];
    for (point, hook, body, retries, want) in table {
        let f = facts(point, hook, body, retries);
        assert_eq!(decide(&f), want, "{f:?}");
    }
}

#[test]
fn contract_rules_outrank_the_cap_and_the_hook() {
    // A started response is the reason even when the cap is also reached.
    let f = facts(AfterResponseStarted, true, Truncated, 99);
    assert_eq!(decide(&f), Verdict::Stop(ResponseStarted));
    // A truncated body is the reason even when the hook declined.
    let f = facts(BeforeResponseHead, false, Truncated, 0);
    assert_eq!(decide(&f), Verdict::Stop(BodyNotReplayable));
}

#[test]
fn a_cap_of_zero_allows_no_retry() {
    let mut f = facts(Connect, true, Complete, 0);
    f.max_retries = 0;
    assert_eq!(decide(&f), Verdict::Stop(AttemptCap));
}

#[test]
fn no_retry_starts_at_or_past_the_deadline() {
    let now = Instant::now();
    let mut f = facts(Connect, true, Complete, 0);
    f.deadline = Some(now + Duration::from_millis(100));
    f.next_attempt_at = now + Duration::from_millis(99);
    assert_eq!(decide(&f), Verdict::Retry);
    f.next_attempt_at = now + Duration::from_millis(100);
    assert_eq!(decide(&f), Verdict::Stop(Deadline));
    // The cap is named first when both apply.
    f.retries_so_far = 3;
    assert_eq!(decide(&f), Verdict::Stop(AttemptCap));
}

#[test]
fn the_retry_after_a_stale_pooled_connection_is_outside_the_cap() {
    let at_cap = RetryFacts {
        stale_connection: true,
        ..facts(BeforeResponseHead, true, Complete, 3)
    };
    assert_eq!(decide(&at_cap), Verdict::Retry);
    // The contract rules and the hook still apply.
    let declined = RetryFacts {
        hook_retry: false,
        ..at_cap
    };
    assert_eq!(decide(&declined), Verdict::Stop(HookDeclined));
    let truncated = RetryFacts {
        body: Truncated,
        ..at_cap
    };
    assert_eq!(decide(&truncated), Verdict::Stop(BodyNotReplayable));
}
