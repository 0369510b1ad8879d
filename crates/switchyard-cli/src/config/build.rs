//! Check a parsed file and build it into the library's types: listeners,
//! `ServerOptions`, upstream groups (`Backends`, `PeerOptions`) and routes
//! with their retry policies. One place turns the format into behaviour.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use switchyard::discovery::{Answers, ServerName};

use switchyard::ServerOptions;
use switchyard::group::UpstreamGroup;
use switchyard::log_file::LogTarget;
use switchyard::route::Route;
use switchyard::server::ListenAddr;
use toml::Spanned;

use super::answers;
use super::file::{FileConfig, LogSection, defaults};
use super::groups::group;
use super::http3::{Http3Listeners, http3_listeners};
use super::routes::{RouteDefaults, routes};
use super::server::{client_identity, http2_options, max_connections, path_rules};
use super::tls::{ListenerTls, listener_tls};
use super::traffic::{check_compress_types, shared_buckets};
use super::units::limit_of;
use super::{ConfigError, Source};

/// The most request stories `keep_traces` or `keep_failed_traces` may keep
/// (about 0.7 KB each: docs/config.md). `GET /requests/ID` searches them
/// under the lock every finished request takes, so they stay few enough
/// for that search to be short (about a millisecond at this size).
const MAX_KEPT_TRACES: usize = 100_000;

/// The mode of Unix socket files unless `unix_mode` says otherwise:
/// read and write for the owner and the group.
const DEFAULT_UNIX_MODE: u32 = 0o660;

/// A checked configuration, ready to serve.
#[derive(Debug)]
pub struct Config {
    /// Addresses to listen on for cleartext HTTP: TCP, or Unix sockets.
    pub listen: Vec<ListenAddr>,
    /// The mode of the Unix socket files created (`unix_mode`).
    pub unix_mode: u32,
    /// HTTPS listeners and their certificates.
    pub tls: Option<ListenerTls>,
    /// HTTP/3 listeners (UDP), with `tls`'s certificates.
    pub http3: Option<Http3Listeners>,
    /// Worker threads.
    pub workers: usize,
    /// The admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// The token admin writes must carry, read from `admin_token_file`.
    pub admin_token: Option<AdminToken>,
    /// Options for the proxy server.
    pub server: ServerOptions,
    /// Where the process ID is written once serving (`pid_file`).
    pub pid_file: Option<std::path::PathBuf>,
    /// Span export (`[tracing] otlp_endpoint`), if configured.
    pub otlp: Option<switchyard::otlp::OtlpOptions>,
    /// Access log settings.
    pub log: LogSection,
    /// Where the access log goes.
    pub access_log: LogTarget,
    /// Where diagnostics go.
    pub error_log: LogTarget,
    /// Whether to add `x-switchyard-attempts` to responses.
    pub attempt_count_header: bool,
    /// How many recent requests' stories, and how many failed or retried
    /// ones besides, are kept for the admin listener's `/requests/ID`.
    pub keep_traces: (usize, usize),
    /// Upstream groups by name.
    pub groups: BTreeMap<String, Arc<UpstreamGroup>>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// The redirect of cleartext requests to HTTPS (`https_redirect`).
    pub https_redirect: Option<switchyard::route::HttpsRedirect>,
    /// Bodies for the proxy's own error answers (`[server.error_pages]`).
    pub error_pages: switchyard::proxy::ErrorPages,
    /// The file as parsed, defaults filled in (for `/config`).
    pub effective: FileConfig,
    /// What the config came from (a file name), for errors.
    pub origin: String,
    /// The addresses the server names resolved to.
    pub answers: Answers,
}

impl Config {
    /// The same config with server names resolved to `answers` instead: how
    /// a changed DNS answer is applied. The groups that use a name in
    /// `changed` follow it as the library's groups do
    /// ([`UpstreamGroup::with_answers`]: settings and retry budget kept,
    /// the health of the servers that stay carried over); the others are
    /// kept as they are (the same `Arc`, selection state and all). Every
    /// check passed already, so an error here means `answers` lacks one of
    /// the names.
    pub fn with_answers(
        &self,
        answers: Answers,
        changed: &[ServerName],
    ) -> Result<Config, ConfigError> {
        let source = Source {
            file: &self.origin,
            text: "",
        };
        let mut groups = BTreeMap::new();
        for (name, group) in &self.groups {
            let follows = group.names().iter().any(|n| changed.contains(n));
            let rebuilt = follows.then(|| group.with_answers(&answers)).flatten();
            let group = match rebuilt {
                Some(Ok(rebuilt)) => Arc::new(rebuilt),
                Some(Err(e)) => {
                    let key = format!("upstreams.{name}.servers");
                    return Err(source.error(None, &key, e.to_string()));
                }
                None => Arc::clone(group),
            };
            groups.insert(name.clone(), group);
        }
        // The certificates stay as loaded: a DNS change reads no files.
        build(
            self.effective.clone(),
            &source,
            answers,
            &groups,
            self.tls.as_ref(),
        )
    }
}

/// Build `file`, taking the groups in `keep` as they are instead of
/// building them again.
pub(super) fn build(
    file: FileConfig,
    source: &Source<'_>,
    answers: Answers,
    keep: &BTreeMap<String, Arc<UpstreamGroup>>,
    keep_tls: Option<&ListenerTls>,
) -> Result<Config, ConfigError> {
    let server = &file.server;
    if server.listen.is_empty() && server.tls.is_none() {
        return Err(source.error(
            None,
            "server.listen",
            "give at least one address to listen on (or HTTPS ones in [server.tls])",
        ));
    }
    let listen = server
        .listen
        .iter()
        .enumerate()
        .map(|(i, addr)| listen_addr(source, addr, &format!("server.listen[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let unix_mode = unix_mode(source, server.unix_mode.as_ref())?;
    let tls = match (&server.tls, keep_tls) {
        (Some(_), Some(kept)) => Some(kept.clone()),
        (Some(section), None) => Some(listener_tls(source, section, |addr, key| {
            socket_addr(source, addr, key)
        })?),
        (None, _) => None,
    };
    let http3 = match &server.http3 {
        Some(section) => Some(http3_listeners(
            source,
            section,
            tls.as_ref(),
            |addr, key| socket_addr(source, addr, key),
        )?),
        None => None,
    };
    let http_01 = tls
        .as_ref()
        .and_then(|tls| tls.acme.as_ref())
        .is_some_and(|acme| acme.settings().challenge == switchyard::acme::Challenge::Http01);
    let cleartext_tcp = listen
        .iter()
        .any(|addr| matches!(addr, switchyard::server::ListenAddr::Tcp(_)));
    if http_01 && !cleartext_tcp {
        let message = "http-01 is answered on a cleartext listener, and [server] listen has no TCP address: add one that port 80 reaches, or use challenge = \"tls-alpn-01\"";
        return Err(source.error(None, "server.tls.acme.challenge", message));
    }
    let admin = match &server.admin {
        Some(addr) => Some(socket_addr(source, addr, "server.admin")?),
        None => None,
    };
    let admin_token = admin_token(source, server)?;
    if let (Some(addr), None, Some(text)) = (admin, &admin_token, &server.admin)
        && !addr.ip().is_loopback()
    {
        return Err(source.error(
            Some(text.span()),
            "server.admin",
            format!(
                "{addr} is not a loopback address: set [server] admin_token_file too, \
                 or anyone who reaches it could drain your servers"
            ),
        ));
    }
    let access_log = log_target(
        source,
        &file.log.access_file,
        "log.access_file",
        LogTarget::Stdout,
    )?;
    let error_log = log_target(
        source,
        &file.log.error_file,
        "log.error_file",
        LogTarget::Stderr,
    )?;
    if !(1..=1024).contains(&server.workers) {
        return Err(source.error(None, "server.workers", "must be between 1 and 1024"));
    }
    for (key, kept) in [
        ("server.keep_traces", server.keep_traces),
        ("server.keep_failed_traces", server.keep_failed_traces),
    ] {
        if kept > MAX_KEPT_TRACES {
            return Err(source.error(None, key, format!("must be at most {MAX_KEPT_TRACES}")));
        }
    }
    check_compress_types(source, server)?;
    if server.rate_limit_keys == 0 {
        let message = "must be at least 1 (rate limits need somewhere to count)";
        return Err(source.error(None, "server.rate_limit_keys", message));
    }
    if server.max_headers == 0 {
        return Err(source.error(None, "server.max_headers", "must be at least 1"));
    }
    if server.max_header_bytes.0 < 1024 {
        return Err(source.error(None, "server.max_header_bytes", "must be at least 1KiB"));
    }
    let options = ServerOptions {
        header_read_timeout: server.header_read_timeout.0,
        write_timeout: server.write_timeout.0,
        max_headers: server.max_headers,
        max_header_bytes: server.max_header_bytes.0,
        drain_timeout: server.drain_timeout.0,
        park_idle_after: Some(server.park_idle_after.0).filter(|after| !after.is_zero()),
        max_request_body: limit_of(server.max_request_body),
        // Each worker takes its share of the limit (and binds with
        // SO_REUSEPORT beside the others).
        max_connections: Some(
            max_connections(source, server.max_connections)?.div_ceil(server.workers),
        ),
        reuse_port: server.workers > 1,
        client_identity: client_identity(source, server.forwarded, &server.trusted_proxies)?,
        proxy_protocol: server.proxy_protocol,
        http2: http2_options(source, &server.http2)?,
        paths: path_rules(server),
        start_traces: file.tracing.start_traces,
        tls_handshake_timeout: tls
            .as_ref()
            .map_or(defaults::tls_handshake_timeout().0, |tls| {
                tls.handshake_timeout
            }),
        ..ServerOptions::default()
    };
    if file.upstreams.is_empty() {
        return Err(source.error(
            None,
            "upstreams",
            "define at least one [upstreams.NAME] group",
        ));
    }
    let mut groups = BTreeMap::new();
    for (name, section) in &file.upstreams {
        let built = match keep.get(name) {
            Some(kept) => Arc::clone(kept),
            None => Arc::new(group(source, name, section, &answers, server.workers)?),
        };
        groups.insert(name.clone(), built);
    }
    let body_limit = options.max_request_body;
    let decoded = server.escaped_slashes == super::file::EscapedSlashesName::Decode;
    let routes = routes(
        source,
        &file.routes,
        &file.upstreams,
        &groups,
        &RouteDefaults {
            body_limit,
            slashes_decoded: decoded,
            trusted: &options.client_identity.trusted_proxies,
            buckets: shared_buckets(server.rate_limit_keys),
            server,
        },
    )?;
    let https_redirect = answers::https_redirect(source, server, tls.as_ref())?;
    let error_pages = answers::error_pages(source, &server.error_pages)?;
    Ok(Config {
        listen,
        unix_mode,
        tls,
        http3,
        workers: server.workers,
        admin,
        admin_token,
        server: options,
        pid_file: server
            .pid_file
            .as_ref()
            .map(|path| std::path::PathBuf::from(path.get_ref())),
        otlp: otlp_options(source, &file.tracing)?,
        log: file.log.clone(),
        access_log,
        error_log,
        attempt_count_header: server.attempt_count_header,
        keep_traces: (server.keep_traces, server.keep_failed_traces),
        groups,
        routes,
        https_redirect,
        error_pages,
        effective: file,
        origin: source.file.to_string(),
        answers,
    })
}

/// `[tracing] otlp_endpoint`'s exporter options, checked.
fn otlp_options(
    source: &Source<'_>,
    tracing: &super::file::TracingSection,
) -> Result<Option<switchyard::otlp::OtlpOptions>, ConfigError> {
    let Some(endpoint) = &tracing.otlp_endpoint else {
        return Ok(None);
    };
    let mut options = switchyard::otlp::OtlpOptions::new(endpoint.get_ref().trim());
    options.service_name = tracing.service_name.clone();
    options.queue = tracing.otlp_queue.max(1);
    options
        .check()
        .map_err(|why| source.error(Some(endpoint.span()), "tracing.otlp_endpoint", why))?;
    Ok(Some(options))
}

/// `ip:port` or `unix:/path`, or an error located at the text.
fn listen_addr(
    source: &Source<'_>,
    text: &Spanned<String>,
    key: &str,
) -> Result<ListenAddr, ConfigError> {
    text.get_ref()
        .trim()
        .parse()
        .map_err(|why: String| source.error(Some(text.span()), key, why))
}

/// The mode for Unix socket files: octal digits such as `"0660"`.
fn unix_mode(source: &Source<'_>, text: Option<&Spanned<String>>) -> Result<u32, ConfigError> {
    let Some(text) = text else {
        return Ok(DEFAULT_UNIX_MODE);
    };
    u32::from_str_radix(text.get_ref().trim(), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| {
            let why = format!(
                "{:?} is not a file mode in octal (e.g. \"0660\")",
                text.get_ref()
            );
            source.error(Some(text.span()), "server.unix_mode", why)
        })
}

/// `ip:port`, or an error located at the text.
fn socket_addr(
    source: &Source<'_>,
    text: &Spanned<String>,
    key: &str,
) -> Result<SocketAddr, ConfigError> {
    text.get_ref().trim().parse().map_err(|_| {
        let message = format!(
            "{:?} is not ip:port (e.g. \"127.0.0.1:8080\")",
            text.get_ref()
        );
        source.error(Some(text.span()), key, message)
    })
}

/// The token of admin writes, kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Whether `presented` (an `Authorization` value) carries this token,
    /// as `Bearer TOKEN` (the scheme in any case, RFC 9110 section 11.1);
    /// the token compared in time independent of where they differ.
    pub fn admits(&self, presented: &[u8]) -> bool {
        let Some((scheme, token)) = presented.split_at_checked(7) else {
            return false;
        };
        let expected = self.0.as_bytes();
        scheme.eq_ignore_ascii_case(b"bearer ")
            && token.len() == expected.len()
            && token
                .iter()
                .zip(expected)
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(redacted)")
    }
}

/// The token in `admin_token_file`, if set: the file's content, trimmed
/// (at least 16 characters, printable ASCII).
fn admin_token(
    source: &Source<'_>,
    server: &super::file::ServerSection,
) -> Result<Option<AdminToken>, ConfigError> {
    let Some(path) = &server.admin_token_file else {
        return Ok(None);
    };
    let key = "server.admin_token_file";
    if server.admin.is_none() {
        return Err(source.error(Some(path.span()), key, "needs [server] admin"));
    }
    let text = std::fs::read_to_string(path.get_ref()).map_err(|e| {
        source.error(
            Some(path.span()),
            key,
            format!("cannot read {:?}: {e}", path.get_ref()),
        )
    })?;
    let token = text.trim();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(source.error(
            Some(path.span()),
            key,
            "the token must be at least 16 printable characters without spaces \
             (e.g. `openssl rand -hex 24 > FILE`)",
        ));
    }
    Ok(Some(AdminToken(token.to_string())))
}

/// Where a log goes: the file at `path` (whose directory must exist; the
/// file is created when the proxy starts), else `default`.
fn log_target(
    source: &Source<'_>,
    path: &Option<Spanned<String>>,
    key: &str,
    default: LogTarget,
) -> Result<LogTarget, ConfigError> {
    let Some(path) = path else {
        return Ok(default);
    };
    let file = Path::new(path.get_ref());
    let problem = if path.get_ref().trim().is_empty() {
        Some("must be a file's path".to_string())
    } else if file.is_dir() {
        Some(format!("{:?} is a directory, not a file", path.get_ref()))
    } else {
        let dir = file
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (!dir.is_dir()).then(|| {
            format!(
                "the directory {:?} does not exist",
                dir.display().to_string()
            )
        })
    };
    match problem {
        Some(message) => Err(source.error(Some(path.span()), key, message)),
        None => Ok(LogTarget::File(file.to_path_buf())),
    }
}
