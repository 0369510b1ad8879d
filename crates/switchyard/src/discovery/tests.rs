use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

/// Answers from a table the test edits; a missing name fails to resolve.
#[derive(Debug, Default)]
struct Table(Mutex<HashMap<String, Vec<SocketAddr>>>);

impl Table {
    fn set(&self, host: &str, addresses: &[&str]) {
        let parsed = addresses.iter().map(|a| a.parse().unwrap()).collect();
        self.0.lock().unwrap().insert(host.to_string(), parsed);
    }

    fn forget(&self, host: &str) {
        self.0.lock().unwrap().remove(host);
    }
}

impl Resolve for Table {
    fn resolve<'a>(&'a self, name: &'a ServerName) -> Lookup<'a> {
        let found = self.0.lock().unwrap().get(name.host()).cloned();
        Box::pin(async move { found.ok_or_else(|| io::Error::other("no such name")) })
    }
}

fn name(text: &str) -> ServerName {
    ServerName::parse(text).unwrap()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn names_parse_with_a_port_and_refuse_what_is_not_a_host_name() {
    let parsed = name("Backend-1.Example.:443");
    assert_eq!((parsed.host(), parsed.port()), ("backend-1.example.", 443));
    assert_eq!(parsed.to_string(), "backend-1.example.:443");
    for bad in [
        "backend",
        "backend:",
        "backend:http",
        "backend:0",
        "backend:70000",
        ":80",
        "a..b:80",
        "-a:80",
        "a_b:80",
        "999.1.1.1:80",
        "[::1]:80",
    ] {
        assert!(ServerName::parse(bad).is_err(), "{bad:?} was accepted");
    }
    let long = format!("{}:80", "a".repeat(64));
    assert!(ServerName::parse(&long).is_err());
}

#[tokio::test]
async fn resolve_all_fails_on_the_first_name_without_addresses() {
    let table = Table::default();
    table.set("one", &["127.0.0.1:1"]);
    table.set("empty", &[]);
    let names = [name("one:1"), name("empty:1")];
    let (failed, e) = Answers::resolve_all(&table, &names).await.unwrap_err();
    assert_eq!(failed, name("empty:1"));
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let answers = Answers::resolve_all(&table, &names[..1]).await.unwrap();
    assert_eq!(answers.get(&names[0]), Some(&addrs(&["127.0.0.1:1"])[..]));
}

#[tokio::test]
async fn a_refresh_reports_only_real_changes() {
    let table = Table::default();
    table.set("svc", &["127.0.0.2:80", "127.0.0.1:80"]);
    let names = [name("svc:80")];
    let answers = Answers::resolve_all(&table, &names).await.unwrap();
    assert_eq!(
        answers.get(&names[0]),
        Some(&addrs(&["127.0.0.1:80", "127.0.0.2:80"])[..]),
        "sorted"
    );

    // The same addresses in another order, with a repeat: no change.
    table.set("svc", &["127.0.0.1:80", "127.0.0.2:80", "127.0.0.1:80"]);
    let same = answers.refresh(&table, &names).await;
    assert!(same.changed.is_empty() && same.failed.is_empty());
    assert_eq!(same.answers, answers);

    table.set("svc", &["127.0.0.3:80"]);
    let moved = answers.refresh(&table, &names).await;
    assert_eq!(moved.changed, names);
    assert_eq!(
        moved.answers.get(&names[0]),
        Some(&addrs(&["127.0.0.3:80"])[..])
    );
}

#[tokio::test]
async fn a_failed_or_empty_refresh_keeps_the_previous_addresses() {
    let table = Table::default();
    table.set("svc", &["127.0.0.1:80"]);
    let names = [name("svc:80")];
    let answers = Answers::resolve_all(&table, &names).await.unwrap();
    for outage in ["empty", "gone"] {
        match outage {
            "empty" => table.set("svc", &[]),
            _ => table.forget("svc"),
        }
        let refresh = answers.refresh(&table, &names).await;
        assert!(refresh.changed.is_empty(), "{outage}");
        assert_eq!(refresh.failed.len(), 1, "{outage}");
        assert_eq!(refresh.answers, answers, "{outage}");
    }
}

#[tokio::test]
async fn the_system_resolver_finds_localhost_in_the_hosts_file() {
    let found = SystemResolver::default()
        .resolve(&name("localhost:8080"))
        .await
        .unwrap();
    assert!(
        found
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080)
    );
    assert!(!found.is_empty());
}
