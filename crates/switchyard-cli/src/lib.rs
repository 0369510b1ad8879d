//! The `switchyard` binary's library: the config file, the config-driven
//! proxy, access logs and metrics, the admin listener, the demo, and the
//! command line. `main.rs` only dispatches.
//!
//! Exit codes of the binary: 0 success; 1 the proxy failed while running
//! (cannot bind, a server task failed); 2 a bad config or command line.

use std::time::Duration;

use toml::Spanned;

pub mod admin;
pub mod binary_upgrade;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diagnostics;
pub mod handover;
pub mod limits;
pub mod observe;
pub mod pid_file;
pub mod proxy;
pub mod serve;
pub mod systemd;
pub mod why;

use config::file::{
    AcmeChallengeName, AcmeSection, FileConfig, Http3Section, ListenerTlsSection, LogSection,
    OutlierSection, RetrySection, SelectionName, ServerEntry, ServerSection, UpstreamSection,
    UpstreamTlsSection, defaults,
};
use config::units::Dur;

/// How long the demo waits for anything before calling it stuck.
pub const DEMO_PATIENCE: Duration = Duration::from_secs(10);

/// The calling thread's runtime: tokio's current-thread one (no work
/// stealing, no cross-thread wake-ups, measured cheaper per request in
/// docs/benchmarks.md). With `workers` > 1, serving starts the other
/// workers on threads of their own, each with a runtime like this one.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The `proxy` one-liner's flags.
#[derive(Debug, Clone)]
pub struct OneLiner {
    /// `--listen`: `ip:port` or `unix:/path` (with `--domain`, the HTTPS
    /// address; default `0.0.0.0:443`).
    pub listen: Option<switchyard::server::ListenAddr>,
    /// `--domain`: get certificates for these names from an ACME CA.
    pub acme: Option<OneLinerAcme>,
    /// `--to`: `ip:port`, `host:port`, or either after `https://` (TLS,
    /// HTTP/2 when the server offers it) or `h2c://` (cleartext HTTP/2).
    pub to: Vec<String>,
    /// `--backup`, as `--to`.
    pub backup: Vec<String>,
    /// `--tls-cert` and `--tls-key`: serve HTTPS.
    pub tls: Option<(String, String)>,
    /// `--upstream-ca`: a CA file trusted for `https://` upstreams.
    pub upstream_ca: Option<String>,
    /// `--upstream-insecure`: do not verify `https://` upstreams.
    pub upstream_insecure: bool,
    /// `--connect-timeout`.
    pub connect_timeout: String,
    /// `--read-timeout`.
    pub read_timeout: String,
    /// `--workers` (default: one per core).
    pub workers: Option<usize>,
    /// `--admin`.
    pub admin: Option<std::net::SocketAddr>,
    /// `--access-log`: the access log's file.
    pub access_log: Option<String>,
    /// `--admin-token-file`: the admin writes' token.
    pub admin_token_file: Option<String>,
    /// `--pid-file`.
    pub pid_file: Option<String>,
    /// `--http3`: serve HTTP/3 on the HTTPS listener's port (UDP).
    pub http3: bool,
}

/// The `proxy` one-liner's ACME flags (`--domain` and the `--acme-*`).
#[derive(Debug, Clone)]
pub struct OneLinerAcme {
    /// `--domain` (repeatable): the names to get certificates for.
    pub domains: Vec<String>,
    /// `--http-listen`: the cleartext listener (redirect to HTTPS, and
    /// `http-01` answers); default `0.0.0.0:80`.
    pub http_listen: Option<String>,
    /// `--acme-directory`: another CA's directory URL.
    pub directory: Option<String>,
    /// `--acme-ca`: a root to trust for that directory.
    pub directory_ca: Option<String>,
    /// `--acme-email`: the account's contact.
    pub email: Option<String>,
    /// `--acme-storage`: where certificates are kept.
    pub storage: Option<String>,
    /// `--acme-challenge http-01`: validate on the cleartext listener.
    pub http_01: bool,
}

/// The config the `proxy` one-liner's flags describe, or which flag is wrong.
pub fn one_liner(args: &OneLiner) -> Result<FileConfig, String> {
    let OneLiner {
        to,
        backup,
        connect_timeout,
        read_timeout,
        workers,
        admin,
        ..
    } = args;
    let duration = |flag: &str, text: &str| {
        humantime::parse_duration(text).map(Dur).map_err(|e| {
            format!("--{flag} {text:?} is not a duration ({e}); write e.g. 500ms or 3s")
        })
    };
    let spanned = |s: String| Spanned::new(0..0, s);
    let entries = |addrs: &[String]| {
        addrs
            .iter()
            .map(|a| Spanned::new(0..0, ServerEntry::Addr(a.clone())))
            .collect()
    };
    let https = to
        .iter()
        .chain(backup)
        .any(|a| a.to_ascii_lowercase().starts_with("https://"));
    let upstream_tls = if args.upstream_ca.is_some() || args.upstream_insecure {
        if !https {
            return Err("--upstream-ca and --upstream-insecure need https:// upstreams (--to https://HOST:PORT)".into());
        }
        Some(UpstreamTlsSection {
            ca: args.upstream_ca.clone(),
            insecure_skip_verify: args.upstream_insecure,
            ..UpstreamTlsSection::default()
        })
    } else {
        None
    };
    let (listen, tls) = one_liner_listeners(args)?;
    if args.http3 && tls.is_none() {
        return Err("--http3 needs HTTPS: --tls-cert and --tls-key, or --domain".into());
    }
    let upstream = UpstreamSection {
        servers: entries(to),
        backup: entries(backup),
        selection: SelectionName::RoundRobin,
        connect_timeout: duration("connect-timeout", connect_timeout)?,
        response_timeout: duration("read-timeout", read_timeout)?,
        write_timeout: defaults::upstream_write_timeout(),
        idle_timeout: defaults::idle_timeout(),
        pool_size: defaults::pool_size(),
        max_connections_per_server: defaults::max_connections_per_server(),
        max_pending: defaults::max_pending(),
        retry: RetrySection::default(),
        connect_hedging: true,
        resolve_every: defaults::resolve_every(),
        hash_key: None,
        health_check: None,
        outlier: OutlierSection::default(),
        tls: upstream_tls,
        // https:// negotiates HTTP/2; h2c:// is HTTP/2 over cleartext.
        protocol: config::protocol::ProtocolName::Auto,
        sticky: None,
    };
    Ok(FileConfig {
        server: ServerSection {
            listen,
            http3: args.http3.then(|| {
                let udp = tls
                    .as_ref()
                    .map(|tls| tls.listen.clone())
                    .unwrap_or_default();
                Http3Section::on(udp)
            }),
            tls,
            workers: workers.unwrap_or_else(defaults::workers),
            admin: admin.map(|a| spanned(a.to_string())),
            admin_token_file: args.admin_token_file.clone().map(spanned),
            pid_file: args.pid_file.clone().map(spanned),
            unix_mode: None,
            header_read_timeout: defaults::header_read_timeout(),
            write_timeout: defaults::client_write_timeout(),
            max_headers: defaults::max_headers(),
            max_header_bytes: defaults::max_header_bytes(),
            drain_timeout: defaults::drain_timeout(),
            park_idle_after: defaults::park_idle_after(),
            attempt_count_header: false,
            max_request_body: defaults::max_request_body(),
            max_connections: None,
            forwarded: Default::default(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            http2: Default::default(),
            normalize_path: defaults::normalize_path(),
            merge_slashes: false,
            escaped_slashes: Default::default(),
            keep_traces: defaults::keep_traces(),
            keep_failed_traces: defaults::keep_traces(),
            rate_limit_keys: defaults::rate_limit_keys(),
            https_redirect: args.acme.is_some(),
            https_redirect_except: Vec::new(),
            error_pages: Default::default(),
            compress_types: defaults::compress_types(),
            compress_min_size: defaults::compress_min_size(),
        },
        log: LogSection {
            access_file: args.access_log.clone().map(spanned),
            ..LogSection::default()
        },
        upstreams: [("default".to_string(), upstream)].into_iter().collect(),
        routes: Vec::new(),
        tracing: Default::default(),
    })
}

/// The one-liner's cleartext listeners and its `[server.tls]`.
fn one_liner_listeners(
    args: &OneLiner,
) -> Result<(Vec<Spanned<String>>, Option<ListenerTlsSection>), String> {
    use switchyard::server::ListenAddr;
    let spanned = |s: String| Spanned::new(0..0, s);
    let https = |listen: &ListenAddr, cert: Option<&(String, String)>, acme| {
        if let ListenAddr::Unix(_) = listen {
            return Err(format!(
                "--listen {listen}: HTTPS is served on TCP addresses only"
            ));
        }
        Ok(ListenerTlsSection {
            listen: vec![spanned(listen.to_string())],
            cert: cert.map(|(cert, _)| cert.clone()),
            key: cert.map(|(_, key)| key.clone()),
            certificates: Vec::new(),
            client_ca: None,
            handshake_timeout: defaults::tls_handshake_timeout(),
            acme,
        })
    };
    match (&args.listen, &args.tls, &args.acme) {
        (_, Some(_), Some(_)) => Err("--domain gets its certificates itself: drop --tls-cert and --tls-key".into()),
        (None, _, None) => Err("give --listen ADDRESS (or --domain NAME for HTTPS on :443 with a certificate from Let's Encrypt)".into()),
        (Some(listen), None, None) => Ok((vec![spanned(listen.to_string())], None)),
        (Some(listen), Some(cert), None) => Ok((Vec::new(), Some(https(listen, Some(cert), None)?))),
        (listen, None, Some(acme)) => {
            let listen = listen.clone().unwrap_or(ListenAddr::Tcp(std::net::SocketAddr::from(([0, 0, 0, 0], 443))));
            let cleartext = acme.http_listen.clone().unwrap_or_else(|| "0.0.0.0:80".into());
            let section = AcmeSection {
                domains: acme.domains.clone(),
                email: acme.email.clone(),
                directory: acme.directory.clone().unwrap_or_else(defaults::acme_directory),
                directory_ca: acme.directory_ca.clone(),
                storage: acme.storage.clone(),
                challenge: if acme.http_01 { AcmeChallengeName::Http01 } else { AcmeChallengeName::TlsAlpn01 },
                retry_after: defaults::acme_retry_after(),
            };
            Ok((vec![spanned(cleartext)], Some(https(&listen, None, Some(section))?)))
        }
    }
}
