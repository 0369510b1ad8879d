//! `switchyard why ID`: a request's story, asked of a running proxy's admin
//! listener (`GET /requests/ID`) and printed as the demo prints requests.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// How long `why` waits for the admin listener.
const PATIENCE: Duration = Duration::from_secs(10);

/// The story of request `id` from the proxy whose admin listener is
/// `admin`: as JSON when `json`, else in words.
pub fn run(id: &str, admin: SocketAddr, json: bool) -> Result<String, String> {
    let runtime = crate::runtime().map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (status, body) = runtime.block_on(fetch(admin, &format!("/requests/{}", encode(id))))?;
    let story: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the admin listener on {admin} sent no JSON ({e})"))?;
    if status != StatusCode::OK {
        let why = story["error"].as_str().unwrap_or("no such request");
        return Err(why.to_string());
    }
    if json {
        return Ok(format!("{story:#}"));
    }
    Ok(in_words(&story))
}

/// The story as the demo prints a request: one line for the request, one
/// per attempt.
pub fn in_words(story: &serde_json::Value) -> String {
    let text = |key: &str| story[key].as_str().unwrap_or("-").to_string();
    let attempts = story["story"].as_array().map_or(0, Vec::len);
    let mut out = format!(
        "{} {} -> {} in {} ms, {attempts} attempt(s), upstream {}\n  client {}, request ID {}\n",
        text("method"),
        text("path"),
        story["status"],
        story["duration_ms"],
        text("upstream"),
        text("client"),
        text("request_id"),
    );
    if let Some(trace) = story["trace_id"].as_str() {
        out.push_str(&format!("  trace {trace}\n"));
    }
    for line in story["story"].as_array().into_iter().flatten() {
        out.push_str(&format!("    {}\n", line.as_str().unwrap_or("")));
    }
    if let Some(error) = story["error"].as_str() {
        out.push_str(&format!("  failed: {error}\n"));
    }
    if let Some(status) = story["proxy_status"].as_str() {
        out.push_str(&format!("  Proxy-Status: {status}\n"));
    }
    for would in story["dry_run"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  dry run: {} would have {}\n",
            would["policy"].as_str().unwrap_or("-"),
            would["would"].as_str().unwrap_or("-")
        ));
    }
    out
}

/// GET `path` from `admin`: the status and the body.
async fn fetch(admin: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), String> {
    let cannot =
        |e: &dyn std::fmt::Display| format!("cannot ask the admin listener on {admin}: {e}");
    let asked = async {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| cannot(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| cannot(&e))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", admin.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| cannot(&e))?;
        let response = sender.send_request(request).await.map_err(|e| cannot(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| cannot(&e))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(PATIENCE, asked)
        .await
        .map_err(|_| cannot(&"no answer in 10 s"))?
}

/// `id` for a URL path: unreserved characters as they are, the rest
/// percent-encoded (a trusted proxy's request ID may hold `/` or `?`).
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
