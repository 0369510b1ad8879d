//! The chunked transfer coding (RFC 9112 section 7.1), read from a buffer.
//!
//! The rules are hyper's: a size is at least one hex digit and fits in 64
//! bits; spaces and tabs may follow it; extensions are skipped but count
//! against a limit per message and may not hold a bare LF; every line ends
//! in CRLF; trailers are at most [`MAX_TRAILERS`] bytes and
//! [`MAX_RESPONSE_HEADERS`] fields.

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
    Start,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailers,
    Done,
}

/// A chunked body being read.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// The size of the chunk being read, or what is left of it.
    size: u64,
    extension_bytes: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Start,
            size: 0,
            extension_bytes: 0,
        }
    }
}

fn invalid(what: &'static str) -> CodecError {
    CodecError::malformed(what)
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
                State::Data => return Ok(self.data(buf)),
                State::Trailers => return self.trailers(buf),
                State::Done => return Ok(Decoded::End),
                _ => {}
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            buf.advance(1);
            self.state = self.step(byte)?;
        }
    }

    /// One byte of a size line or of a chunk's end.
    fn step(&mut self, byte: u8) -> Result<State, CodecError> {
        Ok(match (self.state, byte) {
            (State::Start | State::Size, _) if byte.is_ascii_hexdigit() => {
                let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(digit))
                    .ok_or_else(|| invalid("chunk size overflows"))?;
                State::Size
            }
            (State::Start, _) => return Err(invalid("chunk size line has no size")),
            (State::Size | State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::Size | State::SizeSpace, b';') => State::Extension,
            (State::Size | State::SizeSpace | State::Extension, b'\r') => State::SizeLf,
            (State::Size | State::SizeSpace, _) => return Err(invalid("invalid chunk size")),
            (State::Extension, b'\n') => {
                return Err(invalid("chunk extension contains a bare LF"));
            }
            (State::Extension, _) => {
                self.extension_bytes += 1;
                if self.extension_bytes >= MAX_EXTENSIONS {
                    return Err(CodecError::new(
                        CodecErrorKind::TooLarge,
                        "chunk extensions over their limit",
                    ));
                }
                State::Extension
            }
            (State::SizeLf, b'\n') if self.size == 0 => State::Trailers,
            (State::SizeLf, b'\n') => State::Data,
            (State::SizeLf, _) => return Err(invalid("chunk size line does not end in CRLF")),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Start,
            (State::DataCr | State::DataLf, _) => {
                return Err(invalid("chunk data does not end in CRLF"));
            }
            (State::Data | State::Trailers | State::Done, _) => self.state,
        })
    }

    fn data(&mut self, buf: &mut BytesMut) -> Decoded {
        if buf.is_empty() {
            return Decoded::NeedMore;
        }
        let take = usize::try_from(self.size).map_or(buf.len(), |size| size.min(buf.len()));
        self.size -= take as u64;
        if self.size == 0 {
            self.state = State::DataCr;
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
