//! `[upstreams.NAME.health_check]` and `[upstreams.NAME.outlier]` as the
//! file spells them (`config/health.rs` checks and builds them).

use serde::{Deserialize, Serialize};
use switchyard::health::checker::CheckOptions;
use switchyard::health::{OutlierPolicy, Thresholds};

use super::super::units::Dur;
use super::retry::ModeName;

/// `[upstreams.NAME.health_check]`: active checks, off unless present.
/// A key left out takes the library's default ([`CheckOptions`],
/// [`Thresholds`]); an `http` check asks for `/` and accepts 200-399.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckSection {
    /// `tcp` (a connect) or `http` (a GET whose status must be expected).
    pub kind: String,
    /// The path an `http` check requests.
    pub path: String,
    /// Statuses an `http` check accepts: `"200"` or ranges like `"200-399"`.
    pub statuses: Vec<String>,
    /// Wait between checks of an up (or not yet known) server.
    pub interval: Dur,
    /// Wait between checks of a down server.
    pub down_interval: Dur,
    /// Longest one check may take.
    pub timeout: Dur,
    /// Passing checks in a row that bring a down server up.
    pub rise: u32,
    /// Failing checks in a row that take a server down.
    pub fall: u32,
    /// Random spread of each wait, in percent.
    pub jitter_percent: u8,
}

/// `[upstreams.NAME.outlier]`: passive ejection, on by default.
/// A key left out takes the library's default ([`OutlierPolicy`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierSection {
    /// Consecutive failures (connect failures, broken exchanges, timeouts)
    /// that eject a server (0: never).
    pub consecutive_failures: u32,
    /// Consecutive 5xx responses that eject a server (0: never).
    pub consecutive_5xx: u32,
    /// First ejection time; the n-th lasts n times this.
    pub base_ejection: Dur,
    /// Longest ejection.
    pub max_ejection: Dur,
    /// Most of the group's servers ejected at once, in percent (one always may be).
    pub max_ejected_percent: u8,
    /// Below this share of usable servers, in percent, use them all (panic mode).
    pub panic_threshold_percent: u8,
    /// How many of a server's latest attempts its success rate is judged on (0: off, at most 64).
    pub success_rate_window: u8,
    /// Eject a server whose success rate over the window is below this percent.
    pub min_success_percent: u8,
    /// Eject a server whose median response time is above this many times
    /// the median of the group's others (0: off).
    pub latency_factor: u32,
    /// A server coming back ramps its share of traffic up over this long ("0s": at once).
    pub slow_start: Dur,
    /// `"dry-run"`: ejections by success rate or latency, and slow start,
    /// only say what they would do.
    pub mode: ModeName,
}

impl Default for HealthCheckSection {
    fn default() -> Self {
        let options = CheckOptions::default();
        let thresholds = Thresholds::default();
        HealthCheckSection {
            kind: "tcp".to_string(),
            path: "/".to_string(),
            statuses: vec!["200-399".to_string()],
            interval: Dur(options.interval),
            down_interval: Dur(options.down_interval),
            timeout: Dur(options.timeout),
            rise: thresholds.rise,
            fall: thresholds.fall,
            jitter_percent: options.jitter_percent,
        }
    }
}

impl Default for OutlierSection {
    fn default() -> Self {
        let policy = OutlierPolicy::default();
        OutlierSection {
            consecutive_failures: policy.consecutive_failures,
            consecutive_5xx: policy.consecutive_5xx,
            base_ejection: Dur(policy.base_ejection),
            max_ejection: Dur(policy.max_ejection),
            max_ejected_percent: policy.max_ejected_percent,
            panic_threshold_percent: policy.panic_threshold_percent,
            success_rate_window: policy.success_rate_window,
            min_success_percent: policy.min_success_percent,
            latency_factor: policy.latency_factor,
            slow_start: Dur(policy.slow_start),
            mode: ModeName::Enforce,
        }
    }
}
