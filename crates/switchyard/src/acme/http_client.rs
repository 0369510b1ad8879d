//! How the ACME protocol reaches the CA's directory: one HTTPS connection
//! per request (a certificate takes a dozen requests, days apart), on
//! hyper's HTTP/1.1 client over tokio-rustls, trusting the system's roots
//! and the configured `directory_ca`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::Result;
use crate::tls::{provider, roots_from_file, system_roots, tls_config_error};

/// How long connecting, the handshake and one exchange may take together.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The ACME client's HTTPS transport.
pub(super) struct DirectoryClient {
    tls: TlsConnector,
}

impl DirectoryClient {
    /// Trusting the system's roots and, if given, the roots in `extra_ca`.
    pub(super) fn new(extra_ca: Option<&std::path::Path>) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.extend(system_roots().roots.iter().cloned());
        if let Some(path) = extra_ca {
            roots.extend(roots_from_file(path)?.roots);
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_config_error("choosing TLS versions".into(), e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(DirectoryClient {
            tls: TlsConnector::from(Arc::new(config)),
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
    tls: TlsConnector,
    req: Request<BodyWrapper<Bytes>>,
) -> std::result::Result<BytesResponse, Failure> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri} is not an https:// URL").into());
    }
    let host = uri.host().ok_or_else(|| format!("{uri} names no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((name, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is not a TLS server name: {e}"))?;
    let stream = tls
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
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
