//! CONNECT handling, keep alive, takeover, time-outs (both versions).
mod util;

use mqtt_broker_core::{BrokerConfig, DisconnectReason, Event};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use std::time::Duration;
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];

#[test]
fn connect_is_answered_with_a_successful_connack_in_both_versions() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let (id, ack) = h.connect_with(connect(v, "pi"));
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(!ack.session_present);
        assert!(!h.is_closed(id));
        assert!(h.events.iter().any(|e| matches!(e, Event::ClientConnected { client_id, protocol, .. } if client_id == "pi" && *protocol == v)));
    }
}

#[test]
fn first_packet_other_than_connect_closes_the_connection() {
    let mut h = Harness::default_config();
    let id = h.open();
    h.send_raw(id, &[0xC0, 0x00]); // PINGREQ
    assert!(h.is_closed(id));
    assert!(h.recv(id).is_empty());
}

#[test]
fn second_connect_is_a_protocol_violation() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let id = h.connect(v, "twice");
        h.send(id, Packet::Connect(Box::new(connect(v, "twice"))));
        let got = h.recv(id);
        assert!(h.is_closed(id));
        if v.is_v5() {
            assert!(
                matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError)
            );
        } else {
            assert!(got.is_empty(), "3.1.1 is closed without DISCONNECT");
        }
    }
}

#[test]
fn unsupported_protocol_level_gets_connack_return_code_1() {
    let mut h = Harness::default_config();
    let id = h.open();
    // CONNECT with protocol name MQTT and level 6.
    h.send_raw(
        id,
        &[
            0x10, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 60, 0, 0,
        ],
    );
    h.peers.get_mut(&id).unwrap();
    let got = h.recv(id);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::UnsupportedProtocolVersion)
    );
    assert!(h.is_closed(id));
}

#[test]
fn connection_that_never_sends_connect_is_closed_after_the_connect_timeout() {
    let mut h = Harness::new(BrokerConfig::default().connect_timeout(Duration::from_secs(5)));
    let id = h.open();
    h.advance(Duration::from_millis(4999));
    assert!(!h.is_closed(id));
    h.advance(Duration::from_millis(1));
    assert!(h.is_closed(id));
}

#[test]
fn empty_client_id_with_clean_session_0_is_refused_in_3_1_1() {
    let mut h = Harness::default_config();
    let mut c = connect(V3, "");
    c.clean_start = false;
    let (id, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(h.is_closed(id));
}

#[test]
fn empty_client_id_gets_a_server_assigned_identifier() {
    let mut h = Harness::default_config();
    let (_, ack) = h.connect_with(connect(V5, ""));
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let assigned = ack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("assigned id in CONNACK");
    assert!(assigned.starts_with("auto-"));
    let (_, ack3) = h.connect_with(connect(V3, ""));
    assert_eq!(ack3.reason_code, ReasonCode::Success);
    let ids: Vec<&str> = h.broker.session_client_ids().collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn session_present_is_set_when_a_persistent_session_is_resumed() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let (id, ack) = h.connect_persistent(v, "p");
        assert!(!ack.session_present);
        h.disconnect(id);
        let (_, ack) = h.connect_persistent(v, "p");
        assert!(ack.session_present, "{v}");
        // Clean start discards it.
        let (id3, ack) = h.connect_with(connect(v, "p"));
        assert!(!ack.session_present);
        h.disconnect(id3);
        let (_, ack) = h.connect_persistent(v, "p");
        assert!(!ack.session_present, "clean start removed the session");
    }
}

#[test]
fn second_connection_with_the_same_client_id_takes_the_session_over() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let watcher = h.connect(v, "watcher");
        h.subscribe(watcher, "will/#", QoS::AtMostOnce);
        let mut c = connect(v, "dup");
        c.will = Some(mqtt_codec::LastWill {
            topic: topic("will/dup"),
            payload: "gone".into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let (first, _) = h.connect_with(c);
        let second = h.connect(v, "dup");
        let got = h.recv(first);
        assert!(
            h.is_closed(first),
            "[MQTT-3.1.4-3] the old connection is closed"
        );
        assert!(!h.is_closed(second));
        if v.is_v5() {
            assert!(
                matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver)
            );
        }
        assert!(h.events.iter().any(|e| matches!(
            e,
            Event::ClientDisconnected {
                reason: DisconnectReason::SessionTakenOver,
                ..
            }
        )));
        // The old connection's will is published.
        assert_eq!(Harness::payloads(&h.recv_publishes(watcher)), ["gone"]);
    }
}

#[test]
fn keep_alive_expires_at_one_and_a_half_times_the_interval_and_fires_the_will() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let watcher = h.connect(v, "watcher");
        h.subscribe(watcher, "status/+", QoS::AtLeastOnce);
        let mut c = connect(v, "sensor");
        c.keep_alive = 10;
        c.will = Some(mqtt_codec::LastWill {
            topic: topic("status/sensor"),
            payload: "offline".into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        });
        let (id, _) = h.connect_with(c);
        // Activity at 8 s pushes the deadline to 8 + 15 s.
        h.advance(Duration::from_secs(8));
        h.send(id, Packet::PingReq);
        assert!(matches!(&h.recv(id)[..], [Packet::PingResp]));
        h.advance(Duration::from_millis(14_999));
        assert!(
            !h.is_closed(id),
            "still within 1.5 x keep alive of the last packet"
        );
        // Keep the watcher alive meanwhile (it has k60).
        h.advance(Duration::from_millis(1));
        assert!(h.is_closed(id), "closed exactly at 1.5 x keep alive");
        let got = h.recv(id);
        if v.is_v5() {
            assert!(
                matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout)
            );
        }
        let wills = h.recv_publishes(watcher);
        assert_eq!(Harness::payloads(&wills), ["offline"]);
        assert!(h.events.iter().any(|e| matches!(
            e,
            Event::ClientDisconnected {
                reason: DisconnectReason::KeepAliveTimeout,
                ..
            }
        )));
    }
}

#[test]
fn poll_timeout_reports_the_precise_keep_alive_deadline() {
    let mut h = Harness::new(BrokerConfig::default().sys_interval(Duration::ZERO));
    let mut c = connect(V3, "k");
    c.keep_alive = 4;
    let (id, _) = h.connect_with(c);
    // Past the CONNECT time-out timer, only keep alive remains.
    h.advance_by_timers(Duration::from_secs(5));
    assert!(!h.is_closed(id));
    assert_eq!(
        h.broker.poll_timeout(),
        Some(h.start + Duration::from_secs(6))
    );
    h.advance_by_timers(Duration::from_secs(1));
    assert!(h.is_closed(id));
}

#[test]
fn keep_alive_above_max_keepalive_is_overridden_in_5_and_refused_in_3_1_1() {
    let cfg = BrokerConfig::default().max_keepalive(30);
    let mut h = Harness::new(cfg);
    let mut c = connect(V5, "five");
    c.keep_alive = 100;
    let (_, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(ack.properties.server_keep_alive, Some(30));
    let mut c = connect(V3, "three");
    c.keep_alive = 100;
    let (id, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(h.is_closed(id));
}

#[test]
fn server_keep_alive_is_enforced_for_5_0_clients() {
    let mut h = Harness::new(BrokerConfig::default().max_keepalive(10));
    let mut c = connect(V5, "five");
    c.keep_alive = 0;
    c.keep_alive = 1000;
    let (id, _) = h.connect_with(c);
    h.advance(Duration::from_secs(15));
    assert!(h.is_closed(id));
}

#[test]
fn max_connections_refuses_connections_beyond_the_limit() {
    let mut h = Harness::new(BrokerConfig::default().max_connections(Some(1)));
    let a = h.connect(V3, "a");
    let b = h.open();
    assert!(h.is_closed(b));
    assert!(!h.is_closed(a));
}

#[test]
fn clean_session_client_leaves_no_session_behind() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let id = h.connect(v, "c");
        let _ = h.subscribe_with(id, "a", SubscriptionOptions::qos(QoS::AtLeastOnce), None);
        h.disconnect(id);
        assert_eq!(h.broker.session_client_ids().count(), 0);
        assert_eq!(h.broker.stats().subscriptions, 0);
    }
}

#[test]
fn the_write_timeout_follows_keep_alive_unless_configured() {
    let mut h = Harness::default_config();
    let (id, _) = h.connect_with({
        let mut c = connect(V3, "ka");
        c.keep_alive = 20;
        c
    });
    assert_eq!(h.broker.write_timeout(id), Duration::from_secs(30));
    let (zero, _) = h.connect_with({
        let mut c = connect(V3, "zero");
        c.keep_alive = 0;
        c
    });
    assert_eq!(
        h.broker.write_timeout(zero),
        BrokerConfig::DEFAULT_WRITE_TIMEOUT
    );
    let mut fixed =
        Harness::new(BrokerConfig::default().write_timeout(Some(Duration::from_secs(5))));
    let id = fixed.connect(V3, "f");
    assert_eq!(fixed.broker.write_timeout(id), Duration::from_secs(5));
}
