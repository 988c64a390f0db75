//! The tokio client against the real Mosquitto broker over plain TCP.

mod common;

use std::time::Duration;

use common::{assert_own_messages_arrive, wait_connected, wait_reconnected, within, Mosquitto};
use mqtt_client::{
    Client, ClientOptions, ConnectionState, Error, ProtocolVersion, QoS, ReasonCode,
    ReconnectOptions, TopicName,
};

fn options(m: &Mosquitto, version: ProtocolVersion, id: &str) -> ClientOptions {
    ClientOptions::new("127.0.0.1", m.port)
        .protocol(version)
        .client_id(id)
        .reconnect(
            ReconnectOptions::default()
                .initial_delay(Duration::from_millis(50))
                .max_delay(Duration::from_millis(500)),
        )
}

async fn round_trip(version: ProtocolVersion) {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let (sub, mut messages) = within(5, "connect", Client::connect(options(&m, version, "sub")))
        .await
        .unwrap();
    let suback = within(5, "subscribe", sub.subscribe("t/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
    let (publisher, _) = within(5, "connect", Client::connect(options(&m, version, "pub")))
        .await
        .unwrap();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("qos{}", qos.as_u8());
        let rc = within(
            5,
            "publish",
            publisher.publish(&format!("t/{}", qos.as_u8()), qos, false, payload.clone()),
        )
        .await
        .unwrap();
        assert!(!rc.is_error());
        let m = within(5, "message", messages.recv()).await.unwrap();
        assert_eq!(m.topic.as_str(), format!("t/{}", qos.as_u8()));
        assert_eq!(&m.payload[..], payload.as_bytes());
        assert_eq!(m.qos, qos);
    }
    let unsuback = within(5, "unsubscribe", sub.unsubscribe("t/#")).await;
    assert!(unsuback.is_ok());
    within(5, "disconnect", publisher.disconnect())
        .await
        .unwrap();
    within(5, "disconnect", sub.disconnect()).await.unwrap();
    assert!(within(5, "messages end", messages.recv()).await.is_none());
}

#[tokio::test]
async fn qos_0_1_2_round_trip_over_mqtt_3_1_1() {
    round_trip(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn qos_0_1_2_round_trip_over_mqtt_5() {
    round_trip(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn qos1_publish_without_subscribers_reports_no_matching_subscribers_in_5() {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let (c, _) = within(
        5,
        "connect",
        Client::connect(options(&m, ProtocolVersion::V5, "p")),
    )
    .await
    .unwrap();
    let rc = within(
        5,
        "publish",
        c.publish("nobody", QoS::AtLeastOnce, false, "x"),
    )
    .await
    .unwrap();
    assert_eq!(rc, ReasonCode::NoMatchingSubscribers);
}

#[tokio::test]
async fn retained_message_reaches_a_later_subscriber() {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let topic = format!("retained/{}", version.level());
        let (p, _) = within(5, "connect", Client::connect(options(&m, version, "rp")))
            .await
            .unwrap();
        within(
            5,
            "publish",
            p.publish(&topic, QoS::AtLeastOnce, true, "kept"),
        )
        .await
        .unwrap();
        let (s, mut msgs) = within(5, "connect", Client::connect(options(&m, version, "rs")))
            .await
            .unwrap();
        within(5, "subscribe", s.subscribe(&topic, QoS::AtLeastOnce))
            .await
            .unwrap();
        let msg = within(5, "retained", msgs.recv()).await.unwrap();
        assert!(msg.retain);
        assert_eq!(&msg.payload[..], b"kept");
        p.disconnect().await.unwrap();
        s.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn will_is_published_when_the_client_vanishes() {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (s, mut msgs) = within(5, "connect", Client::connect(options(&m, version, "ws")))
            .await
            .unwrap();
        within(5, "subscribe", s.subscribe("wills/#", QoS::AtLeastOnce))
            .await
            .unwrap();
        let opts = options(&m, version, "dying").will(
            TopicName::try_from("wills/dying").unwrap(),
            "gone",
            QoS::AtLeastOnce,
            false,
        );
        let (dying, _msgs, event_loop) = Client::new(opts);
        let task = tokio::spawn(event_loop.run());
        wait_connected(&dying, "will client connects").await;
        // Vanish without DISCONNECT: the task and its socket are dropped.
        task.abort();
        let _ = task.await;
        let will = within(10, "will", msgs.recv()).await.unwrap();
        assert_eq!(will.topic.as_str(), "wills/dying");
        assert_eq!(&will.payload[..], b"gone");
        s.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn disconnect_sends_disconnect_so_no_will_is_published() {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let (s, mut msgs) = within(
        5,
        "connect",
        Client::connect(options(&m, ProtocolVersion::V5, "ws")),
    )
    .await
    .unwrap();
    within(5, "subscribe", s.subscribe("wills/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    let opts = options(&m, ProtocolVersion::V5, "polite").will(
        TopicName::try_from("wills/polite").unwrap(),
        "gone",
        QoS::AtLeastOnce,
        false,
    );
    let (c, _) = within(5, "connect", Client::connect(opts)).await.unwrap();
    within(5, "disconnect", c.disconnect()).await.unwrap();
    // A marker published after the disconnect arrives, and no will before it.
    let (p, _) = within(
        5,
        "connect",
        Client::connect(options(&m, ProtocolVersion::V5, "mk")),
    )
    .await
    .unwrap();
    within(
        5,
        "publish",
        p.publish("wills/marker", QoS::AtLeastOnce, false, "m"),
    )
    .await
    .unwrap();
    let first = within(5, "marker", msgs.recv()).await.unwrap();
    assert_eq!(first.topic.as_str(), "wills/marker");
    assert!(matches!(
        *c.state().borrow(),
        ConnectionState::Closed { error: None }
    ));
}

#[tokio::test]
async fn unreachable_broker_is_a_dial_error_naming_the_address() {
    let port = common::free_port();
    let err = within(
        10,
        "connect",
        Client::connect(ClientOptions::new("127.0.0.1", port)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Dial { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("is the broker running"), "{text}");
}

#[tokio::test]
async fn connack_refusal_is_reported_by_reason() {
    let Some(m) = Mosquitto::start("allow_anonymous false") else {
        return;
    };
    // Mosquitto 2.0 reads the last allow_anonymous; anonymous clients are refused.
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let err = within(5, "connect", Client::connect(options(&m, version, "anon")))
            .await
            .unwrap_err();
        assert_eq!(
            err.connack_refusal(),
            Some(ReasonCode::NotAuthorized),
            "{version}: {err}"
        );
        assert!(err.to_string().contains("Connection Refused"), "{err}");
    }
}

/// Back-pressure: a task that publishes and awaits each acknowledgement
/// while nobody reads the incoming messages (the channel holds only 2) must
/// not deadlock; afterwards every message arrives, in order.
async fn publishing_while_not_reading(version: ProtocolVersion, sub_qos: QoS) {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let opts = options(&m, version, "bp").message_capacity(2);
    let (c, mut msgs) = within(5, "connect", Client::connect(opts)).await.unwrap();
    within(5, "subscribe", c.subscribe("bp", sub_qos))
        .await
        .unwrap();
    const N: usize = 60;
    for i in 0..N {
        within(
            10,
            "publish while incoming messages are not read",
            c.publish("bp", QoS::AtLeastOnce, false, i.to_string()),
        )
        .await
        .unwrap();
    }
    for i in 0..N {
        let msg = within(10, "message", msgs.recv()).await.unwrap();
        assert_eq!(msg.payload, i.to_string().as_bytes(), "out of order");
    }
}

#[tokio::test]
async fn awaiting_publishes_while_not_reading_messages_does_not_deadlock_in_5() {
    publishing_while_not_reading(ProtocolVersion::V5, QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn awaiting_publishes_while_not_reading_messages_does_not_deadlock_in_3_1_1() {
    publishing_while_not_reading(ProtocolVersion::V3_1_1, QoS::ExactlyOnce).await;
}

#[tokio::test]
async fn awaiting_publishes_while_not_reading_qos0_messages_does_not_deadlock() {
    publishing_while_not_reading(ProtocolVersion::V5, QoS::AtMostOnce).await;
}

#[tokio::test]
async fn subscriptions_are_restored_when_the_broker_lost_the_session() {
    let Some(mut m) = Mosquitto::start("") else {
        return;
    };
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (s, mut msgs) = within(5, "connect", Client::connect(options(&m, version, "clean")))
            .await
            .unwrap();
        within(5, "subscribe", s.subscribe("restore/#", QoS::AtLeastOnce))
            .await
            .unwrap();
        // No persistence: the restarted broker knows nothing of the session.
        m.restart();
        let session_present = wait_reconnected(&s, "subscriber reconnects").await;
        assert!(!session_present);
        let (p, _) = within(
            10,
            "connect",
            Client::connect(options(&m, version, "probe")),
        )
        .await
        .unwrap();
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
        p.disconnect().await.unwrap();
        s.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn persistent_session_survives_a_broker_restart_with_offline_publishes_delivered_once() {
    let Some(mut m) = Mosquitto::start("") else {
        return;
    };
    // Re-start with the persistence directory inside the temp dir.
    let dir = m.path().to_path_buf();
    std::fs::write(
        dir.join("mosquitto.conf"),
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nlog_dest stderr\nlog_type all\n",
            m.port,
            dir.display()
        ),
    )
    .unwrap();
    m.restart();
    // 3.1.1 only: Mosquitto 2.0.11 answers Session Present 0 to a 5.0 client
    // after a restart even with a Session Expiry Interval (the 5.0 resume
    // path is covered by the core's scenario tests).
    for version in [ProtocolVersion::V3_1_1] {
        let persistent = |id: &str| {
            options(&m, version, id)
                .clean_start(version.is_v5())
                .session_expiry_interval(3600)
        };
        let (s, mut msgs) = within(5, "connect", Client::connect(persistent("psub")))
            .await
            .unwrap();
        within(5, "subscribe", s.subscribe("persist/#", QoS::ExactlyOnce))
            .await
            .unwrap();
        let (p, _) = within(5, "connect", Client::connect(persistent("ppub")))
            .await
            .unwrap();
        m.stop();
        // While the broker is down, QoS 1 and 2 publishes wait in the client.
        let mut pending = Vec::new();
        for (i, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let p = p.clone();
            pending.push(tokio::spawn(async move {
                p.publish("persist/x", qos, false, format!("m{i}")).await
            }));
        }
        m.restart();
        assert!(
            wait_reconnected(&s, "subscriber resumes").await,
            "the broker should have kept the subscriber's session"
        );
        for task in pending {
            let rc = within(20, "offline publish completes", task)
                .await
                .unwrap()
                .unwrap();
            assert!(!rc.is_error());
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(within(10, "message", msgs.recv()).await.unwrap());
        }
        let payloads: Vec<String> = got
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect();
        assert_eq!(payloads, ["m0", "m1", "m2"]);
        // Exactly once: nothing more arrives after a marker.
        within(
            5,
            "marker",
            p.publish("persist/end", QoS::AtLeastOnce, false, "end"),
        )
        .await
        .unwrap();
        let next = within(5, "marker", msgs.recv()).await.unwrap();
        assert_eq!(
            next.topic.as_str(),
            "persist/end",
            "a message was delivered twice"
        );
        p.disconnect().await.unwrap();
        s.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn state_reports_reconnecting_with_the_last_error() {
    let Some(mut m) = Mosquitto::start("") else {
        return;
    };
    let (c, _msgs) = within(
        5,
        "connect",
        Client::connect(options(&m, ProtocolVersion::V5, "st")),
    )
    .await
    .unwrap();
    let mut state = c.state();
    m.stop();
    let last_error = within(10, "reconnecting state", async {
        loop {
            if let ConnectionState::Reconnecting { last_error, .. } = &*state.borrow_and_update() {
                return last_error.clone();
            }
            state.changed().await.unwrap();
        }
    })
    .await;
    assert!(!last_error.to_string().is_empty());
    m.restart();
    wait_reconnected(&c, "reconnects").await;
}

#[tokio::test]
async fn incoming_packet_above_the_limit_is_an_error_naming_the_setting() {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    // 3.1.1 has no Maximum Packet Size property, so the broker sends it anyway.
    let opts = options(&m, ProtocolVersion::V3_1_1, "small")
        .max_incoming_packet_size(64)
        .reconnect(ReconnectOptions::disabled());
    let (c, _msgs) = within(5, "connect", Client::connect(opts)).await.unwrap();
    within(5, "subscribe", c.subscribe("big", QoS::AtMostOnce))
        .await
        .unwrap();
    let (p, _) = within(
        5,
        "connect",
        Client::connect(options(&m, ProtocolVersion::V5, "bigp")),
    )
    .await
    .unwrap();
    p.publish("big", QoS::AtMostOnce, false, vec![b'x'; 1000])
        .await
        .unwrap();
    let mut state = c.state();
    let error = within(5, "closed", async {
        loop {
            if let ConnectionState::Closed { error } = &*state.borrow_and_update() {
                return error.clone();
            }
            state.changed().await.unwrap();
        }
    })
    .await
    .expect("an error");
    let text = error.to_string();
    assert!(text.contains("max_incoming_packet_size"), "{text}");
    assert!(text.contains("64 bytes"), "{text}");
}

#[tokio::test]
async fn qos_0_1_2_round_trip_over_mqtt_3_1() {
    round_trip(ProtocolVersion::V3_1).await;
}

#[tokio::test]
async fn mqtt_3_1_without_a_client_id_connects_with_a_generated_one() {
    // Mosquitto refuses an empty 3.1 Client Identifier with CONNACK 2
    // (Identifier rejected); the client generates one as libmosquitto does.
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let (client, mut messages) = within(
        5,
        "connect",
        Client::connect(options(&m, ProtocolVersion::V3_1, "")),
    )
    .await
    .unwrap();
    assert_own_messages_arrive(&client, &mut messages).await;
    within(5, "disconnect", client.disconnect()).await.unwrap();
}
