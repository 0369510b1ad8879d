//! TLS for tests: a private CA that issues certificates at run time
//! ([`TestCa`]), an HTTPS origin ([`TlsOrigin`]) and an HTTPS client
//! ([`get`], [`client_config`]). No key is ever committed: every test makes
//! its own, in a temporary directory removed when the value drops.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::client::{Collected, KeepAlive, build, describe};

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn new(what: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("switchyard-test-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_path: PathBuf,
    _dir: TempDir,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to a PEM file.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = TempDir::new("ca");
        let cert_path = dir.0.join("ca.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            cert_path,
            _dir: dir,
        }
    }

    /// The CA's certificate as a PEM file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `names` (DNS names or IP addresses), valid now.
    pub fn issue(&self, names: &[&str]) -> TestCert {
        self.issue_with(names, |_| {})
    }

    /// A certificate for `names` that expired in 2021.
    pub fn issue_expired(&self, names: &[&str]) -> TestCert {
        self.issue_with(names, |params| {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        })
    }

    fn issue_with(&self, names: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCert::write(cert.pem(), key.serialize_pem())
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// A certificate and its key, as PEM text and as files.
#[derive(Debug)]
pub struct TestCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The file holding `cert_pem`.
    pub cert_path: PathBuf,
    /// The file holding `key_pem`.
    pub key_path: PathBuf,
    _dir: TempDir,
}

impl TestCert {
    fn write(cert_pem: String, key_pem: String) -> TestCert {
        let dir = TempDir::new("cert");
        let cert_path = dir.0.join("cert.pem");
        let key_path = dir.0.join("key.pem");
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        TestCert {
            cert_pem,
            key_pem,
            cert_path,
            key_path,
            _dir: dir,
        }
    }

    /// Overwrite this certificate's files with `other`'s (a renewal).
    pub fn replace_files_with(&self, other: &TestCert) {
        std::fs::write(&self.cert_path, &other.cert_pem).unwrap();
        std::fs::write(&self.key_path, &other.key_pem).unwrap();
    }

    fn chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        rustls::pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn key(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// A server configuration serving `cert` with ALPN offering `alpn` (e.g.
/// `[b"h2"]`).
pub fn server_config(cert: &TestCert, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain(), cert.key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
    Arc::new(config)
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A client configuration trusting `ca` only, presenting `client_cert` if given.
pub fn client_config(ca: &TestCa, client_cert: Option<&TestCert>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca.cert_pem()));
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(cert) => builder
            .with_client_auth_cert(cert.chain(), cert.key())
            .unwrap(),
    };
    Arc::new(config)
}

/// `GET path` over a new TLS connection to `addr`, verified as
/// `server_name` under `config`.
pub async fn get(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    server_name: &str,
    path: &str,
) -> Result<Collected, String> {
    let request = build(Method::GET, path, Bytes::new())?;
    send(addr, config, server_name, request).await
}

/// Send `request` over a new TLS connection; see [`get`].
pub async fn send(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    server_name: &str,
    request: Request<Full<Bytes>>,
) -> Result<Collected, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| describe(&format!("connect to {addr}"), &e))?;
    send_over(stream, addr, config, server_name, request).await
}

/// Send `request` over TLS on `stream`, already connected to `addr` (and
/// perhaps already carrying a PROXY protocol header).
pub async fn send_over(
    stream: TcpStream,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    server_name: &str,
    request: Request<Full<Bytes>>,
) -> Result<Collected, String> {
    let tls = handshake(stream, addr, config, server_name).await?;
    let mut conn = KeepAlive::over(addr, tls).await?;
    conn.send(request).await
}

/// The client side of a TLS handshake on `stream` (connected to `addr`),
/// verifying the server as `server_name` under `config`.
pub(crate) async fn handshake(
    stream: TcpStream,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    server_name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| describe(&format!("server name {server_name:?}"), &e))?;
    TlsConnector::from(Arc::clone(config))
        .connect(name, stream)
        .await
        .map_err(|e| describe(&format!("TLS handshake with {addr}"), &e))
}

/// What a [`TlsOrigin`] saw.
#[derive(Debug, Clone, Default)]
pub struct TlsSeen {
    /// The server name each completed handshake asked for.
    pub server_names: Vec<Option<String>>,
    /// How many clients presented a certificate.
    pub client_certificates: usize,
    /// Each request's path and headers.
    pub requests: Vec<(String, http::HeaderMap)>,
}

/// An HTTPS upstream on `127.0.0.1:0` answering every request `200` with
/// its name as the body and in `x-origin`. Dropping it stops it.
pub struct TlsOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<TlsSeen>>,
    handshakes: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl TlsOrigin {
    /// Serve `cert`; with `client_ca`, require a client certificate it issued.
    pub async fn start(name: &str, cert: &TestCert, client_ca: Option<&TestCa>) -> TlsOrigin {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca.cert_pem())),
                    provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(cert.chain(), cert.key()).unwrap();
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(TlsSeen::default()));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            name.to_string(),
            Arc::clone(&seen),
            Arc::clone(&handshakes),
        ));
        TlsOrigin {
            addr,
            seen,
            handshakes,
            accept,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw so far.
    pub fn seen(&self) -> TlsSeen {
        self.seen.lock().unwrap().clone()
    }

    /// Handshakes attempted (completed or not).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl std::fmt::Debug for TlsOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOrigin")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    name: String,
    seen: Arc<Mutex<TlsSeen>>,
    handshakes: Arc<AtomicUsize>,
) {
    let mut tasks = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        handshakes.fetch_add(1, Ordering::Relaxed);
        let (acceptor, name, seen) = (acceptor.clone(), name.clone(), Arc::clone(&seen));
        tasks.spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            {
                let (_, connection) = tls.get_ref();
                let mut seen = seen.lock().unwrap();
                seen.server_names
                    .push(connection.server_name().map(str::to_string));
                if connection.peer_certificates().is_some() {
                    seen.client_certificates += 1;
                }
            }
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                seen.lock()
                    .unwrap()
                    .requests
                    .push((request.uri().path().to_string(), request.headers().clone()));
                let response = Response::builder()
                    .header("x-origin", name.as_str())
                    .body(Full::new(Bytes::from(name.clone())))
                    .unwrap();
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
        while tasks.try_join_next().is_some() {}
    }
}
