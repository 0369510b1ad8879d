//! A response body through `response_body_filter`: for a response whose
//! hooks asked for it (`Session::filter_response_body`), the engine reads
//! the upstream's body, hands each piece to the hook with the session and
//! the `CTX`, and passes on what the hook leaves, one frame at a time (the
//! downstream body polls the engine, so the upstream is read no faster
//! than the client takes the body). Once the body ends (or its trailers
//! come) the hook is called a last time, with nothing and `end_of_stream`
//! set, and may add bytes then.

use bytes::Bytes;
use http_body::{Body, Frame};

use super::attempt::Filtering;
use super::pump::FilteredSender;
use super::{ProxyHttp, Session};
use crate::error::{Error, ErrorKind};

/// How a filtered body ended: the bytes passed on to the client, and the
/// hook's error if it failed (the downstream response was then aborted).
/// The upstream body's own end, failure or abandonment is reported by its
/// pump, as for any body.
pub(super) struct Filtered {
    /// Body bytes sent to the client, after the filter.
    pub(super) sent: u64,
    /// The hook's error (or panic), which the request ends with.
    pub(super) failed: Option<Box<Error>>,
}

/// Filter the body in `filtering` to its end, or until the client leaves
/// (then the pump is dropped at once, closing the upstream side).
pub(super) async fn filter_response_body<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    filtering: Box<Filtering>,
) -> Filtered {
    let Filtering { mut pump, frames } = *filtering;
    let mut out = Out {
        frames,
        sent: 0,
        ended: false,
    };
    let failed = loop {
        let frame = tokio::select! {
            frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut pump).poll_frame(cx)) => frame,
            () = out.frames.closed() => break None,
        };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !out.ended => data,
                Ok(_) => continue,
                // Trailers end the body: the last call comes before them.
                Err(trailers) => {
                    if !out.ended
                        && let Err(e) = last_call(proxy, session, ctx, &mut out).await
                    {
                        break Some(e);
                    }
                    if out.frames.send(Ok(trailers)).await.is_err() {
                        break None;
                    }
                    continue;
                }
            },
            // The pump reported it; hyper aborts the downstream response.
            Some(Err(e)) => {
                let _ = out.frames.send(Err(e)).await;
                break None;
            }
            None if out.ended => break None,
            None => break last_call(proxy, session, ctx, &mut out).await.err(),
        };
        let mut body = Some(data);
        if let Err(e) = call(proxy, session, &mut body, false, ctx) {
            break Some(abort(&out.frames, e).await);
        }
        if !out.pass_on(body).await {
            // The client left: dropping the pump closes the upstream side.
            break None;
        }
    };
    Filtered {
        sent: out.sent,
        failed,
    }
}

/// Where the filtered frames go, and what went.
struct Out {
    frames: FilteredSender,
    sent: u64,
    /// The hook's last call was made (trailers may still follow).
    ended: bool,
}

impl Out {
    /// Send what the hook left, if anything; false once the client is gone.
    async fn pass_on(&mut self, body: Option<Bytes>) -> bool {
        match body.filter(|b| !b.is_empty()) {
            Some(data) => {
                let len = data.len() as u64;
                let sent = self.frames.send(Ok(Frame::data(data))).await.is_ok();
                self.sent = self.sent.saturating_add(len);
                sent
            }
            None => !self.frames.is_closed(),
        }
    }
}

/// The hook, with a panic in it turned into an error: the downstream
/// response is then aborted, never ended as if it were whole.
fn call<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut P::CTX,
) -> Result<(), Box<Error>> {
    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        proxy.response_body_filter(session, body, end_of_stream, ctx)
    }));
    called.unwrap_or_else(|_| {
        Err(Error::explain(
            ErrorKind::Internal,
            "response_body_filter panicked",
        ))
    })
}

/// The hook's last call, with nothing and `end_of_stream`, and the bytes it
/// adds passed on.
async fn last_call<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    out: &mut Out,
) -> Result<(), Box<Error>> {
    out.ended = true;
    let mut body = None;
    if let Err(e) = call(proxy, session, &mut body, true, ctx) {
        return Err(abort(&out.frames, e).await);
    }
    out.pass_on(body).await;
    Ok(())
}

/// Abort the downstream response for the hook's error `e`, which the
/// request then ends with.
async fn abort(frames: &FilteredSender, e: Box<Error>) -> Box<Error> {
    let aborted = Error::explain(
        ErrorKind::Internal,
        "response_body_filter failed; aborting the downstream response",
    );
    let _ = frames.send(Err(aborted)).await;
    e
}
