//! How much a request in flight may hold in user space, in each direction:
//! the bounds that keep a slow client (or a slow upstream) cheap.
//!
//! A proxy that reads ahead of its slowest side holds the difference: a
//! client reading a large response at mobile speed, or an upstream taking
//! an upload slowly, would make it keep megabytes per request (hyper's
//! defaults: a 400 KB write queue per HTTP/1.1 connection, 1-2 MB HTTP/2
//! stream windows and up to 1 MB queued per HTTP/2 stream). Here every buffer between the two sockets is
//! bounded, so the body moves only as fast as the slower side takes it:
//!
//! - HTTP/1.1 client connections (Switchyard's codec: `server/http1`): the
//!   read buffer and the output waiting to be written
//!   ([`HTTP1_CLIENT_BUFFER`]); the body pump reads from the upstream only
//!   when the connection asks for the next piece, which it does only while
//!   its output is below that.
//! - HTTP/1.1 upstream connections: the codec's read size
//!   ([`HTTP1_UPSTREAM_BUFFER`]).
//! - HTTP/2, both sides: the stream window the proxy advertises
//!   ([`H2_STREAM_WINDOW`], as nginx and HAProxy advertise by default)
//!   bounds what a peer may send ahead of what was taken, and h2's send
//!   buffer per stream ([`H2_SEND_BUFFER`]) what is queued beyond the
//!   peer's window.
//!
//! The kernel's socket buffers come on top, as for any proxy.

/// An HTTP/1.1 client connection's read size and output limit (hyper's
/// default write queue, which served clients before, was about 400 KB). A
/// request head must fit in the read buffer: it holds at most this or
/// `max_header_bytes` plus 1 KiB, whichever is larger. The output takes one
/// more piece of response body while below this.
pub(crate) const HTTP1_CLIENT_BUFFER: usize = 16 * 1024;

/// The most of a response body read at once on an HTTP/1.1 upstream
/// connection (Switchyard's codec: `upstream/http1`; a response head may
/// be up to `h1::MAX_RESPONSE_HEAD`). Each slow reader may hold a few such
/// chunks (queued for its client, each keeping its whole allocation). The
/// request body queued for the upstream is at most 16 KiB of small pieces
/// and one larger piece. Measured with hyper's client, whose read buffer
/// this was (docs/benchmarks.md, "Slow readers"): at 16 KiB large
/// responses lost throughput (1,268 MiB/s against 1,550 with hyper's
/// default), at 64 KiB a slow reader's memory doubled (the slow_readers
/// test: 304 KiB against 150); at 32 KiB, 1,643 MiB/s and 135 KiB per slow
/// reader (688 KiB with hyper's default).
pub(crate) const HTTP1_UPSTREAM_BUFFER: usize = 32 * 1024;

/// The most body h2 queues for one stream beyond what the peer's flow
/// control window lets it send, both sides (hyper's defaults: 1 MB towards
/// upstreams, 400 KB towards clients).
pub(crate) const H2_SEND_BUFFER: usize = 64 * 1024;

/// The initial stream window the proxy advertises to HTTP/2 peers, clients
/// and upstreams: what a peer may send on a stream before the proxy passed
/// it on (hyper's defaults: 1 MB to clients, 2 MB to upstreams).
pub(crate) const H2_STREAM_WINDOW: u32 = 64 * 1024;
