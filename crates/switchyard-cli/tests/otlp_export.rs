//! Span export over OTLP/HTTP (`[tracing] otlp_endpoint`): one span per
//! request and a child span per attempt, decoded by the test kit's own
//! collector; unsampled traces stay unexported; a collector that is down or
//! stuck costs requests nothing, and what is dropped is counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use switchyard_testkit::otlp::{Collector, ReceivedSpan};
use switchyard_testkit::{Blackhole, Origin, client, refused_addr, within};

use common::{Running, TempConfig};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn config(servers: &str, tracing: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\
         [tracing]\n{tracing}\n\
         [upstreams.app]\nservers = [{servers}]\nconnect_hedging = false\n\
         [[routes]]\nname = \"everything\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
    )
}

/// The proxy `switchyard run` serves with `servers` and `tracing` (and
/// its config file, removed when dropped).
fn start(name: &str, servers: &str, tracing: &str) -> (TempConfig, Running) {
    let file = TempConfig::new(name, &config(servers, tracing));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    (file, proxy)
}

async fn get(addr: SocketAddr, traceparent: Option<&str>) -> client::Collected {
    let mut request = http::Request::get("/orders?page=2").header("host", "app");
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    within(10, "GET", client::send(addr, request))
        .await
        .unwrap()
}

fn by_kind(spans: &[ReceivedSpan], kind: i32) -> Vec<ReceivedSpan> {
    spans.iter().filter(|s| s.kind == kind).cloned().collect()
}

#[tokio::test]
async fn a_request_is_one_span_with_a_child_span_per_attempt() {
    let refused = refused_addr().await;
    let good = Origin::healthy("good").await;
    let collector = Collector::start().await;
    let servers = format!("\"{refused}\", \"{}\"", good.addr());
    let tracing = format!(
        "otlp_endpoint = \"{}\"\nservice_name = \"edge-proxy\"",
        collector.endpoint()
    );
    let (_file, proxy) = start("otlp", &servers, &tracing);

    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let reply = get(proxy.addr, Some(&traceparent)).await;
    assert_eq!(reply.status, 200);
    let spans = collector.wait_for_spans(3, 10).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");

    let request = &by_kind(&spans, 2)[0];
    assert_eq!(request.service, "edge-proxy");
    assert_eq!(request.trace_id, TRACE);
    assert_eq!(
        request.parent_span_id, CLIENT_SPAN,
        "continues the client's span"
    );
    assert_eq!(request.name, "GET");
    assert_eq!(request.attr("http.request.method"), "GET");
    assert_eq!(request.attr("url.path"), "/orders", "no query string");
    assert_eq!(request.attr("http.response.status_code"), "200");
    assert_eq!(request.attr("switchyard.route"), "everything");
    assert_eq!(request.attr("switchyard.upstream"), "app");
    assert_eq!(request.attr("switchyard.retries"), "1");
    assert_eq!(
        request.attr("switchyard.request_id"),
        reply.headers["x-request-id"].to_str().unwrap()
    );
    assert!(request.end >= request.start && request.start > 0);

    let mut attempts = by_kind(&spans, 3);
    attempts.sort_by_key(|s| s.attr("switchyard.attempt").to_string());
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        assert_eq!(attempt.trace_id, TRACE);
        assert_eq!(
            attempt.parent_span_id, request.span_id,
            "under the request's span"
        );
        assert!(attempt.start >= request.start && attempt.end <= request.end);
    }
    let (first, second) = (&attempts[0], &attempts[1]);
    assert_eq!(first.attr("server.address"), refused.ip().to_string());
    assert_eq!(first.attr("server.port"), refused.port().to_string());
    assert_eq!(first.attr("switchyard.attempt.outcome"), "connect-refused");
    assert_eq!(first.attr("switchyard.decision"), "retry");
    assert_eq!(first.attr("switchyard.decision.reason"), "next-peer");
    assert_eq!(first.status_code, 2, "a failed attempt is an error span");
    assert_eq!(second.attr("switchyard.attempt.outcome"), "200");
    assert_eq!(second.attr("switchyard.decision"), "done");
    assert_eq!(second.status_code, 0);
    // The upstream's parent is the attempt that reached it.
    let seen = good.requests()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(seen, format!("00-{TRACE}-{}-01", second.span_id));

    let metrics = common::wait_for_metric(
        proxy.admin.unwrap(),
        "switchyard_otlp_spans_exported_total 3\n",
    )
    .await;
    assert!(metrics.contains("switchyard_otlp_spans_dropped_total{reason=\"queue-full\"} 0"));
}

#[tokio::test]
async fn only_sampled_traces_are_exported() {
    let good = Origin::healthy("good").await;
    let collector = Collector::start().await;
    let tracing = format!(
        "otlp_endpoint = \"{}\"\nstart_traces = true",
        collector.endpoint()
    );
    let (_file, proxy) = start("otlp-sampled", &format!("\"{}\"", good.addr()), &tracing);

    let unsampled = format!("00-{TRACE}-{CLIENT_SPAN}-00");
    assert_eq!(get(proxy.addr, Some(&unsampled)).await.status, 200);
    // No traceparent: the proxy starts a (sampled) trace.
    assert_eq!(get(proxy.addr, None).await.status, 200);
    // Both requests' spans would go in one batch: 4 if the unsampled
    // trace were exported too.
    let exported = "switchyard_otlp_spans_exported_total 2\n";
    common::wait_for_metric(proxy.admin.unwrap(), exported).await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(
        spans.iter().all(|s| s.trace_id != TRACE),
        "the unsampled trace stays out"
    );
    let request = &by_kind(&spans, 2)[0];
    assert_eq!(
        request.parent_span_id, "",
        "a trace the proxy started has no parent"
    );
    assert_eq!(request.service, "switchyard");
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing_and_drops_are_counted() {
    let good = Origin::healthy("good").await;
    let down = refused_addr().await;
    let tracing = format!("otlp_endpoint = \"http://{down}\"\nstart_traces = true");
    let (_file, proxy) = start("otlp-down", &format!("\"{}\"", good.addr()), &tracing);
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, None).await.status, 200);
    }
    common::wait_for_metric(
        proxy.admin.unwrap(),
        "switchyard_otlp_spans_dropped_total{reason=\"export-failed\"} 10\n",
    )
    .await;
    proxy.wait_for_stderr("cannot export spans").await;
}

#[tokio::test]
async fn a_stuck_collector_fills_the_bounded_queue_and_the_rest_are_dropped() {
    let good = Origin::healthy("good").await;
    let stuck = Blackhole::start().await;
    let tracing = format!(
        "otlp_endpoint = \"http://{}\"\nstart_traces = true\notlp_queue = 1",
        stuck.addr()
    );
    let (_file, proxy) = start("otlp-stuck", &format!("\"{}\"", good.addr()), &tracing);
    // The first request's spans go out within a second, to a collector
    // that never answers: the export hangs (for its 10 s timeout). Meanwhile
    // one request's spans wait in the queue and the others are dropped.
    assert_eq!(get(proxy.addr, None).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    within(5, "nine requests", async {
        for _ in 0..9 {
            assert_eq!(get(proxy.addr, None).await.status, 200);
        }
    })
    .await;
    let metrics = common::admin_get(proxy.admin.unwrap(), "/metrics").await;
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_otlp_spans_dropped_total{reason=\"queue-full\"} "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(dropped, 16, "8 requests' 2 spans each\n{metrics}");
}
