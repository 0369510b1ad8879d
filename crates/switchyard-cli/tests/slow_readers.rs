//! Slow readers cost little memory: the proxy reads a response from the
//! upstream only as the client takes it, so a client that stops reading a
//! large response makes the proxy hold a bounded amount (hyper's buffers,
//! capped at 64 KiB each way), not the response.
//!
//! Measured as the growth of the proxy process's resident memory (kernel
//! socket buffers are not in it), connection state included, with a bound
//! generous enough for a busy machine: about 150 KiB per such client was
//! measured with hyper's buffers capped, 1.3-1.45 MiB with its defaults;
//! over HTTP/2 about 210 KiB capped, 570 KiB with hyper's 400 KB send
//! buffer per stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Running, TempConfig};
use switchyard_testkit::h2_origin::frame;
use switchyard_testkit::{Behavior, Origin, Script, client, within};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// Clients that ask for the large body and then read nothing.
const READERS: usize = 40;

/// The body each asks for.
const BODY: usize = 8 * 1024 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `pid`'s resident memory once it stopped changing: the same, within
/// 1%, over 300 ms (10 s at most). What a test waits for when the flows it
/// started have settled, instead of a fixed time.
async fn settled_rss(pid: u32) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = rss_kib(pid);
    let mut steady = 0;
    while steady < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_kib(pid);
        steady = if now.abs_diff(last) * 100 <= last {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    last
}

/// A proxy in front of an origin whose every answer is a `BODY`-byte
/// response, after one whole response went through (what any request
/// allocates once is there), and its resident memory then.
async fn behind_a_large_response(name: &str) -> (Origin, Running, TempConfig, u64) {
    let body = Bytes::from(vec![b'x'; BODY]);
    let origin = Origin::start(
        "big",
        Script::always(Behavior::Respond { status: 200, body }),
    )
    .await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new(name, &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let whole = within(30, "a whole response", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(whole.body.len(), BODY);
    let before = settled_rss(proxy.pid()).await;
    (origin, proxy, file, before)
}

/// Once the flows have stalled (its memory settled), the growth of `pid`'s resident memory per
/// one of the `READERS` clients since `before`, at most `bound` KiB.
async fn check_growth(pid: u32, before: u64, what: &str, bound: u64) {
    let during = settled_rss(pid).await;
    let each = during.saturating_sub(before) / READERS as u64;
    eprintln!("{what}: {each} KiB each ({before} KiB before, {during} KiB during)");
    assert!(
        each <= bound,
        "{each} KiB per {what} ({before} KiB before, {during} KiB with {READERS} of them)"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_a_large_response_costs_a_bounded_amount() {
    let (origin, proxy, _file, before) = behind_a_large_response("slow-readers").await;
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(8 * 1024).unwrap();
        let mut stream = socket.connect(proxy.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        readers.push(stream);
    }
    // Every response gets as far as the buffers let it.
    origin.wait_for_requests(READERS + 1, 10).await;
    check_growth(
        proxy.pid(),
        before,
        "HTTP/1.1 client that stopped reading",
        512,
    )
    .await;
    drop(readers);
}

/// An h2c client that opens a 16 MiB window (so flow control never stops
/// the proxy), asks for `/`, and then reads nothing.
async fn h2_reader_that_stops(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let window: u32 = 16 << 20;
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = vec![0, 4];
    settings.extend_from_slice(&window.to_be_bytes());
    bytes.extend(frame(0x4, 0, 0, &settings));
    bytes.extend(frame(0x4, 0x1, 0, &[]));
    bytes.extend(frame(0x8, 0, 0, &window.to_be_bytes()));
    // :method GET, :scheme http, :path /, :authority a.test (HPACK).
    let mut head = vec![0x82, 0x86, 0x84, 0x41, 6];
    head.extend_from_slice(b"a.test");
    bytes.extend(frame(0x1, 0x5, 1, &head));
    stream.write_all(&bytes).await.unwrap();
    stream
}

#[tokio::test]
async fn an_http2_client_that_stops_reading_costs_a_bounded_amount_too() {
    let (origin, proxy, _file, before) = behind_a_large_response("slow-h2-readers").await;
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(h2_reader_that_stops(proxy.addr).await);
    }
    origin.wait_for_requests(READERS + 1, 10).await;
    check_growth(
        proxy.pid(),
        before,
        "HTTP/2 client that stopped reading",
        384,
    )
    .await;
    drop(readers);
}

/// An upstream that reads request heads and then never reads a body byte;
/// returns its address and how many requests it took.
async fn upstream_that_stops_reading() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&heads);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            while !seen.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte).await {
                    Ok(1) => seen.push(byte[0]),
                    _ => break,
                }
            }
            counted.fetch_add(1, Ordering::AcqRel);
            held.push(stream);
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn a_fast_upload_to_an_upstream_that_stops_reading_costs_a_bounded_amount() {
    use std::sync::atomic::Ordering;
    let (upstream, heads) = upstream_that_stops_reading().await;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[upstreams.app]\nservers = [\"{upstream}\"]\nwrite_timeout = \"60s\"\n"
    );
    let file = TempConfig::new("slow-upstream", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let before = settled_rss(proxy.pid()).await;
    let mut uploads = Vec::new();
    for _ in 0..READERS {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(8 * 1024).unwrap();
        let mut stream = socket.connect(proxy.addr).await.unwrap();
        uploads.push(tokio::spawn(async move {
            let head =
                format!("POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: {BODY}\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'y'; 64 * 1024];
            for _ in 0..BODY / chunk.len() {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while heads.load(Ordering::Acquire) < READERS && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(heads.load(Ordering::Acquire), READERS);
    check_growth(proxy.pid(), before, "upload stalled by its upstream", 384).await;
    for upload in uploads {
        upload.abort();
    }
}
