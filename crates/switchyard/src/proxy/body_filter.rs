//! A response body through `response_body_filter`: for a response whose
//! hooks asked for it (`Session::filter_response_body`), the engine reads
//! the upstream's body, hands each piece to the hook with the session and
//! the `CTX`, and passes on what the hook leaves, one frame at a time (the
//! downstream body polls the engine, so the upstream is read no faster
//! than the client takes the body). Once the body ends (or its trailers
//! come) the hook is called a last time, with nothing and `end_of_stream`
//! set, and may add bytes then.

use std::pin::Pin;

use bytes::Bytes;
use http_body::{Body, Frame};

use super::attempt::Filtering;
use super::pump::FilteredSender;
use super::{ProxyHttp, Session};
use crate::error::{Error, ErrorKind};

/// Filter the body in `filtering` to its end. `Some(error)` when the hook
/// failed (the downstream response was aborted); the upstream body's own
/// end, failure or abandonment is reported by its pump, as for any body.
pub(super) async fn filter_response_body<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    filtering: Box<Filtering>,
) -> Option<Box<Error>> {
    let Filtering { mut pump, frames } = *filtering;
    let mut ended = false;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut pump).poll_frame(cx)).await;
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !ended => data,
                Ok(_) => continue,
                // Trailers end the body: the last call comes before them.
                Err(trailers) => {
                    if !ended {
                        ended = true;
                        if let Err(e) = last_call(proxy, session, ctx, &frames).await {
                            return Some(e);
                        }
                    }
                    if frames.send(Ok(trailers)).await.is_err() {
                        return None;
                    }
                    continue;
                }
            },
            // The pump reported it; hyper aborts the downstream response.
            Some(Err(e)) => {
                let _ = frames.send(Err(e)).await;
                return None;
            }
            None if ended => return None,
            None => return last_call(proxy, session, ctx, &frames).await.err(),
        };
        let mut body = Some(data);
        if let Err(e) = proxy.response_body_filter(session, &mut body, false, ctx) {
            return Some(abort(&frames, e).await);
        }
        if !pass_on(&frames, body).await {
            // The client left: dropping the pump closes the upstream side.
            return None;
        }
    }
}

/// The hook's last call, with nothing and `end_of_stream`, and the bytes it
/// adds passed on.
async fn last_call<P: ProxyHttp>(
    proxy: &P,
    session: &mut Session,
    ctx: &mut P::CTX,
    frames: &FilteredSender,
) -> Result<(), Box<Error>> {
    let mut body = None;
    if let Err(e) = proxy.response_body_filter(session, &mut body, true, ctx) {
        return Err(abort(frames, e).await);
    }
    pass_on(frames, body).await;
    Ok(())
}

/// Send what the hook left, if anything; false once the client is gone.
async fn pass_on(frames: &FilteredSender, body: Option<Bytes>) -> bool {
    match body.filter(|b| !b.is_empty()) {
        Some(data) => frames.send(Ok(Frame::data(data))).await.is_ok(),
        None => !frames.is_closed(),
    }
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
