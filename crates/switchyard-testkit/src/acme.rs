//! A real ACME CA for tests: Pebble, Let's Encrypt's test server (the
//! Debian package `pebble`), run on loopback with its own certificate from
//! a [`TestCa`], validating against Switchyard's own listeners; and
//! [`TestDns`], a DNS responder Pebble asks (`-dnsserver`), answering the
//! test's names with 127.0.0.1 so that validation is real, not turned off.
//!
//! Tests that need Pebble are marked
//! `#[ignore = "needs pebble: apt-get install pebble"]`; `.ci/run` installs
//! it and runs them with `--include-ignored`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{TempDir, TestCa, TestCert};

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0 and
/// released), for a program that must be told its port before it starts.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DNS responder on 127.0.0.1 (UDP, port 0): `A` queries for its names
/// get 127.0.0.1; other record types for its names get an empty answer;
/// any other name gets NXDOMAIN. Stops when dropped.
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    names: Arc<Mutex<HashSet<String>>>,
    socket: Arc<UdpSocket>,
}

impl TestDns {
    /// Answer `names` (lower case, no trailing dot) with 127.0.0.1.
    pub fn start(names: &[&str]) -> TestDns {
        let socket = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap());
        let addr = socket.local_addr().unwrap();
        let names: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(
            names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        ));
        let (serving, known) = (Arc::clone(&socket), Arc::clone(&names));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = serving.recv_from(&mut buf) {
                if n == 1 && buf[0] == 0 {
                    return; // told to stop
                }
                let known = known.lock().unwrap().clone();
                if let Some(answer) = dns_answer(&buf[..n], &known) {
                    let _ = serving.send_to(&answer, from);
                }
            }
        });
        TestDns {
            addr,
            names,
            socket,
        }
    }

    /// Where it answers (give Pebble `-dnsserver ADDR`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer `name` too from now on.
    pub fn add(&self, name: &str) {
        self.names.lock().unwrap().insert(name.to_ascii_lowercase());
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        // One zero byte to itself ends the thread.
        let _ = self.socket.send_to(&[0], self.addr);
    }
}

/// The response to the query in `query`, or `None` if it is not one.
fn dns_answer(query: &[u8], known: &HashSet<String>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    // One question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let name = labels.join(".");
    let found = known.contains(&name);
    let answer_a = found && qtype == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[0..2]); // the query's id
    let recursion_desired = query[2] & 0x01;
    out.push(0x84 | recursion_desired); // a response, authoritative
    out.push(if found { 0x00 } else { 0x03 }); // NOERROR or NXDOMAIN
    out.extend_from_slice(&[0, 1, 0, u8::from(answer_a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if answer_a {
        // The question's name (a pointer to offset 12), A, IN, TTL 0, 127.0.0.1.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// Where Pebble validates and how long its certificates live.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// The port it sends `http-01` requests to on 127.0.0.1.
    pub http_port: u16,
    /// The port it opens `tls-alpn-01` handshakes to on 127.0.0.1.
    pub tls_port: u16,
    /// Its certificates' lifetime (`None`: Pebble's default, 5 years).
    pub validity: Option<Duration>,
}

/// A running Pebble; killed when dropped.
#[derive(Debug)]
pub struct Pebble {
    child: Option<Child>,
    directory_port: u16,
    management_port: u16,
    ca: TestCa,
    _cert: TestCert,
    dir: TempDir,
    dns: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Pebble {
    /// Whether the `pebble` program is installed.
    pub fn installed() -> bool {
        Command::new("pebble")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    /// Start Pebble with `options`, resolving names through `dns`; waits
    /// until its directory answers.
    pub fn start(options: &PebbleOptions, dns: &TestDns) -> Pebble {
        let ca = TestCa::new("pebble directory CA");
        let cert = ca.issue(&["127.0.0.1", "localhost"]);
        let dir = TempDir::new("pebble");
        let (directory_port, management_port) = (free_port(), free_port());
        let mut config = format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{directory_port}", "managementListenAddress": "127.0.0.1:{management_port}", "certificate": "{}", "privateKey": "{}", "httpPort": {}, "tlsPort": {}, "ocspResponderURL": "", "externalAccountBindingRequired": false"#,
            cert.cert_path.display(),
            cert.key_path.display(),
            options.http_port,
            options.tls_port,
        );
        if let Some(validity) = options.validity {
            config += &format!(r#", "certificateValidityPeriod": {}"#, validity.as_secs());
        }
        config += "}}";
        std::fs::write(dir.path().join("pebble.json"), config).unwrap();
        let mut pebble = Pebble {
            child: None,
            directory_port,
            management_port,
            ca,
            _cert: cert,
            dir,
            dns: dns.addr(),
            output: Arc::default(),
        };
        pebble.resume();
        pebble
    }

    /// Stop the CA (a CA that is down); [`resume`](Self::resume) starts it
    /// again on the same ports, with a new root and no accounts.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the CA again after [`stop`](Self::stop).
    pub fn resume(&mut self) {
        self.stop();
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(self.dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pebble runs (apt-get install pebble)");
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&self.output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.directory_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not listen within 20 s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.directory_port)
    }

    /// The root that Pebble's own listeners' certificates chain to
    /// (`directory_ca`).
    pub fn directory_ca(&self) -> &Path {
        self.ca.cert_path()
    }

    /// Everything Pebble printed so far (for failure messages).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The root Pebble signs certificates under now (new at each start),
    /// from its management interface.
    pub async fn issuing_root(&self) -> CertificateDer<'static> {
        let pem = https_get(self.management_port, "/roots/0", &self.ca).await;
        rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// A directory for the test's files (ACME storage, say), removed with
    /// Pebble.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// GET `path` from Pebble's management port, trusting `ca`.
async fn https_get(port: u16, path: &str, ca: &TestCa) -> String {
    let config = crate::tls::client_config(ca, None);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "pebble {path}: {head}");
    body.to_string()
}

/// The certificate chain `addr` serves to a client asking for `name`,
/// verified against `root` (a handshake that fails verification is an
/// error with rustls' reason).
pub async fn served_chain(
    addr: SocketAddr,
    name: &str,
    root: &CertificateDer<'static>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let config = client_trusting(root);
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("handshake for {name}: {e}"))?;
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate")?
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    Ok(chain)
}

/// A client configuration trusting only `root` (Pebble's issuing root).
pub fn client_trusting(root: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
