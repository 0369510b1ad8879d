//! `switchyard demo`: the README's first command. It starts four demo
//! upstreams and a proxy with an embedded config on loopback, sends a short
//! burst of requests, and prints what each went through, then a summary.
//! With `--keep-running` the proxy stays up for the user's own requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use switchyard::log_file::{LogTarget, LogWriter};

use crate::config::{self, LogFormat};
use crate::observe::{AccessLog, Finished, Observer, not_taken_reason};
use crate::{DEMO_PATIENCE, serve};

mod upstreams;

/// The embedded default config, with `{refused}` and friends to fill in.
const CONFIG_TEMPLATE: &str = include_str!("demo.toml");

/// One demo request: method, path, the `Idempotency-Key` it carries (if
/// any), and what it shows.
type DemoRequest = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

/// The burst of demo traffic.
const TRAFFIC: [DemoRequest; 7] = [
    (
        "GET",
        "/",
        None,
        "the shop: refused, then a blackholed server raced after 50 ms",
    ),
    (
        "GET",
        "/products",
        None,
        "the shop again: the blackholed server loses another race",
    ),
    (
        "GET",
        "/cart",
        None,
        "the shop a third time: that server is now ejected",
    ),
    (
        "GET",
        "/api/items",
        None,
        "flaky server drops it: a GET is safe to retry",
    ),
    ("GET", "/api/items", None, "flaky server answers this one"),
    (
        "POST",
        "/api/orders",
        None,
        "flaky server drops it: a POST is not sent twice",
    ),
    (
        "POST",
        "/api/orders",
        Some("\"order-7f3a\""),
        "the same POST with an Idempotency-Key: the origin deduplicates by the key, so it is retried",
    ),
];

/// Run the demo; an error says what could not be set up.
pub fn run(keep_running: bool, log_format: Option<LogFormat>) -> Result<(), String> {
    // Two threads: the demo's upstreams and clients run beside the proxy.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(demo(keep_running, log_format))
}

async fn demo(keep_running: bool, log_format: Option<LogFormat>) -> Result<(), String> {
    let upstreams = upstreams::start()
        .await
        .map_err(|e| format!("cannot start the demo upstreams: {e}"))?;
    let text = CONFIG_TEMPLATE
        .replace("{refused}", &upstreams.refused.to_string())
        .replace("{blackholed}", &upstreams.blackholed.to_string())
        .replace("{healthy}", &upstreams.healthy.to_string())
        .replace("{flaky}", &upstreams.flaky.to_string());
    let config = config::parse(&text, "demo config")
        .map_err(|e| format!("the demo config is broken: {e}"))?;

    let (sender, finished) = mpsc::channel::<Finished>();
    let sender = std::sync::Mutex::new(sender);
    let access_log = match keep_running.then(|| log_format.unwrap_or(LogFormat::Text)) {
        Some(format) => Some(AccessLog {
            format,
            writer: LogWriter::open(LogTarget::Stdout)
                .map_err(|e| format!("cannot start the access log: {e}"))?,
        }),
        None => None,
    };
    let observer = Observer::new(access_log).with_sink(move |request| {
        if let Ok(sender) = sender.lock() {
            let _ = sender.send(request.clone());
        }
    });
    let running = serve::start(config, Arc::new(observer)).await?;
    let proxy = *running
        .listening
        .first()
        .ok_or("the demo proxy has no listener")?;

    println!("Switchyard demo: a proxy on http://{proxy} in front of four demo upstreams:");
    println!("  {:<21} refuses connections", upstreams.refused);
    println!(
        "  {:<21} blackholed: connects time out (connect_timeout 300ms)",
        upstreams.blackholed
    );
    println!("  {:<21} healthy", upstreams.healthy);
    println!(
        "  {:<21} flaky: drops every other GET, and every POST, before answering",
        upstreams.flaky
    );
    println!(
        "Routes: /api -> [flaky] with [healthy] as backup, Idempotency-Key honoured; everything else -> [refused, blackholed, healthy].\n"
    );

    let mut seen = Vec::new();
    for (i, (method, path, key, what)) in TRAFFIC.iter().enumerate() {
        let started = Instant::now();
        let status = send(proxy, method, path, *key).await;
        let request = finished
            .recv_timeout(DEMO_PATIENCE)
            .map_err(|_| format!("no log of request {path} within {DEMO_PATIENCE:?}"))?;
        print_request(i + 1, what, &status, started.elapsed(), &request);
        seen.push(request);
    }
    print_summary(&seen);

    if keep_running {
        // Caught from here on, so a Ctrl-C after the hint below stops gracefully.
        let stop = serve::stop_signal();
        println!(
            "\nThe proxy keeps running on http://{proxy} (try: curl -i http://{proxy}/api/items)."
        );
        println!("Access log lines follow. Ctrl-C stops it.");
        stop.await;
    } else {
        println!("\nRun `switchyard demo --keep-running` to send your own requests to it.");
    }
    drop(finished);
    running.stop().await?;
    drop(upstreams);
    Ok(())
}

/// Send one request on a new connection, with `key` as its
/// `Idempotency-Key` if given; the status, or what went wrong.
async fn send(
    proxy: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let body = if method == "POST" {
        Bytes::from_static(b"{\"item\": 42}")
    } else {
        Bytes::new()
    };
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
        .uri(path)
        .header("host", "demo.localhost");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(DEMO_PATIENCE, sender.send_request(request))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

fn print_request(n: usize, what: &str, status: &Result<u16, String>, took: Duration, r: &Finished) {
    let outcome = match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("client error: {e}"),
    };
    println!(
        "[{n}/{}] {} {}  ->  {outcome} in {} ms, {} attempt(s)   ({what})",
        TRAFFIC.len(),
        r.method,
        r.path,
        took.as_millis(),
        r.trace.len()
    );
    for attempt in r.trace.records() {
        println!("        {attempt}");
    }
}

fn print_summary(requests: &[Finished]) {
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut retried: BTreeMap<&str, usize> = BTreeMap::new();
    let mut not_taken: BTreeMap<String, usize> = BTreeMap::new();
    let mut attempts = 0;
    for r in requests {
        *statuses.entry(r.status).or_default() += 1;
        for a in r.trace.records() {
            attempts += 1;
            if a.decision == switchyard::Decision::Retry {
                *retried
                    .entry(a.error.map_or("-", |k| k.as_str()))
                    .or_default() += 1;
            }
            if let Some((reason, note)) = not_taken_reason(a) {
                let key = if note.is_empty() {
                    reason.to_string()
                } else {
                    format!("{reason} [{note}]")
                };
                *not_taken.entry(key).or_default() += 1;
            }
        }
    }
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    println!("\nSummary");
    println!("  {:<22} {}", "requests", requests.len());
    let statuses = statuses.iter().map(|(s, n)| format!("{n} x {s}")).collect();
    println!("  {:<22} {}", "final statuses", list(statuses));
    println!("  {:<22} {attempts}", "upstream attempts");
    let retried: Vec<String> = retried.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  {:<22} {}", "retries taken", list(retried));
    let not_taken: Vec<String> = not_taken.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  {:<22} {}", "retries not taken", list(not_taken));
}
