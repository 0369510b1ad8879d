//! The binary's default policy, as a table.

use super::{Decline::*, Judgement::*, RetryOn, RetryRules};
use crate::error::ErrorKind::*;

#[test]
fn default_policy_table() {
    let rules = RetryRules::default();
    assert_eq!(rules.on_connect_failure(ConnectRefused), NextPeer);
    // (kind, reused, idempotent) => judgement
    let table = [
        (ClosedBeforeHead, true, true, SamePeer),
        (ClosedBeforeHead, true, false, Decline(NotIdempotent)),
        (ClosedBeforeHead, false, true, NextPeer),
        (ReadError, false, true, NextPeer),
        (InvalidResponse, false, true, NextPeer),
        (InvalidResponse, true, true, NextPeer),
        (ResponseHeadTimedOut, false, true, Decline(NotListed)),
        (ResponseHeadTimedOut, true, true, Decline(NotListed)),
        (WriteTimedOut, false, true, Decline(NotListed)),
        (ClosedBeforeHead, false, false, Decline(NotIdempotent)),
    ];
    for (kind, reused, idempotent, want) in table {
        assert_eq!(
            rules.on_proxy_error(kind, reused, idempotent),
            want,
            "{kind} reused={reused} idempotent={idempotent}"
        );
    }
    assert_eq!(rules.on_status(503, true), Decline(NotListed));
}

#[test]
fn opt_ins() {
    let rules = RetryRules {
        retry_on: RetryOn {
            connect_failure: false,
            reset_before_response: false,
            timeout: true,
            statuses: vec![503],
            grpc_unavailable: true,
        },
        non_idempotent: true,
    };
    assert_eq!(rules.on_connect_failure(ConnectRefused), Decline(NotListed));
    assert_eq!(
        rules.on_connect_failure(ConnectionLimitReached),
        NextPeer,
        "a busy server's request moves on whatever retry_on says"
    );
    assert_eq!(
        rules.on_connect_failure(StreamRefused),
        NextPeer,
        "a request an HTTP/2 server did not process moves on whatever retry_on says"
    );
    assert_eq!(
        rules.on_proxy_error(ResponseHeadTimedOut, false, false),
        NextPeer
    );
    assert_eq!(
        rules.on_proxy_error(ClosedBeforeHead, false, true),
        Decline(NotListed)
    );
    assert_eq!(rules.on_status(503, false), NextPeer);
    assert_eq!(rules.on_status(500, true), Decline(NotListed));
}
