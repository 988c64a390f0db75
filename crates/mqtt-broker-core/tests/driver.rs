//! The tokio driver end to end on loopback: plain TCP, TLS, mutual TLS, two
//! listeners, time-outs, back-pressure and graceful shutdown.
#![cfg(feature = "tokio")]

mod driver_support;

use bytes::BytesMut;
use driver_support::*;
use mqtt_broker_core::config::Config;
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{
    Packet, PacketId, ProtocolVersion, PubAck, PubRel, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_broker_core::BrokerConfig;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn plain_server(config: BrokerConfig) -> Server {
    ServerBuilder::new(config)
        .listener(Listener::tcp(loopback()))
        .start()
        .await
        .expect("server starts")
}

/// Starts the server `config` describes; its one listener is on
/// 127.0.0.1:`port`.
async fn server_from_config(config: &Config, port: u16) -> (Server, SocketAddr) {
    let server = ServerBuilder::from_config(config)
        .expect("config maps to a server")
        .start()
        .await
        .expect("server starts");
    (server, format!("127.0.0.1:{port}").parse().unwrap())
}

#[tokio::test]
async fn plain_tcp_delivers_in_both_protocol_versions() {
    let server = plain_server(BrokerConfig::default()).await;
    let addr = server.local_addrs()[0];
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (mut sub, ack) = RawClient::connect(tcp(addr).await, version, "pi", |_| {}).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        sub.subscribe("ssltopic", QoS::ExactlyOnce).await;
        let (mut publisher, _) =
            RawClient::connect(tcp(addr).await, version, "laptop", |_| {}).await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            publisher.publish("ssltopic", b"testing", qos, false).await;
            let p = sub.expect_publish().await;
            assert_eq!(p.topic.as_str(), "ssltopic");
            assert_eq!(&p.payload[..], b"testing");
            assert_eq!(p.qos, qos, "delivered at the publish QoS, never upgraded");
        }
        publisher.disconnect().await;
        sub.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_accepts_a_verified_client_without_user_name() {
    let certs = Certs::generate();
    // A verified certificate under require_certificate authenticates
    // the client even with anonymous access off.
    let config = BrokerConfig::default().allow_anonymous(false);
    let server = ServerBuilder::new(config)
        .listener(Listener::tls(loopback(), certs.server_options(true)).expect("tls listener"))
        .start()
        .await
        .expect("server starts");
    let addr = server.local_addrs()[0];
    let stream = tls(addr, "127.0.0.1", &certs.client_options(true))
        .await
        .expect("handshake");
    let (mut sub, ack) = RawClient::connect(stream, ProtocolVersion::V5, "pi", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    sub.subscribe("ssltopic", QoS::AtLeastOnce).await;
    let stream = tls(addr, "127.0.0.1", &certs.client_options(true))
        .await
        .expect("handshake");
    let (mut publisher, _) =
        RawClient::connect(stream, ProtocolVersion::V3_1_1, "laptop", |_| {}).await;
    publisher
        .publish("ssltopic", b"testing", QoS::AtLeastOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"testing");
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn client_without_certificate_is_refused_and_the_log_says_why() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let certs = Certs::generate();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tls(loopback(), certs.server_options(true)).expect("tls listener"))
        .start()
        .await
        .expect("server starts");
    let addr = server.local_addrs()[0];
    // TLS 1.3: the client's handshake completes; the broker's refusal arrives on the first read.
    if let Ok(mut stream) = tls(addr, "127.0.0.1", &certs.client_options(false)).await {
        let mut byte = [0u8; 1];
        let _ = tokio::time::timeout(WAIT, stream.read(&mut byte)).await;
    }
    assert!(
        logs.wait_for("sent no certificate").await,
        "broker log should explain the refusal, got:\n{}",
        logs.text()
    );
    assert!(
        logs.text().contains("require_certificate"),
        "log names the setting:\n{}",
        logs.text()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn plain_and_tls_listeners_share_one_broker() {
    let certs = Certs::generate();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback()))
        .listener(Listener::tls(loopback(), certs.server_options(false)).expect("tls listener"))
        .start()
        .await
        .expect("server starts");
    let (plain, secure) = (server.local_addrs()[0], server.local_addrs()[1]);
    let stream = tls(secure, "127.0.0.1", &certs.client_options(false))
        .await
        .expect("handshake");
    let (mut sub, _) = RawClient::connect(stream, ProtocolVersion::V5, "pi", |_| {}).await;
    sub.subscribe("home/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) =
        RawClient::connect(tcp(plain).await, ProtocolVersion::V3_1_1, "laptop", |_| {}).await;
    publisher
        .publish("home/temp", b"21.5", QoS::AtLeastOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(p.topic.as_str(), "home/temp");
    assert_eq!(server.stats().clients_connected, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn stalled_tls_handshake_blocks_nobody_and_is_closed_after_the_time_out() {
    let certs = Certs::generate();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tls(loopback(), certs.server_options(false)).expect("tls listener"))
        .handshake_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("server starts");
    let addr = server.local_addrs()[0];
    // Connects and sends nothing.
    let mut stalled = tcp(addr).await;
    // Another client completes its handshake and CONNECT meanwhile.
    let stream = tls(addr, "127.0.0.1", &certs.client_options(false))
        .await
        .expect("handshake");
    let (_c, ack) = RawClient::connect(stream, ProtocolVersion::V5, "pi", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // The stalled connection is closed by the broker.
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(WAIT, stalled.read(&mut byte))
        .await
        .expect("the broker closes a connection that never handshakes");
    assert!(matches!(n, Ok(0) | Err(_)));
    server.shutdown().await;
}

#[tokio::test]
async fn connection_that_never_sends_connect_is_closed() {
    let server =
        plain_server(BrokerConfig::default().connect_timeout(Duration::from_millis(200))).await;
    let mut idle = tcp(server.local_addrs()[0]).await;
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(WAIT, idle.read(&mut byte))
        .await
        .expect("closed after the CONNECT time-out");
    assert!(matches!(n, Ok(0) | Err(_)));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_v5_clients_server_shutting_down() {
    let server = plain_server(BrokerConfig::default()).await;
    let (mut c, _) = RawClient::connect(
        tcp(server.local_addrs()[0]).await,
        ProtocolVersion::V5,
        "pi",
        |_| {},
    )
    .await;
    let shutdown = tokio::spawn(server.shutdown());
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    assert!(c.recv().await.is_none(), "then the connection closes");
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes")
        .expect("no panic");
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_stall_the_others() {
    let server = plain_server(BrokerConfig::default().max_transmit_bytes(64 * 1024)).await;
    let addr = server.local_addrs()[0];
    // The slow one subscribes and then never reads its socket again.
    let (mut slow, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "slow", |_| {}).await;
    slow.subscribe("load/#", QoS::AtMostOnce).await;
    let (mut fast, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "fast", |_| {}).await;
    fast.subscribe("load/#", QoS::AtMostOnce).await;
    let (mut publisher, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "laptop", |_| {}).await;
    let payload = vec![7u8; 16 * 1024];
    let fast_reader = tokio::spawn(async move {
        let mut n = 0;
        while n < 400 {
            let p = fast.expect_publish().await;
            assert_eq!(p.payload.len(), 16 * 1024);
            n += 1;
        }
        n
    });
    // 400 x 16 KiB = 6.4 MB: far more than the socket buffers of the slow client hold.
    for _ in 0..400 {
        // QoS 1: every PUBACK comes back although one subscriber is stuck.
        publisher
            .publish("load/x", &payload, QoS::AtLeastOnce, false)
            .await;
    }
    let received = tokio::time::timeout(WAIT, fast_reader)
        .await
        .expect("fast subscriber keeps up")
        .expect("no panic");
    assert_eq!(received, 400);
    drop(slow);
    server.shutdown().await;
}

#[tokio::test]
async fn the_seed_guides_ssl_conf_works_unchanged() {
    let certs = Certs::generate();
    let port = free_port();
    // The guide's file, with paths pointing at the generated certificates and
    // the listener bound to loopback for the test.
    let text = format!(
        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        certs.path("ca.crt").display(),
        certs.path("server.crt").display(),
        certs.path("server.key").display()
    );
    let (config, warnings) = Config::parse_str(&text, "ssl.conf").expect("config parses");
    assert!(warnings.is_empty(), "{warnings:?}");
    let (server, addr) = server_from_config(&config, port).await;
    let stream = tls(addr, "127.0.0.1", &certs.client_options(true))
        .await
        .expect("handshake");
    let (_c, ack) = RawClient::connect(stream, ProtocolVersion::V3_1_1, "pi", |_| {}).await;
    assert_eq!(
        ack.reason_code,
        ReasonCode::Success,
        "no allow_anonymous needed with a verified certificate"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn anonymous_refusal_from_config_names_the_setting() {
    let port = free_port();
    let text = format!("listener {port} 127.0.0.1\n");
    let (config, _) = Config::parse_str(&text, "mosquitto.conf").unwrap();
    let (server, addr) = server_from_config(&config, port).await;
    // Mosquitto 2: a configured listener turns anonymous access off.
    let (_c, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "anon", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    let reason = ack.properties.reason_string.clone().unwrap_or_default();
    assert!(
        reason.contains("allow_anonymous"),
        "the refusal names the setting: {reason}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_id_options_and_max_qos_from_config_are_applied() {
    let port = free_port();
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nmax_qos 1\n\
         auto_id_prefix pi-\nclientid_prefixes pi-\nretry_interval 20\n"
    );
    let (config, warnings) = Config::parse_str(&text, "mosquitto.conf").unwrap();
    // clientid_prefixes is deprecated, retry_interval gone (as Mosquitto 2 says).
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let (server, addr) = server_from_config(&config, port).await;
    let (_c, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let assigned = ack.properties.assigned_client_identifier.clone().unwrap();
    assert!(assigned.starts_with("pi-"), "{assigned}");
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    let (_c, ack) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "laptop", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    server.shutdown().await;
}

#[tokio::test]
async fn password_file_from_config_is_enforced() {
    let Some(mosquitto_passwd) = tool("mosquitto_passwd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let status = std::process::Command::new(mosquitto_passwd)
        .arg("-c")
        .arg("-b")
        .arg(&passwd)
        .args(["laptop", "secret"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success());
    let port = free_port();
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        passwd.display()
    );
    let (config, _) = Config::parse_str(&text, "mosquitto.conf").unwrap();
    let (server, addr) = server_from_config(&config, port).await;
    let login = |password: &'static str| {
        move |c: &mut mqtt_broker_core::mqtt_codec::Connect| {
            c.username = Some("laptop".into());
            c.password = Some(bytes::Bytes::from_static(password.as_bytes()));
        }
    };
    let (_ok, ack) = RawClient::connect(
        tcp(addr).await,
        ProtocolVersion::V5,
        "good",
        login("secret"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let (_bad, ack) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "bad", login("wrong")).await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    let (_bad, ack) = RawClient::connect(
        tcp(addr).await,
        ProtocolVersion::V3_1_1,
        "bad311",
        login("wrong"),
    )
    .await;
    assert_eq!(
        ack.reason_code,
        ReasonCode::BadUserNameOrPassword,
        "3.1.1 return code 4"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ipv6_loopback_listener_serves_clients() {
    let addr: SocketAddr = "[::1]:0".parse().unwrap();
    let server = match ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(addr))
        .start()
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: this machine has no IPv6 loopback ({e})");
            return;
        }
    };
    let addr = server.local_addrs()[0];
    assert!(addr.is_ipv6());
    let (mut c, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "v6", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    c.subscribe("v6/#", QoS::AtMostOnce).await;
    c.publish("v6/hello", b"::1", QoS::AtMostOnce, false).await;
    assert_eq!(&c.expect_publish().await.payload[..], b"::1");
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn tls_client_on_a_plain_listener_is_told_apart_in_the_log() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let certs = Certs::generate();
    let server = plain_server(BrokerConfig::default()).await;
    let addr = server.local_addrs()[0];
    let err = tls(addr, "127.0.0.1", &certs.client_options(false))
        .await
        .expect_err("no TLS on a plain listener");
    let _ = err;
    assert!(
        logs.wait_for("it speaks TLS, but this listener is plain MQTT")
            .await,
        "{}",
        logs.text()
    );
    assert!(!logs.text().contains("malformed"), "{}", logs.text());
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_bytes_close_only_that_connection_with_the_reason() {
    let server = plain_server(BrokerConfig::default().max_packet_size(1024)).await;
    let addr = server.local_addrs()[0];
    let (mut other, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "other", |_| {}).await;
    other.subscribe("still/#", QoS::AtMostOnce).await;

    // Packet type 0 is reserved: Malformed Packet.
    let mut bad = tcp(addr).await;
    let (mut c, _) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "bad", |_| {}).await;
    c.send_raw(&[0x00, 0x00]).await;
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::MalformedPacket),
        other => panic!("expected DISCONNECT 0x81, got {other:?}"),
    }
    assert!(c.recv().await.is_none(), "then the broker closes it");

    // A packet over max_packet_size: Packet too large, before it is buffered.
    let (mut big, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "big", |_| {}).await;
    big.send_raw(&[0x30, 0xFF, 0xFF, 0x7F]).await;
    match big.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::PacketTooLarge),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    drop(bad.shutdown().await);

    // Everyone else is still served.
    other
        .publish("still/here", b"yes", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&other.expect_publish().await.payload[..], b"yes");
    server.shutdown().await;
}

/// A client that overruns the broker's Receive Maximum with QoS 2 gets
/// DISCONNECT 0x93, and the packets it still has in flight (PUBRELs for
/// the PUBRECs it reads) are read and dropped by the closing broker
/// instead of being answered with a TCP reset: the client's writes keep
/// succeeding until it closes, as with the Paho interoperability suite's
/// flow-control test.
#[tokio::test]
async fn a_closing_connection_is_drained_not_reset() {
    let server = plain_server(BrokerConfig::default()).await;
    let addr = server.local_addrs()[0];
    let (mut c, ack) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "flood", |_| {}).await;
    let receive_maximum = ack.properties.receive_maximum.unwrap_or(u16::MAX);
    assert!(receive_maximum < 1000, "a small Receive Maximum to overrun");
    // Receive Maximum + 1 QoS 2 PUBLISHes in one write.
    let mut burst = BytesMut::new();
    for i in 1..=receive_maximum + 1 {
        let mut p = Publish::new(TopicName::try_from("flood").unwrap(), &b"x"[..]);
        p.qos = QoS::ExactlyOnce;
        p.packet_id = PacketId::new(i);
        Packet::Publish(p)
            .encode(ProtocolVersion::V5, &mut burst)
            .unwrap();
    }
    c.send_raw(&burst).await;
    let mut pubrel = BytesMut::new();
    loop {
        match c.recv().await {
            Some(Packet::PubRec(r)) => {
                pubrel.clear();
                Packet::PubRel(PubRel::new(r.packet_id))
                    .encode(ProtocolVersion::V5, &mut pubrel)
                    .unwrap();
                c.try_send_raw(&pubrel).await.expect("PUBREL written");
            }
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::ReceiveMaximumExceeded);
                break;
            }
            other => panic!("expected PUBREC or DISCONNECT, got {other:?}"),
        }
    }
    // Bytes sent after the DISCONNECT, with time for a reset to come back
    // between them: a reset would fail the second write.
    for _ in 0..2 {
        c.try_send_raw(&pubrel)
            .await
            .expect("the closing broker still reads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.recv().await.is_none(), "and then it closes");
    server.shutdown().await;
}

/// On a current-thread runtime (as `laptop-broker` runs it) packets from
/// different clients are handled in the order they arrived: a SUBSCRIBE
/// one client sent just before another client's PUBLISH is in place when
/// the PUBLISH is routed, as in Mosquitto's single-threaded loop (the Paho
/// interoperability suite's subscribe-options and request-response tests
/// send exactly this sequence without waiting for the SUBACK).
#[tokio::test(flavor = "current_thread")]
async fn current_thread_broker_handles_clients_in_arrival_order() {
    let server = plain_server(BrokerConfig::default()).await;
    let addr = server.local_addrs()[0];
    // Without TCP_NODELAY the kernel would hold a client's second small
    // write until the first is acknowledged, and the order on the wire
    // would not be the order of the writes.
    let nodelay = || async {
        let s = tcp(addr).await;
        s.set_nodelay(true).unwrap();
        s
    };
    let (mut a, _) =
        RawClient::connect(nodelay().await, ProtocolVersion::V5, "requester", |_| {}).await;
    let (mut b, _) =
        RawClient::connect(nodelay().await, ProtocolVersion::V5, "responder", |_| {}).await;
    for round in 0..20u16 {
        let topic = format!("order/{round}");
        // Both written before the broker's tasks run again.
        let sub = Subscribe::new(
            PacketId::new(round + 1).unwrap(),
            TopicFilter::new(topic.as_str()).unwrap(),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
        );
        b.send(Packet::Subscribe(sub)).await;
        let mut p = Publish::new(TopicName::try_from(topic.as_str()).unwrap(), &b"x"[..]);
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(round + 1);
        a.send(Packet::Publish(p)).await;
        // 5.0 PUBACK says 0x10 No matching subscribers if the PUBLISH
        // was routed before the SUBSCRIBE.
        match a.recv().await {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.reason_code, ReasonCode::Success, "round {round}")
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
        assert!(matches!(b.recv().await, Some(Packet::SubAck(_))));
        match b.recv().await {
            Some(Packet::Publish(got)) => {
                assert_eq!(got.topic.as_str(), topic, "round {round}");
                let id = got.packet_id.expect("QoS 1");
                b.send(Packet::PubAck(PubAck::new(id))).await;
            }
            other => panic!("round {round}: expected the PUBLISH, got {other:?}"),
        }
    }
    server.shutdown().await;
}
