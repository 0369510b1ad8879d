//! One HTTP/3 connection: its handshake, then its requests, each on a task
//! of its own, until the client closes it or the server stops.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::debug;

use super::{Admitted, EveryConnection, exchange};
use crate::proxy::ProxyHttp;
use crate::proxy::identity::ClientAddr;

/// HTTP/3's error code for a peer that asks for too much (RFC 9114).
const H3_EXCESSIVE_LOAD: u32 = 0x0107;

/// Serve `admitted` until it closes, or until `stop`: then send GOAWAY and
/// let its requests in flight finish.
pub(super) async fn serve<P: ProxyHttp>(
    every: Arc<EveryConnection<P>>,
    admitted: Admitted<P>,
    mut stop: watch::Receiver<bool>,
) {
    let Admitted {
        connecting,
        client,
        handshake,
    } = admitted;
    let handshook = tokio::time::timeout(every.handshake_timeout, connecting).await;
    drop(handshake);
    let connection = match handshook {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            every.counts.handshake_failed();
            debug!(client = %client, error = %e, "HTTP/3 handshake with a client failed");
            return;
        }
        Err(_) => {
            every.counts.handshake_failed();
            debug!(client = %client, "no HTTP/3 handshake within the handshake timeout");
            return;
        }
    };
    let Some(_slot) = every.claim(client.ip()) else {
        debug!(client = %client, "HTTP/3: closed, the client has max_connections_per_client open");
        every.counts.refused_per_client_now();
        connection.close(
            quinn::VarInt::from_u32(H3_EXCESSIVE_LOAD),
            b"too many connections",
        );
        return;
    };
    let _open = every.counts.opened();
    let built = h3::server::builder()
        .max_field_section_size(every.max_field_section_size)
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await;
    let mut h3 = match built {
        Ok(h3) => h3,
        Err(e) => {
            debug!(client = %client, error = %e, "HTTP/3 connection setup failed");
            return;
        }
    };
    let client = ClientAddr::new(client).with_tls(true);
    // Dropped with the connection: a request whose client went away is
    // cancelled, and so is its upstream request.
    let mut requests = JoinSet::new();
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    requests.spawn(exchange::serve(Arc::clone(&every), resolver, client.clone()));
                }
                // The client said GOAWAY and its requests are done.
                Ok(None) => break,
                Err(e) => {
                    debug!(client = %client.addr(), error = %e, "HTTP/3 connection ended");
                    return;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            _ = async { stop.wait_for(|stopping| *stopping).await.is_ok() } => {
                // GOAWAY: no new requests; those in flight go on.
                let _ = h3.shutdown(0).await;
                break;
            }
        }
    }
    while requests.join_next().await.is_some() {}
}
