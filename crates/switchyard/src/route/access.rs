//! Who may use a route, by client address: [`AccessControl`].
//!
//! The address is the client's after trusted proxies: when the connection
//! comes from one (`trusted_proxies`), `X-Forwarded-For` is read from the
//! right, past every trusted address, and the first other one is the
//! client (nginx's `real_ip_recursive`). A client cannot pass itself off as
//! another: what it writes there itself is left of the entries the trusted
//! proxies appended, and only a trusted proxy's word is read.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::HeaderName;
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A route's `allow` and `deny` lists.
///
/// `deny` is looked at first: a client in it is refused. Then, if `allow`
/// is not empty, only clients in it pass; with `allow` empty, everyone
/// not denied does.
///
/// ```
/// use switchyard::route::AccessControl;
///
/// let access = AccessControl {
///     allow: vec!["10.0.0.0/8".parse().unwrap()],
///     deny: vec!["10.9.0.0/16".parse().unwrap()],
///     trusted_proxies: Vec::new(),
/// };
/// assert!(access.permits("10.1.2.3".parse().unwrap()));
/// assert!(!access.permits("10.9.0.1".parse().unwrap()));
/// assert!(!access.permits("192.168.1.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessControl {
    /// Only these clients pass (everyone, when empty).
    pub allow: Vec<IpNet>,
    /// These clients never pass.
    pub deny: Vec<IpNet>,
    /// Connections from these may name the client in `X-Forwarded-For`.
    pub trusted_proxies: Vec<IpNet>,
}

impl AccessControl {
    /// Whether a client at `ip` may use the route.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`: `peer`
    /// itself unless it is a trusted proxy; then the rightmost address of
    /// `X-Forwarded-For` that is not a trusted proxy (the leftmost, if all
    /// are). An entry that is not an address ends the walk at the last
    /// trusted one: nothing left of it can be believed.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_behind(peer, headers, &self.trusted_proxies)
    }
}

/// The client of a request that came from `peer` with `headers`, read
/// past `trusted` proxies: see [`AccessControl::client_ip`].
pub(super) fn client_behind(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let trusts = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !trusts(&client) {
        return client;
    }
    let chain: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in chain.iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusts(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::AccessControl;

    fn headers(xff: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for value in xff {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_read_past_trusted_proxies_only() {
        let access = AccessControl {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..AccessControl::default()
        };
        let chain = headers(&["1.2.3.4, 5.6.7.8", "10.0.0.2"]);
        // From a trusted proxy: past 10.0.0.2, the client is 5.6.7.8 (what
        // it claims further left is not believed).
        let client = access.client_ip("10.0.0.1".parse().unwrap(), &chain);
        assert_eq!(client.to_string(), "5.6.7.8");
        // From anyone else, the header is ignored.
        let direct = access.client_ip("9.9.9.9".parse().unwrap(), &chain);
        assert_eq!(direct.to_string(), "9.9.9.9");
        // A garbled entry ends the walk at the last trusted address.
        let garbled = headers(&["1.2.3.4, junk, 10.0.0.3"]);
        let client = access.client_ip("10.0.0.1".parse().unwrap(), &garbled);
        assert_eq!(client.to_string(), "10.0.0.3");
    }

    #[test]
    fn deny_wins_and_an_empty_allow_lets_everyone_else_in() {
        let access = AccessControl {
            deny: vec!["192.0.2.0/24".parse().unwrap()],
            ..AccessControl::default()
        };
        assert!(!access.permits("192.0.2.7".parse().unwrap()));
        assert!(access.permits("198.51.100.1".parse().unwrap()));
        // An IPv4 client seen as IPv4-mapped IPv6 is matched as IPv4.
        assert!(!access.permits("::ffff:192.0.2.7".parse().unwrap()));
    }
}
