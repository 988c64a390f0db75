//! Scenario tests: a scripted broker and a fake clock, no sockets, no sleeps.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    ConnAck, Decoder, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish,
    QoS, ReasonCode, SubAck, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};

use super::*;

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// A scripted broker around one [`Connection`], with a fake clock.
struct Harness {
    conn: Connection,
    now: Instant,
    version: ProtocolVersion,
}

impl Harness {
    fn new(options: ConnectOptions) -> Self {
        let version = options.protocol;
        Self {
            conn: Connection::new(options),
            now: Instant::now(),
            version,
        }
    }

    fn v5(client_id: &str) -> Self {
        Self::new(ConnectOptions::new(ProtocolVersion::V5, client_id))
    }

    /// Everything the client wants to write, decoded.
    fn sent(&mut self) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Some(bytes) = self.conn.poll_transmit(self.now) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut d = Decoder::new();
            d.set_version(self.version);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                out.push(p);
            }
            assert!(buf.is_empty());
        }
        out
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    fn server(&mut self, p: Packet) -> Result<(), ConnectionError> {
        let mut buf = BytesMut::new();
        p.encode(self.version, &mut buf).unwrap();
        self.conn.handle_input(&buf, self.now)
    }

    /// connect() + CONNACK; returns the CONNECT the client sent.
    fn establish(&mut self, connack: ConnAck) -> mqtt_codec::Connect {
        self.conn.connect(self.now);
        let sent = self.sent();
        let Some(Packet::Connect(c)) = sent.into_iter().next() else {
            panic!("no CONNECT")
        };
        self.server(Packet::ConnAck(connack)).unwrap();
        *c
    }

    fn publish(&mut self, topic: &str, payload: &'static str, qos: QoS) -> RequestId {
        let mut p = Publish::new(TopicName::try_from(topic).unwrap(), payload);
        p.qos = qos;
        self.conn.publish(p).unwrap()
    }
}

fn incoming(topic: &str, qos: QoS, packet_id: Option<u16>, dup: bool) -> Packet {
    let mut p = Publish::new(
        TopicName::try_from(topic).unwrap(),
        Bytes::from_static(b"x"),
    );
    p.qos = qos;
    p.packet_id = packet_id.map(id);
    p.dup = dup;
    Packet::Publish(p)
}

fn messages(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count()
}

#[test]
fn connect_sends_options_and_connack_reports_connected() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.session_expiry_interval = 300;
    o.username = Some("u".into());
    o.keep_alive = Duration::from_secs(30);
    let mut h = Harness::new(o);
    let c = h.establish(ConnAck::new(false, ReasonCode::Success));
    assert_eq!(c.client_id, "pi");
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 30);
    assert_eq!(c.properties.session_expiry_interval, Some(300));
    assert_eq!(c.username.as_deref(), Some("u"));
    // The 256 MiB default is the protocol maximum, so nothing is sent.
    assert_eq!(c.properties.maximum_packet_size, None);
    assert!(matches!(
        h.events()[..],
        [Event::Connected {
            session_present: false,
            ..
        }]
    ));
    assert!(h.conn.is_connected());
}

#[test]
fn bridge_option_sets_the_bridge_bit_in_3_1_1_only() {
    let mut o = ConnectOptions::new(ProtocolVersion::V3_1_1, "bridge");
    o.bridge = true;
    let mut h = Harness::new(o);
    h.conn.connect(h.now);
    let wire = h.conn.poll_transmit(h.now).unwrap();
    // Fixed header (2 bytes), protocol name "MQTT" (6 bytes), then the level.
    assert_eq!(wire[8], 0x84);
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "bridge");
    o.bridge = true;
    let mut h = Harness::new(o);
    h.conn.connect(h.now);
    let wire = h.conn.poll_transmit(h.now).unwrap();
    assert_eq!(wire[8], 5);
}

#[test]
fn connack_refusal_carries_reason_and_reason_string() {
    let mut h = Harness::v5("pi");
    h.conn.connect(h.now);
    h.sent();
    let mut ack = ConnAck::new(false, ReasonCode::NotAuthorized);
    ack.properties.reason_string = Some("anonymous access is off".into());
    let err = h.server(Packet::ConnAck(ack)).unwrap_err();
    assert_eq!(
        err,
        ConnectionError::Refused {
            reason: ReasonCode::NotAuthorized,
            reason_string: Some("anonymous access is off".into())
        }
    );
    let text = err.to_string();
    assert!(text.contains("Not authorized"), "{text}");
    assert!(text.contains("anonymous access is off"), "{text}");
    assert!(text.contains("allow_anonymous"), "{text}");
    assert!(matches!(h.events()[..], [Event::Disconnected { .. }]));
}

#[test]
fn packet_before_connack_is_a_protocol_violation() {
    let mut h = Harness::v5("pi");
    h.conn.connect(h.now);
    h.sent();
    let err = h.server(Packet::PingResp).unwrap_err();
    assert!(matches!(
        err,
        ConnectionError::ProtocolViolation(ProtocolViolation::BeforeConnAck(_))
    ));
}

#[test]
fn qos0_publish_completes_when_handed_to_the_driver() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    let r = h.publish("a/b", "hi", QoS::AtMostOnce);
    assert!(h.events().is_empty());
    let sent = h.sent();
    assert!(matches!(&sent[..], [Packet::Publish(p)] if p.packet_id.is_none()));
    assert_eq!(h.events(), vec![Event::Sent { request: r }]);
}

#[test]
fn qos1_publish_completes_on_puback_with_its_reason_code() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    let r = h.publish("a/b", "hi", QoS::AtLeastOnce);
    let sent = h.sent();
    let Packet::Publish(p) = &sent[0] else {
        panic!()
    };
    let pid = p.packet_id.unwrap();
    assert_eq!(h.conn.inflight(), 1);
    h.server(Packet::PubAck(PubAck::with_reason(
        pid,
        ReasonCode::NoMatchingSubscribers,
    )))
    .unwrap();
    let ev = h.events();
    assert!(
        matches!(&ev[..], [Event::PubAck { request, reason_code: ReasonCode::NoMatchingSubscribers, .. }] if *request == r)
    );
    assert_eq!(h.conn.inflight(), 0);
}

#[test]
fn qos2_publish_sends_pubrel_after_pubrec_and_completes_on_pubcomp() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    let r = h.publish("a/b", "hi", QoS::ExactlyOnce);
    let Packet::Publish(p) = &h.sent()[0] else {
        panic!()
    };
    let pid = p.packet_id.unwrap();
    h.server(Packet::PubRec(PubRec::new(pid))).unwrap();
    assert_eq!(h.sent(), vec![Packet::PubRel(PubRel::new(pid))]);
    assert!(h.events().is_empty());
    h.server(Packet::PubComp(PubComp::new(pid))).unwrap();
    let ev = h.events();
    assert!(
        matches!(&ev[..], [Event::PubComp { request, reason_code: ReasonCode::Success, .. }] if *request == r)
    );
}

#[test]
fn unsolicited_acks_are_ignored_without_error() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    h.server(Packet::PubAck(PubAck::new(id(7)))).unwrap();
    h.server(Packet::PubComp(PubComp::new(id(8)))).unwrap();
    assert!(h.events().is_empty());
    assert!(h.conn.is_connected());
}

#[test]
fn incoming_qos1_is_delivered_and_acknowledged() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    h.server(incoming("t", QoS::AtLeastOnce, Some(5), false))
        .unwrap();
    assert_eq!(messages(&h.events()), 1);
    assert_eq!(h.sent(), vec![Packet::PubAck(PubAck::new(id(5)))]);
}

#[test]
fn qos2_message_is_delivered_once_when_resent_with_dup() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    h.server(incoming("t", QoS::ExactlyOnce, Some(9), false))
        .unwrap();
    assert_eq!(messages(&h.events()), 1);
    assert_eq!(h.sent(), vec![Packet::PubRec(PubRec::new(id(9)))]);
    // The broker missed our PUBREC and re-sends with DUP.
    h.server(incoming("t", QoS::ExactlyOnce, Some(9), true))
        .unwrap();
    assert_eq!(messages(&h.events()), 0, "delivered twice");
    assert_eq!(h.sent(), vec![Packet::PubRec(PubRec::new(id(9)))]);
    h.server(Packet::PubRel(PubRel::new(id(9)))).unwrap();
    assert_eq!(h.sent(), vec![Packet::PubComp(PubComp::new(id(9)))]);
    assert_eq!(h.conn.incoming_qos2_pending(), 0);
    // After PUBREL the identifier may carry a new message.
    h.server(incoming("t", QoS::ExactlyOnce, Some(9), false))
        .unwrap();
    assert_eq!(messages(&h.events()), 1);
}

#[test]
fn qos2_message_is_delivered_once_after_reconnect() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.session_expiry_interval = 60;
    let mut h = Harness::new(o);
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    h.server(incoming("t", QoS::ExactlyOnce, Some(3), false))
        .unwrap();
    assert_eq!(messages(&h.events()), 1);
    // The connection drops before the PUBREC is written.
    h.conn.connection_lost(ConnectionError::Closed);
    let c = h.establish(ConnAck::new(true, ReasonCode::Success));
    assert!(!c.clean_start, "a reconnect must resume the session");
    h.events();
    // PUBREC goes out again on the new connection.
    assert_eq!(h.sent(), vec![Packet::PubRec(PubRec::new(id(3)))]);
    h.server(incoming("t", QoS::ExactlyOnce, Some(3), true))
        .unwrap();
    assert_eq!(messages(&h.events()), 0, "QoS 2 delivered twice");
    h.server(Packet::PubRel(PubRel::new(id(3)))).unwrap();
    assert_eq!(
        h.sent(),
        vec![
            Packet::PubRec(PubRec::new(id(3))),
            Packet::PubComp(PubComp::new(id(3)))
        ]
    );
}

#[test]
fn unacknowledged_publish_and_pending_pubrel_are_resent_on_session_resume() {
    let mut o = ConnectOptions::new(ProtocolVersion::V3_1_1, "pi");
    o.clean_start = false;
    let mut h = Harness::new(o);
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    let r1 = h.publish("a", "one", QoS::AtLeastOnce);
    let r2 = h.publish("b", "two", QoS::ExactlyOnce);
    let sent = h.sent();
    let ids: Vec<PacketId> = sent
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.packet_id.unwrap(),
            _ => panic!(),
        })
        .collect();
    let r3 = h.publish("c", "three", QoS::ExactlyOnce);
    let Packet::Publish(p3) = &h.sent()[0] else {
        panic!()
    };
    let id3 = p3.packet_id.unwrap();
    // PUBREC for the third: PUBREL goes out, then the connection drops.
    h.server(Packet::PubRec(PubRec::new(id3))).unwrap();
    h.sent();
    h.conn.connection_lost(ConnectionError::Closed);
    let c = h.establish(ConnAck::new(true, ReasonCode::Success));
    assert!(!c.clean_start);
    let resent = h.sent();
    assert_eq!(resent.len(), 3, "{resent:?}");
    match (&resent[0], &resent[1]) {
        (Packet::Publish(a), Packet::Publish(b)) => {
            assert!(a.dup && b.dup, "re-sent PUBLISH must have DUP set");
            assert_eq!(a.packet_id, Some(ids[0]));
            assert_eq!(b.packet_id, Some(ids[1]));
            assert_eq!(&a.payload[..], b"one");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(resent[2], Packet::PubRel(PubRel::new(id3)));
    h.events();
    h.server(Packet::PubAck(PubAck::new(ids[0]))).unwrap();
    h.server(Packet::PubRec(PubRec::new(ids[1]))).unwrap();
    h.server(Packet::PubComp(PubComp::new(ids[1]))).unwrap();
    h.server(Packet::PubComp(PubComp::new(id3))).unwrap();
    let done: Vec<RequestId> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::PubAck { request, .. } | Event::PubComp { request, .. } => Some(request),
            _ => None,
        })
        .collect();
    assert_eq!(done, vec![r1, r2, r3]);
}

#[test]
fn lost_session_requeues_unacknowledged_publishes_and_restores_subscriptions() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.session_expiry_interval = 60;
    let mut h = Harness::new(o);
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    let filter = TopicFilter::new("sensors/#").unwrap();
    let r = h
        .conn
        .subscribe(
            vec![Subscription {
                filter: filter.clone(),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            }],
            Default::default(),
        )
        .unwrap();
    let Packet::Subscribe(s) = &h.sent()[0] else {
        panic!()
    };
    h.server(Packet::SubAck(SubAck {
        packet_id: s.packet_id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::GrantedQoS1],
    }))
    .unwrap();
    assert!(matches!(&h.events()[..], [Event::SubAck { request, .. }] if *request == r));
    let p = h.publish("a", "one", QoS::AtLeastOnce);
    h.sent();
    h.conn.connection_lost(ConnectionError::Closed);
    // The broker restarted without persistence: Session Present 0.
    h.establish(ConnAck::new(false, ReasonCode::Success));
    let sent = h.sent();
    let sub = sent.iter().find_map(|p| match p {
        Packet::Subscribe(s) => Some(s.clone()),
        _ => None,
    });
    let sub = sub.expect("subscriptions not restored");
    assert_eq!(sub.subscriptions[0].filter, filter);
    assert_eq!(sub.subscriptions[0].options.qos, QoS::AtLeastOnce);
    let publish = sent.iter().find_map(|p| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    });
    let publish = publish.expect("unacknowledged publish not sent again");
    assert!(!publish.dup, "a new session gets a new message, not a DUP");
    h.server(Packet::PubAck(PubAck::new(publish.packet_id.unwrap())))
        .unwrap();
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::PubAck { request, .. } if *request == p)));
}

/// A Response Topic that is not a topic name is refused when the message
/// is given (the broker would close the connection over it).
#[test]
fn a_response_topic_with_wildcards_is_refused() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    for bad in ["replies/#", "replies/+/x", ""] {
        let mut p = Publish::new(TopicName::try_from("requests").unwrap(), "x");
        p.properties.response_topic = Some(bad.into());
        assert_eq!(
            h.conn.publish(p),
            Err(PublishError::Encode(
                mqtt_codec::EncodeError::InvalidPropertyValue(
                    mqtt_codec::PropertyId::ResponseTopic
                )
            )),
            "{bad:?}"
        );
    }
    assert!(h.sent().is_empty());
    let mut p = Publish::new(TopicName::try_from("requests").unwrap(), "x");
    p.properties.response_topic = Some("replies/pi".into());
    h.conn.publish(p).unwrap();
    let Packet::Publish(sent) = &h.sent()[0] else {
        panic!("a PUBLISH is sent")
    };
    assert_eq!(
        sent.properties.response_topic.as_deref(),
        Some("replies/pi")
    );
}

/// A SUBSCRIBE or UNSUBSCRIBE that cannot be encoded (here a property the
/// packet cannot carry) is not sent: its request fails with the reason, its
/// packet identifier is free again, an UNSUBSCRIBE's filters are not
/// forgotten, and the connection carries on.
#[test]
fn a_request_that_cannot_be_encoded_fails_and_frees_its_packet_id() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    let filter = TopicFilter::new("x").unwrap();
    let subscription = Subscription {
        filter: filter.clone(),
        options: SubscriptionOptions::default(),
    };
    h.conn
        .subscribe(vec![subscription.clone()], Default::default())
        .unwrap();
    let Packet::Subscribe(s) = &h.sent()[0] else {
        panic!("a SUBSCRIBE is sent")
    };
    h.server(Packet::SubAck(SubAck {
        packet_id: s.packet_id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::Success],
    }))
    .unwrap();
    h.events();
    assert_eq!(h.conn.subscriptions().count(), 1);
    let mut properties = mqtt_codec::Properties::default();
    properties.content_type = Some("text/plain".into());
    let bad_sub = h
        .conn
        .subscribe(vec![subscription.clone()], properties.clone())
        .unwrap();
    let bad_unsub = h.conn.unsubscribe(vec![filter], properties).unwrap();
    assert_eq!(h.conn.pending_requests(), 0, "both identifiers are free");
    assert!(h.sent().is_empty(), "nothing written");
    assert_eq!(h.conn.subscriptions().count(), 1, "still subscribed");
    let failed: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::RequestFailed { request, error } => Some((request, error)),
            _ => None,
        })
        .collect();
    let not_allowed = |context| mqtt_codec::EncodeError::PropertyNotAllowed {
        property: mqtt_codec::PropertyId::ContentType,
        context,
    };
    assert_eq!(
        failed,
        [
            (bad_sub, not_allowed("SUBSCRIBE")),
            (bad_unsub, not_allowed("UNSUBSCRIBE"))
        ]
    );
    // The connection carries on.
    assert!(h
        .conn
        .subscribe(vec![subscription], Default::default())
        .is_some());
    assert!(matches!(&h.sent()[..], [Packet::Subscribe(_)]));
}

#[test]
fn unsubscribed_filters_are_not_restored() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    let filter = TopicFilter::new("x").unwrap();
    h.conn.subscribe(
        vec![Subscription {
            filter: filter.clone(),
            options: SubscriptionOptions::default(),
        }],
        Default::default(),
    );
    let Packet::Subscribe(s) = &h.sent()[0] else {
        panic!()
    };
    h.server(Packet::SubAck(SubAck {
        packet_id: s.packet_id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::Success],
    }))
    .unwrap();
    assert_eq!(h.conn.subscriptions().count(), 1);
    h.conn.unsubscribe(vec![filter], Default::default());
    assert_eq!(h.conn.subscriptions().count(), 0);
}

#[test]
fn suback_with_wrong_reason_code_count_is_a_protocol_violation() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.conn.subscribe(
        vec![Subscription {
            filter: TopicFilter::new("x").unwrap(),
            options: SubscriptionOptions::default(),
        }],
        Default::default(),
    );
    let Packet::Subscribe(s) = &h.sent()[0] else {
        panic!()
    };
    let err = h
        .server(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::Success, ReasonCode::Success],
        }))
        .unwrap_err();
    assert!(matches!(
        err,
        ConnectionError::ProtocolViolation(ProtocolViolation::SubAckCount {
            expected: 1,
            got: 2
        })
    ));
    // 5.0: the client tells the broker why it closes.
    let sent = h.sent();
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError)
    );
}

#[test]
fn keep_alive_sends_pingreq_and_times_out_without_pingresp() {
    let mut o = ConnectOptions::new(ProtocolVersion::V3_1_1, "pi");
    o.keep_alive = Duration::from_secs(10);
    let mut h = Harness::new(o);
    h.establish(ConnAck::new(false, ReasonCode::Success));
    let start = h.now;
    assert_eq!(h.conn.poll_timeout(), Some(start + Duration::from_secs(10)));
    h.now = start + Duration::from_secs(5);
    h.conn.handle_timeout(h.now).unwrap();
    assert!(h.sent().is_empty(), "PINGREQ before the keep alive elapsed");
    h.now = start + Duration::from_secs(10);
    h.conn.handle_timeout(h.now).unwrap();
    assert_eq!(h.sent(), vec![Packet::PingReq]);
    h.server(Packet::PingResp).unwrap();
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(10)));
    h.now += Duration::from_secs(10);
    h.conn.handle_timeout(h.now).unwrap();
    assert_eq!(h.sent(), vec![Packet::PingReq]);
    h.now += Duration::from_secs(10);
    let err = h.conn.handle_timeout(h.now).unwrap_err();
    assert_eq!(
        err,
        ConnectionError::KeepAliveTimeout(Duration::from_secs(10))
    );
}

#[test]
fn server_keep_alive_replaces_the_clients() {
    let mut h = Harness::v5("pi");
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.server_keep_alive = Some(5);
    h.establish(ack);
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(5)));
}

#[test]
fn missing_connack_times_out() {
    let mut h = Harness::v5("pi");
    h.conn.connect(h.now);
    h.sent();
    h.now += Duration::from_secs(10);
    let err = h.conn.handle_timeout(h.now).unwrap_err();
    assert!(matches!(err, ConnectionError::ConnectTimeout(_)));
}

#[test]
fn receive_maximum_limits_publishes_in_flight() {
    let mut h = Harness::v5("pi");
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.receive_maximum = Some(2);
    h.establish(ack);
    let reqs: Vec<_> = (0..4)
        .map(|_| h.publish("t", "m", QoS::AtLeastOnce))
        .collect();
    let sent = h.sent();
    assert_eq!(sent.len(), 2, "window of 2 exceeded");
    assert_eq!(h.conn.queued(), 2);
    let Packet::Publish(first) = &sent[0] else {
        panic!()
    };
    h.server(Packet::PubAck(PubAck::new(first.packet_id.unwrap())))
        .unwrap();
    assert_eq!(h.sent().len(), 1, "a freed slot sends the next one");
    assert_eq!(h.conn.queued(), 1);
    assert_eq!(reqs.len(), 4);
}

#[test]
fn packet_identifiers_in_flight_are_never_reused() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    for _ in 0..50 {
        h.publish("t", "m", QoS::AtLeastOnce);
    }
    let mut ids: Vec<u16> = h
        .sent()
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.packet_id.unwrap().get(),
            _ => panic!(),
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50);
}

#[test]
fn offline_publishes_are_queued_up_to_the_limit_and_sent_after_connack() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.max_queued = 2;
    let mut h = Harness::new(o);
    h.publish("t", "1", QoS::AtMostOnce);
    h.publish("t", "2", QoS::AtLeastOnce);
    let mut p = Publish::new(TopicName::try_from("t").unwrap(), "3");
    p.qos = QoS::AtMostOnce;
    assert_eq!(h.conn.publish(p), Err(PublishError::QueueFull { limit: 2 }));
    h.establish(ConnAck::new(false, ReasonCode::Success));
    let sent = h.sent();
    assert_eq!(sent.len(), 2);
}

#[test]
fn broker_limits_from_connack_are_enforced() {
    let mut h = Harness::v5("pi");
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    ack.properties.retain_available = Some(false);
    ack.properties.maximum_packet_size = Some(64);
    h.establish(ack);
    let mut p = Publish::new(TopicName::try_from("t").unwrap(), "x");
    p.qos = QoS::ExactlyOnce;
    assert!(matches!(
        h.conn.publish(p.clone()),
        Err(PublishError::QoSNotSupported { asked: 2, max: 1 })
    ));
    p.qos = QoS::AtMostOnce;
    p.retain = true;
    assert_eq!(
        h.conn.publish(p.clone()),
        Err(PublishError::RetainNotSupported)
    );
    p.retain = false;
    p.payload = Bytes::from(vec![0u8; 100]);
    assert!(matches!(h.conn.publish(p), Err(PublishError::Encode(_))));
}

#[test]
fn incoming_packet_above_the_limit_names_the_setting() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.max_incoming_packet_size = 100;
    let mut h = Harness::new(o);
    let c = h.establish(ConnAck::new(false, ReasonCode::Success));
    assert_eq!(c.properties.maximum_packet_size, Some(100));
    let mut p = Publish::new(TopicName::try_from("t").unwrap(), vec![0u8; 200]);
    p.qos = QoS::AtMostOnce;
    let err = h.server(Packet::Publish(p)).unwrap_err();
    assert!(matches!(
        err,
        ConnectionError::PacketTooLarge { max: 100, .. }
    ));
    assert!(
        err.to_string().contains("max_incoming_packet_size"),
        "{err}"
    );
}

#[test]
fn incoming_topic_aliases_are_resolved() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.topic_alias_maximum = 4;
    let mut h = Harness::new(o);
    let c = h.establish(ConnAck::new(false, ReasonCode::Success));
    assert_eq!(c.properties.topic_alias_maximum, Some(4));
    h.events();
    let mut p = Publish::new(TopicName::try_from("long/topic").unwrap(), "1");
    p.properties.topic_alias = Some(2);
    h.server(Packet::Publish(p)).unwrap();
    let mut q = Publish::new(TopicName::empty(), "2");
    q.properties.topic_alias = Some(2);
    h.server(Packet::Publish(q)).unwrap();
    let topics: Vec<String> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(p) => Some(p.topic.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["long/topic", "long/topic"]);
    let mut bad = Publish::new(TopicName::empty(), "3");
    bad.properties.topic_alias = Some(3);
    assert!(matches!(
        h.server(Packet::Publish(bad)),
        Err(ConnectionError::ProtocolViolation(
            ProtocolViolation::UnknownTopicAlias(3)
        ))
    ));
}

#[test]
fn outgoing_topic_aliases_replace_repeated_topics() {
    let mut h = Harness::v5("pi");
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.topic_alias_maximum = Some(1);
    h.establish(ack);
    h.publish("sensors/kitchen", "1", QoS::AtMostOnce);
    h.publish("sensors/kitchen", "2", QoS::AtMostOnce);
    h.publish("other", "3", QoS::AtMostOnce);
    let sent = h.sent();
    let ps: Vec<&Publish> = sent
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            _ => panic!(),
        })
        .collect();
    assert_eq!(ps[0].topic.as_str(), "sensors/kitchen");
    assert_eq!(ps[0].properties.topic_alias, Some(1));
    assert!(ps[1].topic.is_empty());
    assert_eq!(ps[1].properties.topic_alias, Some(1));
    // Only one alias allowed: the other topic goes in full.
    assert_eq!(ps[2].topic.as_str(), "other");
    assert_eq!(ps[2].properties.topic_alias, None);
}

#[test]
fn an_alias_whose_publish_failed_to_encode_is_not_used() {
    let mut h = Harness::v5("pi");
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.topic_alias_maximum = Some(1);
    ack.properties.maximum_packet_size = Some(64);
    h.establish(ack);
    // Fits the broker's limit without a Topic Alias (with room for the
    // packet identifier a QoS 0 message lacks), not with one.
    let topic = TopicName::try_from("t").unwrap();
    let mut big = Publish::new(topic.clone(), Bytes::new());
    let room = 64 - 2 - big.encoded_len(ProtocolVersion::V5);
    big.payload = Bytes::from(vec![0u8; room]);
    let failed = h.conn.publish(big).unwrap();
    assert!(h.sent().is_empty());
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::PublishFailed { request, .. } if *request == failed)));
    // The broker never learnt alias 1: the next PUBLISH defines it.
    h.publish("t", "small", QoS::AtMostOnce);
    h.publish("t", "small", QoS::AtMostOnce);
    let sent = h.sent();
    let ps: Vec<&Publish> = sent
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            _ => panic!(),
        })
        .collect();
    assert_eq!(ps[0].topic, topic);
    assert_eq!(ps[0].properties.topic_alias, Some(1));
    assert!(ps[1].topic.is_empty());
    assert_eq!(ps[1].properties.topic_alias, Some(1));
}

#[test]
fn manual_acks_hold_puback_until_acknowledged() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.manual_acks = true;
    let mut h = Harness::new(o);
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    h.server(incoming("t", QoS::AtLeastOnce, Some(1), false))
        .unwrap();
    h.server(incoming("t", QoS::ExactlyOnce, Some(2), false))
        .unwrap();
    let ev = h.events();
    assert_eq!(messages(&ev), 2);
    assert!(
        h.sent().is_empty(),
        "acknowledged before the application took it"
    );
    for e in &ev {
        if let Event::Message(p) = e {
            h.conn.acknowledge(p);
        }
    }
    assert_eq!(
        h.sent(),
        vec![
            Packet::PubAck(PubAck::new(id(1))),
            Packet::PubRec(PubRec::new(id(2)))
        ]
    );
}

#[test]
fn broker_exceeding_receive_maximum_is_a_protocol_violation() {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.manual_acks = true;
    o.receive_maximum = Some(1);
    let mut h = Harness::new(o);
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.server(incoming("t", QoS::AtLeastOnce, Some(1), false))
        .unwrap();
    let err = h
        .server(incoming("t", QoS::AtLeastOnce, Some(2), false))
        .unwrap_err();
    assert!(matches!(
        err,
        ConnectionError::ProtocolViolation(ProtocolViolation::ReceiveMaximumExceeded(1))
    ));
}

#[test]
fn server_disconnect_reports_reason_string() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    h.events();
    let mut d = mqtt_codec::Disconnect::new(ReasonCode::SessionTakenOver);
    d.properties.reason_string = Some("another client with id pi".into());
    let err = h.server(Packet::Disconnect(d)).unwrap_err();
    assert!(err.to_string().contains("another client with id pi"));
    assert!(matches!(&h.events()[..], [Event::Disconnected { .. }]));
}

/// A client that answers the challenge "nonce" with "nonce:secret".
fn enhanced_auth_options() -> ConnectOptions {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.enhanced_auth = Some(EnhancedAuth::new(
        "TOY",
        Some(Bytes::from_static(b"hello")),
        |method: &str, data: Option<&[u8]>| {
            assert_eq!(method, "TOY");
            match data {
                Some(b"nonce") => Ok(Some(Bytes::from_static(b"nonce:secret"))),
                other => Err(format!("unexpected challenge {other:?}")),
            }
        },
    ));
    o
}

fn auth(reason_code: ReasonCode, method: Option<&str>, data: &'static [u8]) -> Packet {
    let mut a = mqtt_codec::Auth {
        reason_code,
        properties: mqtt_codec::Properties::default(),
    };
    a.properties.authentication_method = method.map(Into::into);
    a.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Auth(a)
}

/// The broker challenges with "nonce"; the client answers with one AUTH
/// 0x18 carrying the method and "nonce:secret".
fn challenge_is_answered(h: &mut Harness) {
    h.server(auth(
        ReasonCode::ContinueAuthentication,
        Some("TOY"),
        b"nonce",
    ))
    .unwrap();
    let sent = h.sent();
    let [Packet::Auth(reply)] = &sent[..] else {
        panic!("expected one AUTH, got {sent:?}")
    };
    assert_eq!(reply.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(
        reply
            .properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some("TOY")
    );
    assert_eq!(
        reply.properties.authentication_data.as_deref(),
        Some(&b"nonce:secret"[..])
    );
}

#[test]
fn enhanced_auth_answers_challenges_until_connack() {
    let mut h = Harness::new(enhanced_auth_options());
    h.conn.connect(h.now);
    let Some(Packet::Connect(c)) = h.sent().into_iter().next() else {
        panic!("no CONNECT")
    };
    assert_eq!(
        c.properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some("TOY")
    );
    assert_eq!(
        c.properties.authentication_data.as_deref(),
        Some(&b"hello"[..])
    );
    // Two rounds of challenge and answer, then CONNACK.
    for _ in 0..2 {
        challenge_is_answered(&mut h);
        assert!(!h.conn.is_connected());
    }
    h.server(Packet::ConnAck(ConnAck::new(false, ReasonCode::Success)))
        .unwrap();
    assert!(h.conn.is_connected());
}

/// The error with which a client that sent CONNECT with `options` ends
/// the connection when the broker answers with this AUTH.
fn error_on_auth(
    options: ConnectOptions,
    reason_code: ReasonCode,
    method: &str,
    data: &'static [u8],
) -> ConnectionError {
    let mut h = Harness::new(options);
    h.conn.connect(h.now);
    h.sent();
    h.server(auth(reason_code, Some(method), data)).unwrap_err()
}

#[test]
fn enhanced_auth_handler_refusal_ends_the_connection_with_its_reason() {
    let err = error_on_auth(
        enhanced_auth_options(),
        ReasonCode::ContinueAuthentication,
        "TOY",
        b"other",
    );
    assert!(matches!(err, ConnectionError::Authentication(_)), "{err:?}");
    assert!(err.to_string().contains("unexpected challenge"), "{err}");
}

#[test]
fn auth_with_another_method_or_reason_or_without_a_method_in_connect_is_a_violation() {
    let continue_ = ReasonCode::ContinueAuthentication;
    let err = error_on_auth(enhanced_auth_options(), continue_, "OTHER", b"nonce");
    assert!(matches!(
        err,
        ConnectionError::ProtocolViolation(ProtocolViolation::AuthMethodChanged { .. })
    ));
    let err = error_on_auth(
        enhanced_auth_options(),
        ReasonCode::Success,
        "TOY",
        b"nonce",
    );
    assert!(matches!(
        err,
        ConnectionError::ProtocolViolation(ProtocolViolation::UnexpectedAuthReason(_))
    ));
    // [MQTT-4.12.0-6] No method in CONNECT: the broker must not send AUTH.
    let plain = ConnectOptions::new(ProtocolVersion::V5, "pi");
    let err = error_on_auth(plain, continue_, "TOY", b"nonce");
    assert!(matches!(
        err,
        ConnectionError::ProtocolViolation(ProtocolViolation::UnexpectedPacket(_))
    ));
}

/// Connected after one round of enhanced authentication, with nothing
/// left to send and no events pending.
fn authenticated() -> Harness {
    let mut h = Harness::new(enhanced_auth_options());
    h.conn.connect(h.now);
    h.sent();
    h.server(auth(
        ReasonCode::ContinueAuthentication,
        Some("TOY"),
        b"nonce",
    ))
    .unwrap();
    h.server(Packet::ConnAck(ConnAck::new(false, ReasonCode::Success)))
        .unwrap();
    h.sent();
    h.events();
    assert!(h.conn.is_connected());
    h
}

#[test]
fn reauthentication_answers_challenges_and_reports_success() {
    let mut h = authenticated();

    let request = h
        .conn
        .reauthenticate(Some(Bytes::from_static(b"again")))
        .unwrap();
    let sent = h.sent();
    let [Packet::Auth(start)] = &sent[..] else {
        panic!("expected AUTH, got {sent:?}")
    };
    assert_eq!(start.reason_code, ReasonCode::ReAuthenticate);
    assert_eq!(
        start.properties.authentication_data.as_deref(),
        Some(&b"again"[..])
    );
    assert_eq!(h.conn.reauthenticate(None), Err(ReauthError::InProgress));

    challenge_is_answered(&mut h);
    h.server(auth(ReasonCode::Success, Some("TOY"), b"done"))
        .unwrap();
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Reauthenticated { request: r, result: Ok(_) }] if *r == request),
        "{events:?}"
    );
    assert!(h.conn.is_connected());
    // Done: another AUTH now is a protocol violation.
    let err = h
        .server(auth(ReasonCode::Success, Some("TOY"), b"done"))
        .unwrap_err();
    assert!(matches!(
        err,
        ConnectionError::ProtocolViolation(ProtocolViolation::UnexpectedPacket(_))
    ));
}

#[test]
fn a_refused_reauthentication_fails_with_the_brokers_disconnect() {
    let mut h = authenticated();
    let request = h.conn.reauthenticate(None).unwrap();
    h.sent();
    let _ = h.server(Packet::Disconnect(mqtt_codec::Disconnect::new(
        ReasonCode::NotAuthorized,
    )));
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [
                Event::Reauthenticated {
                    request: r,
                    result: Err(ConnectionError::ServerDisconnected {
                        reason: ReasonCode::NotAuthorized,
                        ..
                    })
                },
                Event::Disconnected { .. }
            ] if *r == request
        ),
        "{events:?}"
    );
}

#[test]
fn reauthentication_needs_a_method_and_a_connection() {
    let mut h = Harness::v5("pi");
    h.establish(ConnAck::new(false, ReasonCode::Success));
    assert_eq!(h.conn.reauthenticate(None), Err(ReauthError::NoMethod));
    let mut h = Harness::new(enhanced_auth_options());
    assert_eq!(h.conn.reauthenticate(None), Err(ReauthError::NotConnected));
}

/// A handler with a fresh nonce per exchange that checks the broker's
/// final data, as SCRAM does.
struct Scram {
    nonces: std::sync::atomic::AtomicU32,
}

impl AuthHandler for Scram {
    fn initial(&self, _: &str) -> Option<Bytes> {
        let n = self
            .nonces
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Bytes::from(format!("nonce-{n}")))
    }

    fn challenge(&self, _: &str, _: Option<&[u8]>) -> Result<Option<Bytes>, String> {
        Ok(Some(Bytes::from_static(b"proof")))
    }

    fn finish(&self, _: &str, data: Option<&[u8]>) -> Result<(), String> {
        match data {
            Some(b"server-signature") => Ok(()),
            other => Err(format!("the server signature {other:?} does not verify")),
        }
    }
}

fn scram_options() -> ConnectOptions {
    let mut o = ConnectOptions::new(ProtocolVersion::V5, "pi");
    o.enhanced_auth = Some(EnhancedAuth::new(
        "SCRAM-TOY",
        None,
        Scram {
            nonces: Default::default(),
        },
    ));
    o
}

fn connack_with_auth_data(data: &'static [u8]) -> Packet {
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::ConnAck(ack)
}

#[test]
fn every_connection_starts_with_fresh_initial_data_and_checks_the_final_data() {
    let mut h = Harness::new(scram_options());
    for attempt in 0..2 {
        h.conn.connect(h.now);
        let Some(Packet::Connect(c)) = h.sent().into_iter().next() else {
            panic!("no CONNECT")
        };
        let expected = format!("nonce-{attempt}");
        assert_eq!(
            c.properties.authentication_data.as_deref(),
            Some(expected.as_bytes())
        );
        h.server(connack_with_auth_data(b"server-signature"))
            .unwrap();
        assert!(h.conn.is_connected());
        h.conn.connection_lost(ConnectionError::Closed);
    }
}

#[test]
fn final_data_that_does_not_verify_ends_the_connection() {
    let mut h = Harness::new(scram_options());
    h.conn.connect(h.now);
    h.sent();
    let err = h.server(connack_with_auth_data(b"forged")).unwrap_err();
    assert!(matches!(err, ConnectionError::Authentication(_)), "{err:?}");
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(!h.conn.is_connected());
}
