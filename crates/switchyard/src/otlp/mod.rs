//! Exporting each request's spans over OTLP/HTTP (protobuf), OpenTelemetry's
//! wire protocol, to a collector: one `SERVER` span per request and one
//! `CLIENT` span per attempt upstream, with the peer, the outcome and the
//! engine's decision and its reason ([`RequestSpans`]).
//!
//! Exporting never holds a request up. [`OtlpExporter::export`] puts a
//! request's spans on a bounded queue (dropped and counted when it is
//! full); a thread of the exporter's own sends them in batches (`POST
//! /v1/traces`, `application/x-protobuf`), at most one batch at a time. A
//! batch the collector does not take (unreachable, slow past the timeout,
//! an answer other than 2xx) is dropped and counted, and said once in the
//! diagnostics until an export works again.
//!
//! ```no_run
//! use switchyard::otlp::{OtlpExporter, OtlpOptions, RequestSpans};
//! # use switchyard::prelude::*;
//! # fn logging(session: &Session, e: Option<&switchyard::Error>, exporter: &OtlpExporter) {
//! // At start:
//! // let exporter = OtlpExporter::start(OtlpOptions::new("http://127.0.0.1:4318"))?;
//! // In the `logging` hook, once the request is over:
//! if let Some(spans) = RequestSpans::of_session(session, e) {
//!     exporter.export(spans);
//! }
//! # }
//! ```

mod export;
pub mod proto;
mod spans;

pub use export::{OtlpExporter, OtlpOptions};
pub use spans::RequestSpans;
