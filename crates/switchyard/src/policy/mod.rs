//! Pure decisions the engine asks for and never makes itself.
//!
//! Nothing here reads a clock, a socket or a random source: facts go in,
//! a verdict with a named reason comes out, so every rule is table-tested
//! without sockets. The engine (`proxy/engine.rs`) gathers the facts, asks,
//! records the answer in the attempt trace (`trace.rs`) and acts on it.
//! Hedging will live beside these.

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
