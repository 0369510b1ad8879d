//! Log files: `[log] access_file` and `error_file`, `--access-log`, SIGUSR1
//! reopening them, lines dropped and counted when a file cannot be written,
//! and diagnostics without colour codes off a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Running, TempConfig, run};
use switchyard_testkit::{Origin, client, refused_addr, within};

/// A fresh directory for one test's log files, removed at the end.
struct LogDir(PathBuf);

impl LogDir {
    fn new(name: &str) -> LogDir {
        let dir =
            std::env::temp_dir().join(format!("switchyard-logs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        LogDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lines of `path` (none if it does not exist yet).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Wait until `path` holds at least `n` lines; return them.
async fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    within(10, "log file lines", async {
        loop {
            let found = lines(path);
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn the_access_log_goes_to_its_file_and_sigusr1_starts_a_new_one() {
    let origin = Origin::healthy("origin").await;
    let logs = LogDir::new("rotate");
    let access = logs.file("access.log");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[log]\naccess_file = {access:?}\n\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("access-file", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    within(10, "GET", client::get(proxy.addr, "/first"))
        .await
        .unwrap();
    let first = wait_for_lines(&access, 1).await;
    assert!(first[0].contains("\"GET /first\" 200"), "{first:?}");
    assert!(proxy.access_log().is_empty(), "{:?}", proxy.access_log());

    // logrotate: rename, then signal.
    let rotated = logs.file("access.log.1");
    std::fs::rename(&access, &rotated).unwrap();
    proxy.reopen_logs();
    proxy.wait_for_stderr("reopening the log files").await;
    within(10, "GET", client::get(proxy.addr, "/second"))
        .await
        .unwrap();
    let second = wait_for_lines(&access, 1).await;
    assert!(second[0].contains("\"GET /second\" 200"), "{second:?}");
    assert_eq!(lines(&rotated).len(), 1, "{:?}", lines(&rotated));
}

#[tokio::test]
async fn the_one_liner_writes_its_access_log_to_the_file_given() {
    let origin = Origin::healthy("origin").await;
    let logs = LogDir::new("one-liner");
    let access = logs.file("access.log");
    let proxy = Running::start(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &origin.addr().to_string(),
        "--workers",
        "1",
        "--access-log",
        access.to_str().unwrap(),
    ]);
    within(10, "GET", client::get(proxy.addr, "/hello"))
        .await
        .unwrap();
    let written = wait_for_lines(&access, 1).await;
    assert!(written[0].contains("\"GET /hello\" 200"), "{written:?}");
    assert!(proxy.access_log().is_empty());
}

/// A config whose only server refuses connections: every request fails
/// with 502, and the server's ejection is a warning.
async fn refused_config(log: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[log]\n{log}\n\n\
         [upstreams.app]\nservers = [\"{}\"]\n",
        refused_addr().await
    )
}

#[tokio::test]
async fn diagnostics_go_to_the_error_file_without_colour_codes() {
    let logs = LogDir::new("errors");
    let errors = logs.file("error.log");
    let text = refused_config(&format!("error_file = {errors:?}")).await;
    let file = TempConfig::new("error-file", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    let written = wait_for_lines(&errors, 1).await;
    assert!(written.iter().any(|l| l.contains("WARN")), "{written:?}");
    assert!(!written.iter().any(|l| l.contains('\u{1b}')), "{written:?}");
    assert!(
        !proxy.stderr().iter().any(|l| l.contains("WARN")),
        "{:?}",
        proxy.stderr()
    );
}

#[tokio::test]
async fn diagnostics_on_a_pipe_carry_no_colour_codes() {
    let text = refused_config("access = false").await;
    let file = TempConfig::new("no-colour", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    let line = proxy.wait_for_stderr("WARN").await;
    assert!(!line.contains('\u{1b}'), "{line:?}");
}

#[tokio::test]
async fn an_access_log_that_cannot_be_written_drops_and_counts_lines_and_serves_on() {
    let origin = Origin::healthy("origin").await;
    // Every write to /dev/full fails: "No space left on device".
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [log]\naccess_file = \"/dev/full\"\n\n[upstreams.app]\nservers = [\"{}\"]\n",
        origin.addr()
    );
    let file = TempConfig::new("full-disk", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    for _ in 0..3 {
        let reply = within(10, "GET", client::get(proxy.addr, "/"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
    }
    proxy
        .wait_for_stderr("cannot write the log to /dev/full")
        .await;
    let admin = proxy.admin.unwrap();
    let dropped = within(10, "the drops counted", async {
        loop {
            let metrics = common::admin_get(admin, "/metrics").await;
            let dropped = metrics
                .lines()
                .find_map(|l| l.strip_prefix("switchyard_log_lines_dropped_total "))
                .map(|n| n.trim().parse::<u64>().unwrap());
            if dropped == Some(3) {
                return 3;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(dropped, 3);
    let said = proxy
        .stderr()
        .iter()
        .filter(|l| l.contains("cannot write the log"))
        .count();
    assert_eq!(said, 1, "said once: {:?}", proxy.stderr());
}

#[test]
fn check_refuses_a_log_file_in_a_missing_directory() {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[log]\naccess_file = \"/nonexistent-dir/access.log\"\n\n\
                [upstreams.app]\nservers = [\"127.0.0.1:9\"]\n";
    let file = TempConfig::new("missing-dir", text);
    let out = run(&["check", "-c", file.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("log.access_file"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn a_warning_while_the_config_loads_reaches_standard_error() {
    // Written before the error log's file is known: it goes to stderr.
    let logs = LogDir::new("startup-warning");
    let errors = logs.file("error.log");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[log]\nerror_file = {errors:?}\n\n\
         [upstreams.app]\nservers = [\"https://127.0.0.1:9\"]\n\n\
         [upstreams.app.tls]\ninsecure_skip_verify = true\n"
    );
    let file = TempConfig::new("startup-warning", &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let line = proxy.wait_for_stderr("insecure_skip_verify").await;
    assert!(line.contains("WARN"), "{line}");
}
