//! Sticky sessions: a cookie that brings a client back to the server that
//! answered it first, while that server is usable ([`StickySessions`]).
//!
//! The cookie holds an opaque id, not the address: a keyed hash of the
//! address under a secret the process draws at start. Ids stay the same
//! across reloads; a restart (or another instance behind a balancer)
//! draws another secret, so its clients' cookies name no server and they
//! are placed afresh, with a new cookie.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue, SET_COOKIE};

use super::UpstreamGroup;
use crate::peer_addr::PeerAddr;
use crate::proxy::{RequestHeader, ResponseHeader, Session};

/// A group's sticky-session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickySessions {
    /// The cookie's name.
    pub cookie: String,
    /// How long the browser keeps it; `None`: until it closes.
    pub max_age: Option<Duration>,
    /// Sent by the browser over HTTPS only.
    pub secure: bool,
    /// Hidden from the page's scripts.
    pub http_only: bool,
}

impl StickySessions {
    /// A session cookie named `cookie`, `HttpOnly`, not `Secure`.
    pub fn new(cookie: impl Into<String>) -> StickySessions {
        StickySessions {
            cookie: cookie.into(),
            max_age: None,
            secure: false,
            http_only: true,
        }
    }

    /// The `Set-Cookie` naming `server`.
    fn set_cookie(&self, server: PeerAddr) -> Option<HeaderValue> {
        let mut value = format!("{}={:016x}; Path=/", self.cookie, id_of(server));
        if let Some(age) = self.max_age {
            value.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        if self.secure {
            value.push_str("; Secure");
        }
        if self.http_only {
            value.push_str("; HttpOnly");
        }
        value.push_str("; SameSite=Lax");
        HeaderValue::from_str(&value).ok()
    }

    /// The id the request's cookie holds, if it holds one.
    fn requested(&self, headers: &HeaderMap) -> Option<u64> {
        let value = crate::cookie::value(headers, &self.cookie)?.trim_matches('"');
        u64::from_str_radix(value, 16).ok()
    }
}

/// The opaque id of `server`.
fn id_of(server: PeerAddr) -> u64 {
    static SECRET: OnceLock<RandomState> = OnceLock::new();
    SECRET.get_or_init(RandomState::new).hash_one(server)
}

impl UpstreamGroup {
    /// The server the request's sticky cookie names, if the group has
    /// sticky sessions, the cookie names one of its servers, and that one
    /// is not in `avoid`.
    pub(super) fn sticky_server(&self, session: &Session, avoid: &[PeerAddr]) -> Option<PeerAddr> {
        let sticky = self.sticky.as_ref()?;
        let wanted = sticky.requested(&session.req_header().headers)?;
        let server = self
            .health
            .peers()
            .iter()
            .copied()
            .find(|&p| id_of(p) == wanted)?;
        (!avoid.contains(&server)).then_some(server)
    }

    /// For `upstream_request_filter`: the sticky cookie is the proxy's,
    /// not the upstream's: take it out of `Cookie`.
    pub fn strip_sticky_cookie(&self, request: &mut RequestHeader) {
        let Some(sticky) = &self.sticky else {
            return;
        };
        let name = sticky.cookie.as_str();
        let values: Vec<HeaderValue> = request.headers.get_all(COOKIE).iter().cloned().collect();
        if !values
            .iter()
            .any(|v| crate::cookie::value_in(v, name).is_some())
        {
            return;
        }
        request.headers.remove(COOKIE);
        for value in values {
            let kept: Vec<&str> = value
                .to_str()
                .unwrap_or("")
                .split(';')
                .map(str::trim)
                .filter(|pair| pair.split_once('=').is_none_or(|(key, _)| key != name))
                .filter(|pair| !pair.is_empty())
                .collect();
            if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
                && !kept.is_empty()
            {
                request.headers.append(COOKIE, value);
            }
        }
    }

    /// For `response_filter`: when the server that answered is not the
    /// one the request's cookie named (or it named none), a cookie naming
    /// it.
    pub fn sticky_response(&self, session: &Session, response: &mut ResponseHeader) {
        let Some(sticky) = &self.sticky else {
            return;
        };
        let Some(answered) = session.attempts().last().map(|a| a.peer) else {
            return;
        };
        if sticky.requested(&session.req_header().headers) == Some(id_of(answered)) {
            return;
        }
        if let Some(cookie) = sticky.set_cookie(answered) {
            response.headers.append(SET_COOKIE, cookie);
        }
    }
}
