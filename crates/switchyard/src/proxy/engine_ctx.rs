//! What each step of the engine works on for one request: the proxy (its
//! hooks) and the request's `CTX`, what every request of the server
//! shares, and the session. Passed whole, as one context, to the attempt,
//! the hedged exchange and the retry judgement.

use super::trace_context;
use std::sync::Arc;

use super::forward;
use super::shared::EngineShared;
use super::{ProxyHttp, RequestHeader, Session};
use crate::body::Progress;
use crate::error::Result;
use crate::peer::HttpPeer;
use crate::upstream::{UpstreamConn, UpstreamRequest};

/// One request's engine context.
pub(super) struct EngineCtx<'a, P: ProxyHttp> {
    /// The user's proxy: its hooks.
    pub(super) proxy: &'a P,
    /// What every request of the server shares.
    pub(super) shared: &'a EngineShared,
    /// The request as the hooks see it.
    pub(super) session: &'a mut Session,
    /// The proxy's state for this request.
    pub(super) ctx: &'a mut P::CTX,
}

impl<P: ProxyHttp> EngineCtx<'_, P> {
    /// The head for one exchange with `peer`, built from the client's; then
    /// [`filter_head`](Self::filter_head) and [`request`](Self::request).
    /// An attempt and its hedged copy are prepared alike, by these three.
    pub(super) fn upstream_head(&mut self, peer: &HttpPeer) -> RequestHeader {
        let mut head = forward::upstream_head(self.session, peer, &self.shared.identity);
        if let Some(trace) = self.session.trace_context() {
            // Each attempt is a span: the upstream's parent.
            let span = trace_context::new_span_id();
            head.headers
                .insert(trace_context::TRACEPARENT, trace.traceparent(span));
            if trace.started() {
                head.headers.remove(trace_context::TRACESTATE);
            }
            if let Some(attempt) = self.session.attempts_mut().current() {
                attempt.span_id.get_or_insert(span);
            }
        }
        head
    }

    /// `head` through `upstream_request_filter`; the method it sends is
    /// recorded.
    pub(super) async fn filter_head(&mut self, head: &mut RequestHeader) -> Result<()> {
        self.proxy
            .upstream_request_filter(self.session, head, self.ctx)
            .await?;
        self.session.set_upstream_method(head.method.clone());
        Ok(())
    }

    /// The request for `head` over `conn`: its body, replayable as far as
    /// the buffer allows.
    pub(super) fn request(
        &mut self,
        head: RequestHeader,
        conn: &UpstreamConn,
    ) -> (UpstreamRequest, Arc<Progress>) {
        let (body, progress) = forward::attempt_body(self.session, conn, self.shared.client_chunk);
        (http::Request::from_parts(head, body), progress)
    }
}
