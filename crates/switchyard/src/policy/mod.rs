//! Pure decisions the engine asks for and never makes itself.
//!
//! Nothing here touches a socket or reads the clock: facts go in (the time
//! is one of them, passed by the caller), a verdict with a named reason
//! comes out, so every rule is table-tested without sockets. The one
//! source of chance is the backoff's jitter ([`backoff::Jitter`], fixed in
//! tests). The engine (`proxy/retries.rs` and `proxy/attempt.rs`) gathers
//! the facts, asks, records the answer in the attempt trace (`trace.rs`)
//! and acts on it; an [`UpstreamGroup`](crate::group::UpstreamGroup) asks
//! the same rules from the hooks. Nothing here imports the engine.

pub mod backoff;
pub mod budget;
pub mod deadline;
pub mod dry_run;
pub mod idempotency;
pub mod limits;
pub mod pushback;
pub mod request_hedge;
pub mod retry;
pub mod rules;
pub mod slow_start;
