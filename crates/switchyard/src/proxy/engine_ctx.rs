//! What each step of the engine works on for one request: the proxy (its
//! hooks) and the request's `CTX`, what every request of the server
//! shares, and the session. Passed whole, as one context, to the attempt,
//! the hedged exchange and the retry judgement.

use std::sync::Arc;

use super::forward;
use super::shared::EngineShared;
use super::{ProxyHttp, Session};
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
    /// The request for one exchange with `peer` over `conn`: the head built
    /// from the client's and passed through `upstream_request_filter` (the
    /// method it sends is recorded), and the body, replayable as far as the
    /// buffer allows. An attempt and its hedged copy are prepared alike.
    pub(super) async fn prepare_request(
        &mut self,
        peer: &HttpPeer,
        conn: &UpstreamConn,
    ) -> Result<(UpstreamRequest, Arc<Progress>)> {
        let mut head = forward::upstream_head(self.session, peer, &self.shared.identity);
        self.proxy
            .upstream_request_filter(self.session, &mut head, self.ctx)
            .await?;
        self.session.set_upstream_method(head.method.clone());
        let (body, progress) = forward::attempt_body(self.session, conn, self.shared.client_chunk);
        Ok((http::Request::from_parts(head, body), progress))
    }
}
