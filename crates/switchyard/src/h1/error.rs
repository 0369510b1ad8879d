//! What the codec refuses, and why.

use std::fmt;

/// The kind of a [`CodecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecErrorKind {
    /// The bytes are not valid HTTP/1.1 (a head, a chunk, a trailer).
    Malformed,
    /// A head or its trailers are over the codec's limits.
    TooLarge,
    /// A request target is over its limit.
    TargetTooLong,
    /// The connection ended inside a message.
    Incomplete,
    /// A request body did not match the length its head declared.
    BodyLength,
}

/// A message the codec could not read or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodecError {
    kind: CodecErrorKind,
    what: &'static str,
}

impl CodecError {
    /// An error of `kind`, saying `what` was wrong.
    pub(crate) fn new(kind: CodecErrorKind, what: &'static str) -> Self {
        CodecError { kind, what }
    }

    /// Bytes that are not valid HTTP/1.1.
    pub(crate) fn malformed(what: &'static str) -> Self {
        CodecError::new(CodecErrorKind::Malformed, what)
    }

    /// What kind of error this is.
    pub(crate) fn kind(&self) -> CodecErrorKind {
        self.kind
    }

    /// What was wrong, in a few words.
    pub(crate) fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for CodecError {}
