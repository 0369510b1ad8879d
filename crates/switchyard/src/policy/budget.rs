//! Retry budgets: retries may add at most a share of the recent requests.
//!
//! # Why budgets and not only a cap per request?
//!
//! A cap of 3 attempts per request is harmless when one request in a
//! thousand fails, and an amplifier when every request fails: an outage of
//! the upstream triples its load exactly when it can least take it, and a
//! chain of proxies that each retry multiplies it. A budget bounds the
//! retries of a whole upstream group instead: over the last `window`
//! (default 10 s), retries may add at most `percent` (default 20%) to the
//! requests, plus a floor of `min_per_second` (default 10) retries per
//! second so that a quiet group can still retry its rare failures. This is
//! the policy of Linkerd and Envoy (and of tower's `retry::budget`).
//!
//! [`RetryBudget`] is pure bookkeeping with time as an input: the engine
//! deposits one request when a request first goes upstream and withdraws one
//! retry before each retry it would make. When the withdrawal is refused the
//! retry is not made, and the trace says `budget-exhausted`. The first retry
//! after a keep-alive race (a reused connection dropped before answering)
//! is not a retry of a failure and never touches the budget.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use switchyard::policy::budget::{BudgetPolicy, RetryBudget};
//!
//! let policy = BudgetPolicy { percent: 20, min_per_second: 0, window: Duration::from_secs(10) };
//! let budget = RetryBudget::new(policy, Instant::now());
//! let now = Instant::now();
//! for _ in 0..10 {
//!     budget.deposit(now);
//! }
//! // 20% of 10 requests: two retries.
//! assert!(budget.try_withdraw(now));
//! assert!(budget.try_withdraw(now));
//! assert!(!budget.try_withdraw(now));
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// How many slots the window is counted in: requests and retries age out
/// one tenth of the window at a time.
const SLOTS: usize = 10;

/// A group's retry budget: at most `percent` of the requests of the last
/// `window`, plus `min_per_second` retries per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// Retries allowed as a share of the requests in the window, in percent
    /// (0: only the floor).
    pub percent: u32,
    /// Retries allowed per second whatever the traffic (the floor).
    pub min_per_second: u32,
    /// How far back requests and retries are counted.
    pub window: Duration,
}

impl Default for BudgetPolicy {
    /// 20% of the last 10 s, plus 10 retries per second (Linkerd's defaults).
    fn default() -> Self {
        BudgetPolicy {
            percent: 20,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// The requests and retries of one upstream group over a sliding window.
#[derive(Debug)]
pub struct RetryBudget {
    policy: BudgetPolicy,
    origin: Instant,
    slot: Duration,
    counts: Mutex<Counts>,
}

/// Requests and retries per slot; `newest` is the index (since `origin`) of
/// the slot now being filled.
#[derive(Debug, Default)]
struct Counts {
    newest: u64,
    requests: [u64; SLOTS],
    retries: [u64; SLOTS],
}

impl RetryBudget {
    /// An empty budget under `policy`, its window starting at `now`. A
    /// window shorter than 10 ms is taken as 10 ms.
    pub fn new(policy: BudgetPolicy, now: Instant) -> Self {
        let window = policy.window.max(Duration::from_millis(10));
        RetryBudget {
            policy: BudgetPolicy { window, ..policy },
            origin: now,
            slot: window / SLOTS as u32,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> BudgetPolicy {
        self.policy
    }

    /// A request went upstream at `now` (its first attempt).
    pub fn deposit(&self, now: Instant) {
        let mut counts = self.counts_at(now);
        let slot = (counts.newest % SLOTS as u64) as usize;
        counts.requests[slot] += 1;
    }

    /// How many retries the budget would allow at `now` (for metrics).
    pub fn available(&self, now: Instant) -> u64 {
        let counts = self.counts_at(now);
        let requests: u64 = counts.requests.iter().sum();
        let retries: u64 = counts.retries.iter().sum();
        self.allowed(requests).saturating_sub(retries)
    }

    /// A retry wants to go at `now`: spend one if the budget allows it.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let mut counts = self.counts_at(now);
        let requests: u64 = counts.requests.iter().sum();
        let retries: u64 = counts.retries.iter().sum();
        if retries >= self.allowed(requests) {
            return false;
        }
        let slot = (counts.newest % SLOTS as u64) as usize;
        counts.retries[slot] += 1;
        true
    }

    /// A retry withdrawn at or before `now` was not made after all: give it
    /// back (to the slot now being filled; never below zero).
    pub fn refund(&self, now: Instant) {
        let mut counts = self.counts_at(now);
        let newest = (counts.newest % SLOTS as u64) as usize;
        // The newest slot that still counts a retry gives one back.
        let slot = (0..SLOTS)
            .map(|back| (newest + SLOTS - back) % SLOTS)
            .find(|&slot| counts.retries[slot] > 0);
        if let Some(slot) = slot {
            counts.retries[slot] -= 1;
        }
    }

    /// Retries allowed in a window that saw `requests`.
    fn allowed(&self, requests: u64) -> u64 {
        let share = requests.saturating_mul(u64::from(self.policy.percent)) / 100;
        let window_ms = u64::try_from(self.policy.window.as_millis()).unwrap_or(u64::MAX);
        let floor = u64::from(self.policy.min_per_second).saturating_mul(window_ms) / 1000;
        share.saturating_add(floor)
    }

    /// The counts with the slots that aged out by `now` cleared.
    fn counts_at(&self, now: Instant) -> std::sync::MutexGuard<'_, Counts> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(self.origin);
        let index =
            u64::try_from(elapsed.as_nanos() / self.slot.as_nanos().max(1)).unwrap_or(u64::MAX);
        if index > counts.newest {
            let stale = (index - counts.newest).min(SLOTS as u64);
            for step in 1..=stale {
                let slot = ((counts.newest + step) % SLOTS as u64) as usize;
                counts.requests[slot] = 0;
                counts.retries[slot] = 0;
            }
            counts.newest = index;
        }
        counts
    }
}
