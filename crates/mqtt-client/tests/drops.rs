//! Connections cut in the middle of a QoS 2 exchange, through a proxy in
//! front of a real Mosquitto: the client reconnects, resumes the session,
//! re-sends with DUP, and the message arrives exactly once.

mod common;

use std::time::Duration;

use common::cut_proxy::{CutProxy, CUT_DOWNSTREAM, CUT_UPSTREAM};
use common::{within, Mosquitto};
use mqtt_client::{Client, ClientOptions, ConnectionState, ProtocolVersion, QoS, ReconnectOptions};

fn persistent(port: u16, version: ProtocolVersion, id: &str) -> ClientOptions {
    ClientOptions::new("127.0.0.1", port)
        .protocol(version)
        .client_id(id)
        .clean_start(version.is_v5())
        .session_expiry_interval(3600)
        .reconnect(
            ReconnectOptions::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(200)),
        )
}

async fn exactly_once_after_cut(version: ProtocolVersion, mode: u8) {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let proxy = CutProxy::start(m.port).await;
    // The side whose connection is cut goes through the proxy.
    let (sub_port, pub_port) = if mode == CUT_DOWNSTREAM {
        (proxy.port, m.port)
    } else {
        (m.port, proxy.port)
    };
    let (s, mut msgs) = within(
        5,
        "connect",
        Client::connect(persistent(sub_port, version, "q2sub")),
    )
    .await
    .unwrap();
    within(5, "subscribe", s.subscribe("q2/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    let (p, _) = within(
        5,
        "connect",
        Client::connect(persistent(pub_port, version, "q2pub")),
    )
    .await
    .unwrap();
    proxy.arm(mode);
    let rc = within(
        20,
        "QoS 2 publish completes across the cut",
        p.publish("q2/x", QoS::ExactlyOnce, false, "once"),
    )
    .await
    .unwrap();
    assert!(!rc.is_error());
    let first = within(10, "message", msgs.recv()).await.unwrap();
    assert_eq!(&first.payload[..], b"once");
    assert_eq!(proxy.cuts(), 1, "the connection was not cut");
    // Exactly once: the next message is a marker, not a duplicate.
    within(
        10,
        "marker",
        p.publish("q2/end", QoS::ExactlyOnce, false, "end"),
    )
    .await
    .unwrap();
    let next = within(10, "marker", msgs.recv()).await.unwrap();
    assert_eq!(
        next.topic.as_str(),
        "q2/end",
        "QoS 2 message delivered twice"
    );
    let cut_client = if mode == CUT_DOWNSTREAM { &s } else { &p };
    assert!(
        matches!(
            *cut_client.state().borrow(),
            ConnectionState::Connected {
                session_present: true
            }
        ),
        "the cut client should have resumed its session"
    );
    p.disconnect().await.unwrap();
    s.disconnect().await.unwrap();
}

#[tokio::test]
async fn qos2_publish_cut_before_pubrec_is_resent_and_delivered_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_UPSTREAM).await;
}

#[tokio::test]
async fn qos2_publish_cut_before_pubrec_is_resent_and_delivered_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_UPSTREAM).await;
}

#[tokio::test]
async fn qos2_message_redelivered_after_a_cut_reaches_the_application_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_DOWNSTREAM).await;
}

#[tokio::test]
async fn qos2_message_redelivered_after_a_cut_reaches_the_application_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_DOWNSTREAM).await;
}
