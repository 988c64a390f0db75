//! Authentication decided later (`AuthDecision::Defer` + `complete_auth`),
//! and the events a driver hands to the program.
mod util;

use mqtt_broker_core::{
    AuthDecision, AuthRequest, Authenticator, Broker, BrokerConfig, DisconnectReason, DropReason,
    Event, OwnedAuthRequest,
};
use mqtt_codec::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use std::time::Duration;
use util::*;

/// Defers every decision.
struct Later;

impl Authenticator for Later {
    fn authenticate(&self, _: &AuthRequest<'_>) -> AuthDecision {
        AuthDecision::Defer
    }
}

fn deferred_broker(config: BrokerConfig) -> Harness {
    Harness::with_broker(Broker::new(config).with_authenticator(Box::new(Later)))
}

fn pending_requests(h: &Harness) -> Vec<(mqtt_broker_core::ConnectionId, OwnedAuthRequest)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::AuthPending {
                connection,
                request,
            } => Some((*connection, (**request).clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_deferred_connect_waits_for_its_decision_while_others_are_served() {
    for v in [V3, V5] {
        let mut h = deferred_broker(BrokerConfig::default());
        let slow = h.open();
        let mut c = connect(v, "slow");
        c.username = Some("pi".into());
        c.password = Some("raspberry".into());
        h.set_version(slow, v);
        h.send(slow, Packet::Connect(Box::new(c)));
        // No CONNACK yet; the request is handed out.
        assert!(h.recv(slow).is_empty());
        let reqs = pending_requests(&h);
        assert_eq!(reqs.len(), 1);
        let (id, req) = &reqs[0];
        assert_eq!(*id, slow);
        assert_eq!(req.client_id, "slow");
        assert_eq!(req.username.as_deref(), Some("pi"));
        assert_eq!(req.password.as_deref(), Some(&b"raspberry"[..]));

        // Another client is decided and works in the meantime.
        let fast = h.open();
        h.set_version(fast, v);
        h.send(fast, Packet::Connect(Box::new(connect(v, "fast"))));
        assert!(h.broker.complete_auth(h.now, fast, AuthDecision::Allow));
        h.pump();
        assert!(
            matches!(h.recv(fast).as_slice(), [Packet::ConnAck(a)] if a.reason_code == ReasonCode::Success)
        );
        h.subscribe(fast, "t", QoS::AtMostOnce);

        // The slow client sent a PUBLISH right after its CONNECT (it need
        // not wait for CONNACK): held, then handled after the CONNACK.
        h.send(
            slow,
            Packet::Publish(publish("t", "early", QoS::AtMostOnce, false, None)),
        );
        assert!(h.recv(slow).is_empty());
        assert!(h.recv_publishes(fast).is_empty());
        assert!(h.broker.complete_auth(h.now, slow, AuthDecision::Allow));
        h.pump();
        assert!(
            matches!(h.recv(slow).first(), Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::Success)
        );
        assert_eq!(Harness::payloads(&h.recv_publishes(fast)), ["early"]);
        // Answered once only.
        assert!(!h.broker.complete_auth(h.now, slow, AuthDecision::Allow));
    }
}

#[test]
fn a_deferred_refusal_is_a_refusing_connack() {
    for v in [V3, V5] {
        let mut h = deferred_broker(BrokerConfig::default());
        let id = h.open();
        h.set_version(id, v);
        h.send(id, Packet::Connect(Box::new(connect(v, "x"))));
        assert!(h.broker.complete_auth(
            h.now,
            id,
            AuthDecision::Deny(ReasonCode::BadUserNameOrPassword)
        ));
        h.pump();
        match h.recv(id).as_slice() {
            [Packet::ConnAck(a)] => assert_eq!(a.reason_code, ReasonCode::BadUserNameOrPassword),
            other => panic!("{other:?}"),
        }
        assert!(h.is_closed(id));
    }
}

#[test]
fn a_decision_that_never_comes_is_a_refusal_with_a_reason_after_auth_timeout() {
    // Longer than the CONNECT time-out: the deferred wait has its own.
    let config = BrokerConfig::default()
        .auth_timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(1));
    let mut h = deferred_broker(config);
    let id = h.open();
    h.set_version(id, V5);
    h.send(id, Packet::Connect(Box::new(connect(V5, "x"))));
    h.advance_by_timers(Duration::from_secs(2));
    assert!(!h.is_closed(id), "closed by the CONNECT time-out");
    h.advance_by_timers(Duration::from_secs(2));
    match h.recv(id).as_slice() {
        [Packet::ConnAck(a)] => {
            assert_eq!(a.reason_code, ReasonCode::ServerUnavailable);
            let why = a.properties.reason_string.clone().unwrap_or_default();
            assert!(why.contains("no answer within 3 s"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(h.is_closed(id));
    // A late answer finds nobody.
    assert!(!h.broker.complete_auth(h.now, id, AuthDecision::Allow));
}

#[test]
fn a_client_that_floods_before_its_decision_is_closed() {
    let mut h = deferred_broker(BrokerConfig::default());
    let id = h.open();
    h.send(id, Packet::Connect(Box::new(connect(V3, "x"))));
    for _ in 0..100 {
        h.send(id, Packet::PingReq);
    }
    assert!(h.is_closed(id));
}

#[test]
fn connect_and_disconnect_events_carry_address_user_and_reason_code() {
    let mut h = Harness::default_config();
    let mut c = connect(V5, "pi");
    c.username = Some("pi-user".into());
    let (id, _) = h.connect_with(c);
    let remote = h.events.iter().find_map(|e| match e {
        Event::ClientConnected {
            client_id,
            username,
            remote_addr,
            protocol,
            ..
        } if client_id == "pi" => {
            assert_eq!(username.as_deref(), Some("pi-user"));
            assert_eq!(*protocol, ProtocolVersion::V5);
            Some(*remote_addr)
        }
        _ => None,
    });
    let remote = remote.expect("connected event");
    h.send(
        id,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::DisconnectWithWillMessage,
            ..Default::default()
        }),
    );
    let found = h.events.iter().any(|e| {
        matches!(e, Event::ClientDisconnected { client_id, reason, reason_code, username, remote_addr, .. }
            if client_id == "pi"
                && *reason == DisconnectReason::ClientDisconnected
                && *reason_code == Some(ReasonCode::DisconnectWithWillMessage)
                && username.as_deref() == Some("pi-user")
                && *remote_addr == remote)
    });
    assert!(found, "{:?}", h.events);

    // A connection that just ends has no reason code.
    let other = h.connect(V3, "gone");
    h.drop_transport(other);
    assert!(h.events.iter().any(|e| matches!(e, Event::ClientDisconnected { client_id, reason: DisconnectReason::ConnectionLost, reason_code: None, .. } if client_id == "gone")));
}

#[test]
fn subscribe_unsubscribe_and_drops_are_reported_only_when_asked() {
    let config = BrokerConfig::default().max_queued_messages(1);
    let mut h = Harness::new(config);
    let quiet = h.connect(V3, "quiet");
    h.subscribe(quiet, "a", QoS::AtMostOnce);
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e, Event::Subscribed { .. })));

    h.broker.report_activity(true);
    let id = h.connect(V5, "sub");
    h.subscribe_with(id, "x/#", SubscriptionOptions::qos(QoS::AtLeastOnce), None);
    let subscribed = h.events.iter().find_map(|e| match e {
        Event::Subscribed {
            client_id, filters, ..
        } if client_id == "sub" => Some(filters.clone()),
        _ => None,
    });
    assert_eq!(
        subscribed.expect("subscribed event"),
        [("x/#".to_string(), Ok(QoS::AtLeastOnce))]
    );

    // A subscriber that does not take its bytes: its queue (1) fills, the
    // rest is dropped and reported.
    h.stalled.insert(id);
    let publisher = h.connect(V3, "pub");
    for i in 0..30u32 {
        let _ = i;
        let _ = h.publish(publisher, "x/1", "m", QoS::AtLeastOnce);
    }
    let drops = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::MessageDropped { client_id, topic, reason: DropReason::QueueFull } if client_id == "sub" && topic == "x/1"))
        .count();
    assert!(drops > 0, "{:?}", h.events);
    h.unstall(id);

    h.send(
        id,
        Packet::Unsubscribe(mqtt_codec::Unsubscribe {
            packet_id: pid(9),
            properties: Default::default(),
            filters: vec![filter("x/#")],
        }),
    );
    assert!(h.events.iter().any(|e| matches!(e, Event::Unsubscribed { client_id, filters, .. } if client_id == "sub" && filters == &["x/#".to_string()])));
}
