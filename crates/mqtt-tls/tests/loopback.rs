//! Handshakes over loopback with generated certificates; each error case
//! asserts the explained message. 127.0.0.1 and 127.0.0.2 stand in for a
//! laptop's two addresses.

mod common;

use common::*;
use mqtt_tls::gen::CertificateAuthority;
use mqtt_tls::{explain_io_error, ClientContext, PeerIdentity, TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn mutual_tls_handshake_succeeds_and_reports_the_client_identity() {
    let set = Set::new(&["127.0.0.1", "localhost"]);
    let server = set.server_options(true).build().unwrap();
    let client = set.client_options(true).build().unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server, true).await;
    let mut stream = dial(client, "127.0.0.1", addr).await.unwrap();
    let accepted = within(handle).await.unwrap().unwrap();
    let identity = PeerIdentity::from_tls_stream(&accepted).unwrap();
    assert_eq!(identity.common_name.as_deref(), Some("sensor-1"));
    assert_eq!(identity.subject, "CN=sensor-1");
    assert_eq!(
        accepted.get_ref().1.alpn_protocol(),
        None,
        "client offered no ALPN"
    );
    within(stream.write_all(b"ping")).await.unwrap();
    let mut accepted = accepted;
    let mut buf = [0u8; 4];
    within(accepted.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn alpn_mqtt_is_negotiated_when_both_sides_offer_it() {
    let set = Set::new(&["127.0.0.1"]);
    let server = set.server_options(false).build().unwrap();
    let client = {
        let mut tls = set.client_options(false);
        tls.alpn_mqtt = true;
        tls
    }
    .build()
    .unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server, false).await;
    let stream = dial(client, "127.0.0.1", addr).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]));
    within(handle).await.unwrap().unwrap();
}

#[tokio::test]
async fn dns_name_is_verified_against_the_dns_san() {
    let set = Set::new(&["laptop.local", "127.0.0.2"]);
    let server = set.server_options(false).build().unwrap();
    let client = set.client_options(false).build().unwrap();
    let (addr, handle) = serve_once("127.0.0.2", server, false).await;
    let tcp = within(TcpStream::connect(addr)).await.unwrap();
    within(mqtt_tls::connect(client, "laptop.local", tcp))
        .await
        .unwrap();
    within(handle).await.unwrap().unwrap();
}

#[tokio::test]
async fn server_certificate_for_another_address_names_both_addresses() {
    // The certificate covers the laptop's other address, 127.0.0.2.
    let set = Set::new(&["127.0.0.2"]);
    let server = set.server_options(false).build().unwrap();
    let client = set.client_options(false).build().unwrap();
    let (addr, _handle) = serve_once("127.0.0.1", server, false).await;
    let err = dial(client, "127.0.0.1", addr).await.unwrap_err();
    assert!(
        matches!(err, TlsError::ServerNameMismatch { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("server certificate is for 127.0.0.2, but you connected to 127.0.0.1; connect with host 127.0.0.2 (the host of the client options) or re-issue the certificate with that name"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "gen-certs -- --out DIR --ca-cert ca.crt --ca-key ca.key --server-name 127.0.0.1"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn insecure_mode_skips_the_name_check_but_not_the_chain() {
    let set = Set::new(&["127.0.0.2"]);
    let server = set.server_options(false).build().unwrap();
    let insecure = {
        let mut tls = set.client_options(false);
        tls.insecure = true;
        tls
    }
    .build()
    .unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server.clone(), false).await;
    dial(insecure, "127.0.0.1", addr).await.unwrap();
    within(handle).await.unwrap().unwrap();

    let other = Set::new(&["127.0.0.1"]);
    let insecure_other_ca = {
        let mut tls = other.client_options(false);
        tls.insecure = true;
        tls
    }
    .build()
    .unwrap();
    let (addr, _handle) = serve_once("127.0.0.1", server, false).await;
    let err = dial(insecure_other_ca, "127.0.0.1", addr)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TlsError::ServerCertUnknownIssuer { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_certificate_from_another_ca_names_the_cafile() {
    let set = Set::new(&["127.0.0.1"]);
    let other = Set::new(&["127.0.0.1"]);
    let server = set.server_options(false).build().unwrap();
    let client = other.client_options(false).build().unwrap();
    let (addr, _handle) = serve_once("127.0.0.1", server, false).await;
    let err = dial(client, "127.0.0.1", addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TlsError::ServerCertUnknownIssuer { .. }),
        "{err:?}"
    );
    assert!(msg.contains("the broker at 127.0.0.1 presented a certificate for CN=127.0.0.1 issued by CN=mqtt-stack CA,O=mqtt-stack"), "{msg}");
    assert!(
        msg.contains(&format!(
            "not signed by the CA in cafile {}",
            other.path("ca.crt").display()
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn expired_server_certificate_gives_the_date() {
    let set = Set::new(&["127.0.0.1"]);
    let expired = set
        .ca
        .issue_server_valid(&["127.0.0.1".to_string()], ago(10 * 86400), ago(86400))
        .unwrap();
    let (crt, key) = set.write("expired", &expired);
    let server = mqtt_tls::ServerTlsOptions::new(crt, key).build().unwrap();
    let client = set.client_options(false).build().unwrap();
    let (addr, _handle) = serve_once("127.0.0.1", server, false).await;
    let err = dial(client, "127.0.0.1", addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TlsError::CertificateNotValidNow { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("the certificate of the broker at 127.0.0.1 (CN=127.0.0.1) expired on "),
        "{msg}"
    );
    assert!(msg.contains("the time here is"), "{msg}");
}

#[tokio::test]
async fn not_yet_valid_server_certificate_gives_the_date_and_mentions_the_clock() {
    let set = Set::new(&["127.0.0.1"]);
    let future = set
        .ca
        .issue_server_valid(
            &["127.0.0.1".to_string()],
            from_now(86400),
            from_now(10 * 86400),
        )
        .unwrap();
    let (crt, key) = set.write("future", &future);
    let server = mqtt_tls::ServerTlsOptions::new(crt, key).build().unwrap();
    let client = set.client_options(false).build().unwrap();
    let (addr, _handle) = serve_once("127.0.0.1", server, false).await;
    let err = dial(client, "127.0.0.1", addr).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("is not valid before "), "{msg}");
    assert!(msg.contains("clock"), "{msg}");
}

#[tokio::test]
async fn missing_client_certificate_is_explained_on_both_sides() {
    let set = Set::new(&["127.0.0.1"]);
    let server = set.server_options(true).build().unwrap();
    let client = set.client_options(false).build().unwrap();
    let ctx = ClientContext::new("127.0.0.1", &client);
    let (addr, handle) = serve_once("127.0.0.1", server, true).await;
    // TLS 1.3: the client's handshake completes before the broker has seen
    // that no certificate came; the broker's alert arrives on the first read.
    let mut stream = dial(client, "127.0.0.1", addr).await.unwrap();
    let local = stream.get_ref().0.local_addr().unwrap();

    let broker_err = within(handle).await.unwrap().unwrap_err();
    assert_eq!(
        broker_err.to_string(),
        format!(
            "client at {local} sent no certificate; require_certificate is on. Give the client a certificate and key (client.crt, client.key) issued by this broker's CA, or set `require_certificate false`"
        )
    );

    within(stream.write_all(&connect_packet("sub-1")))
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    let read_err = within(stream.read(&mut buf)).await.unwrap_err();
    let explained = explain_io_error(&read_err, &ctx).expect("a TLS error");
    assert!(
        matches!(explained, TlsError::ClientCertificateRequired { .. }),
        "{explained:?}"
    );
    assert!(
        explained
            .to_string()
            .starts_with("the broker at 127.0.0.1 requires a client certificate, and none was sent; set `ClientTlsOptions::certfile` and `ClientTlsOptions::keyfile` to client.crt and client.key"),
        "{explained}"
    );
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_explained_on_both_sides() {
    let set = Set::new(&["127.0.0.1"]);
    let other = Set::new(&["127.0.0.1"]);
    let server = set.server_options(true).build().unwrap();
    // Trusts the right CA for the broker, but its own certificate is from another CA.
    let client = {
        let mut tls = set.client_options(false);
        tls.certfile = Some(other.path("client.crt"));
        tls.keyfile = Some(other.path("client.key"));
        tls
    }
    .build()
    .unwrap();
    let ctx = ClientContext::new("127.0.0.1", &client);
    assert!(ctx.has_client_cert);
    let (addr, handle) = serve_once("127.0.0.1", server, true).await;
    let mut stream = dial(client, "127.0.0.1", addr).await.unwrap();
    let local = stream.get_ref().0.local_addr().unwrap();

    let broker_err = within(handle).await.unwrap().unwrap_err();
    assert!(
        matches!(broker_err, TlsError::ClientCertUnknownIssuer { .. }),
        "{broker_err:?}"
    );
    let msg = broker_err.to_string();
    assert!(
        msg.starts_with(&format!(
            "client at {local} presented a certificate for CN=sensor-1 issued by CN=mqtt-stack CA,O=mqtt-stack, which is not signed by the CA in this broker's cafile"
        )),
        "{msg}"
    );

    within(stream.write_all(&connect_packet("sub-1")))
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    let read_err = within(stream.read(&mut buf)).await.unwrap_err();
    let explained = explain_io_error(&read_err, &ctx).expect("a TLS error");
    assert!(
        matches!(explained, TlsError::ClientCertificateRejected { .. }),
        "{explained:?}"
    );
    assert!(
        explained
            .to_string()
            .contains("rejected our client certificate"),
        "{explained}"
    );
}

#[tokio::test]
async fn client_certificate_is_optional_when_require_certificate_is_off() {
    let set = Set::new(&["127.0.0.1"]);
    let server = set.server_options(false).build().unwrap();

    let (addr, handle) = serve_once("127.0.0.1", server.clone(), false).await;
    let mut anonymous = dial(
        set.client_options(false).build().unwrap(),
        "127.0.0.1",
        addr,
    )
    .await
    .unwrap();
    let mut accepted = within(handle).await.unwrap().unwrap();
    assert_eq!(PeerIdentity::from_tls_stream(&accepted), None);
    within(anonymous.write_all(b"x")).await.unwrap();
    let mut buf = [0u8; 1];
    within(accepted.read_exact(&mut buf)).await.unwrap();

    let (addr, handle) = serve_once("127.0.0.1", server, false).await;
    dial(set.client_options(true).build().unwrap(), "127.0.0.1", addr)
        .await
        .unwrap();
    let accepted = within(handle).await.unwrap().unwrap();
    let identity = PeerIdentity::from_tls_stream(&accepted).unwrap();
    assert_eq!(identity.common_name.as_deref(), Some("sensor-1"));
}

#[tokio::test]
async fn plain_mqtt_to_the_tls_port_is_named_on_the_broker_side() {
    let set = Set::new(&["127.0.0.1"]);
    let server = set.server_options(false).build().unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server, false).await;
    let mut tcp = within(TcpStream::connect(addr)).await.unwrap();
    let local = tcp.local_addr().unwrap();
    within(tcp.write_all(&connect_packet("plain")))
        .await
        .unwrap();
    let err = within(handle).await.unwrap().unwrap_err();
    assert!(
        matches!(err, TlsError::PlainMqttOnTlsPort { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "client at {local} spoke plain MQTT (a CONNECT packet) to this TLS listener"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn tls_to_a_plain_mqtt_port_says_it_is_not_tls() {
    let set = Set::new(&["127.0.0.1"]);
    let client = set.client_options(false).build().unwrap();
    // A plain MQTT listener: reads the first bytes, sees no CONNECT, closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 1];
        within(tcp.read_exact(&mut first)).await.unwrap();
        assert_ne!(first[0], 0x10);
    });
    let err = dial(client, "127.0.0.1", addr).await.unwrap_err();
    within(plain).await.unwrap();
    assert!(matches!(err, TlsError::ServerNotTls { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("127.0.0.1 did not answer in TLS"),
        "{err}"
    );
    assert!(err.to_string().contains("plain MQTT port"), "{err}");
}

#[tokio::test]
async fn plain_mqtt_broker_answering_garbage_is_reported_as_not_tls() {
    let set = Set::new(&["127.0.0.1"]);
    let client = set.client_options(false).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        // A CONNACK, as a confused plain broker might send.
        let _ = tcp.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
        let mut sink = [0u8; 512];
        let _ = within(tcp.read(&mut sink)).await;
    });
    let err = dial(client, "127.0.0.1", addr).await.unwrap_err();
    assert!(matches!(err, TlsError::ServerNotTls { .. }), "{err:?}");
}

#[tokio::test]
async fn reissued_server_certificate_from_the_same_ca_works_with_the_old_ca_file() {
    let set = Set::new(&["127.0.0.2"]);
    let ca =
        CertificateAuthority::from_pem_files(&set.path("ca.crt"), &set.path("ca.key")).unwrap();
    let reissued = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let (crt, key) = set.write("reissued", &reissued);
    let server = mqtt_tls::ServerTlsOptions::new(crt, key).build().unwrap();
    let client = set.client_options(false).build().unwrap();
    let (addr, handle) = serve_once("127.0.0.1", server, false).await;
    dial(client, "127.0.0.1", addr).await.unwrap();
    within(handle).await.unwrap().unwrap();
}
