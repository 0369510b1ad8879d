//! `[upstreams.NAME]`: a group's servers, checked and expanded, and the
//! group built from them with its policies.

use std::collections::HashSet;

use switchyard::discovery::Answers;
use switchyard::group::{
    HashKey, MIN_RESOLVE_EVERY, ServerAt, ServerSpec, ServerSpecs, UpstreamGroup,
};
use switchyard::lb::Selection;
use switchyard::{PeerAddr, PeerOptions};
use toml::Spanned;

use super::file::{SelectionName, ServerEntry, UpstreamSection};
use super::health::{check_options, outlier_policy};
use super::protocol::{Scheme, group_protocol};
use super::resolve::{ServerAddr, entry_parts, entry_scheme};
use super::retry::{budget_policy, retry_policy};
use super::tls::group_tls;
use super::traffic::sticky;
use super::{ConfigError, Source};

/// An upstream group; `workers` share out its per-server connection limit
/// (each worker keeps its own connections).
pub(super) fn group(
    source: &Source<'_>,
    name: &str,
    section: &UpstreamSection,
    answers: &Answers,
    workers: usize,
) -> Result<UpstreamGroup, ConfigError> {
    let key = format!("upstreams.{name}");
    let mut found = Servers {
        answers,
        seen: HashSet::new(),
        scheme: None,
    };
    let primaries = found.specs(source, &section.servers, &format!("{key}.servers"))?;
    let backups = found.specs(source, &section.backup, &format!("{key}.backup"))?;
    if section.resolve_every.0 < MIN_RESOLVE_EVERY {
        let message = format!("must be at least {MIN_RESOLVE_EVERY:?}");
        return Err(source.error(None, &format!("{key}.resolve_every"), message));
    }
    let selection = match section.selection {
        SelectionName::RoundRobin => Selection::RoundRobin,
        SelectionName::Weighted => Selection::Weighted,
        SelectionName::Random => Selection::Random,
        SelectionName::LeastLoaded => Selection::LeastLoaded,
        SelectionName::Hash => Selection::Hash,
    };
    let hash_key = match (&section.hash_key, selection) {
        (Some(text), Selection::Hash) => Some(
            HashKey::parse(text)
                .ok_or_else(|| source.error(None, &format!("{key}.hash_key"), HashKey::EXPECTED))?,
        ),
        (None, Selection::Hash) => {
            return Err(source.error(
                None,
                &format!("{key}.hash_key"),
                format!(
                    "selection = \"hash\" needs a hash_key: {}",
                    HashKey::EXPECTED
                ),
            ));
        }
        (Some(_), _) => {
            return Err(source.error(
                None,
                &format!("{key}.hash_key"),
                "only used with selection = \"hash\"",
            ));
        }
        (None, _) => None,
    };
    let servers = ServerSpecs::new(primaries, backups, selection);
    let expanded = servers
        .expand(answers)
        .map_err(|e| source.error(None, &format!("{key}.servers"), e.to_string()))?;
    if section.max_connections_per_server == 0 {
        let message = "must be at least 1 (0 would refuse every connection)";
        return Err(source.error(None, &format!("{key}.max_connections_per_server"), message));
    }
    let peer_options = PeerOptions {
        connect_timeout: section.connect_timeout.0,
        read_timeout: section.response_timeout.0,
        write_timeout: section.write_timeout.0,
        idle_timeout: section.idle_timeout.0,
        max_idle: section.pool_size,
        max_connections: Some(section.max_connections_per_server.div_ceil(workers)),
        max_pending: section.max_pending,
    };
    let policy = retry_policy(source, &section.retry, &format!("{key}.retry"))?;
    let budget = budget_policy(source, &section.retry, &format!("{key}.retry"))?;
    let outlier = outlier_policy(source, &section.outlier, &format!("{key}.outlier"))?;
    let checks = match &section.health_check {
        Some(checks) => Some(check_options(
            source,
            checks,
            &format!("{key}.health_check"),
        )?),
        None => None,
    };
    let scheme = found.scheme.unwrap_or(Scheme::Http);
    let tls = group_tls(source, &key, scheme == Scheme::Https, section.tls.as_ref())?;
    let protocol = group_protocol(source, &key, scheme, section.protocol)?;
    let mut built = UpstreamGroup::builder(name, expanded.backends)
        .outlier(outlier)
        .peer_options(peer_options)
        .protocol(protocol)
        .retry_policy(policy)
        .retry_budget(budget)
        .connect_hedging(section.connect_hedging)
        .hosts(expanded.hosts)
        .servers(servers, section.resolve_every.0);
    if let Some((options, thresholds)) = checks {
        built = built.checks(options).check_thresholds(thresholds);
    }
    if let Some(tls) = tls {
        built = built.tls(tls.settings, tls.server_name);
    }
    if let Some(hash_key) = hash_key {
        built = built.hash_key(hash_key);
    }
    if let Some(sticky) = sticky(section, &|field, message| {
        source.error(None, &format!("{key}.{field}"), message)
    })? {
        built = built.sticky(sticky);
    }
    Ok(built.build())
}

/// A group's server entries checked and turned into the library's
/// [`ServerSpec`]s (which [`ServerSpecs::expand`] makes backends of, names
/// expanded to the addresses they resolved to). An `ip:port` listed twice
/// is an error; so is a name that was not resolved.
struct Servers<'a> {
    answers: &'a Answers,
    /// Each `ip:port` given so far.
    seen: HashSet<PeerAddr>,
    /// How the entries so far were written (all must agree).
    scheme: Option<Scheme>,
}

impl Servers<'_> {
    fn specs(
        &mut self,
        source: &Source<'_>,
        entries: &[Spanned<ServerEntry>],
        key: &str,
    ) -> Result<Vec<ServerSpec>, ConfigError> {
        let mut specs = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let span = || Some(entry.span());
            let (text, weight) = entry_parts(entry.get_ref());
            if weight == 0 {
                return Err(source.error(span(), &format!("{key}.weight"), "must be at least 1"));
            }
            let scheme = entry_scheme(entry.get_ref());
            if *self.scheme.get_or_insert(scheme) != scheme {
                let message = "a group's servers are all http://, all https:// or all h2c://; put the others in a group of their own";
                return Err(source.error(span(), &key, message));
            }
            let parsed = ServerAddr::parse(text).map_err(|why| source.error(span(), &key, why))?;
            if scheme == Scheme::Https && matches!(parsed, ServerAddr::Ip(PeerAddr::Unix(_))) {
                let message =
                    "TLS is not spoken over a Unix socket: write the server without https://";
                return Err(source.error(span(), &key, message));
            }
            let at = match parsed {
                ServerAddr::Ip(addr) if !self.seen.insert(addr) => {
                    let message = format!("{addr} is listed twice in this group");
                    return Err(source.error(span(), &key, message));
                }
                ServerAddr::Ip(addr) => ServerAt::Addr(addr),
                ServerAddr::Name(name) if self.answers.get(&name).is_none() => {
                    let message = format!("{name} was not resolved");
                    return Err(source.error(span(), &key, message));
                }
                ServerAddr::Name(name) => ServerAt::Name(name),
            };
            specs.push(ServerSpec { at, weight });
        }
        Ok(specs)
    }
}
