//! The defaults, in one place (`docs/config.md` lists them too).

use std::time::Duration;

use super::super::units::{Dur, Size};
use switchyard::policy::budget::BudgetPolicy;

/// One worker per core, as nginx's `worker_processes auto`.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
pub(crate) fn header_read_timeout() -> Dur {
    Dur(Duration::from_secs(20))
}
pub(crate) fn client_write_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
pub(crate) fn max_headers() -> usize {
    100
}
pub(crate) fn max_header_bytes() -> Size {
    Size(32 * 1024)
}
pub(crate) fn drain_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
pub(crate) fn normalize_path() -> bool {
    true
}

pub(crate) fn max_request_body() -> Size {
    Size(usize::try_from(switchyard::server::DEFAULT_MAX_REQUEST_BODY).unwrap_or(usize::MAX))
}
pub(crate) fn acme_directory() -> String {
    switchyard::acme::LETS_ENCRYPT.to_string()
}
pub(crate) fn acme_retry_after() -> Dur {
    Dur(Duration::from_secs(60))
}
pub(crate) fn tls_handshake_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
pub(crate) fn park_idle_after() -> Dur {
    Dur(Duration::from_secs(1))
}
pub(crate) fn yes() -> bool {
    true
}
pub(crate) fn connect_timeout() -> Dur {
    Dur(Duration::from_secs(3))
}
pub(crate) fn response_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
pub(crate) fn upstream_write_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
pub(crate) fn idle_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
pub(crate) fn resolve_every() -> Dur {
    Dur(Duration::from_secs(30))
}
pub(crate) fn max_connections_per_server() -> usize {
    1024
}
pub(crate) fn max_pending() -> usize {
    1024
}
pub(crate) fn keep_traces() -> usize {
    10_000
}
pub(crate) fn pool_size() -> usize {
    64
}
pub(crate) fn max_attempts() -> usize {
    3
}
pub(crate) fn weight() -> u32 {
    1
}
pub(crate) fn hedge_min() -> Dur {
    Dur(Duration::from_millis(10))
}

pub(crate) fn hedge_max() -> Dur {
    Dur(Duration::from_secs(1))
}

pub(crate) fn max_retry_after() -> Dur {
    Dur(switchyard::policy::pushback::DEFAULT_MAX_RETRY_AFTER)
}

pub(crate) fn replay_buffer() -> Size {
    Size(64 * 1024)
}
pub(crate) fn budget_percent() -> u32 {
    BudgetPolicy::default().percent
}
pub(crate) fn budget_min_per_second() -> u32 {
    BudgetPolicy::default().min_per_second
}
pub(crate) fn budget_window() -> Dur {
    Dur(BudgetPolicy::default().window)
}
pub(crate) fn path_prefix() -> String {
    "/".to_string()
}
pub(crate) fn service_name() -> String {
    "switchyard".to_string()
}
pub(crate) fn otlp_queue() -> usize {
    switchyard::otlp::OtlpOptions::new("").queue
}

pub(crate) fn rate_limit_keys() -> usize {
    switchyard::route::RateLimitBuckets::DEFAULT_CAPACITY
}
pub(crate) fn compress_types() -> Vec<String> {
    switchyard::compress::DEFAULT_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect()
}
pub(crate) fn compress_min_size() -> Size {
    Size(switchyard::compress::DEFAULT_MIN_SIZE as usize)
}
