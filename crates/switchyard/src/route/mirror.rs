//! A copy of a share of a route's requests sent to a shadow group whose
//! answers are thrown away: [`Mirror`].
//!
//! The copy leaves once the client's request is over (from `logging`), in
//! a task of its own, so the client never waits for it, never fails
//! because of it and is never slowed by it: a shadow that is down, slow or
//! silent costs the client nothing. Copies in flight are bounded; beyond
//! the bound, and for a body over `max_body` or not read to its end, a
//! request is not mirrored, and [`MirrorStats`] counts why.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::BodyCopy;
use crate::group::UpstreamGroup;
use crate::peer::HttpPeer;
use crate::proxy::RequestHeader;
use crate::random::EvenSpread;
use crate::upstream::connector;

/// Headers of the client's request that belong to its connection, not to
/// the copy.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// A route's mirror.
#[derive(Debug)]
pub struct Mirror {
    group: Arc<UpstreamGroup>,
    /// The share mirrored, in hundredths of a percent.
    share: u64,
    /// The largest body copied.
    pub max_body: usize,
    max_in_flight: usize,
    /// Send the client's `Host` as it is (by default `-shadow` is added to
    /// its name, as Envoy does, so the shadow can tell copies apart).
    pub keep_host: bool,
    /// The share mirrored is dealt out evenly, without a random draw.
    next: EvenSpread,
    in_flight: Arc<AtomicUsize>,
    stats: Arc<MirrorStats>,
}

/// What became of a mirror's copies.
#[derive(Debug, Default)]
pub struct MirrorStats {
    /// Copies the shadow answered (whatever the status).
    pub answered: AtomicU64,
    /// Copies that failed: no connection, an error, or no answer in time.
    pub failed: AtomicU64,
    /// Requests not mirrored: `max_in_flight` copies were in flight.
    pub dropped_in_flight: AtomicU64,
    /// Requests not mirrored: the body was over `max_body`.
    pub dropped_body_too_large: AtomicU64,
    /// Requests not mirrored: the body was not read to its end.
    pub dropped_body_unfinished: AtomicU64,
}

impl Mirror {
    /// Mirror `percent` (above 0, at most 100) of requests to `group`,
    /// with bodies up to `max_body` bytes, at most `max_in_flight` copies
    /// at a time (at least 1).
    pub fn new(
        group: Arc<UpstreamGroup>,
        percent: f64,
        max_body: usize,
        max_in_flight: usize,
    ) -> Result<Mirror, String> {
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(format!("{percent} is not a share above 0 and at most 100"));
        }
        if max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".to_string());
        }
        Ok(Mirror {
            group,
            share: (percent * 100.0).round() as u64,
            max_body,
            max_in_flight,
            keep_host: false,
            next: EvenSpread::default(),
            in_flight: Arc::default(),
            stats: Arc::default(),
        })
    }

    /// The shadow group.
    pub fn group(&self) -> &Arc<UpstreamGroup> {
        &self.group
    }

    /// What became of its copies so far.
    pub fn stats(&self) -> &Arc<MirrorStats> {
        &self.stats
    }

    /// Copies in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the next request is one of the share mirrored.
    pub fn samples(&self) -> bool {
        self.next.next_below(10_000) < self.share
    }

    /// Send a copy of `head` with the body `body` in the background, or
    /// count why not. Never waits.
    pub fn send(&self, head: &RequestHeader, body: BodyCopy) {
        let body = match body {
            BodyCopy::Complete(body) => body,
            BodyCopy::TooLarge => {
                self.stats
                    .dropped_body_too_large
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            BodyCopy::Unfinished => {
                self.stats
                    .dropped_body_unfinished
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            });
        if taken.is_err() {
            self.stats.dropped_in_flight.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let request = self.copy_of(head, body);
        let peer = self.pick();
        let limit = peer.options.connect_timeout + peer.options.read_timeout;
        let (stats, in_flight) = (Arc::clone(&self.stats), Arc::clone(&self.in_flight));
        tokio::spawn(async move {
            let answered = matches!(
                tokio::time::timeout(limit, deliver(&peer, request)).await,
                Ok(Ok(()))
            );
            let outcome = if answered {
                &stats.answered
            } else {
                &stats.failed
            };
            outcome.fetch_add(1, Ordering::Relaxed);
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// The shadow server for the next copy: the group's selection, away
    /// from servers that are down.
    fn pick(&self) -> HttpPeer {
        let avoid = self.group.health().avoid(Instant::now());
        let addr = self.group.backends().select_avoiding(&[], &avoid).addr;
        self.group.peer(addr)
    }

    /// The copy: the client's method, path, headers (less its connection's)
    /// and body, with `Host` marked as a shadow's unless kept.
    fn copy_of(&self, head: &RequestHeader, body: Bytes) -> http::Request<Full<Bytes>> {
        let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = target.parse().unwrap_or_default();
        let headers = request.headers_mut();
        for (name, value) in &head.headers {
            if !HOP_BY_HOP.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let host = super::answer::sent_authority(head).map(|host| match self.keep_host {
            true => host.to_string(),
            false => shadow_host(host),
        });
        if let Some(value) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            headers.insert(header::HOST, value);
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        request
    }
}

/// `-shadow` added to a host's name, before its port: `app:8080` is
/// `app-shadow:8080`.
fn shadow_host(host: &str) -> String {
    let end_of_name = match host.strip_prefix('[') {
        Some(_) => host.find(']').map(|i| i + 1),
        None => host.find(':'),
    };
    let (name, port) = host.split_at(end_of_name.unwrap_or(host.len()));
    format!("{name}-shadow{port}")
}

/// Send `request` to `peer` and wait for the head of its answer.
async fn deliver(peer: &HttpPeer, request: http::Request<Full<Bytes>>) -> Result<(), String> {
    let stream = connector::connect_once(peer).await?;
    exchange(stream, request).await
}

async fn exchange<S>(stream: S, request: http::Request<Full<Bytes>>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driving = tokio::spawn(connection);
    let answer = sender.send_request(request).await;
    driving.abort();
    answer.map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::shadow_host;

    #[test]
    fn the_shadow_suffix_goes_before_the_port() {
        assert_eq!(shadow_host("app"), "app-shadow");
        assert_eq!(shadow_host("app:8080"), "app-shadow:8080");
        assert_eq!(shadow_host("[::1]:8080"), "[::1]-shadow:8080");
    }
}
