//! PUBLISH at QoS 0, 1 and 2 in both directions (both versions).
mod util;

use mqtt_broker_core::BrokerConfig;
use mqtt_codec::{
    Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, QoS, ReasonCode, SubscriptionOptions,
};
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];
const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

#[test]
fn message_is_delivered_at_every_qos_pair_with_the_lower_qos() {
    for v in BOTH {
        for pub_qos in QOS {
            for sub_qos in QOS {
                let mut h = Harness::default_config();
                let sub = h.connect(v, "sub");
                h.subscribe(sub, "t", sub_qos);
                let publisher = h.connect(v, "pub");
                h.publish(publisher, "t", "hello", pub_qos);
                let got = h.recv_publishes(sub);
                assert_eq!(got.len(), 1, "{v} pub {pub_qos:?} sub {sub_qos:?}");
                // Never upgraded; downgraded to the subscription's maximum.
                assert_eq!(got[0].qos, pub_qos.min(sub_qos));
                assert_eq!(&got[0].payload[..], b"hello");
                assert_eq!(got[0].packet_id.is_some(), got[0].qos != QoS::AtMostOnce);
                assert!(!got[0].retain && !got[0].dup);
            }
        }
    }
}

#[test]
fn qos1_publish_is_acknowledged_with_puback() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let id = h.connect(v, "p");
        h.send(
            id,
            Packet::Publish(publish("t", "x", QoS::AtLeastOnce, false, Some(7))),
        );
        let got = h.recv(id);
        let [Packet::PubAck(a)] = &got[..] else {
            panic!("{got:?}")
        };
        assert_eq!(a.packet_id.get(), 7);
        // 5.0 says nobody was subscribed.
        let want = if v.is_v5() {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        assert_eq!(a.reason_code, want);
    }
}

#[test]
fn qos2_duplicate_before_pubrel_is_answered_with_pubrec_and_not_delivered_twice() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        h.subscribe(sub, "t", QoS::ExactlyOnce);
        let p = h.connect(v, "pub");
        h.send(
            p,
            Packet::Publish(publish("t", "once", QoS::ExactlyOnce, false, Some(3))),
        );
        assert!(matches!(&h.recv(p)[..], [Packet::PubRec(r)] if r.packet_id.get() == 3));
        // Re-sent with DUP, twice: PUBREC again each time, never a close.
        for _ in 0..2 {
            let mut again = publish("t", "once", QoS::ExactlyOnce, false, Some(3));
            again.dup = true;
            h.send(p, Packet::Publish(again));
            assert!(matches!(&h.recv(p)[..], [Packet::PubRec(r)] if r.packet_id.get() == 3));
            assert!(!h.is_closed(p));
        }
        h.send(p, Packet::PubRel(PubRel::new(pid(3))));
        assert!(
            matches!(&h.recv(p)[..], [Packet::PubComp(c)] if c.packet_id.get() == 3 && c.reason_code == ReasonCode::Success)
        );
        assert_eq!(h.recv_publishes(sub).len(), 1, "delivered exactly once");
        // After PUBREL the identifier is free: a new message with it is delivered.
        h.send(
            p,
            Packet::Publish(publish("t", "second", QoS::ExactlyOnce, false, Some(3))),
        );
        assert_eq!(Harness::payloads(&h.recv_publishes(sub)), ["second"]);
    }
}

#[test]
fn qos2_message_is_delivered_once_after_reconnect() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        h.subscribe(sub, "t", QoS::ExactlyOnce);
        let (p, _) = h.connect_persistent(v, "pub");
        h.send(
            p,
            Packet::Publish(publish("t", "m", QoS::ExactlyOnce, false, Some(9))),
        );
        assert!(matches!(&h.recv(p)[..], [Packet::PubRec(_)]));
        // The publisher loses its connection before PUBREL, reconnects and re-sends.
        h.drop_transport(p);
        let (p2, ack) = h.connect_persistent(v, "pub");
        assert!(ack.session_present);
        let mut again = publish("t", "m", QoS::ExactlyOnce, false, Some(9));
        again.dup = true;
        h.send(p2, Packet::Publish(again));
        assert!(matches!(&h.recv(p2)[..], [Packet::PubRec(r)] if r.packet_id.get() == 9));
        h.send(p2, Packet::PubRel(PubRel::new(pid(9))));
        assert!(
            matches!(&h.recv(p2)[..], [Packet::PubComp(c)] if c.reason_code == ReasonCode::Success)
        );
        assert_eq!(h.recv_publishes(sub).len(), 1);
    }
}

#[test]
fn outgoing_qos2_flow_sends_pubrel_after_pubrec_and_completes() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        h.subscribe(sub, "t", QoS::ExactlyOnce);
        let p = h.connect(v, "pub");
        h.publish(p, "t", "x", QoS::ExactlyOnce);
        let got = h.recv_publishes(sub);
        let id = got[0].packet_id.unwrap();
        h.send(sub, Packet::PubRec(PubRec::new(id)));
        assert!(matches!(&h.recv(sub)[..], [Packet::PubRel(r)] if r.packet_id == id));
        h.send(sub, Packet::PubComp(PubComp::new(id)));
        assert!(h.recv(sub).is_empty());
        assert_eq!(h.broker.stats().messages_stored, 0);
    }
}

#[test]
fn pubrel_for_an_unknown_identifier_gets_pubcomp_packet_identifier_not_found() {
    let mut h = Harness::default_config();
    let id = h.connect(V5, "c");
    h.send(id, Packet::PubRel(PubRel::new(pid(44))));
    assert!(
        matches!(&h.recv(id)[..], [Packet::PubComp(c)] if c.reason_code == ReasonCode::PacketIdentifierNotFound)
    );
}

#[test]
fn inflight_window_limits_unacknowledged_messages_and_moves_on_as_acks_arrive() {
    for v in BOTH {
        let mut h = Harness::new(BrokerConfig::default().max_inflight_messages(2));
        let sub = h.connect(v, "sub");
        h.subscribe(sub, "t", QoS::AtLeastOnce);
        let p = h.connect(v, "pub");
        for _ in 0..5 {
            h.publish(p, "t", "m", QoS::AtLeastOnce);
        }
        let first = h.recv_publishes(sub);
        assert_eq!(first.len(), 2, "{v}: window of 2");
        h.send(
            sub,
            Packet::PubAck(PubAck::new(first[0].packet_id.unwrap())),
        );
        assert_eq!(h.recv_publishes(sub).len(), 1, "one ack frees one slot");
        h.send(
            sub,
            Packet::PubAck(PubAck::new(first[1].packet_id.unwrap())),
        );
        assert_eq!(h.recv_publishes(sub).len(), 1);
    }
}

#[test]
fn client_receive_maximum_limits_what_the_broker_sends() {
    let mut h = Harness::default_config();
    let mut c = connect(V5, "sub");
    c.properties.receive_maximum = Some(1);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    let p = h.connect(V5, "pub");
    for _ in 0..3 {
        h.publish(p, "t", "m", QoS::ExactlyOnce);
    }
    let got = h.recv_publishes(sub);
    assert_eq!(got.len(), 1);
    h.ack_all(sub, &got);
    assert_eq!(h.recv_publishes(sub).len(), 1);
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_session_resumption() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let (sub, _) = h.connect_persistent(v, "sub");
        h.subscribe(sub, "t", QoS::ExactlyOnce);
        let p = h.connect(v, "pub");
        h.publish(p, "t", "one", QoS::AtLeastOnce);
        h.publish(p, "t", "two", QoS::ExactlyOnce);
        let got = h.recv_publishes(sub);
        assert_eq!(got.len(), 2);
        // PUBREC for the QoS 2 one: it moves on to PUBREL.
        let two = got[1].packet_id.unwrap();
        h.send(sub, Packet::PubRec(PubRec::new(two)));
        assert!(matches!(&h.recv(sub)[..], [Packet::PubRel(_)]));
        h.drop_transport(sub);
        let (sub2, ack) = h.connect_persistent(v, "sub");
        assert!(ack.session_present);
        let again = h.recv(sub2);
        // [MQTT-4.4.0-1] PUBLISH with DUP for the unacknowledged QoS 1, PUBREL for the QoS 2.
        assert_eq!(again.len(), 2, "{again:?}");
        let Packet::Publish(p1) = &again[0] else {
            panic!("{again:?}")
        };
        assert!(p1.dup);
        assert_eq!(p1.packet_id, got[0].packet_id);
        assert!(matches!(&again[1], Packet::PubRel(r) if r.packet_id == two));
    }
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        h.subscribe(sub, "a/+", QoS::AtMostOnce);
        h.subscribe(sub, "a/#", QoS::ExactlyOnce);
        h.subscribe(sub, "a/b", QoS::AtLeastOnce);
        let p = h.connect(v, "pub");
        h.publish(p, "a/b", "x", QoS::ExactlyOnce);
        let got = h.recv_publishes(sub);
        assert_eq!(got.len(), 1, "[MQTT-3.3.5-1] one copy");
        assert_eq!(got[0].qos, QoS::ExactlyOnce);
    }
}

#[test]
fn qos0_publish_reaches_a_qos2_subscriber_as_qos0() {
    let mut h = Harness::default_config();
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    let p = h.connect(V5, "pub");
    h.publish(p, "t", "x", QoS::AtMostOnce);
    let got = h.recv_publishes(sub);
    assert_eq!(got[0].qos, QoS::AtMostOnce);
    assert_eq!(got[0].packet_id, None);
}

#[test]
fn message_is_not_delivered_to_a_session_without_a_matching_subscription() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let a = h.connect(v, "a");
        h.subscribe(a, "x/+", QoS::AtLeastOnce);
        let b = h.connect(v, "b");
        h.subscribe(b, "y/#", QoS::AtLeastOnce);
        let p = h.connect(v, "p");
        h.publish(p, "x/1", "m", QoS::AtLeastOnce);
        assert_eq!(h.recv_publishes(a).len(), 1);
        assert!(h.recv_publishes(b).is_empty());
        assert!(h.recv_publishes(p).is_empty());
    }
}

#[test]
fn message_larger_than_message_size_limit_is_dropped_and_refused() {
    let mut h = Harness::new(BrokerConfig::default().message_size_limit(4));
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let p = h.connect(V5, "pub");
    let rc = h.publish(p, "t", "too long", QoS::AtLeastOnce);
    assert_eq!(rc, Some(ReasonCode::ImplementationSpecificError));
    assert!(h.recv_publishes(sub).is_empty());
    assert_eq!(
        h.publish(p, "t", "ok", QoS::AtLeastOnce),
        Some(ReasonCode::Success)
    );
}

#[test]
fn unsubscribe_stops_delivery_and_reports_what_existed() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        h.subscribe(sub, "t", QoS::AtMostOnce);
        h.send(
            sub,
            Packet::Unsubscribe(mqtt_codec::Unsubscribe {
                packet_id: pid(5),
                properties: Default::default(),
                filters: vec![filter("t"), filter("never")],
            }),
        );
        let got = h.recv(sub);
        let [Packet::UnsubAck(a)] = &got[..] else {
            panic!("{got:?}")
        };
        assert_eq!(a.packet_id.get(), 5);
        if v.is_v5() {
            assert_eq!(
                a.reason_codes,
                [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            );
        }
        let p = h.connect(v, "p");
        h.publish(p, "t", "x", QoS::AtMostOnce);
        assert!(h.recv_publishes(sub).is_empty());
    }
}

#[test]
fn subscription_qos_is_granted_as_requested() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        for q in QOS {
            let ack = h.subscribe_with(sub, "t", SubscriptionOptions::qos(q), None);
            assert_eq!(ack.reason_codes, [ReasonCode::granted(q)]);
        }
    }
}

#[test]
fn many_unreleased_qos2_messages_are_accepted_from_a_3_1_1_client() {
    let mut h = Harness::new(BrokerConfig::default().max_inflight_messages(2));
    let p = h.connect(V3, "p");
    for i in 1..=5 {
        h.send(
            p,
            Packet::Publish(publish("t", "x", QoS::ExactlyOnce, false, Some(i))),
        );
    }
    assert_eq!(h.recv(p).len(), 5, "five PUBRECs");
    assert!(!h.is_closed(p), "3.1.1 knows no Receive Maximum");
}
