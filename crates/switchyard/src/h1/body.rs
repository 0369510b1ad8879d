//! How an upstream response body is framed, and reading it from a buffer.

use bytes::BytesMut;
use http_body::SizeHint;

use super::chunked::{ChunkedDecoder, Decoded};
use super::{CodecError, CodecErrorKind};

/// The framing of a response body (RFC 9112 section 6.3), and how much of
/// it is left.
#[derive(Debug, Clone)]
pub(crate) enum BodyDecoder {
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// Neither: the body ends when the upstream closes the connection.
    UntilClose { ended: bool },
}

impl BodyDecoder {
    /// No body at all (a `HEAD`, a 204 or 304, a 101).
    pub(crate) fn empty() -> Self {
        BodyDecoder::Length(0)
    }

    /// Whether the body was read to its end.
    pub(crate) fn is_end(&self) -> bool {
        match self {
            BodyDecoder::Length(left) => *left == 0,
            BodyDecoder::Chunked(chunked) => chunked.is_done(),
            BodyDecoder::UntilClose { ended } => *ended,
        }
    }

    /// Whether the connection can serve another request once the body was
    /// read (a body that ends with the connection cannot).
    pub(crate) fn delimited(&self) -> bool {
        !matches!(self, BodyDecoder::UntilClose { .. })
    }

    /// The size of what is left, where the framing tells it.
    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            BodyDecoder::Length(left) => SizeHint::with_exact(*left),
            BodyDecoder::Chunked(chunked) if chunked.is_done() => SizeHint::with_exact(0),
            BodyDecoder::UntilClose { ended: true } => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// Take the next part of the body out of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        match self {
            BodyDecoder::Length(0) => Ok(Decoded::End),
            BodyDecoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(*left).map_or(buf.len(), |left| left.min(buf.len()));
                *left -= take as u64;
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            BodyDecoder::Chunked(chunked) => chunked.decode(buf),
            BodyDecoder::UntilClose { ended: true } => Ok(Decoded::End),
            BodyDecoder::UntilClose { ended: false } if buf.is_empty() => Ok(Decoded::NeedMore),
            BodyDecoder::UntilClose { ended: false } => Ok(Decoded::Data(buf.split().freeze())),
        }
    }

    /// The connection ended: the end of a body that ends with it, else an
    /// incomplete body.
    pub(crate) fn closed(&mut self) -> Result<Decoded, CodecError> {
        match self {
            BodyDecoder::UntilClose { ended } => {
                *ended = true;
                Ok(Decoded::End)
            }
            _ if self.is_end() => Ok(Decoded::End),
            _ => Err(CodecError::new(
                CodecErrorKind::Incomplete,
                "the connection ended inside the body",
            )),
        }
    }

    /// How much to read at once for what is left: a known remainder is
    /// read whole up to `chunk`, anything else `chunk` at a time.
    pub(crate) fn read_size(&self, chunk: usize) -> usize {
        match self {
            BodyDecoder::Length(left) => {
                usize::try_from(*left).map_or(chunk, |left| left.min(chunk))
            }
            _ => chunk,
        }
    }
}
