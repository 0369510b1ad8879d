//! The HTTP version a group speaks to its servers: how its servers are
//! written (`http://`, `https://`, `h2c://`) and `[upstreams.NAME] protocol`.
//!
//! | servers | `protocol = "auto"` (default) | `"http1"` | `"h2"` |
//! |---|---|---|---|
//! | `HOST:PORT` or `http://` | HTTP/1.1 | HTTP/1.1 | h2c (prior knowledge) |
//! | `https://` | ALPN `h2` then `http/1.1` | HTTP/1.1 | HTTP/2 (ALPN `h2` only) |
//! | `h2c://` | h2c | an error | h2c |

use serde::{Deserialize, Serialize};
use switchyard::UpstreamProtocol;

use super::{ConfigError, Source};

/// How a server is written: its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `HOST:PORT` or `http://HOST:PORT`.
    Http,
    /// `https://HOST:PORT`.
    Https,
    /// `h2c://HOST:PORT`: HTTP/2 over cleartext.
    H2c,
}

impl Scheme {
    /// Split a known scheme off `text`; without one, the whole text is
    /// cleartext HTTP.
    pub(super) fn split(text: &str) -> (Scheme, &str) {
        let text = text.trim();
        for (prefix, scheme) in [
            ("https://", Scheme::Https),
            ("http://", Scheme::Http),
            ("h2c://", Scheme::H2c),
        ] {
            let matches = text
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
            if matches {
                return (scheme, &text[prefix.len()..]);
            }
        }
        (Scheme::Http, text)
    }
}

/// `protocol` in `[upstreams.NAME]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolName {
    /// HTTP/2 over TLS when the server offers it; else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (h2 by ALPN over TLS, h2c over cleartext).
    H2,
}

/// The version a group of `scheme` servers speaks, or an error at `key`.
pub(super) fn group_protocol(
    source: &Source<'_>,
    key: &str,
    scheme: Scheme,
    name: ProtocolName,
) -> Result<UpstreamProtocol, ConfigError> {
    Ok(match (scheme, name) {
        (Scheme::H2c, ProtocolName::Http1) => {
            let message = "the servers are h2c:// (HTTP/2); remove protocol or write them http://";
            return Err(source.error(None, &format!("{key}.protocol"), message));
        }
        (Scheme::H2c, _) | (_, ProtocolName::H2) => UpstreamProtocol::Http2,
        (_, ProtocolName::Http1) | (Scheme::Http, ProtocolName::Auto) => UpstreamProtocol::Http1,
        (Scheme::Https, ProtocolName::Auto) => UpstreamProtocol::Auto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_and_protocol_speaks_as_the_table_says() {
        use ProtocolName::{Auto, H2, Http1};
        use UpstreamProtocol as P;
        let source = Source {
            file: "test.toml",
            text: "",
        };
        let cases = [
            (Scheme::Http, Auto, P::Http1),
            (Scheme::Http, Http1, P::Http1),
            (Scheme::Http, H2, P::Http2),
            (Scheme::Https, Auto, P::Auto),
            (Scheme::Https, Http1, P::Http1),
            (Scheme::Https, H2, P::Http2),
            (Scheme::H2c, Auto, P::Http2),
            (Scheme::H2c, H2, P::Http2),
        ];
        for (scheme, name, want) in cases {
            let got = group_protocol(&source, "upstreams.app", scheme, name).unwrap();
            assert_eq!(got, want, "{scheme:?} {name:?}");
        }
        let e = group_protocol(&source, "upstreams.app", Scheme::H2c, Http1).unwrap_err();
        assert!(e.to_string().contains("upstreams.app.protocol"), "{e}");
    }

    #[test]
    fn schemes_are_split_off_whatever_their_case() {
        assert_eq!(Scheme::split(" HTTPS://a:1"), (Scheme::Https, "a:1"));
        assert_eq!(Scheme::split("http://a:1"), (Scheme::Http, "a:1"));
        assert_eq!(
            Scheme::split("h2c://127.0.0.1:9"),
            (Scheme::H2c, "127.0.0.1:9")
        );
        assert_eq!(Scheme::split("127.0.0.1:9"), (Scheme::Http, "127.0.0.1:9"));
        assert_eq!(Scheme::split("ftp://a:1"), (Scheme::Http, "ftp://a:1"));
    }
}
