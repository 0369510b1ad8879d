//! The config's errors name the file, line, column and key path.

use super::parse;

const GOOD: &str = r#"
[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 3 }]
backup = ["127.0.0.1:9003"]
selection = "weighted"

[upstreams.app.retry]
retry_on = ["connect-failure", "timeout", 503]
backoff = { base = "25ms", cap = "250ms" }
deadline = "5s"
replay_buffer = "128KiB"

[[routes]]
path_prefix = "/pay"
upstream = "app"
retry = { max_attempts = 1 }

[[routes]]
upstream = "app"
"#;

#[test]
fn a_good_config_builds() {
    let config = parse(GOOD, "good.toml").unwrap();
    assert_eq!(config.listen[0].to_string(), "127.0.0.1:8080");
    let app = &config.groups["app"];
    assert_eq!(app.backends().primaries()[1].weight, 3);
    assert_eq!(app.policy().replay_buffer, 128 * 1024);
    assert!(app.policy().rules.retry_on.timeout);
    assert_eq!(app.policy().rules.retry_on.statuses, [503]);
    let overridden = config.routes[0].policy.as_ref().unwrap();
    assert_eq!(overridden.limits.max_retries, Some(0));
    assert_eq!(
        overridden.rules.retry_on,
        app.policy().rules.retry_on,
        "not overridden: inherited"
    );
    assert!(config.routes[1].policy.is_none(), "the group's own");
    let group = config.routes[1].group().unwrap();
    assert_eq!(group.policy().limits.max_retries, Some(2));
}

fn error_of(text: &str) -> String {
    parse(text, "bad.toml").unwrap_err().to_string()
}

#[test]
fn errors_are_located() {
    let bad_addr = GOOD.replace("127.0.0.1:9002", "127.0.0.1:99999");
    assert_eq!(
        error_of(&bad_addr),
        "bad.toml:6:30: upstreams.app.servers[1]: \"127.0.0.1:99999\" is not ip:port or host:port: \"99999\" is not a port number"
    );
    let unknown_key = GOOD.replace("selection = \"weighted\"", "selektion = \"weighted\"");
    let e = error_of(&unknown_key);
    assert!(
        e.starts_with(
            "bad.toml:8:1: upstreams.app.selektion: unknown field `selektion`, expected one of"
        ),
        "{e}"
    );
    let bad_duration = GOOD.replace("deadline = \"5s\"", "deadline = \"soon\"");
    let e = error_of(&bad_duration);
    assert!(
        e.starts_with("bad.toml:13:12: upstreams.app.retry.deadline: \"soon\" is not a duration"),
        "{e}"
    );
    let unknown_group = GOOD.replace("upstream = \"app\"\nretry", "upstream = \"ap\"\nretry");
    assert_eq!(
        error_of(&unknown_group),
        "bad.toml:18:12: routes[0].upstream: no upstream group \"ap\"; defined: app"
    );
    let bad_failure = GOOD.replace("\"timeout\"", "\"timeouts\"");
    assert!(
        error_of(&bad_failure)
            .starts_with("bad.toml:11:32: upstreams.app.retry.retry_on[1]: unknown failure")
    );
    let broken = GOOD.replace("[server]", "[server");
    assert!(
        error_of(&broken).starts_with("bad.toml:2:"),
        "{}",
        error_of(&broken)
    );
}

#[test]
fn several_groups_need_routes() {
    let text = "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.a]\nservers = [\"127.0.0.1:2\"]\n[upstreams.b]\nservers = [\"127.0.0.1:3\"]\n";
    assert!(error_of(text).starts_with("bad.toml: routes: with several upstream groups"));
}

/// One group whose servers are `servers` (TOML array items) and backup `backup`.
fn named(servers: &str, backup: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.app]\nservers = [{servers}]\nbackup = [{backup}]\nresolve_every = \"1s\"\n"
    )
}

fn addr(text: &str) -> std::net::SocketAddr {
    text.parse().unwrap()
}

#[test]
fn a_server_name_is_every_address_it_resolves_to_with_its_weight() {
    use switchyard::discovery::ServerName;

    let text = named(
        r#"{ addr = "localhost:9001", weight = 2 }, "127.0.0.1:9002""#,
        "",
    );
    let config = parse(&text, "names.toml").unwrap();
    let app = &config.groups["app"];
    let name = ServerName::parse("localhost:9001").unwrap();
    assert_eq!(app.names(), std::slice::from_ref(&name));
    assert_eq!(app.resolve_every(), std::time::Duration::from_secs(1));
    let resolved = config.answers.get(&name).unwrap().to_vec();
    assert!(!resolved.is_empty());
    let primaries = app.backends().primaries();
    assert_eq!(primaries.len(), resolved.len() + 1);
    assert!(primaries[..resolved.len()].iter().all(|b| b.weight == 2));

    // The name now stands for two addresses, one of them listed as
    // ip:port after it: that one is not added twice, and stays where listed.
    let mut answers = config.answers.clone();
    answers.insert(
        name.clone(),
        vec![addr("127.0.0.1:9002"), addr("127.0.0.1:9005")],
    );
    let moved = config.with_answers(answers, &[name]).unwrap();
    let addrs: Vec<String> = moved.groups["app"]
        .backends()
        .primaries()
        .iter()
        .map(|b| b.addr.to_string())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:9005", "127.0.0.1:9002"]);
}

#[test]
fn server_names_and_resolve_every_are_checked() {
    assert_eq!(
        error_of(&named(r#""local_host:80""#, "")),
        "bad.toml:4:12: upstreams.app.servers[0]: \"local_host:80\" is not ip:port or host:port: \
         \"local_host\" is not a host name: use only letters, digits, '-' and '.'"
    );
    assert!(
        error_of(&named(r#""localhost""#, "")).ends_with(
            "\"localhost\" is not ip:port or host:port: there is no port: write host:port"
        )
    );
    assert_eq!(
        error_of(&named(r#""127.0.0.1:80""#, r#""127.0.0.1:80""#)),
        "bad.toml:5:11: upstreams.app.backup[0]: 127.0.0.1:80 is listed twice in this group"
    );
    let fast = named(r#""localhost:80""#, "").replace("\"1s\"", "\"10ms\"");
    assert_eq!(
        error_of(&fast),
        "bad.toml: upstreams.app.resolve_every: must be at least 100ms"
    );
}

#[test]
fn an_address_listed_as_ip_port_keeps_its_weight_and_tier_whatever_a_name_says() {
    use switchyard::discovery::ServerName;

    let text = named(
        r#""localhost:9001""#,
        r#"{ addr = "127.0.0.1:9009", weight = 5 }"#,
    );
    let config = parse(&text, "names.toml").unwrap();
    let name = ServerName::parse("localhost:9001").unwrap();
    let mut answers = config.answers.clone();
    answers.insert(
        name.clone(),
        vec![addr("127.0.0.1:9001"), addr("127.0.0.1:9009")],
    );
    let moved = config.with_answers(answers, &[name]).unwrap();
    let backends = &moved.groups["app"].backends();
    let primaries: Vec<String> = backends
        .primaries()
        .iter()
        .map(|b| b.addr.to_string())
        .collect();
    assert_eq!(primaries, ["127.0.0.1:9001"]);
    assert_eq!(backends.backups()[0].addr, addr("127.0.0.1:9009"));
    assert_eq!(backends.backups()[0].weight, 5);
}

#[test]
fn a_changed_answer_rebuilds_only_the_groups_that_use_the_name() {
    use switchyard::discovery::ServerName;

    let text = "[server]\nlisten = [\"127.0.0.1:1\"]\n\
                [upstreams.named]\nservers = [\"localhost:9001\"]\n\
                [upstreams.fixed]\nservers = [\"127.0.0.1:9002\"]\n\
                [[routes]]\npath_prefix = \"/a\"\nupstream = \"named\"\n\
                [[routes]]\nupstream = \"fixed\"\n";
    let config = parse(text, "two.toml").unwrap();
    let name = ServerName::parse("localhost:9001").unwrap();
    let mut answers = config.answers.clone();
    answers.insert(name.clone(), vec![addr("127.0.0.1:9003")]);
    let moved = config.with_answers(answers, &[name]).unwrap();
    let same = |group: &str| std::sync::Arc::ptr_eq(&config.groups[group], &moved.groups[group]);
    assert!(same("fixed"), "a group without the name is kept as it is");
    assert!(!same("named"));
    assert_eq!(
        moved.groups["named"].backends().primaries()[0].addr,
        addr("127.0.0.1:9003")
    );
    assert!(std::sync::Arc::ptr_eq(
        moved.routes[1].group().unwrap(),
        &config.groups["fixed"]
    ));
}

#[test]
fn empty_health_sections_take_the_library_defaults() {
    use switchyard::health::OutlierPolicy;
    use switchyard::health::checker::CheckOptions;

    let text = "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.app]\nservers = [\"127.0.0.1:2\"]\n\
                [upstreams.app.health_check]\n[upstreams.app.outlier]\n";
    let config = parse(text, "defaults.toml").unwrap();
    let app = &config.groups["app"];
    assert_eq!(app.checks(), Some(&CheckOptions::default()));
    let section = &config.effective.upstreams["app"];
    let check = section.health_check.as_ref().unwrap();
    assert_eq!((check.rise, check.fall), (2, 3));
    assert_eq!(
        super::health::outlier_policy(
            &super::Source { file: "", text: "" },
            &section.outlier,
            "outlier"
        )
        .unwrap(),
        OutlierPolicy::default()
    );
}

#[test]
fn the_retry_budget_is_the_groups_with_defaults() {
    let config = parse(GOOD, "good.toml").unwrap();
    let policy = config.groups["app"].budget().policy();
    assert_eq!(
        (policy.percent, policy.min_per_second, policy.window),
        (20, 10, std::time::Duration::from_secs(10))
    );
    let text = GOOD.replace(
        "replay_buffer = \"128KiB\"",
        "replay_buffer = \"128KiB\"\nbudget_percent = 0\nbudget_min_per_second = 2\nbudget_window = \"30s\"",
    );
    let policy = parse(&text, "budget.toml").unwrap().groups["app"]
        .budget()
        .policy();
    assert_eq!(
        (policy.percent, policy.min_per_second, policy.window),
        (0, 2, std::time::Duration::from_secs(30))
    );
}

#[test]
fn budget_keys_are_refused_on_a_route_and_a_tiny_window_is_refused() {
    let text = GOOD.replace(
        "retry = { max_attempts = 1 }",
        "retry = { max_attempts = 1, budget_percent = 50 }",
    );
    let e = error_of(&text);
    assert!(e.contains("budget_percent"), "{e}");
    let text = GOOD.replace(
        "replay_buffer = \"128KiB\"",
        "replay_buffer = \"128KiB\"\nbudget_window = \"1ms\"",
    );
    let e = error_of(&text);
    assert!(
        e.contains("upstreams.app.retry.budget_window: must be at least 100ms"),
        "{e}"
    );
}

#[test]
fn max_connections_defaults_from_the_open_file_limit_and_is_at_least_1() {
    let config = parse(GOOD, "good.toml").unwrap();
    // Each worker enforces its share.
    assert_eq!(
        config.server.max_connections,
        Some(crate::limits::default_max_connections().div_ceil(config.workers))
    );
    let text = GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\nmax_connections = 2\nworkers = 1",
    );
    assert_eq!(
        parse(&text, "two.toml").unwrap().server.max_connections,
        Some(2)
    );
    let text = GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\nmax_connections = 0",
    );
    let e = error_of(&text);
    assert!(
        e.contains("server.max_connections: must be at least 1"),
        "{e}"
    );
}

#[test]
fn errors_found_by_the_property_tests_are_located() {
    // A syntax error at the first byte used to have no place.
    assert!(
        error_of("}").starts_with("bad.toml:1:1: "),
        "{}",
        error_of("}")
    );
    // A missing top-level table used to have neither place nor key.
    assert_eq!(
        error_of("[log]\n"),
        "bad.toml: server: missing field `server`"
    );
    let e = error_of("[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.a]\n");
    assert!(
        e.contains("upstreams.a.servers: missing field `servers`"),
        "{e}"
    );
}

/// Property tests of the loader: no input panics it, and every refused
/// input gets a located error (a line and column, or a key path). No
/// generated input names a server that would need a DNS lookup.
mod properties {
    use proptest::prelude::*;

    use super::{GOOD, parse};

    /// Values to put where a config value was: wrong types, bad units,
    /// out-of-range numbers, and some good ones.
    const VALUES: [&str; 24] = [
        "-1",
        "0",
        "1",
        "17",
        "99999999999999999999",
        "1.5",
        "true",
        "\"\"",
        "\"1s\"",
        "\"-5s\"",
        "\"0s\"",
        "\"abc\"",
        "\"64KiB\"",
        "\"9999999TiB\"",
        "\"127.0.0.1:80\"",
        "\"127.0.0.1:99999\"",
        "\"localhost:1\"",
        "[]",
        "[1, \"x\"]",
        "[\"127.0.0.1:1\", \"127.0.0.1:1\"]",
        "{}",
        "{ base = \"1s\", cap = \"1ms\" }",
        "{ addr = \"127.0.0.1:1\", weight = 0 }",
        "\"weighted\"",
    ];

    fn check(text: &str) -> Result<(), TestCaseError> {
        if let Err(e) = parse(text, "bad.toml") {
            prop_assert!(
                e.at.is_some() || !e.key.is_empty(),
                "an error with no place: {e}"
            );
            prop_assert!(e.to_string().starts_with("bad.toml"), "{e}");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_value_in_any_place_is_refused_with_its_place_or_accepted(
            line in 0usize..32,
            value in prop::sample::select(VALUES.to_vec()),
        ) {
            let lines: Vec<&str> = GOOD.lines().collect();
            let index = line % lines.len();
            let mutated: Vec<String> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| match l.split_once('=') {
                    Some((key, _)) if i == index => format!("{key}= {value}"),
                    _ => (*l).to_string(),
                })
                .collect();
            check(&mutated.join("\n"))?;
        }

        #[test]
        fn a_key_dropped_or_doubled_is_handled(line in 0usize..32, double in any::<bool>()) {
            let lines: Vec<&str> = GOOD.lines().collect();
            let index = line % lines.len();
            let mut mutated: Vec<&str> = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                if i != index || double {
                    mutated.push(l);
                }
                if i == index && double {
                    mutated.push(l);
                }
            }
            check(&mutated.join("\n"))?;
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[^:]{0,300}") {
            check(&text)?;
        }

        #[test]
        fn toml_shaped_text_never_panics(
            sections in prop::collection::vec(
                prop::sample::select(vec![
                    "[server]", "[log]", "[upstreams.a]", "[upstreams.a.retry]",
                    "[upstreams.a.health_check]", "[upstreams.a.outlier]", "[[routes]]",
                ]),
                0..6,
            ),
            keys in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "listen", "servers", "backup", "upstream", "max_attempts", "retry_on",
                        "backoff", "deadline", "budget_window", "weight", "selection",
                        "max_request_body", "max_connections", "interval", "kind", "statuses",
                    ]),
                    prop::sample::select(VALUES.to_vec()),
                ),
                0..12,
            ),
        ) {
            let mut text = String::new();
            for (i, section) in sections.iter().enumerate() {
                text.push_str(section);
                text.push('\n');
                for (key, value) in keys.iter().skip(i * 2).take(2) {
                    text.push_str(&format!("{key} = {value}\n"));
                }
            }
            check(&text)?;
        }
    }
}

#[test]
fn a_connection_limit_of_0_is_refused() {
    let text = GOOD.replace(
        "selection = \"weighted\"",
        "selection = \"weighted\"\nmax_connections_per_server = 0",
    );
    let e = error_of(&text);
    assert!(
        e.contains("upstreams.app.max_connections_per_server: must be at least 1"),
        "{e}"
    );
}

#[test]
fn forwarded_headers_and_trusted_proxies_are_read_and_checked() {
    use switchyard::proxy::identity::ForwardedStyle;
    let config = parse(GOOD, "good.toml").unwrap();
    let identity = &config.server.client_identity;
    assert_eq!(identity.style, ForwardedStyle::XForwarded);
    assert!(identity.trusted_proxies.is_empty());
    let text = GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\nforwarded = \"both\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]",
    );
    let identity = parse(&text, "trusted.toml").unwrap().server.client_identity;
    assert_eq!(identity.style, ForwardedStyle::Both);
    assert!(identity.trusts("10.9.8.7".parse().unwrap()));
    assert!(identity.trusts("127.0.0.1".parse().unwrap()));
    assert!(!identity.trusts("127.0.0.2".parse().unwrap()));
    let text = GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]",
    );
    let e = error_of(&text);
    assert!(
        e.starts_with("bad.toml:4:") && e.contains("server.trusted_proxies[1]: \"nope\" is not"),
        "{e}"
    );
}

#[test]
fn http2_limits_are_read_with_the_librarys_defaults() {
    let base = "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.a]\nservers = [\"127.0.0.1:2\"]\n";
    let config = parse(base, "h2.toml").unwrap();
    assert_eq!(
        config.server.http2,
        switchyard::server::Http2Options::default()
    );
    let text = base.replace(
        "[upstreams.a]",
        "[server.http2]\nmax_concurrent_streams = 7\nkeep_alive_interval = \"0s\"\n[upstreams.a]",
    );
    let config = parse(&text, "h2.toml").unwrap();
    assert_eq!(config.server.http2.max_concurrent_streams, 7);
    assert_eq!(config.server.http2.keep_alive_interval, None);
    let text = base.replace(
        "[upstreams.a]",
        "[server.http2]\nmax_concurrent_streams = 0\n[upstreams.a]",
    );
    assert!(error_of(&text).contains("server.http2.max_concurrent_streams: must be at least 1"));
}

#[test]
fn workers_default_to_the_cores_and_share_out_the_connection_limits() {
    let config = parse(GOOD, "good.toml").unwrap();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(config.workers, cores);
    let text = GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\nmax_connections = 5\nworkers = 2",
    );
    let config = parse(&text, "two-workers.toml").unwrap();
    assert_eq!(config.workers, 2);
    // 5 shared by 2 workers: 3 each (rounded up), on a port both bind.
    assert_eq!(config.server.max_connections, Some(3));
    assert!(config.server.reuse_port);
    for group in config.groups.values() {
        // The default 1024 per server, 512 per worker.
        assert_eq!(group.peer_options().max_connections, Some(512));
    }
    let one = GOOD.replace(
        "listen = [\"127.0.0.1:8080\"]",
        "listen = [\"127.0.0.1:8080\"]\nworkers = 1",
    );
    let config = parse(&one, "one-worker.toml").unwrap();
    assert!(!config.server.reuse_port);
    for group in config.groups.values() {
        assert_eq!(group.peer_options().max_connections, Some(1024));
    }
}

#[test]
fn a_route_name_is_used_once() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.app]\nservers = [\"127.0.0.1:9001\"]\n\n\
                [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\n\n\
                [[routes]]\nname = \"api\"\nupstream = \"app\"\n";
    let e = error_of(text);
    assert!(e.contains("routes[1].name"), "{e}");
    assert!(e.contains("routes[0] has the name \"api\" already"), "{e}");
    let named = text.replacen("name = \"api\"\nupstream", "name = \"rest\"\nupstream", 1);
    assert!(parse(&named, "ok.toml").is_ok());
}

#[test]
fn unix_socket_servers_build_and_tls_to_one_is_refused() {
    let unix = GOOD.replace("\"127.0.0.1:9001\"", "\"unix:/run/app.sock\"");
    let config = parse(&unix, "unix.toml").unwrap();
    let servers: Vec<String> = config.groups["app"]
        .health()
        .peers()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        servers.contains(&"unix:/run/app.sock".to_string()),
        "{servers:?}"
    );

    let tls = "[server]\nlisten = [\"127.0.0.1:8080\"]\n\
               [upstreams.app]\nservers = [\"https://unix:/run/app.sock\"]\n";
    let e = error_of(tls);
    assert!(e.contains("TLS is not spoken over a Unix socket"), "{e}");
    let relative = GOOD.replace("\"127.0.0.1:9001\"", "\"unix:run/app.sock\"");
    assert!(error_of(&relative).contains("must be absolute"));
}
