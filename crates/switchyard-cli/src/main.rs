//! `switchyard`: the reverse proxy as a program. See `switchyard --help`
//! and the README; the config format is in `docs/config.md`. The work is
//! done in the `switchyard_cli` library; this file only dispatches.
//!
//! Exit codes: 0 success; 1 the proxy failed while running (cannot bind,
//! a server task failed); 2 a bad config or command line.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use switchyard::log_file::{LogTarget, LogWriter};
use switchyard::otlp::OtlpExporter;
use switchyard_cli::cli::{Cli, Command, LogFormatArg};
use switchyard_cli::config::{self, Config, LogFormat};
use switchyard_cli::handover::Inherited;
use switchyard_cli::observe::{AccessLog, Observer};
use switchyard_cli::serve::Relaunch;
use switchyard_cli::{
    OneLiner, OneLinerAcme, demo, diagnostics, one_liner, pid_file, runtime, serve,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a bad config or command line.
const BAD_INPUT: u8 = 2;

/// At exit, the longest wait for log lines still queued.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// At exit, the longest wait for spans still queued for export (within
/// `LOG_FLUSH`, after the access log's lines).
const SPAN_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format.map(|f| match f {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });
    match cli.command {
        Command::Check { config } => with_stderr_diagnostics(|| match config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} listener(s), {} upstream group(s), {} route(s))",
                    config.display(),
                    c.listen.len() + c.tls.as_ref().map_or(0, |tls| tls.listen.len()),
                    c.groups.len(),
                    c.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => bad_input(&e.to_string()),
        }),
        Command::Run { config: path } => {
            let Some(mut inherited) = inherited() else {
                return ExitCode::FAILURE;
            };
            match diagnostics::during_startup(|| config::load(&path)) {
                Ok(c) => run(c, log_format, Some(&path), inherited),
                Err(e) => refused(&mut inherited, &e.to_string()),
            }
        }
        Command::Proxy {
            listen,
            domain,
            http_listen,
            acme_directory,
            acme_ca,
            acme_email,
            acme_storage,
            acme_challenge,
            http3,
            to,
            backup,
            tls_cert,
            tls_key,
            upstream_ca,
            upstream_insecure,
            connect_timeout,
            read_timeout,
            workers,
            admin,
            access_log,
            admin_token_file,
            pid_file,
        } => {
            let Some(mut inherited) = inherited() else {
                return ExitCode::FAILURE;
            };
            let acme = (!domain.is_empty()).then(|| OneLinerAcme {
                domains: domain,
                http_listen: Some(http_listen),
                directory: acme_directory,
                directory_ca: acme_ca,
                email: acme_email,
                storage: acme_storage,
                http_01: acme_challenge == "http-01",
            });
            let args = OneLiner {
                listen,
                acme,
                http3,
                to,
                backup,
                tls: tls_cert.zip(tls_key),
                upstream_ca,
                upstream_insecure,
                connect_timeout,
                read_timeout,
                workers,
                admin,
                access_log,
                admin_token_file,
                pid_file,
            };
            let file = match one_liner(&args) {
                Ok(file) => file,
                Err(message) => return refused(&mut inherited, &message),
            };
            match diagnostics::during_startup(|| config::from_file_config(file, "command line")) {
                Ok(c) => run(c, log_format, None, inherited),
                Err(e) => refused(&mut inherited, &e.to_string()),
            }
        }
        Command::Upgrade { pid_file, timeout } => {
            let wait = match humantime::parse_duration(&timeout) {
                Ok(wait) => wait,
                Err(e) => return bad_input(&format!("--timeout {timeout:?}: {e}")),
            };
            match switchyard_cli::binary_upgrade::run(&pid_file, wait) {
                Ok(outcome) => {
                    println!("switchyard upgrade: {outcome}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("switchyard upgrade: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "switchyard", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let page = clap_mangen::Man::new(Cli::command());
            match page.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchyard man: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Why { id, admin, json } => match switchyard_cli::why::run(&id, admin, json) {
            Ok(story) => {
                print!("{story}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("switchyard why: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { keep_running } => {
            with_stderr_diagnostics(|| match demo::run(keep_running, log_format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("switchyard demo: {message}");
                    ExitCode::FAILURE
                }
            })
        }
    }
}

/// The sockets handed over when this process was started by an upgrade
/// (none otherwise); `None` (after saying why) if they could not be read.
fn inherited() -> Option<Inherited> {
    match Inherited::from_parent() {
        Ok(inherited) => Some(inherited),
        Err(message) => {
            eprintln!("switchyard: {message}");
            None
        }
    }
}

/// A config or command line that cannot be served: said on stderr, and to
/// the process this one was to replace.
fn refused(inherited: &mut Inherited, message: &str) -> ExitCode {
    inherited.failed(message);
    bad_input(message)
}

fn bad_input(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(BAD_INPUT)
}

/// Run `command` with diagnostics on standard error (`RUST_LOG` sets the
/// level, default warn), written out before returning.
fn with_stderr_diagnostics(command: impl FnOnce() -> ExitCode) -> ExitCode {
    let errors = match diagnostics::init(LogTarget::Stderr) {
        Ok(errors) => errors,
        Err(message) => {
            eprintln!("switchyard: {message}");
            return ExitCode::FAILURE;
        }
    };
    switchyard_cli::limits::raise_open_files();
    let code = command();
    errors.flush(LOG_FLUSH);
    code
}

/// The proxy could not start: said on stderr, and to the process this one
/// was to replace.
fn failed(inherited: &mut Inherited, message: &str) -> ExitCode {
    inherited.failed(message);
    eprintln!("switchyard: {message}");
    ExitCode::FAILURE
}

/// The access log `config` and `--log-format` ask for (`None`: off), its
/// file opened now.
fn access_log(config: &Config, log_format: Option<LogFormat>) -> Result<Option<AccessLog>, String> {
    if !config.log.access {
        return Ok(None);
    }
    let writer = LogWriter::open(config.access_log.clone())
        .map_err(|e| format!("cannot open the access log: {e}"))?;
    Ok(Some(AccessLog {
        format: log_format.unwrap_or(config.log.format),
        writer,
    }))
}

/// Serve `config` until SIGTERM or SIGINT; on SIGHUP, reload it from
/// `reload_from` (a config that does not check is refused and the running
/// one kept).
fn run(
    config: Config,
    log_format: Option<LogFormat>,
    reload_from: Option<&Path>,
    mut inherited: Inherited,
) -> ExitCode {
    let (errors, access_log) = match diagnostics::init(config.error_log.clone())
        .and_then(|errors| Ok((errors, access_log(&config, log_format)?)))
    {
        Ok(logs) => logs,
        Err(message) => return failed(&mut inherited, &message),
    };
    switchyard_cli::limits::raise_open_files();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => return failed(&mut inherited, &format!("cannot start the runtime: {e}")),
    };
    let relaunch = Relaunch::this_process();
    let pid_file = config.pid_file.clone();
    let mut logs = vec![errors.clone()];
    logs.extend(access_log.as_ref().map(|access| access.writer.clone()));
    // Stories are read only through the admin listener.
    let (recent, failed_too) = match config.admin {
        Some(_) => config.keep_traces,
        None => (0, 0),
    };
    let mut observer = Observer::new(access_log).with_traces(recent, failed_too);
    if let Some(options) = config.otlp.clone() {
        match OtlpExporter::start(options) {
            Ok(exporter) => observer = observer.with_otlp(exporter),
            Err(message) => return failed(&mut inherited, &message),
        }
    }
    let observer = Arc::new(observer);
    observer.watch_log(errors.clone());
    let result = runtime.block_on(async {
        // Caught from the start: log rotation may signal at any time, and
        // SIGUSR1's default action ends the process.
        let _reopening = serve::reopen_logs_on_sigusr1(logs);
        let started = serve::start_inheriting(config, Arc::clone(&observer), &mut inherited).await;
        let mut running = started.inspect_err(|message| inherited.failed(message))?;
        // Catch the signals before saying "ready": a script that signals
        // as soon as it reads that line must not meet their default action.
        let stop = serve::stop_signal();
        let hangups = serve::reload_signals();
        let upgrades = match relaunch {
            Ok(relaunch) => {
                running.allow_upgrades(relaunch);
                serve::upgrade_signals()
            }
            Err(message) => {
                eprintln!("switchyard: {message}");
                None
            }
        };
        // Before "ready": a script that reads that line finds the file.
        if let Some(path) = &pid_file
            && let Err(e) = pid_file::write(path)
        {
            eprintln!(
                "switchyard: cannot write the pid file {}: {e}",
                path.display()
            );
        }
        running.announce(&inherited);
        inherited.ready();
        let signals = serve::Signals {
            stop,
            hangups,
            upgrades,
        };
        running
            .serve_until(signals, reload_from.map(Path::to_path_buf))
            .await
    });
    if let Some(path) = &pid_file {
        pid_file::remove_if_ours(path);
    }
    // A name lookup still blocked in the resolver must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // One deadline for the queued spans and both logs' queued lines.
    let deadline = std::time::Instant::now() + LOG_FLUSH;
    // The access log first: a collector that is down must not cost lines.
    observer.flush_access_log(LOG_FLUSH);
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    observer.flush_spans(left.min(SPAN_FLUSH));
    errors.flush(deadline.saturating_duration_since(std::time::Instant::now()));
    match result {
        Ok(()) => {
            eprintln!("switchyard: stopped");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("switchyard: {message}");
            ExitCode::FAILURE
        }
    }
}
