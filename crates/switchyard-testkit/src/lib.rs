//! Switchyard's dev-only test kit: upstreams that misbehave on purpose, and a
//! small client, so integration tests can prove the proxy's failure contract
//! over real loopback sockets.
//!
//! Everything listens on and connects to `127.0.0.1` with port 0 only.
//!
//! * [`origin`]: a scripted raw-byte HTTP/1.1 upstream ([`Origin`]) that counts
//!   connections, requests, body bytes and completed bodies.
//! * [`faults`]: addresses that refuse ([`refused_addr`]) or hang
//!   ([`Blackhole`]) connection attempts.
//! * [`client`]: a hyper-based test client and a raw-bytes client.
//! * [`h2`](mod@h2): an HTTP/2 client, h2c or over TLS.
//! * [`tls`]: a private CA issuing certificates at run time, an HTTPS origin
//!   and an HTTPS client.
//! * [`upgrade`]: an upstream that switches protocols and echoes, and a client
//!   that asks for the switch.
//! * [`digest`](mod@digest): the FNV-1a 64-bit digest used to compare bodies.
//! * [`h3`](mod@h3): an HTTP/3 client.
//! * [`acme`]: Pebble, a real ACME CA, with a DNS responder answering the
//!   test's names with 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod acme;
pub mod client;
pub mod digest;
pub mod faults;
pub mod h2;
pub mod h2_origin;
pub mod h3;
pub mod origin;
pub mod otlp;
pub mod tls;
pub mod upgrade;

pub use digest::digest;
pub use faults::{Blackhole, refused_addr};
pub use origin::{Behavior, Origin, Script, SeenRequest, Stats, Step};

use std::future::Future;
use std::time::Duration;

/// Runs `fut`, panicking with "`what` did not finish within N s" if it takes
/// longer than `secs` seconds. Turns a hang into a named failure.
pub async fn within<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within {secs} s"),
    }
}

/// Waits until `condition` holds (looking every 5 ms), panicking with
/// "`what` did not happen within N s" if it takes longer than `secs`: a
/// test waits for the event it needs, never for a fixed time.
pub async fn eventually(secs: u64, what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            panic!("{what} did not happen within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
