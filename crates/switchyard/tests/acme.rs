//! ACME certificates in a listener, without a CA: what an earlier run
//! stored is served from the first handshake (`ServerTls::load_with_acme`
//! with no certificate files), and a client offering `acme-tls/1` while no
//! challenge is pending gets no certificate. Issuance and renewal against
//! a real CA are tested through the binary with Pebble
//! (`crates/switchyard-cli/tests/acme.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{TestProxy, quick, start_serving};
use switchyard::ServerOptions;
use switchyard::acme::{Acme, AcmeSettings};
use switchyard::tls::{ServerTls, ServerTlsSettings};
use switchyard_testkit::tls::{TestCa, client_config, get};
use switchyard_testkit::{Origin, within};

#[tokio::test]
async fn a_stored_certificate_is_served_with_no_files_and_no_ca() {
    let storage = std::env::temp_dir().join(format!("switchyard-acme-lib-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&storage);
    let ca = TestCa::new("stands in for the ACME CA");
    // Where an earlier run kept two certificates: one folder per CA directory.
    let folder = storage.join("127.0.0.1-9-dir");
    std::fs::create_dir_all(&folder).unwrap();
    for name in ["site.example.com", "api.example.com"] {
        let cert = ca.issue(&[name]);
        std::fs::write(folder.join(format!("{name}.crt")), &cert.cert_pem).unwrap();
        std::fs::write(folder.join(format!("{name}.key")), &cert.key_pem).unwrap();
    }
    let domains = vec!["site.example.com".into(), "api.example.com".into()];
    let mut settings = AcmeSettings::new(domains, &storage);
    // Nothing listens there: the certificates must come from storage.
    settings.directory = "https://127.0.0.1:9/dir".into();
    let acme = Acme::new(settings).unwrap();
    let no_files = ServerTlsSettings {
        certificates: vec![],
        client_ca: None,
    };
    let tls = ServerTls::load_with_acme(&no_files, Some(&acme)).unwrap();
    let origin = Origin::start(
        "origin",
        switchyard_testkit::Script::always(switchyard_testkit::Behavior::ok()),
    )
    .await;
    let proxy = TestProxy::new(&[origin.addr()]).options(quick());
    let running = start_serving(proxy, ServerOptions::default(), Some(tls)).await;

    let client = client_config(&ca, None);
    let answer = within(
        10,
        "GET over TLS",
        get(running.addr, &client, "site.example.com", "/x"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    // Each name gets its own certificate (verified for that name).
    let api = within(
        10,
        "GET api",
        get(running.addr, &client, "api.example.com", "/y"),
    )
    .await
    .unwrap();
    assert_eq!(api.status, 200);
    // A CA's validation handshake with no challenge pending: no certificate.
    let mut offering = (*client_config(&ca, None)).clone();
    offering.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let refused = get(running.addr, &Arc::new(offering), "site.example.com", "/z").await;
    let error = refused.unwrap_err();
    assert!(error.contains("handshake"), "{error}");
    let _ = std::fs::remove_dir_all(&storage);
}
