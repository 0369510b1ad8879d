//! A route's traffic settings as the file spells them: `rate_limit`
//! (`config/traffic.rs` checks and builds them).

use serde::{Deserialize, Serialize};

use super::ModeName;
use crate::config::units::Dur;

/// `rate_limit = { requests = 100, per = "1s", burst = 20, key = "client" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests each key may make per `per` (at least 1).
    pub requests: u32,
    /// The period `requests` are counted over.
    pub per: Dur,
    /// How many may come at once; `requests` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What requests are counted by: `"client"`, `"header:NAME"` or
    /// `"route"`.
    #[serde(default = "client_key")]
    pub key: String,
    /// `"enforce"` (refuse with 429) or `"dry-run"` (count what would be
    /// refused).
    #[serde(default)]
    pub mode: ModeName,
}

fn client_key() -> String {
    "client".to_string()
}
