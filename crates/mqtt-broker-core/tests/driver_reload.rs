//! `Server::reload`: certificates, password and ACL files and limits
//! re-read while clients stay connected (Mosquitto's SIGHUP), on real
//! sockets.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::config::Config;
use mqtt_broker_core::driver::{Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use std::net::SocketAddr;
use std::time::Duration;

async fn start(text: &str, port: u16) -> (Server, SocketAddr, Config) {
    let (config, _) = Config::parse_str(text, "mosquitto.conf").unwrap();
    let server = ServerBuilder::from_config(&config)
        .expect("config maps to a server")
        .start()
        .await
        .expect("server starts");
    (server, format!("127.0.0.1:{port}").parse().unwrap(), config)
}

fn reparse(text: &str) -> Config {
    Config::parse_str(text, "mosquitto.conf").unwrap().0
}

/// A PINGREQ answered: the connection is alive.
async fn alive<S>(c: &mut RawClient<S>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    c.send(Packet::PingReq).await;
    matches!(
        tokio::time::timeout(WAIT, c.recv()).await,
        Ok(Some(Packet::PingResp))
    )
}

/// The server certificate (DER) a new TLS connection is served with.
async fn served_certificate(addr: SocketAddr, certs: &Certs) -> Vec<u8> {
    let stream = tls(addr, "127.0.0.1", &certs.client_options(true))
        .await
        .expect("TLS handshake");
    let (_, conn) = stream.get_ref();
    conn.peer_certificates().expect("server certificate")[0].to_vec()
}

#[tokio::test]
async fn a_mutual_tls_client_stays_connected_across_a_certificate_rollover() {
    let certs = Certs::generate();
    let port = free_port();
    let text = format!(
        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        certs.path("ca.crt").display(),
        certs.path("server.crt").display(),
        certs.path("server.key").display(),
    );
    let (server, addr, _) = start(&text, port).await;
    let before = served_certificate(addr, &certs).await;
    let stream = tls(addr, "127.0.0.1", &certs.client_options(true))
        .await
        .unwrap();
    let (mut early, ack) = RawClient::connect(stream, ProtocolVersion::V5, "pi", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);

    // The renewal job writes a new certificate from the same CA.
    let ca = mqtt_tls::gen::CertificateAuthority::from_pem_files(
        &certs.path("ca.crt"),
        &certs.path("ca.key"),
    )
    .unwrap();
    let renewed = ca
        .issue_server(&["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap();
    renewed
        .write(&certs.path("server.crt"), &certs.path("server.key"))
        .unwrap();
    let report = server.reload(&reparse(&text)).unwrap();
    assert_eq!(report.tls_reloaded, 1);
    assert!(report.needs_restart.is_empty(), "{report:?}");

    // The open connection goes on; a new one gets the new certificate.
    assert!(alive(&mut early).await);
    let after = served_certificate(addr, &certs).await;
    assert_ne!(before, after);
    let stream = tls(addr, "127.0.0.1", &certs.client_options(true))
        .await
        .unwrap();
    let (_, ack) = RawClient::connect(stream, ProtocolVersion::V5, "pi2", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);

    // A half-written certificate keeps the old one in use, with an error.
    std::fs::write(
        certs.path("server.crt"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    let err = server.reload(&reparse(&text)).unwrap_err().to_string();
    assert!(err.contains("old certificate stays in use"), "{err}");
    assert_eq!(served_certificate(addr, &certs).await, after);
    assert!(alive(&mut early).await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_user_removed_from_the_password_file_is_disconnected_at_the_reload() {
    let Some(tool) = tool("mosquitto_passwd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "").unwrap();
    let add = |user: &str, password: &str| {
        let status = std::process::Command::new(&tool)
            .arg("-b")
            .arg(&file)
            .args([user, password])
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success());
    };
    add("pi", "raspberry");
    add("laptop", "secret");
    let port = free_port();
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        file.display()
    );
    let (server, addr, _) = start(&text, port).await;
    let login = |user: &'static str, password: &'static str| {
        move |c: &mut mqtt_broker_core::mqtt_codec::Connect| {
            c.username = Some(user.into());
            c.password = Some(bytes::Bytes::from_static(password.as_bytes()));
        }
    };
    let (mut pi, ack) = RawClient::connect(
        tcp(addr).await,
        ProtocolVersion::V5,
        "pi",
        login("pi", "raspberry"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let (mut laptop, ack) = RawClient::connect(
        tcp(addr).await,
        ProtocolVersion::V3_1_1,
        "laptop",
        login("laptop", "secret"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);

    // A broken password file keeps the running one.
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, "pi:not-a-hash\n").unwrap();
    let err = server.reload(&reparse(&text)).unwrap_err().to_string();
    assert!(err.contains("passwd"), "{err}");
    assert!(alive(&mut pi).await && alive(&mut laptop).await);
    std::fs::write(&file, &good).unwrap();

    // pi is removed; laptop keeps its password.
    let status = std::process::Command::new(&tool)
        .arg("-D")
        .arg(&file)
        .arg("pi")
        .status()
        .unwrap();
    assert!(status.success());
    let report = server.reload(&reparse(&text)).unwrap();
    assert_eq!(report.disconnected, ["pi"]);
    match tokio::time::timeout(WAIT, pi.recv()).await.unwrap() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::NotAuthorized),
        other => panic!("{other:?}"),
    }
    assert!(alive(&mut laptop).await);
    let (_, ack) = RawClient::connect(
        tcp(addr).await,
        ProtocolVersion::V5,
        "pi",
        login("pi", "raspberry"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    server.shutdown().await;
}

#[tokio::test]
async fn acl_and_limits_apply_to_the_next_message_and_listener_changes_wait_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite #\n").unwrap();
    let port = free_port();
    let text = |extra: &str| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {}\n{extra}",
            acl.display()
        )
    };
    let (server, addr, _) = start(&text(""), port).await;
    let (mut c, _) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "c", |_| {}).await;
    c.subscribe("t/#", QoS::AtMostOnce).await;
    c.publish("t/1", b"before", QoS::AtMostOnce, false).await;
    assert_eq!(&c.expect_publish().await.payload[..], b"before");

    // Reading t/# is no longer allowed: the next delivery is not made.
    std::fs::write(&acl, "topic write #\n").unwrap();
    let other_port = free_port();
    let changed = text(&format!(
        "listener {other_port} 127.0.0.1\nmax_queued_messages 7\n"
    ));
    let report = server.reload(&reparse(&changed)).unwrap();
    assert_eq!(report.needs_restart.len(), 1, "{report:?}");
    assert!(report.needs_restart[0].contains(&other_port.to_string()));
    assert_eq!(server.with_broker(|b| b.config().max_queued_messages), 7);
    c.publish("t/1", b"after", QoS::AtMostOnce, false).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.recv())
            .await
            .is_err(),
        "delivered although the new ACL denies reading"
    );
    assert!(alive(&mut c).await);
    // The new listener is not opened by a reload.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", other_port))
        .await
        .is_err());
    // Nor is a bridge added: as in Mosquitto, bridges are read at start.
    let with_bridge = format!(
        "{changed}connection central\naddress 127.0.0.1:{}\ntopic #\n",
        free_port()
    );
    let report = server.reload(&reparse(&with_bridge)).unwrap();
    assert!(
        report.needs_restart.iter().any(|m| m.contains("bridges")),
        "{report:?}"
    );
    assert!(server.bridges().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn with_certificate_watch_interval_a_renewed_certificate_is_served_without_a_reload() {
    let certs = Certs::generate();
    let port = free_port();
    let text = format!(
        "certificate_watch_interval 1\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        certs.path("ca.crt").display(),
        certs.path("server.crt").display(),
        certs.path("server.key").display(),
    );
    let (server, addr, _) = start(&text, port).await;
    let before = served_certificate(addr, &certs).await;
    let ca = mqtt_tls::gen::CertificateAuthority::from_pem_files(
        &certs.path("ca.crt"),
        &certs.path("ca.key"),
    )
    .unwrap();
    ca.issue_server(&["127.0.0.1".to_string()])
        .unwrap()
        .write(&certs.path("server.crt"), &certs.path("server.key"))
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while served_certificate(addr, &certs).await == before {
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await;
}
