//! Where rate limits keep their counts: [`RateLimitBuckets`], bounded
//! whatever the keys.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rustc_hash::FxHashMap;

/// Shards: requests for different keys seldom wait for one another.
const SHARDS: usize = 16;

/// The buckets of every rate limit that shares them: one per key (a
/// client, a header value, a route), at most `capacity` in all.
///
/// A key is a keyed hash ([`RandomState`]) of what names it, so neither
/// long header values nor crafted collisions cost memory or time. When
/// the store is full, a new key evicts the least recently used one
/// (approximately: a bucket used since the last sweep gets a second
/// chance). An evicted key starts again with a full bucket: with the
/// default capacity, that takes 100,000 other keys arriving in between.
#[derive(Debug)]
pub struct RateLimitBuckets {
    shards: Box<[Mutex<Shard>]>,
    capacity: AtomicUsize,
    keys: RandomState,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    buckets: FxHashMap<u64, Bucket>,
    /// Every key, oldest first, for eviction.
    order: VecDeque<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When the bucket will be full again (nanoseconds since the epoch):
    /// GCRA's theoretical arrival time.
    full_at: u64,
    used: bool,
}

impl RateLimitBuckets {
    /// The default `capacity`: `[server] rate_limit_keys`.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A store that holds at most `capacity` buckets (at least one per
    /// shard).
    pub fn new(capacity: usize) -> RateLimitBuckets {
        RateLimitBuckets {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            capacity: AtomicUsize::new(capacity),
            keys: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Hold at most `capacity` buckets from now on (a smaller store
    /// shrinks as keys arrive).
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    /// How many buckets it holds.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).buckets.len())
            .sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key for `what` under the limit `scope`.
    pub(super) fn key(&self, scope: u64, what: impl std::hash::Hash) -> u64 {
        self.keys.hash_one((scope, what))
    }

    /// Now, in the store's nanoseconds.
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Run `take` on `key`'s bucket (`None`: a new key, full): it returns
    /// the bucket's new `full_at`, or `None` to leave it as it was.
    pub(super) fn update(&self, key: u64, take: impl FnOnce(Option<u64>) -> Option<u64>) {
        // Keys may differ in their low bits only: mix them for the shard.
        let index = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS;
        let mut shard = lock(&self.shards[index]);
        if let Some(bucket) = shard.buckets.get_mut(&key) {
            bucket.used = true;
            if let Some(full_at) = take(Some(bucket.full_at)) {
                bucket.full_at = full_at;
            }
            return;
        }
        let Some(full_at) = take(None) else {
            return;
        };
        let room = self
            .capacity
            .load(Ordering::Relaxed)
            .div_ceil(SHARDS)
            .max(1);
        while shard.buckets.len() >= room {
            shard.evict_one();
        }
        shard.buckets.insert(
            key,
            Bucket {
                full_at,
                used: false,
            },
        );
        shard.order.push_back(key);
    }
}

impl Shard {
    /// Drop the oldest key not used since the last sweep past it.
    fn evict_one(&mut self) {
        while let Some(key) = self.order.pop_front() {
            match self.buckets.get_mut(&key) {
                Some(bucket) if bucket.used => {
                    bucket.used = false;
                    self.order.push_back(key);
                }
                Some(_) => {
                    self.buckets.remove(&key);
                    return;
                }
                None => {}
            }
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::RateLimitBuckets;

    #[test]
    fn the_store_never_holds_more_than_its_capacity() {
        let store = RateLimitBuckets::new(160);
        for i in 0..100_000u32 {
            let key = store.key(1, i);
            store.update(key, |_| Some(1));
        }
        assert!(store.len() <= 160, "{} buckets", store.len());
        store.set_capacity(32);
        for i in 0..1_000u32 {
            store.update(store.key(2, i), |_| Some(1));
        }
        assert!(store.len() <= 32, "{} buckets", store.len());
    }

    #[test]
    fn a_key_in_use_outlives_idle_ones() {
        let store = RateLimitBuckets::new(16 * 4);
        let busy = store.key(1, "busy");
        store.update(busy, |_| Some(7));
        for i in 0..10_000u32 {
            store.update(busy, |_| None);
            store.update(store.key(1, i), |_| Some(1));
        }
        let mut seen = None;
        store.update(busy, |before| {
            seen = before;
            None
        });
        assert_eq!(seen, Some(7));
    }
}
