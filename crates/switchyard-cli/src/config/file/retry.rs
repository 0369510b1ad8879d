//! `[upstreams.NAME.retry]` and a route's `retry` table as the config file
//! spells them (`retry.rs` turns them into the library's retry types).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::super::units::{Dur, Size};
use super::defaults;

/// `[upstreams.NAME.retry]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts per request, the first included (the library caps retries at 16).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: usize,
    /// Which failures are retried: `connect-failure`, `reset-before-response`,
    /// `timeout`, and status codes such as `503`.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<Spanned<RetryOnEntry>>,
    /// Retry POST, PATCH and other non-idempotent requests after they were sent.
    #[serde(default)]
    pub non_idempotent: bool,
    /// The header carrying a client's idempotency key (IETF httpapi draft
    /// "The Idempotency-Key HTTP Header Field"), such as
    /// `"Idempotency-Key"`: a POST or PATCH carrying one may be retried
    /// after it was sent, because the origin deduplicates by the key. Off
    /// when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Wait between attempts, full jitter; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSection>,
    /// Time the whole request may take, all attempts included; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Dur>,
    /// A header in which a client may give a shorter deadline, in
    /// milliseconds, and in which the upstream is told the time left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_header: Option<String>,
    /// Request body bytes kept for replay on retry.
    #[serde(default = "defaults::replay_buffer")]
    pub replay_buffer: Size,
    /// The longest `Retry-After` (of a 503 or 429) honoured: the server is
    /// kept out of selection, and a retry to it waits, at most this long.
    #[serde(default = "defaults::max_retry_after")]
    pub max_retry_after: Dur,
    /// Retry requests that arrive carrying `x-switchyard-attempt` (from
    /// another Switchyard, which retries them itself).
    #[serde(default)]
    pub retry_when_attempt_header: bool,
    /// Send a copy of an idempotent request to another server when the
    /// first has not answered within its learned p95 response time.
    #[serde(default)]
    pub hedge: bool,
    /// `"dry-run"`: idempotency-key retries, the deadline's retry skip,
    /// pushback, one-layer retries and hedging only say what they would do.
    #[serde(default)]
    pub mode: ModeName,
    /// The shortest wait before a hedge.
    #[serde(default = "defaults::hedge_min")]
    pub hedge_min: Dur,
    /// The longest wait before a hedge (also the wait while the p95 is not known).
    #[serde(default = "defaults::hedge_max")]
    pub hedge_max: Dur,
    /// Retries may add at most this percent to the group's requests of the
    /// last `budget_window` (0: only the floor).
    #[serde(default = "defaults::budget_percent")]
    pub budget_percent: u32,
    /// Retries allowed per second whatever the traffic.
    #[serde(default = "defaults::budget_min_per_second")]
    pub budget_min_per_second: u32,
    /// How far back the budget counts requests and retries.
    #[serde(default = "defaults::budget_window")]
    pub budget_window: Dur,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            max_attempts: defaults::max_attempts(),
            retry_on: default_retry_on(),
            non_idempotent: false,
            idempotency_key: None,
            backoff: None,
            deadline: None,
            deadline_header: None,
            replay_buffer: defaults::replay_buffer(),
            max_retry_after: defaults::max_retry_after(),
            retry_when_attempt_header: false,
            hedge: false,
            mode: ModeName::Enforce,
            hedge_min: defaults::hedge_min(),
            hedge_max: defaults::hedge_max(),
            budget_percent: defaults::budget_percent(),
            budget_min_per_second: defaults::budget_min_per_second(),
            budget_window: defaults::budget_window(),
        }
    }
}

/// One `retry_on` entry: a failure name or a status code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RetryOnEntry {
    /// An HTTP status.
    Status(u16),
    /// A failure name.
    Name(String),
}

/// `mode`: whether the newer policies act, or only say what they would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeName {
    /// They act.
    #[default]
    Enforce,
    /// They decide, count and log, and do not act.
    DryRun,
}

impl ModeName {
    /// The library's mode.
    pub fn mode(self) -> switchyard::policy::dry_run::Mode {
        match self {
            ModeName::Enforce => switchyard::policy::dry_run::Mode::Enforce,
            ModeName::DryRun => switchyard::policy::dry_run::Mode::DryRun,
        }
    }
}

/// `backoff = { base = "25ms", cap = "250ms" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSection {
    /// The first window.
    pub base: Dur,
    /// The largest window.
    pub cap: Dur,
}

/// A route's retry overrides: any key of `[upstreams.NAME.retry]` but the
/// `budget_*` keys (the budget is the group's, shared by its routes).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    /// See [`RetrySection::max_attempts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<usize>,
    /// See [`RetrySection::retry_on`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<Spanned<RetryOnEntry>>>,
    /// See [`RetrySection::non_idempotent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_idempotent: Option<bool>,
    /// See [`RetrySection::idempotency_key`]; `""` turns it off for the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// See [`RetrySection::backoff`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSection>,
    /// See [`RetrySection::deadline`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Dur>,
    /// See [`RetrySection::deadline_header`]; `""` turns it off for the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_header: Option<String>,
    /// See [`RetrySection::replay_buffer`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_buffer: Option<Size>,
    /// See [`RetrySection::max_retry_after`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_after: Option<Dur>,
    /// See [`RetrySection::retry_when_attempt_header`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_when_attempt_header: Option<bool>,
    /// See [`RetrySection::mode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ModeName>,
    /// See [`RetrySection::hedge`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<bool>,
    /// See [`RetrySection::hedge_min`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_min: Option<Dur>,
    /// See [`RetrySection::hedge_max`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_max: Option<Dur>,
}

/// What is retried unless the file says otherwise.
fn default_retry_on() -> Vec<Spanned<RetryOnEntry>> {
    ["connect-failure", "reset-before-response"]
        .into_iter()
        .map(|name| Spanned::new(0..0, RetryOnEntry::Name(name.to_string())))
        .collect()
}
