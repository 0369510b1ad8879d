//! The request body filter's contract: pieces changed and dropped, bytes
//! added at the end (before trailers), a replay that does not call the
//! filter again, and a failing or panicking filter.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;

use super::{FilteredBody, RequestBodyFilter};
use crate::body::ReplaySource;
use crate::body::tests::Scripted;
use crate::error::{Error, ErrorKind, Result};

fn upper(body: &mut Option<Bytes>, end: bool) -> Result<()> {
    if let Some(piece) = body.as_mut() {
        *piece = Bytes::from(piece.to_ascii_uppercase());
    }
    if end {
        *body = Some(Bytes::from_static(b"!"));
    }
    Ok(())
}

fn filtered(
    script: Scripted,
    filter: impl RequestBodyFilter,
) -> ReplaySource<FilteredBody<Scripted>> {
    let source = ReplaySource::new(FilteredBody::new(script), 1024);
    assert!(source.set_filter(Box::new(filter)).is_some());
    source
}

#[tokio::test]
async fn pieces_are_changed_and_the_last_call_adds_bytes() {
    let source = filtered(Scripted::data(&["ab", "cd"]).exact(4), upper);
    let (body, _) = source.attempt_body();
    assert!(!body.is_end_stream());
    assert_eq!(
        body.size_hint().exact(),
        None,
        "the filter may change the length"
    );
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "ABCD!");
}

#[tokio::test]
async fn dropped_pieces_are_not_sent_and_added_bytes_come_before_trailers() {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let script = Scripted::data(&["drop", "keep"]).with_trailers(trailers);
    let source = filtered(script, |body: &mut Option<Bytes>, end: bool| {
        if body.as_deref() == Some(b"drop".as_slice()) {
            *body = None;
        }
        if end {
            *body = Some(Bytes::from_static(b"-end"));
        }
        Ok(())
    });
    let (body, _) = source.attempt_body();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    assert_eq!(collected.to_bytes(), "keep-end");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
}

#[tokio::test]
async fn a_retry_replays_the_filtered_bytes_without_calling_the_filter_again() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let source = filtered(
        Scripted::data(&["ab", "cd"]),
        move |body: &mut Option<Bytes>, end: bool| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            upper(body, end)
        },
    );
    let (first, _) = source.attempt_body();
    assert_eq!(first.collect().await.unwrap().to_bytes(), "ABCD!");
    let (second, _) = source.attempt_body();
    assert_eq!(second.collect().await.unwrap().to_bytes(), "ABCD!");
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[tokio::test]
async fn a_failing_filter_fails_the_body_with_its_own_error() {
    let source = ReplaySource::new(FilteredBody::new(Scripted::data(&["ab", "cd"])), 1024);
    let status = source
        .set_filter(Box::new(|body: &mut Option<Bytes>, _: bool| {
            if body.as_deref() == Some(b"cd".as_slice()) {
                return Err(Error::explain(ErrorKind::InvalidDownstreamRequest, "no cd"));
            }
            Ok(())
        }))
        .unwrap();
    let (body, _) = source.attempt_body();
    assert!(body.collect().await.is_err());
    let failure = status.status.failure().unwrap();
    assert_eq!(failure.kind(), ErrorKind::InvalidDownstreamRequest);
    assert!(failure.to_string().contains("no cd"), "{failure}");
    assert!(!source.source_failed(), "the client's body did not fail");
}

#[tokio::test]
async fn a_panicking_filter_is_an_internal_error_and_an_upstream_kind_is_taken_as_internal() {
    let source = ReplaySource::new(FilteredBody::new(Scripted::data(&["ab"])), 1024);
    let status = source
        .set_filter(Box::new(|_: &mut Option<Bytes>, _: bool| -> Result<()> {
            panic!("boom")
        }))
        .unwrap();
    assert!(source.attempt_body().0.collect().await.is_err());
    assert_eq!(status.status.failure().unwrap().kind(), ErrorKind::Internal);

    let source = ReplaySource::new(FilteredBody::new(Scripted::data(&["ab"])), 1024);
    let status = source
        .set_filter(Box::new(|_: &mut Option<Bytes>, _: bool| {
            Err(Error::explain(ErrorKind::ConnectError, "not ours"))
        }))
        .unwrap();
    assert!(source.attempt_body().0.collect().await.is_err());
    assert_eq!(status.status.failure().unwrap().kind(), ErrorKind::Internal);
}

#[tokio::test]
async fn a_filter_is_refused_once_the_body_was_read() {
    let source = ReplaySource::new(FilteredBody::new(Scripted::data(&["ab", "cd"])), 1024);
    let (mut body, _) = source.attempt_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert!(source.set_filter(Box::new(upper)).is_none());
}

#[tokio::test]
async fn a_body_cut_short_gets_no_end_of_stream_call_and_stays_failed() {
    let ends = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&ends);
    let script = Scripted::data(&["ab"]).then_error();
    let source = filtered(script, move |_: &mut Option<Bytes>, end: bool| {
        if end {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    assert!(source.attempt_body().0.collect().await.is_err());
    assert!(
        source.attempt_body().0.collect().await.is_err(),
        "a later read fails too"
    );
    assert_eq!(ends.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_empty_body_gets_its_last_call_at_once() {
    let source = ReplaySource::new(FilteredBody::new(Scripted::data(&[])), 1024);
    let set = source
        .set_filter(Box::new(|_: &mut Option<Bytes>, _: bool| Ok(())))
        .unwrap();
    assert!(
        !set.reframes,
        "nothing added: the request keeps its framing"
    );
    let (body, _) = source.attempt_body();
    assert!(body.is_end_stream());

    let source = ReplaySource::new(FilteredBody::new(Scripted::data(&[])), 1024);
    assert!(source.set_filter(Box::new(upper)).unwrap().reframes);
    let (body, _) = source.attempt_body();
    assert!(!body.is_end_stream());
    assert_eq!(body.collect().await.unwrap().to_bytes(), "!");
}

#[tokio::test]
async fn a_bypassed_filter_lets_the_rest_through_as_it_came() {
    let source = ReplaySource::new(FilteredBody::new(Scripted::data(&["ab", "cd"])), 1024);
    let set = source.set_filter(Box::new(upper)).unwrap();
    let (mut body, _) = source.attempt_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "AB"
    );
    set.status.bypass();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "cd"
    );
    assert!(body.frame().await.is_none(), "no end-of-stream call");
}
