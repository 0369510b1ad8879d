//! What an [`Origin`](super::Origin) does with each request: the
//! [`Behavior`]s it can perform and the [`Script`] that picks one per request
//! from what it is told in a [`Step`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

/// What an origin does after it has read a request (head and body).
///
/// Every response carries an `x-origin: NAME` header. A `HEAD` request never
/// gets body bytes, whatever the behaviour (heads are sent as stated).
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Answer with this status and body (Content-Length framing), keep the
    /// connection. An **empty** `body` stands for the origin's name, so
    /// [`Behavior::ok`] and [`Behavior::status`] identify which origin
    /// answered. Statuses 1xx, 204 and 304 are sent without a body or
    /// `content-length`.
    Respond {
        /// The status code.
        status: u16,
        /// The body; empty means "the origin name".
        body: Bytes,
    },
    /// Answer 200 with the request body echoed back (Content-Length framing).
    Echo,
    /// Answer 200 with `chunks` as separate chunks of a chunked body, with a
    /// pause of `gap` between them, then the final chunk. Empty chunks are
    /// skipped (an empty chunk would end the body).
    Chunked {
        /// The body chunks, in order.
        chunks: Vec<Bytes>,
        /// The pause between two chunks.
        gap: Duration,
    },
    /// Read the request, never answer, keep the connection open until the
    /// client closes it.
    Silence,
    /// Read the request, then close the connection without a byte of response.
    CloseBeforeHead,
    /// Read the request, then reset the connection (zero linger, then drop)
    /// without a byte of response: the client's read fails with a reset.
    ResetBeforeHead,
    /// Send a 200 head with `content-length: 1000` and 100 body bytes, then
    /// reset the connection (zero linger, then drop).
    ResetAfterHead,
    /// Send a 200 head with `content-length: 1000`, 100 body bytes, then close
    /// cleanly (FIN).
    TruncatedLength,
    /// Send a 200 chunked head and two chunks, then close without the final
    /// zero-size chunk.
    TruncatedChunked,
    /// Send bytes that are not HTTP (`garbage\r\n\r\n`), then close.
    Garbage,
    /// Send exactly these bytes as the response, then close the connection
    /// (for responses no other behaviour can express).
    Raw {
        /// The bytes, head and body.
        bytes: Bytes,
    },
    /// Send exactly these bytes as the response and keep the connection open
    /// for the next request (for a complete response no other behaviour can
    /// express, such as one with ambiguous framing).
    RawKeepOpen {
        /// The bytes, head and body.
        bytes: Bytes,
    },
    /// Answer 200 with neither `content-length` nor chunked framing: the body
    /// is `body` and ends when the origin closes the connection.
    CloseDelimited {
        /// The body sent before closing.
        body: Bytes,
    },
    /// Wait `delay`, then do `then`.
    Slow {
        /// How long to wait before doing `then`.
        delay: Duration,
        /// What to do after the delay.
        then: Box<Behavior>,
    },
    /// Answer like [`Behavior::ok`], then close the connection if no new
    /// request starts arriving within `after` (an idle-killer of keep-alive
    /// connections). If a request arrives in time it is served normally.
    IdleKill {
        /// How long the connection may stay idle before the origin closes it.
        after: Duration,
    },
}

impl Behavior {
    /// `Respond` 200 with the origin's name as the body.
    pub fn ok() -> Behavior {
        Behavior::status(200)
    }

    /// `Respond` with `code` and the origin's name as the body.
    pub fn status(code: u16) -> Behavior {
        Behavior::Respond {
            status: code,
            body: Bytes::new(),
        }
    }

    /// `Slow`: wait `delay`, then behave like `self`.
    pub fn after(self, delay: Duration) -> Behavior {
        Behavior::Slow {
            delay,
            then: Box::new(self),
        }
    }
}

/// What the script is told about a request.
#[derive(Debug, Clone)]
pub struct Step {
    /// 0-based index of the connection on this origin.
    pub connection: usize,
    /// 0 for the first request on a connection.
    pub index_on_connection: usize,
    /// 0-based index of the request across the origin.
    pub global_index: usize,
    /// The request method.
    pub method: Method,
    /// The request target as sent (usually a path and query).
    pub path: String,
}

/// Chooses a behaviour for each request.
#[derive(Clone)]
pub struct Script(Arc<dyn Fn(&Step) -> Behavior + Send + Sync>);

impl Script {
    /// Every request gets `b`.
    pub fn always(b: Behavior) -> Script {
        Script::from_fn(move |_| b.clone())
    }

    /// The i-th request on the whole origin gets `seq[i]`; later ones get
    /// `then`.
    pub fn sequence(seq: Vec<Behavior>, then: Behavior) -> Script {
        Script::from_fn(move |step| {
            seq.get(step.global_index)
                .cloned()
                .unwrap_or_else(|| then.clone())
        })
    }

    /// The i-th request on each connection gets `seq[i]`; later ones get
    /// `then`.
    pub fn per_connection(seq: Vec<Behavior>, then: Behavior) -> Script {
        Script::from_fn(move |step| {
            seq.get(step.index_on_connection)
                .cloned()
                .unwrap_or_else(|| then.clone())
        })
    }

    /// Any function of the [`Step`].
    pub fn from_fn(f: impl Fn(&Step) -> Behavior + Send + Sync + 'static) -> Script {
        Script(Arc::new(f))
    }

    pub(super) fn choose(&self, step: &Step) -> Behavior {
        (self.0)(step)
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Script(..)")
    }
}
