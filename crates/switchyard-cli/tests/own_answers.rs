//! The proxy's own answers carry what the docs promise on every response:
//! `X-Request-Id`, and `x-switchyard-attempts` when `attempt_count_header`
//! is on. Each kind of answer the proxy makes itself is walked here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Running, TempConfig};
use switchyard_testkit::h2::H2Conn;
use switchyard_testkit::{Behavior, Origin, Script, client, refused_addr, within};

/// Check the promised headers on a raw HTTP/1.1 answer; `attempts` is the
/// value `x-switchyard-attempts` must have.
fn check_raw(kind: &str, answer: &str, status: u16, attempts: usize) {
    let lower = answer.to_ascii_lowercase();
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{kind}: {answer}"
    );
    assert!(
        lower.contains("\r\nx-request-id: "),
        "{kind}: no request ID: {answer}"
    );
    assert!(
        lower.contains(&format!("\r\nx-switchyard-attempts: {attempts}\r\n")),
        "{kind}: no attempts header: {answer}"
    );
}

async fn send(addr: std::net::SocketAddr, request: String) -> String {
    within(10, "a request", client::raw(addr, request.as_bytes(), 5))
        .await
        .text()
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn every_kind_of_answer_the_proxy_makes_carries_the_promised_headers() {
    let dead = refused_addr().await;
    let silent = Origin::start("silent", Script::always(Behavior::Silence)).await;
    let slow = Script::always(Behavior::ok().after(Duration::from_millis(1500)));
    let busy = Origin::start("busy", slow).await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\nattempt_count_header = true\n\
         [upstreams.dead]\nservers = [\"{dead}\"]\nconnect_hedging = false\n\
         [upstreams.silent]\nservers = [\"{silent}\"]\nresponse_timeout = \"300ms\"\n\
         [upstreams.busy]\nservers = [\"{busy}\"]\nmax_connections_per_server = 1\nmax_pending = 0\nconnect_hedging = false\n\
         [[routes]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\
         [[routes]]\npath_prefix = \"/silent\"\nupstream = \"silent\"\n\
         [[routes]]\npath_prefix = \"/busy\"\nupstream = \"busy\"\n\
         [[routes]]\npath_prefix = \"/small\"\nupstream = \"dead\"\nmax_request_body = 10\n",
        silent = silent.addr(),
        busy = busy.addr(),
    );
    let file = TempConfig::new("own-answers", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let addr = proxy.addr;

    check_raw("502", &send(addr, get("/dead")).await, 502, 3);
    check_raw("504", &send(addr, get("/silent")).await, 504, 1);
    let held = tokio::spawn(client::get(addr, "/busy"));
    busy.wait_for_requests(1, 5).await;
    check_raw("503", &send(addr, get("/busy")).await, 503, 3);
    within(10, "the held request", held).await.unwrap().unwrap();
    check_raw("400", &send(addr, get("/dead/../..")).await, 400, 0);
    let too_large =
        "POST /small HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
    check_raw("413", &send(addr, too_large.to_string()).await, 413, 0);
    check_raw("404", &send(addr, get("/nowhere")).await, 404, 0);

    // gRPC: a trailers-only answer over h2c.
    let h2 = within(10, "h2c", H2Conn::cleartext(addr)).await.unwrap();
    let mut call = h2.request(
        http::Method::POST,
        "/dead/svc.S/M",
        vec![0, 0, 0, 0, 1, b'x'],
    );
    call.headers_mut().insert("te", "trailers".parse().unwrap());
    call.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let answer = within(10, "a gRPC call", h2.send(call)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["grpc-status"], "14", "{:?}", answer.headers);
    assert!(
        answer.headers.contains_key("x-request-id"),
        "{:?}",
        answer.headers
    );
    assert_eq!(
        answer.headers["x-switchyard-attempts"], "3",
        "{:?}",
        answer.headers
    );

    // A head over the limits is refused by the HTTP/1.1 parser before any
    // request exists (docs/config.md says so): 431, and nothing else.
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = send(
        addr,
        format!("GET /dead HTTP/1.1\r\nHost: a.test\r\n{many}\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}
