//! The attempt trace: one record per attempt, kept by the engine.
//!
//! Users cannot forget to keep it: the engine appends a record when an
//! attempt starts, fills it in as the attempt moves on, and writes the
//! verdict (and the named reason) when it ends. Hooks read it through
//! `Session::attempts`, and `logging` gets it complete. Its `Display` is one
//! line an operator can read:
//!
//! ```text
//! 127.0.0.1:9001 connect-refused -> retry; 127.0.0.1:9002 200 -> done
//! ```

use crate::peer_addr::PeerAddr;
use std::fmt;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::error::ErrorKind;
use crate::policy::retry::StopReason;

/// How far an attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Getting a connection (from the pool or a fresh connect).
    Connecting,
    /// Writing the request head and body upstream.
    SendingRequest,
    /// The request body was sent; waiting for the response head.
    AwaitingHead,
    /// The response head went downstream; the body is streaming.
    StreamingBody,
    /// The response was forwarded whole.
    Complete,
}

impl Phase {
    /// A stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::SendingRequest => "sending-request",
            Phase::AwaitingHead => "awaiting-head",
            Phase::StreamingBody => "streaming-body",
            Phase::Complete => "complete",
        }
    }
}

/// What the engine decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The attempt is still running.
    InFlight,
    /// The attempt's response was forwarded downstream.
    Done,
    /// The attempt failed and another was made.
    Retry,
    /// The attempt failed and no other was made, for this reason.
    Stop(StopReason),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::InFlight => f.write_str("in-flight"),
            Decision::Done => f.write_str("done"),
            Decision::Retry => f.write_str("retry"),
            Decision::Stop(reason) => write!(f, "stop ({reason})"),
        }
    }
}

/// One attempt of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The peer the attempt went to.
    pub peer: PeerAddr,
    /// Whether the connection came from the pool.
    pub reused: bool,
    /// Pooled connections found closed before the request was written and
    /// replaced by a fresh one within this attempt (nothing was sent on them).
    pub stale_replaced: u32,
    /// How far the attempt got.
    pub phase: Phase,
    /// What failed, if anything.
    pub error: Option<ErrorKind>,
    /// The upstream's response status, if a head arrived.
    pub status: Option<StatusCode>,
    /// Request body bytes handed to the upstream connection.
    pub request_body_bytes: u64,
    /// Response body bytes forwarded downstream.
    pub response_body_bytes: u64,
    /// When the attempt started, from the start of the request.
    pub started: Duration,
    /// How long the attempt took (to its failure, or to the end of the body).
    pub duration: Duration,
    /// What the engine decided after it.
    pub decision: Decision,
    /// The hook's word on its verdict (e.g. `not-idempotent`), if it gave one.
    pub note: Option<&'static str>,
    /// The wait before the retry that followed, if any.
    pub backoff: Duration,
    /// The peer raced against `peer` by connect hedging, which lost (when
    /// the hedge won, `peer` is the hedge and this is the slow first choice).
    pub hedged: Option<PeerAddr>,
    /// Whether the hedge won the race (then `hedged` is the slow first choice).
    pub hedge_won: bool,
    /// A copy of the request sent to another server because this one was
    /// slow to answer (request hedging), and which copy's answer was used.
    pub request_hedge: Option<RequestHedge>,
    /// Its W3C span ID (the parent in the `traceparent` sent upstream),
    /// when the request has a trace.
    pub span_id: Option<u64>,
}

/// A request hedge within one attempt: the copy sent to another server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHedge {
    /// The other server: the copy's when the first answered first, the
    /// first's when the copy won (`AttemptRecord::peer` is the winner).
    pub other: PeerAddr,
    /// Whether the copy's answer was the one used.
    pub copy_won: bool,
    /// How long after the request went to the first server the copy went.
    pub after: Duration,
}

impl fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.peer)?;
        match (self.error, self.status) {
            (Some(kind), Some(status)) => write!(f, "{} then {kind}", status.as_u16())?,
            (Some(kind), None) => write!(f, "{kind}")?,
            (None, Some(status)) => write!(f, "{}", status.as_u16())?,
            (None, None) => f.write_str(self.phase.as_str())?,
        }
        if self.reused {
            f.write_str(" (reused)")?;
        }
        if let Some(other) = self.hedged {
            write!(f, " (raced {other})")?;
        }
        if let Some(hedge) = self.request_hedge {
            let after = hedge.after.as_millis();
            if hedge.copy_won {
                write!(f, " (hedge after {after}ms, beat {})", hedge.other)?;
            } else {
                write!(
                    f,
                    " (beat its hedge to {} sent after {after}ms)",
                    hedge.other
                )?;
            }
        }
        write!(f, " -> {}", self.decision)?;
        if let Some(note) = self.note {
            write!(f, " [{note}]")?;
        }
        Ok(())
    }
}

/// Every attempt of one request, in order.
#[derive(Debug, Clone)]
pub struct AttemptLog {
    start: Instant,
    records: Vec<AttemptRecord>,
}

impl AttemptLog {
    /// An empty log for a request that started at `start`.
    pub(crate) fn new(start: Instant) -> Self {
        AttemptLog {
            start,
            records: Vec::new(),
        }
    }

    /// A log of `records` for a request that started at `start`: for code
    /// that keeps or rebuilds traces (tests of a `logging` hook, replays).
    pub fn from_records(start: Instant, records: Vec<AttemptRecord>) -> Self {
        AttemptLog { start, records }
    }

    /// When the request started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The attempts, first to last.
    pub fn records(&self) -> &[AttemptRecord] {
        &self.records
    }

    /// How many attempts were made.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no attempt was made (e.g. `request_filter` answered).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Retries made: attempts after the first.
    pub fn retries(&self) -> usize {
        self.records.len().saturating_sub(1)
    }

    /// The latest attempt.
    pub fn last(&self) -> Option<&AttemptRecord> {
        self.records.last()
    }

    pub(crate) fn begin(&mut self, peer: PeerAddr, now: Instant) {
        self.records.push(AttemptRecord {
            peer,
            reused: false,
            stale_replaced: 0,
            phase: Phase::Connecting,
            error: None,
            status: None,
            request_body_bytes: 0,
            response_body_bytes: 0,
            started: now.saturating_duration_since(self.start),
            duration: Duration::ZERO,
            decision: Decision::InFlight,
            note: None,
            backoff: Duration::ZERO,
            hedged: None,
            hedge_won: false,
            request_hedge: None,
            span_id: None,
        });
    }

    /// The in-flight attempt, for the engine to fill in.
    pub(crate) fn current(&mut self) -> Option<&mut AttemptRecord> {
        self.records.last_mut()
    }

    /// Count `stale` pooled connections the in-flight attempt passed over
    /// (found closed or stuck before anything was sent on them).
    #[inline]
    pub(crate) fn count_stale(&mut self, stale: u32) {
        if let Some(record) = self.records.last_mut() {
            record.stale_replaced += stale;
        }
    }

    /// Close the current attempt with a decision.
    pub(crate) fn finish(&mut self, decision: Decision, now: Instant) {
        let start = self.start;
        if let Some(record) = self.records.last_mut() {
            record.decision = decision;
            record.duration = now
                .saturating_duration_since(start)
                .saturating_sub(record.started);
        }
    }
}

impl fmt::Display for AttemptLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.records.is_empty() {
            return f.write_str("no upstream attempt");
        }
        for (i, record) in self.records.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{record}")?;
        }
        Ok(())
    }
}
