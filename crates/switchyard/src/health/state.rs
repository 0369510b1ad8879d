//! One peer's health: the verdict of active checks (rise/fall thresholds)
//! and passive outlier ejection (consecutive failures, growing ejection
//! time). Pure state machines: time is an argument, so tests need no clock.

use std::time::{Duration, Instant};

use crate::policy::dry_run::Mode;

/// What one attempt to a peer showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived with a status below 500.
    Success,
    /// The connection could not be made (refused, no route, TLS handshake).
    ConnectFailure,
    /// The peer was silent: connect or response timeout.
    Timeout,
    /// A 5xx response.
    ServerError,
    /// The exchange broke: the connection was reset or closed before or
    /// during the response, or the answer was not valid HTTP.
    Broken,
}

/// What active checks say of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckVerdict {
    /// No check has decided yet (or checks are off): usable.
    Unknown,
    /// Passing: usable.
    Up,
    /// Failing: not used unless the group is in panic.
    Down,
}

impl CheckVerdict {
    /// The verdict as the admin API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Unknown => "unknown",
            CheckVerdict::Up => "up",
            CheckVerdict::Down => "down",
        }
    }
}

/// Thresholds for active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive passing checks to bring a down peer up.
    pub rise: u32,
    /// Consecutive failing checks to take an up peer down.
    pub fall: u32,
}

impl Default for Thresholds {
    /// rise 2, fall 3: one lost probe never changes a verdict.
    fn default() -> Self {
        Thresholds { rise: 2, fall: 3 }
    }
}

/// Active check state of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveState {
    verdict: CheckVerdict,
    passed: u32,
    failed: u32,
    last_detail: String,
}

impl Default for ActiveState {
    fn default() -> Self {
        ActiveState {
            verdict: CheckVerdict::Unknown,
            passed: 0,
            failed: 0,
            last_detail: String::from("no check yet"),
        }
    }
}

impl ActiveState {
    /// The current verdict.
    pub fn verdict(&self) -> CheckVerdict {
        self.verdict
    }

    /// What the last check saw.
    pub fn last_detail(&self) -> &str {
        &self.last_detail
    }

    /// Record a check; returns the new verdict when it changed. From
    /// unknown, one pass is enough for up (so a fresh peer is used at
    /// once) but going down takes `fall` failures, as from up.
    pub fn record(&mut self, passed: bool, detail: String, t: Thresholds) -> Option<CheckVerdict> {
        self.last_detail = detail;
        if passed {
            self.passed += 1;
            self.failed = 0;
        } else {
            self.failed += 1;
            self.passed = 0;
        }
        let next = match self.verdict {
            CheckVerdict::Unknown if passed => CheckVerdict::Up,
            CheckVerdict::Down if self.passed >= t.rise.max(1) => CheckVerdict::Up,
            CheckVerdict::Unknown | CheckVerdict::Up if self.failed >= t.fall.max(1) => {
                CheckVerdict::Down
            }
            same => same,
        };
        (next != self.verdict).then(|| {
            self.verdict = next;
            next
        })
    }
}

/// When passive outlier detection ejects a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Consecutive failures (connect failures, broken exchanges, timeouts)
    /// that eject (0: never).
    pub consecutive_failures: u32,
    /// Consecutive 5xx responses that eject (0: never).
    pub consecutive_5xx: u32,
    /// Ejection time the first time; the n-th ejection lasts n times this.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most of a group's peers ejected at once, in percent (at least one
    /// peer can always be ejected).
    pub max_ejected_percent: u8,
    /// Below this share of usable peers, in percent, the group is in panic
    /// and spreads requests over every peer rather than fail them all.
    pub panic_threshold_percent: u8,
    /// How many of a peer's latest attempts its success rate is judged on
    /// (at most 64; 0: not judged).
    pub success_rate_window: u8,
    /// A peer whose success rate over the window is below this percent is
    /// ejected.
    pub min_success_percent: u8,
    /// A peer whose median response time (over its last 20 successful
    /// attempts) is above this many times the median of the group's other
    /// peers is ejected (0: not judged).
    pub latency_factor: u32,
    /// A peer coming back (checks pass again, ejection over, new in DNS)
    /// ramps its share of traffic over this long (zero: at once); see
    /// `policy::slow_start`.
    pub slow_start: Duration,
    /// [`Mode::DryRun`]: ejections by success rate or latency, and slow
    /// start, are only reported (the counts in a row always act).
    pub mode: Mode,
}

impl Default for OutlierPolicy {
    /// 2 failures in a row (connect failures, broken exchanges or
    /// timeouts), or 5 5xx, or fewer than half of the last 20 attempts
    /// succeeding, eject for 10 s (growing to at most 300 s); at most 50%
    /// ejected; panic below 50% usable; latency not judged; a peer coming
    /// back ramps up over 10 s.
    fn default() -> Self {
        OutlierPolicy {
            consecutive_failures: 2,
            consecutive_5xx: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
            panic_threshold_percent: 50,
            success_rate_window: 20,
            min_success_percent: 50,
            latency_factor: 0,
            slow_start: Duration::from_secs(10),
            mode: Mode::Enforce,
        }
    }
}

/// Passive state of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutlierState {
    failures: u32,
    server_errors: u32,
    /// The latest outcomes, newest in the lowest bit: 1 for a success.
    recent: u64,
    /// How many of `recent`'s bits are outcomes (up to the window).
    recent_len: u8,
    ejections: u32,
    ejected_until: Option<Instant>,
    reason: Option<String>,
}

/// What recording an outcome asks of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passive {
    /// Nothing changes.
    Nothing,
    /// The peer crossed a threshold: eject it if the cap allows, for this
    /// long, for this reason.
    Eject(Duration, String),
    /// In a dry run, the success rate would have ejected the peer (for this
    /// reason); it was not.
    WouldEject(String),
}

impl OutlierState {
    /// Whether the peer is ejected at `now`.
    pub fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// When the current ejection ends.
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Why the peer was last ejected.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Times the peer has been ejected.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// Record one attempt's outcome.
    pub fn record(&mut self, outcome: Outcome, now: Instant, policy: &OutlierPolicy) -> Passive {
        if self.ejected(now) {
            // Attempts in flight when it was ejected: already counted for.
            return Passive::Nothing;
        }
        let by_rate = self.success_rate(outcome == Outcome::Success, policy);
        if let Some(eject @ Passive::Eject(..)) = by_rate {
            return eject;
        }
        // The counts in a row act whatever a dry run of the rate says.
        match (self.in_a_row(outcome, policy), by_rate) {
            (Passive::Nothing, Some(would)) => would,
            (passive, _) => passive,
        }
    }

    /// Count `outcome` in the failures and 5xx in a row; an ejection when
    /// one reaches its limit.
    fn in_a_row(&mut self, outcome: Outcome, policy: &OutlierPolicy) -> Passive {
        let (count, limit, what) = match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.server_errors = 0;
                return Passive::Nothing;
            }
            Outcome::ConnectFailure | Outcome::Timeout | Outcome::Broken => {
                self.failures += 1;
                let what = match outcome {
                    Outcome::Timeout => "failures, the last a timeout",
                    Outcome::Broken => {
                        "failures, the last a broken exchange (reset, closed or invalid response)"
                    }
                    _ => "failures, the last a connect failure",
                };
                (self.failures, policy.consecutive_failures, what)
            }
            Outcome::ServerError => {
                self.server_errors += 1;
                (self.server_errors, policy.consecutive_5xx, "5xx responses")
            }
        };
        if limit == 0 || count < limit {
            return Passive::Nothing;
        }
        Passive::Eject(
            self.next_ejection(policy),
            format!("{count} consecutive {what}"),
        )
    }

    /// How long the next ejection lasts: the n-th is n times the base, capped.
    pub fn next_ejection(&self, policy: &OutlierPolicy) -> Duration {
        let n = self.ejections.saturating_add(1);
        policy
            .base_ejection
            .saturating_mul(n)
            .min(policy.max_ejection)
    }

    /// Count one outcome in the success-rate window; an ejection when the
    /// window is full and its share of successes is below the minimum.
    fn success_rate(&mut self, success: bool, policy: &OutlierPolicy) -> Option<Passive> {
        let window = policy.success_rate_window.min(64);
        if window == 0 {
            return None;
        }
        self.recent = (self.recent << 1) | u64::from(success);
        self.recent_len = self.recent_len.saturating_add(1).min(window);
        if self.recent_len < window {
            return None;
        }
        let mask = u64::MAX >> (64 - u32::from(window));
        let successes = (self.recent & mask).count_ones();
        let window = u32::from(window);
        if successes * 100 >= u32::from(policy.min_success_percent) * window {
            return None;
        }
        let reason = format!(
            "success rate {}% over the last {window} attempts (below {}%)",
            successes * 100 / window,
            policy.min_success_percent
        );
        if policy.mode.is_dry_run() {
            // Judged afresh from here, so one episode is reported once.
            self.recent_len = 0;
            return Some(Passive::WouldEject(reason));
        }
        Some(Passive::Eject(self.next_ejection(policy), reason))
    }

    /// Eject for `time` (the group allowed it).
    pub fn eject(&mut self, time: Duration, reason: String, now: Instant) {
        self.ejections = self.ejections.saturating_add(1);
        self.ejected_until = Some(now + time);
        self.reason = Some(reason);
        self.forget_counts();
    }

    /// The cap refused an ejection: keep counting from zero, say why.
    pub fn refused(&mut self, reason: String) {
        self.reason = Some(reason);
        self.forget_counts();
    }

    fn forget_counts(&mut self) {
        self.failures = 0;
        self.server_errors = 0;
        self.recent = 0;
        self.recent_len = 0;
    }

    /// Active checks passed after the peer was down: lift the ejection.
    pub fn lift(&mut self) {
        self.ejected_until = None;
    }
}
