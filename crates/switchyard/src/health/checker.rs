//! Active health checks: each peer probed on an interval with jitter (a
//! shorter one while it is down), by TCP connect or by an HTTP request
//! whose status must be in the expected set. Verdicts go to
//! [`UpstreamHealth::record_check`], which applies rise/fall thresholds.

use crate::peer_addr::PeerAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use super::UpstreamHealth;
use crate::peer::HttpPeer;
use crate::upstream::connector;

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Passes when a TCP connection is accepted.
    Tcp,
    /// Passes when `GET path` answers with a status in `statuses` (inclusive ranges).
    Http {
        /// The request path, e.g. `/healthz`.
        path: String,
        /// Accepted statuses, e.g. `[(200, 399)]`.
        statuses: Vec<(u16, u16)>,
    },
}

/// How often and how a group's peers are checked.
///
/// | field | default |
/// |---|---|
/// | `probe` | TCP connect |
/// | `interval` | 2 s between checks of an up (or unknown) peer |
/// | `down_interval` | 1 s between checks of a down peer |
/// | `timeout` | 1 s for one check |
/// | `jitter_percent` | 10: each wait is the interval ±10% |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// What a check does.
    pub probe: Probe,
    /// Wait between checks while the peer is up or unknown.
    pub interval: Duration,
    /// Wait between checks while the peer is down.
    pub down_interval: Duration,
    /// Longest a check may take; longer is a failure.
    pub timeout: Duration,
    /// Random spread of each wait, in percent of it, so checks of many
    /// peers do not fire together.
    pub jitter_percent: u8,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            probe: Probe::Tcp,
            interval: Duration::from_secs(2),
            down_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            jitter_percent: 10,
        }
    }
}

impl CheckOptions {
    /// The default checks (a TCP connect, 1 s timeout), every `interval`
    /// whether the peer is up or down.
    pub fn every(interval: Duration) -> CheckOptions {
        CheckOptions {
            interval,
            down_interval: interval,
            ..CheckOptions::default()
        }
    }
}

/// Running checks for one group; dropping it stops them.
#[derive(Debug)]
pub struct Checker {
    _tasks: JoinSet<()>,
}

/// Start checking every peer of `health` over cleartext (one task per
/// peer; the first check runs at once). Must be called inside a tokio
/// runtime.
pub fn spawn(health: Arc<UpstreamHealth>, options: CheckOptions) -> Checker {
    spawn_for(health, options, |address| {
        HttpPeer::new(address, false, String::new())
    })
}

/// Like [`spawn`], with each server reached as `peer_for(address)` says:
/// over TLS, with its server name, for HTTPS servers. A TCP probe then
/// passes when the TLS handshake does too.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use switchyard::health::{UpstreamHealth, checker::{self, CheckOptions}};
/// # use switchyard::tls::{UpstreamTls, UpstreamTlsSettings};
/// # use switchyard::HttpPeer;
/// # fn run(health: Arc<UpstreamHealth>) -> switchyard::Result<()> {
/// let tls = UpstreamTls::load(&UpstreamTlsSettings::default())?;
/// let _checks = checker::spawn_for(health, CheckOptions::default(), move |address| {
///     HttpPeer::new(address, false, String::new()).with_tls(tls.clone(), "origin.internal")
/// });
/// # Ok(()) }
/// ```
pub fn spawn_for(
    health: Arc<UpstreamHealth>,
    options: CheckOptions,
    peer_for: impl Fn(PeerAddr) -> HttpPeer,
) -> Checker {
    let mut tasks = JoinSet::new();
    for &address in health.peers() {
        let (health, options) = (Arc::clone(&health), options.clone());
        let peer = peer_for(address);
        tasks.spawn(async move {
            loop {
                // In maintenance: no checks until an operator says ready.
                if health.wants_checks(address) {
                    let (passed, detail) = check_peer(&peer, &options).await;
                    health.record_check(address, passed, detail, Instant::now());
                }
                let base = if health.is_down(address) {
                    options.down_interval
                } else {
                    options.interval
                };
                tokio::time::sleep(jittered(base, options.jitter_percent)).await;
            }
        });
    }
    Checker { _tasks: tasks }
}

/// One check of the cleartext server at `address`: whether it passed, and
/// what it saw.
pub async fn check(address: PeerAddr, options: &CheckOptions) -> (bool, String) {
    check_peer(&HttpPeer::new(address, false, String::new()), options).await
}

/// One check of `peer` (over TLS if it says so): whether it passed, and
/// what it saw.
pub async fn check_peer(peer: &HttpPeer, options: &CheckOptions) -> (bool, String) {
    match tokio::time::timeout(options.timeout, probe(peer, &options.probe)).await {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(detail)) => (false, detail),
        Err(_) => (false, format!("no answer within {:?}", options.timeout)),
    }
}

async fn probe(peer: &HttpPeer, probe: &Probe) -> Result<String, String> {
    let stream = connector::connect_once(peer).await?;
    http_probe(peer, stream, probe).await
}

/// Pass on a connection (`Probe::Tcp`) or send the HTTP probe over it.
async fn http_probe<S>(peer: &HttpPeer, stream: S, probe: &Probe) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Probe::Http { path, statuses } = probe else {
        return Ok("connected".to_string());
    };
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driving = tokio::spawn(connection);
    let host = match peer.sni.as_str() {
        "" => peer.address.host(),
        name => name.to_string(),
    };
    let request = http::Request::get(path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "switchyard-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building GET {path}: {e}"))?;
    let answer = sender.send_request(request).await;
    driving.abort();
    let status = answer
        .map_err(|e| format!("GET {path}: {e}"))?
        .status()
        .as_u16();
    if statuses
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    {
        Ok(format!("GET {path}: {status}"))
    } else {
        Err(format!("GET {path}: {status}, not an expected status"))
    }
}

/// `base` spread by up to ±`percent`%.
fn jittered(base: Duration, percent: u8) -> Duration {
    let spread = base.as_secs_f64() * f64::from(percent.min(100)) / 100.0;
    let unit = crate::random::unit();
    Duration::from_secs_f64((base.as_secs_f64() + spread * (2.0 * unit - 1.0)).max(0.001))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(2), 10);
            assert!(
                d >= Duration::from_millis(1800) && d <= Duration::from_millis(2200),
                "{d:?}"
            );
        }
        assert_eq!(jittered(Duration::from_secs(1), 0), Duration::from_secs(1));
    }
}
