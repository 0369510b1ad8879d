//! TLS in the config file: `[server.tls]` (HTTPS listeners, their
//! certificates, client certificates) and `[upstreams.NAME.tls]` (trust and
//! identity for servers written `https://HOST:PORT`).
//!
//! Paths are used as written: a relative path is relative to the directory
//! switchyard was started in. Every file is read and checked when the
//! config is loaded (`switchyard check` too), and again on each reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard::acme::{Acme, AcmeSettings, Backoff, Challenge};
use switchyard::tls::{
    CertificateFiles, ServerTls, ServerTlsSettings, UpstreamTls, UpstreamTlsSettings,
};
use toml::Spanned;

use super::file::{AcmeChallengeName, AcmeSection, ListenerTlsSection, UpstreamTlsSection};
use super::{ConfigError, Source};

/// The HTTPS listeners of a config, loaded.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// Where to serve HTTPS.
    pub listen: Vec<SocketAddr>,
    /// What was read, to compare on reload.
    pub settings: ServerTlsSettings,
    /// The certificates, loaded and checked.
    pub loaded: ServerTls,
    /// Time a client has to complete its handshake.
    pub handshake_timeout: Duration,
    /// Certificates from an ACME CA, served beside the files'; the running
    /// proxy starts their renewal (`serve/`).
    pub acme: Option<Acme>,
}

/// The addresses of `KEY.listen`: at least one, each `ip:port`; `what`
/// names what is served there, for the error.
pub(super) fn listen_addrs(
    source: &Source<'_>,
    key: &str,
    listen: &[Spanned<String>],
    what: &str,
    parse_addr: impl Fn(&Spanned<String>, &str) -> Result<SocketAddr, ConfigError>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    if listen.is_empty() {
        let message = format!("give at least one address to serve {what} on");
        return Err(source.error(None, &format!("{key}.listen"), message));
    }
    listen
        .iter()
        .enumerate()
        .map(|(i, addr)| parse_addr(addr, &format!("{key}.listen[{i}]")))
        .collect()
}

/// Check and load `[server.tls]`.
pub(super) fn listener_tls(
    source: &Source<'_>,
    section: &ListenerTlsSection,
    parse_addr: impl Fn(&Spanned<String>, &str) -> Result<SocketAddr, ConfigError>,
) -> Result<ListenerTls, ConfigError> {
    let key = "server.tls";
    let listen = listen_addrs(source, key, &section.listen, "HTTPS", parse_addr)?;
    let mut certificates = Vec::new();
    match (&section.cert, &section.key) {
        (Some(cert), Some(k)) => certificates.push(CertificateFiles::new(cert, k)),
        (None, None) => {}
        (Some(_), None) => {
            return Err(source.error(None, &format!("{key}.key"), "cert needs its key"));
        }
        (None, Some(_)) => {
            return Err(source.error(None, &format!("{key}.cert"), "key needs its cert"));
        }
    }
    certificates.extend(
        section
            .certificates
            .iter()
            .map(|entry| CertificateFiles::new(&entry.cert, &entry.key)),
    );
    let acme = match &section.acme {
        Some(acme) => Some(acme_of(source, acme)?),
        None => None,
    };
    if section.client_ca.is_some()
        && acme
            .as_ref()
            .is_some_and(|acme| acme.settings().challenge == Challenge::TlsAlpn01)
    {
        let message = "with client_ca every handshake needs a client certificate, and the CA's tls-alpn-01 validation has none: use challenge = \"http-01\"";
        return Err(source.error(None, &format!("{key}.acme.challenge"), message));
    }
    if certificates.is_empty() && acme.is_none() {
        let message = "give a certificate: cert and key, certificates = [{ cert, key }, ..], or acme = { domains = [..] }";
        return Err(source.error(None, &format!("{key}.cert"), message));
    }
    let settings = ServerTlsSettings {
        certificates,
        client_ca: section.client_ca.as_ref().map(PathBuf::from),
    };
    let loaded = ServerTls::load_with_acme(&settings, acme.as_ref())
        .map_err(|e| source.error(None, key, explain(&e)))?;
    Ok(ListenerTls {
        listen,
        settings,
        loaded,
        handshake_timeout: section.handshake_timeout.0,
        acme,
    })
}

/// Check `[server.tls] acme` and load what earlier runs stored.
fn acme_of(source: &Source<'_>, section: &AcmeSection) -> Result<Acme, ConfigError> {
    let key = "server.tls.acme";
    let storage = match &section.storage {
        Some(path) => PathBuf::from(path),
        None => AcmeSettings::default_storage().ok_or_else(|| {
            let message = "no state directory to keep certificates in (none of STATE_DIRECTORY, XDG_STATE_HOME, HOME is set): give storage = \"PATH\"";
            source.error(None, &format!("{key}.storage"), message)
        })?,
    };
    let mut settings = AcmeSettings::new(section.domains.clone(), storage);
    settings.email = section.email.clone();
    settings.directory = section.directory.clone();
    settings.directory_ca = section.directory_ca.as_ref().map(PathBuf::from);
    settings.challenge = match section.challenge {
        AcmeChallengeName::TlsAlpn01 => Challenge::TlsAlpn01,
        AcmeChallengeName::Http01 => Challenge::Http01,
    };
    settings.retry = Backoff {
        first: section.retry_after.0,
        max: Backoff::default().max.max(section.retry_after.0),
    };
    Acme::new(settings).map_err(|e| source.error(None, key, explain(&e)))
}

/// How a group reaches its `https://` servers.
#[derive(Debug, Clone)]
pub struct GroupTls {
    /// Trust and client certificate, loaded.
    pub settings: UpstreamTls,
    /// The name every server is verified as, when set.
    pub server_name: Option<String>,
}

/// Check and load a group's TLS: `https` says whether its servers were
/// written `https://`.
pub(super) fn group_tls(
    source: &Source<'_>,
    key: &str,
    https: bool,
    section: Option<&UpstreamTlsSection>,
) -> Result<Option<GroupTls>, ConfigError> {
    let key = format!("{key}.tls");
    let section = match (https, section) {
        (false, None) => return Ok(None),
        (false, Some(_)) => {
            let message =
                "the servers are not https://; write them as https://HOST:PORT to use TLS";
            return Err(source.error(None, &key, message));
        }
        (true, section) => section.cloned().unwrap_or_default(),
    };
    let client_certificate = match (&section.client_cert, &section.client_key) {
        (Some(cert), Some(k)) => Some(CertificateFiles::new(cert, k)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(source.error(
                None,
                &format!("{key}.client_key"),
                "client_cert needs its key",
            ));
        }
        (None, Some(_)) => {
            return Err(source.error(
                None,
                &format!("{key}.client_cert"),
                "client_key needs its cert",
            ));
        }
    };
    if let Some(name) = &section.server_name
        && rustls_name_is_invalid(name)
    {
        let message = format!("{name:?} is not a DNS name or IP address");
        return Err(source.error(None, &format!("{key}.server_name"), message));
    }
    let settings = UpstreamTlsSettings {
        ca_file: section.ca.as_ref().map(PathBuf::from),
        insecure_skip_verify: section.insecure_skip_verify,
        client_certificate,
    };
    let settings =
        UpstreamTls::load(&settings).map_err(|e| source.error(None, &key, explain(&e)))?;
    Ok(Some(GroupTls {
        settings,
        server_name: section.server_name.clone(),
    }))
}

/// What went wrong loading TLS files, without the error's kind: the file
/// and why, e.g. `reading certificates from a.pem: No such file or directory`.
fn explain(e: &switchyard::Error) -> String {
    let context = e.context().unwrap_or("loading TLS files");
    match e.cause() {
        Some(cause) => format!("{context}: {cause}"),
        None => context.to_string(),
    }
}

fn rustls_name_is_invalid(name: &str) -> bool {
    rustls_pki_types::ServerName::try_from(name).is_err()
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    fn group(servers: &str, tls: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.app]\nservers = [{servers}]\n{tls}"
        )
    }

    #[test]
    fn https_servers_are_verified_by_the_name_they_were_written_with() {
        let text = group(r#""https://localhost:9443", "https://127.0.0.1:9444""#, "");
        let config = parse(&text, "tls.toml").unwrap();
        let app = &config.groups["app"];
        assert!(app.uses_tls());
        let ip = app.peer("127.0.0.1:9444".parse::<std::net::SocketAddr>().unwrap());
        assert!(ip.tls);
        assert_eq!(ip.sni, "", "an ip:port server is verified by its address");
        let named = app.backends().primaries()[0].addr;
        assert_eq!(app.peer(named).sni, "localhost");

        let text = group(
            r#""https://localhost:9443""#,
            "[upstreams.app.tls]\nserver_name = \"origin.internal\"\n",
        );
        let config = parse(&text, "tls.toml").unwrap();
        let app = &config.groups["app"];
        let named = app.backends().primaries()[0].addr;
        assert_eq!(app.peer(named).sni, "origin.internal");

        let plain = parse(&group(r#""http://127.0.0.1:9000""#, ""), "plain.toml").unwrap();
        assert!(
            !plain.groups["app"]
                .peer("127.0.0.1:9000".parse::<std::net::SocketAddr>().unwrap())
                .tls
        );
    }

    #[test]
    fn tls_settings_that_cannot_work_are_located_errors() {
        let error = |text: &str| parse(text, "bad.toml").unwrap_err().to_string();
        let e = error(&group(r#""https://127.0.0.1:1", "127.0.0.1:2""#, ""));
        assert!(
            e.starts_with("bad.toml:4:35: upstreams.app.servers[1]"),
            "{e}"
        );
        assert!(e.contains("all http://, all https:// or all h2c://"), "{e}");
        let e = error(&group(
            r#""127.0.0.1:1""#,
            "[upstreams.app.tls]\nca = \"ca.pem\"\n",
        ));
        assert!(
            e.contains("upstreams.app.tls: the servers are not https://"),
            "{e}"
        );
        let e = error(&group(r#""ftp://127.0.0.1:1""#, ""));
        assert!(e.contains("only http://, https:// and h2c://"), "{e}");
        let e = error(&group(
            r#""https://127.0.0.1:1""#,
            "[upstreams.app.tls]\nclient_cert = \"c.pem\"\n",
        ));
        assert!(e.contains("upstreams.app.tls.client_key"), "{e}");
        let e = error(
            "[server]\n[server.tls]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.app]\nservers = [\"127.0.0.1:2\"]\n",
        );
        assert!(e.contains("server.tls.cert: give a certificate"), "{e}");
        let e = error("[server]\n[upstreams.app]\nservers = [\"127.0.0.1:2\"]\n");
        assert!(e.contains("server.listen"), "{e}");
    }
}
