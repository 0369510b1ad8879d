//! The driver's state is what a parked connection's task keeps for as long
//! as the connection lives: idle keep-alive connections cost about this
//! much each, so it has a budget.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;

use http_body_util::Empty;
use hyper::service::service_fn;

use super::*;

/// Bytes a connection's driver may keep with this test's service, which
/// holds nothing: 664 when written. With the binary's service (104 bytes)
/// the driver keeps 872; the `async fn` it replaced kept 1,648, and with
/// a tunnel's state inline 3,432.
const DRIVER_BUDGET: usize = 750;

#[tokio::test]
async fn a_connection_driver_keeps_little_state() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let activity = Arc::new(Activity::default());
    let stream = ClientStream::new(Prefixed::new(tcp), Duration::from_secs(5), activity);
    let service = service_fn(|_| {
        std::future::ready(Ok::<_, Infallible>(http::Response::new(
            Empty::<Bytes>::new(),
        )))
    });
    let builder = http1::Builder::new();
    let counts = ConnectionCounts::default();
    let (_stop, stop) = watch::channel(false);
    let driving = Driving {
        park_idle_after: Some(Duration::from_secs(1)),
        idle_timeout: Duration::from_secs(60),
    };
    let driver = drive(&builder, stream, service, driving, stop, &counts);
    let size = std::mem::size_of_val(&driver);
    assert!(
        size <= DRIVER_BUDGET,
        "a connection's driver keeps {size} bytes, over its budget of {DRIVER_BUDGET}"
    );
}
