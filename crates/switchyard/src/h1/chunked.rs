//! The chunked transfer coding (RFC 9112 section 7.1), read from a buffer.
//!
//! Each chunk-size line is parsed by `httparse::parse_chunk_size`; hyper's
//! stricter rules are checked on top of it: a size has at least one hex
//! digit, an extension holds no bare LF, and extensions count against a
//! limit per message. Every chunk's data ends in CRLF; trailers are at most
//! [`MAX_TRAILERS`] bytes and [`MAX_RESPONSE_HEADERS`] fields.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{CodecError, CodecErrorKind, MAX_RESPONSE_HEADERS};

/// The most chunk-extension bytes one message may carry.
const MAX_EXTENSIONS: u64 = 16 * 1024;

/// The largest trailer section, in bytes.
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

/// What decoding found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields; the body is over.
    Trailers(HeaderMap),
    /// The body is over.
    End,
    /// The buffer holds no more of the body: read more.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk-size line.
    Size,
    /// Chunk data, `size` bytes of it left.
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section after the last chunk.
    Trailers,
    Done,
}

/// A chunked body being read.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// What is left of the chunk being read.
    size: u64,
    extension_bytes: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            extension_bytes: 0,
        }
    }
}

fn invalid(what: &'static str) -> CodecError {
    CodecError::malformed(what)
}

fn extensions_over_limit() -> CodecError {
    CodecError::new(
        CodecErrorKind::TooLarge,
        "chunk extensions over their limit",
    )
}

impl ChunkedDecoder {
    /// Whether the whole body (trailers included) was read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Take what the next part of the body is out of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        loop {
            match self.state {
                State::Size => {
                    if !self.size_line(buf)? {
                        return Ok(Decoded::NeedMore);
                    }
                }
                State::Data => return Ok(self.data(buf)),
                State::DataEnd => match buf.as_ref() {
                    [] | [b'\r'] => return Ok(Decoded::NeedMore),
                    [b'\r', b'\n', ..] => {
                        buf.advance(2);
                        self.state = State::Size;
                    }
                    _ => return Err(invalid("chunk data does not end in CRLF")),
                },
                State::Trailers => return self.trailers(buf),
                State::Done => return Ok(Decoded::End),
            }
        }
    }

    /// Read a chunk-size line: false until the buffer holds all of it.
    fn size_line(&mut self, buf: &mut BytesMut) -> Result<bool, CodecError> {
        match buf.first() {
            None => return Ok(false),
            Some(first) if !first.is_ascii_hexdigit() => {
                return Err(invalid("chunk size line has no size"));
            }
            Some(_) => {}
        }
        let (len, size) = match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            // A line can be no longer than a size and the extensions allowed.
            Ok(httparse::Status::Partial) if buf.len() as u64 > MAX_EXTENSIONS + 64 => {
                return Err(extensions_over_limit());
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err(invalid("invalid chunk size line")),
        };
        let line = &buf[..len];
        if has_bare_lf(line) {
            return Err(invalid("chunk extension contains a bare LF"));
        }
        if let Some(semicolon) = line.iter().position(|&b| b == b';') {
            // Everything between the `;` and the CRLF.
            self.extension_bytes += (len - semicolon - 2) as u64;
            if self.extension_bytes >= MAX_EXTENSIONS {
                return Err(extensions_over_limit());
            }
        }
        buf.advance(len);
        self.size = size;
        self.state = if size == 0 {
            State::Trailers
        } else {
            State::Data
        };
        Ok(true)
    }

    fn data(&mut self, buf: &mut BytesMut) -> Decoded {
        if buf.is_empty() {
            return Decoded::NeedMore;
        }
        let take = usize::try_from(self.size).map_or(buf.len(), |size| size.min(buf.len()));
        self.size -= take as u64;
        if self.size == 0 {
            self.state = State::DataEnd;
        }
        Decoded::Data(buf.split_to(take).freeze())
    }

    /// The trailer section after the last chunk: an empty line, or fields.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        match buf.as_ref() {
            [] | [b'\r'] => return Ok(Decoded::NeedMore),
            [b'\r', b'\n', ..] => {
                buf.advance(2);
                self.state = State::Done;
                return Ok(Decoded::End);
            }
            _ => {}
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let (len, fields) = match httparse::parse_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => {
                return Err(CodecError::new(
                    CodecErrorKind::TooLarge,
                    "trailers over their limit",
                ));
            }
            Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(CodecError::new(
                    CodecErrorKind::TooLarge,
                    "too many trailer fields",
                ));
            }
            Err(_) => return Err(invalid("invalid trailer field")),
        };
        if len > MAX_TRAILERS {
            return Err(CodecError::new(
                CodecErrorKind::TooLarge,
                "trailers over their limit",
            ));
        }
        if has_bare_lf(&buf[..len]) {
            return Err(invalid("trailer line does not end in CRLF"));
        }
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for field in fields.iter() {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| invalid("invalid trailer field name"))?;
            let value = HeaderValue::from_bytes(field.value)
                .map_err(|_| invalid("invalid trailer field value"))?;
            trailers.append(name, value);
        }
        buf.advance(len);
        self.state = State::Done;
        Ok(Decoded::Trailers(trailers))
    }
}

/// Whether `bytes` holds an LF with no CR before it.
pub(crate) fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests;
