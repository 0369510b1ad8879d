//! What every request of one server shares: the pool, the server's
//! defaults and budget, and what the engine learns of each peer's connect
//! and response times.

use std::sync::Arc;

use super::identity::ClientIdentity;
use super::upgrade::AllowedUpgrades;
use crate::policy::backoff::Jitter;
use crate::policy::budget::RetryBudget;
use crate::upstream::connect_hedge::ConnectTimes;
use crate::upstream::pool::Pool;
use crate::upstream::response_times::ResponseTimes;

/// What every request of one server shares.
#[derive(Debug)]
pub(crate) struct EngineShared {
    pub(crate) pool: Arc<Pool>,
    pub(crate) max_retries: usize,
    pub(crate) replay_buffer: usize,
    /// The default limit on a request's body (`None`: none).
    pub(crate) max_request_body: Option<u64>,
    /// How the client's identity is told upstream.
    pub(crate) identity: ClientIdentity,
    /// Where backoff delays draw their random number.
    pub(crate) jitter: Jitter,
    /// The protocols a request may upgrade to unless a hook says otherwise.
    pub(crate) upgrades: AllowedUpgrades,
    /// The largest piece of request body a client connection hands over
    /// at once (`server::client_chunk`).
    pub(crate) client_chunk: usize,
    /// How request paths are normalized before routing.
    pub(crate) paths: crate::path::PathRules,
    /// Start a trace for a request that brings none.
    pub(crate) start_traces: bool,
    /// The server's retry budget, for requests whose hook gives none.
    pub(crate) budget: Option<Arc<RetryBudget>>,
    /// Recent connect times per peer, for connect hedging.
    pub(crate) connect_times: ConnectTimes,
    /// Recent response times per peer, for retries under a deadline.
    pub(crate) response_times: ResponseTimes,
    /// `Alt-Svc` for responses to clients on TLS over TCP.
    pub(crate) alt_svc: Option<http::HeaderValue>,
}
