//! Offline sessions: queueing, limits, expiry, back-pressure.
mod util;

use mqtt_broker_core::BrokerConfig;
use mqtt_codec::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use std::time::Duration;
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];

#[test]
fn messages_for_an_offline_persistent_session_are_delivered_on_reconnect() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let (s, _) = h.connect_persistent(v, "s");
        h.subscribe(s, "t", QoS::ExactlyOnce);
        h.disconnect(s);
        let p = h.connect(v, "p");
        h.publish(p, "t", "one", QoS::AtLeastOnce);
        h.publish(p, "t", "two", QoS::ExactlyOnce);
        h.publish(p, "t", "zero", QoS::AtMostOnce);
        let (s2, ack) = h.connect_persistent(v, "s");
        assert!(ack.session_present);
        let got = h.recv_publishes(s2);
        assert_eq!(
            Harness::payloads(&got),
            ["one", "two"],
            "{v}: QoS 0 is not queued by default"
        );
        assert_eq!(got[1].qos, QoS::ExactlyOnce);
    }
}

#[test]
fn qos0_messages_are_queued_only_with_queue_qos0_messages() {
    let mut h = Harness::new(BrokerConfig::default().queue_qos0_messages(true));
    let (s, _) = h.connect_persistent(V3, "s");
    h.subscribe(s, "t", QoS::AtMostOnce);
    h.disconnect(s);
    let p = h.connect(V3, "p");
    h.publish(p, "t", "zero", QoS::AtMostOnce);
    let (s2, _) = h.connect_persistent(V3, "s");
    assert_eq!(Harness::payloads(&h.recv_publishes(s2)), ["zero"]);
}

#[test]
fn queue_overflow_drops_messages_beyond_max_queued_messages() {
    for v in BOTH {
        let mut h = Harness::new(BrokerConfig::default().max_queued_messages(3));
        let (s, _) = h.connect_persistent(v, "s");
        h.subscribe(s, "t", QoS::AtLeastOnce);
        h.disconnect(s);
        let p = h.connect(v, "p");
        for payload in ["1", "2", "3", "4", "5"] {
            h.publish(p, "t", payload, QoS::AtLeastOnce);
        }
        assert_eq!(h.broker.stats().messages_stored, 3);
        assert_eq!(h.broker.stats().publish_messages_dropped, 2);
        let (s2, _) = h.connect_persistent(v, "s");
        assert_eq!(Harness::payloads(&h.recv_publishes(s2)), ["1", "2", "3"]);
    }
}

#[test]
fn queue_overflow_by_bytes_drops_messages_beyond_max_queued_bytes() {
    let mut h = Harness::new(BrokerConfig::default().max_queued_bytes(10));
    let (s, _) = h.connect_persistent(V5, "s");
    h.subscribe(s, "t", QoS::AtLeastOnce);
    h.disconnect(s);
    let p = h.connect(V5, "p");
    for payload in ["1234", "5678", "9abc"] {
        h.publish(p, "t", payload, QoS::AtLeastOnce);
    }
    // topic (1) + payload (4) = 5 bytes each.
    assert_eq!(h.broker.stats().messages_stored, 2);
}

#[test]
fn offline_session_expires_after_its_session_expiry_interval() {
    let mut h = Harness::default_config();
    let mut c = connect(V5, "s");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let (s, _) = h.connect_with(c);
    h.subscribe(s, "t", QoS::AtLeastOnce);
    h.drop_transport(s);
    h.advance(Duration::from_secs(59));
    assert_eq!(h.broker.session_client_ids().count(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.broker.session_client_ids().count(), 0);
    assert_eq!(h.broker.stats().subscriptions, 0);
    let (_, ack) = h.connect_persistent(V5, "s");
    assert!(!ack.session_present);
}

#[test]
fn persistent_client_expiration_bounds_3_1_1_persistent_sessions() {
    let mut h = Harness::new(
        BrokerConfig::default().persistent_client_expiration(Some(Duration::from_secs(3600))),
    );
    let (s, _) = h.connect_persistent(V3, "s");
    h.disconnect(s);
    h.advance(Duration::from_secs(3599));
    assert_eq!(h.broker.session_client_ids().count(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.broker.session_client_ids().count(), 0);
}

#[test]
fn disconnect_can_change_the_session_expiry_interval() {
    let mut h = Harness::default_config();
    let mut c = connect(V5, "s");
    c.properties.session_expiry_interval = Some(10);
    let (s, _) = h.connect_with(c);
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(0);
    h.send(s, Packet::Disconnect(d));
    assert_eq!(
        h.broker.session_client_ids().count(),
        0,
        "0 on DISCONNECT ends the session now"
    );
}

#[test]
fn disconnect_setting_expiry_after_zero_on_connect_is_a_protocol_error() {
    let mut h = Harness::default_config();
    let s = h.connect(V5, "s");
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(100);
    h.send(s, Packet::Disconnect(d));
    assert!(
        matches!(&h.recv(s)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError)
    );
    assert!(h.is_closed(s));
}

#[test]
fn slow_subscriber_loses_qos0_but_keeps_qos1_in_its_queue() {
    let mut h = Harness::new(
        BrokerConfig::default()
            .max_transmit_bytes(64)
            .max_inflight_messages(100),
    );
    let slow = h.connect(V3, "slow");
    h.subscribe(slow, "t", QoS::AtLeastOnce);
    h.stalled.insert(slow);
    let p = h.connect(V3, "p");
    for _ in 0..20 {
        h.publish(p, "t", "0123456789", QoS::AtMostOnce);
    }
    for _ in 0..20 {
        h.publish(p, "t", "0123456789", QoS::AtLeastOnce);
    }
    let stats = h.broker.stats();
    assert!(
        stats.publish_messages_dropped >= 10,
        "QoS 0 beyond the bound is dropped: {stats:?}"
    );
    assert!(
        stats.messages_stored >= 15,
        "QoS 1 waits in the session queue: {stats:?}"
    );
    // Draining the connection moves the queue on, and nothing QoS 1 is lost.
    h.unstall(slow);
    let mut qos1 = 0;
    loop {
        let got = h.recv_publishes(slow);
        if got.is_empty() {
            break;
        }
        qos1 += got.iter().filter(|p| p.qos == QoS::AtLeastOnce).count();
        h.ack_all(slow, &got);
    }
    assert_eq!(qos1, 20);
    assert_eq!(h.broker.stats().messages_stored, 0);
}

#[test]
fn slow_subscriber_does_not_stall_other_subscribers() {
    let mut h = Harness::new(BrokerConfig::default().max_transmit_bytes(64));
    let slow = h.connect(V5, "slow");
    h.subscribe(slow, "t", QoS::AtMostOnce);
    h.stalled.insert(slow);
    let fast = h.connect(V5, "fast");
    h.subscribe(fast, "t", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    for _ in 0..50 {
        h.publish(p, "t", "0123456789", QoS::AtMostOnce);
    }
    assert_eq!(h.recv_publishes(fast).len(), 50);
}
