//! A binary upgrade (SIGUSR2, `switchyard upgrade --pid-file`): the new
//! process takes over the listening sockets, so under a steady load no
//! request is lost and no connection refused; a new process that cannot
//! start leaves the old one serving, and says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{BIN, Running, TempConfig};
use switchyard_testkit::client::{self, RawConn};
use switchyard_testkit::{Origin, within};

fn config_for(origin: SocketAddr, pid_file: &Path) -> String {
    config_with(origin, pid_file, "\"127.0.0.1:0\"", 2)
}

fn config_with(origin: SocketAddr, pid_file: &Path, listen: &str, workers: usize) -> String {
    format!(
        "[server]\nlisten = [{listen}]\nadmin = \"127.0.0.1:0\"\nworkers = {workers}\n\
         pid_file = \"{}\"\n[upstreams.app]\nservers = [\"{origin}\"]\n",
        pid_file.display()
    )
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    answered: AtomicUsize,
    /// Keep-alive connections the server closed while idle (the request
    /// sent on one is sent again on a new connection, as clients do for a
    /// request no byte of an answer came for).
    closed_idle: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn failed(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// GETs on a new connection each, until `stop`.
async fn new_connections(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        match client::get(addr, "/").await {
            Ok(reply) if reply.status == 200 => {
                tally.answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(reply) => tally.failed(format!("new connection: status {}", reply.status)),
            Err(e) => tally.failed(format!("new connection: {e}")),
        }
    }
}

/// GETs in turn on keep-alive connections, until `stop`.
async fn keep_alive(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let request = "GET / HTTP/1.1\r\nhost: upgrade.test\r\n\r\n";
    let mut conn = RawConn::connect(addr).await;
    while !stop.load(Ordering::Relaxed) {
        let answer = match conn.write(request).await {
            Ok(()) => conn.read_response().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(reply) if reply.status == 200 => {
                tally.answered.fetch_add(1, Ordering::Relaxed);
                let closing = reply
                    .headers
                    .iter()
                    .any(|(name, value)| name == "connection" && value.contains("close"));
                if closing {
                    conn = RawConn::connect(addr).await;
                }
            }
            Ok(reply) => tally.failed(format!("keep-alive: status {}", reply.status)),
            Err(e) if e.contains("with 0 bytes of a response read") => {
                tally.closed_idle.fetch_add(1, Ordering::Relaxed);
                conn = RawConn::connect(addr).await;
            }
            Err(e) => {
                tally.failed(format!("keep-alive: {e}"));
                conn = RawConn::connect(addr).await;
            }
        }
    }
}

/// Stop the load and check that every request it sent was answered.
async fn stop_and_check(stop: &AtomicBool, load: Vec<tokio::task::JoinHandle<()>>, tally: &Tally) {
    stop.store(true, Ordering::Relaxed);
    for task in load {
        within(10, "the load to stop", task).await.unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}

/// `switchyard upgrade --pid-file PID_FILE`: whether it succeeded, and
/// what it printed.
async fn upgrade(pid_file: &Path) -> (bool, String) {
    let pid_file = pid_file.to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["upgrade", "--pid-file"])
            .arg(&pid_file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

fn pid_in(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Stops the process that took over when the test ends, however it ends.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

fn pid_file_beside(file: &TempConfig) -> PathBuf {
    file.path.with_file_name("switchyard.pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_loses_no_request_and_refuses_no_connection() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("upgrade", "");
    let pid_file = pid_file_beside(&file);
    std::fs::write(&file.path, config_for(origin.addr(), &pid_file)).unwrap();
    let mut old = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    assert_eq!(pid_in(&pid_file), old.pid());
    let addr = old.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    for _ in 0..2 {
        load.push(tokio::spawn(new_connections(
            addr,
            stop.clone(),
            tally.clone(),
        )));
        load.push(tokio::spawn(keep_alive(addr, stop.clone(), tally.clone())));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = tally.answered.load(Ordering::Relaxed);

    let (succeeded, said) = upgrade(&pid_file).await;
    assert!(succeeded, "{said}");
    let new_pid = pid_in(&pid_file);
    let _new = KillOnDrop(new_pid);
    assert_ne!(new_pid, old.pid());
    assert!(
        said.contains(&format!("process {new_pid} serves")),
        "{said}"
    );
    let status = tokio::task::block_in_place(|| old.wait(10));
    assert!(status.success(), "the old process exited with {status}");

    // The load goes on against the new process alone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_and_check(&stop, load, &tally).await;
    let answered = tally.answered.load(Ordering::Relaxed);
    let closed_idle = tally.closed_idle.load(Ordering::Relaxed);
    eprintln!(
        "{answered} answered ({before} before the upgrade); {closed_idle} idle keep-alive closes"
    );
    assert!(
        answered > before + 20,
        "only {answered} answers, {before} before the upgrade"
    );
    let stderr = old.stderr().join("\n");
    assert!(
        stderr.contains("to take over 3 listening socket(s)"),
        "{stderr}"
    );
    // The new process serves the admin listener too, on the same port.
    let admin = common::admin_get(old.admin.unwrap(), "/healthz").await;
    assert!(!admin.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("upgrade-bad", "");
    let pid_file = pid_file_beside(&file);
    let one_worker = config_with(origin.addr(), &pid_file, "\"127.0.0.1:0\"", 1);
    std::fs::write(&file.path, &one_worker).unwrap();
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = vec![
        tokio::spawn(new_connections(proxy.addr, stop.clone(), tally.clone())),
        tokio::spawn(keep_alive(proxy.addr, stop.clone(), tally.clone())),
    ];

    // A config that does not check.
    std::fs::write(
        &file.path,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n",
    )
    .unwrap();
    let (succeeded, said) = upgrade(&pid_file).await;
    assert!(!succeeded, "{said}");
    assert!(
        said.contains(&format!("process {} still serves", proxy.pid())),
        "{said}"
    );
    assert!(said.contains("bogus"), "the reason is given: {said}");
    let line = proxy.wait_for_stderr("upgrade failed, still serving").await;
    assert!(line.contains("bogus"), "{line}");
    assert_eq!(pid_in(&pid_file), proxy.pid());

    // One that checks, but names an address the new process cannot bind,
    // after it took over the old one's sockets: it must accept nothing.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("\"127.0.0.1:0\", \"{}\"", busy.local_addr().unwrap());
    std::fs::write(
        &file.path,
        config_with(origin.addr(), &pid_file, &listen, 1),
    )
    .unwrap();
    // Several times: a new process that served before it failed would
    // take some of the load's connections with it.
    for _ in 0..5 {
        let (succeeded, said) = upgrade(&pid_file).await;
        assert!(!succeeded, "{said}");
        assert!(said.contains("cannot listen on"), "{said}");
        assert_eq!(
            pid_in(&pid_file),
            proxy.pid(),
            "the pid file names the old process"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // And a later upgrade, with the config mended (and a second worker,
    // which the old process's one socket must serve), goes through.
    std::fs::write(&file.path, config_for(origin.addr(), &pid_file)).unwrap();
    let (succeeded, said) = upgrade(&pid_file).await;
    let _new = KillOnDrop(pid_in(&pid_file));
    assert!(succeeded, "{said}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_and_check(&stop, load, &tally).await;
    assert!(tally.closed_idle.load(Ordering::Relaxed) <= 1);
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}
