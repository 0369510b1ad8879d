//! Span export (`[tracing] otlp_endpoint`): each finished request's spans
//! handed to the exporter, and its counts read into `/metrics` when
//! scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use switchyard::Error;
use switchyard::otlp::{OtlpExporter, RequestSpans};
use switchyard::proxy::Session;
use switchyard::route::RouteCtx;

use super::connections::catch_up;

/// `reason` of a dropped span.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

/// The exporter, if any, and its counters.
#[derive(Debug, Default)]
pub(super) struct OtlpMetrics {
    exporter: Option<OtlpExporter>,
    exported: Counter,
    dropped: Family<DropLabels, Counter>,
}

impl OtlpMetrics {
    /// Register the counters in `registry` (they stay at 0 without an exporter).
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = OtlpMetrics::default();
        registry.register(
            "otlp_spans_exported",
            "Spans the OTLP collector took",
            metrics.exported.clone(),
        );
        registry.register(
            "otlp_spans_dropped",
            "Spans not exported, by reason: queue-full (the exporter's queue was full) or export-failed (the collector did not take their batch)",
            metrics.dropped.clone(),
        );
        metrics
    }

    /// Export through `exporter` from now on.
    pub(super) fn set_exporter(&mut self, exporter: OtlpExporter) {
        self.exporter = Some(exporter);
    }

    /// Hand a finished request's spans to the exporter (a sampled trace only).
    pub(super) fn export(&self, session: &Session, e: Option<&Error>, ctx: &RouteCtx) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let Some(spans) = RequestSpans::of_session(session, e) else {
            return;
        };
        let spans = match ctx.route() {
            Some(route) => spans.with_route(&route.name, ctx.upstream().map_or("", |g| g.name())),
            None => spans,
        };
        exporter.export(spans);
    }

    /// Bring the counters up to the exporter's totals.
    pub(super) fn refresh(&self) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let as_total = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        catch_up(&self.exported, as_total(exporter.exported()));
        for (reason, count) in [
            ("queue-full", exporter.dropped_queue_full()),
            ("export-failed", exporter.dropped_export_failed()),
        ] {
            catch_up(
                &self.dropped.get_or_create(&DropLabels { reason }),
                as_total(count),
            );
        }
    }

    /// Send the queued spans, waiting at most `within` (at exit).
    pub(super) fn flush(&self, within: std::time::Duration) {
        if let Some(exporter) = &self.exporter {
            exporter.flush(within);
        }
    }
}
