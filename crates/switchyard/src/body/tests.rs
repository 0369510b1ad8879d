//! The replay body's contract, one behaviour per test: one chunk, many
//! chunks, trailers, cap reached, cap across replays, size hints, hand-over
//! between attempts, and a downstream that breaks off.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{BufferState, ReplayError, ReplaySource};

/// A scripted downstream body: frames in order, with an exact length when given.
pub(super) struct Scripted {
    frames: VecDeque<Result<Frame<Bytes>, io::Error>>,
    exact: Option<u64>,
}

impl Scripted {
    pub(super) fn data(chunks: &[&'static str]) -> Scripted {
        let frames = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        Scripted {
            frames,
            exact: None,
        }
    }

    pub(super) fn with_trailers(mut self, trailers: HeaderMap) -> Scripted {
        self.frames.push_back(Ok(Frame::trailers(trailers)));
        self
    }

    pub(super) fn then_error(mut self) -> Scripted {
        self.frames.push_back(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client left",
        )));
        self
    }

    pub(super) fn exact(mut self, len: u64) -> Scripted {
        self.exact = Some(len);
        self
    }
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let next = self.frames.pop_front();
        if let (Some(Ok(frame)), Some(exact)) = (&next, self.exact.as_mut()) {
            *exact -= frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        Poll::Ready(next)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.exact.map(SizeHint::with_exact).unwrap_or_default()
    }
}

async fn read_all(
    body: impl Body<Data = Bytes, Error = ReplayError>,
) -> Result<(Bytes, Option<HeaderMap>), ReplayError> {
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

#[tokio::test]
async fn one_chunk_passes_through_and_is_kept() {
    let source = ReplaySource::new(Scripted::data(&["hello"]), 64);
    let (body, progress) = source.attempt_body();
    let (bytes, _) = read_all(body).await.unwrap();
    assert_eq!(bytes, "hello");
    assert_eq!(progress.sent(), 5);
    assert!(progress.finished());
    assert_eq!(source.state(), BufferState::Complete);
    assert_eq!(source.bytes_read(), 5);
}

#[tokio::test]
async fn many_chunks_replay_whole_on_the_next_attempt() {
    let source = ReplaySource::new(Scripted::data(&["a", "bb", "ccc"]), 64);
    let (first, _) = source.attempt_body();
    assert_eq!(read_all(first).await.unwrap().0, "abbccc");
    let (second, progress) = source.attempt_body();
    assert_eq!(read_all(second).await.unwrap().0, "abbccc");
    assert_eq!(progress.sent(), 6);
    assert_eq!(source.bytes_read(), 6, "the downstream body is read once");
}

#[tokio::test]
async fn a_partly_read_body_replays_then_reads_on() {
    let source = ReplaySource::new(Scripted::data(&["one-", "two-", "three"]), 64);
    let (mut first, _) = source.attempt_body();
    let frame = first.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "one-");
    drop(first);
    let (second, _) = source.attempt_body();
    assert_eq!(read_all(second).await.unwrap().0, "one-two-three");
}

#[tokio::test]
async fn trailers_are_replayed() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let source = ReplaySource::new(
        Scripted::data(&["data"]).with_trailers(trailers.clone()),
        64,
    );
    let (first, _) = source.attempt_body();
    assert_eq!(
        read_all(first).await.unwrap(),
        (Bytes::from("data"), Some(trailers.clone()))
    );
    let (second, _) = source.attempt_body();
    assert_eq!(
        read_all(second).await.unwrap(),
        (Bytes::from("data"), Some(trailers))
    );
}

#[tokio::test]
async fn trailers_end_the_body_for_progress() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let source = ReplaySource::new(Scripted::data(&["data"]).with_trailers(trailers), 64);
    let (mut body, progress) = source.attempt_body();
    body.frame().await.unwrap().unwrap();
    assert!(!progress.finished());
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    assert!(progress.finished(), "hyper polls no further after trailers");
}

#[tokio::test]
async fn releasing_the_buffer_frees_it_and_forbids_replay() {
    let source = ReplaySource::new(Scripted::data(&["abc", "def"]), 64);
    let (first, _) = source.attempt_body();
    read_all(first).await.unwrap();
    source.release_buffer();
    assert_eq!(source.state(), BufferState::Truncated);
    let (second, _) = source.attempt_body();
    assert!(matches!(
        read_all(second).await,
        Err(ReplayError::NotReplayable)
    ));
}

#[tokio::test]
async fn a_body_over_the_cap_streams_whole_but_cannot_replay() {
    let source = ReplaySource::new(Scripted::data(&["12345", "67890", "abc"]), 8);
    let (first, _) = source.attempt_body();
    assert_eq!(
        read_all(first).await.unwrap().0,
        "1234567890abc",
        "the first attempt gets it all"
    );
    assert_eq!(source.state(), BufferState::Truncated);
    let (second, _) = source.attempt_body();
    assert!(matches!(
        read_all(second).await,
        Err(ReplayError::NotReplayable)
    ));
}

#[tokio::test]
async fn the_cap_counts_across_replays() {
    let source = ReplaySource::new(Scripted::data(&["1234", "5678", "9"]), 8);
    let (mut first, _) = source.attempt_body();
    first.frame().await.unwrap().unwrap();
    drop(first);
    assert_eq!(source.state(), BufferState::Complete);
    let (second, _) = source.attempt_body();
    assert_eq!(read_all(second).await.unwrap().0, "123456789");
    assert_eq!(
        source.state(),
        BufferState::Truncated,
        "9 bytes read in all, cap 8"
    );
    let (third, _) = source.attempt_body();
    assert!(matches!(
        read_all(third).await,
        Err(ReplayError::NotReplayable)
    ));
}

#[tokio::test]
async fn a_body_exactly_at_the_cap_stays_replayable() {
    let source = ReplaySource::new(Scripted::data(&["1234", "5678"]), 8);
    let (first, _) = source.attempt_body();
    read_all(first).await.unwrap();
    assert_eq!(source.state(), BufferState::Complete);
}

#[tokio::test]
async fn size_hint_adds_replay_to_what_is_left() {
    let source = ReplaySource::new(Scripted::data(&["abc", "defg"]).exact(7), 64);
    let (mut first, _) = source.attempt_body();
    assert_eq!(first.size_hint().exact(), Some(7));
    first.frame().await.unwrap().unwrap();
    assert_eq!(first.size_hint().exact(), Some(4));
    drop(first);
    let (second, _) = source.attempt_body();
    assert_eq!(second.size_hint().exact(), Some(7), "3 replayed + 4 unread");
}

#[tokio::test]
async fn size_hint_over_the_cap_stays_exact_for_the_first_attempt() {
    let source = ReplaySource::new(Scripted::data(&["abcdef", "ghij"]).exact(10), 4);
    let (first, _) = source.attempt_body();
    assert_eq!(first.size_hint().exact(), Some(10));
    assert_eq!(read_all(first).await.unwrap().0.len(), 10);
}

#[tokio::test]
async fn an_empty_body_is_finished_before_it_is_polled() {
    let source = ReplaySource::new(Scripted::data(&[]), 64);
    let (body, progress) = source.attempt_body();
    assert!(body.is_end_stream());
    assert!(progress.finished());
}

#[tokio::test]
async fn the_next_attempt_waits_for_the_previous_one_to_let_go() {
    let source = ReplaySource::new(Scripted::data(&["x", "y"]), 64);
    let (mut first, _) = source.attempt_body();
    first.frame().await.unwrap().unwrap();
    let (second, _) = source.attempt_body();
    let reader = tokio::spawn(read_all(second));
    tokio::task::yield_now().await;
    assert!(
        !reader.is_finished(),
        "the source is still held by the first attempt"
    );
    drop(first);
    assert_eq!(reader.await.unwrap().unwrap().0, "xy");
}

#[tokio::test]
async fn a_downstream_that_breaks_off_is_reported() {
    let source = ReplaySource::new(Scripted::data(&["part"]).then_error(), 64);
    let (body, _) = source.attempt_body();
    assert!(matches!(read_all(body).await, Err(ReplayError::Source(_))));
    assert!(source.source_failed());
}
