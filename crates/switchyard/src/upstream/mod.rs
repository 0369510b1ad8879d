//! Connections to upstreams: making them ([`connector`]) and keeping them
//! for reuse ([`pool`]).
//!
//! An [`UpstreamConn`] is one HTTP/1.1 client connection driven by hyper's
//! connection API on its own task, over a [`stream::UpstreamStream`] (which
//! makes up for a wake-up hyper can lose). It knows whether it came from the
//! pool, which `error_while_proxy` needs to judge a failure. HTTP/2 will add a
//! second sender variant here; the forwarding path above stays the same.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use tokio::task::AbortHandle;

use crate::body::ReplayBody;
use crate::body::limit::LimitedBody;
use crate::peer::PoolKey;
use slots::Slot;

pub(crate) mod connector;
pub(crate) mod hedge;
pub(crate) mod pool;
pub(crate) mod slots;
pub(crate) mod stream;

/// The downstream request body, cut off at its limit.
pub(crate) type DownstreamBody = LimitedBody<Incoming>;

/// The request body type sent upstream: the replayable downstream body.
pub(crate) type UpstreamBody = ReplayBody<DownstreamBody>;

/// A request as sent upstream.
pub(crate) type UpstreamRequest = http::Request<UpstreamBody>;

/// One client connection to an upstream.
#[derive(Debug)]
pub(crate) struct UpstreamConn {
    sender: http1::SendRequest<UpstreamBody>,
    task: AbortHandle,
    key: PoolKey,
    idle_timeout: Duration,
    max_idle: usize,
    reused: bool,
    /// False once the connection must not serve another request.
    reusable: bool,
    /// Its place under the server's connection limit, freed when it closes.
    slot: Slot,
}

impl UpstreamConn {
    /// Whether this connection served a request before this attempt.
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    /// Never pool this connection again: close it once the current response
    /// is done (its framing was ambiguous).
    pub(crate) fn close_after_response(&mut self) {
        self.reusable = false;
    }

    /// Whether the connection is gone (the upstream closed it, or it failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Wait until the connection can take a request; an error means it closed.
    pub(crate) async fn ready(&mut self) -> hyper::Result<()> {
        self.sender.ready().await
    }

    /// Send a request. A request that was never written comes back in the error.
    pub(crate) fn send(
        &mut self,
        request: UpstreamRequest,
    ) -> impl Future<Output = Result<http::Response<Incoming>, TrySendError<UpstreamRequest>>> + use<>
    {
        self.sender.try_send_request(request)
    }
}

impl Drop for UpstreamConn {
    /// A connection leaves the proxy only through the pool or by being
    /// dropped; dropped means given up on, so close it now.
    fn drop(&mut self) {
        self.task.abort();
    }
}
