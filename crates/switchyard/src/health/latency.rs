//! Latency outliers: a peer much slower than the rest of its group is
//! ejected like a failing one. Each peer keeps its last [`SAMPLES`]
//! successful attempts' durations (to the end of the response body); once it has them all, its median is compared
//! with the median of the other peers' medians (those that have theirs),
//! and a peer above `OutlierPolicy::latency_factor` times that is ejected,
//! for the usual growing time and within the usual cap. Off unless the
//! factor is set: a group whose servers serve different work (by path or
//! hash) may have slower servers that are not sick.

use std::time::{Duration, Instant};

use super::{UpstreamHealth, lock, would_eject};
use crate::policy::dry_run::WouldHave;
use crate::upstream::response_times::RecentTimes;

/// Successful response times kept per peer.
pub(crate) const SAMPLES: usize = 20;

/// A peer's latest successful attempts' durations.
pub(super) type Samples = RecentTimes<SAMPLES>;

/// The median of a peer's samples (the upper one of an even count), once
/// every sample is in.
fn median_of(samples: &Samples) -> Option<u32> {
    if samples.len() < SAMPLES {
        return None;
    }
    samples.nth_smallest(SAMPLES / 2)
}

/// The median of `values` (the upper one of an even count), reordering them.
fn median(values: &mut [u32]) -> u32 {
    let middle = values.len() / 2;
    *values.select_nth_unstable(middle).1
}

/// Whether a peer with median `own` is a latency outlier among peers whose
/// medians are `others`: above `factor` times their median. `None` while
/// no other peer has a median to compare with.
pub(crate) fn is_latency_outlier(own: u32, others: &mut [u32], factor: u32) -> Option<bool> {
    if others.is_empty() || factor == 0 {
        return None;
    }
    let group = median(others);
    Some(u64::from(own) > u64::from(group) * u64::from(factor))
}

impl UpstreamHealth {
    /// Record that `peer` answered a successful attempt in `took`, and
    /// eject it when it has become a latency outlier (see the module docs;
    /// nothing happens unless `latency_factor` is set).
    /// In a dry run, the ejection is not made but returned, and logged.
    pub fn report_latency(
        &self,
        peer: crate::peer_addr::PeerAddr,
        took: Duration,
        now: Instant,
    ) -> Option<WouldHave> {
        let factor = self.policy.latency_factor;
        if factor == 0 {
            return None;
        }
        let index = self.index(peer)?;
        let mut peers = lock(&self.peers);
        if peers[index].outlier.ejected(now) {
            return None;
        }
        peers[index].latency.push(took);
        let own = median_of(&peers[index].latency)?;
        let mut others: Vec<u32> = peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != index && !p.outlier.ejected(now))
            .filter_map(|(_, p)| median_of(&p.latency))
            .collect();
        if is_latency_outlier(own, &mut others, factor) != Some(true) {
            return None;
        }
        let group = median(&mut others);
        let reason = format!(
            "median response time {:?} over {factor} times the group's {:?}",
            Duration::from_micros(u64::from(own)),
            Duration::from_micros(u64::from(group)),
        );
        let time = peers[index].outlier.next_ejection(&self.policy);
        // Judged afresh once it is back (or, in a dry run, from now on).
        peers[index].latency.clear();
        if self.policy.mode.is_dry_run() {
            drop(peers);
            return would_eject(peer, &reason);
        }
        self.eject(peers, index, time, reason, now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_an_outlier_above_factor_times_the_others_median() {
        assert_eq!(is_latency_outlier(500, &mut [100, 90, 110], 4), Some(true));
        assert_eq!(is_latency_outlier(400, &mut [100, 90, 110], 4), Some(false));
        assert_eq!(
            is_latency_outlier(500, &mut [], 4),
            None,
            "nobody to compare"
        );
        assert_eq!(is_latency_outlier(500, &mut [100], 0), None, "off");
    }

    #[test]
    fn the_median_needs_every_sample() {
        let mut samples = Samples::default();
        for n in 0..SAMPLES as u64 - 1 {
            samples.push(Duration::from_millis(n));
        }
        assert_eq!(median_of(&samples), None);
        samples.push(Duration::from_millis(100));
        assert_eq!(median_of(&samples), Some(10_000));
    }
}
