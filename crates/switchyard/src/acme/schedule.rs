//! When each domain's certificate is obtained or renewed: at once when
//! there is none; two thirds of the way through its lifetime, or at a
//! time inside the CA's suggested window (ARI) where the directory offers
//! one; after a failure, again after a doubling delay.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::CertificateIdentifier;
use tracing::{debug, warn};

use super::issue;
use super::state::{Issued, Shared};

/// The longest a task sleeps before it looks at its certificate again
/// (the CA's renewal window may have moved).
const LONGEST_SLEEP: Duration = Duration::from_secs(6 * 3600);

/// The delays between failed attempts: `first`, doubling each time, at
/// most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// The delay after the first failure.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 minute, doubling, at most 1 hour.
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The delay after `failures` failures in a row (at least one).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.first))
    }
}

/// Two thirds of the way from `not_before` to `not_after`.
pub(super) fn two_thirds(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime.mul_f64(2.0 / 3.0)
}

/// The point `fraction` (0 to 1) of the way through a renewal window.
pub(super) fn in_window(start: SystemTime, end: SystemTime, fraction: f64) -> SystemTime {
    let width = end.duration_since(start).unwrap_or(Duration::ZERO);
    start + width.mul_f64(fraction.clamp(0.0, 1.0))
}

/// When to act next on a domain, and what the new order replaces.
struct Plan {
    /// When the certificate should be obtained or renewed.
    due: SystemTime,
    /// When to look again even if not due (ARI's Retry-After).
    recheck: Option<SystemTime>,
    /// The certificate renewed, named for the CA (with ARI).
    replaces: Option<CertificateIdentifier<'static>>,
    /// Whether `due` came from the CA's window.
    ari: bool,
}

/// Keep `domain`'s certificate current until the task is aborted.
pub(super) async fn keep_current(shared: Arc<Shared>, domain: String) {
    // Where in an ARI window this domain renews: fixed for the task, so a
    // window asked for again gives the same time.
    let fraction = crate::random::unit();
    let mut ari_offered = true;
    let mut failures = 0u32;
    loop {
        let plan = plan(&shared, &domain, fraction, &mut ari_offered).await;
        let now = SystemTime::now();
        if plan.due > now {
            let wake = plan.recheck.map_or(plan.due, |at| at.min(plan.due));
            shared.update(&domain, |status| {
                status.next_attempt = Some(plan.due);
                status.ari = plan.ari;
            });
            let sleep = wake.duration_since(now).unwrap_or(Duration::ZERO);
            tokio::time::sleep(sleep.min(LONGEST_SLEEP)).await;
            continue;
        }
        match issue::obtain(&shared, &domain, plan.replaces).await {
            Ok(issued) => {
                failures = 0;
                shared.serve(&domain, issued);
                shared.update(&domain, |status| {
                    status.last_error = None;
                    status.failures = 0;
                });
            }
            Err(why) => {
                failures += 1;
                let wait = shared.settings.retry.after(failures);
                let serving = shared.issued(&domain).is_some();
                warn!(
                    domain = %domain,
                    error = %why,
                    retry_in = ?wait,
                    serving_current = serving,
                    "could not obtain a certificate from the ACME CA"
                );
                shared.update(&domain, |status| {
                    status.last_error = Some(why);
                    status.failures = failures;
                    status.next_attempt = SystemTime::now().checked_add(wait);
                });
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// When `domain` is due: now without a certificate; else by ARI where the
/// directory offers it, else two thirds through the lifetime.
async fn plan(shared: &Shared, domain: &str, fraction: f64, ari_offered: &mut bool) -> Plan {
    let Some(issued) = shared.issued(domain) else {
        return Plan {
            due: SystemTime::now(),
            recheck: None,
            replaces: None,
            ari: false,
        };
    };
    let fallback = Plan {
        due: two_thirds(issued.not_before, issued.not_after),
        recheck: None,
        replaces: None,
        ari: false,
    };
    if !*ari_offered {
        return fallback;
    }
    match renewal_window(shared, &issued, fraction).await {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            *ari_offered = false;
            fallback
        }
        Err(why) => {
            debug!(domain = %domain, error = %why, "no renewal information from the CA; renewing at two thirds of the lifetime");
            fallback
        }
    }
}

/// The CA's renewal window for `issued`; `None` when the CA has no
/// renewal information.
async fn renewal_window(
    shared: &Shared,
    issued: &Issued,
    fraction: f64,
) -> Result<Option<Plan>, String> {
    let Some(id) = issued.id.clone() else {
        // This certificate cannot be named to the CA; another may be.
        return Err("the certificate has no authority key identifier".into());
    };
    let account = issue::account(shared).await?;
    let (info, retry_after) = match account.renewal_info(&id).await {
        Ok(answer) => answer,
        Err(instant_acme::Error::Unsupported(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let window = info.suggested_window;
    let (start, end) = (
        unix_time(window.start.unix_timestamp()),
        unix_time(window.end.unix_timestamp()),
    );
    Ok(Some(Plan {
        due: in_window(start, end, fraction),
        recheck: Some(SystemTime::now() + retry_after.max(Duration::from_secs(60))),
        replaces: Some(id),
        ari: true,
    }))
}

/// A Unix timestamp as a time (before 1970: 1970).
fn unix_time(seconds: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}
