//! `crlfile`: a client certificate revoked by the CA is refused, with the
//! reason named on the broker side; certificates not on the list still work.

mod common;

use common::*;
use mqtt_tls::{ServerTlsOptions, TlsError};

#[tokio::test]
async fn revoked_client_certificate_is_refused_and_others_are_accepted() {
    let set = Set::new(&["127.0.0.1"]);
    let revoked = set.ca.issue_client("stolen-pi").unwrap();
    let (revoked_crt, revoked_key) = set.write("stolen-pi", &revoked);
    let crl = set.ca.revocation_list(&[&revoked]).unwrap();
    assert!(crl.starts_with("-----BEGIN X509 CRL-----"), "{crl}");
    let crlfile = set.path("ca.crl");
    std::fs::write(&crlfile, crl).unwrap();
    let server = ServerTlsOptions {
        crlfile: Some(crlfile),
        ..set.server_options(true)
    }
    .build()
    .unwrap();

    // The revoked one.
    let client = {
        let mut tls = set.client_options(false);
        tls.certfile = Some(revoked_crt);
        tls.keyfile = Some(revoked_key);
        tls
    }
    .build()
    .unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server.clone(), true).await;
    let _ = dial(client, "127.0.0.1", addr).await;
    let err = within(handle).await.unwrap().unwrap_err();
    assert!(
        matches!(err, TlsError::CertificateRejected { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("CN=stolen-pi"), "names the certificate: {msg}");
    assert!(msg.contains("revoked in this broker's crlfile"), "{msg}");

    // A certificate of the same CA that is not on the list.
    let client = set.client_options(true).build().unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server, true).await;
    let _stream = dial(client, "127.0.0.1", addr).await.unwrap();
    within(handle)
        .await
        .unwrap()
        .expect("not revoked: accepted");
}
