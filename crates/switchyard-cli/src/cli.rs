//! The command line (DESIGN section 2a).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// A reverse proxy that does the right thing when an upstream fails, and says why.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, after_long_help = SIGNALS)]
pub struct Cli {
    /// Access log format (overrides the config file's `[log] format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Signals, files and exit codes, at the end of `--help` and the man page.
const SIGNALS: &str = "\
Signals: SIGHUP reloads the config file (routes, upstreams, certificates); \
SIGUSR1 reopens the log files ([log] access_file, error_file) after log rotation; \
SIGUSR2 upgrades the binary: the proxy starts the binary at its path again with its \
listening sockets, and once the new process serves, stops accepting, lets requests in \
flight finish, and exits (`switchyard upgrade --pid-file PATH` signals and waits); \
SIGTERM and SIGINT stop accepting, let requests in flight finish, and exit.

Under systemd (Type=notify) the proxy sends READY=1, RELOADING=1 and STOPPING=1 \
to NOTIFY_SOCKET. RUST_LOG sets the diagnostics' level (default warn).

Exit codes: 0 success; 1 the proxy failed while running (cannot bind, a server task failed); \
2 a bad config or command line.

Config reference: docs/config.md; `switchyard check -c FILE` validates a file.";

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// One human-readable line per request.
    Text,
    /// One JSON object per request.
    Json,
}

/// The subcommands.
// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start demo upstreams (refusing, blackholed, healthy, flaky) and a proxy
    /// on loopback, send traffic, and show what each request went through.
    Demo {
        /// Keep the proxy running after the demo traffic, for your own requests.
        #[arg(long)]
        keep_running: bool,
    },
    /// Serve a config file until SIGTERM or SIGINT.
    Run {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check a config file; print where it is wrong.
    Check {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print a request's story (every attempt, each decision and why) from
    /// a running proxy's admin listener, by its request ID (the
    /// X-Request-Id in the access log and sent upstream).
    Why {
        /// The request's ID.
        id: String,
        /// The running proxy's admin address (`[server] admin`).
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Print the JSON the admin listener sent.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `switchyard completions bash >
    /// /etc/bash_completion.d/switchyard` (also zsh, fish, elvish,
    /// powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `switchyard man > switchyard.1`.
    Man,
    /// A one-line reverse proxy with the default failure policy.
    Proxy {
        /// Address to listen on, ip:port (HTTPS with --tls-cert and
        /// --tls-key, or with --domain, where it defaults to 0.0.0.0:443)
        /// or unix:/path (a Unix socket, mode 0660).
        #[arg(long, required_unless_present = "domain")]
        listen: Option<switchyard::server::ListenAddr>,
        /// Serve HTTPS for this name with a certificate obtained and
        /// renewed automatically from Let's Encrypt (repeatable); cleartext
        /// requests on --http-listen are redirected to HTTPS.
        #[arg(long)]
        domain: Vec<String>,
        /// With --domain: the cleartext listener, for the redirect to
        /// HTTPS and http-01 validation.
        #[arg(long, requires = "domain", default_value = "0.0.0.0:80")]
        http_listen: String,
        /// With --domain: another ACME CA's directory URL.
        #[arg(long, requires = "domain")]
        acme_directory: Option<String>,
        /// With --domain: a root (PEM) to trust for --acme-directory.
        #[arg(long, requires = "domain")]
        acme_ca: Option<String>,
        /// With --domain: a contact address for the ACME account.
        #[arg(long, requires = "domain")]
        acme_email: Option<String>,
        /// With --domain: where the account and certificates are kept
        /// [default: $STATE_DIRECTORY/acme, else
        /// $XDG_STATE_HOME/switchyard/acme, else
        /// ~/.local/state/switchyard/acme].
        #[arg(long, requires = "domain")]
        acme_storage: Option<String>,
        /// Also serve HTTP/3 (QUIC) on the HTTPS listener's port, over UDP
        /// (needs --tls-cert or --domain); HTTPS answers then carry
        /// Alt-Svc so browsers find it.
        #[arg(long)]
        http3: bool,
        /// With --domain: how the CA validates, tls-alpn-01 (on the HTTPS
        /// listener) or http-01 (on --http-listen).
        #[arg(long, requires = "domain", default_value = "tls-alpn-01", value_parser = ["tls-alpn-01", "http-01"])]
        acme_challenge: String,
        /// Upstream server, ip:port, host:port or unix:/path (an app server
        /// on this host, on a Unix socket); https://HOST:PORT is
        /// reached over TLS (HTTP/2 if it offers h2), h2c://HOST:PORT over
        /// cleartext HTTP/2 (repeat for several; round robin).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Backup server, used when every --to failed for a request (repeatable).
        #[arg(long)]
        backup: Vec<String>,
        /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<String>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<String>,
        /// Also trust this CA (PEM) for https:// upstreams.
        #[arg(long)]
        upstream_ca: Option<String>,
        /// Do not verify https:// upstreams' certificates (insecure).
        #[arg(long)]
        upstream_insecure: bool,
        /// TCP connect timeout, e.g. 500ms.
        #[arg(long, default_value = "3s")]
        connect_timeout: String,
        /// Response head timeout, e.g. 30s.
        #[arg(long, default_value = "60s")]
        read_timeout: String,
        /// Worker threads, each with its own runtime and upstream
        /// connections [default: one per core].
        #[arg(long)]
        workers: Option<usize>,
        /// Admin address for /metrics, /healthz, /config.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Write the access log to this file (reopened on SIGUSR1) instead
        /// of standard output.
        #[arg(long)]
        access_log: Option<String>,
        /// A file holding the token admin writes must carry; required
        /// with a non-loopback --admin.
        #[arg(long, requires = "admin")]
        admin_token_file: Option<String>,
        /// Write the process ID here once serving (for `switchyard upgrade`).
        #[arg(long)]
        pid_file: Option<String>,
    },
    /// Upgrade the running proxy's binary without dropping a connection:
    /// signal the process the pid file names (SIGUSR2), which starts the
    /// binary at its path again with its listening sockets, and wait for
    /// the outcome. Exits 1 if the new process did not start (the old one
    /// keeps serving).
    Upgrade {
        /// The running proxy's pid file (`[server] pid_file`, `--pid-file`).
        #[arg(long)]
        pid_file: PathBuf,
        /// How long to wait for the outcome.
        #[arg(long, default_value = "90s")]
        timeout: String,
    },
}
