//! Routes the proxy answers itself, with nothing sent upstream: a
//! [`Redirect`] or a [`FixedResponse`] ([`Answer`]), and the server-wide
//! [`HttpsRedirect`] of cleartext requests.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::proxy::RequestHeader;
use crate::proxy::respond::own_answer;

/// The `Proxy-Status` of the answer to a request that cannot be
/// redirected: it named no host, or one that is not a host name.
const NO_HOST: &str = "switchyard; error=http_request_error; details=\"redirect-host\"";

/// What a route answers with.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A redirect to a URL made from the request.
    Redirect(Redirect),
    /// A fixed status, body and content type.
    Respond(FixedResponse),
}

impl Answer {
    /// The answer to `head`, which came over TLS when `tls` is true.
    pub fn response(&self, head: &RequestHeader, tls: bool) -> Response<Bytes> {
        match self {
            Answer::Redirect(redirect) => redirect.response(head, tls),
            Answer::Respond(fixed) => fixed.response(),
        }
    }
}

/// A fixed answer: `respond = { status = 200, body = "ok\n" }`.
#[derive(Debug, Clone)]
pub struct FixedResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
    /// Its `Content-Type`, if any.
    pub content_type: Option<HeaderValue>,
}

impl FixedResponse {
    /// The response.
    pub fn response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.body.clone());
        *response.status_mut() = self.status;
        if let Some(kind) = &self.content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, kind.clone());
        }
        response
    }
}

/// A redirect: its status and the URL it sends the client to, a template
/// in which `{scheme}` (`http` or `https`), `{host}` (the request's host,
/// without its port), `{path}` (its path and query) and `{uri}` (the same,
/// by nginx's name) are replaced.
///
/// ```
/// use switchyard::route::Redirect;
///
/// let redirect = Redirect::new("https://{host}/new{path}", 308).unwrap();
/// let head = http::Request::get("/old?x=1").header("host", "example.com:8080").body(()).unwrap();
/// let response = redirect.response(&head.into_parts().0, false);
/// assert_eq!(response.status(), 308);
/// assert_eq!(response.headers()["location"], "https://example.com/new/old?x=1");
/// ```
#[derive(Debug, Clone)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Scheme,
    Host,
    Path,
}

impl Redirect {
    /// A redirect with `status` to `to`; an error says what is wrong with
    /// either.
    pub fn new(to: &str, status: u16) -> Result<Redirect, String> {
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Err(format!(
                "{status} is not a redirect: use 301, 302, 303, 307 or 308"
            ));
        }
        let status = StatusCode::from_u16(status).map_err(|e| e.to_string())?;
        let pieces = template(to)?;
        let fixed: String = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                _ => "x",
            })
            .collect();
        HeaderValue::from_str(&fixed)
            .map_err(|_| format!("{to:?} holds characters a Location header cannot"))?;
        if pieces.is_empty() {
            return Err("an empty target: write a URL or a path".to_string());
        }
        Ok(Redirect { status, pieces })
    }

    /// The redirect for `head`, which came over TLS when `tls` is true;
    /// `400` if the template needs a host the request does not give.
    pub fn response(&self, head: &RequestHeader, tls: bool) -> Response<Bytes> {
        match self.location(head, tls) {
            Some(location) => redirect_to(self.status, location),
            None => own_answer(StatusCode::BAD_REQUEST, "no host to redirect to", NO_HOST),
        }
    }

    fn location(&self, head: &RequestHeader, tls: bool) -> Option<HeaderValue> {
        let mut url = String::with_capacity(64);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => url.push_str(text),
                Piece::Scheme => url.push_str(if tls { "https" } else { "http" }),
                Piece::Host => url.push_str(request_host(head)?),
                Piece::Path => url.push_str(path_and_query(head)),
            }
        }
        // A path of `//evil.example` must not become a URL of another host.
        if url.starts_with("//") || url.starts_with("/\\") {
            let rest = url.trim_start_matches(['/', '\\']);
            url = format!("/{rest}");
        }
        HeaderValue::from_str(&url).ok()
    }
}

/// Every cleartext request answered `308` to the same URL over HTTPS
/// (`[server] https_redirect`), but for paths under `except`.
#[derive(Debug, Clone, Default)]
pub struct HttpsRedirect {
    /// The HTTPS listener's port, written in the URL when it is not 443.
    pub port: u16,
    /// Path prefixes served as they are (ACME's
    /// `/.well-known/acme-challenge/`).
    pub except: Vec<String>,
}

impl HttpsRedirect {
    /// The redirect for `head`, unless its path is excepted.
    pub fn response(&self, head: &RequestHeader) -> Option<Response<Bytes>> {
        let path = head.uri.path();
        if self.except.iter().any(|prefix| path.starts_with(prefix)) {
            return None;
        }
        let Some(host) = request_host(head) else {
            let refused = own_answer(StatusCode::BAD_REQUEST, "no host to redirect to", NO_HOST);
            return Some(refused);
        };
        let port = match self.port {
            443 => String::new(),
            port => format!(":{port}"),
        };
        let url = format!("https://{host}{port}{}", path_and_query(head));
        let location = HeaderValue::from_str(&url).ok()?;
        Some(redirect_to(StatusCode::PERMANENT_REDIRECT, location))
    }
}

fn redirect_to(status: StatusCode, location: HeaderValue) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// The request's host without its port, if it names one that is a host
/// name or an address (`[::1]` kept in brackets).
pub(super) fn request_host(head: &RequestHeader) -> Option<&str> {
    let authority = sent_authority(head)?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, at)| at);
    let host = match authority.strip_prefix('[') {
        Some(v6) => &authority[..v6.find(']')? + 2],
        None => authority.split(':').next()?,
    };
    let fine =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':');
    (!host.is_empty() && host.bytes().all(fine)).then_some(host)
}

/// The host (and port) the request named, as sent: the request target's
/// authority, else `Host`.
pub(super) fn sent_authority(head: &RequestHeader) -> Option<&str> {
    match head.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => head.headers.get(header::HOST)?.to_str().ok(),
    }
}

fn path_and_query(head: &RequestHeader) -> &str {
    head.uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// `to` in pieces; an unknown `{name}` or an unclosed `{` is an error.
fn template(to: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = to;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{to:?}: a {{ without its }}"));
        };
        pieces.push(match &rest[open + 1..open + close] {
            "scheme" => Piece::Scheme,
            "host" => Piece::Host,
            "path" | "uri" => Piece::Path,
            other => {
                return Err(format!(
                    "{to:?}: unknown {{{other}}}; use {{scheme}}, {{host}}, {{path}} or {{uri}}"
                ));
            }
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests;
