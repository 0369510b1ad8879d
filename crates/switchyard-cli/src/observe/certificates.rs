//! ACME certificates in the metrics, read from the library's status when
//! `/metrics` is scraped: seconds until each domain's certificate expires
//! (negative once it has), and failed attempts in a row.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard::acme::{Acme, seconds_until};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabels {
    domain: String,
}

/// The gauges, and the certificates they are read from.
#[derive(Debug, Default)]
pub(super) struct CertificateMetrics {
    acme: Mutex<Option<Acme>>,
    expiry: Family<DomainLabels, Gauge<f64, AtomicU64>>,
    failures: Family<DomainLabels, Gauge>,
}

impl CertificateMetrics {
    /// Register the metrics in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = CertificateMetrics::default();
        registry.register(
            "tls_certificate_expiry_seconds",
            "Seconds until the certificate served for an ACME domain expires (negative once it has); absent until one is obtained",
            metrics.expiry.clone(),
        );
        registry.register(
            "tls_certificate_renewal_failures",
            "Failed attempts in a row to obtain or renew an ACME domain's certificate (0 after a success)",
            metrics.failures.clone(),
        );
        metrics
    }

    /// Read `acme`'s certificates from now on (none: no gauges).
    pub(super) fn watch(&self, acme: Option<Acme>) {
        *self.acme.lock().unwrap_or_else(|p| p.into_inner()) = acme;
    }

    /// Bring the gauges up to date.
    pub(super) fn refresh(&self) {
        self.expiry.clear();
        self.failures.clear();
        let acme = self.acme.lock().unwrap_or_else(|p| p.into_inner());
        let Some(acme) = &*acme else {
            return;
        };
        let now = SystemTime::now();
        for status in acme.status() {
            let labels = DomainLabels {
                domain: status.domain.clone(),
            };
            if let Some(not_after) = status.not_after {
                self.expiry
                    .get_or_create(&labels)
                    .set(seconds_until(not_after, now));
            }
            self.failures
                .get_or_create(&labels)
                .set(i64::from(status.failures));
        }
    }
}
