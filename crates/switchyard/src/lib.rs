#![doc = include_str!("../../../docs/failure-contract.md")]
//!
//! # Where things live
//!
//! - [`ProxyHttp`] (`proxy/mod.rs`): the hooks; [`Session`] the request as hooks see it.
//! - `proxy/engine.rs`: the per-request state machine and the only attempt loop;
//!   `proxy/attempt.rs` one attempt, `proxy/retries.rs` the verdict on a failed one.
//! - [`policy::retry`]: the pure retry decision, with named reasons.
//! - [`trace`]: the attempt trace handed to `logging`.
//! - [`path`]: request paths normalized before routing.
//! - [`body`]: the bounded replay buffer.
//! - `upstream/`: connector, pool, connection acquisition and connect hedging,
//!   and `upstream/http1/` the HTTP/1.1 connection to an upstream, on
//!   Switchyard's own codec over `httparse` (`h1/`: heads, framing,
//!   chunked); HTTP/2 upstreams are served by hyper.
//!   [`server`]: listener, client connections (HTTP/1.1 on the same codec:
//!   `server/http1/`; HTTP/2 on hyper) and shutdown; [`tls`]: certificates
//!   and trust.
//! - [`group`]: an upstream group (servers in tiers, health, retry policy and
//!   budget, hedging, DNS following with `FollowDns`) answering the upstream
//!   hooks; [`route`]: routes to groups,
//!   matching and rewriting. A proxy delegates its hooks to them (`docs/library.md`).
//! - [`lb`], [`health`], [`discovery`]: which server, whether it is usable, where it is.

pub mod acme;
pub mod body;
mod buffers;
pub mod compress;
mod cookie;
pub mod discovery;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
mod h1;
pub mod health;
pub mod lb;
pub mod log_file;
pub mod otlp;
pub mod path;
pub mod peer;
mod peer_addr;
pub mod policy;
pub mod proxy;
mod random;
pub mod route;
pub mod server;
pub mod tls;
pub mod trace;
mod upstream;

pub use error::{Error, ErrorKind, OrErr, Result, Side};
pub use peer::{HttpPeer, PeerOptions, UpstreamProtocol};
pub use peer_addr::{PeerAddr, UnixPath};
pub use proxy::{ProxyHttp, RequestHeader, ResponseHeader, Session};
pub use server::{ProxyServer, ServerOptions, ShutdownHandle};
pub use trace::{AttemptLog, AttemptRecord, Decision, Phase, RequestHedge};
pub use upstream::pool::{ServerConnections, UpstreamPool};

/// Everything a proxy implementation usually needs, in one `use`.
pub mod prelude {
    pub use crate::error::{Error, ErrorKind, OrErr, Result, Side};
    pub use crate::peer::{HttpPeer, PeerOptions, UpstreamProtocol};
    pub use crate::proxy::{ProxyHttp, RequestHeader, ResponseHeader, Session};
    pub use crate::server::{ProxyServer, ServerOptions, ShutdownHandle};
}
