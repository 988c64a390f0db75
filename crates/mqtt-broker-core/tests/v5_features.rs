//! MQTT 5.0 extras: topic aliases, maximum packet size, message expiry,
//! properties passed through, CONNACK properties.
mod util;

use bytes::Bytes;
use mqtt_broker_core::BrokerConfig;
use mqtt_codec::{Packet, QoS, ReasonCode};
use std::time::Duration;
use util::*;

#[test]
fn connack_advertises_the_broker_limits() {
    let mut h = Harness::new(
        BrokerConfig::default()
            .max_inflight_messages(5)
            .max_packet_size(1000)
            .max_topic_alias(7),
    );
    let (_, ack) = h.connect_with(connect(V5, "c"));
    assert_eq!(ack.properties.receive_maximum, Some(5));
    assert_eq!(ack.properties.maximum_packet_size, Some(1000));
    assert_eq!(ack.properties.topic_alias_maximum, Some(7));
}

#[test]
fn incoming_topic_alias_is_resolved() {
    let mut h = Harness::default_config();
    let s = h.connect(V5, "s");
    h.subscribe(s, "long/topic/name", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    let mut first = publish("long/topic/name", "1", QoS::AtMostOnce, false, None);
    first.properties.topic_alias = Some(3);
    h.send(p, Packet::Publish(first));
    let mut second = publish("x", "2", QoS::AtMostOnce, false, None);
    second.topic = mqtt_codec::TopicName::empty();
    second.properties.topic_alias = Some(3);
    h.send(p, Packet::Publish(second));
    let got = h.recv_publishes(s);
    assert_eq!(Harness::payloads(&got), ["1", "2"]);
    assert!(got
        .iter()
        .all(|g| g.topic.as_str() == "long/topic/name" && g.properties.topic_alias.is_none()));
}

#[test]
fn topic_alias_above_the_maximum_is_a_protocol_violation() {
    let mut h = Harness::new(BrokerConfig::default().max_topic_alias(2));
    let p = h.connect(V5, "p");
    let mut m = publish("t", "1", QoS::AtMostOnce, false, None);
    m.properties.topic_alias = Some(3);
    h.send(p, Packet::Publish(m));
    assert!(
        matches!(&h.recv(p)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TopicAliasInvalid)
    );
    assert!(h.is_closed(p));
}

#[test]
fn unknown_topic_alias_is_a_protocol_error() {
    let mut h = Harness::default_config();
    let p = h.connect(V5, "p");
    let mut m = publish("t", "1", QoS::AtMostOnce, false, None);
    m.topic = mqtt_codec::TopicName::empty();
    m.properties.topic_alias = Some(1);
    h.send(p, Packet::Publish(m));
    assert!(
        matches!(&h.recv(p)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError)
    );
}

#[test]
fn outgoing_topic_aliases_are_used_up_to_the_clients_maximum() {
    let mut h = Harness::default_config();
    let mut c = connect(V5, "s");
    c.properties.topic_alias_maximum = Some(1);
    let (s, _) = h.connect_with(c);
    h.subscribe(s, "#", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    h.publish(p, "a/b", "1", QoS::AtMostOnce);
    h.publish(p, "a/b", "2", QoS::AtMostOnce);
    h.publish(p, "c", "3", QoS::AtMostOnce);
    let got = h.recv_publishes(s);
    assert_eq!(
        (got[0].topic.as_str(), got[0].properties.topic_alias),
        ("a/b", Some(1))
    );
    assert_eq!(
        (got[1].topic.as_str(), got[1].properties.topic_alias),
        ("", Some(1))
    );
    assert_eq!(
        (got[2].topic.as_str(), got[2].properties.topic_alias),
        ("c", None)
    );
}

#[test]
fn packet_above_max_packet_size_closes_with_packet_too_large() {
    let mut h = Harness::new(BrokerConfig::default().max_packet_size(64));
    let p = h.connect(V5, "p");
    let big = Bytes::from(vec![b'x'; 100]);
    let mut m = publish("t", "", QoS::AtMostOnce, false, None);
    m.payload = big;
    h.send(p, Packet::Publish(m));
    assert!(
        matches!(&h.recv(p)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PacketTooLarge)
    );
    assert!(h.is_closed(p));
}

#[test]
fn message_larger_than_the_clients_maximum_packet_size_is_not_sent_to_it() {
    let mut h = Harness::default_config();
    let mut c = connect(V5, "small");
    c.properties.maximum_packet_size = Some(32);
    let (small, _) = h.connect_with(c);
    h.subscribe(small, "t", QoS::AtLeastOnce);
    let p = h.connect(V5, "p");
    h.publish(
        p,
        "t",
        "this payload is far too long for the client",
        QoS::AtLeastOnce,
    );
    h.publish(p, "t", "ok", QoS::AtLeastOnce);
    assert_eq!(Harness::payloads(&h.recv_publishes(small)), ["ok"]);
}

#[test]
fn expired_messages_are_not_delivered_and_the_interval_counts_down() {
    let mut h = Harness::default_config();
    let (s, _) = h.connect_persistent(V5, "s");
    h.subscribe(s, "t", QoS::AtLeastOnce);
    h.disconnect(s);
    let p = h.connect(V5, "p");
    let mut short = publish("t", "short", QoS::AtLeastOnce, false, Some(1));
    short.properties.message_expiry_interval = Some(5);
    h.send(p, Packet::Publish(short));
    let mut long = publish("t", "long", QoS::AtLeastOnce, false, Some(2));
    long.properties.message_expiry_interval = Some(100);
    h.send(p, Packet::Publish(long));
    h.advance(Duration::from_secs(10));
    let (s2, _) = h.connect_persistent(V5, "s");
    let got = h.recv_publishes(s2);
    assert_eq!(Harness::payloads(&got), ["long"], "[MQTT-3.3.2-5]");
    assert_eq!(
        got[0].properties.message_expiry_interval,
        Some(90),
        "[MQTT-3.3.2-6]"
    );
}

#[test]
fn request_response_and_user_properties_pass_through_unchanged() {
    let mut h = Harness::default_config();
    let s = h.connect(V5, "s");
    h.subscribe(s, "req", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    let mut m = publish("req", "q", QoS::AtMostOnce, false, None);
    m.properties.response_topic = Some("resp/p".into());
    m.properties.correlation_data = Some(Bytes::from_static(b"42"));
    m.properties.content_type = Some("text/plain".into());
    m.properties.payload_format_indicator = Some(true);
    m.properties.user_properties = vec![("a".into(), "1".into()), ("a".into(), "2".into())].into();
    h.send(p, Packet::Publish(m.clone()));
    let got = h.recv_publishes(s);
    let g = &got[0].properties;
    assert_eq!(g.response_topic, m.properties.response_topic);
    assert_eq!(g.correlation_data, m.properties.correlation_data);
    assert_eq!(g.content_type, m.properties.content_type);
    assert_eq!(g.payload_format_indicator, Some(true));
    assert_eq!(g.user_properties, m.properties.user_properties);
}

#[test]
fn too_many_unreleased_qos2_messages_exceed_the_receive_maximum() {
    let mut h = Harness::new(BrokerConfig::default().max_inflight_messages(2));
    let p = h.connect(V5, "p");
    for i in 1..=3 {
        h.send(
            p,
            Packet::Publish(publish("t", "x", QoS::ExactlyOnce, false, Some(i))),
        );
    }
    let got = h.recv(p);
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ReceiveMaximumExceeded),
        "{got:?}"
    );
}

#[test]
fn expired_messages_leave_the_offline_queue_on_time() {
    let mut h = Harness::default_config();
    let (s, _) = h.connect_persistent(V5, "s");
    h.subscribe(s, "t", QoS::AtLeastOnce);
    h.disconnect(s);
    let p = h.connect(V5, "p");
    let mut m = publish("t", "short", QoS::AtLeastOnce, false, Some(1));
    m.properties.message_expiry_interval = Some(5);
    h.send(p, Packet::Publish(m));
    assert_eq!(h.broker.stats().messages_stored, 1);
    assert!(h.broker.poll_timeout().unwrap() <= h.start + Duration::from_secs(5));
    h.advance(Duration::from_secs(5));
    assert_eq!(
        h.broker.stats().messages_stored,
        0,
        "removed by its timer, not on reconnect"
    );
}

#[test]
fn expired_retained_message_is_deleted() {
    let mut h = Harness::new(BrokerConfig::default().sys_interval(Duration::ZERO));
    let p = h.connect(V5, "p");
    let mut m = publish("r", "soon gone", QoS::AtMostOnce, true, None);
    m.properties.message_expiry_interval = Some(30);
    h.send(p, Packet::Publish(m));
    assert_eq!(h.broker.stats().retained_messages, 1);
    let early = h.connect(V5, "early");
    h.advance(Duration::from_secs(10));
    h.subscribe(early, "r", QoS::AtMostOnce);
    let got = h.recv_publishes(early);
    assert_eq!(got[0].properties.message_expiry_interval, Some(20));
    h.advance(Duration::from_secs(20));
    assert_eq!(h.broker.stats().retained_messages, 0);
}

#[test]
fn client_publish_with_a_subscription_identifier_is_a_protocol_error() {
    let mut h = Harness::default_config();
    let p = h.connect(V5, "p");
    let mut m = publish("t", "x", QoS::AtMostOnce, false, None);
    m.properties.subscription_identifiers.push(3);
    h.send(p, Packet::Publish(m));
    assert!(
        matches!(&h.recv(p)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError)
    );
}

#[test]
fn retained_will_is_refused_when_retain_is_not_available() {
    let mut h = Harness::new(BrokerConfig::default().retain_available(false));
    let mut c = connect(V5, "w");
    c.will = Some(mqtt_codec::LastWill {
        topic: topic("w"),
        payload: "x".into(),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Default::default(),
    });
    let (id, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::RetainNotSupported);
    assert!(h.is_closed(id));
}
