//! Why, by request ID: the stories of recent requests kept in two bounded
//! rings, served by the admin listener's `GET /requests/ID` and printed by
//! `switchyard why ID`.
//!
//! One ring keeps the last `keep_traces` requests; the other keeps the
//! last `keep_failed_traces` that failed (an error, or a 5xx) or were
//! retried, so the requests an operator asks about outlive a flood of
//! ordinary ones. A story is shared by both rings (one copy). Its path is
//! cut at [`MAX_KEPT_PATH`] bytes, so the memory a story takes is bounded
//! whatever the request; [`approx_bytes`] says how much.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{Finished, json_value};

/// The most bytes of a request's path and query kept in its story.
pub const MAX_KEPT_PATH: usize = 1024;

/// The two rings.
#[derive(Debug, Default)]
pub(super) struct TraceRing {
    recent: usize,
    failed: usize,
    rings: Mutex<Rings>,
}

#[derive(Debug, Default)]
struct Rings {
    recent: VecDeque<Arc<Finished>>,
    failed: VecDeque<Arc<Finished>>,
}

impl TraceRing {
    /// Rings of `recent` and `failed` stories (0: that ring keeps none).
    pub(super) fn new(recent: usize, failed: usize) -> Self {
        TraceRing {
            recent,
            failed,
            rings: Mutex::default(),
        }
    }

    /// Whether either ring keeps anything.
    pub(super) fn is_on(&self) -> bool {
        self.recent > 0 || self.failed > 0
    }

    /// Keep `story`, dropping the oldest beyond each ring's size.
    pub(super) fn keep(&self, mut story: Finished) {
        if !self.is_on() {
            return;
        }
        cut_path(&mut story.path);
        let failed = is_failed_or_retried(&story);
        let story = Arc::new(story);
        let mut rings = self.lock();
        if self.recent > 0 {
            push_bounded(&mut rings.recent, Arc::clone(&story), self.recent);
        }
        if failed && self.failed > 0 {
            push_bounded(&mut rings.failed, story, self.failed);
        }
    }

    /// The story of the request `id`, if a ring still holds it.
    pub(super) fn find(&self, id: &str) -> Option<Arc<Finished>> {
        let rings = self.lock();
        rings
            .recent
            .iter()
            .rev()
            .chain(rings.failed.iter().rev())
            .find(|story| story.request_id == id)
            .cloned()
    }

    /// How many stories each ring holds now.
    pub(super) fn held(&self) -> (usize, usize) {
        let rings = self.lock();
        (rings.recent.len(), rings.failed.len())
    }

    /// The rings' sizes.
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.recent, self.failed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        // Every change is one push and one pop: a panic cannot leave a
        // ring half-changed.
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn push_bounded(ring: &mut VecDeque<Arc<Finished>>, story: Arc<Finished>, size: usize) {
    if ring.len() >= size {
        ring.pop_front();
    }
    ring.push_back(story);
}

/// A request worth keeping longer: it failed, got a 5xx, or was retried.
fn is_failed_or_retried(story: &Finished) -> bool {
    story.error.is_some() || story.status >= 500 || story.trace.len() > 1
}

/// Cut `path` to at most [`MAX_KEPT_PATH`] bytes, at a character boundary.
fn cut_path(path: &mut String) {
    if path.len() <= MAX_KEPT_PATH {
        return;
    }
    let mut end = MAX_KEPT_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path.truncate(end);
    path.push_str("...");
    path.shrink_to_fit();
}

/// About how many bytes `story` takes in memory (the record, its strings
/// and its attempts), for the docs' sizing.
pub fn approx_bytes(story: &Finished) -> usize {
    let strings = [&story.client, &story.method, &story.path, &story.request_id]
        .iter()
        .map(|s| s.capacity())
        .sum::<usize>()
        + story.upstream.as_ref().map_or(0, String::capacity)
        + story.error.as_ref().map_or(0, String::capacity)
        + story.proxy_status.as_ref().map_or(0, String::capacity)
        + story.trace_id.as_ref().map_or(0, String::capacity);
    std::mem::size_of::<Finished>()
        + strings
        + std::mem::size_of_val(story.trace.records())
        + story.dry_runs.len() * std::mem::size_of::<switchyard::policy::dry_run::WouldHave>()
        // The `Arc`'s counts and the two rings' slots.
        + 16
        + 2 * std::mem::size_of::<Arc<Finished>>()
}

/// The whole story as JSON: the access log's fields, the `Proxy-Status`
/// of a failure, and each attempt in words as the demo prints it.
pub fn story_json(story: &Finished) -> serde_json::Value {
    // Each attempt as the access log and the demo put it: peer, outcome,
    // and the decision with its reason.
    let lines: Vec<String> = story
        .trace
        .records()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut value = json_value(story);
    value["proxy_status"] = json!(story.proxy_status);
    value["story"] = json!(lines);
    value
}

#[cfg(test)]
mod tests;
