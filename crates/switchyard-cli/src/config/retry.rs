//! `[upstreams.NAME.retry]` and a route's `retry` overrides: their
//! translation into the library's retry types (rules, limits, budget).

use std::time::Duration;

use http::HeaderName;
use switchyard::proxy::grpc::GRPC_TIMEOUT;

use switchyard::group::RetryPolicy;
use switchyard::policy::backoff::Backoff;
use switchyard::policy::budget::BudgetPolicy;
use switchyard::policy::limits::RetryLimits;
use switchyard::policy::request_hedge::HedgePolicy;
use switchyard::policy::rules::{RetryOn, RetryRules};
use toml::Spanned;

use super::file::{RetryOnEntry, RetryOverride, RetrySection};
use super::{ConfigError, Source};

/// The most attempts a request may make: the library's hard cap of 16 retries, plus one.
const MAX_ATTEMPTS: usize = 17;

/// The shortest `budget_window` accepted.
const MIN_BUDGET_WINDOW: Duration = Duration::from_millis(100);

pub(super) fn retry_policy(
    source: &Source<'_>,
    retry: &RetrySection,
    key: &str,
) -> Result<RetryPolicy, ConfigError> {
    if !(1..=MAX_ATTEMPTS).contains(&retry.max_attempts) {
        let message = format!("must be between 1 and {MAX_ATTEMPTS} (the first attempt counts)");
        return Err(source.error(None, &format!("{key}.max_attempts"), message));
    }
    let retry_on = retry_on(source, &retry.retry_on, &format!("{key}.retry_on"))?;
    let backoff = match &retry.backoff {
        Some(b) if b.cap.0 < b.base.0 => {
            return Err(source.error(
                None,
                &format!("{key}.backoff.cap"),
                "must not be below base",
            ));
        }
        Some(b) => Some(Backoff::new(b.base.0, b.cap.0)),
        None => None,
    };
    let idempotency_key = header_name(
        source,
        &retry.idempotency_key,
        &format!("{key}.idempotency_key"),
    )?;
    let deadline_header = header_name(
        source,
        &retry.deadline_header,
        &format!("{key}.deadline_header"),
    )?;
    if retry.hedge_max.0 < retry.hedge_min.0 {
        return Err(source.error(
            None,
            &format!("{key}.hedge_max"),
            "must not be below hedge_min",
        ));
    }
    if deadline_header == Some(GRPC_TIMEOUT) {
        let message =
            "grpc-timeout is honoured for gRPC calls already; name a header carrying milliseconds";
        return Err(source.error(None, &format!("{key}.deadline_header"), message));
    }
    Ok(RetryPolicy {
        rules: RetryRules {
            retry_on,
            non_idempotent: retry.non_idempotent,
        },
        limits: RetryLimits {
            max_retries: Some(retry.max_attempts - 1),
            backoff,
            deadline: retry.deadline.map(|d| d.0),
            deadline_header,
            retry_when_attempt_header: retry.retry_when_attempt_header,
            hedge: retry.hedge.then_some(HedgePolicy {
                min: retry.hedge_min.0,
                max: retry.hedge_max.0,
            }),
            mode: retry.mode.mode(),
        },
        replay_buffer: retry.replay_buffer.0,
        idempotency_key,
        max_retry_after: retry.max_retry_after.0,
    })
}

/// A header name from the config; `None` when absent or empty.
fn header_name(
    source: &Source<'_>,
    name: &Option<String>,
    key: &str,
) -> Result<Option<HeaderName>, ConfigError> {
    match name.as_deref() {
        None | Some("") => Ok(None),
        Some(name) => HeaderName::from_bytes(name.as_bytes())
            .map(Some)
            .map_err(|_| source.error(None, key, format!("{name:?} is not a header name"))),
    }
}

fn retry_on(
    source: &Source<'_>,
    entries: &[Spanned<RetryOnEntry>],
    key: &str,
) -> Result<RetryOn, ConfigError> {
    let mut on = RetryOn {
        connect_failure: false,
        reset_before_response: false,
        timeout: false,
        statuses: Vec::new(),
        grpc_unavailable: false,
    };
    for (i, entry) in entries.iter().enumerate() {
        let span = Some(entry.span());
        match entry.get_ref() {
            RetryOnEntry::Status(status) if (100..=599).contains(status) => {
                on.statuses.push(*status)
            }
            RetryOnEntry::Status(status) => {
                let message = format!("{status} is not an HTTP status");
                return Err(source.error(span, &format!("{key}[{i}]"), message));
            }
            RetryOnEntry::Name(name) => match name.as_str() {
                "connect-failure" => on.connect_failure = true,
                "reset-before-response" => on.reset_before_response = true,
                "timeout" => on.timeout = true,
                "grpc-unavailable" => on.grpc_unavailable = true,
                other => {
                    let message = format!(
                        "unknown failure {other:?}; use connect-failure, reset-before-response, timeout, grpc-unavailable or a status code"
                    );
                    return Err(source.error(span, &format!("{key}[{i}]"), message));
                }
            },
        }
    }
    Ok(on)
}

/// The group's retry budget: the `budget_*` keys of its retry table.
pub(super) fn budget_policy(
    source: &Source<'_>,
    retry: &RetrySection,
    key: &str,
) -> Result<BudgetPolicy, ConfigError> {
    if retry.budget_window.0 < MIN_BUDGET_WINDOW {
        let message = format!("must be at least {MIN_BUDGET_WINDOW:?}");
        return Err(source.error(None, &format!("{key}.budget_window"), message));
    }
    Ok(BudgetPolicy {
        percent: retry.budget_percent,
        min_per_second: retry.budget_min_per_second,
        window: retry.budget_window.0,
    })
}

/// The group's retry table with a route's overrides applied; a key the route
/// does not give keeps the group's value.
pub(super) fn with_overrides(group: &RetrySection, overrides: &RetryOverride) -> RetrySection {
    let mut merged = group.clone();
    if let Some(v) = overrides.max_attempts {
        merged.max_attempts = v;
    }
    if let Some(v) = &overrides.retry_on {
        merged.retry_on = v.clone();
    }
    if let Some(v) = overrides.non_idempotent {
        merged.non_idempotent = v;
    }
    if let Some(v) = &overrides.idempotency_key {
        merged.idempotency_key = Some(v.clone());
    }
    if let Some(v) = &overrides.backoff {
        merged.backoff = Some(v.clone());
    }
    if let Some(v) = overrides.deadline {
        merged.deadline = Some(v);
    }
    if let Some(v) = &overrides.deadline_header {
        merged.deadline_header = Some(v.clone());
    }
    if let Some(v) = overrides.replay_buffer {
        merged.replay_buffer = v;
    }
    if let Some(v) = overrides.max_retry_after {
        merged.max_retry_after = v;
    }
    if let Some(v) = overrides.retry_when_attempt_header {
        merged.retry_when_attempt_header = v;
    }
    if let Some(v) = overrides.hedge {
        merged.hedge = v;
    }
    if let Some(v) = overrides.mode {
        merged.mode = v;
    }
    if let Some(v) = overrides.hedge_min {
        merged.hedge_min = v;
    }
    if let Some(v) = overrides.hedge_max {
        merged.hedge_max = v;
    }
    merged
}
