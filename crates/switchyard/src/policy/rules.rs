//! Declarative retry rules, for proxies configured rather than programmed
//! (the `switchyard` binary uses them): which failures are retried, and on
//! which peer. Each "no" has a name, so an operator can see why.
//!
//! The defaults are the binary's default policy (DESIGN section 2b):
//!
//! | failure | rule |
//! |---|---|
//! | connect failed | next peer, any method (nothing was sent) |
//! | the server is at its connection limit | next peer, any method, whatever `retry_on` says |
//! | an HTTP/2 server refused the stream, or sent GOAWAY below it (not processed) | next peer, any method, whatever `retry_on` says |
//! | reused pooled connection dropped before the head | once more on a fresh connection, idempotent requests only |
//! | fresh connection reset, closed or garbled before the head | next peer, idempotent requests only |
//! | no response head within the read timeout | not retried (opt in with `timeout`: retries on timeouts amplify overload) |
//! | upstream answered with a status | not retried (opt in per status) |
//! | a gRPC call answered trailers-only with UNAVAILABLE | not retried (opt in: any method then) |
//!
//! A rule says "retry"; whether a retry happens is still the engine's call
//! (contract rules, cap, deadline).

use crate::error::ErrorKind;

#[cfg(test)]
mod tests;

/// Which failures may be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// Connect refused, timed out, no route, TLS handshake failed.
    pub connect_failure: bool,
    /// The connection was reset, closed or sent garbage before a response head.
    pub reset_before_response: bool,
    /// No response head within the read timeout, or the request body could
    /// not be written in time.
    pub timeout: bool,
    /// Upstream statuses that count as failures (e.g. 502, 503).
    pub statuses: Vec<u16>,
    /// A gRPC call answered trailers-only with `grpc-status` 14
    /// (UNAVAILABLE): retried on another server for any method, as gRPC's
    /// own retry policies allow. Off by default.
    pub grpc_unavailable: bool,
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn {
            connect_failure: true,
            reset_before_response: true,
            timeout: false,
            statuses: Vec::new(),
            grpc_unavailable: false,
        }
    }
}

/// What to retry, and whether requests that are not idempotent may be sent twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryRules {
    /// The failures to retry.
    pub retry_on: RetryOn,
    /// Retry non-idempotent requests (POST, PATCH) even after they were sent.
    /// Off by default: the upstream may have acted on the first one.
    pub non_idempotent: bool,
}

/// A rule's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Retry on the same peer (a fresh connection to it).
    SamePeer,
    /// Retry on another peer.
    NextPeer,
    /// Do not retry, for this reason.
    Decline(Decline),
}

/// Why a rule declined a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// This kind of failure is not in `retry_on`.
    NotListed,
    /// The request is not idempotent and was (maybe) sent already.
    NotIdempotent,
}

impl Decline {
    /// A stable kebab-case name for traces and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Decline::NotListed => "not-in-retry-on",
            Decline::NotIdempotent => "not-idempotent",
        }
    }
}

/// The failures a pooled connection the upstream closed produces.
pub fn connection_dropped(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ClosedBeforeHead | ErrorKind::ReadError | ErrorKind::WriteError
    )
}

impl RetryRules {
    /// A connect failure of `kind`: nothing was sent, so any method may
    /// move on. A server at its connection limit, or an HTTP/2 server that
    /// refused the stream or went away before it (nothing processed),
    /// always sends the request on to another server, whatever `retry_on`
    /// says: the server did not fail, it is busy or leaving.
    pub fn on_connect_failure(&self, kind: ErrorKind) -> Judgement {
        let busy = matches!(
            kind,
            ErrorKind::ConnectionLimitReached | ErrorKind::StreamRefused
        );
        if self.retry_on.connect_failure || busy {
            Judgement::NextPeer
        } else {
            Judgement::Decline(Decline::NotListed)
        }
    }

    /// A failure after the connection was in use, before a response head.
    pub fn on_proxy_error(&self, kind: ErrorKind, reused: bool, idempotent: bool) -> Judgement {
        if reused && connection_dropped(kind) && idempotent {
            // Most likely the upstream closed an idle pooled connection.
            return Judgement::SamePeer;
        }
        let listed = match kind {
            k if connection_dropped(k) || k == ErrorKind::InvalidResponse => {
                self.retry_on.reset_before_response
            }
            k if k.is_timeout() => self.retry_on.timeout,
            _ => false,
        };
        self.sent_request(listed, idempotent)
    }

    /// A gRPC call was answered trailers-only with status 14 UNAVAILABLE,
    /// nothing went downstream yet: it moves on, for any method, when
    /// `grpc_unavailable` is on.
    pub fn on_grpc_unavailable(&self) -> Judgement {
        if self.retry_on.grpc_unavailable {
            Judgement::NextPeer
        } else {
            Judgement::Decline(Decline::NotListed)
        }
    }

    /// The upstream answered with `status`, nothing went downstream yet.
    pub fn on_status(&self, status: u16, idempotent: bool) -> Judgement {
        self.sent_request(self.retry_on.statuses.contains(&status), idempotent)
    }

    fn sent_request(&self, listed: bool, idempotent: bool) -> Judgement {
        if !listed {
            Judgement::Decline(Decline::NotListed)
        } else if !idempotent && !self.non_idempotent {
            Judgement::Decline(Decline::NotIdempotent)
        } else {
            Judgement::NextPeer
        }
    }
}
