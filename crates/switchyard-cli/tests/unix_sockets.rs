//! Unix domain sockets. Listening (`listen = ["unix:/path"]`): the file is
//! made with `unix_mode`, a stale one a crash left is replaced, a live one
//! is not, and the file goes at exit (but not when an upgrade handed the
//! socket to a new process). Upstream servers (`servers = ["unix:/path"]`,
//! `--to unix:PATH`): proxied to, and a missing socket file is a connect
//! failure, retried for any method.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Running, TempConfig};
use switchyard_testkit::client::KeepAlive;
use switchyard_testkit::{Origin, client, within};

fn config_for(origin: std::net::SocketAddr, socket: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\", \"unix:{}\"]\n{extra}\n\
         [upstreams.app]\nservers = [\"{origin}\"]\n",
        socket.display()
    )
}

fn socket_beside(file: &TempConfig, name: &str) -> PathBuf {
    file.path.with_file_name(name)
}

/// `GET /` over the Unix socket at `path`: the status and body.
async fn get_over(path: &Path) -> (u16, String) {
    let stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let mut conn = KeepAlive::over("127.0.0.1:0".parse().unwrap(), stream)
        .await
        .unwrap();
    let request = http::Request::get("/")
        .header("host", "app")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = within(10, "GET over the Unix socket", conn.send(request))
        .await
        .unwrap();
    (
        reply.status.as_u16(),
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_unix_listener_serves_with_its_mode_and_its_file_goes_at_exit() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("unix", "");
    let socket = socket_beside(&file, "http.sock");
    let text = config_for(origin.addr(), &socket, "unix_mode = \"0600\"");
    std::fs::write(&file.path, text).unwrap();
    let mut proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let said = proxy.stderr().join("\n");
    assert!(
        said.contains(&format!("listening on unix:{}", socket.display())),
        "{said}"
    );
    assert_eq!(mode_of(&socket), 0o600);

    assert_eq!(get_over(&socket).await, (200, "origin".to_string()));
    let line = &proxy.wait_for_log(1).await[0];
    assert!(
        line.starts_with("127.0.0.1:0 "),
        "a Unix client is local: {line}"
    );

    proxy.terminate();
    assert!(proxy.wait(10).success());
    assert!(!socket.exists(), "the socket file is removed at exit");
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_a_live_one_is_not() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("unix-stale", "");
    let socket = socket_beside(&file, "http.sock");
    // A crash leaves the file with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    std::fs::write(&file.path, config_for(origin.addr(), &socket, "")).unwrap();
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    assert_eq!(get_over(&socket).await.0, 200);
    assert_eq!(mode_of(&socket), 0o660, "the default mode");

    // A second proxy on the same file is refused, and the first serves on.
    let refused = common::run_refused(&["run", "-c", file.path.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("another process listens on"), "{said}");
    assert_eq!(get_over(&socket).await.0, 200);
    drop(proxy);
}

#[tokio::test]
async fn an_upgrade_hands_over_the_unix_socket_and_keeps_its_file() {
    let origin = Origin::healthy("origin").await;
    let file = TempConfig::new("unix-upgrade", "");
    let socket = socket_beside(&file, "http.sock");
    let pid_file = socket_beside(&file, "switchyard.pid");
    let extra = format!("pid_file = \"{}\"\nworkers = 2", pid_file.display());
    std::fs::write(&file.path, config_for(origin.addr(), &socket, &extra)).unwrap();
    let mut old = Running::start(&["run", "-c", file.path.to_str().unwrap()]);

    let upgrade = Command::new(BIN)
        .args(["upgrade", "--pid-file"])
        .arg(&pid_file)
        .output()
        .unwrap();
    let new_pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let _stop_new = KillOnDrop(new_pid.clone());
    assert!(upgrade.status.success(), "{upgrade:?}");
    assert_ne!(new_pid, old.pid().to_string());
    assert!(old.wait(10).success());
    assert!(
        socket.exists(),
        "the old process leaves the file to the new one"
    );
    assert_eq!(get_over(&socket).await.0, 200);
}

struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.0).status();
    }
}

/// An app server on a Unix socket at `path`: answers every request with
/// `name`. Stops when dropped.
struct UnixApp {
    task: tokio::task::JoinHandle<()>,
}

impl UnixApp {
    fn start(path: &Path, name: &'static str) -> UnixApp {
        use http_body_util::Full;
        use hyper::service::service_fn;
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let host = request
                                .headers()
                                .get("host")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            async move {
                                let mut response =
                                    http::Response::new(Full::new(bytes::Bytes::from(name)));
                                response
                                    .headers_mut()
                                    .insert("x-host", host.parse().unwrap());
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        UnixApp { task }
    }
}

impl Drop for UnixApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_server_on_a_unix_socket_is_proxied_to_from_the_file_and_the_one_liner() {
    let file = TempConfig::new("unix-upstream", "");
    let socket = socket_beside(&file, "app.sock");
    let _app = UnixApp::start(&socket, "unix app");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [upstreams.app]\nservers = [\"unix:{}\"]\n",
        socket.display()
    );
    std::fs::write(&file.path, text).unwrap();
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "unix app");
    let line = &proxy.wait_for_log(1).await[0];
    assert!(
        line.contains(&format!("unix:{} 200 -> done", socket.display())),
        "{line}"
    );
    let metrics = common::wait_for_metric(proxy.admin.unwrap(), "switchyard_requests_total").await;
    let label = format!("server=\"unix:{}\"", socket.display());
    assert!(metrics.contains(&label), "{metrics}");

    let to = format!("unix:{}", socket.display());
    let one_liner = Running::start(&["proxy", "--listen", "127.0.0.1:0", "--to", &to]);
    let request = http::Request::get("/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let reply = within(10, "GET", client::send(one_liner.addr, request))
        .await
        .unwrap();
    assert_eq!(reply.body, "unix app");
}

#[tokio::test]
async fn a_missing_socket_file_is_a_connect_failure_retried_for_any_method() {
    let origin = Origin::healthy("tcp origin").await;
    let file = TempConfig::new("unix-missing", "");
    let missing = socket_beside(&file, "gone.sock");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [upstreams.app]\nservers = [\"unix:{}\", \"{}\"]\nconnect_hedging = false\n",
        missing.display(),
        origin.addr()
    );
    std::fs::write(&file.path, text).unwrap();
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    // A POST, which is not retried after it may have reached a server.
    let reply = within(10, "POST", client::post(proxy.addr, "/pay", "{}"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "tcp origin");
    let line = &proxy.wait_for_log(1).await[0];
    let tried = format!("unix:{} connect-refused -> retry", missing.display());
    assert!(line.contains(&tried), "{line}");
}

#[tokio::test]
async fn a_unix_socket_with_a_full_backlog_is_waited_on_as_tcp_is() {
    let origin = Origin::healthy("tcp origin").await;
    let file = TempConfig::new("unix-backlog", "");
    let busy = socket_beside(&file, "busy.sock");
    // Nobody accepts, and the backlog is filled: a connect gets EAGAIN.
    let _listener = std::os::unix::net::UnixListener::bind(&busy).unwrap();
    let mut fillers = Vec::new();
    loop {
        let socket = tokio::net::UnixStream::connect(&busy).await;
        match socket {
            Ok(socket) => fillers.push(socket),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(fillers.len() < 10_000, "the backlog never filled");
    }
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [upstreams.app]\nservers = [\"unix:{}\", \"{}\"]\nconnect_hedging = false\n\
         connect_timeout = \"300ms\"\n",
        busy.display(),
        origin.addr()
    );
    std::fs::write(&file.path, text).unwrap();
    let proxy = Running::start(&["run", "-c", file.path.to_str().unwrap()]);
    let started = std::time::Instant::now();
    let reply = within(10, "GET", client::get(proxy.addr, "/"))
        .await
        .unwrap();
    assert_eq!(reply.body, "tcp origin");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    let line = &proxy.wait_for_log(1).await[0];
    let tried = format!("unix:{} connect-timed-out -> retry", busy.display());
    assert!(line.contains(&tried), "{line}");
}
