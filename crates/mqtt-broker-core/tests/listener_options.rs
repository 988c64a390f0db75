//! Mosquitto's Client Identifier options (`allow_zero_length_clientid`,
//! `auto_id_prefix`, `clientid_prefixes`, `use_username_as_clientid`) and a
//! listener's `max_qos` and `mount_point`, in the broker state machine.

mod util;

use bytes::Bytes;
use mqtt_broker_core::{BrokerConfig, ConnectionInfo, Event, ListenerSettings, PeerCertificate};
use mqtt_codec::{LastWill, Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];

fn on_listener(
    h: &mut Harness,
    port: u16,
    listener: ListenerSettings,
) -> mqtt_broker_core::ConnectionId {
    h.open_with(ConnectionInfo::new(addr(port)).with_listener(listener))
}

fn connected_as(h: &Harness) -> Vec<String> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::ClientConnected { client_id, .. } => Some(client_id.clone()),
            _ => None,
        })
        .collect()
}

fn with_username(v: ProtocolVersion, client_id: &str, username: &str) -> mqtt_codec::Connect {
    let mut c = connect(v, client_id);
    c.username = Some(username.into());
    c.password = Some(Bytes::from_static(b"pw"));
    c
}

#[test]
fn an_empty_client_id_is_refused_with_allow_zero_length_clientid_false() {
    for v in BOTH {
        let mut h = Harness::new(BrokerConfig::default().allow_zero_length_clientid(false));
        let (id, ack) = h.connect_with(connect(v, ""));
        assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid, "{v}");
        assert!(h.is_closed(id), "{v}");
        if v == V5 {
            let why = ack.properties.reason_string.as_deref().unwrap_or("");
            assert!(why.contains("allow_zero_length_clientid"), "{why}");
        }
        // A client with an id is not affected.
        h.connect(v, "named");
    }
}

#[test]
fn a_listener_can_allow_what_the_broker_refuses_and_the_other_way_round() {
    let mut h = Harness::new(BrokerConfig::default().allow_zero_length_clientid(false));
    let open = ListenerSettings::default().allow_zero_length_clientid(Some(true));
    let id = on_listener(&mut h, 1, open);
    let ack = h.send_connect(id, connect(V5, ""));
    assert_eq!(ack.reason_code, ReasonCode::Success);

    let mut h = Harness::default_config();
    let closed = ListenerSettings::default().allow_zero_length_clientid(Some(false));
    let id = on_listener(&mut h, 2, closed);
    let ack = h.send_connect(id, connect(V5, ""));
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
}

#[test]
fn assigned_client_ids_start_with_auto_id_prefix() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let (_, ack) = h.connect_with(connect(v, ""));
        assert_eq!(ack.reason_code, ReasonCode::Success);
        let ids = connected_as(&h);
        assert!(ids[0].starts_with("auto-"), "default prefix: {ids:?}");

        let mut h = Harness::new(BrokerConfig::default().auto_id_prefix("pi-"));
        let (_, ack) = h.connect_with(connect(v, ""));
        let id = &connected_as(&h)[0];
        assert!(id.starts_with("pi-") && id.len() == 3 + 36, "{id}");
        if v == V5 {
            assert_eq!(
                ack.properties.assigned_client_identifier.as_deref(),
                Some(id.as_str())
            );
        }

        // A listener's own prefix wins.
        let listener = ListenerSettings::default().auto_id_prefix(Some("lan-".into()));
        let c = on_listener(&mut h, 7, listener);
        h.send_connect(c, connect(v, ""));
        assert!(
            connected_as(&h)[1].starts_with("lan-"),
            "{:?}",
            connected_as(&h)
        );
    }
}

#[test]
fn clientid_prefixes_keeps_other_clients_out() {
    for v in BOTH {
        let mut h = Harness::new(BrokerConfig::default().clientid_prefixes(Some("sensor-".into())));
        h.connect(v, "sensor-7");
        let (id, ack) = h.connect_with(connect(v, "laptop"));
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized, "{v}");
        assert!(h.is_closed(id));
        if v == V5 {
            let why = ack.properties.reason_string.as_deref().unwrap_or("");
            assert!(
                why.contains("clientid_prefixes") && why.contains("sensor-"),
                "{why}"
            );
        }
        // As in Mosquitto, an assigned id is checked too.
        let (_, ack) = h.connect_with(connect(v, ""));
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized, "{v}");
    }
}

#[test]
fn use_username_as_clientid_makes_the_session_the_users() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let listener = ListenerSettings::default().use_username_as_clientid(true);
        let a = on_listener(&mut h, 1, listener.clone());
        let ack = h.send_connect(a, with_username(v, "whatever-1", "alice"));
        assert_eq!(ack.reason_code, ReasonCode::Success, "{v}");
        assert_eq!(connected_as(&h), ["alice"]);
        h.subscribe(a, "inbox/alice", QoS::AtLeastOnce);

        // Another client id with the same user name takes over alice's
        // connection, not a session of its own.
        let b = on_listener(&mut h, 2, listener.clone());
        let ack = h.send_connect(b, with_username(v, "whatever-2", "alice"));
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(h.is_closed(a), "{v}: the first connection was taken over");
        assert_eq!(connected_as(&h), ["alice", "alice"]);

        // No user name: refused.
        let c = on_listener(&mut h, 3, listener);
        let ack = h.send_connect(c, connect(v, "anon"));
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized, "{v}");
        if v == V5 {
            let why = ack.properties.reason_string.as_deref().unwrap_or("");
            assert!(why.contains("use_username_as_clientid"), "{why}");
        }
    }
}

#[test]
fn use_username_as_clientid_takes_the_certificate_identity() {
    let mut h = Harness::default_config();
    let listener = ListenerSettings::default()
        .require_certificate(true)
        .use_identity_as_username(true)
        .use_username_as_clientid(true);
    let id = h.open_with(
        ConnectionInfo::new(addr(9))
            .with_listener(listener)
            .with_tls(Some(PeerCertificate::new(
                Some("pi-kitchen".into()),
                "CN=pi-kitchen",
            ))),
    );
    let ack = h.send_connect(id, connect(V5, "anything"));
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(connected_as(&h), ["pi-kitchen"]);
}

fn max_qos_1() -> ListenerSettings {
    ListenerSettings::default().max_qos(QoS::AtLeastOnce)
}

#[test]
fn max_qos_is_announced_to_5_0_clients_and_caps_subscriptions() {
    let mut h = Harness::default_config();
    let id = on_listener(&mut h, 1, max_qos_1());
    let ack = h.send_connect(id, connect(V5, "sub"));
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));

    // Without max_qos the property is absent (QoS 2 is the default).
    let (_, plain) = h.connect_with(connect(V5, "plain"));
    assert_eq!(plain.properties.maximum_qos, None);

    for (v, name) in [(V3, "sub3"), (V5, "sub5")] {
        let s = on_listener(&mut h, 2, max_qos_1());
        h.send_connect(s, connect(v, name));
        let ack = h.subscribe_with(
            s,
            "qos/cap",
            SubscriptionOptions::qos(QoS::ExactlyOnce),
            None,
        );
        assert_eq!(ack.reason_codes, [ReasonCode::GrantedQoS1], "{v}");
        // A QoS 2 message arrives at QoS 1.
        let p = h.connect(V5, &format!("pub-{name}"));
        h.publish(p, "qos/cap", "hello", QoS::ExactlyOnce);
        let got = h.recv_publishes(s);
        assert_eq!(got.len(), 1, "{v}");
        assert_eq!(got[0].qos, QoS::AtLeastOnce, "{v}");
    }
}

#[test]
fn a_publish_above_max_qos_ends_the_connection() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let watcher = h.connect(V5, "watcher");
        h.subscribe(watcher, "qos/#", QoS::ExactlyOnce);
        let id = on_listener(&mut h, 1, max_qos_1());
        h.send_connect(id, connect(v, "eager"));
        h.send(
            id,
            Packet::Publish(publish(
                "qos/2",
                "too high",
                QoS::ExactlyOnce,
                false,
                Some(1),
            )),
        );
        let got = h.recv(id);
        if v == V5 {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::QoSNotSupported),
                "{got:?}"
            );
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
        assert!(h.is_closed(id), "{v}");
        assert!(h.recv_publishes(watcher).is_empty(), "{v}: not routed");
        // QoS 1 on that listener is fine.
        let ok = on_listener(&mut h, 2, max_qos_1());
        h.send_connect(ok, connect(v, "careful"));
        h.publish(ok, "qos/1", "fine", QoS::AtLeastOnce);
        assert_eq!(Harness::payloads(&h.recv_publishes(watcher)), ["fine"]);
    }
}

#[test]
fn a_will_above_max_qos_refuses_the_connect() {
    let mut h = Harness::default_config();
    let id = on_listener(&mut h, 1, max_qos_1());
    let mut c = connect(V5, "willing");
    c.will = Some(LastWill {
        topic: topic("status/willing"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: Default::default(),
    });
    let ack = h.send_connect(id, c);
    assert_eq!(ack.reason_code, ReasonCode::QoSNotSupported);
    let why = ack.properties.reason_string.as_deref().unwrap_or("");
    assert!(why.contains("max_qos"), "{why}");
    assert!(h.is_closed(id));
}

fn mounted(m: &str) -> ListenerSettings {
    ListenerSettings::default().mount_point(Some(m.into()))
}

#[test]
fn a_mount_point_gives_a_listener_its_own_part_of_the_tree() {
    for v in BOTH {
        let mut h = Harness::default_config();
        // An unmounted client sees everything, under the full names.
        let admin = h.connect(V5, "admin");
        h.subscribe(admin, "#", QoS::AtLeastOnce);
        let a = on_listener(&mut h, 1, mounted("tenant-a/"));
        h.send_connect(a, connect(v, "a"));
        let b = on_listener(&mut h, 2, mounted("tenant-b/"));
        h.send_connect(b, connect(v, "b"));
        h.subscribe(a, "sensors/#", QoS::AtLeastOnce);
        h.subscribe(b, "sensors/#", QoS::AtLeastOnce);

        h.publish(a, "sensors/temp", "21.5", QoS::AtLeastOnce);
        // A gets its own message back without the prefix; B does not see it.
        let got = h.recv_publishes(a);
        assert_eq!(got.len(), 1, "{v}");
        assert_eq!(got[0].topic.as_str(), "sensors/temp", "{v}");
        assert!(h.recv_publishes(b).is_empty(), "{v}");
        let seen = h.recv_publishes(admin);
        assert_eq!(seen[0].topic.as_str(), "tenant-a/sensors/temp", "{v}");

        // Publishing into a tenant's tree from outside reaches it, stripped.
        h.publish(admin, "tenant-b/sensors/hum", "40", QoS::AtMostOnce);
        let got = h.recv_publishes(b);
        assert_eq!(got[0].topic.as_str(), "sensors/hum", "{v}");
        assert!(h.recv_publishes(a).is_empty(), "{v}");

        // A wildcard cannot reach outside the mount point.
        h.subscribe(a, "#", QoS::AtMostOnce);
        h.publish(admin, "elsewhere", "x", QoS::AtMostOnce);
        assert!(h.recv_publishes(a).is_empty(), "{v}");

        // Unsubscribing is mounted too.
        h.send(
            a,
            Packet::Unsubscribe(mqtt_codec::Unsubscribe {
                packet_id: pid(900),
                properties: Default::default(),
                filters: vec![filter("sensors/#"), filter("#")],
            }),
        );
        let got = h.recv(a);
        let [Packet::UnsubAck(ack)] = got.as_slice() else {
            panic!("{v}: {got:?}");
        };
        if v == V5 {
            assert_eq!(ack.reason_codes, [ReasonCode::Success, ReasonCode::Success]);
        }
        h.publish(admin, "tenant-a/sensors/temp", "22", QoS::AtMostOnce);
        assert!(h.recv_publishes(a).is_empty(), "{v}: both were removed");
    }
}

#[test]
fn retained_messages_wills_and_shared_subscriptions_are_mounted() {
    let mut h = Harness::default_config();
    let admin = h.connect(V5, "admin");
    h.subscribe(admin, "#", QoS::AtMostOnce);
    h.publish_retain(admin, "tenant-a/config", "on", QoS::AtMostOnce, true);
    h.recv_publishes(admin);

    // The retained message is delivered under the client's own name.
    let a = on_listener(&mut h, 1, mounted("tenant-a/"));
    let mut c = connect(V5, "a");
    c.will = Some(LastWill {
        topic: topic("status"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    h.send_connect(a, c);
    h.subscribe(a, "config", QoS::AtMostOnce);
    let got = h.recv_publishes(a);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic.as_str(), "config");

    // A shared subscription shares the mounted filter.
    let s = on_listener(&mut h, 2, mounted("tenant-a/"));
    h.send_connect(s, connect(V5, "worker"));
    h.subscribe(s, "$share/workers/jobs", QoS::AtMostOnce);
    h.publish(admin, "tenant-a/jobs", "job-1", QoS::AtMostOnce);
    let got = h.recv_publishes(s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic.as_str(), "jobs");
    h.recv_publishes(admin);

    // The will goes to the mounted topic.
    h.drop_transport(a);
    let seen = h.recv_publishes(admin);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].topic.as_str(), "tenant-a/status");
}

#[test]
fn upgrade_outgoing_qos_delivers_at_the_subscription_qos() {
    for (upgrade, want) in [(false, QoS::AtMostOnce), (true, QoS::AtLeastOnce)] {
        let mut h = Harness::new(BrokerConfig::default().upgrade_outgoing_qos(upgrade));
        let s = h.connect(V5, "sub");
        h.subscribe(s, "up/#", QoS::AtLeastOnce);
        let p = h.connect(V3, "pub");
        h.publish(p, "up/live", "live", QoS::AtMostOnce);
        h.publish_retain(p, "up/kept", "kept", QoS::AtMostOnce, true);
        let got = h.recv_publishes(s);
        assert_eq!(got[0].qos, want, "upgrade {upgrade}");
        assert_eq!(got[0].packet_id.is_some(), upgrade);
        h.ack_all(s, &got);
        // A retained message on a new subscription too.
        let late = h.connect(V5, "late");
        h.subscribe(late, "up/kept", QoS::AtLeastOnce);
        let got = h.recv_publishes(late);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].qos, want, "retained, upgrade {upgrade}");
    }
}

#[test]
fn each_listener_announces_and_enforces_its_own_max_topic_alias() {
    // `max_topic_alias` is a listener option in Mosquitto: 3 on one port, 0
    // (no aliases) on another, the broker's default (10) on a third.
    let mut h = Harness::default_config();
    for (port, setting, announced) in [
        (1883, Some(3), Some(3)),
        (1884, Some(0), None),
        (1885, None, Some(10)),
    ] {
        let id = on_listener(
            &mut h,
            port,
            ListenerSettings::default()
                .port(port)
                .max_topic_alias(setting),
        );
        let ack = h.send_connect(id, connect(V5, &format!("c{port}")));
        assert_eq!(ack.properties.topic_alias_maximum, announced, "port {port}");
        let limit = announced.unwrap_or(0);
        // An alias up to the limit is taken; one past it ends the connection.
        if limit > 0 {
            let mut p = publish("t", "m", QoS::AtMostOnce, false, None);
            p.properties.topic_alias = Some(limit);
            h.send(id, Packet::Publish(p));
            assert!(!h.is_closed(id), "port {port}");
        }
        let mut p = publish("t", "m", QoS::AtMostOnce, false, None);
        p.properties.topic_alias = Some(limit + 1);
        h.send(id, Packet::Publish(p));
        let got = h.recv(id);
        assert!(
            got.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::TopicAliasInvalid)),
            "port {port}: {got:?}"
        );
        assert!(h.is_closed(id), "port {port}");
    }
}
