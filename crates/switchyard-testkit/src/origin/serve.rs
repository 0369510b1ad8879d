//! The per-connection loop of an origin: read a request, record it, ask the
//! script what to do, do it, and keep the connection alive or close it.

use std::sync::Arc;

use http::Method;
use tokio::net::TcpStream;

use super::SeenRequest;
use super::Shared;
use super::respond::{self, After, Exchange};
use super::script::Step;
use super::wire::{Conn, Framing, Head};
use crate::digest::digest;

/// Serves connection number `connection` until either side ends it.
pub(super) async fn serve(stream: TcpStream, connection: usize, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    let mut index_on_connection = 0;
    loop {
        let Some(head) = conn.read_head().await else {
            return;
        };
        let global_index = shared.begin_request();
        if head.expect_continue
            && has_body(&head)
            && conn.write(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
        {
            return;
        }
        let body = conn
            .read_body(&head.framing, &|n| shared.add_body_bytes(n))
            .await;
        shared.record(SeenRequest {
            method: head.method.clone(),
            path: head.path.clone(),
            headers: head.headers.clone(),
            body_len: body.bytes.len() as u64,
            body_complete: body.complete,
            digest: digest(&body.bytes),
            connection,
            index_on_connection,
            global_index,
        });
        if !body.complete {
            return;
        }
        let step = Step {
            connection,
            index_on_connection,
            global_index,
            method: head.method.clone(),
            path: head.path,
        };
        let behavior = shared.script.choose(&step);
        let exchange = Exchange {
            origin: &shared.name,
            head_only: head.method == Method::HEAD,
            close: head.close,
            request_body: &body.bytes,
        };
        match respond::perform(&mut conn, behavior, &exchange).await {
            After::KeepOpen if !head.close => {}
            After::KeepOpen => {
                conn.finish().await;
                return;
            }
            After::Closed => return,
        }
        index_on_connection += 1;
    }
}

fn has_body(head: &Head) -> bool {
    match head.framing {
        Framing::Length(n) => n > 0,
        Framing::Chunked => true,
    }
}
