//! Noticing an HTTP/2 upstream's GOAWAY, and not letting it strand streams.
//!
//! The `h2` crate (0.4) applies a received GOAWAY to the streams open at
//! that moment, but keeps opening new streams on the connection afterwards
//! (a request already handed to hyper when the GOAWAY came is sent after
//! it). The upstream ignores those (RFC 9113 section 6.8), and as long as a
//! stream is open h2 keeps the connection, so such a request would wait for
//! its read timeout. hyper does not tell that a GOAWAY came either.
//!
//! So the frames are watched on their way between hyper and the socket:
//! only each frame's 9-byte header (length, type, flags, stream id) and a
//! GOAWAY's last stream id are read; h2 still parses and checks
//! everything. On a GOAWAY the shared connection is marked going away and
//! gets no new stream. The watch knows which streams the proxy opened and
//! which the upstream ended; once every stream at or below the GOAWAY's
//! last id has ended, any stream still open is one the upstream will never
//! answer: the connection is failed (an I/O error to h2) and marked
//! stranded, and the failure engine reads its streams' failures as "not
//! processed" (retried for any method).
//!
//! The same walk reads the upstream's `SETTINGS_INITIAL_WINDOW_SIZE`: the
//! most request body a stream can have sent before the upstream showed it
//! is processing the stream, which the engine keeps for a replay after a
//! refusal (`GoawaySignal::initial_window`).

use std::collections::HashSet;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Frame types and flags (RFC 9113 section 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
/// The SETTINGS ACK flag.
const ACK: u8 = 0x1;
/// The id of `SETTINGS_INITIAL_WINDOW_SIZE`.
const INITIAL_WINDOW_SIZE: u16 = 0x4;
/// The initial stream window until the upstream's SETTINGS say otherwise.
pub(crate) const DEFAULT_INITIAL_WINDOW: u32 = 65_535;
const END_STREAM: u8 = 0x1;
/// The length of a frame header.
const HEADER: usize = 9;
/// The client's connection preface, before its first frame.
const PREFACE: usize = 24;

/// One frame header seen, in either direction.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    /// A GOAWAY's last stream id, when its first payload bytes were seen.
    last_stream: Option<u32>,
}

/// Where a reader is in one direction's frames.
#[derive(Debug)]
struct FrameCursor {
    /// Bytes to pass before the next frame (the preface, then payloads).
    skip: usize,
    header: [u8; HEADER],
    have: usize,
    /// Collecting a GOAWAY's last stream id (4 bytes) from its payload.
    goaway: Option<([u8; 4], usize, Frame)>,
    /// Collecting a SETTINGS payload, one 6-byte entry at a time.
    settings: Option<([u8; 6], usize)>,
    /// The largest `SETTINGS_INITIAL_WINDOW_SIZE` seen.
    initial_window: Option<u32>,
    /// A SETTINGS frame (not an ACK) was seen.
    settings_seen: bool,
}

impl FrameCursor {
    fn new(preface: usize) -> Self {
        FrameCursor {
            skip: preface,
            header: [0; HEADER],
            have: 0,
            goaway: None,
            settings: None,
            initial_window: None,
            settings_seen: false,
        }
    }

    /// Take the next bytes of a SETTINGS payload (at most what is left of
    /// it), noting an initial window size; returns how many it took.
    fn settings_bytes(&mut self, bytes: &[u8]) -> usize {
        let Some((mut entry, mut got)) = self.settings.take() else {
            return 0;
        };
        let n = (6 - got).min(bytes.len()).min(self.skip);
        entry[got..got + n].copy_from_slice(&bytes[..n]);
        got += n;
        self.skip -= n;
        if got == 6 {
            let [i0, i1, v0, v1, v2, v3] = entry;
            if u16::from_be_bytes([i0, i1]) == INITIAL_WINDOW_SIZE {
                let window = u32::from_be_bytes([v0, v1, v2, v3]);
                self.initial_window = Some(self.initial_window.map_or(window, |w| w.max(window)));
            }
            got = 0;
        }
        if self.skip > 0 {
            self.settings = Some((entry, got));
        }
        n
    }

    /// Walk `bytes`, the next in this direction, handing each frame to `seen`.
    fn walk(&mut self, mut bytes: &[u8], seen: &mut impl FnMut(Frame)) {
        while !bytes.is_empty() {
            if let Some((mut id, mut got, frame)) = self.goaway.take() {
                let n = (4 - got).min(bytes.len()).min(self.skip);
                id[got..got + n].copy_from_slice(&bytes[..n]);
                got += n;
                self.skip -= n;
                bytes = &bytes[n..];
                if got == 4 {
                    let last = u32::from_be_bytes(id) & 0x7fff_ffff;
                    seen(Frame {
                        last_stream: Some(last),
                        ..frame
                    });
                } else {
                    self.goaway = Some((id, got, frame));
                }
                continue;
            }
            if self.settings.is_some() {
                let n = self.settings_bytes(bytes);
                bytes = &bytes[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                self.have = 0;
                let [a, b, c, kind, flags, s0, s1, s2, s3] = self.header;
                self.skip = u32::from_be_bytes([0, a, b, c]) as usize;
                let frame = Frame {
                    kind,
                    flags,
                    stream: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
                    last_stream: None,
                };
                if kind == GOAWAY && self.skip >= 8 {
                    self.goaway = Some(([0; 4], 0, frame));
                } else {
                    if kind == SETTINGS && flags & ACK == 0 {
                        self.settings_seen = true;
                        if self.skip > 0 {
                            self.settings = Some(([0; 6], 0));
                        }
                    }
                    seen(frame);
                }
            }
        }
    }
}

/// The streams of one connection, as the frames tell.
#[derive(Debug, Default)]
struct Streams {
    /// Streams the proxy opened that the upstream has not ended.
    open: HashSet<u32>,
    /// The last stream id of the upstream's GOAWAY, once one came.
    last_stream: Option<u32>,
    /// Fail the connection at the next read: only unprocessed streams are left.
    strand: bool,
}

impl Streams {
    fn outgoing(&mut self, frame: Frame) {
        match frame.kind {
            HEADERS => {
                self.open.insert(frame.stream);
            }
            RST_STREAM => {
                self.open.remove(&frame.stream);
            }
            _ => {}
        }
        self.check();
    }

    fn incoming(&mut self, frame: Frame, going_away: &AtomicBool) {
        match frame.kind {
            DATA | HEADERS if frame.flags & END_STREAM != 0 => {
                self.open.remove(&frame.stream);
            }
            RST_STREAM => {
                self.open.remove(&frame.stream);
            }
            GOAWAY => {
                going_away.store(true, Ordering::Release);
                // A later GOAWAY may only lower the last id.
                let last = frame.last_stream.unwrap_or(0);
                self.last_stream = Some(self.last_stream.map_or(last, |l| l.min(last)));
            }
            _ => {}
        }
        self.check();
    }

    /// After a GOAWAY: once no stream at or below its last id is open, any
    /// stream still open will never be answered.
    fn check(&mut self) {
        if let Some(last) = self.last_stream {
            let processed_open = self.open.iter().any(|&id| id <= last);
            self.strand = !processed_open && !self.open.is_empty();
        }
    }
}

/// What a [`GoawayWatch`] shares with its connection's owner.
#[derive(Debug, Default)]
pub(crate) struct GoawaySignal {
    going_away: AtomicBool,
    /// The watch failed the connection: only unprocessed streams were open.
    stranded: AtomicBool,
    streams: Mutex<Streams>,
    /// The largest `SETTINGS_INITIAL_WINDOW_SIZE` the upstream sent; 0
    /// until it sent one.
    initial_window: AtomicU32,
    /// The upstream's first SETTINGS came: `initial_window` is known.
    settings_seen: AtomicBool,
}

impl GoawaySignal {
    /// The most request body bytes a stream on this connection can send
    /// before the upstream grants more (a WINDOW_UPDATE for it, which it
    /// sends only for a stream it is processing): its initial stream window.
    /// `None` until the upstream's SETTINGS came (they may raise it for the
    /// streams already open, and a new connection's first stream usually
    /// starts before they arrive).
    pub(crate) fn initial_window(&self) -> Option<u32> {
        if !self.settings_seen.load(Ordering::Acquire) {
            return None;
        }
        Some(match self.initial_window.load(Ordering::Acquire) {
            0 => DEFAULT_INITIAL_WINDOW,
            window => window,
        })
    }

    /// Whether the upstream sent GOAWAY: the connection takes no new stream.
    pub(crate) fn going_away(&self) -> bool {
        self.going_away.load(Ordering::Acquire)
    }

    /// Whether the connection was failed because the only streams left
    /// were above the GOAWAY's last id: its streams' failures mean "not
    /// processed".
    pub(crate) fn stranded(&self) -> bool {
        self.stranded.load(Ordering::Acquire)
    }

    /// The error that fails the connection, when only streams the upstream
    /// will never answer are left.
    fn strand_now(&self) -> Option<io::Error> {
        if !self.going_away() || !self.streams().strand {
            return None;
        }
        self.stranded.store(true, Ordering::Release);
        Some(io::Error::other(
            "upstream went away (GOAWAY); the streams left are above its last stream id",
        ))
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection to an HTTP/2 upstream, its frames watched for GOAWAY.
#[derive(Debug)]
pub(crate) struct GoawayWatch<S> {
    inner: S,
    reading: FrameCursor,
    writing: FrameCursor,
    signal: Arc<GoawaySignal>,
}

impl<S> GoawayWatch<S> {
    /// Watch `inner`'s frames, telling `signal`.
    pub(crate) fn new(inner: S, signal: Arc<GoawaySignal>) -> Self {
        GoawayWatch {
            inner,
            reading: FrameCursor::new(0),
            writing: FrameCursor::new(PREFACE),
            signal,
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        let signal = &self.signal;
        self.writing
            .walk(bytes, &mut |frame| signal.streams().outgoing(frame));
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GoawayWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.signal.strand_now() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let signal = &this.signal;
        this.reading.walk(&buf.filled()[before..], &mut |frame| {
            signal.streams().incoming(frame, &signal.going_away)
        });
        if let Some(window) = this.reading.initial_window.take() {
            signal.initial_window.fetch_max(window, Ordering::AcqRel);
        }
        if this.reading.settings_seen {
            signal.settings_seen.store(true, Ordering::Release);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GoawayWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(&buf[..n]);
        }
        polled
    }

    /// A stream opened after the last processed one ended strands at
    /// once: h2 flushes after writing it, and may not read again for long.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.signal.strand_now() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = polled {
            for slice in bufs {
                let part = n.min(slice.len());
                this.wrote(&slice[..part]);
                n -= part;
                if n == 0 {
                    break;
                }
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Walk `data` as frames in both directions, for the fuzz target: each
/// chunk starts with a byte whose high bit picks the direction (set: from
/// the proxy) and whose low 7 bits give the chunk's length.
#[cfg(feature = "fuzzing")]
pub(crate) fn walk_for_fuzzing(data: &[u8]) {
    let signal = GoawaySignal::default();
    let mut reading = FrameCursor::new(0);
    let mut writing = FrameCursor::new(PREFACE);
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let n = usize::from(control & 0x7f).min(tail.len());
        let (chunk, after) = tail.split_at(n);
        if control & 0x80 == 0 {
            reading.walk(chunk, &mut |frame| {
                signal.streams().incoming(frame, &signal.going_away)
            });
        } else {
            writing.walk(chunk, &mut |frame| signal.streams().outgoing(frame));
        }
        let _ = signal.strand_now();
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn goaway(last: u32) -> Vec<u8> {
        let mut payload = last.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0; 4]);
        frame(GOAWAY, 0, 0, &payload)
    }

    /// Feed `incoming` to a fresh state in chunks of `split`, after the
    /// proxy opened streams 1, 3 and 5.
    fn after(incoming: &[u8], split: usize) -> Streams {
        let mut streams = Streams::default();
        let mut writing = FrameCursor::new(PREFACE);
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for id in [1, 3, 5] {
            out.extend(frame(HEADERS, 0x4, id, &[0x82]));
        }
        for chunk in out.chunks(split) {
            writing.walk(chunk, &mut |f| streams.outgoing(f));
        }
        let going_away = AtomicBool::new(false);
        let mut reading = FrameCursor::new(0);
        for chunk in incoming.chunks(split) {
            reading.walk(chunk, &mut |f| streams.incoming(f, &going_away));
        }
        assert_eq!(
            going_away.load(Ordering::Relaxed),
            streams.last_stream.is_some()
        );
        streams
    }

    #[test]
    fn the_upstreams_initial_window_is_read_from_its_settings_in_any_split() {
        let mut entries = Vec::new();
        for (id, value) in [(0x3u16, 100u32), (0x4, 1 << 20), (0x5, 16_384)] {
            entries.extend_from_slice(&id.to_be_bytes());
            entries.extend_from_slice(&value.to_be_bytes());
        }
        let mut bytes = frame(SETTINGS, 0, 0, &entries);
        // An ACK carries no settings; a frame after them still parses.
        bytes.extend(frame(SETTINGS, ACK, 0, &[]));
        bytes.extend(goaway(7));
        for split in 1..bytes.len() {
            let mut cursor = FrameCursor::new(0);
            let mut goaways = Vec::new();
            for chunk in bytes.chunks(split) {
                cursor.walk(chunk, &mut |f| {
                    if f.kind == GOAWAY {
                        goaways.push(f.last_stream);
                    }
                });
            }
            assert_eq!(cursor.initial_window, Some(1 << 20), "split {split}");
            assert!(cursor.settings_seen);
            assert_eq!(goaways, [Some(7)], "split {split}");
        }
    }

    #[test]
    fn streams_above_a_goaway_are_stranded_once_those_below_ended() {
        for split in [1, 2, 5, 9, 10, 13, 64] {
            // DATA whose bytes look like a GOAWAY frame header first.
            let mut incoming = frame(DATA, 0, 1, &[GOAWAY; 30]);
            incoming.extend(goaway(3));
            let streams = after(&incoming, split);
            assert_eq!(streams.last_stream, Some(3), "split {split}");
            assert!(!streams.strand, "split {split}: 1 and 3 are still open");
            incoming.extend(frame(HEADERS, END_STREAM | 0x4, 1, &[0x88]));
            incoming.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 2]));
            let streams = after(&incoming, split);
            assert!(streams.strand, "split {split}: only 5 is left, above 3");
        }
    }

    #[test]
    fn without_a_goaway_or_with_every_stream_processed_nothing_is_stranded() {
        let mut incoming = frame(HEADERS, END_STREAM | 0x4, 1, &[0x88]);
        incoming.extend(frame(DATA, END_STREAM, 3, b"x"));
        assert!(!after(&incoming, 7).strand, "no GOAWAY");
        incoming.extend(goaway(5));
        assert!(!after(&incoming, 7).strand, "5 is below the last id");
        incoming.extend(frame(DATA, END_STREAM, 5, b"x"));
        assert!(!after(&incoming, 7).strand, "nothing is open");
    }
}
