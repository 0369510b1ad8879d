//! How far one attempt's request body got, shared by the body hyper
//! polls and the engine that judges the attempt.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::Arc;

use tokio::sync::Notify;

use super::filter::FilterStatus;

/// How far one attempt's body got: bytes handed upstream, and whether it ended.
#[derive(Debug, Default)]
pub struct Progress {
    sent: AtomicU64,
    finished: AtomicBool,
    waiting_on_downstream: AtomicBool,
    finished_signal: Notify,
    /// The body's filter, whose intake is progress too.
    filter: Option<Arc<FilterStatus>>,
}

impl Progress {
    /// No progress yet, on a body through `filter` if it has one.
    pub(super) fn new(filter: Option<Arc<FilterStatus>>) -> Self {
        Progress {
            filter,
            ..Progress::default()
        }
    }

    /// How far the body moved: bytes handed upstream, and bytes of the
    /// client's body a filter took in without passing them on yet (a
    /// filter may hold the body back and send it at its end).
    pub fn moved(&self) -> u64 {
        let taken = self.filter.as_ref().map_or(0, |f| f.consumed());
        self.sent().wrapping_add(taken)
    }

    /// Body bytes this attempt handed to the upstream connection.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Whether this attempt's body reached its end.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Whether the body's last wait was for the client to send more (as
    /// opposed to the upstream to take more).
    pub fn waiting_on_downstream(&self) -> bool {
        self.waiting_on_downstream.load(Ordering::Acquire)
    }

    #[inline]
    pub(super) fn add_sent(&self, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::AcqRel);
    }

    #[inline]
    pub(super) fn set_waiting_on_downstream(&self, waiting: bool) {
        self.waiting_on_downstream.store(waiting, Ordering::Release);
    }

    /// Resolves once the body reached its end.
    pub async fn wait_finished(&self) {
        loop {
            let notified = self.finished_signal.notified();
            if self.finished() {
                return;
            }
            notified.await;
        }
    }

    #[inline]
    pub(super) fn mark_finished(&self) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.finished_signal.notify_waiters();
        }
    }
}
