//! A response body's encoder: one of the codecs, fed chunk by chunk and
//! flushed after each, so what the upstream flushed reaches the client.

use std::io::Write;

use bytes::Bytes;

use super::Codec;

/// gzip's level: zlib's 1 to 9; 5 is the usual balance for dynamic
/// responses.
const GZIP_LEVEL: u32 = 5;
/// Brotli's quality, 0 to 11: 4 compresses better than gzip at 5 for
/// about its CPU (11 is for files compressed once).
const BROTLI_QUALITY: u32 = 4;
/// Brotli's window: 2^22 bytes, its default.
const BROTLI_WINDOW: u32 = 22;
/// zstd's level: its default, 3.
const ZSTD_LEVEL: i32 = 3;

/// An encoder for one response body.
pub struct Encoder {
    inner: Inner,
}

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    /// Finished: nothing more may be written.
    Done,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codec = match self.inner {
            Inner::Gzip(_) => "gzip",
            Inner::Brotli(_) => "br",
            Inner::Zstd(_) => "zstd",
            Inner::Done => "done",
        };
        f.debug_struct("Encoder").field("codec", &codec).finish()
    }
}

impl Encoder {
    /// An encoder for `codec` at the levels above.
    pub fn new(codec: Codec) -> std::io::Result<Encoder> {
        let inner = match codec {
            Codec::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Codec::Brotli => Inner::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
            Codec::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?),
        };
        Ok(Encoder { inner })
    }

    /// Encode `chunk`, and what the codec held back: flushed so the client
    /// can decode all of it now; at `end`, the stream's last bytes too.
    pub fn encode(&mut self, chunk: &[u8], end: bool) -> std::io::Result<Bytes> {
        if end {
            return self.finish(chunk);
        }
        let out = match &mut self.inner {
            Inner::Gzip(e) => write_flush(e, chunk)?,
            Inner::Brotli(e) => write_flush(e.as_mut(), chunk)?,
            Inner::Zstd(e) => write_flush(e, chunk)?,
            Inner::Done => return Ok(Bytes::new()),
        };
        Ok(Bytes::from(out))
    }

    fn finish(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        let out = match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Gzip(mut e) => {
                e.write_all(chunk)?;
                e.finish()?
            }
            Inner::Brotli(mut e) => {
                e.write_all(chunk)?;
                e.flush()?;
                e.into_inner()
            }
            Inner::Zstd(mut e) => {
                e.write_all(chunk)?;
                e.finish()?
            }
            Inner::Done => Vec::new(),
        };
        Ok(Bytes::from(out))
    }
}

/// The encoders that write into a `Vec` and give it back.
trait IntoVec: Write {
    fn output(&mut self) -> &mut Vec<u8>;
}

impl IntoVec for flate2::write::GzEncoder<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl IntoVec for brotli::CompressorWriter<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl IntoVec for zstd::stream::write::Encoder<'static, Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

/// Write `chunk`, flush, and take what came out.
fn write_flush<E: IntoVec + ?Sized>(encoder: &mut E, chunk: &[u8]) -> std::io::Result<Vec<u8>> {
    encoder.write_all(chunk)?;
    encoder.flush()?;
    Ok(std::mem::take(encoder.output()))
}
