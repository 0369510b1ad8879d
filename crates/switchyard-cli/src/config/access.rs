//! A route's `allow` and `deny` lists: addresses or CIDR ranges, checked
//! into the library's [`AccessControl`].

use std::net::IpAddr;

use ipnet::IpNet;
use switchyard::route::AccessControl;

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
