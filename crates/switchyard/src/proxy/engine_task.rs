//! A request's engine as a value: polled by whoever holds it (the future
//! hyper awaits for the head, then the response body), spawned if it is
//! dropped unfinished, and never unwound by a panicking hook.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;

/// A request's engine, boxed once: the future is several KB and is never
/// moved after this.
pub(crate) type EngineFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An engine that is polled by whoever holds it, and spawned if it is
/// dropped unfinished.
pub(crate) struct EngineTask(Option<EngineFuture>);

impl std::fmt::Debug for EngineTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "EngineTask(running)"
        } else {
            "EngineTask(done)"
        })
    }
}

impl EngineTask {
    /// Drive `engine` from whoever holds this.
    #[inline]
    pub(crate) fn new(engine: EngineFuture) -> Self {
        EngineTask(Some(engine))
    }

    /// Nothing to drive (a response with no engine behind it).
    #[inline]
    pub(crate) fn none() -> Self {
        EngineTask(None)
    }

    /// Drive the engine one step, from the response body. Nothing but the
    /// body's own polls moves the engine on now (it waits for the body's
    /// end, which the body reports as it is polled), so no waker is left
    /// behind: the pump's report must not wake the connection for a poll
    /// with nothing to do. An engine that still waits when the body is
    /// dropped is spawned, and from then on woken as any task.
    #[inline]
    pub(crate) fn poll_from_body(&mut self) {
        self.poll_engine(&mut Context::from_waker(std::task::Waker::noop()));
    }

    /// Drive the engine one step; a panic ends it, as it would end a task.
    #[inline]
    pub(super) fn poll_engine(&mut self, cx: &mut Context<'_>) {
        let Some(engine) = self.0.as_mut() else {
            return;
        };
        if Pin::new(&mut CatchUnwind(engine)).poll(cx).is_ready() {
            self.0 = None;
        }
    }

    /// Hand the unfinished engine over (leaving nothing here to spawn).
    #[inline]
    pub(super) fn take(&mut self) -> EngineTask {
        EngineTask(self.0.take())
    }
}

impl Drop for EngineTask {
    fn drop(&mut self) {
        let Some(engine) = self.0.take() else {
            return;
        };
        // Outside a runtime (it is shutting down) there is nothing to run it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // A panic ends it quietly, as in `poll_engine`.
                let _ = CatchUnwind(engine).await;
            });
        }
    }
}

/// Runs a future, turning a panic inside it into `Err(())`, so that a
/// panicking hook still leaves the request answered and logged.
pub(super) struct CatchUnwind<F>(pub(super) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        }));
        match polled {
            Ok(poll) => poll.map(Ok),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}
