//! `tls_version tlsv1.3`: a TLS 1.2-only client is refused; TLS 1.2 stays
//! accepted by the default minimum.

mod common;

use common::*;
use mqtt_tls::TlsVersion;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

fn tls12_only_client(set: &Set) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(set.path("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(mqtt_tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn minimum_tls_1_3_refuses_a_tls_1_2_client() {
    let set = Set::new(&["127.0.0.1"]);
    let server = set
        .server_options(false)
        .min_version(TlsVersion::Tls13)
        .build()
        .unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server, false).await;
    let client_result = dial(tls12_only_client(&set), "127.0.0.1", addr).await;
    assert!(
        client_result.is_err(),
        "a TLS 1.2-only client must not get in"
    );
    assert!(within(handle).await.unwrap().is_err());
}

#[tokio::test]
async fn default_minimum_accepts_a_tls_1_2_client() {
    let set = Set::new(&["127.0.0.1"]);
    let server = set.server_options(false).build().unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server, false).await;
    let stream = dial(tls12_only_client(&set), "127.0.0.1", addr)
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    within(handle).await.unwrap().unwrap();
}
