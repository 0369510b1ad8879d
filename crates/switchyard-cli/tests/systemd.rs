//! `Type=notify` units: the proxy tells systemd it is ready, reloading and
//! stopping through the socket `NOTIFY_SOCKET` names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Running, TempConfig};
use switchyard_testkit::Origin;

fn config(origin: std::net::SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[upstreams.app]\nservers = [\"{origin}\"]\n"
    )
}

/// The next notification, within 10 s.
fn next(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn systemd_hears_ready_reloading_ready_and_stopping() {
    let origin = Origin::healthy("origin").await;
    let dir = std::env::temp_dir().join(format!("switchyard-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let file = TempConfig::new("notify", &config(origin.addr()));
    let mut proxy = Running::start_with_env(
        &["run", "-c", file.path.to_str().unwrap()],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    assert!(next(&socket).starts_with("READY=1"));
    proxy.hangup();
    assert!(next(&socket).starts_with("RELOADING=1"));
    assert!(next(&socket).starts_with("READY=1"));
    proxy.terminate();
    assert!(next(&socket).starts_with("STOPPING=1"));
    assert!(proxy.wait(10).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_abstract_notify_socket_is_reached_too() {
    use std::os::linux::net::SocketAddrExt;
    let origin = Origin::healthy("origin").await;
    let name = format!("switchyard-notify-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let file = TempConfig::new("notify-abstract", &config(origin.addr()));
    let _proxy = Running::start_with_env(
        &["run", "-c", file.path.to_str().unwrap()],
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
    );
    assert!(next(&socket).starts_with("READY=1"));
}
