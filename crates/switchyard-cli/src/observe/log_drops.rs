//! Log lines dropped by the log writers (a full queue, a file that cannot
//! be written), read from the writers when `/metrics` is scraped.

use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use switchyard::log_file::LogWriter;

/// The counter, and the writers it is read from.
#[derive(Debug, Default)]
pub(super) struct LogDropMetrics {
    writers: Mutex<Vec<LogWriter>>,
    dropped: Counter,
}

impl LogDropMetrics {
    /// Register the counter in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = LogDropMetrics::default();
        registry.register(
            "log_lines_dropped",
            "Access and error log lines dropped: the log's queue was full or its file could not be written",
            metrics.dropped.clone(),
        );
        metrics
    }

    /// Count `writer`'s drops from now on.
    pub(super) fn watch(&self, writer: LogWriter) {
        self.lock().push(writer);
    }

    /// Bring the counter up to the writers' total.
    pub(super) fn refresh(&self) {
        let total: u64 = self.lock().iter().map(LogWriter::dropped).sum();
        super::connections::catch_up(&self.dropped, i64::try_from(total).unwrap_or(i64::MAX));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LogWriter>> {
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
