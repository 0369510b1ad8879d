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

use super::engine_task::{EngineFuture, EngineTask};
use super::pump::ResponseBody;
use super::reply::{Answer, ClientGone};
use super::respond::error_response;
use crate::error::{Error, ErrorKind};

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
            engine: EngineTask::new(engine),
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
