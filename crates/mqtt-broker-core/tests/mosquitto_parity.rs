//! Behaviours decided against Mosquitto 2.0.11's own broker tests
//! (`test/broker/*.py`); docs/conformance.md says why each is as it is.
mod util;

use bytes::Bytes;
use mqtt_broker_core::BrokerConfig;
use mqtt_codec::{
    Connect, LastWill, Packet, Properties, ProtocolVersion, PubAck, PubComp, PubRec, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
};
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];

/// The DISCONNECT reason a 5.0 client got before its connection closed.
fn will(topic: String, payload: &'static [u8]) -> Option<LastWill> {
    Some(LastWill {
        topic: TopicName::try_from(topic).unwrap(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    })
}

fn disconnect_reason(h: &mut Harness, id: mqtt_broker_core::ConnectionId) -> Option<ReasonCode> {
    h.recv(id).into_iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}

#[test]
fn mqtt_3_1_connack_never_sets_session_present() {
    // In 3.1 the CONNACK's first byte is reserved (03-publish-c2b-disconnect-qos2).
    let mut h = Harness::default_config();
    let mut c = Connect::new(ProtocolVersion::V3_1, "old-client");
    c.clean_start = false;
    let (id, ack) = h.connect_with(c.clone());
    assert!(!ack.session_present);
    h.drop_transport(id);
    let (_, ack) = h.connect_with(c);
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(!ack.session_present, "3.1 has no Session Present flag");
    // 3.1.1 still sets it.
    let mut h = Harness::default_config();
    let (id, _) = h.connect_persistent(V3, "new-client");
    h.drop_transport(id);
    let (_, ack) = h.connect_persistent(V3, "new-client");
    assert!(ack.session_present);
}

#[test]
fn topics_with_up_to_200_separators_work_and_deeper_ones_end_the_connection() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        // 200 separators: allowed, as in Mosquitto.
        let ok = "abc/".repeat(199) + "d";
        h.subscribe(sub, &ok, QoS::AtMostOnce);
        let publisher = h.connect(v, "pub");
        h.publish(publisher, &ok, "m", QoS::AtMostOnce);
        assert_eq!(h.recv_publishes(sub).len(), 1, "{v}");

        // 201 separators in a PUBLISH: 3.1.1 closes, 5.0 DISCONNECT 0x82.
        let deep = "/".repeat(201);
        h.send(
            publisher,
            Packet::Publish(publish(&deep, "m", QoS::AtMostOnce, false, None)),
        );
        if v.is_v5() {
            assert_eq!(
                disconnect_reason(&mut h, publisher),
                Some(ReasonCode::ProtocolError)
            );
        }
        assert!(h.is_closed(publisher), "{v}");

        // In a SUBSCRIBE or UNSUBSCRIBE: 3.1.1 closes, 5.0 DISCONNECT 0x81.
        let s1 = h.connect(v, "s1");
        let s = Subscribe::new(
            pid(1),
            TopicFilter::new(deep.clone()).unwrap(),
            SubscriptionOptions::qos(QoS::AtMostOnce),
        );
        h.send(s1, Packet::Subscribe(s));
        if v.is_v5() {
            assert_eq!(
                disconnect_reason(&mut h, s1),
                Some(ReasonCode::MalformedPacket)
            );
        }
        assert!(h.is_closed(s1), "{v}");
        let s2 = h.connect(v, "s2");
        let u = Unsubscribe {
            packet_id: pid(2),
            properties: Properties::default(),
            filters: vec![TopicFilter::new(deep.clone()).unwrap()],
        };
        h.send(s2, Packet::Unsubscribe(u));
        assert!(h.is_closed(s2), "{v}");

        // The subscriber of the 200-level filter is served on.
        h.publish(sub, &ok, "again", QoS::AtMostOnce);
        assert_eq!(h.recv_publishes(sub).len(), 1, "{v}");
    }
}

#[test]
fn a_client_subscribing_to_65535_levels_cannot_take_the_broker_down() {
    // Before the level limit, removing such a subscription recursed once
    // per level and overflowed the stack (the whole broker aborted).
    let mut h = Harness::default_config();
    let other = h.connect(V5, "other");
    h.subscribe(other, "t", QoS::AtMostOnce);
    let bad = h.connect(V5, "bad");
    let s = Subscribe::new(
        pid(1),
        TopicFilter::new("/".repeat(65_535)).unwrap(),
        SubscriptionOptions::qos(QoS::AtMostOnce),
    );
    h.send(bad, Packet::Subscribe(s));
    assert!(h.is_closed(bad));
    h.drop_transport(bad);
    let p = h.connect(V5, "p");
    h.publish(p, "t", "still here", QoS::AtMostOnce);
    assert_eq!(h.recv_publishes(other).len(), 1);
}

#[test]
fn a_will_too_deep_or_larger_than_message_size_limit_is_refused() {
    for v in BOTH {
        let mut h = Harness::new(BrokerConfig::default().message_size_limit(4));
        let mut c = Connect::new(v, "w");
        c.will = will("will/t".into(), b"12345");
        let (_, ack) = h.connect_with(c);
        // 07-will-oversize-payload: 5.0 0x95, 3.1.1 return code 5.
        let expected = if v.is_v5() {
            ReasonCode::PacketTooLarge
        } else {
            ReasonCode::NotAuthorized
        };
        assert_eq!(ack.reason_code, expected, "{v}");

        let mut c = Connect::new(v, "w2");
        c.will = will("/".repeat(201), b"1");
        let (_, ack) = h.connect_with(c);
        assert!(ack.reason_code.is_error(), "{v}");

        let mut c = Connect::new(v, "w3");
        c.will = will("will/t".into(), b"1234");
        let (_, ack) = h.connect_with(c);
        assert_eq!(ack.reason_code, ReasonCode::Success, "{v}");
    }
}

/// A QoS `qos` message sent to a fresh subscriber; returns it and its packet id.
fn delivered(
    v: ProtocolVersion,
    qos: QoS,
) -> (
    Harness,
    mqtt_broker_core::ConnectionId,
    mqtt_codec::PacketId,
) {
    let mut h = Harness::default_config();
    let sub = h.connect(v, "sub");
    h.subscribe(sub, "t", qos);
    let p = h.connect(v, "pub");
    h.publish(p, "t", "m", qos);
    let got = h.recv_publishes(sub);
    let pid = got[0].packet_id.unwrap();
    (h, sub, pid)
}

#[test]
fn an_acknowledgement_of_the_wrong_flow_ends_the_connection() {
    for v in BOTH {
        // 02-subpub-qos1-bad-pubrec / -bad-pubcomp.
        for wrong in ["pubrec", "pubcomp"] {
            let (mut h, sub, id) = delivered(v, QoS::AtLeastOnce);
            let p = match wrong {
                "pubrec" => Packet::PubRec(PubRec::new(id)),
                _ => Packet::PubComp(PubComp::new(id)),
            };
            h.send(sub, p);
            if v.is_v5() {
                assert_eq!(
                    disconnect_reason(&mut h, sub),
                    Some(ReasonCode::ProtocolError)
                );
            }
            assert!(h.is_closed(sub), "{v} {wrong} for QoS 1");
        }
        // 02-subpub-qos2-bad-puback-1 / -bad-pubcomp.
        for wrong in ["puback", "pubcomp"] {
            let (mut h, sub, id) = delivered(v, QoS::ExactlyOnce);
            let p = match wrong {
                "puback" => Packet::PubAck(PubAck::new(id)),
                _ => Packet::PubComp(PubComp::new(id)),
            };
            h.send(sub, p);
            assert!(h.is_closed(sub), "{v} {wrong} for QoS 2 before PUBREC");
        }
        // 02-subpub-qos2-bad-puback-2: PUBACK after PUBREC.
        let (mut h, sub, id) = delivered(v, QoS::ExactlyOnce);
        h.send(sub, Packet::PubRec(PubRec::new(id)));
        assert!(h.recv(sub).iter().any(|p| matches!(p, Packet::PubRel(_))));
        h.send(sub, Packet::PubAck(PubAck::new(id)));
        assert!(h.is_closed(sub), "{v} PUBACK for a released QoS 2 message");

        // The right acknowledgements, and ones for identifiers not in
        // flight, keep the connection.
        let (mut h, sub, id) = delivered(v, QoS::ExactlyOnce);
        h.send(sub, Packet::PubRec(PubRec::new(id)));
        h.send(sub, Packet::PubComp(PubComp::new(id)));
        h.send(sub, Packet::PubAck(PubAck::new(pid(999))));
        h.send(sub, Packet::PingReq);
        assert!(h.recv(sub).contains(&Packet::PingResp));
        assert!(!h.is_closed(sub), "{v}");
    }
}

mod config_authenticator {
    use mqtt_broker_core::password_file::PasswordFile;
    use mqtt_broker_core::{
        AuthDecision, AuthRequest, Authenticator, ConfigAuthenticator, ListenerSettings,
    };
    use mqtt_codec::ReasonCode;

    /// `mosquitto_passwd -c -H sha512 -b f legacy hunter2` (Mosquitto 2.0.11).
    const FILE: &str = "legacy:$6$PS1KXd1x/BzpnRk1$rFQ8lN28vI9ascUGbFQ1nWFBSyGoHQ3JEV1y0TYamZXI7V0Suzje2cUlbeB3zFR5uq8KJetVlpfEUBhHw51MBw==\n";

    fn decide(
        auth: &ConfigAuthenticator,
        listener: &ListenerSettings,
        username: Option<&str>,
        password: Option<&[u8]>,
        certificate_verified: bool,
    ) -> AuthDecision {
        auth.authenticate(&AuthRequest {
            client_id: "c",
            username,
            password,
            username_from_certificate: false,
            certificate: None,
            certificate_verified,
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            listener,
        })
    }

    #[test]
    fn a_user_name_alone_is_refused_when_anonymous_access_is_off_and_there_is_no_password_file() {
        // 01-connect-uname-or-anon: Mosquitto 2 refuses it too.
        let auth = ConfigAuthenticator::global(None);
        let closed = ListenerSettings::default().allow_anonymous(Some(false));
        assert_eq!(
            decide(&auth, &closed, Some("anyone"), Some(b"x"), false),
            AuthDecision::Deny(ReasonCode::NotAuthorized)
        );
        // A verified client certificate authenticates.
        assert_eq!(
            decide(&auth, &closed, Some("anyone"), None, true),
            AuthDecision::Allow
        );
        // Anonymous access on: the user name is just a name.
        let open = ListenerSettings::default().allow_anonymous(Some(true));
        assert_eq!(
            decide(&auth, &open, Some("anyone"), None, false),
            AuthDecision::Allow
        );
    }

    #[test]
    fn a_missing_or_empty_password_never_matches() {
        // 09-pwfile-parse-invalid.
        let file = PasswordFile::parse_str(FILE, "pwfile").unwrap();
        let auth = ConfigAuthenticator::global(Some(file));
        let l = ListenerSettings::default();
        let bad = AuthDecision::Deny(ReasonCode::BadUserNameOrPassword);
        assert_eq!(decide(&auth, &l, Some("legacy"), None, false), bad);
        assert_eq!(decide(&auth, &l, Some("legacy"), Some(b""), false), bad);
        assert_eq!(
            decide(&auth, &l, Some("legacy"), Some(b"hunter2"), false),
            AuthDecision::Allow
        );
    }
}

/// `06-bridge-no-local.py`: a Mosquitto bridge (protocol level 0x83 / 0x84,
/// `try_private true`) is accepted, and never gets its own messages back.
#[test]
fn a_mosquitto_bridge_is_accepted_and_does_not_receive_its_own_messages() {
    for v in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1] {
        for bridge in [true, false] {
            let mut h = Harness::default_config();
            let mut c = connect(v, "bridge-test");
            c.bridge = bridge;
            let (id, ack) = h.connect_with(c);
            assert_eq!(ack.reason_code, ReasonCode::Success, "{v:?}");
            h.subscribe(id, "loop/test", QoS::AtMostOnce);
            h.send(
                id,
                Packet::Publish(publish(
                    "loop/test",
                    "message",
                    QoS::AtMostOnce,
                    false,
                    None,
                )),
            );
            h.send(id, Packet::PingReq);
            let got = h.recv(id);
            let echoed = got.iter().any(|p| matches!(p, Packet::Publish(_)));
            assert_eq!(echoed, !bridge, "{v:?} bridge={bridge}: {got:?}");
            assert!(matches!(got.last(), Some(Packet::PingResp)));
        }
    }
}
