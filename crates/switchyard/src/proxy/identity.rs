//! Who the client is, told to the upstream: `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host` (on by default, as nginx's
//! `$proxy_add_x_forwarded_for`), or RFC 7239 `Forwarded`, or both.
//!
//! Every request also gets an ID, `X-Request-Id`: the one a trusted proxy
//! sent, else a new one (32 hex digits). It goes upstream, back to the
//! client, and to `logging` (`Session::request_id`).
//!
//! What a client says of itself is believed only from a trusted proxy: when
//! the connection comes from an address in `trusted_proxies`, the incoming
//! headers are kept and this hop is appended; from anyone else they are
//! replaced, so a client cannot pass off a made-up address as its own.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Which headers carry the client's identity upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedStyle {
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` (the default).
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded: for=...;proto=...;host="..."`.
    Forwarded,
    /// Both.
    Both,
    /// Neither: the client's headers pass as they came.
    None,
}

/// How the client's identity is passed upstream.
///
/// ```
/// use switchyard::proxy::identity::{ClientAddr, ClientIdentity, ForwardedStyle};
///
/// let identity = ClientIdentity {
///     style: ForwardedStyle::XForwarded,
///     trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
/// };
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
/// // From an untrusted address the client's claim is replaced...
/// let client = ClientAddr::new("127.0.0.1:50000".parse().unwrap());
/// identity.apply(&mut headers, &client, "http", None);
/// assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
/// // ...from a trusted proxy this hop is appended.
/// let proxy = ClientAddr::new("10.0.0.9:50000".parse().unwrap());
/// identity.apply(&mut headers, &proxy, "http", None);
/// assert_eq!(headers["x-forwarded-for"], "127.0.0.1, 10.0.0.9");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Which headers to send.
    pub style: ForwardedStyle,
    /// Connections from these ranges may bring their own forwarding headers.
    pub trusted_proxies: Vec<IpNet>,
}

/// A client's address, with its IP's text for headers made once per
/// connection rather than once per request.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    addr: SocketAddr,
    text: HeaderValue,
    tls: bool,
}

impl ClientAddr {
    /// The client at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        // An address's text is always a valid header value.
        let text =
            HeaderValue::from_str(&addr.ip().to_string()).unwrap_or(HeaderValue::from_static("-"));
        ClientAddr {
            addr,
            text,
            tls: false,
        }
    }

    /// The same client, connected over TLS when `tls` is true.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Whether the client connected over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The scheme the client used: `https` over TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The address and port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The IP address.
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }
}

/// The request ID header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request ID taken from a trusted proxy.
const MAX_REQUEST_ID: usize = 200;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl ClientIdentity {
    /// Whether a connection from `client` may bring its own forwarding headers.
    pub fn trusts(&self, client: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&client))
    }

    /// The ID of a request from `client` with `headers`: the `X-Request-Id`
    /// a trusted proxy sent (printable, at most 200 bytes), else a new one.
    pub fn request_id(&self, headers: &HeaderMap, client: IpAddr) -> HeaderValue {
        let sent = headers.get(&X_REQUEST_ID).filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
        });
        let mut id = match sent {
            Some(id) if self.trusts(client) => id.clone(),
            _ => new_request_id(),
        };
        // One value per request: HTTP/2's HPACK would otherwise add each to
        // its table (evicting what repeats) and search the table for it on
        // every response. Sensitive values are never indexed.
        id.set_sensitive(true);
        id
    }

    /// Set the forwarding headers of a request from `client`, received over
    /// `proto` (`http` or `https`) for `host` (the client's `Host`).
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        client: &ClientAddr,
        proto: &'static str,
        host: Option<&HeaderValue>,
    ) {
        let trusted = self.trusts(client.ip());
        if matches!(
            self.style,
            ForwardedStyle::XForwarded | ForwardedStyle::Both
        ) {
            x_forwarded(headers, client, proto, host, trusted);
        }
        if matches!(self.style, ForwardedStyle::Forwarded | ForwardedStyle::Both) {
            forwarded(headers, client.ip(), proto, host, trusted);
        }
    }
}

/// 32 random hex digits (written by hand: `format!` cost more than the
/// rest of the request's identity together).
fn new_request_id() -> HeaderValue {
    let id = hex_digits(crate::random::next_u64(), crate::random::next_u64());
    // Hex digits only: always a valid header value.
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// `high` then `low` as 32 lower-case hex digits, two per byte.
fn hex_digits(high: u64, low: u64) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let bytes = ((u128::from(high) << 64) | u128::from(low)).to_be_bytes();
    // Each index is below 16: no bounds checks.
    for (pair, byte) in id.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    id
}

fn x_forwarded(
    headers: &mut HeaderMap,
    client: &ClientAddr,
    proto: &'static str,
    host: Option<&HeaderValue>,
    trusted: bool,
) {
    if trusted && headers.contains_key(&X_FORWARDED_FOR) {
        append(
            headers,
            X_FORWARDED_FOR,
            client.text.to_str().unwrap_or("-"),
        );
    } else {
        headers.insert(X_FORWARDED_FOR, client.text.clone());
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

fn forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: Option<&HeaderValue>,
    trusted: bool,
) {
    // RFC 7239 section 6: an IPv6 node is quoted and bracketed.
    let node = match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut element = format!("for={node};proto={proto}");
    // A host is quoted; one that would need escaping is left out.
    if let Some(host) = host.and_then(|h| h.to_str().ok())
        && !host.contains(['"', '\\'])
    {
        element.push_str(&format!(";host=\"{host}\""));
    }
    if trusted && headers.contains_key(header::FORWARDED) {
        append(headers, header::FORWARDED, &element);
    } else {
        match HeaderValue::from_str(&element) {
            Ok(value) => headers.insert(header::FORWARDED, value),
            Err(_) => headers.remove(header::FORWARDED),
        };
    }
}

/// Append `value` to the comma-separated list in `name`, as one field.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let earlier: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = format!("{}, {value}", earlier.join(", "));
    // Built from an address, a fixed protocol and a header value already
    // valid: always a valid header value; if not, the header is dropped.
    match HeaderValue::from_str(&joined) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const LOCAL: &str = "127.0.0.1";

    fn local() -> ClientAddr {
        ClientAddr::new(SocketAddr::new(LOCAL.parse().unwrap(), 50000))
    }

    #[test]
    fn an_untrusted_client_cannot_spoof_its_address_proto_or_host() {
        let identity = ClientIdentity::default();
        let mut h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "bank.test"),
        ]);
        let host = HeaderValue::from_static("app.test");
        identity.apply(&mut h, &local(), "http", Some(&host));
        assert_eq!(h["x-forwarded-for"], LOCAL);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.test");
        assert!(!h.contains_key("forwarded"));
    }

    #[test]
    fn a_trusted_proxy_keeps_its_chain_and_this_hop_is_appended() {
        let identity = ClientIdentity {
            style: ForwardedStyle::Both,
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        };
        let mut h = headers(&[
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-for", "10.4.5.6"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=10.1.2.3;proto=https"),
        ]);
        identity.apply(&mut h, &local(), "http", None);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3, 10.4.5.6, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(
            h["forwarded"],
            "for=10.1.2.3;proto=https, for=127.0.0.1;proto=http"
        );
    }

    #[test]
    fn forwarded_quotes_ipv6_and_the_host() {
        let identity = ClientIdentity {
            style: ForwardedStyle::Forwarded,
            trusted_proxies: Vec::new(),
        };
        let mut h = headers(&[("forwarded", "for=6.6.6.6")]);
        let host = HeaderValue::from_static("app.test:8080");
        identity.apply(
            &mut h,
            &ClientAddr::new("[::1]:50000".parse().unwrap()),
            "https",
            Some(&host),
        );
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";proto=https;host=\"app.test:8080\""
        );
        assert!(!h.contains_key("x-forwarded-for"));
    }

    #[test]
    fn a_request_id_is_kept_only_from_a_trusted_proxy() {
        let trusting = ClientIdentity {
            style: ForwardedStyle::XForwarded,
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let h = headers(&[("x-request-id", "abc-123")]);
        let from_proxy = trusting.request_id(&h, "10.0.0.1".parse().unwrap());
        assert_eq!(from_proxy, "abc-123");
        let from_client = trusting.request_id(&h, LOCAL.parse().unwrap());
        assert_ne!(from_client, "abc-123");
        assert_eq!(from_client.len(), 32);
        assert!(from_client.as_bytes().iter().all(u8::is_ascii_hexdigit));
        let other = trusting.request_id(&HeaderMap::new(), LOCAL.parse().unwrap());
        assert_ne!(other, from_client, "each request gets its own");
        let odd = headers(&[("x-request-id", "has space")]);
        assert_ne!(
            trusting.request_id(&odd, "10.0.0.1".parse().unwrap()),
            "has space"
        );
    }

    #[test]
    fn request_ids_are_the_random_bits_in_hex() {
        let id = super::hex_digits(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        assert_eq!(&id, b"0123456789abcdeffedcba9876543210");
        assert_eq!(
            &super::hex_digits(0, u64::MAX),
            b"0000000000000000ffffffffffffffff"
        );
    }

    #[test]
    fn none_leaves_the_headers_as_they_came() {
        let identity = ClientIdentity {
            style: ForwardedStyle::None,
            trusted_proxies: Vec::new(),
        };
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        identity.apply(&mut h, &local(), "http", None);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6");
    }
}
