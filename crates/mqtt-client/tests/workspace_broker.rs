//! The tokio client against the workspace broker (mqtt-broker-core's tokio
//! driver) running in-process on loopback, in MQTT 3.1.1 and 5.0: QoS 0/1/2
//! flows with their reason codes, retained messages, wills, unsubscribe,
//! CONNACK refusals, mutual TLS, subscriptions restored after a broker
//! restart, persistent sessions across a dropped connection, and
//! connections cut in the middle of a QoS 2 exchange (exactly once, both
//! directions).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::cut_proxy::{
    CutProxy, CUT_DOWNSTREAM, CUT_DOWNSTREAM_PUBREL, CUT_UPSTREAM, CUT_UPSTREAM_PUBREL,
};
use common::{assert_own_messages_arrive, client_tls, wait_connected, wait_reconnected, within};
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::BrokerConfig;
use mqtt_client::{
    Client, ClientOptions, ConnectionState, Messages, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, ReconnectOptions, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_tls::gen::{write_set, CertificateAuthority};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// Starts the workspace broker on `addr` (port 0: a free one). Binding the
/// address of a broker that was just shut down is retried briefly.
async fn start_broker_on(config: BrokerConfig, addr: SocketAddr) -> Server {
    within(10, "broker binds", async {
        loop {
            match ServerBuilder::new(config.clone())
                .listener(Listener::tcp(addr))
                .start()
                .await
            {
                Ok(server) => return server,
                Err(e) => {
                    // Bounded poll: the old listener may still be closing.
                    eprintln!("binding {addr} again: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .await
}

async fn start_broker(config: BrokerConfig) -> (Server, u16) {
    let server = start_broker_on(config, "127.0.0.1:0".parse().unwrap()).await;
    let port = server.local_addrs()[0].port();
    (server, port)
}

async fn shutdown(server: Server) {
    within(10, "broker shutdown", server.shutdown()).await;
}

fn options(port: u16, version: ProtocolVersion, id: &str) -> ClientOptions {
    ClientOptions::new("127.0.0.1", port)
        .protocol(version)
        .client_id(id)
        .reconnect(
            ReconnectOptions::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(200)),
        )
}

/// Clean start off and a session expiry, so the broker keeps the session
/// across dropped connections.
fn persistent(port: u16, version: ProtocolVersion, id: &str) -> ClientOptions {
    options(port, version, id)
        .clean_start(false)
        .session_expiry_interval(3600)
}

async fn connect(options: ClientOptions) -> (Client, Messages) {
    within(10, "connect", Client::connect(options))
        .await
        .expect("connects")
}

async fn recv(messages: &mut Messages, what: &str) -> Publish {
    within(10, what, messages.recv())
        .await
        .unwrap_or_else(|| panic!("messages ended before {what}"))
}

async fn wait_reconnecting(client: &Client, what: &str) {
    let mut state = client.state();
    within(10, what, async {
        loop {
            if let ConnectionState::Reconnecting { .. } = *state.borrow_and_update() {
                return;
            }
            state.changed().await.unwrap();
        }
    })
    .await
}

/// Publishes a marker on `topic` and asserts it is the next message: nothing
/// (no duplicate, no message that should not have come) arrived before it.
async fn assert_next_is_marker(p: &Client, messages: &mut Messages, topic: &str) {
    within(
        10,
        "marker publish",
        p.publish(topic, QoS::AtLeastOnce, false, "marker"),
    )
    .await
    .unwrap();
    let next = recv(messages, "marker").await;
    assert_eq!(
        next.topic.as_str(),
        topic,
        "unexpected message before the marker: {next:?}"
    );
}

// ---------------------------------------------------------------- QoS flows

async fn round_trip(version: ProtocolVersion) {
    let (server, port) = start_broker(BrokerConfig::default()).await;
    let (sub, mut messages) = connect(options(port, version, "sub")).await;
    let suback = within(5, "subscribe", sub.subscribe("t/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
    let suback = within(5, "subscribe", sub.subscribe("marker", QoS::AtMostOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GRANTED_QOS_0]);
    let (publisher, _) = connect(options(port, version, "pub")).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("qos{}", qos.as_u8());
        let rc = within(
            5,
            "publish completes",
            publisher.publish(&format!("t/{}", qos.as_u8()), qos, false, payload.clone()),
        )
        .await
        .unwrap();
        assert_eq!(rc, ReasonCode::Success, "{version} QoS {}", qos.as_u8());
        let m = recv(&mut messages, "message").await;
        assert_eq!(m.topic.as_str(), format!("t/{}", qos.as_u8()));
        assert_eq!(&m.payload[..], payload.as_bytes());
        assert_eq!(m.qos, qos);
        assert!(!m.retain && !m.dup);
    }
    // A subscription at QoS 1 downgrades a QoS 2 message.
    within(5, "subscribe", sub.subscribe("low", QoS::AtLeastOnce))
        .await
        .unwrap();
    within(
        5,
        "publish",
        publisher.publish("low", QoS::ExactlyOnce, false, "x"),
    )
    .await
    .unwrap();
    assert_eq!(
        recv(&mut messages, "downgraded").await.qos,
        QoS::AtLeastOnce
    );
    // Unsubscribe: UNSUBACK, and the messages stop.
    let unsuback = within(5, "unsubscribe", sub.unsubscribe("t/#"))
        .await
        .unwrap();
    if version.is_v5() {
        assert_eq!(unsuback.reason_codes, [ReasonCode::Success]);
    }
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let rc = within(5, "publish", publisher.publish("t/after", qos, false, "x"))
            .await
            .unwrap();
        if version.is_v5() && qos != QoS::AtMostOnce {
            // QoS 1: PUBACK's code; QoS 2: PUBREC's code, reported at PUBCOMP.
            assert_eq!(rc, ReasonCode::NoMatchingSubscribers, "QoS {}", qos.as_u8());
        } else {
            assert_eq!(rc, ReasonCode::Success);
        }
    }
    assert_next_is_marker(&publisher, &mut messages, "marker").await;
    if version.is_v5() {
        // Unsubscribing from a filter that has no subscription says so.
        let unsuback = within(5, "unsubscribe", sub.unsubscribe("t/#"))
            .await
            .unwrap();
        assert_eq!(unsuback.reason_codes, [ReasonCode::NoSubscriptionExisted]);
    }
    within(5, "disconnect", publisher.disconnect())
        .await
        .unwrap();
    within(5, "disconnect", sub.disconnect()).await.unwrap();
    assert!(within(5, "messages end", messages.recv()).await.is_none());
    shutdown(server).await;
}

#[tokio::test]
async fn qos_0_1_2_round_trip_and_unsubscribe_over_mqtt_3_1_1() {
    round_trip(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn qos_0_1_2_round_trip_and_unsubscribe_over_mqtt_5() {
    round_trip(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn qos_0_1_2_round_trip_and_unsubscribe_over_mqtt_3_1() {
    round_trip(ProtocolVersion::V3_1).await;
}

#[tokio::test]
async fn mqtt_3_1_without_a_client_id_is_accepted_with_a_generated_one() {
    // The broker refuses an empty 3.1 Client Identifier (Identifier
    // rejected, as Mosquitto); the client generates one.
    let (server, port) = start_broker(BrokerConfig::default()).await;
    let (client, mut messages) = connect(options(port, ProtocolVersion::V3_1, "")).await;
    assert_own_messages_arrive(&client, &mut messages).await;
    within(5, "disconnect", client.disconnect()).await.unwrap();
    shutdown(server).await;
}

/// A SUBSCRIBE with a property it cannot carry fails at once with the
/// reason (the broker would close the connection with a Protocol Error);
/// the client stays connected and the same subscription without it works.
#[tokio::test]
async fn a_subscribe_with_a_property_it_cannot_carry_fails_with_the_reason() {
    let (server, port) = start_broker(BrokerConfig::default()).await;
    let (client, _messages) = connect(options(port, ProtocolVersion::V5, "bad-props")).await;
    let subscription = || {
        vec![Subscription {
            filter: TopicFilter::new("t/#").unwrap(),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }]
    };
    let mut properties = Properties::default();
    properties.message_expiry_interval = Some(60);
    let e = within(
        5,
        "refused subscribe",
        client.subscribe_many(subscription(), properties),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot send this request: property MessageExpiryInterval cannot be sent in SUBSCRIBE"
    );
    let suback = within(
        5,
        "subscribe",
        client.subscribe_many(subscription(), Properties::default()),
    )
    .await
    .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS1]);
    assert!(matches!(
        *client.state().borrow(),
        ConnectionState::Connected { .. }
    ));
    within(5, "disconnect", client.disconnect()).await.unwrap();
    shutdown(server).await;
}

// ------------------------------------------------------- mid-QoS 2 cuts

/// Cuts one connection right after `mode`'s packet of a QoS 2 exchange;
/// the cut client reconnects, resumes its session, and the message reaches
/// the subscriber exactly once while the publish completes once.
async fn exactly_once_after_cut(version: ProtocolVersion, mode: u8) {
    let (server, port) = start_broker(BrokerConfig::default()).await;
    let proxy = CutProxy::start(port).await;
    let subscriber_is_cut = mode == CUT_DOWNSTREAM || mode == CUT_DOWNSTREAM_PUBREL;
    let (sub_port, pub_port) = if subscriber_is_cut {
        (proxy.port, port)
    } else {
        (port, proxy.port)
    };
    let (s, mut msgs) = connect(persistent(sub_port, version, "q2sub")).await;
    within(5, "subscribe", s.subscribe("q2/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    let (p, _) = connect(persistent(pub_port, version, "q2pub")).await;
    proxy.arm(mode);
    let rc = within(
        20,
        "QoS 2 publish completes across the cut",
        p.publish("q2/x", QoS::ExactlyOnce, false, "once"),
    )
    .await
    .unwrap();
    assert_eq!(rc, ReasonCode::Success);
    let first = recv(&mut msgs, "the message").await;
    assert_eq!(first.topic.as_str(), "q2/x");
    assert_eq!(&first.payload[..], b"once");
    assert_eq!(first.qos, QoS::ExactlyOnce);
    // A PUBREL towards the subscriber follows the message, so wait for it.
    within(10, "the connection is cut", proxy.cut()).await;
    assert_eq!(proxy.cuts(), 1);
    // Exactly once: the next message is a marker, not a duplicate.
    within(
        10,
        "marker",
        p.publish("q2/end", QoS::ExactlyOnce, false, "end"),
    )
    .await
    .unwrap();
    let next = recv(&mut msgs, "marker").await;
    assert_eq!(
        next.topic.as_str(),
        "q2/end",
        "QoS 2 message delivered twice: {next:?}"
    );
    let cut_client = if subscriber_is_cut { &s } else { &p };
    assert!(
        matches!(
            *cut_client.state().borrow(),
            ConnectionState::Connected {
                session_present: true
            }
        ),
        "the cut client should have resumed its session: {:?}",
        *cut_client.state().borrow()
    );
    // Still exactly once for a message that goes through without a cut.
    within(
        10,
        "after",
        p.publish("q2/after", QoS::ExactlyOnce, false, "after"),
    )
    .await
    .unwrap();
    assert_eq!(recv(&mut msgs, "after").await.topic.as_str(), "q2/after");
    assert!(msgs.try_recv().is_none());
    within(5, "disconnect", p.disconnect()).await.unwrap();
    within(5, "disconnect", s.disconnect()).await.unwrap();
    shutdown(server).await;
}

#[tokio::test]
async fn qos2_publish_cut_before_pubrec_is_resent_and_delivered_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_UPSTREAM).await;
}

#[tokio::test]
async fn qos2_publish_cut_before_pubrec_is_resent_and_delivered_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_UPSTREAM).await;
}

#[tokio::test]
async fn qos2_pubrel_cut_before_pubcomp_completes_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_UPSTREAM_PUBREL).await;
}

#[tokio::test]
async fn qos2_pubrel_cut_before_pubcomp_completes_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_UPSTREAM_PUBREL).await;
}

#[tokio::test]
async fn qos2_message_to_the_client_cut_before_pubrec_arrives_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_DOWNSTREAM).await;
}

#[tokio::test]
async fn qos2_message_to_the_client_cut_before_pubrec_arrives_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_DOWNSTREAM).await;
}

#[tokio::test]
async fn qos2_pubrel_to_the_client_cut_before_pubcomp_arrives_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_DOWNSTREAM_PUBREL).await;
}

#[tokio::test]
async fn qos2_pubrel_to_the_client_cut_before_pubcomp_arrives_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_DOWNSTREAM_PUBREL).await;
}

// ------------------------------------------------- retained, will, refusal

#[tokio::test]
async fn retained_message_reaches_a_later_subscriber_and_is_cleared_by_an_empty_one() {
    let (server, port) = start_broker(BrokerConfig::default()).await;
    for version in VERSIONS {
        let topic = format!("retained/{}", version.level());
        let (p, _) = connect(options(port, version, "rp")).await;
        within(
            5,
            "publish",
            p.publish(&topic, QoS::AtLeastOnce, true, "kept"),
        )
        .await
        .unwrap();
        let (s, mut msgs) = connect(options(port, version, "rs")).await;
        within(5, "subscribe", s.subscribe(&topic, QoS::AtLeastOnce))
            .await
            .unwrap();
        let msg = recv(&mut msgs, "retained").await;
        assert!(msg.retain, "a retained message is delivered with RETAIN");
        assert_eq!(&msg.payload[..], b"kept");
        assert_eq!(msg.topic.as_str(), topic);
        // A live message on the same topic is not flagged retained.
        within(
            5,
            "publish",
            p.publish(&topic, QoS::AtLeastOnce, false, "live"),
        )
        .await
        .unwrap();
        let live = recv(&mut msgs, "live").await;
        assert!(!live.retain);
        // An empty retained message clears it: a new subscriber gets nothing.
        within(5, "clear", p.publish(&topic, QoS::AtLeastOnce, true, ""))
            .await
            .unwrap();
        let _ = recv(&mut msgs, "the clearing message").await;
        let (s2, mut msgs2) = connect(options(port, version, "rs2")).await;
        within(5, "subscribe", s2.subscribe("retained/#", QoS::AtLeastOnce))
            .await
            .unwrap();
        within(5, "subscribe", s2.subscribe("marker", QoS::AtLeastOnce))
            .await
            .unwrap();
        assert_next_is_marker(&p, &mut msgs2, "marker").await;
        for c in [p, s, s2] {
            within(5, "disconnect", c.disconnect()).await.unwrap();
        }
    }
    shutdown(server).await;
}

#[tokio::test]
async fn will_is_published_when_the_client_vanishes_and_not_after_disconnect() {
    let (server, port) = start_broker(BrokerConfig::default()).await;
    for version in VERSIONS {
        let (s, mut msgs) = connect(options(port, version, "ws")).await;
        within(5, "subscribe", s.subscribe("wills/#", QoS::AtLeastOnce))
            .await
            .unwrap();
        let will = |id: &str| {
            options(port, version, id).will(
                TopicName::try_from(format!("wills/{id}").as_str()).unwrap(),
                "gone",
                QoS::AtLeastOnce,
                false,
            )
        };
        // DISCONNECT discards the will.
        let (polite, _) = connect(will("polite")).await;
        within(5, "disconnect", polite.disconnect()).await.unwrap();
        // Vanish without DISCONNECT: the task and its socket are dropped.
        let (dying, _dying_msgs, event_loop) = Client::new(will("dying"));
        let task = tokio::spawn(event_loop.run());
        wait_connected(&dying, "will client connects").await;
        task.abort();
        let _ = task.await;
        let w = recv(&mut msgs, "will").await;
        assert_eq!(w.topic.as_str(), "wills/dying", "{version}: {w:?}");
        assert_eq!(&w.payload[..], b"gone");
        assert_eq!(w.qos, QoS::AtLeastOnce);
        within(5, "disconnect", s.disconnect()).await.unwrap();
    }
    shutdown(server).await;
}

#[tokio::test]
async fn connack_refusal_is_reported_by_reason() {
    let config = BrokerConfig::default().allow_anonymous(false);
    let (server, port) = start_broker(config).await;
    for version in VERSIONS {
        let err = within(
            10,
            "connect",
            Client::connect(options(port, version, "anon")),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.connack_refusal(),
            Some(ReasonCode::NotAuthorized),
            "{version}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains("Connection Refused"), "{text}");
        assert!(text.contains("Not authorized"), "{text}");
    }
    shutdown(server).await;
}

// ------------------------------------------------------------ mutual TLS

/// CA, server certificate for 127.0.0.1, client certificate `pi`.
fn certificates(dir: &Path) {
    let ca = CertificateAuthority::generate().unwrap();
    let server = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let client = ca.issue_client("pi").unwrap();
    write_set(dir, &ca, &server, &[("pi".to_string(), client)]).unwrap();
}

#[tokio::test]
async fn mutual_tls_round_trip_and_a_client_without_certificate_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    certificates(dir);
    // A verified certificate authenticates the client with anonymous access off.
    let config = BrokerConfig::default().allow_anonymous(false);
    let tls = mqtt_tls::ServerTlsOptions {
        cafile: Some(dir.join("ca.crt")),
        require_certificate: true,
        ..mqtt_tls::ServerTlsOptions::new(dir.join("server.crt"), dir.join("server.key"))
    };
    let server = ServerBuilder::new(config)
        .listener(Listener::tls("127.0.0.1:0".parse().unwrap(), tls).unwrap())
        .start()
        .await
        .unwrap();
    let port = server.local_addrs()[0].port();
    for version in VERSIONS {
        let opts = |id: &str| {
            options(port, version, id)
                .tls_files(&client_tls(dir, true))
                .unwrap()
        };
        let (s, mut msgs) = connect(opts("pi")).await;
        within(5, "subscribe", s.subscribe("ssltopic", QoS::ExactlyOnce))
            .await
            .unwrap();
        let (p, _) = connect(opts("laptop")).await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let rc = within(5, "publish", p.publish("ssltopic", qos, false, "testing"))
                .await
                .unwrap();
            assert_eq!(rc, ReasonCode::Success);
            let msg = recv(&mut msgs, "message").await;
            assert_eq!(&msg.payload[..], b"testing");
            assert_eq!(msg.qos, qos);
        }
        within(5, "disconnect", p.disconnect()).await.unwrap();
        within(5, "disconnect", s.disconnect()).await.unwrap();
        // Without a client certificate the broker refuses the connection.
        let no_cert = options(port, version, "nocert")
            .tls_files(&client_tls(dir, false))
            .unwrap()
            .reconnect(ReconnectOptions::disabled());
        let err = within(10, "connect without certificate", Client::connect(no_cert))
            .await
            .unwrap_err();
        eprintln!("{version} without a client certificate: {err}");
        assert!(
            err.connack_refusal().is_none(),
            "refused in TLS, not CONNACK: {err}"
        );
    }
    shutdown(server).await;
}

// ------------------------------------------------------ restart and sessions

async fn subscriptions_restored(version: ProtocolVersion) {
    let (server, port) = start_broker(BrokerConfig::default()).await;
    let addr = server.local_addrs()[0];
    let (s, mut msgs) = connect(options(port, version, "clean")).await;
    within(5, "subscribe", s.subscribe("restore/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    // A new broker on the same address knows nothing of the session.
    shutdown(server).await;
    wait_reconnecting(&s, "subscriber notices the broker left").await;
    let server = start_broker_on(BrokerConfig::default(), addr).await;
    let session_present = wait_reconnected(&s, "subscriber reconnects").await;
    assert!(!session_present, "the new broker has no session");
    let (p, _) = connect(options(port, version, "probe")).await;
    // The restored SUBSCRIBE may still be in flight: probe until one
    // arrives, within a deadline.
    let got = within(10, "a message on the restored subscription", async {
        loop {
            p.publish("restore/x", QoS::AtLeastOnce, false, "after restart")
                .await
                .unwrap();
            if let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(200), msgs.recv()).await
            {
                return msg;
            }
        }
    })
    .await;
    assert_eq!(got.topic.as_str(), "restore/x");
    within(5, "disconnect", p.disconnect()).await.unwrap();
    within(5, "disconnect", s.disconnect()).await.unwrap();
    shutdown(server).await;
}

#[tokio::test]
async fn subscriptions_are_restored_after_the_broker_restarts_without_state_in_3_1_1() {
    subscriptions_restored(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn subscriptions_are_restored_after_the_broker_restarts_without_state_in_5() {
    subscriptions_restored(ProtocolVersion::V5).await;
}

async fn persistent_session_across_a_drop(version: ProtocolVersion) {
    let (server, port) = start_broker(BrokerConfig::default()).await;
    let proxy = CutProxy::start(port).await;
    let (s, mut msgs) = connect(persistent(proxy.port, version, "psub")).await;
    within(5, "subscribe", s.subscribe("persist/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    let (p, _) = connect(options(port, version, "ppub")).await;
    // Drop the subscriber's connection and keep it offline.
    proxy.drop_all(true);
    wait_reconnecting(&s, "subscriber loses its connection").await;
    // The broker queues QoS 1 messages for the offline session.
    for i in 0..3 {
        let rc = within(
            5,
            "publish while the subscriber is offline",
            p.publish("persist/x", QoS::AtLeastOnce, false, format!("m{i}")),
        )
        .await
        .unwrap();
        assert_eq!(rc, ReasonCode::Success, "the session is a subscriber");
    }
    proxy.unblock();
    assert!(
        wait_connected(&s, "subscriber resumes").await,
        "the broker should have kept the subscriber's session"
    );
    let mut payloads = Vec::new();
    for _ in 0..3 {
        let m = recv(&mut msgs, "queued message").await;
        assert_eq!(m.topic.as_str(), "persist/x");
        payloads.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    assert_eq!(payloads, ["m0", "m1", "m2"]);
    // Exactly once here: nothing more arrives before a marker.
    assert_next_is_marker(&p, &mut msgs, "persist/end").await;
    within(5, "disconnect", p.disconnect()).await.unwrap();
    within(5, "disconnect", s.disconnect()).await.unwrap();
    shutdown(server).await;
}

#[tokio::test]
async fn persistent_session_survives_a_dropped_connection_with_queued_messages_in_3_1_1() {
    persistent_session_across_a_drop(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn persistent_session_survives_a_dropped_connection_with_queued_messages_in_5() {
    persistent_session_across_a_drop(ProtocolVersion::V5).await;
}

// ------------------------------------------------- 5.0 enhanced authentication

/// The broker's side of a toy challenge-response method: the CONNECT must
/// carry "hello", the answer to "challenge" must be "challenge:secret".
struct ChallengeAuth;

impl mqtt_broker_core::Authenticator for ChallengeAuth {
    fn authenticate(
        &self,
        _: &mqtt_broker_core::AuthRequest<'_>,
    ) -> mqtt_broker_core::AuthDecision {
        mqtt_broker_core::AuthDecision::Deny(ReasonCode::NotAuthorized)
    }

    fn authenticate_enhanced(
        &self,
        _: &mqtt_broker_core::AuthRequest<'_>,
        ex: &mut mqtt_broker_core::AuthExchange,
    ) -> mqtt_broker_core::AuthStep {
        use mqtt_broker_core::AuthStep;
        if ex.method != "TOY-CHALLENGE" {
            return AuthStep::Fail(ReasonCode::BadAuthenticationMethod);
        }
        match (ex.step, ex.data.as_deref()) {
            (0, Some(b"hello")) => AuthStep::Continue(bytes::Bytes::from_static(b"challenge")),
            (1, Some(b"challenge:secret")) => AuthStep::Success(None),
            _ => AuthStep::Fail(ReasonCode::NotAuthorized),
        }
    }
}

async fn start_challenge_broker() -> (Server, u16) {
    let server = within(10, "broker binds", async {
        ServerBuilder::new(BrokerConfig::default())
            .authenticator(Box::new(ChallengeAuth))
            .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
            .start()
            .await
            .unwrap()
    })
    .await;
    let port = server.local_addrs()[0].port();
    (server, port)
}

fn toy_auth(secret: &'static str) -> mqtt_client::EnhancedAuth {
    mqtt_client::EnhancedAuth::new(
        "TOY-CHALLENGE",
        Some(bytes::Bytes::from_static(b"hello")),
        move |_: &str, challenge: Option<&[u8]>| {
            let mut answer = challenge.unwrap_or_default().to_vec();
            answer.extend_from_slice(b":");
            answer.extend_from_slice(secret.as_bytes());
            Ok(Some(answer.into()))
        },
    )
}

#[tokio::test]
async fn enhanced_authentication_with_the_right_answer_connects() {
    let (server, port) = start_challenge_broker().await;
    let (client, mut messages) =
        connect(options(port, ProtocolVersion::V5, "toy").enhanced_auth(toy_auth("secret"))).await;
    assert_own_messages_arrive(&client, &mut messages).await;
    within(5, "disconnect", client.disconnect()).await.unwrap();
    shutdown(server).await;
}

#[tokio::test]
async fn enhanced_authentication_with_a_wrong_answer_is_refused_by_reason() {
    let (server, port) = start_challenge_broker().await;
    let Err(err) = within(
        5,
        "connect",
        Client::connect(options(port, ProtocolVersion::V5, "toy").enhanced_auth(toy_auth("wrong"))),
    )
    .await
    else {
        panic!("a wrong answer is refused");
    };
    assert_eq!(
        err.connack_refusal(),
        Some(ReasonCode::NotAuthorized),
        "{err}"
    );
    // Without enhanced authentication the same broker refuses too.
    let Err(err) = within(
        5,
        "connect",
        Client::connect(options(port, ProtocolVersion::V5, "plain")),
    )
    .await
    else {
        panic!("no method is refused");
    };
    assert_eq!(
        err.connack_refusal(),
        Some(ReasonCode::NotAuthorized),
        "{err}"
    );
    shutdown(server).await;
}

#[tokio::test]
async fn reauthentication_succeeds_and_a_refused_one_fails_with_the_reason() {
    let (server, port) = start_challenge_broker().await;
    let (client, mut messages) =
        connect(options(port, ProtocolVersion::V5, "toy").enhanced_auth(toy_auth("secret"))).await;
    within(
        5,
        "re-authentication",
        client.reauthenticate(Some(bytes::Bytes::from_static(b"hello"))),
    )
    .await
    .unwrap();
    // Still connected and working.
    assert_own_messages_arrive(&client, &mut messages).await;
    // The broker refuses other first data, with DISCONNECT.
    let err = within(
        5,
        "refused re-authentication",
        client.reauthenticate(Some(bytes::Bytes::from_static(b"bye"))),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            mqtt_client::Error::Connection(
                mqtt_client::proto::ConnectionError::ServerDisconnected {
                    reason: ReasonCode::NotAuthorized,
                    ..
                }
            )
        ),
        "{err}"
    );
    // The client reconnects, authenticating afresh: a publish made now
    // completes once it is back (the session is not persistent, so the
    // subscription is restored by the client).
    within(
        10,
        "publish after the reconnect",
        client.publish("own", QoS::AtLeastOnce, false, "y"),
    )
    .await
    .unwrap();
    assert_eq!(
        &recv(&mut messages, "message after the reconnect")
            .await
            .payload[..],
        b"y"
    );
    within(5, "disconnect", client.disconnect()).await.unwrap();
    shutdown(server).await;
}

// ------------------------------------------------------------ WebSockets

#[tokio::test]
async fn over_websockets_plain_and_with_mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    certificates(dir);
    let tls = mqtt_tls::ServerTlsOptions {
        cafile: Some(dir.join("ca.crt")),
        require_certificate: true,
        ..mqtt_tls::ServerTlsOptions::new(dir.join("server.crt"), dir.join("server.key"))
    };
    let loopback = "127.0.0.1:0".parse().unwrap();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback).websockets())
        .listener(Listener::tls(loopback, tls).unwrap().websockets())
        .listener(Listener::tcp(loopback))
        .start()
        .await
        .unwrap();
    let [ws, wss, tcp] = [0, 1, 2].map(|i| server.local_addrs()[i].port());
    for version in VERSIONS {
        // ws:// and wss:// clients each receive what a TCP client publishes.
        let (plain, mut plain_msgs) = connect(options(ws, version, "ws").websocket("mqtt")).await;
        let secure_opts = options(wss, version, "wss")
            .tls_files(&client_tls(dir, true))
            .unwrap()
            .websocket("/mqtt");
        let (secure, mut secure_msgs) = connect(secure_opts).await;
        for c in [&plain, &secure] {
            within(5, "subscribe", c.subscribe("pi/+", QoS::ExactlyOnce))
                .await
                .unwrap();
        }
        let (publisher, _) = connect(options(tcp, version, "tcp")).await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            within(
                5,
                "publish",
                publisher.publish("pi/temp", qos, false, "21.5"),
            )
            .await
            .unwrap();
            for msgs in [&mut plain_msgs, &mut secure_msgs] {
                let m = recv(msgs, "message over WebSockets").await;
                assert_eq!((&m.payload[..], m.qos), (&b"21.5"[..], qos));
            }
        }
        // And they publish over WebSockets too.
        assert_own_messages_arrive(&plain, &mut plain_msgs).await;
        for c in [plain, secure, publisher] {
            within(5, "disconnect", c.disconnect()).await.unwrap();
        }
    }
    // A WebSocket client at a plain MQTT port is told what is wrong.
    let wrong = options(tcp, ProtocolVersion::V5, "wrong")
        .websocket("/mqtt")
        .reconnect(ReconnectOptions::disabled());
    let err = within(10, "refused upgrade", Client::connect(wrong))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("WebSocket upgrade to ws://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("protocol websockets"), "{err}");
    shutdown(server).await;
}
