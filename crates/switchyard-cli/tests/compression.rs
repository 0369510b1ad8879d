//! A route's `compress`: negotiated from `Accept-Encoding`, only for the
//! listed types and sizes, never for what must stay as it is; the body
//! streams (what the upstream flushed reaches the client before the rest
//! exists); `check` refuses unknown codecs and types.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use switchyard_testkit::{Behavior, Origin, Script, client, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::{Running, TempConfig};

fn config(origin: SocketAddr, compress: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.app]\nservers = [\"{origin}\"]\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\ncompress = {compress}\n"
    )
}

/// A complete response with `headers` and `body`, kept alive.
fn raw(headers: &str, body: &str) -> Behavior {
    let head = format!(
        "HTTP/1.1 200 OK\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    );
    Behavior::RawKeepOpen {
        bytes: Bytes::from(head + body),
    }
}

async fn get(addr: SocketAddr, path: &str, accept: &str) -> client::Collected {
    let request = http::Request::get(path)
        .header("host", "app")
        .header("accept-encoding", accept)
        .body(Full::new(Bytes::new()))
        .unwrap();
    within(10, "GET", client::send(addr, request))
        .await
        .unwrap()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = flate2::write::GzDecoder::new(Vec::new());
    out.write_all(bytes).unwrap();
    String::from_utf8(out.finish().unwrap()).unwrap()
}

#[tokio::test]
async fn compressible_responses_are_compressed_in_the_clients_codec() {
    let page = "<p>hello, compressed world</p>\n".repeat(100);
    let html = "content-type: text/html; charset=utf-8\r\netag: \"v1\"\r\n";
    let page_for_script = page.clone();
    let script = Script::from_fn(move |step| match step.path.as_str() {
        "/page" => raw(html, &page_for_script),
        "/small" => raw("content-type: text/html\r\n", "<p>tiny</p>"),
        "/png" => raw("content-type: image/png\r\n", &"x".repeat(4096)),
        "/events" => raw(
            "content-type: text/event-stream\r\n",
            &"data: x\n\n".repeat(200),
        ),
        "/no-transform" => raw(
            "content-type: text/html\r\ncache-control: no-transform\r\n",
            &page_for_script,
        ),
        _ => Behavior::ok(),
    });
    let origin = Origin::start("origin", script).await;
    let file = TempConfig::new("compress", &config(origin.addr(), "[\"br\", \"gzip\"]"));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let gz = get(proxy.addr, "/page", "gzip, deflate").await;
    assert_eq!(gz.headers["content-encoding"], "gzip");
    assert_eq!(gz.headers["vary"], "accept-encoding");
    assert_eq!(gz.headers["etag"], "W/\"v1\"");
    assert!(
        !gz.headers.contains_key("content-length")
            || gz.headers["content-length"] != page.len().to_string().as_str()
    );
    assert!(gz.body.len() < page.len() / 5, "{} bytes", gz.body.len());
    assert_eq!(gunzip(&gz.body), page);

    // The route's order breaks ties; the client's q-values come first.
    let br = get(proxy.addr, "/page", "gzip, br").await;
    assert_eq!(br.headers["content-encoding"], "br");
    let mut decoded = Vec::new();
    brotli::BrotliDecompress(&mut br.body.as_ref(), &mut decoded).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), page);
    let preferred = get(proxy.addr, "/page", "br;q=0.5, gzip").await;
    assert_eq!(preferred.headers["content-encoding"], "gzip");

    // Not accepted, too small, not a compressible type, an event stream,
    // no-transform: as the upstream sent it.
    for (path, accept) in [
        ("/page", "identity"),
        ("/small", "gzip"),
        ("/png", "gzip"),
        ("/events", "gzip"),
        ("/no-transform", "gzip"),
    ] {
        let reply = get(proxy.addr, path, accept).await;
        assert!(
            !reply.headers.contains_key("content-encoding"),
            "{path}: {:?}",
            reply.headers
        );
    }
    let plain = get(proxy.addr, "/page", "identity").await;
    assert_eq!(plain.body, page.as_bytes());
    assert_eq!(
        plain.headers["vary"], "accept-encoding",
        "caches must keep both"
    );
}

/// An origin that sends a chunked `text/plain` body: `first`, then waits
/// for the test's go before the rest.
async fn stepped_origin(go: tokio::sync::oneshot::Receiver<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let first = "first part of the stream\n";
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        );
        stream.write_all(reply.as_bytes()).await.unwrap();
        let _ = go.await;
        let rest = "and the rest\n";
        let end = format!("{:x}\r\n{rest}\r\n0\r\n\r\n", rest.len());
        stream.write_all(end.as_bytes()).await.unwrap();
        // Keep the connection until the proxy is done with it.
        let _ = stream.read(&mut buf).await;
    });
    addr
}

#[tokio::test]
async fn the_compressed_body_streams_as_the_upstream_flushes() {
    let (go, wait) = tokio::sync::oneshot::channel();
    let origin = stepped_origin(wait).await;
    let file = TempConfig::new("compress-stream", &config(origin, "[\"gzip\"]"));
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/")
        .header("host", "app")
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within(10, "head", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    // The first part decodes while the origin still holds the rest.
    within(10, "the first part", async {
        while !String::from_utf8_lossy(decoder.get_ref()).contains("first part") {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                decoder.write_all(&data).unwrap();
                decoder.flush().unwrap();
            }
        }
    })
    .await;
    go.send(()).unwrap();
    while let Some(frame) = within(10, "the rest", body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            decoder.write_all(&data).unwrap();
        }
    }
    let text = String::from_utf8(decoder.finish().unwrap()).unwrap();
    assert_eq!(text, "first part of the stream\nand the rest\n");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[test]
fn check_refuses_unknown_codecs_and_types() {
    let origin: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (compress, server, key, says) in [
        ("[\"lzma\"]", "", "routes[0].compress", "not a codec"),
        ("[]", "", "routes[0].compress", "empty list"),
        (
            "[\"gzip\", \"gzip\"]",
            "",
            "routes[0].compress",
            "listed twice",
        ),
        (
            "true",
            "compress_types = [\"html\"]\n",
            "server.compress_types[0]",
            "not a media type",
        ),
    ] {
        let text = config(origin, compress).replace("[upstreams", &format!("{server}[upstreams"));
        let stderr = common::check_refusal("compress-bad", &text);
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{compress}: {stderr}"
        );
    }
}
