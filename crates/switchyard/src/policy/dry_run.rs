//! Dry runs: a policy in [`Mode::DryRun`] makes each decision as it would,
//! and records it ([`WouldHave`]) instead of acting on it, so an operator
//! can see what turning it on would do to real traffic before doing so.
//!
//! The engine records its own policies' dry-run decisions (skipping a retry
//! for want of time, leaving retries to an outer proxy, sending a hedge) on
//! the [`Session`](crate::Session); hooks add theirs with
//! `Session::note_dry_run`; health reports its own (ejections by success
//! rate or latency) from `UpstreamHealth::report_attempts`. The binary
//! counts them all in `switchyard_policy_dry_run_total{policy, would}` and
//! writes them in the access log.
//!
//! ```
//! use switchyard::policy::dry_run::{Mode, WouldHave};
//!
//! let mode = Mode::DryRun;
//! assert!(mode.is_dry_run());
//! let seen = WouldHave { policy: "hedge", would: "send-copy" };
//! assert_eq!(seen.to_string(), "hedge:send-copy");
//! ```

use std::fmt;

/// Whether a policy acts or only says what it would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// The policy acts (the default).
    #[default]
    Enforce,
    /// The policy decides, records what it would have done, and does not act.
    DryRun,
}

impl Mode {
    /// Whether decisions are only recorded.
    pub fn is_dry_run(self) -> bool {
        self == Mode::DryRun
    }
}

/// A decision a policy in dry-run mode would have acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WouldHave {
    /// The policy: `idempotency-key`, `deadline`, `pushback`,
    /// `one-layer-retries`, `hedge`, `outlier`, `slow-start`, `rate-limit`.
    pub policy: &'static str,
    /// What it would have done: `retry`, `skip-retry`, `hold`, `wait`,
    /// `not-retry`, `send-copy`, `eject`, `pick-again`, `refuse`.
    pub would: &'static str,
}

impl fmt::Display for WouldHave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.policy, self.would)
    }
}
