//! The tokio client against Mosquitto over TLS and mutual TLS, with
//! certificates from mqtt-tls's generator for 127.0.0.1.

mod common;

use std::path::Path;

use common::{client_tls, set_mode, shared_tempdir, within, Mosquitto};
use mqtt_client::{Client, ClientOptions, ClientTlsOptions, Error, ProtocolVersion, QoS};
use mqtt_tls::gen::{write_set, CertificateAuthority};

/// CA, server certificate for `server_name`, client certificate, all
/// readable by the `mosquitto` user.
fn certificates(dir: &Path, server_name: &str) {
    let ca = CertificateAuthority::generate().unwrap();
    let server = ca.issue_server(&[server_name.to_string()]).unwrap();
    let client = ca.issue_client("pi").unwrap();
    let set = write_set(dir, &ca, &server, &[("pi".to_string(), client)]).unwrap();
    for f in &set.files {
        set_mode(f, 0o644);
    }
}

fn tls_listener(dir: &Path, require_certificate: bool) -> String {
    format!(
        "cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate {require_certificate}\n",
        d = dir.display()
    )
}

async fn round_trip(m: &Mosquitto, tls: &ClientTlsOptions, version: ProtocolVersion) {
    let opts = |id: &str| {
        ClientOptions::new("127.0.0.1", m.port)
            .protocol(version)
            .client_id(id)
            .tls_files(tls)
            .unwrap()
    };
    let (s, mut msgs) = within(10, "TLS connect", Client::connect(opts("pi")))
        .await
        .unwrap();
    within(5, "subscribe", s.subscribe("ssltopic", QoS::AtLeastOnce))
        .await
        .unwrap();
    let (p, _) = within(10, "TLS connect", Client::connect(opts("laptop")))
        .await
        .unwrap();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        within(5, "publish", p.publish("ssltopic", qos, false, "testing"))
            .await
            .unwrap();
        let msg = within(5, "message", msgs.recv()).await.unwrap();
        assert_eq!(&msg.payload[..], b"testing");
    }
    p.disconnect().await.unwrap();
    s.disconnect().await.unwrap();
}

#[tokio::test]
async fn tls_with_server_authentication_round_trip() {
    let certs = shared_tempdir();
    certificates(certs.path(), "127.0.0.1");
    let Some(m) = Mosquitto::start(&tls_listener(certs.path(), false)) else {
        return;
    };
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        round_trip(&m, &client_tls(certs.path(), false), version).await;
    }
}

#[tokio::test]
async fn mutual_tls_round_trip() {
    let certs = shared_tempdir();
    certificates(certs.path(), "127.0.0.1");
    let Some(m) = Mosquitto::start(&tls_listener(certs.path(), true)) else {
        return;
    };
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        round_trip(&m, &client_tls(certs.path(), true), version).await;
    }
}

#[tokio::test]
async fn missing_client_certificate_is_explained_in_mqtt_tls_words() {
    let certs = shared_tempdir();
    certificates(certs.path(), "127.0.0.1");
    let Some(m) = Mosquitto::start(&tls_listener(certs.path(), true)) else {
        return;
    };
    let opts = ClientOptions::new("127.0.0.1", m.port)
        .tls_files(&client_tls(certs.path(), false))
        .unwrap();
    let err = within(10, "connect", Client::connect(opts))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("requires a client certificate"), "{text}");
    // The library names the options; the examples turn them into flags.
    assert!(text.contains("`ClientTlsOptions::certfile`"), "{text}");
}

#[tokio::test]
async fn certificate_for_another_address_is_explained() {
    let certs = shared_tempdir();
    certificates(certs.path(), "192.168.1.5");
    let Some(m) = Mosquitto::start(&tls_listener(certs.path(), false)) else {
        return;
    };
    let opts = ClientOptions::new("127.0.0.1", m.port)
        .tls_files(&client_tls(certs.path(), false))
        .unwrap();
    let err = within(10, "connect", Client::connect(opts))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("192.168.1.5"), "{text}");
    assert!(text.contains("you connected to 127.0.0.1"), "{text}");
}

#[tokio::test]
async fn tls_client_on_a_plain_port_is_explained() {
    let certs = shared_tempdir();
    certificates(certs.path(), "127.0.0.1");
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let opts = ClientOptions::new("127.0.0.1", m.port)
        .tls_files(&client_tls(certs.path(), false))
        .unwrap();
    let err = within(10, "connect", Client::connect(opts))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("8883"), "{err}");
}
