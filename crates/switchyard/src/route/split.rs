//! A route's traffic shared between groups by weight (a canary):
//! [`Split`].
//!
//! Each new request takes the next point of a low-discrepancy sequence
//! (the golden ratio's multiples, modulo 1) and goes to the side whose
//! share of the weights holds it: over any run of requests the shares
//! stay within a few requests of the weights, without a lock or a random
//! draw. A side whose group has no usable server gives its requests to
//! the next side that has one. With a sticky cookie, a client that names
//! a side keeps it while its group has a usable server.

use crate::random::EvenSpread;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use http::header::HeaderValue;

use crate::group::UpstreamGroup;

/// Groups sharing a route's requests by weight.
#[derive(Debug)]
pub struct Split {
    sides: Vec<SplitSide>,
    /// The sum of the weights.
    total: u64,
    next: EvenSpread,
    /// The cookie that keeps a client on its side, if any.
    sticky_cookie: Option<String>,
}

/// One side of a [`Split`].
#[derive(Debug)]
pub struct SplitSide {
    /// Its group.
    pub group: Arc<UpstreamGroup>,
    /// Its share: its weight over the sum of the weights.
    pub weight: u32,
}

/// Where a request went, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitChoice {
    /// The side it goes to (its index).
    pub side: usize,
    /// The side it was meant for, when that side had no usable server.
    pub moved_from: Option<usize>,
    /// Whether the client's cookie named the side it was meant for.
    pub from_cookie: bool,
}

impl Split {
    /// Groups with their weights, in order: at least two sides, each with
    /// a weight of at least 1.
    pub fn new(sides: Vec<SplitSide>) -> Result<Split, String> {
        if sides.len() < 2 {
            return Err("a split needs at least two sides".to_string());
        }
        if let Some(side) = sides.iter().find(|side| side.weight == 0) {
            let name = side.group.name();
            return Err(format!(
                "{name}: a weight of 0 gets no requests: leave the side out"
            ));
        }
        let total = sides.iter().map(|side| u64::from(side.weight)).sum();
        Ok(Split {
            sides,
            total,
            next: EvenSpread::default(),
            sticky_cookie: None,
        })
    }

    /// The same split, keeping each client on its side with the cookie
    /// `name`.
    pub fn sticky(mut self, cookie: impl Into<String>) -> Split {
        self.sticky_cookie = Some(cookie.into());
        self
    }

    /// Its sides, in order.
    pub fn sides(&self) -> &[SplitSide] {
        &self.sides
    }

    /// The sticky cookie's name, if any.
    pub fn sticky_cookie(&self) -> Option<&str> {
        self.sticky_cookie.as_deref()
    }

    /// The side for a request with `headers`.
    pub fn choose(&self, headers: &HeaderMap) -> SplitChoice {
        let named = self.named_side(headers);
        let meant = named.unwrap_or_else(|| self.next_side());
        let now = Instant::now();
        let usable = |i: usize| self.sides[i].group.health().has_usable(now);
        let side = (0..self.sides.len())
            .map(|step| (meant + step) % self.sides.len())
            .find(|&i| usable(i))
            .unwrap_or(meant);
        SplitChoice {
            side,
            moved_from: (side != meant).then_some(meant),
            from_cookie: named.is_some(),
        }
    }

    /// The `Set-Cookie` that keeps a client on `side`, if the split is
    /// sticky.
    pub fn set_cookie(&self, side: usize) -> Option<HeaderValue> {
        let name = self.sticky_cookie.as_deref()?;
        let group = self.sides.get(side)?.group.name();
        HeaderValue::from_str(&format!("{name}={group}; Path=/; HttpOnly; SameSite=Lax")).ok()
    }

    /// The next side by weight.
    fn next_side(&self) -> usize {
        let point = self.next.next_below(self.total);
        let mut below = 0;
        for (i, side) in self.sides.iter().enumerate() {
            below += u64::from(side.weight);
            if point < below {
                return i;
            }
        }
        self.sides.len() - 1
    }

    /// The side the sticky cookie names, if the split has one and the
    /// request carries it with a side's group name.
    fn named_side(&self, headers: &HeaderMap) -> Option<usize> {
        let name = self.sticky_cookie.as_deref()?;
        let value = crate::cookie::value(headers, name)?.trim_matches('"');
        self.sides
            .iter()
            .position(|side| side.group.name() == value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderMap;

    use super::{Split, SplitSide};
    use crate::group::UpstreamGroup;
    use crate::lb::{Backend, Backends, Selection};

    fn group(name: &str, port: u16) -> Arc<UpstreamGroup> {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let primaries = vec![Backend::new(addr)];
        let backends = Backends::new(primaries, Vec::new(), Selection::RoundRobin).unwrap();
        Arc::new(UpstreamGroup::builder(name, backends).build())
    }

    fn split(weights: &[u32]) -> Split {
        let sides = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| SplitSide {
                group: group(&format!("g{i}"), 9000 + i as u16),
                weight,
            })
            .collect();
        Split::new(sides).unwrap()
    }

    #[test]
    fn shares_follow_the_weights_closely() {
        for weights in [[95, 5], [50, 50], [1, 99], [2, 1]] {
            let split = split(&weights);
            let mut seen = [0u32; 2];
            for _ in 0..10_000 {
                seen[split.choose(&HeaderMap::new()).side] += 1;
            }
            let total: u32 = weights.iter().sum();
            for (count, weight) in seen.iter().zip(weights) {
                let expected = 10_000 * weight / total;
                assert!(count.abs_diff(expected) <= 10, "{weights:?}: {seen:?}");
            }
        }
    }

    #[test]
    fn a_sticky_cookie_keeps_its_side_and_others_are_ignored() {
        let split = split(&[99, 1]).sticky("sy_split");
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "a=1; sy_split=g1; b=2".parse().unwrap());
        for _ in 0..100 {
            let choice = split.choose(&headers);
            assert_eq!((choice.side, choice.from_cookie), (1, true));
        }
        headers.insert("cookie", "sy_split=nope".parse().unwrap());
        assert!(!split.choose(&headers).from_cookie);
        assert_eq!(
            split.set_cookie(1).unwrap(),
            "sy_split=g1; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn fewer_than_two_sides_or_a_zero_weight_are_refused() {
        let one = vec![SplitSide {
            group: group("a", 9100),
            weight: 1,
        }];
        assert!(Split::new(one).unwrap_err().contains("two sides"));
        let zero = vec![
            SplitSide {
                group: group("a", 9100),
                weight: 1,
            },
            SplitSide {
                group: group("b", 9101),
                weight: 0,
            },
        ];
        assert!(Split::new(zero).unwrap_err().contains("weight of 0"));
    }
}
