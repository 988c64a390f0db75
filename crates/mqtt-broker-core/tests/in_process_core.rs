//! In-process connections in the sans-IO core: packets in through
//! `handle_packet`, packets out through `take_packets`, never a byte.

use bytes::Bytes;
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionId, ConnectionInfo, Event};
use mqtt_codec::{
    Connect, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};
use std::time::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// Feeds `packet` as the client's, with its encoded size as `wire_len`.
fn feed(broker: &mut Broker, now: Instant, id: ConnectionId, packet: Packet) {
    let len = packet.encoded_len(V5);
    broker.handle_packet(now, id, packet, len);
}

/// Opens an in-process connection and connects it (5.0); returns it once
/// its CONNACK was taken.
fn local_client(broker: &mut Broker, now: Instant, connect: Connect) -> ConnectionId {
    let id = broker.local_connection_opened(now, ConnectionInfo::in_process());
    feed(broker, now, id, Packet::Connect(Box::new(connect)));
    let mut announced = false;
    while let Some(e) = broker.poll_event() {
        announced |= e == Event::Transmit(id);
    }
    assert!(announced, "the CONNACK is announced like bytes would be");
    // Nothing is ever encoded for it.
    assert!(broker.take_transmit(now, id).is_none());
    let packets = broker.take_packets(now, id).expect("CONNACK");
    match &packets[..] {
        [Packet::ConnAck(ack)] => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected one CONNACK, got {other:?}"),
    }
    id
}

fn subscribe(broker: &mut Broker, now: Instant, id: ConnectionId, filter: &str, qos: QoS) {
    let mut s = Subscribe::new(
        pid(1),
        TopicFilter::new(filter).unwrap(),
        SubscriptionOptions::qos(qos),
    );
    s.properties.subscription_identifiers.push(7);
    feed(broker, now, id, Packet::Subscribe(s));
    let packets = broker.take_packets(now, id).unwrap();
    assert!(
        matches!(&packets[..], [Packet::SubAck(a)] if a.reason_codes == [ReasonCode::granted(qos)]),
        "{packets:?}"
    );
}

fn publishes(packets: Vec<Packet>) -> Vec<Publish> {
    packets
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect()
}

#[test]
fn in_process_clients_exchange_packets_and_share_the_payload() {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = Instant::now();
    let mut c = Connect::new(V5, "app-sub");
    c.username = Some("app".into());
    // Even a client that allows topic aliases gets none in process.
    c.properties.topic_alias_maximum = Some(10);
    let sub = local_client(&mut broker, now, c);
    let publisher = local_client(&mut broker, now, Connect::new(V5, "app-pub"));
    subscribe(&mut broker, now, sub, "sensors/+", QoS::AtLeastOnce);
    let stats = broker.stats();
    assert_eq!(stats.clients_connected, 2, "in-process clients count");
    assert_eq!(stats.connections_open, 2);

    let payload = Bytes::from(vec![42u8; 1000]);
    for n in 1..=2u16 {
        let mut p = Publish::new(TopicName::new("sensors/t").unwrap(), payload.clone());
        p.qos = QoS::AtLeastOnce;
        p.packet_id = Some(pid(n));
        p.properties.content_type = Some("application/octet-stream".into());
        p.properties
            .user_properties
            .push(("unit".into(), "K".into()));
        feed(&mut broker, now, publisher, Packet::Publish(p));
        let acks = broker.take_packets(now, publisher).unwrap();
        assert_eq!(
            acks,
            [Packet::PubAck(PubAck::with_reason(
                pid(n),
                ReasonCode::Success
            ))]
        );
        let got = publishes(broker.take_packets(now, sub).unwrap());
        assert_eq!(got.len(), 1);
        let p = &got[0];
        assert_eq!(p.topic.as_str(), "sensors/t", "the topic, not an alias");
        assert_eq!(p.properties.topic_alias, None);
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert!(p.packet_id.is_some());
        // Zero-copy: the very bytes the publisher handed in.
        assert_eq!(p.payload.as_ptr(), payload.as_ptr());
        assert_eq!(p.payload.len(), payload.len());
        // 5.0 properties kept, the Subscription Identifier added.
        assert_eq!(
            p.properties.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(p.properties.user_properties.len(), 1);
        assert_eq!(p.properties.subscription_identifiers, [7]);
        feed(
            &mut broker,
            now,
            sub,
            Packet::PubAck(PubAck::new(p.packet_id.unwrap())),
        );
    }
    // The statistics count the packets' encoded size.
    let stats = broker.stats();
    assert!(stats.bytes_sent > 2000, "{}", stats.bytes_sent);
    assert!(stats.bytes_received > 2000, "{}", stats.bytes_received);
    assert_eq!(stats.messages_stored, 0, "both acknowledged");
}

#[test]
fn receive_maximum_bounds_what_an_in_process_client_is_handed() {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = Instant::now();
    let mut c = Connect::new(V5, "slow");
    c.properties.receive_maximum = Some(2);
    let sub = local_client(&mut broker, now, c);
    let publisher = local_client(&mut broker, now, Connect::new(V5, "fast"));
    subscribe(&mut broker, now, sub, "q", QoS::ExactlyOnce);
    for n in 1..=5u16 {
        let mut p = Publish::new(TopicName::new("q").unwrap(), Bytes::from(vec![n as u8]));
        p.qos = QoS::AtLeastOnce;
        p.packet_id = Some(pid(n));
        feed(&mut broker, now, publisher, Packet::Publish(p));
    }
    let first = publishes(broker.take_packets(now, sub).unwrap());
    assert_eq!(first.len(), 2, "Receive Maximum 2");
    assert!(broker.take_packets(now, sub).is_none(), "the rest wait");
    assert_eq!(broker.stats().messages_stored, 5);
    feed(
        &mut broker,
        now,
        sub,
        Packet::PubAck(PubAck::new(first[0].packet_id.unwrap())),
    );
    let next = publishes(broker.take_packets(now, sub).unwrap());
    assert_eq!(next.len(), 1, "one acknowledged, one more in flight");
    assert_eq!(&next[0].payload[..], [3]);
}

#[test]
fn untaken_packets_count_against_max_transmit_bytes() {
    let config = BrokerConfig::default().max_transmit_bytes(4096);
    let mut broker = Broker::new(config);
    let now = Instant::now();
    let sub = local_client(&mut broker, now, Connect::new(V5, "reader"));
    let publisher = local_client(&mut broker, now, Connect::new(V5, "writer"));
    subscribe(&mut broker, now, sub, "q0", QoS::AtMostOnce);
    let payload = Bytes::from(vec![0u8; 1000]);
    for _ in 0..20 {
        let p = Publish::new(TopicName::new("q0").unwrap(), payload.clone());
        feed(&mut broker, now, publisher, Packet::Publish(p));
    }
    // A PUBLISH of 1,000 bytes is 1,006 encoded: five fit below 4,096 and
    // the fifth takes it over; the other fifteen are dropped.
    let got = publishes(broker.take_packets(now, sub).unwrap());
    assert_eq!(got.len(), 5);
    assert_eq!(broker.stats().publish_messages_dropped, 15);
    // Taken, the room is back.
    let p = Publish::new(TopicName::new("q0").unwrap(), payload.clone());
    feed(&mut broker, now, publisher, Packet::Publish(p));
    assert_eq!(publishes(broker.take_packets(now, sub).unwrap()).len(), 1);
}

#[test]
fn a_network_client_and_an_in_process_one_talk_to_each_other() {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = Instant::now();
    let local = local_client(&mut broker, now, Connect::new(V5, "inside"));
    subscribe(&mut broker, now, local, "from/outside", QoS::AtMostOnce);
    // The network client speaks bytes.
    let net =
        broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:50000".parse().unwrap()));
    let mut wire = bytes::BytesMut::new();
    Packet::Connect(Box::new(Connect::new(V5, "outside")))
        .encode(V5, &mut wire)
        .unwrap();
    let mut s = Subscribe::new(
        pid(1),
        TopicFilter::new("from/inside").unwrap(),
        SubscriptionOptions::qos(QoS::AtMostOnce),
    );
    s.properties = Default::default();
    Packet::Subscribe(s).encode(V5, &mut wire).unwrap();
    Packet::Publish(Publish::new(
        TopicName::new("from/outside").unwrap(),
        Bytes::from_static(b"hello inside"),
    ))
    .encode(V5, &mut wire)
    .unwrap();
    broker.handle_bytes(now, net, &mut wire);
    assert!(
        broker.take_packets(now, net).is_none(),
        "bytes, not packets"
    );
    let mut out = broker.take_transmit(now, net).unwrap();
    let mut dec = mqtt_codec::Decoder::with_version(V5);
    assert!(matches!(
        dec.decode(&mut out).unwrap(),
        Some(Packet::ConnAck(_))
    ));
    assert!(matches!(
        dec.decode(&mut out).unwrap(),
        Some(Packet::SubAck(_))
    ));
    let got = publishes(broker.take_packets(now, local).unwrap());
    assert_eq!(&got[0].payload[..], b"hello inside");

    feed(
        &mut broker,
        now,
        local,
        Packet::Publish(Publish::new(
            TopicName::new("from/inside").unwrap(),
            Bytes::from_static(b"hello outside"),
        )),
    );
    let mut out = broker.take_transmit(now, net).unwrap();
    match dec.decode(&mut out).unwrap() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"hello outside"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn in_process_clients_count_in_sys_and_read_it() {
    let config = BrokerConfig::default().sys_interval(std::time::Duration::from_secs(10));
    let mut broker = Broker::new(config);
    let now = Instant::now();
    let a = local_client(&mut broker, now, Connect::new(V5, "a"));
    let _b = local_client(&mut broker, now, Connect::new(V5, "b"));
    subscribe(
        &mut broker,
        now,
        a,
        "$SYS/broker/clients/connected",
        QoS::AtMostOnce,
    );
    let later = now + std::time::Duration::from_secs(10);
    broker.handle_timeout(later);
    let got = publishes(broker.take_packets(later, a).unwrap());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic.as_str(), "$SYS/broker/clients/connected");
    assert_eq!(&got[0].payload[..], b"2", "both in-process clients");
}
