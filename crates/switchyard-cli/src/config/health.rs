//! `[upstreams.NAME.health_check]` and `[upstreams.NAME.outlier]`: the
//! file sections and their translation into the library's health types.

use serde::{Deserialize, Serialize};
use switchyard::health::checker::{CheckOptions, Probe};
use switchyard::health::{OutlierPolicy, Thresholds};

use super::units::Dur;
use super::{ConfigError, Source};

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
    pub mode: super::file::ModeName,
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
            mode: super::file::ModeName::Enforce,
        }
    }
}

/// The outlier policy of `section`, checked.
pub(super) fn outlier_policy(
    source: &Source<'_>,
    section: &OutlierSection,
    key: &str,
) -> Result<OutlierPolicy, ConfigError> {
    if section.success_rate_window > 64 {
        let message = "must be 0-64 (0: off)";
        return Err(source.error(None, &format!("{key}.success_rate_window"), message));
    }
    for (name, value) in [
        ("max_ejected_percent", section.max_ejected_percent),
        ("panic_threshold_percent", section.panic_threshold_percent),
        ("min_success_percent", section.min_success_percent),
    ] {
        if value > 100 {
            return Err(source.error(None, &format!("{key}.{name}"), "must be 0-100"));
        }
    }
    if section.base_ejection.0.is_zero() || section.max_ejection.0 < section.base_ejection.0 {
        return Err(source.error(
            None,
            &format!("{key}.max_ejection"),
            "base_ejection must be above 0 and max_ejection at least base_ejection",
        ));
    }
    Ok(OutlierPolicy {
        consecutive_failures: section.consecutive_failures,
        consecutive_5xx: section.consecutive_5xx,
        base_ejection: section.base_ejection.0,
        max_ejection: section.max_ejection.0,
        max_ejected_percent: section.max_ejected_percent,
        panic_threshold_percent: section.panic_threshold_percent,
        success_rate_window: section.success_rate_window,
        min_success_percent: section.min_success_percent,
        latency_factor: section.latency_factor,
        slow_start: section.slow_start.0,
        mode: section.mode.mode(),
    })
}

/// The active checks of `section`, checked.
pub(super) fn check_options(
    source: &Source<'_>,
    section: &HealthCheckSection,
    key: &str,
) -> Result<(CheckOptions, Thresholds), ConfigError> {
    let probe = match section.kind.as_str() {
        "tcp" => Probe::Tcp,
        "http" => {
            if !section.path.starts_with('/') {
                return Err(source.error(None, &format!("{key}.path"), "must start with /"));
            }
            let statuses = section
                .statuses
                .iter()
                .map(|s| status_range(s))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    source.error(
                        None,
                        &format!("{key}.statuses"),
                        "each entry is a status (\"200\") or a range (\"200-399\") within 100-599",
                    )
                })?;
            Probe::Http {
                path: section.path.clone(),
                statuses,
            }
        }
        other => {
            let message = format!("{other:?} is not a check kind; use \"tcp\" or \"http\"");
            return Err(source.error(None, &format!("{key}.kind"), message));
        }
    };
    for (name, value) in [
        ("interval", section.interval),
        ("down_interval", section.down_interval),
        ("timeout", section.timeout),
    ] {
        if value.0.is_zero() {
            return Err(source.error(None, &format!("{key}.{name}"), "must be above 0"));
        }
    }
    if section.rise == 0 || section.fall == 0 {
        return Err(source.error(
            None,
            &format!("{key}.rise"),
            "rise and fall must be at least 1",
        ));
    }
    let options = CheckOptions {
        probe,
        interval: section.interval.0,
        down_interval: section.down_interval.0,
        timeout: section.timeout.0,
        jitter_percent: section.jitter_percent.min(100),
    };
    let thresholds = Thresholds {
        rise: section.rise,
        fall: section.fall,
    };
    Ok((options, thresholds))
}

/// `"200"` or `"200-399"`, within 100-599.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let one = text.trim().parse().ok()?;
            (one, one)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::status_range;

    #[test]
    fn status_ranges_parse_and_refuse_nonsense() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("399-200"), None);
        assert_eq!(status_range("2xx"), None);
        assert_eq!(status_range("700"), None);
    }
}
