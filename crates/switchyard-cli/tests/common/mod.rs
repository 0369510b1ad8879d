//! Drive the real `switchyard` binary: spawn it, learn its addresses from
//! its standard error, collect its access log from standard output, stop it
//! with a signal.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A config file in a fresh temporary directory, removed on drop.
pub struct TempConfig {
    pub path: PathBuf,
}

impl TempConfig {
    /// A file named after `name`; each call gets its own directory, so two
    /// tests of one binary that pick the same name do not share a file.
    pub fn new(name: &str, text: &str) -> TempConfig {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("switchyard-test-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        TempConfig { path }
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Run the binary to completion (for `check` and `demo`).
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the switchyard binary runs")
}

/// Run a command that should refuse to start: its output, or a panic if it
/// is still running after 10 s (it started serving instead), killed first.
pub fn run_refused(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the switchyard binary starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("waiting for switchyard").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchyard {args:?} was still running after 10 s instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("switchyard's output")
}

/// `switchyard check` of a config file holding `text` (in a fresh
/// temporary directory named after `name`), which should refuse it: its
/// standard error.
pub fn check_refusal(name: &str, text: &str) -> String {
    let file = TempConfig::new(name, text);
    let out = run_refused(&["check", "-c", file.path.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `switchyard run` or `switchyard proxy`.
pub struct Running {
    child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Start the binary and wait until it says where it listens.
    pub fn start(args: &[&str]) -> Running {
        Running::start_with_env(args, &[])
    }

    /// [`start`](Self::start) with `env` added to its environment.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the switchyard binary starts");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut addr, mut admin) = (None, None);
        loop {
            let lines = stderr.lock().unwrap().clone();
            for line in &lines {
                if let Some(a) = line.strip_prefix("switchyard: listening on ") {
                    // "ADDR" or "ADDR (https)".
                    let a = a.split_whitespace().next().unwrap_or_default();
                    addr = addr.or(a.parse().ok());
                }
                if let Some(a) = line.strip_prefix("switchyard: admin on ") {
                    admin = a.trim().parse().ok();
                }
            }
            if lines.iter().any(|l| l == "switchyard: ready") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("switchyard exited with {status}: {lines:?}");
            }
            assert!(
                Instant::now() < deadline,
                "switchyard was not ready in 10 s: {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let addr =
            addr.unwrap_or_else(|| panic!("no listening line: {:?}", stderr.lock().unwrap()));
        Running {
            child,
            addr,
            admin,
            stdout,
            stderr,
        }
    }

    /// Access log lines so far.
    pub fn access_log(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Wait until `n` access log lines were written.
    pub async fn wait_for_log(&self, n: usize) -> Vec<String> {
        switchyard_testkit::within(10, "access log lines", async {
            loop {
                let lines = self.access_log();
                if lines.len() >= n {
                    return lines;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Send SIGTERM (with the shell's builtin `kill`, present wherever `sh` is).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Send SIGHUP: reload the config file.
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Send SIGUSR1: reopen the log files.
    pub fn reopen_logs(&self) {
        self.signal("USR1");
    }

    fn signal(&self, name: &str) {
        let command = format!("kill -{name} {}", self.child.id());
        let status = Command::new("sh").arg("-c").arg(command).status().unwrap();
        assert!(status.success());
    }

    /// Wait until a stderr line contains `text` (10 s at most); return it.
    pub async fn wait_for_stderr(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.stderr().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} on stderr: {:?}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait for the process to exit.
    pub fn wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "switchyard did not exit within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Fetch `path` from the admin listener.
pub async fn admin_get(admin: SocketAddr, path: &str) -> String {
    let reply = switchyard_testkit::client::get(admin, path).await.unwrap();
    String::from_utf8(reply.body.to_vec()).unwrap()
}

/// `switchyard run` over `a` then `b` in round robin (one worker, an admin
/// listener, no connect hedging), with `outlier` as the group's
/// `[upstreams.app.outlier]` table.
pub fn two_servers(
    name: &str,
    a: SocketAddr,
    b: SocketAddr,
    outlier: &str,
) -> (Running, TempConfig) {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\nworkers = 1\n\
         [upstreams.app]\nservers = [\"{a}\", \"{b}\"]\nconnect_hedging = false\n\
         [upstreams.app.outlier]\n{outlier}\n"
    );
    let file = TempConfig::new(name, &text);
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    (proxy, file)
}

/// `GET path` with `headers` (and `Host: app` unless they name a host),
/// answered within 10 s.
pub async fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> switchyard_testkit::client::Collected {
    let mut request = http::Request::get(path);
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header("host", "app");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    switchyard_testkit::within(10, "GET", switchyard_testkit::client::send(addr, request))
        .await
        .unwrap()
}

/// `n` GETs of `/`, one after the other, each answered within 10 s.
pub async fn get_n(addr: SocketAddr, n: usize) {
    for _ in 0..n {
        switchyard_testkit::within(10, "GET", switchyard_testkit::client::get(addr, "/"))
            .await
            .unwrap();
    }
}

/// Poll `/upstreams` until `done` holds (10 s at most).
pub async fn wait_for_upstreams(
    admin: std::net::SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state: serde_json::Value =
            serde_json::from_str(&admin_get(admin, "/upstreams").await).unwrap();
        if done(&state) {
            return state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `/metrics` until it contains `line` (10 s at most).
pub async fn wait_for_metric(admin: SocketAddr, line: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = admin_get(admin, "/metrics").await;
        if metrics.contains(line) {
            return metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached {line:?}: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
