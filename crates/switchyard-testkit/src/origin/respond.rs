//! Performing one [`Behavior`] on a connection: writing the response head and
//! body (or the misbehaviour instead), and saying whether the connection
//! stays open.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::script::Behavior;
use super::wire::Conn;

/// What happens to the connection after a behaviour was performed.
pub(super) enum After {
    /// Ready for the next request (unless the client asked to close).
    KeepOpen,
    /// The connection is finished; drop it.
    Closed,
}

/// What a behaviour needs to know about the exchange.
pub(super) struct Exchange<'a> {
    /// The origin's name, for `x-origin` and default bodies.
    pub(super) origin: &'a str,
    /// The request was `HEAD`: send no body bytes.
    pub(super) head_only: bool,
    /// The client asked to close after this exchange.
    pub(super) close: bool,
    /// The decoded request body, for `Echo`.
    pub(super) request_body: &'a [u8],
}

/// How the response body is framed in the head.
enum Framing {
    Length(usize),
    Chunked,
    NoBody,
}

/// The body bytes the truncating behaviours send before giving up.
const PARTIAL: [u8; 100] = [b'x'; 100];
/// The Content-Length the truncating behaviours promise.
const PROMISED: usize = 1000;

/// Performs `behavior`; an I/O error ends the connection.
pub(super) async fn perform(conn: &mut Conn, behavior: Behavior, ex: &Exchange<'_>) -> After {
    let mut behavior = behavior;
    loop {
        match behavior {
            Behavior::Slow { delay, then } => {
                tokio::time::sleep(delay).await;
                behavior = *then;
            }
            other => return perform_now(conn, other, ex).await.unwrap_or(After::Closed),
        }
    }
}

async fn perform_now(conn: &mut Conn, behavior: Behavior, ex: &Exchange<'_>) -> io::Result<After> {
    match behavior {
        Behavior::Respond { status, body } => {
            respond(conn, ex, status, &body).await?;
            Ok(After::KeepOpen)
        }
        Behavior::Echo => {
            send_whole(conn, ex, 200, ex.request_body).await?;
            Ok(After::KeepOpen)
        }
        Behavior::Chunked { chunks, gap } => {
            send_chunked(conn, ex, &chunks, gap).await?;
            Ok(After::KeepOpen)
        }
        Behavior::Silence => {
            conn.drain_until_eof().await;
            Ok(After::Closed)
        }
        Behavior::CloseBeforeHead => {
            conn.finish().await;
            Ok(After::Closed)
        }
        Behavior::ResetBeforeHead => {
            conn.reset_on_drop();
            Ok(After::Closed)
        }
        Behavior::ResetAfterHead => {
            send_partial(conn, ex, Framing::Length(PROMISED), &PARTIAL).await?;
            conn.reset_on_drop();
            Ok(After::Closed)
        }
        Behavior::TruncatedLength => {
            send_partial(conn, ex, Framing::Length(PROMISED), &PARTIAL).await?;
            conn.finish().await;
            Ok(After::Closed)
        }
        Behavior::TruncatedChunked => {
            send_partial(conn, ex, Framing::Chunked, b"5\r\nhello\r\n6\r\n world\r\n").await?;
            conn.finish().await;
            Ok(After::Closed)
        }
        Behavior::Garbage => {
            conn.write(b"garbage\r\n\r\n").await?;
            conn.finish().await;
            Ok(After::Closed)
        }
        Behavior::Raw { bytes } => {
            conn.write(&bytes).await?;
            conn.finish().await;
            Ok(After::Closed)
        }
        Behavior::RawKeepOpen { bytes } => {
            conn.write(&bytes).await?;
            Ok(After::KeepOpen)
        }
        Behavior::CloseDelimited { body } => {
            let mut out = head(200, ex, &Framing::NoBody);
            if !ex.head_only {
                out.extend_from_slice(&body);
            }
            conn.write(&out).await?;
            conn.finish().await;
            Ok(After::Closed)
        }
        Behavior::IdleKill { after } => {
            respond(conn, ex, 200, &Bytes::new()).await?;
            if ex.close || conn.wait_for_more(after).await {
                Ok(After::KeepOpen)
            } else {
                conn.finish().await;
                Ok(After::Closed)
            }
        }
        // `perform` unwraps every `Slow` before calling this.
        Behavior::Slow { then, .. } => Box::pin(perform_now(conn, *then, ex)).await,
    }
}

/// `Respond`: an empty body stands for the origin's name.
async fn respond(conn: &mut Conn, ex: &Exchange<'_>, status: u16, body: &Bytes) -> io::Result<()> {
    let body: &[u8] = if body.is_empty() {
        ex.origin.as_bytes()
    } else {
        body
    };
    send_whole(conn, ex, status, body).await
}

/// A complete response with Content-Length framing (or none for statuses
/// that have no body).
async fn send_whole(
    conn: &mut Conn,
    ex: &Exchange<'_>,
    status: u16,
    body: &[u8],
) -> io::Result<()> {
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::NoBody
    } else {
        Framing::Length(body.len())
    };
    let mut out = head(status, ex, &framing);
    if !bodiless && !ex.head_only {
        out.extend_from_slice(body);
    }
    conn.write(&out).await
}

/// A 200 chunked response, one chunk per non-empty element, `gap` apart.
async fn send_chunked(
    conn: &mut Conn,
    ex: &Exchange<'_>,
    chunks: &[Bytes],
    gap: Duration,
) -> io::Result<()> {
    conn.write(&head(200, ex, &Framing::Chunked)).await?;
    if ex.head_only {
        return Ok(());
    }
    for (i, chunk) in chunks.iter().filter(|c| !c.is_empty()).enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        conn.write(&out).await?;
    }
    conn.write(b"0\r\n\r\n").await
}

/// A 200 head with `framing`, then `partial` raw body bytes (none for HEAD).
async fn send_partial(
    conn: &mut Conn,
    ex: &Exchange<'_>,
    framing: Framing,
    partial: &[u8],
) -> io::Result<()> {
    let mut out = head(200, ex, &framing);
    if !ex.head_only {
        out.extend_from_slice(partial);
    }
    conn.write(&out).await
}

/// The status line and headers, ending with the blank line.
fn head(status: u16, ex: &Exchange<'_>, framing: &Framing) -> Vec<u8> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nx-origin: {}\r\n", ex.origin);
    match framing {
        Framing::Length(len) => out.push_str(&format!("content-length: {len}\r\n")),
        Framing::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
        Framing::NoBody => {}
    }
    if ex.close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}
