//! The `switchyard` binary's library: the config file, the config-driven
//! proxy, access logs and metrics, the admin listener, the demo, and the
//! command line. `main.rs` only dispatches.
//!
//! Exit codes of the binary: 0 success; 1 the proxy failed while running
//! (cannot bind, a server task failed); 2 a bad config or command line.

use std::time::Duration;

use toml::Spanned;

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod limits;
pub mod observe;
pub mod proxy;
pub mod serve;

use config::file::{
    FileConfig, LogSection, RetrySection, SelectionName, ServerEntry, ServerSection,
    UpstreamSection, defaults,
};
use config::health::OutlierSection;
use config::units::Dur;

/// How long the demo waits for anything before calling it stuck.
pub const DEMO_PATIENCE: Duration = Duration::from_secs(10);

/// The runtime for `workers` worker threads. One worker runs on the
/// calling thread (tokio's current-thread runtime): no work stealing, no
/// cross-thread wake-ups, measured cheaper per request (docs/benchmarks.md).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

/// The config the `proxy` one-liner's flags describe, or which flag is wrong.
pub fn one_liner(
    listen: std::net::SocketAddr,
    to: &[std::net::SocketAddr],
    backup: &[std::net::SocketAddr],
    connect_timeout: &str,
    read_timeout: &str,
    workers: usize,
    admin: Option<std::net::SocketAddr>,
) -> Result<FileConfig, String> {
    let duration = |flag: &str, text: &str| {
        humantime::parse_duration(text).map(Dur).map_err(|e| {
            format!("--{flag} {text:?} is not a duration ({e}); write e.g. 500ms or 3s")
        })
    };
    let spanned = |s: String| Spanned::new(0..0, s);
    let entries = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(|a| Spanned::new(0..0, ServerEntry::Addr(a.to_string())))
            .collect()
    };
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
    };
    Ok(FileConfig {
        server: ServerSection {
            listen: vec![spanned(listen.to_string())],
            workers,
            admin: admin.map(|a| spanned(a.to_string())),
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
        },
        log: LogSection::default(),
        upstreams: [("default".to_string(), upstream)].into_iter().collect(),
        routes: Vec::new(),
    })
}
