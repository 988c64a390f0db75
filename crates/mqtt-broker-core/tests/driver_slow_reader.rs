//! A subscriber that stops reading (its TCP window shut) is disconnected
//! after `write_timeout`; its QoS 1 messages wait in its session, its QoS 0
//! messages are counted as dropped, and nobody else notices.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::driver::{Listener, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_broker_core::{BrokerConfig, DisconnectReason, Event};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_cut_off_and_its_qos1_messages_wait_for_it() {
    let config = BrokerConfig::default().write_timeout(Some(Duration::from_secs(1)));
    let server = ServerBuilder::new(config)
        .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut events = server.events();

    // The stuck subscriber: a tiny receive buffer, a persistent session.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut stuck, ack) = RawClient::connect(stream, ProtocolVersion::V5, "stuck", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    stuck.subscribe("s/#", QoS::AtLeastOnce).await;

    // A healthy subscriber, served while the other one is stuck.
    let (mut healthy, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "healthy", |_| {}).await;
    healthy.subscribe("h/#", QoS::AtLeastOnce).await;
    const HEALTHY: usize = 50;
    const BULK: usize = 300;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < HEALTHY {
            healthy.expect_publish().await;
            got += 1;
        }
        got
    });

    // Three QoS 1 messages for the stuck client, then 300 × 64 KiB of QoS 0:
    // far more than the sockets hold.
    let (mut publisher, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "pub", |_| {}).await;
    for i in 1..=3 {
        publisher
            .publish(
                "s/q1",
                format!("keep-{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
    let big = vec![b'x'; 64 * 1024];
    for _ in 0..BULK {
        publisher
            .publish("s/bulk", &big, QoS::AtMostOnce, false)
            .await;
    }
    for i in 0..HEALTHY {
        publisher
            .publish("h/x", format!("{i}").as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }

    // The stuck client is cut off, with its own reason.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("stuck client disconnected in time")
            .expect("server running");
        if let Event::ClientDisconnected {
            client_id, reason, ..
        } = e
        {
            if client_id == "stuck" {
                assert_eq!(reason, DisconnectReason::WriteTimeout);
                break;
            }
        }
    }
    // The healthy one got every message.
    assert_eq!(
        tokio::time::timeout(WAIT, reader).await.unwrap().unwrap(),
        HEALTHY
    );
    assert!(server.stats().publish_messages_dropped > 0);

    // The stuck client comes back: its QoS 1 messages are there.
    drop(stuck);
    let (mut back, ack) = RawClient::connect(tcp(addr).await, ProtocolVersion::V5, "stuck", |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    assert!(ack.session_present);
    let mut kept = Vec::new();
    while kept.len() < 3 {
        match tokio::time::timeout(WAIT, back.recv()).await.unwrap() {
            Some(Packet::Publish(p)) if p.topic.as_str() == "s/q1" => {
                kept.push(String::from_utf8(p.payload.to_vec()).unwrap())
            }
            Some(Packet::Publish(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kept, ["keep-1", "keep-2", "keep-3"]);
    server.shutdown().await;
}
