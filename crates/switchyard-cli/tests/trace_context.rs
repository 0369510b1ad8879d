//! W3C Trace Context through the proxy: an incoming `traceparent` is
//! continued with a span per attempt, one is started when asked, and the
//! trace ID is in the access log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use http_body_util::Full;
use switchyard_testkit::{Behavior, Origin, Script, client, within};

use common::{Running, TempConfig};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// GET `/` with `headers`.
async fn get(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> client::Collected {
    let mut request = http::Request::get("/").header("host", "app");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    within(10, "GET", client::send(addr, request))
        .await
        .unwrap()
}

/// The `traceparent` each request `origin` saw carried.
fn traceparents(origin: &Origin) -> Vec<Option<String>> {
    origin
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_string())
        })
        .collect()
}

fn config(servers: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[upstreams.app]\nservers = [{servers}]\n\
         connect_hedging = false\n{extra}"
    )
}

#[tokio::test]
async fn an_incoming_trace_is_continued_with_a_span_per_attempt() {
    let drops = Origin::start("drops", Script::always(Behavior::CloseBeforeHead)).await;
    let good = Origin::healthy("good").await;
    let servers = format!("\"{}\", \"{}\"", drops.addr(), good.addr());
    let file = TempConfig::new("trace-continued", &config(&servers, ""));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let reply = get(
        proxy.addr,
        &[
            ("traceparent", &traceparent),
            ("tracestate", "vendor=opaque"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);

    let first = traceparents(&drops)[0].clone().unwrap();
    let second = traceparents(&good)[0].clone().unwrap();
    for sent in [&first, &second] {
        assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");
        assert!(sent.ends_with("-01"), "the sampled flag as it came: {sent}");
        assert!(
            !sent.contains(CLIENT_SPAN),
            "each attempt is a span of its own: {sent}"
        );
    }
    assert_ne!(first, second, "the retry is another span");
    assert_eq!(good.requests()[0].headers["tracestate"], "vendor=opaque");
    let log = proxy.wait_for_log(1).await;
    assert!(log[0].contains(&format!("trace={TRACE}")), "{}", log[0]);
}

#[tokio::test]
async fn a_trace_is_started_when_asked() {
    let good = Origin::healthy("good").await;
    let servers = format!("\"{}\"", good.addr());
    let text = config(&servers, "\n[tracing]\nstart_traces = true\n");
    let file = TempConfig::new("trace-started", &text);
    let proxy = Running::start(&[
        "--log-format",
        "json",
        "run",
        "-c",
        file.path.to_str().unwrap(),
    ]);
    assert_eq!(get(proxy.addr, &[]).await.status, 200);
    let sent = traceparents(&good)[0]
        .clone()
        .expect("a traceparent upstream");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3]),
        ("00", 32, 16, "01")
    );
    let log = proxy.wait_for_log(1).await;
    let line: serde_json::Value = serde_json::from_str(&log[0]).unwrap();
    assert_eq!(line["trace_id"], parts[1]);
    assert_eq!(line["attempts"][0]["span_id"], parts[2]);

    // An invalid traceparent is replaced, and its tracestate not passed on.
    let invalid = format!("00-{}-{CLIENT_SPAN}-01", TRACE.to_uppercase());
    let reply = get(
        proxy.addr,
        &[("traceparent", &invalid), ("tracestate", "vendor=stale")],
    )
    .await;
    assert_eq!(reply.status, 200);
    let replaced = traceparents(&good)[1].clone().unwrap();
    assert!(!replaced.to_lowercase().contains(TRACE), "{replaced}");
    assert!(good.requests()[1].headers.get("tracestate").is_none());
}

#[tokio::test]
async fn without_start_traces_nothing_is_added_and_an_invalid_one_passes_as_it_came() {
    let good = Origin::healthy("good").await;
    let servers = format!("\"{}\"", good.addr());
    let file = TempConfig::new("trace-untouched", &config(&servers, ""));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    assert_eq!(get(proxy.addr, &[]).await.status, 200);
    let invalid = format!("00-{}-{CLIENT_SPAN}-01", TRACE.to_uppercase());
    assert_eq!(
        get(proxy.addr, &[("traceparent", &invalid)]).await.status,
        200
    );
    let seen = traceparents(&good);
    assert_eq!(seen[0], None);
    assert_eq!(seen[1].as_deref(), Some(invalid.as_str()));
    let log = proxy.wait_for_log(2).await;
    assert!(!log[0].contains("trace="), "{}", log[0]);
}
