//! The config file's format: what a person writes, with its defaults.
//!
//! Every table refuses unknown keys, so a typo is an error, not a silently
//! ignored setting. These types only describe the file; `build.rs` checks
//! them and turns them into the library's types. Every field has a default
//! that serializes back, so `/config` shows the effective configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::protocol::ProtocolName;
use super::units::{Dur, Size};

pub mod defaults;
mod health;
mod http3;
mod retry;
mod routes;
mod tls;
mod traffic;

pub use health::{HealthCheckSection, OutlierSection};
pub use http3::Http3Section;
pub use retry::{BackoffSection, ModeName, RetryOnEntry, RetryOverride, RetrySection};
pub use routes::{HeaderEditsSection, HeaderMatchEntry};
pub use tls::{
    AcmeChallengeName, AcmeSection, CertificateEntry, ListenerTlsSection, UpstreamTlsSection,
};
pub use traffic::{
    CompressSetting, ErrorPagesSection, MirrorSection, RateLimitSection, RedirectSection,
    RespondSection, SplitEntry, StickySection,
};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listeners, workers, admin and client limits.
    pub server: ServerSection,
    /// Access log settings.
    #[serde(default)]
    pub log: LogSection,
    /// Upstream groups by name.
    pub upstreams: BTreeMap<String, UpstreamSection>,
    /// Host and path prefix to upstream group; first match wins.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// W3C trace context.
    #[serde(default)]
    pub tracing: TracingSection,
}

/// `[tracing]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// Start a trace for a request that brings no valid `traceparent`
    /// (one that brings it is always continued).
    #[serde(default)]
    pub start_traces: bool,
    /// Where to export spans over OTLP/HTTP (`http://HOST:PORT`); none
    /// are exported when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<Spanned<String>>,
    /// The `service.name` of the exported spans.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
    /// The most requests whose spans wait to be exported; more are dropped
    /// and counted.
    #[serde(default = "defaults::otlp_queue")]
    pub otlp_queue: usize,
}

impl Default for TracingSection {
    fn default() -> Self {
        TracingSection {
            start_traces: false,
            otlp_endpoint: None,
            service_name: defaults::service_name(),
            otlp_queue: defaults::otlp_queue(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Addresses to listen on for cleartext HTTP, `ip:port` (may be empty
    /// when `[server.tls]` listens).
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    /// HTTPS listeners and their certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTlsSection>,
    /// HTTP/3 listeners (UDP), with `tls`'s certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http3: Option<Http3Section>,
    /// Worker threads.
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// The admin listener (`/metrics`, `/healthz`, `/config`); off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Spanned<String>>,
    /// A file holding the token every admin write must carry
    /// (`Authorization: Bearer TOKEN`); required for a non-loopback admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<Spanned<String>>,
    /// The mode of the Unix socket files `listen` creates, in octal
    /// (default `"0660"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_mode: Option<Spanned<String>>,
    /// Where the proxy writes its process ID once it serves (for
    /// `switchyard upgrade --pid-file`); removed at exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<Spanned<String>>,
    /// Time a client has to send a request head, and to idle between requests.
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: Dur,
    /// Time writing to a client may make no progress.
    #[serde(default = "defaults::client_write_timeout")]
    pub write_timeout: Dur,
    /// Most headers in a request.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    /// Largest request head.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: Size,
    /// Time in-flight requests get to finish on shutdown.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Dur,
    /// Idle time after which a keep-alive client connection is parked
    /// outside hyper (frees its buffers); `"0s"` never parks.
    #[serde(default = "defaults::park_idle_after")]
    pub park_idle_after: Dur,
    /// Add `x-switchyard-attempts: N` to every response.
    #[serde(default)]
    pub attempt_count_header: bool,
    /// The most request body bytes a client may send (`0`: no limit); a
    /// route may set its own.
    #[serde(default = "defaults::max_request_body")]
    pub max_request_body: Size,
    /// The most client connections open at once; by default half the
    /// open-file limit (raised to its hard limit at start) less 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Which headers tell the upstream who the client is.
    #[serde(default)]
    pub forwarded: ForwardedName,
    /// Addresses (`ip` or `ip/prefix`) allowed to bring their own
    /// forwarding headers; from anyone else they are replaced.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Every connection starts with a PROXY protocol header (v1 or v2)
    /// naming the client: for listeners behind an L4 balancer.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Limits on client HTTP/2 connections.
    #[serde(default)]
    pub http2: Http2Section,
    /// Remove dot segments and decode unreserved escapes in request paths
    /// before routing (the normalized path goes upstream).
    #[serde(default = "defaults::normalize_path")]
    pub normalize_path: bool,
    /// Merge runs of `/` in request paths.
    #[serde(default)]
    pub merge_slashes: bool,
    /// `%2F` and `%5C` in a path: refused (400), kept or decoded.
    #[serde(default)]
    pub escaped_slashes: EscapedSlashesName,
    /// How many recent requests' stories are kept for `GET /requests/ID`
    /// on the admin listener (`0`: none).
    #[serde(default = "defaults::keep_traces")]
    pub keep_traces: usize,
    /// How many failed or retried requests' stories are kept besides
    /// (`0`: none).
    #[serde(default = "defaults::keep_traces")]
    pub keep_failed_traces: usize,
    /// The most rate-limit buckets (keys) kept across every route; the
    /// least recently used go first.
    #[serde(default = "defaults::rate_limit_keys")]
    pub rate_limit_keys: usize,
    /// Answer every request on a cleartext listener with a redirect to
    /// HTTPS (`[server.tls]` must listen).
    #[serde(default)]
    pub https_redirect: bool,
    /// Path prefixes `https_redirect` leaves alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub https_redirect_except: Vec<String>,
    /// The media types routes with `compress` compress.
    #[serde(default = "defaults::compress_types")]
    pub compress_types: Vec<String>,
    /// The smallest body routes with `compress` compress (a body of
    /// unknown length is compressed).
    #[serde(default = "defaults::compress_min_size")]
    pub compress_min_size: Size,
    /// Files whose bodies replace the proxy's own error answers', by
    /// status (`502`, `503`, `504`) or `default`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub error_pages: ErrorPagesSection,
}

/// `escaped_slashes`: `"reject"`, `"keep"` or `"decode"`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashesName {
    /// Refuse the request with 400.
    #[default]
    Reject,
    /// Keep them encoded.
    Keep,
    /// Decode them into `/`.
    Decode,
}

impl From<EscapedSlashesName> for switchyard::path::EscapedSlashes {
    fn from(name: EscapedSlashesName) -> Self {
        match name {
            EscapedSlashesName::Reject => switchyard::path::EscapedSlashes::Reject,
            EscapedSlashesName::Keep => switchyard::path::EscapedSlashes::Keep,
            EscapedSlashesName::Decode => switchyard::path::EscapedSlashes::Decode,
        }
    }
}

/// `[server.http2]`: limits on client HTTP/2 connections.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Section {
    /// Streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Largest header list a client may send.
    pub max_header_list_size: Size,
    /// Streams the client reset before the proxy saw them, pending at once.
    pub max_pending_accept_reset_streams: usize,
    /// Streams reset for the client's protocol errors before the connection closes.
    pub max_local_error_reset_streams: usize,
    /// Silence before a keep-alive PING (`"0s"`: never).
    pub keep_alive_interval: Dur,
    /// Time the PING's answer may take.
    pub keep_alive_timeout: Dur,
    /// Time with no stream open before GOAWAY (`"0s"`: never).
    pub idle_timeout: Dur,
}

impl Default for Http2Section {
    fn default() -> Self {
        let library = switchyard::server::Http2Options::default();
        Http2Section {
            max_concurrent_streams: library.max_concurrent_streams,
            max_header_list_size: Size(library.max_header_list_size as usize),
            max_pending_accept_reset_streams: library.max_pending_accept_reset_streams,
            max_local_error_reset_streams: library.max_local_error_reset_streams,
            keep_alive_interval: Dur(library.keep_alive_interval.unwrap_or_default()),
            keep_alive_timeout: Dur(library.keep_alive_timeout),
            idle_timeout: Dur(library.idle_timeout.unwrap_or_default()),
        }
    }
}

/// `[server] forwarded`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedName {
    /// `X-Forwarded-For`, `-Proto` and `-Host`.
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded`.
    Forwarded,
    /// Both.
    Both,
    /// Neither: headers pass as the client sent them.
    None,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Write one access log line per request (to standard output, or to
    /// `access_file`).
    #[serde(default = "defaults::yes")]
    pub access: bool,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// The access log's file (appended to; reopened on SIGUSR1), instead of
    /// standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_file: Option<Spanned<String>>,
    /// The diagnostics' file (appended to; reopened on SIGUSR1), instead of
    /// standard error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file: Option<Spanned<String>>,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            access: true,
            format: LogFormat::Text,
            access_file: None,
            error_file: None,
        }
    }
}

/// The access log's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One human-readable line.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[upstreams.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The primary servers.
    pub servers: Vec<Spanned<ServerEntry>>,
    /// Servers used only when every primary failed for a request, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup: Vec<Spanned<ServerEntry>>,
    /// `round-robin` or `weighted`.
    #[serde(default)]
    pub selection: SelectionName,
    /// Time a TCP connect may take.
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Dur,
    /// Time to the response head once the request was sent, and between
    /// two pieces of the response body.
    #[serde(default = "defaults::response_timeout")]
    pub response_timeout: Dur,
    /// Time the request body may make no progress upstream.
    #[serde(default = "defaults::upstream_write_timeout")]
    pub write_timeout: Dur,
    /// Time an unused pooled connection is kept.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: Dur,
    /// Idle pooled connections kept per server.
    #[serde(default = "defaults::pool_size")]
    pub pool_size: usize,
    /// The most connections to one server at once (busy, idle or being made).
    #[serde(default = "defaults::max_connections_per_server")]
    pub max_connections_per_server: usize,
    /// The most requests waiting for a connection to a server at its limit.
    #[serde(default = "defaults::max_pending")]
    pub max_pending: usize,
    /// The retry policy.
    #[serde(default)]
    pub retry: RetrySection,
    /// With `selection = "hash"`: what a request is placed by:
    /// `header:NAME`, `cookie:NAME`, `path` or `client` (its IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    /// Race a connect to the next server when one to the chosen server is
    /// slower than its recent p99 × 3 (50 ms before that is known).
    #[serde(default = "defaults::yes")]
    pub connect_hedging: bool,
    /// How often servers given as `host:port` are resolved again.
    #[serde(default = "defaults::resolve_every")]
    pub resolve_every: Dur,
    /// Active health checks; none unless the section is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSection>,
    /// Passive outlier ejection; on with defaults.
    #[serde(default)]
    pub outlier: OutlierSection,
    /// Trust and identity for `https://` servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsSection>,
    /// The HTTP version to speak: `auto` (HTTP/2 when an `https://` server
    /// offers it), `http1` or `h2`.
    #[serde(default)]
    pub protocol: ProtocolName,
    /// A cookie that brings each client back to the server that answered
    /// it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickySection>,
}

/// A server: `"ip:port"`, `"host:port"` (every address the name resolves
/// to is a server), or `{ addr = "ip:port", weight = 3 }`.
///
/// The span sits around the entry (`Spanned<ServerEntry>`): serde's untagged
/// enums cannot hold toml's spans inside.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ServerEntry {
    /// Just the address, weight 1.
    Addr(String),
    /// Address and weight.
    Weighted(WeightedServer),
}

/// `{ addr = "ip:port", weight = 3 }` (or `host:port`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedServer {
    /// `ip:port` or `host:port`.
    pub addr: String,
    /// Share under `weighted` selection, at least 1.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
}

/// How primaries are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionName {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// In proportion to their weights.
    Weighted,
    /// At random.
    Random,
    /// Power of two choices on latency and requests in flight.
    LeastLoaded,
    /// Consistent hashing on `hash_key`.
    Hash,
}

/// A `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// The route's name: the `route` label of its metrics (unnamed routes
    /// share `route=""`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match this Host (case-insensitive, port ignored), or any name under
    /// a wildcard (`*.example.com`); any host if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Match paths starting with this; `/` if unset.
    #[serde(default = "defaults::path_prefix")]
    pub path_prefix: String,
    /// Match only these methods; any if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Match only requests with every one of these headers (and values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatchEntry>,
    /// Remove `path_prefix` from the path sent upstream.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace `path_prefix` with this in the path sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix: Option<String>,
    /// The `Host` sent upstream: `"client"` (default), `"upstream"` (the
    /// server's name as written), or a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// Edits to the request sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderEditsSection>,
    /// Edits to the upstream's response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderEditsSection>,
    /// The upstream group (or `redirect`, or `respond`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Spanned<String>>,
    /// Share the requests between groups by weight instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Spanned<Vec<SplitEntry>>>,
    /// `"cookie:NAME"`: keep each client on the side of `split` it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_sticky: Option<String>,
    /// Answer with a redirect instead of going upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Spanned<RedirectSection>>,
    /// Answer with a fixed response instead of going upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond: Option<Spanned<RespondSection>>,
    /// Overrides of the group's retry policy for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryOverride>,
    /// This route's request body limit (`0`: none); `[server]`'s if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body: Option<Size>,
    /// The protocols a request may upgrade to (`Upgrade`): `["websocket"]`
    /// when unset, `[]` for none; `h2c` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrades: Option<Vec<String>>,
    /// `%2F` and `%5C` in this route's paths: `"reject"` or `"keep"`
    /// (`[server]`'s when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escaped_slashes: Option<EscapedSlashesName>,
    /// Only clients in these addresses or ranges may use the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Clients in these addresses or ranges may not use the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// HTTP Basic authentication against an htpasswd file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthSection>,
    /// Send copies of a share of its requests to a shadow group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSection>,
    /// Compress responses: `true`, or the codecs in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<CompressSetting>,
    /// A token bucket per client (or header value, or for the route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSection>,
}

/// A route's `basic_auth`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSection {
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// An htpasswd file with bcrypt entries (`htpasswd -B`).
    pub users_file: String,
    /// Send `Authorization` upstream too.
    #[serde(default)]
    pub forward_credentials: bool,
}
