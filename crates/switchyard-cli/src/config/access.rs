//! Who may use a route: its `allow` and `deny` lists (addresses or CIDR
//! ranges, checked into the library's [`AccessControl`]) and its
//! `basic_auth` (an htpasswd file read into [`BasicAuth`]).

use std::net::IpAddr;

use ipnet::IpNet;
use switchyard::route::{AccessControl, BasicAuth};

use super::ConfigError;
use super::file::RouteSection;

/// Reports an error at a route's key.
pub(super) type Located<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

/// The route's access control, if it has `allow` or `deny`; clients are
/// read past `trusted` proxies.
pub(super) fn access_control(
    section: &RouteSection,
    trusted: &[IpNet],
    error: &Located<'_>,
) -> Result<Option<AccessControl>, ConfigError> {
    if section.allow.is_empty() && section.deny.is_empty() {
        return Ok(None);
    }
    let allow = ranges(&section.allow, "allow", error)?;
    let deny = ranges(&section.deny, "deny", error)?;
    for (i, allowed) in allow.iter().enumerate() {
        if let Some(denied) = deny.iter().find(|denied| denied.contains(allowed)) {
            let message = format!(
                "{allowed} can never be allowed: deny has {denied}, and deny is looked at first"
            );
            return Err(error(&format!("allow[{i}]"), message));
        }
    }
    Ok(Some(AccessControl {
        allow,
        deny,
        trusted_proxies: trusted.to_vec(),
    }))
}

/// Each entry as a range: `10.0.0.0/8`, or one address (`::1`).
fn ranges(entries: &[String], key: &str, error: &Located<'_>) -> Result<Vec<IpNet>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    let message = format!(
                        "{text:?} is not an address or a range (e.g. \"10.0.0.0/8\", \"::1\")"
                    );
                    error(&format!("{key}[{i}]"), message)
                })
        })
        .collect()
}

/// How long one bcrypt check may take before the config says so.
const SLOW_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// The route's Basic authentication, if it has `basic_auth`: its users
/// file read now (and again on each reload).
pub(super) fn basic_auth(
    section: &RouteSection,
    error: &Located<'_>,
) -> Result<Option<BasicAuth>, ConfigError> {
    let Some(auth) = &section.basic_auth else {
        return Ok(None);
    };
    let path = &auth.users_file;
    let text = std::fs::read_to_string(path).map_err(|e| {
        error(
            "basic_auth.users_file",
            format!("cannot read {path:?}: {e}"),
        )
    })?;
    let users = BasicAuth::parse_htpasswd(&text)
        .map_err(|why| error("basic_auth.users_file", format!("{path}: {why}")))?;
    if users.is_empty() {
        return Err(error(
            "basic_auth.users_file",
            format!("{path} lists no user"),
        ));
    }
    let mut built = BasicAuth::new(auth.realm.clone(), users);
    built.forward_credentials = auth.forward_credentials;
    let cost = built.max_cost();
    let took = check_time(cost);
    if took > SLOW_CHECK {
        tracing::warn!(
            users_file = %path,
            cost,
            "one bcrypt check at this cost takes about {} ms here (over {} ms): every new client's first request pays it; consider a lower cost",
            took.as_millis(),
            SLOW_CHECK.as_millis()
        );
    }
    Ok(Some(built))
}

/// About how long one bcrypt check at `cost` takes on this machine: one
/// at cost 4, timed, and doubled for each step above it.
fn check_time(cost: u32) -> std::time::Duration {
    let started = std::time::Instant::now();
    let _ = bcrypt::hash_with_salt("timing", 4, [7; 16]);
    started.elapsed() * 2u32.saturating_pow(cost.saturating_sub(4))
}
