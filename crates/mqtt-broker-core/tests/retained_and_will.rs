//! Retained messages and will messages, both versions.
mod util;

use mqtt_broker_core::BrokerConfig;
use mqtt_codec::{Disconnect, LastWill, Packet, ProtocolVersion, QoS, ReasonCode};
use std::time::Duration;
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];

fn will(t: &str, payload: &'static str, qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic(t),
        payload: payload.into(),
        qos,
        retain,
        properties: Default::default(),
    }
}

#[test]
fn retained_message_is_sent_on_subscribe_with_the_retain_flag() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let p = h.connect(v, "p");
        h.publish_retain(p, "state", "on", QoS::AtLeastOnce, true);
        let s = h.connect(v, "s");
        h.subscribe(s, "state", QoS::ExactlyOnce);
        let got = h.recv_publishes(s);
        assert_eq!(Harness::payloads(&got), ["on"]);
        assert!(got[0].retain, "[MQTT-3.3.1-8]");
        assert_eq!(got[0].qos, QoS::AtLeastOnce);
    }
}

#[test]
fn retained_message_is_replaced_and_deleted_by_an_empty_payload() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let p = h.connect(v, "p");
        h.publish_retain(p, "state", "on", QoS::AtMostOnce, true);
        h.publish_retain(p, "state", "off", QoS::AtMostOnce, true);
        let s = h.connect(v, "s");
        h.subscribe(s, "#", QoS::AtMostOnce);
        assert_eq!(Harness::payloads(&h.recv_publishes(s)), ["off"]);
        h.publish_retain(p, "state", "", QoS::AtMostOnce, true);
        h.recv_publishes(s);
        let s2 = h.connect(v, "s2");
        h.subscribe(s2, "#", QoS::AtMostOnce);
        assert!(h.recv_publishes(s2).is_empty());
        assert_eq!(h.broker.stats().retained_messages, 0);
    }
}

#[test]
fn retained_publish_is_refused_when_retain_is_not_available() {
    let mut h = Harness::new(BrokerConfig::default().retain_available(false));
    let (p, ack) = h.connect_with(connect(V5, "p"));
    assert_eq!(ack.properties.retain_available, Some(false));
    h.send(
        p,
        Packet::Publish(publish("t", "x", QoS::AtMostOnce, true, None)),
    );
    assert!(
        matches!(&h.recv(p)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::RetainNotSupported)
    );
    assert!(h.is_closed(p));
}

#[test]
fn will_is_published_when_the_connection_ends_without_disconnect() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let w = h.connect(v, "watcher");
        h.subscribe(w, "wills/#", QoS::AtLeastOnce);
        let mut c = connect(v, "dying");
        c.will = Some(will("wills/dying", "bye", QoS::AtLeastOnce, true));
        let (id, _) = h.connect_with(c);
        h.drop_transport(id);
        let got = h.recv_publishes(w);
        assert_eq!(Harness::payloads(&got), ["bye"]);
        // A retained will is stored as retained.
        assert_eq!(h.broker.stats().retained_messages, 1);
    }
}

#[test]
fn will_is_not_published_after_disconnect() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let w = h.connect(v, "watcher");
        h.subscribe(w, "wills/#", QoS::AtLeastOnce);
        let mut c = connect(v, "polite");
        c.will = Some(will("wills/polite", "bye", QoS::AtLeastOnce, false));
        let (id, _) = h.connect_with(c);
        h.disconnect(id);
        h.drop_transport(id);
        assert!(h.recv_publishes(w).is_empty(), "[MQTT-3.1.2-10]");
    }
}

#[test]
fn disconnect_with_will_message_publishes_the_will() {
    let mut h = Harness::default_config();
    let w = h.connect(V5, "watcher");
    h.subscribe(w, "wills/#", QoS::AtLeastOnce);
    let mut c = connect(V5, "c");
    c.will = Some(will("wills/c", "bye", QoS::AtMostOnce, false));
    let (id, _) = h.connect_with(c);
    h.send(
        id,
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
    );
    assert_eq!(Harness::payloads(&h.recv_publishes(w)), ["bye"]);
}

fn delayed_will_client(h: &mut Harness, delay: u32, expiry: u32) -> mqtt_broker_core::ConnectionId {
    let mut c = connect(V5, "late");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    let mut w = will("wills/late", "bye", QoS::AtMostOnce, false);
    w.properties.will_delay_interval = Some(delay);
    c.will = Some(w);
    h.connect_with(c).0
}

#[test]
fn will_delay_interval_postpones_the_will() {
    let mut h = Harness::default_config();
    let w = h.connect(V5, "watcher");
    h.subscribe(w, "wills/#", QoS::AtMostOnce);
    let id = delayed_will_client(&mut h, 30, 3600);
    h.drop_transport(id);
    h.advance(Duration::from_secs(29));
    assert!(h.recv_publishes(w).is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(Harness::payloads(&h.recv_publishes(w)), ["bye"]);
}

#[test]
fn reconnecting_within_the_will_delay_cancels_the_will() {
    let mut h = Harness::default_config();
    let w = h.connect(V5, "watcher");
    h.subscribe(w, "wills/#", QoS::AtMostOnce);
    let id = delayed_will_client(&mut h, 30, 3600);
    h.drop_transport(id);
    h.advance(Duration::from_secs(10));
    let (_, ack) = h.connect_persistent(V5, "late");
    assert!(ack.session_present);
    h.advance(Duration::from_secs(60));
    assert!(h.recv_publishes(w).is_empty(), "[MQTT-3.1.3-9]");
}

#[test]
fn will_is_sent_when_the_session_ends_before_the_will_delay() {
    let mut h = Harness::default_config();
    let w = h.connect(V5, "watcher");
    h.subscribe(w, "wills/#", QoS::AtMostOnce);
    let id = delayed_will_client(&mut h, 300, 10);
    h.drop_transport(id);
    h.advance(Duration::from_secs(10));
    assert_eq!(Harness::payloads(&h.recv_publishes(w)), ["bye"]);
    assert_eq!(
        h.broker
            .session_client_ids()
            .filter(|c| *c == "late")
            .count(),
        0
    );
}

#[test]
fn malformed_packet_closes_only_that_connection_and_fires_its_will() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let w = h.connect(v, "watcher");
        h.subscribe(w, "wills/#", QoS::AtMostOnce);
        let mut c = connect(v, "broken");
        c.will = Some(will("wills/broken", "bye", QoS::AtMostOnce, false));
        let (id, _) = h.connect_with(c);
        // PUBLISH with QoS 3.
        h.send_raw(id, &[0x36, 0x05, 0, 1, b't', 0, 1]);
        let got = h.recv(id);
        assert!(h.is_closed(id));
        if v.is_v5() {
            assert!(
                matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::MalformedPacket),
                "{got:?}"
            );
        } else {
            assert!(got.is_empty());
        }
        assert!(!h.is_closed(w));
        assert_eq!(Harness::payloads(&h.recv_publishes(w)), ["bye"]);
        let p = h.connect(v, "p");
        h.publish(p, "wills/x", "still works", QoS::AtMostOnce);
        assert_eq!(h.recv_publishes(w).len(), 1);
    }
}
