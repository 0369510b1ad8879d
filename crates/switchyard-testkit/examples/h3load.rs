//! A small HTTP/3 load generator for `bench/http3.sh` (h2load in Debian has
//! no HTTP/3): CONNECTIONS QUIC connections, each with STREAMS requests in
//! flight at all times, GET PATH for SECONDS; prints the requests answered
//! 200, the failures, and requests per second.
//!
//!   cargo run --release -p switchyard-testkit --example h3load -- \
//!       127.0.0.1:8443 proxy.test ca.pem 4 8 10 /

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Buf;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use switchyard_testkit::h3::H3Client;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!("usage: h3load ADDR SERVER_NAME CA_PEM CONNECTIONS STREAMS SECONDS PATH");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR is ip:port");
    let name = args[2].clone();
    let connections: usize = args[4].parse().expect("CONNECTIONS");
    let streams: usize = args[5].parse().expect("STREAMS");
    let seconds: u64 = args[6].parse().expect("SECONDS");
    let path = args[7].clone();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args[3]).expect("CA_PEM") {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(load(addr, name, tls, connections, streams, seconds, path));
}

async fn load(
    addr: SocketAddr,
    name: String,
    tls: Arc<ClientConfig>,
    connections: usize,
    streams: usize,
    seconds: u64,
    path: String,
) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = H3Client::connect(addr, &tls, &name).await.expect("connect");
        for _ in 0..streams {
            let mut send = client.requester();
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            let uri = format!("https://{name}{path}");
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(&uri).body(()).unwrap();
                    let answered = async {
                        let mut stream = send.send_request(request).await.ok()?;
                        stream.finish().await.ok()?;
                        let response = stream.recv_response().await.ok()?;
                        while let Some(mut data) = stream.recv_data().await.ok()? {
                            data.advance(data.remaining());
                        }
                        Some(response.status() == 200)
                    };
                    match answered.await {
                        Some(true) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        clients.push(client);
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "requests {ok} failed {failed} seconds {elapsed:.2} rps {:.0}",
        ok as f64 / elapsed
    );
}
