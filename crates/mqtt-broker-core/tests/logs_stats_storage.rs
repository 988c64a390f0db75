//! Statistics and `$SYS`, the storage seam, batching, and the packet-level input API.
mod util;

use bytes::BytesMut;
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionInfo, Event, MemoryStorage, Storage};
use mqtt_codec::{Packet, QoS};
use std::time::Duration;
use util::*;

#[test]
fn statistics_count_clients_messages_and_bytes() {
    let mut h = Harness::default_config();
    let s = h.connect(V3, "s");
    h.subscribe(s, "t", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    h.publish_retain(p, "t", "x", QoS::AtMostOnce, true);
    let st = h.broker.stats();
    assert_eq!(st.clients_connected, 2);
    assert_eq!(st.clients_maximum, 2);
    assert_eq!(st.publish_messages_received, 1);
    assert_eq!(st.publish_messages_sent, 1);
    assert_eq!(st.retained_messages, 1);
    assert_eq!(st.subscriptions, 1);
    assert!(st.bytes_received > 0 && st.bytes_sent > 0);
    h.disconnect(p);
    assert_eq!(h.broker.stats().clients_connected, 1);
}

#[test]
fn sys_topics_are_published_every_sys_interval_when_they_change() {
    let mut h = Harness::new(BrokerConfig::default().sys_interval(Duration::from_secs(10)));
    let s = h.connect(V3, "s");
    h.subscribe(s, "$SYS/broker/clients/connected", QoS::AtMostOnce);
    h.advance(Duration::from_secs(9));
    assert!(h.recv_publishes(s).is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(Harness::payloads(&h.recv_publishes(s)), ["1"]);
    // Unchanged: not published again (as Mosquitto does).
    h.advance(Duration::from_secs(10));
    assert!(h.recv_publishes(s).is_empty());
    h.connect(V3, "other");
    h.advance(Duration::from_secs(10));
    assert_eq!(Harness::payloads(&h.recv_publishes(s)), ["2"]);
}

#[test]
fn sys_values_are_retained_but_not_written_to_storage() {
    let broker = Broker::new(BrokerConfig::default().sys_interval(Duration::from_secs(10)))
        .with_storage(Box::new(MemoryStorage::new()));
    let mut h = Harness::with_broker(broker);
    let p = h.connect(V3, "p");
    h.advance(Duration::from_secs(30));
    h.publish_retain(p, "status", "up", QoS::AtMostOnce, true);
    let late = h.connect(V3, "late");
    h.subscribe(late, "$SYS/broker/clients/connected", QoS::AtMostOnce);
    assert_eq!(Harness::payloads(&h.recv_publishes(late)), ["1"]);
    let mut storage = h.broker.into_storage().unwrap();
    let stored: Vec<String> = (storage.load().retained.iter())
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(stored, ["status"]);
}

/// A persistent session subscribes and goes away, messages are queued
/// for it and one is retained; then `restart` turns the first broker's
/// storage into the next one's, and everything is back.
fn survives_a_restart(
    first: Box<dyn Storage>,
    restart: impl FnOnce(Box<dyn Storage>) -> Box<dyn Storage>,
) {
    let mut h = Harness::with_broker(Broker::new(BrokerConfig::default()).with_storage(first));
    let (s, _) = h.connect_persistent(V5, "s");
    h.subscribe(s, "t/#", QoS::ExactlyOnce);
    h.disconnect(s);
    let p = h.connect(V5, "p");
    h.publish(p, "t/1", "queued 1", QoS::AtLeastOnce);
    h.publish(p, "t/2", "queued 2", QoS::ExactlyOnce);
    h.publish_retain(p, "t/r", "retained", QoS::AtMostOnce, true);
    let storage = restart(h.broker.into_storage().unwrap());

    let mut h = Harness::with_broker(Broker::new(BrokerConfig::default()).with_storage(storage));
    let (s2, ack) = h.connect_persistent(V5, "s");
    assert!(ack.session_present);
    let got = h.recv_publishes(s2);
    // Queued in order (the QoS 0 retained message is not queued for an
    // offline session: queue_qos0_messages is off).
    assert_eq!(Harness::payloads(&got), ["queued 1", "queued 2"]);
    h.ack_all(s2, &got);
    let fresh = h.connect(V5, "fresh");
    h.subscribe(fresh, "t/r", QoS::AtMostOnce);
    assert_eq!(Harness::payloads(&h.recv_publishes(fresh)), ["retained"]);
    // The subscription came back too.
    h.publish(fresh, "t/3", "live", QoS::AtLeastOnce);
    assert_eq!(Harness::payloads(&h.recv_publishes(s2)), ["live"]);
}

#[test]
fn persistent_sessions_and_retained_messages_survive_a_restart_through_storage() {
    survives_a_restart(Box::new(MemoryStorage::new()), |storage| storage);
}

#[cfg(feature = "file-storage")]
#[test]
fn persistent_sessions_and_retained_messages_survive_a_restart_through_a_file() {
    use mqtt_broker_core::FileStorage;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mqtt-broker.db");
    survives_a_restart(Box::new(FileStorage::open(&path).unwrap()), |storage| {
        // The process ends: only the file is left.
        drop(storage);
        Box::new(FileStorage::open(&path).unwrap())
    });
}

#[test]
fn memory_storage_forgets_sessions_that_end() {
    let mut st = MemoryStorage::new();
    assert!(st.load().sessions.is_empty());
    let broker = Broker::new(BrokerConfig::default()).with_storage(Box::new(st));
    let mut h = Harness::with_broker(broker);
    let mut c = connect(V5, "s");
    c.properties.session_expiry_interval = Some(5);
    let (s, _) = h.connect_with(c);
    h.drop_transport(s);
    h.advance(Duration::from_secs(5));
    let mut storage = h.broker.into_storage().unwrap();
    assert!(storage.load().sessions.is_empty());
}

#[test]
fn packets_decoded_by_the_driver_are_handled_like_bytes() {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = std::time::Instant::now();
    let id = broker.connection_opened(now, ConnectionInfo::new(addr(1)));
    let connect = Packet::Connect(Box::new(connect(V5, "c")));
    let len = connect.encoded_len(V5);
    broker.handle_packet(now, id, connect, len);
    broker.handle_packet(now, id, Packet::PingReq, 2);
    assert_eq!(broker.stats().bytes_received, len as u64 + 2);
    let mut events = Vec::new();
    while let Some(e) = broker.poll_event() {
        events.push(e);
    }
    assert!(events.contains(&Event::Transmit(id)));
    let mut out = BytesMut::new();
    assert!(broker.poll_transmit(now, id, &mut out));
    let mut d = mqtt_codec::Decoder::with_version(V5);
    assert!(matches!(
        d.decode(&mut out).unwrap(),
        Some(Packet::ConnAck(_))
    ));
    assert!(matches!(
        d.decode(&mut out).unwrap(),
        Some(Packet::PingResp)
    ));
    assert!(out.is_empty(), "CONNACK and PINGRESP came in one batch");
}

#[test]
fn everything_ready_for_a_connection_is_batched_into_one_buffer() {
    let mut h = Harness::default_config();
    let s = h.connect(V3, "s");
    h.subscribe(s, "t", QoS::AtMostOnce);
    h.stalled.insert(s);
    let p = h.connect(V3, "p");
    for _ in 0..10 {
        h.publish(p, "t", "m", QoS::AtMostOnce);
    }
    let transmits_before = h.broker.poll_event();
    assert!(
        transmits_before.is_none(),
        "Transmit is raised once until the bytes are taken"
    );
    let buf = h.broker.take_transmit(h.now, s).unwrap();
    let mut d = mqtt_codec::Decoder::with_version(V3);
    let mut buf = buf;
    let mut n = 0;
    while d.decode(&mut buf).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn shutdown_sends_server_shutting_down_to_5_0_clients_and_closes_everyone() {
    let mut h = Harness::default_config();
    let five = h.connect(V5, "five");
    let three = h.connect(V3, "three");
    let idle = h.open();
    h.broker.shutdown(h.now);
    h.pump();
    let got = h.recv(five);
    assert!(
        matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code == mqtt_codec::ReasonCode::ServerShuttingDown)
    );
    assert!(h.recv(three).is_empty());
    assert!(h.is_closed(five) && h.is_closed(three) && h.is_closed(idle));
    assert_eq!(h.broker.stats().clients_connected, 0);
}

#[test]
fn decode_errors_reported_by_the_driver_close_the_connection() {
    let mut h = Harness::default_config();
    let id = h.connect(V5, "c");
    h.broker
        .handle_decode_error(h.now, id, mqtt_codec::DecodeError::InvalidQoS);
    h.pump();
    assert!(
        matches!(&h.recv(id)[..], [Packet::Disconnect(d)] if d.reason_code == mqtt_codec::ReasonCode::MalformedPacket)
    );
    assert!(h.is_closed(id));
}

#[test]
fn broker_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Broker>();
}

#[test]
fn statistics_count_connections_per_listener_and_disconnects_per_reason() {
    use mqtt_broker_core::ListenerSettings;
    let mut h = Harness::default_config();
    let on = |h: &mut Harness, port: u16, remote: u16| {
        let info =
            ConnectionInfo::new(addr(remote)).with_listener(ListenerSettings::default().port(port));
        h.open_with(info)
    };
    let a = on(&mut h, 1883, 40_001);
    let b = on(&mut h, 1883, 40_002);
    let c = on(&mut h, 8883, 40_003);
    let st = h.broker.stats();
    assert_eq!(
        st.connections_by_listener.into_iter().collect::<Vec<_>>(),
        [(1883, 2), (8883, 1)]
    );
    assert_eq!(st.connections_accepted, 3);
    for (id, name) in [(a, "a"), (b, "b"), (c, "c")] {
        h.send_connect(id, mqtt_codec::Connect::new(V3, name));
    }
    // a: DISCONNECT; b: the transport ends; c: a second CONNECT.
    h.disconnect(a);
    h.drop_transport(b);
    h.send(
        c,
        Packet::Connect(Box::new(mqtt_codec::Connect::new(V3, "c"))),
    );
    let st = h.broker.stats();
    assert_eq!(st.connects_received, 4);
    assert_eq!(st.disconnects.client_disconnected, 1);
    assert_eq!(st.disconnects.connection_lost, 1);
    assert_eq!(st.disconnects.protocol_violation, 1);
    assert_eq!(st.disconnects.keep_alive_timeout, 0);
    assert_eq!(
        st.connections_by_listener.into_iter().collect::<Vec<_>>(),
        [(1883, 0), (8883, 0)]
    );
    assert_eq!(st.connections_open, 0);
}
