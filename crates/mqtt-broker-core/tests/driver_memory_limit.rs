//! `memory_limit` in the tokio driver: a packet being received holds its
//! announced length, so a client that announces a huge packet and trickles
//! it in is disconnected (5.0: DISCONNECT 0x97 Quota exceeded; 3.1.1:
//! closed) before the account passes the limit, while other clients keep
//! publishing and receiving.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_broker_core::BrokerConfig;
use std::net::SocketAddr;

const LIMIT: usize = 1 << 20;

// Every test here captures its thread's log: a log line first reached on
// a thread without a subscriber could otherwise be cached as of no
// interest for the test that reads it.

async fn server() -> (Server, SocketAddr) {
    driver_support::tcp_server(BrokerConfig::default().memory_limit(LIMIT)).await
}

/// The start of a PUBLISH to `t/huge` announcing `total` bytes, and the
/// first `body` bytes of its payload.
fn huge_publish_start(total: usize, body: usize) -> Vec<u8> {
    let mut remaining = total - 5; // a 4-byte Remaining Length
    let mut out = vec![0x30];
    for _ in 0..4 {
        let mut b = (remaining % 128) as u8;
        remaining /= 128;
        if out.len() < 4 {
            b |= 0x80;
        }
        out.push(b);
    }
    out.extend_from_slice(b"\x00\x06t/huge");
    out.resize(out.len() + body, b'x');
    out
}

/// A subscriber and a publisher that go on working: one QoS 1 message
/// through, acknowledged by the subscriber.
async fn round_trip(
    sub: &mut RawClient<tokio::net::TcpStream>,
    publisher: &mut RawClient<tokio::net::TcpStream>,
    payload: &[u8],
) {
    publisher
        .publish("t/ok", payload, QoS::AtLeastOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], payload);
    // Its PUBACK is handled before the PINGREQ: the message is released.
    sub.send(Packet::PingReq).await;
    assert_eq!(sub.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn a_5_0_client_announcing_200_mib_gets_quota_exceeded_and_the_others_are_served() {
    let log = LogCapture::default();
    let _guard = log.install();
    let (server, addr) = server().await;
    let v5 = ProtocolVersion::V5;
    let (mut sub, _) = RawClient::connect(tcp(addr).await, v5, "sub", |_| {}).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = RawClient::connect(tcp(addr).await, v5, "pub", |_| {}).await;
    round_trip(&mut sub, &mut publisher, b"before").await;

    let (mut hostile, ack) = RawClient::connect(tcp(addr).await, v5, "hostile", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // 200 MiB announced (under the protocol's 256 MiB, so not too large
    // for the decoder), 1 KiB sent.
    hostile.send_raw(&huge_publish_start(200 << 20, 1024)).await;
    match hostile.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::QuotaExceeded),
        other => panic!("expected DISCONNECT 0x97, got {other:?}"),
    }
    assert_eq!(hostile.recv().await, None, "then the connection is closed");
    assert!(
        log.wait_for("Client hostile disconnected due to out of memory: its packet of 209715200 bytes being received does not fit within memory_limit (1048576 bytes").await,
        "{}",
        log.text()
    );

    round_trip(&mut sub, &mut publisher, b"after").await;
    let stats = server.stats();
    assert_eq!(stats.disconnects.memory_limit, 1);
    let most = stats.heap_maximum.expect("the memory account") as usize;
    assert!(most <= LIMIT, "the account never passed the limit: {most}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_3_1_1_client_trickling_a_huge_packet_is_closed_and_the_others_are_served() {
    let _guard = LogCapture::default().install();
    let (server, addr) = server().await;
    let v3 = ProtocolVersion::V3_1_1;
    let (mut sub, _) = RawClient::connect(tcp(addr).await, v3, "sub", |_| {}).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = RawClient::connect(tcp(addr).await, v3, "pub", |_| {}).await;

    // Announces 2 MiB (twice the limit), sends it a little at a time: the
    // first piece with the fixed header is enough to close it.
    let (mut hostile, _) = RawClient::connect(tcp(addr).await, v3, "hostile", |_| {}).await;
    let start = huge_publish_start(2 << 20, 0);
    for piece in start.chunks(3) {
        if hostile.try_send_raw(piece).await.is_err() {
            break;
        }
    }
    assert_eq!(
        hostile.recv().await,
        None,
        "closed without a packet (3.1.1)"
    );

    round_trip(&mut sub, &mut publisher, b"still served").await;
    let stats = server.stats();
    assert_eq!(stats.disconnects.memory_limit, 1);
    assert!(stats.heap_maximum.expect("the memory account") as usize <= LIMIT);
    server.shutdown().await;
}

#[tokio::test]
async fn packets_that_fit_are_received_whole_and_release_their_bytes() {
    let _guard = LogCapture::default().install();
    let (server, addr) = server().await;
    let v5 = ProtocolVersion::V5;
    let (mut sub, _) = RawClient::connect(tcp(addr).await, v5, "sub", |_| {}).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let (mut publisher, _) = RawClient::connect(tcp(addr).await, v5, "pub", |_| {}).await;
    // 600 KiB, more than one read: held while it arrives, then delivered.
    let big = vec![b'b'; 600 << 10];
    for _ in 0..3 {
        round_trip(&mut sub, &mut publisher, &big).await;
    }
    let stats = server.stats();
    assert_eq!(stats.disconnects.memory_limit, 0);
    let now = stats.heap_current.expect("the memory account") as usize;
    assert!(
        now < 64 << 10,
        "delivered and acknowledged: released ({now})"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mosquitto_pub_sees_quota_exceeded_at_5_0_and_a_closed_connection_at_3_1_1() {
    let _guard = LogCapture::default().install();
    let Some(mosquitto_pub) = tool("mosquitto_pub") else {
        return;
    };
    const SMALL: usize = 4096;
    let server = ServerBuilder::new(BrokerConfig::default().memory_limit(SMALL))
        .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
        .start()
        .await
        .expect("server starts");
    let addr = server.local_addrs()[0];
    // Retained messages stay held: fill the account with them.
    let (mut filler, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "filler", |_| {}).await;
    let payload = vec![b'r'; 1000];
    for i in 0..SMALL / 1000 {
        filler
            .publish(&format!("r/{i}"), &payload, QoS::AtMostOnce, true)
            .await;
    }
    filler.send(Packet::PingReq).await;
    assert_eq!(filler.recv().await, Some(Packet::PingResp));
    assert!(!server.with_broker(|b| b.memory().has_room(1000)));

    let run = |version: &'static str| {
        let port = addr.port().to_string();
        let publ = mosquitto_pub.clone();
        async move {
            let child = tokio::process::Command::new(publ)
                .args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1"])
                .args(["-t", "t/x", "-m", &"m".repeat(1000)])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("mosquitto_pub starts");
            let out = tokio::time::timeout(WAIT, child.wait_with_output())
                .await
                .expect("mosquitto_pub ends")
                .expect("mosquitto_pub runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (_, err) = run("mqttv5").await;
    assert!(
        err.contains("Publish 1 failed: Quota exceeded"),
        "mosquitto_pub -V mqttv5: {err}"
    );
    let (ok, err) = run("mqttv311").await;
    assert!(
        !ok,
        "mosquitto_pub -V mqttv311 must fail when closed: {err}"
    );
    assert_eq!(server.stats().disconnects.memory_limit, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn at_the_limit_small_packets_cut_across_reads_still_work() {
    let _guard = LogCapture::default().install();
    const SMALL: usize = 4096;
    let server = ServerBuilder::new(BrokerConfig::default().memory_limit(SMALL))
        .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
        .start()
        .await
        .expect("server starts");
    let addr = server.local_addrs()[0];
    let v5 = ProtocolVersion::V5;
    let (mut filler, _) = RawClient::connect(tcp(addr).await, v5, "filler", |_| {}).await;
    let payload = vec![b'r'; 1000];
    // At QoS 1 (the last one is refused with 0x97): they are sent on at
    // QoS 1, and acknowledged below.
    for i in 0..SMALL / 1000 {
        filler
            .publish(&format!("r/{i}"), &payload, QoS::AtLeastOnce, true)
            .await;
    }
    filler.send(Packet::PingReq).await;
    assert_eq!(filler.recv().await, Some(Packet::PingResp));
    assert!(!server.with_broker(|b| b.memory().has_room(1000)));

    // A SUBSCRIBE and a QoS 1 PUBLISH, each written one byte at a time.
    let (mut client, _) = RawClient::connect(tcp(addr).await, v5, "slow", |_| {}).await;
    let mut subscribe = bytes::BytesMut::new();
    Packet::Subscribe(mqtt_broker_core::mqtt_codec::Subscribe::new(
        std::num::NonZeroU16::new(7).unwrap(),
        mqtt_broker_core::mqtt_codec::TopicFilter::try_from("r/#").unwrap(),
        mqtt_broker_core::mqtt_codec::SubscriptionOptions::qos(QoS::AtLeastOnce),
    ))
    .encode(v5, &mut subscribe)
    .unwrap();
    for b in subscribe.iter() {
        client.send_raw(&[*b]).await;
        tokio::task::yield_now().await;
    }
    // The retained messages come with the SUBACK.
    let mut got_suback = false;
    let mut retained = 0;
    while !got_suback || retained < SMALL / 1000 - 1 {
        match client.recv().await {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.reason_codes, vec![ReasonCode::GrantedQoS1]);
                got_suback = true;
            }
            Some(Packet::Publish(p)) => {
                retained += 1;
                // Its PUBACK, in two writes.
                let mut ack = bytes::BytesMut::new();
                Packet::PubAck(mqtt_broker_core::mqtt_codec::PubAck::new(
                    p.packet_id.unwrap(),
                ))
                .encode(v5, &mut ack)
                .unwrap();
                client.send_raw(&ack[..1]).await;
                tokio::task::yield_now().await;
                client.send_raw(&ack[1..]).await;
            }
            other => panic!("expected SUBACK and retained messages, got {other:?}"),
        }
    }
    let mut publish = bytes::BytesMut::new();
    let mut p = mqtt_broker_core::mqtt_codec::Publish::new(
        mqtt_broker_core::mqtt_codec::TopicName::try_from("t/x").unwrap(),
        bytes::Bytes::from_static(&[b'p'; 1000]),
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = std::num::NonZeroU16::new(9);
    Packet::Publish(p).encode(v5, &mut publish).unwrap();
    for piece in publish.chunks(100) {
        client.send_raw(piece).await;
        tokio::task::yield_now().await;
    }
    match client.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::QuotaExceeded),
        other => panic!("expected PUBACK 0x97, got {other:?}"),
    }
    client.send(Packet::PingReq).await;
    assert_eq!(client.recv().await, Some(Packet::PingResp));
    assert_eq!(server.stats().disconnects.memory_limit, 0);
    server.shutdown().await;
}
