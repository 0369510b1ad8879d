//! A route's traffic settings as the file spells them: `rate_limit`
//! (`config/traffic.rs` checks and builds them).

use serde::{Deserialize, Serialize};

use super::ModeName;
use crate::config::units::{Dur, Size};

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

/// `redirect = { to = "https://{host}/new{path}", status = 308 }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectSection {
    /// The URL (or path) to send the client to, with `{scheme}`, `{host}`,
    /// `{path}` and `{uri}` filled in.
    pub to: String,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "permanent")]
    pub status: u16,
}

fn permanent() -> u16 {
    308
}

/// `respond = { status = 200, body = "ok\n", content_type = "text/plain" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RespondSection {
    /// The status.
    #[serde(default = "ok")]
    pub status: u16,
    /// The body.
    #[serde(default)]
    pub body: String,
    /// The `Content-Type`; `text/plain; charset=utf-8` when there is a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

fn ok() -> u16 {
    200
}

/// `[server.error_pages]`: `502 = "PATH"`, `503`, `504`, `default`.
pub type ErrorPagesSection = std::collections::BTreeMap<String, toml::Spanned<String>>;

/// One side of `split = [{ upstream = "stable", weight = 95 }, ...]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    /// The upstream group.
    pub upstream: String,
    /// Its share, against the other sides' weights.
    pub weight: u32,
}

/// `sticky = { cookie = "sy_srv", max_age = "1h", secure = true, http_only = true }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StickySection {
    /// The cookie's name.
    pub cookie: String,
    /// How long the browser keeps it; until it closes if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Dur>,
    /// Sent over HTTPS only.
    #[serde(default)]
    pub secure: bool,
    /// Hidden from the page's scripts.
    #[serde(default = "yes")]
    pub http_only: bool,
}

fn yes() -> bool {
    true
}

/// `compress = true` (zstd, br, gzip, in this order) or `compress =
/// ["br", "gzip"]` (these, in this order).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CompressSetting {
    /// On with every codec, or off.
    On(bool),
    /// These codecs, preferred first.
    Codecs(Vec<String>),
}

/// `mirror = { upstream = "shadow", percent = 10, max_body = "64KiB" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSection {
    /// The shadow group.
    pub upstream: String,
    /// The share of requests copied, above 0 and at most 100.
    #[serde(default = "all")]
    pub percent: f64,
    /// The largest request body copied.
    #[serde(default = "max_body")]
    pub max_body: Size,
    /// The most copies in flight at once.
    #[serde(default = "max_in_flight")]
    pub max_in_flight: usize,
    /// Send `Host` as the client did (else with `-shadow` added).
    #[serde(default)]
    pub keep_host: bool,
}

fn all() -> f64 {
    100.0
}

fn max_body() -> Size {
    Size(64 * 1024)
}

fn max_in_flight() -> usize {
    64
}
