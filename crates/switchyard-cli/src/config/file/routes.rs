//! A route's header conditions and header edits as the file spells them
//! (`config/routes.rs` checks and builds them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A header a route requires: `{ name = "x-beta" }` (present) or
/// `{ name = "x-beta", value = "1" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchEntry {
    /// The header's name.
    pub name: String,
    /// The exact value; any if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `request_headers` / `response_headers`: edits applied in the order
/// remove, set, add.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsSection {
    /// Set these, replacing any values the message had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Add these beside any values the message had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}
