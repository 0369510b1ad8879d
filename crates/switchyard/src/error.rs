//! The one error type of the proxy: what went wrong, on which side, on which
//! peer, and whether a hook asked for a retry.
//!
//! Errors carry structure, not prose: the engine decides on [`ErrorKind`] and
//! [`Side`], never on message text. Hooks receive a `Box<Error>`, may change
//! its retry verdict with [`Error::set_retry`], and hand it back. The mapping
//! of an error to a downstream status and an RFC 9209 `Proxy-Status` lives in
//! `proxy/respond.rs`.

use std::borrow::Cow;
use std::fmt;

/// The result type of hooks and library calls.
pub type Result<T, E = Box<Error>> = std::result::Result<T, E>;

/// A cause carried by an [`Error`]: any error from a lower layer.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The upstream refused the connection (nothing listens there).
    ConnectRefused,
    /// The TCP connect did not finish within the peer's connect timeout.
    ConnectTimedOut,
    /// No route to the upstream's network or host.
    ConnectNoRoute,
    /// Any other failure to establish the connection.
    ConnectError,
    /// The peer has `PeerOptions::max_connections` open and no connection
    /// freed in time (or too many requests wait already): nothing was sent.
    ConnectionLimitReached,
    /// The TLS handshake with the upstream failed (protocol, versions,
    /// the connection dropped during it): nothing was sent.
    TlsHandshake,
    /// The upstream's certificate did not verify (unknown issuer, expired,
    /// wrong name), or it refused ours: nothing was sent.
    TlsCertificate,
    /// Writing the request upstream failed after the connection was made.
    WriteError,
    /// The request body made no progress upstream within the write timeout.
    WriteTimedOut,
    /// Reading from the upstream failed (reset, I/O error), before or after the head.
    ReadError,
    /// The upstream closed the connection before a response head arrived.
    ClosedBeforeHead,
    /// No response head arrived within the read timeout after the request was sent.
    ResponseHeadTimedOut,
    /// The response body stopped arriving for longer than the read timeout.
    ResponseBodyTimedOut,
    /// The upstream answered with a status a hook counts as a failure.
    UpstreamStatus,
    /// The upstream sent something that is not a valid HTTP response.
    InvalidResponse,
    /// The downstream request cannot be proxied (malformed, unsupported).
    InvalidDownstreamRequest,
    /// The downstream request body is larger than the limit
    /// (`ServerOptions::max_request_body`, or a hook's per-request limit).
    RequestBodyTooLarge,
    /// The downstream client went away (closed, reset, or its body broke off).
    DownstreamClosed,
    /// The downstream client stopped sending its request body.
    DownstreamTimedOut,
    /// The downstream request asks for something the proxy does not do
    /// (CONNECT).
    UnsupportedRequest,
    /// A bug or an internal limit in the proxy, or a hook's own failure.
    Internal,
    /// An HTTP/2 upstream refused the request's stream (`REFUSED_STREAM`),
    /// or went away (`GOAWAY`) with a last stream id below it: it provably
    /// did not process the request (RFC 9113 section 8.7), so a retry is
    /// safe for any method. Judged by `fail_to_connect`.
    StreamRefused,
    /// The request's deadline passed, or is too close for another attempt
    /// to finish within it (the attempts' own errors are in the trace).
    DeadlineExceeded,
}

impl ErrorKind {
    /// A stable, kebab-case name for logs and traces, e.g. `connect-refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect-refused",
            ErrorKind::ConnectTimedOut => "connect-timed-out",
            ErrorKind::ConnectNoRoute => "connect-no-route",
            ErrorKind::ConnectError => "connect-error",
            ErrorKind::ConnectionLimitReached => "connection-limit-reached",
            ErrorKind::TlsHandshake => "tls-handshake",
            ErrorKind::TlsCertificate => "tls-certificate",
            ErrorKind::WriteError => "write-error",
            ErrorKind::WriteTimedOut => "write-timed-out",
            ErrorKind::ReadError => "read-error",
            ErrorKind::ClosedBeforeHead => "closed-before-head",
            ErrorKind::ResponseHeadTimedOut => "response-head-timed-out",
            ErrorKind::ResponseBodyTimedOut => "response-body-timed-out",
            ErrorKind::UpstreamStatus => "upstream-status",
            ErrorKind::InvalidResponse => "invalid-response",
            ErrorKind::InvalidDownstreamRequest => "invalid-downstream-request",
            ErrorKind::RequestBodyTooLarge => "request-body-too-large",
            ErrorKind::DownstreamClosed => "downstream-closed",
            ErrorKind::DownstreamTimedOut => "downstream-timed-out",
            ErrorKind::UnsupportedRequest => "unsupported-request",
            ErrorKind::Internal => "internal",
            ErrorKind::StreamRefused => "stream-refused",
            ErrorKind::DeadlineExceeded => "deadline-exceeded",
        }
    }

    /// True for the failures to establish a connection: nothing was sent upstream.
    pub fn is_connect_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectRefused
                | ErrorKind::ConnectTimedOut
                | ErrorKind::ConnectNoRoute
                | ErrorKind::ConnectError
                | ErrorKind::ConnectionLimitReached
                | ErrorKind::TlsHandshake
                | ErrorKind::TlsCertificate
        )
    }

    /// True for the kinds that mean an upstream timer ran out.
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectTimedOut
                | ErrorKind::WriteTimedOut
                | ErrorKind::ResponseHeadTimedOut
                | ErrorKind::ResponseBodyTimedOut
                | ErrorKind::DeadlineExceeded
        )
    }

    /// The side an error of this kind is blamed on unless told otherwise.
    pub fn default_side(self) -> Side {
        match self {
            ErrorKind::InvalidDownstreamRequest
            | ErrorKind::RequestBodyTooLarge
            | ErrorKind::DownstreamClosed
            | ErrorKind::DownstreamTimedOut
            | ErrorKind::UnsupportedRequest => Side::Downstream,
            ErrorKind::Internal | ErrorKind::ConnectionLimitReached => Side::Internal,
            _ => Side::Upstream,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which party an error is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The upstream server or the path to it.
    Upstream,
    /// The downstream client.
    Downstream,
    /// The proxy itself, or a hook.
    Internal,
}

impl Side {
    /// A stable lower-case name: `upstream`, `downstream` or `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Upstream => "upstream",
            Side::Downstream => "downstream",
            Side::Internal => "internal",
        }
    }
}

/// An error with a kind, a side, a retry verdict, the peer it happened on,
/// context and a cause.
///
/// ```
/// use switchyard::{Error, ErrorKind, Side};
///
/// let mut e = Error::explain(ErrorKind::ConnectRefused, "dialing the primary");
/// assert_eq!(e.side(), Side::Upstream);
/// assert!(!e.retry());
/// e.set_retry(true);
/// assert!(e.retry());
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    side: Side,
    retry: bool,
    retry_note: Option<&'static str>,
    retry_delay: std::time::Duration,
    peer: Option<String>,
    context: Option<Cow<'static, str>>,
    cause: Option<Cause>,
}

impl Error {
    /// A new error of `kind`, blamed on the kind's default side, not retryable.
    pub fn new(kind: ErrorKind) -> Box<Error> {
        Box::new(Error {
            kind,
            side: kind.default_side(),
            retry: false,
            retry_note: None,
            retry_delay: std::time::Duration::ZERO,
            peer: None,
            context: None,
            cause: None,
        })
    }

    /// A new error of `kind` with a line of context.
    pub fn explain(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Box<Error> {
        let mut e = Error::new(kind);
        e.context = Some(context.into());
        e
    }

    /// A new error of `kind` with context, caused by a lower-level error.
    pub fn because(
        kind: ErrorKind,
        context: impl Into<Cow<'static, str>>,
        cause: impl Into<Cause>,
    ) -> Box<Error> {
        let mut e = Error::explain(kind, context);
        e.cause = Some(cause.into());
        e
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Who is blamed.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Blame another side.
    pub fn set_side(&mut self, side: Side) {
        self.side = side;
    }

    /// Whether a hook marked this error retryable. Never panics; false unless set.
    pub fn retry(&self) -> bool {
        self.retry
    }

    /// Mark the error retryable (or not). The engine still applies the
    /// contract rules: no retry after a response byte went downstream, none
    /// with a truncated replay buffer, none past the attempt cap.
    pub fn set_retry(&mut self, retry: bool) {
        self.retry = retry;
    }

    /// Why the hook decided as it did, in a word or two (e.g.
    /// `not-idempotent`); the trace shows it next to the verdict.
    pub fn retry_note(&self) -> Option<&'static str> {
        self.retry_note
    }

    /// Explain the retry verdict for operators.
    pub fn set_retry_note(&mut self, note: &'static str) {
        self.retry_note = Some(note);
    }

    /// The least time a retry of this error waits (zero unless a hook set
    /// one, such as the upstream's `Retry-After`).
    pub fn retry_delay(&self) -> std::time::Duration {
        self.retry_delay
    }

    /// Make a retry of this error wait at least `delay` (on top of nothing:
    /// the wait is the longer of this and the backoff). The deadline still
    /// applies: a retry that could not start before it is not made.
    pub fn set_retry_delay(&mut self, delay: std::time::Duration) {
        self.retry_delay = delay;
    }

    /// The peer the error happened on, as `ip:port`, when one was involved.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Record the peer the error happened on.
    pub fn set_peer(&mut self, peer: impl Into<String>) {
        self.peer = Some(peer.into());
    }

    /// The context line, if any.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// Prepend more context: `"outer: inner"`.
    pub fn more_context(mut self: Box<Self>, context: impl Into<Cow<'static, str>>) -> Box<Self> {
        let outer = context.into();
        self.context = Some(match self.context.take() {
            Some(inner) => Cow::Owned(format!("{outer}: {inner}")),
            None => outer,
        });
        self
    }

    /// The lower-level error that caused this one, if any.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.side.as_str())?;
        if let Some(peer) = &self.peer {
            write!(f, " peer {peer}")?;
        }
        if let Some(context) = &self.context {
            write!(f, ": {context}")?;
        }
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Attach an [`ErrorKind`] and context to a foreign error, `or_err` style.
///
/// ```
/// use switchyard::{ErrorKind, OrErr};
///
/// let parsed: Result<u16, _> = "x".parse::<u16>();
/// let e = parsed.or_err(ErrorKind::Internal, "parsing a port").unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Internal);
/// ```
pub trait OrErr<T> {
    /// Turn the error into a [`Box<Error>`] of `kind` with `context`, keeping it as the cause.
    fn or_err(self, kind: ErrorKind, context: &'static str) -> Result<T>;
}

impl<T, E: Into<Cause>> OrErr<T> for std::result::Result<T, E> {
    fn or_err(self, kind: ErrorKind, context: &'static str) -> Result<T> {
        self.map_err(|e| Error::because(kind, context, e))
    }
}

/// The first error of type `T` in `e`'s chain of causes, `e` included.
pub(crate) fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}
