//! `memory_limit`: above it new PUBLISH packets are refused (5.0: 0x97
//! Quota exceeded on the acknowledgement, QoS 0 dropped and counted;
//! 3.1.1: the publisher is disconnected, as Mosquitto does), while
//! subscriptions, acknowledgements and disconnects still work and nothing
//! already acknowledged is lost.
mod util;

use mqtt_broker_core::memory::MESSAGE_OVERHEAD;
use mqtt_broker_core::{BrokerConfig, DisconnectReason, Event};
use mqtt_codec::{Packet, QoS, ReasonCode, UnsubAck, Unsubscribe};
use util::*;

/// 200 bytes of payload: with the topic "t/x" and the bookkeeping each
/// message counts 331 bytes.
const PAYLOAD: &str = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\
0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
const FOOTPRINT: usize = 200 + 3 + MESSAGE_OVERHEAD;
/// Room for five messages.
const LIMIT: usize = 5 * FOOTPRINT + FOOTPRINT / 2;

fn config() -> BrokerConfig {
    BrokerConfig::default().memory_limit(LIMIT)
}

/// A persistent 5.0 subscriber to `t/#` at QoS 1 whose driver takes no
/// bytes: what is published to it stays held.
fn stalled_subscriber(h: &mut Harness) -> mqtt_broker_core::ConnectionId {
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "t/#", QoS::AtLeastOnce);
    h.stalled.insert(sub);
    sub
}

/// Publishes QoS 1 messages until one is refused; returns how many were
/// accepted (each acknowledged with Success).
fn fill(h: &mut Harness, publisher: mqtt_broker_core::ConnectionId) -> usize {
    let mut accepted = 0;
    loop {
        match h.publish(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce) {
            Some(ReasonCode::Success) => accepted += 1,
            Some(ReasonCode::QuotaExceeded) => return accepted,
            other => panic!("unexpected acknowledgement {other:?} after {accepted}"),
        }
        assert!(accepted <= 10, "the limit never refused a message");
    }
}

#[test]
fn over_the_limit_a_5_0_publish_gets_quota_exceeded_and_what_was_acknowledged_is_delivered() {
    let mut h = Harness::new(config());
    let sub = stalled_subscriber(&mut h);
    let publisher = h.connect(V5, "pub");
    let accepted = fill(&mut h, publisher);
    assert_eq!(accepted, 5, "five messages fit");
    let memory = h.broker.memory();
    assert!(memory.current() <= LIMIT, "{} <= {LIMIT}", memory.current());
    assert_eq!(memory.limit(), LIMIT);

    // QoS 2: PUBREC 0x97.
    assert_eq!(
        h.publish(publisher, "t/x", PAYLOAD, QoS::ExactlyOnce),
        Some(ReasonCode::QuotaExceeded)
    );
    // QoS 0: no acknowledgement to carry the reason: dropped and counted.
    let dropped = h.broker.stats().publish_messages_dropped;
    assert_eq!(h.publish(publisher, "t/x", PAYLOAD, QoS::AtMostOnce), None);
    assert_eq!(h.broker.stats().publish_messages_dropped, dropped + 1);
    assert!(!h.is_closed(publisher), "a 5.0 publisher stays connected");

    // Subscribing, unsubscribing and pinging still work above the limit.
    h.subscribe(publisher, "other/#", QoS::ExactlyOnce);
    h.send(
        publisher,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(900),
            properties: Default::default(),
            filters: vec![filter("other/#")],
        }),
    );
    let acks: Vec<UnsubAck> = h
        .recv(publisher)
        .into_iter()
        .filter_map(|p| match p {
            Packet::UnsubAck(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].reason_codes, vec![ReasonCode::Success]);
    h.send(publisher, Packet::PingReq);
    assert!(h.recv(publisher).contains(&Packet::PingResp));

    // The subscriber reads: every acknowledged message arrives, and once
    // it acknowledged them the account falls and publishing works again.
    h.unstall(sub);
    let got = h.recv_publishes(sub);
    assert_eq!(
        got.len(),
        accepted,
        "every acknowledged message is delivered"
    );
    assert!(got.iter().all(|p| &p.payload[..] == PAYLOAD.as_bytes()));
    h.ack_all(sub, &got);
    assert!(
        h.broker.memory().current() < FOOTPRINT,
        "the delivered messages are released: {}",
        h.broker.memory().current()
    );
    assert_eq!(
        h.publish(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce),
        Some(ReasonCode::Success)
    );
    assert_eq!(h.recv_publishes(sub).len(), 1);
    assert!(h.broker.memory().maximum() <= LIMIT);
}

#[test]
fn over_the_limit_a_3_1_1_publisher_is_disconnected_as_mosquitto_does() {
    let mut h = Harness::new(config());
    let _sub = stalled_subscriber(&mut h);
    let watcher = h.connect(V3, "watcher");
    h.subscribe(watcher, "will/#", QoS::AtMostOnce);
    let mut c = connect(V3, "pub3");
    c.will = Some(mqtt_codec::LastWill {
        topic: topic("will/pub3"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (publisher, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // The will is held too.
    let fit = (LIMIT - h.broker.memory().current()) / FOOTPRINT;
    let mut accepted = 0;
    while !h.is_closed(publisher) {
        assert_eq!(
            h.publish(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce),
            (!h.is_closed(publisher)).then_some(ReasonCode::Success)
        );
        accepted += 1;
        assert!(accepted <= 10, "the limit never closed the connection");
    }
    // Those that fit are acknowledged, the next one closes the connection
    // without a PUBACK (the client sends it again after a reconnect).
    assert_eq!(accepted, fit + 1);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::ClientDisconnected { client_id, reason: DisconnectReason::MemoryLimit, .. }
            if client_id == "pub3"
    )));
    assert_eq!(h.broker.stats().disconnects.memory_limit, 1);
    // Its will is published (an abnormal end), and the broker serves on.
    let wills = h.recv_publishes(watcher);
    assert_eq!(Harness::payloads(&wills), vec!["gone"]);
    h.subscribe(watcher, "more/#", QoS::AtLeastOnce);
}

#[test]
fn a_lower_limit_on_reload_refuses_new_messages_and_a_higher_one_accepts_them() {
    let mut h = Harness::new(config());
    let _sub = stalled_subscriber(&mut h);
    let publisher = h.connect(V5, "pub");
    for _ in 0..3 {
        assert_eq!(
            h.publish(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce),
            Some(ReasonCode::Success)
        );
    }
    let now = h.now;
    h.broker
        .set_config(now, config().memory_limit(2 * FOOTPRINT));
    // Nothing held is freed; new messages are refused.
    assert!(h.broker.memory().current() >= 3 * FOOTPRINT);
    assert_eq!(
        h.publish(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce),
        Some(ReasonCode::QuotaExceeded)
    );
    h.broker.set_config(now, config().memory_limit(0));
    assert_eq!(
        h.publish(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce),
        Some(ReasonCode::Success)
    );
}

#[test]
fn a_message_held_by_many_sessions_and_the_retained_store_counts_once() {
    let mut h = Harness::new(BrokerConfig::default());
    let subs: Vec<_> = (0..10)
        .map(|i| {
            let s = h.connect(V5, &format!("s{i}"));
            h.subscribe(s, "t/#", QoS::AtLeastOnce);
            h.stalled.insert(s);
            s
        })
        .collect();
    let publisher = h.connect(V5, "pub");
    let before = h.broker.memory().current();
    h.publish_retain(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce, true);
    assert_eq!(h.broker.memory().current() - before, FOOTPRINT);
    // Every subscriber takes and acknowledges it: the retained copy stays.
    for s in subs {
        h.unstall(s);
        let got = h.recv_publishes(s);
        assert_eq!(got.len(), 1);
        h.ack_all(s, &got);
    }
    assert_eq!(h.broker.memory().current() - before, FOOTPRINT);
    // Deleting the retained message releases it.
    h.publish_retain(publisher, "t/x", "", QoS::AtMostOnce, true);
    assert_eq!(h.broker.memory().current(), before);
}

#[test]
fn with_a_limit_of_zero_nothing_is_refused() {
    let mut h = Harness::new(BrokerConfig::default());
    let _sub = stalled_subscriber(&mut h);
    let publisher = h.connect(V5, "pub");
    for _ in 0..50 {
        assert_eq!(
            h.publish(publisher, "t/x", PAYLOAD, QoS::AtLeastOnce),
            Some(ReasonCode::Success)
        );
    }
    assert!(h.broker.memory().current() >= 50 * FOOTPRINT);
}
