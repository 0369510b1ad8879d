//! `[upstreams.NAME.health_check]` and `[upstreams.NAME.outlier]`: the
//! file sections and their translation into the library's health types.

use switchyard::health::checker::{CheckOptions, Probe};
use switchyard::health::{OutlierPolicy, Thresholds};

use super::file::{HealthCheckSection, OutlierSection};
use super::{ConfigError, Source};

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
