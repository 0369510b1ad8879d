//! TLS on both sides, over loopback with certificates made at run time: a
//! TLS client through the proxy to a TLS origin, SNI, reloading, mutual
//! TLS, and a failed upstream handshake being a connect failure (nothing was
//! sent, so any method may go to the next server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{OnFail, TestProxy, listener, quick, start_serving, summary};
use http_body_util::Full;
use switchyard::health::checker::{CheckOptions, Probe, check_peer};
use switchyard::prelude::*;
use switchyard::tls::{
    CertificateFiles, ServerTls, ServerTlsSettings, UpstreamTls, UpstreamTlsSettings,
};
use switchyard::{Phase, ServerOptions};
use switchyard_testkit::tls::{TestCa, TlsOrigin, client_config, get, send};
use switchyard_testkit::{Blackhole, within};
use tokio::io::AsyncReadExt;

fn trusting(ca: &TestCa) -> UpstreamTls {
    UpstreamTls::load(&UpstreamTlsSettings {
        ca_file: Some(ca.cert_path().to_path_buf()),
        ..UpstreamTlsSettings::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_tls_client_reaches_a_tls_origin_through_the_proxy() {
    let ca = TestCa::new("private CA");
    let origin_cert = ca.issue(&["origin.internal"]);
    let origin = TlsOrigin::start("origin", &origin_cert, None).await;
    let proxy_cert = ca.issue(&["proxy.test"]);
    let proxy = TestProxy::new(&[origin.addr()])
        .options(quick())
        .upstream_tls(trusting(&ca), "origin.internal");
    let tls = ServerTls::load(&listener(&[&proxy_cert])).unwrap();
    let running = start_serving(proxy, ServerOptions::default(), Some(tls)).await;

    let client = client_config(&ca, None);
    let answer = within(
        10,
        "GET over TLS",
        get(running.addr, &client, "proxy.test", "/x"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
    let seen = origin.seen();
    assert_eq!(seen.server_names, [Some("origin.internal".to_string())]);
    let (path, headers) = &seen.requests[0];
    assert_eq!(path, "/x");
    assert_eq!(headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn a_wrong_ca_fails_over_before_anything_is_sent_even_for_a_post() {
    let ca = TestCa::new("private CA");
    let stranger = TestCa::new("someone else's CA");
    let impostor_cert = stranger.issue(&["origin.internal"]);
    let impostor = TlsOrigin::start("impostor", &impostor_cert, None).await;
    let origin_cert = ca.issue(&["origin.internal"]);
    let origin = TlsOrigin::start("origin", &origin_cert, None).await;
    let proxy = TestProxy::new(&[impostor.addr(), origin.addr()])
        .options(quick())
        .on_connect_fail(OnFail::Failover)
        .upstream_tls(trusting(&ca), "origin.internal");
    let running = start_serving(proxy, ServerOptions::default(), None).await;

    let answer = within(
        10,
        "POST",
        switchyard_testkit::client::post(running.addr, "/pay", "x"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
    assert!(
        impostor.seen().requests.is_empty(),
        "nothing reached the impostor"
    );
    let logged = running.logs.wait(1).await;
    let trace = &logged[0].trace;
    assert_eq!(summary(trace)[0], "tls-certificate -> retry");
    assert_eq!(trace.records()[0].phase, Phase::Connecting);
}

#[tokio::test]
async fn a_final_tls_failure_is_a_502_naming_the_tls_error() {
    let ca = TestCa::new("private CA");
    let stranger = TestCa::new("someone else's CA");
    let impostor_cert = stranger.issue(&["origin.internal"]);
    let impostor = TlsOrigin::start("impostor", &impostor_cert, None).await;
    let proxy = TestProxy::new(&[impostor.addr()])
        .options(quick())
        .upstream_tls(trusting(&ca), "origin.internal");
    let running = start_serving(proxy, ServerOptions::default(), None).await;

    let answer = switchyard_testkit::client::get(running.addr, "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 502);
    let status = answer.headers["proxy-status"].to_str().unwrap();
    assert!(status.contains("error=tls_certificate_error"), "{status}");

    // A server that does not speak TLS at all: a protocol error.
    let plain = switchyard_testkit::Origin::healthy("plain").await;
    let proxy = TestProxy::new(&[plain.addr()])
        .options(quick())
        .upstream_tls(trusting(&ca), "origin.internal");
    let running = start_serving(proxy, ServerOptions::default(), None).await;
    let answer = switchyard_testkit::client::get(running.addr, "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 502);
    let status = answer.headers["proxy-status"].to_str().unwrap();
    assert!(status.contains("error=tls_protocol_error"), "{status}");
}

#[tokio::test]
async fn sni_picks_the_certificate_and_other_names_get_the_first() {
    let ca = TestCa::new("private CA");
    let first = ca.issue(&["a.test"]);
    let wildcard = ca.issue(&["*.b.test"]);
    let origin = switchyard_testkit::Origin::healthy("origin").await;
    let proxy = TestProxy::new(&[origin.addr()]).options(quick());
    let tls = ServerTls::load(&listener(&[&first, &wildcard])).unwrap();
    let running = start_serving(proxy, ServerOptions::default(), Some(tls)).await;
    let client = client_config(&ca, None);

    for name in ["a.test", "x.b.test"] {
        let answer = get(running.addr, &client, name, "/").await;
        assert_eq!(answer.map(|a| a.status), Ok(http::StatusCode::OK), "{name}");
    }
    // Not covered: the default (a.test) is sent, which the client refuses.
    let refused = get(running.addr, &client, "c.test", "/").await.unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
}

#[tokio::test]
async fn reloading_certificates_under_traffic_drops_no_request() {
    let ca = TestCa::new("private CA");
    let old = ca.issue(&["site.test", "old.test"]);
    let renewed = ca.issue(&["site.test", "new.test"]);
    let origin = switchyard_testkit::Origin::healthy("origin").await;
    let proxy = TestProxy::new(&[origin.addr()]).options(quick());
    let settings = listener(&[&old]);
    let tls = ServerTls::load(&settings).unwrap();
    let running = start_serving(proxy, ServerOptions::default(), Some(tls.clone())).await;
    let client = client_config(&ca, None);
    let addr = running.addr;

    // Traffic on new connections all through the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (stop, ok, failed, client) = (stop.clone(), ok.clone(), failed.clone(), client.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(addr, &client, "site.test", "/").await {
                    Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let served = |n: usize| {
        let ok = ok.clone();
        move || ok.load(Ordering::Relaxed) >= n
    };
    switchyard_testkit::eventually(10, "requests before the reload", served(3)).await;
    old.replace_files_with(&renewed);
    tls.reload(&settings).unwrap();
    let before = ok.load(Ordering::Relaxed);
    switchyard_testkit::eventually(10, "requests after the reload", served(before + 3)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();

    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the reload"
    );
    assert!(ok.load(Ordering::Relaxed) > 2);
    // New handshakes get the renewed certificate.
    assert!(get(addr, &client, "new.test", "/").await.is_ok());
    assert!(get(addr, &client, "old.test", "/").await.is_err());
    // A reload that fails keeps what was loaded.
    let broken = ServerTlsSettings {
        certificates: vec![CertificateFiles::new(
            "/nonexistent/cert.pem",
            "/nonexistent/key.pem",
        )],
        client_ca: None,
    };
    assert!(tls.reload(&broken).is_err());
    assert!(get(addr, &client, "new.test", "/").await.is_ok());
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let ca = TestCa::new("private CA");
    let clients = TestCa::new("client CA");
    let proxy_cert = ca.issue(&["proxy.test"]);
    let client_cert = clients.issue(&["client.test"]);
    let origin = switchyard_testkit::Origin::healthy("origin").await;
    let proxy = TestProxy::new(&[origin.addr()]).options(quick());
    let settings = ServerTlsSettings {
        client_ca: Some(clients.cert_path().to_path_buf()),
        ..listener(&[&proxy_cert])
    };
    let running = start_serving(
        proxy,
        ServerOptions::default(),
        Some(ServerTls::load(&settings).unwrap()),
    )
    .await;

    let without = get(running.addr, &client_config(&ca, None), "proxy.test", "/").await;
    assert!(without.is_err(), "a client without a certificate got in");
    let with = get(
        running.addr,
        &client_config(&ca, Some(&client_cert)),
        "proxy.test",
        "/",
    )
    .await;
    assert_eq!(with.unwrap().status, 200);
}

#[tokio::test]
async fn the_proxy_presents_its_client_certificate_to_an_origin_that_asks() {
    let ca = TestCa::new("private CA");
    let clients = TestCa::new("client CA");
    let origin_cert = ca.issue(&["origin.internal"]);
    let proxy_client = clients.issue(&["proxy.internal"]);
    let origin = TlsOrigin::start("origin", &origin_cert, Some(&clients)).await;
    let settings = UpstreamTlsSettings {
        ca_file: Some(ca.cert_path().to_path_buf()),
        client_certificate: Some(CertificateFiles::new(
            &proxy_client.cert_path,
            &proxy_client.key_path,
        )),
        ..UpstreamTlsSettings::default()
    };
    let with = TestProxy::new(&[origin.addr()])
        .options(quick())
        .upstream_tls(UpstreamTls::load(&settings).unwrap(), "origin.internal");
    let running = start_serving(with, ServerOptions::default(), None).await;
    let answer = switchyard_testkit::client::get(running.addr, "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(origin.seen().client_certificates, 1);

    let without = TestProxy::new(&[origin.addr()])
        .options(quick())
        .upstream_tls(trusting(&ca), "origin.internal");
    let running = start_serving(without, ServerOptions::default(), None).await;
    let answer = switchyard_testkit::client::get(running.addr, "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 502);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let stranger = TestCa::new("someone else's CA");
    let origin_cert = stranger.issue(&["origin.internal"]);
    let origin = TlsOrigin::start("origin", &origin_cert, None).await;
    let insecure = UpstreamTls::load(&UpstreamTlsSettings {
        insecure_skip_verify: true,
        ..UpstreamTlsSettings::default()
    })
    .unwrap();
    let proxy = TestProxy::new(&[origin.addr()])
        .options(quick())
        .upstream_tls(insecure, "whatever.internal");
    let running = start_serving(proxy, ServerOptions::default(), None).await;
    let answer = switchyard_testkit::client::get(running.addr, "/")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one_and_is_closed_after_the_timeout() {
    let ca = TestCa::new("private CA");
    let proxy_cert = ca.issue(&["proxy.test"]);
    let origin = switchyard_testkit::Origin::healthy("origin").await;
    let proxy = TestProxy::new(&[origin.addr()]).options(quick());
    let options = ServerOptions {
        tls_handshake_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let tls = ServerTls::load(&listener(&[&proxy_cert])).unwrap();
    let running = start_serving(proxy, options, Some(tls)).await;

    let mut stalled = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let client = client_config(&ca, None);
    let answer = within(
        5,
        "a request beside a stalled handshake",
        get(running.addr, &client, "proxy.test", "/"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let mut buf = [0u8; 16];
    let read = within(5, "the stalled connection to close", stalled.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(running.counts.tls_handshake_failed(), 1);
}

#[tokio::test]
async fn connect_hedging_reaches_an_https_server() {
    let ca = TestCa::new("private CA");
    let origin_cert = ca.issue(&["origin.internal"]);
    let origin = TlsOrigin::start("origin", &origin_cert, None).await;
    let blackhole = Blackhole::start().await;
    let proxy = TestProxy::new(&[blackhole.addr(), origin.addr()])
        .options(PeerOptions {
            connect_timeout: Duration::from_secs(5),
            ..quick()
        })
        .on_connect_fail(OnFail::Default)
        .hedged()
        .upstream_tls(trusting(&ca), "origin.internal");
    let running = start_serving(proxy, ServerOptions::default(), None).await;
    let answer = within(
        3,
        "a hedged GET",
        switchyard_testkit::client::get(running.addr, "/"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "origin");
}

#[tokio::test]
async fn health_checks_speak_tls_to_https_servers() {
    let ca = TestCa::new("private CA");
    let stranger = TestCa::new("someone else's CA");
    let origin_cert = ca.issue(&["origin.internal"]);
    let origin = TlsOrigin::start("origin", &origin_cert, None).await;
    let options = CheckOptions {
        probe: Probe::Http {
            path: "/healthz".into(),
            statuses: vec![(200, 299)],
        },
        ..CheckOptions::default()
    };
    let peer =
        |tls| HttpPeer::new(origin.addr(), false, String::new()).with_tls(tls, "origin.internal");
    let (passed, detail) = check_peer(&peer(trusting(&ca)), &options).await;
    assert!(passed, "{detail}");
    let (passed, detail) = check_peer(&peer(trusting(&stranger)), &options).await;
    assert!(!passed);
    assert!(detail.contains("TLS"), "{detail}");
    let (path, headers) = &origin.seen().requests[0];
    assert_eq!(path, "/healthz");
    assert_eq!(headers["host"], "origin.internal");
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let ca = TestCa::new("private CA");
    let good = ca.issue(&["site.test"]);
    let other = ca.issue(&["other.test"]);
    let expired = ca.issue_expired(&["site.test"]);
    let load = |cert: &PathBuf, key: &PathBuf| {
        ServerTls::load(&ServerTlsSettings {
            certificates: vec![CertificateFiles::new(cert, key)],
            client_ca: None,
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(load(&good.cert_path, &good.key_path), Ok(()));

    let missing = PathBuf::from("/nonexistent/site.pem");
    let e = load(&missing, &good.key_path).unwrap_err();
    assert!(e.contains("/nonexistent/site.pem"), "{e}");

    let e = load(&good.cert_path, &other.key_path).unwrap_err();
    assert!(e.contains("does not belong"), "{e}");
    assert!(e.contains(&*other.key_path.to_string_lossy()), "{e}");

    let e = load(&expired.cert_path, &expired.key_path).unwrap_err();
    assert!(e.contains("expired"), "{e}");
    assert!(e.contains(&*expired.cert_path.to_string_lossy()), "{e}");

    // A key file given as the certificate: no certificate in it.
    let e = load(&good.key_path, &good.key_path).unwrap_err();
    assert!(e.contains("holds no PEM certificate"), "{e}");

    let e = UpstreamTls::load(&UpstreamTlsSettings {
        ca_file: Some(missing.clone()),
        ..UpstreamTlsSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/site.pem"), "{e}");
}

#[tokio::test]
async fn a_tls_client_can_send_a_body() {
    let ca = TestCa::new("private CA");
    let proxy_cert = ca.issue(&["proxy.test"]);
    let origin = switchyard_testkit::Origin::healthy("origin").await;
    let proxy = TestProxy::new(&[origin.addr()]).options(quick());
    let tls = ServerTls::load(&listener(&[&proxy_cert])).unwrap();
    let running = start_serving(proxy, ServerOptions::default(), Some(tls)).await;
    let request = http::Request::post("/upload")
        .body(Full::new(Bytes::from(vec![b'x'; 200_000])))
        .unwrap();
    let answer = send(
        running.addr,
        &client_config(&ca, None),
        "proxy.test",
        request,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(origin.requests()[0].body_len, 200_000);
}

#[test]
fn settings_loaded_again_from_unchanged_files_are_the_same_for_the_pool() {
    let ca = TestCa::new("private CA");
    let renewed = TestCa::new("renewed CA");
    let path = ca.cert_path().to_path_buf();
    let load = || {
        UpstreamTls::load(&UpstreamTlsSettings {
            ca_file: Some(path.clone()),
            ..UpstreamTlsSettings::default()
        })
        .unwrap()
    };
    let first = load();
    assert_eq!(first, load(), "a reload that changed nothing");
    std::fs::write(&path, renewed.cert_pem()).unwrap();
    assert_ne!(
        first,
        load(),
        "the CA file changed: its connections are not shared"
    );
}
