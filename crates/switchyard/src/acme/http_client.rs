//! How the ACME protocol reaches the CA's directory: one HTTPS connection
//! per request (a certificate takes a dozen requests, days apart), made as
//! the proxy makes one-off upstream connections (`connector::connect_once`,
//! with an [`UpstreamTls`] trusting the system's roots and the configured
//! `directory_ca`), and hyper's HTTP/1.1 client over it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::error::Result;
use crate::peer::{HttpPeer, PeerOptions};
use crate::tls::{UpstreamTls, UpstreamTlsSettings};
use crate::upstream::connector::{OneOffIo, connect_once};

/// How long connecting, the handshake and one exchange may take together.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The ACME client's HTTPS transport.
pub(super) struct DirectoryClient {
    tls: UpstreamTls,
}

impl DirectoryClient {
    /// Trusting the system's roots and, if given, the roots in `extra_ca`.
    pub(super) fn new(extra_ca: Option<&std::path::Path>) -> Result<Self> {
        let settings = UpstreamTlsSettings {
            ca_file: extra_ca.map(std::path::Path::to_path_buf),
            ..UpstreamTlsSettings::default()
        };
        Ok(DirectoryClient {
            tls: UpstreamTls::load(&settings)?,
        })
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

impl HttpClient for DirectoryClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let exchange = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(tls, req));
            match exchange.await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(instant_acme::Error::Other(e)),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer within {EXCHANGE_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}

/// Send `req` on a new connection and read the whole answer.
async fn exchange(
    tls: UpstreamTls,
    req: Request<BodyWrapper<Bytes>>,
) -> std::result::Result<BytesResponse, Failure> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri} is not an https:// URL").into());
    }
    let host = uri.host().ok_or_else(|| format!("{uri} names no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let stream = connect(&tls, host, port)
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        // Ends when the response is read and the sender dropped.
        let _ = connection.await;
    });
    let (mut parts, body) = req.into_parts();
    // HTTP/1.1 needs the Host header; the URI is sent in origin form.
    if !parts.headers.contains_key(http::header::HOST) {
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
        parts
            .headers
            .insert(http::header::HOST, http::HeaderValue::from_str(authority)?);
    }
    parts.uri = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()?;
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
    Ok(BytesResponse {
        parts,
        body: Box::new(body),
    })
}

/// A TLS connection to `host:port`, verified as `host`: each address it
/// resolves to in turn, until one answers.
async fn connect(
    tls: &UpstreamTls,
    host: &str,
    port: u16,
) -> std::result::Result<Box<dyn OneOffIo>, String> {
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let addresses = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| e.to_string())?;
    let mut failed = format!("{name} resolves to no address");
    for address in addresses {
        // Within the exchange's own timeout, as a plain connect would be.
        let options = PeerOptions {
            connect_timeout: EXCHANGE_TIMEOUT,
            ..PeerOptions::default()
        };
        let peer = HttpPeer::new(address, true, String::new())
            .with_tls(tls.clone(), name)
            .with_options(options);
        match connect_once(&peer).await {
            Ok(stream) => return Ok(stream),
            Err(e) => failed = e,
        }
    }
    Err(failed)
}
