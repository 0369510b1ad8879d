//! Who polls a request's engine: the downstream connection, until the
//! request is done; a task of its own only when the client leaves early.
//!
//! A spawned task per request costs an allocation, a hop through the
//! scheduler and a wake-up at every step (docs/benchmarks.md). So the
//! engine's future is polled by the future hyper awaits for the response
//! head ([`Handling`]), and once the head is out, by the response body as
//! hyper polls it ([`EngineTask`] inside `ResponseBody`). Usually the engine
//! finishes (trace settled, `logging` run) in the same poll that hands hyper
//! the body's last frame.
//!
//! The guarantee the spawned task gave is kept: whoever holds the unfinished
//! engine and is dropped (hyper drops the service future when the client
//! goes away, and the body after its end or when the connection closes)
//! spawns it, and it runs to the end on its own: the trace is complete and
//! `logging` runs, as before. A panic inside the engine ends only the engine,
//! as it ended only its task before.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use tokio::sync::oneshot;

use super::engine::{Answer, CatchUnwind, ClientGone};
use super::pump::ResponseBody;
use super::respond::error_response;
use crate::error::{Error, ErrorKind};

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
    /// Nothing to drive (a response with no engine behind it).
    pub(crate) fn none() -> Self {
        EngineTask(None)
    }

    /// Drive the engine one step, from the response body. Nothing but the
    /// body's own polls moves the engine on now (it waits for the body's
    /// end, which the body reports as it is polled), so no waker is left
    /// behind: the pump's report must not wake the connection for a poll
    /// with nothing to do. An engine that still waits when the body is
    /// dropped is spawned, and from then on woken as any task.
    pub(crate) fn poll_from_body(&mut self) {
        self.poll_engine(&mut Context::from_waker(std::task::Waker::noop()));
    }

    /// Drive the engine one step; a panic ends it, as it would end a task.
    fn poll_engine(&mut self, cx: &mut Context<'_>) {
        let Some(engine) = self.0.as_mut() else {
            return;
        };
        if Pin::new(&mut CatchUnwind(engine)).poll(cx).is_ready() {
            self.0 = None;
        }
    }

    /// Hand the unfinished engine over (leaving nothing here to spawn).
    fn take(&mut self) -> EngineTask {
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

/// The future hyper awaits for a request's response: drives the engine until
/// it answers, then hands it to the response body.
#[derive(Debug)]
pub(crate) struct Handling {
    engine: EngineTask,
    head: oneshot::Receiver<Answer>,
}

impl Handling {
    /// Drive `engine`, which answers through the sender of `head`.
    pub(crate) fn new(engine: EngineFuture, head: oneshot::Receiver<Answer>) -> Self {
        Handling {
            engine: EngineTask(Some(engine)),
            head,
        }
    }
}

impl Future for Handling {
    type Output = Result<Response<ResponseBody>, ClientGone>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.engine.poll_engine(cx);
        // Only the engine answers, and only while polled here: no waker is
        // needed (one would make the answer wake the connection again).
        Poll::Ready(match this.head.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => return Poll::Pending,
            Ok(Some(response)) => {
                let engine = this.engine.take();
                Ok(response.map(|body| body.driving(engine)))
            }
            Ok(None) => Err(ClientGone),
            Err(oneshot::error::TryRecvError::Closed) => {
                let e = Error::explain(
                    ErrorKind::Internal,
                    "the request's engine ended without an answer",
                );
                Ok(error_response(StatusCode::INTERNAL_SERVER_ERROR, &e).map(ResponseBody::full))
            }
        })
    }
}

/// Pending once, without a waker: where the engine stops after its answer
/// was delivered, so that the [`Handling`] that delivered it takes the
/// engine and the response body drives it from then on (a body that is
/// dropped instead spawns it, and the spawned task's first poll moves on).
pub(super) fn to_the_body() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |_| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            Poll::Pending
        }
    })
}
