//! Switchyard's own HTTP/1.1 codec over `httparse`, used towards upstreams.
//!
//! hyper's HTTP/1 client moved every request through a channel to a task of
//! its own and copied the head twice (into a `HeaderMap`, then out of it).
//! Here the request head is written straight into the connection's output
//! buffer ([`request`]), the response head is parsed from the read buffer
//! with its header values kept as slices of it ([`response`]), and the body
//! framings both ways are ours ([`body`], [`chunked`]). The connection that
//! uses them lives in `upstream::http1`; HTTP/2 stays hyper's and h2's, and
//! clients are still served by hyper.
//!
//! Every rule hyper enforced on upstream responses is kept: `httparse`'s
//! strict defaults (no obs-fold, no space before the colon), at most
//! [`MAX_RESPONSE_HEADERS`] fields in a head of at most
//! [`MAX_RESPONSE_HEAD`] bytes, differing or invalid `Content-Length`
//! values refused, `Transfer-Encoding` winning over `Content-Length`, and
//! chunk sizes, extensions and trailers checked as hyper checked them.

pub(crate) mod body;
pub(crate) mod chunked;
mod error;
pub(crate) mod request;
pub(crate) mod response;

pub(crate) use error::{CodecError, CodecErrorKind};

/// The most header fields an upstream response head (or its trailers) may
/// carry (hyper's default).
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;

/// The largest upstream response head accepted, in bytes.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
