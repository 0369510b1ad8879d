//! The admin listener's one write: `PUT /upstreams/NAME/servers/ADDR/state`
//! with a body of `ready`, `drain` or `maint` (HAProxy's words; see
//! `switchyard::health::AdminState`).
//!
//! Who may write: with `[server] admin_token_file`, every write carries
//! `Authorization: Bearer TOKEN` (a missing or wrong one gets 401 and a
//! warning naming the client); without it, writes are allowed only when
//! the admin address is a loopback one (`switchyard check` refuses a
//! non-loopback admin address without a token file) and the request's
//! `Host` names a loopback address (a browser page that reached the
//! listener through DNS rebinding sends its own name).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;
use switchyard::health::AdminState;
use tracing::warn;

use super::{Admin, decode, text};

/// The most bytes a state body may have.
const MAX_BODY: usize = 64;

/// Answer a `PUT` from `client`.
pub(super) async fn put(
    admin: &Admin,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<Full<Bytes>> {
    let view = admin.current();
    if let Some(refused) = refuse_unauthorized(admin, &view, &request, client) {
        return refused;
    }
    let Some((group, server)) = target(request.uri().path()) else {
        return json_answer(
            StatusCode::NOT_FOUND,
            json!({ "error": "the only write is PUT /upstreams/NAME/servers/ADDR/state" }),
        );
    };
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return json_answer(
                StatusCode::BAD_REQUEST,
                json!({ "error": "the body is one word: ready, drain or maint" }),
            );
        }
    };
    let state = match std::str::from_utf8(&body)
        .map_err(|_| "the body is not text".to_string())
        .and_then(|text| text.parse::<AdminState>().map_err(|e| e.to_string()))
    {
        Ok(state) => state,
        Err(why) => return json_answer(StatusCode::BAD_REQUEST, json!({ "error": why })),
    };
    let Some(found) = view.groups.iter().find(|g| g.name() == group) else {
        return json_answer(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no upstream group {group:?}") }),
        );
    };
    // Only a Unix path some config named: a request must not intern one.
    let Some(addr) = switchyard::PeerAddr::find(&server) else {
        return json_answer(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("{server:?} is not a server address (ip:port or unix:/path)") }),
        );
    };
    let health = found.health();
    let was = health.admin_state(addr);
    if !health.set_admin_state(addr, state, Instant::now()) {
        return json_answer(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("upstream {group:?} has no server {addr}") }),
        );
    }
    eprintln!(
        "switchyard: admin: upstream {group} server {addr}: {was} -> {state} (asked by {client})"
    );
    json_answer(
        StatusCode::OK,
        json!({ "upstream": group, "server": addr.to_string(), "state": state.as_str(), "was": was.as_str() }),
    )
}

/// 401 for a missing or wrong token (logged), 403 for a write without a
/// token on a non-loopback admin address; `None` when the write may go on.
fn refuse_unauthorized(
    admin: &Admin,
    view: &super::View,
    request: &Request<Incoming>,
    client: SocketAddr,
) -> Option<Response<Full<Bytes>>> {
    match &view.token {
        Some(token) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .map_or(&[][..], |v| v.as_bytes());
            if token.admits(presented) {
                return None;
            }
            warn!(client = %client, path = %request.uri().path(), "admin write refused: missing or wrong token");
            let mut refused = json_answer(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "admin writes need Authorization: Bearer TOKEN (the token in [server] admin_token_file)" }),
            );
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            Some(refused)
        }
        None if admin.loopback && names_loopback(request) => None,
        // A browser page can reach a loopback listener through DNS
        // rebinding, under its own name in Host.
        None if admin.loopback => Some(json_answer(
            StatusCode::FORBIDDEN,
            json!({ "error": "admin writes without a token need a Host naming a loopback address (127.0.0.1, [::1] or localhost)" }),
        )),
        None => Some(json_answer(
            StatusCode::FORBIDDEN,
            json!({ "error": "admin writes on a non-loopback address need [server] admin_token_file" }),
        )),
    }
}

/// Whether the request's `Host` names a loopback address (with or
/// without a port): `127.x.x.x`, `[::1]` or `localhost`.
fn names_loopback(request: &Request<Incoming>) -> bool {
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `NAME` and `ADDR` of `/upstreams/NAME/servers/ADDR/state`.
fn target(path: &str) -> Option<(String, String)> {
    let mut parts = path.strip_prefix("/upstreams/")?.split('/');
    let (group, servers, server, state) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if servers != "servers" || state != "state" || parts.next().is_some() || group.is_empty() {
        return None;
    }
    Some((decode(group), decode(server)))
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    text(status, format!("{body}\n"), "application/json")
}
