//! Mosquitto's `-v` log lines, word for word.
mod util;

use mqtt_broker_core::ConnectionInfo;
use mqtt_codec::{Packet, QoS};
use std::time::Duration;
use util::*;

fn capture_logs(f: impl FnOnce()) -> Vec<String> {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_target(false)
        .with_level(false)
        .without_time()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    text.lines().map(|l| l.trim_start().to_string()).collect()
}

// One test function in this binary: tracing caches callsite interest
// globally, so a parallel test without a subscriber could hide events.
#[test]
fn log_lines_use_mosquittos_wording() {
    connection_and_packet_lines();
    keep_alive_timeout_line();
}

fn connection_and_packet_lines() {
    let lines = capture_logs(|| {
        let mut h = Harness::default_config();
        let id = h.open_with(ConnectionInfo::new(addr(51234)));
        let mut c = connect(V3, "mosqpub/28552");
        c.username = Some("user".into());
        h.send_connect(id, c);
        h.subscribe(id, "ssltopic", QoS::AtMostOnce);
        h.publish(id, "ssltopic", "testing", QoS::AtMostOnce);
        h.send(id, Packet::PingReq);
        h.recv(id);
        h.disconnect(id);
        let other = h.connect(V3, "other");
        h.drop_transport(other);
    });
    let expected = [
        "New connection from 127.0.0.1:51234 on port 0.",
        "New client connected from 127.0.0.1:51234 as mosqpub/28552 (p2, c1, k60, u'user').",
        "Sending CONNACK to mosqpub/28552 (0, 0)",
        "Received SUBSCRIBE from mosqpub/28552",
        "\tssltopic (QoS 0)",
        "Sending SUBACK to mosqpub/28552",
        "Received PUBLISH from mosqpub/28552 (d0, q0, r0, m0, 'ssltopic', ... (7 bytes))",
        "Sending PUBLISH to mosqpub/28552 (d0, q0, r0, m0, 'ssltopic', ... (7 bytes))",
        "Received PINGREQ from mosqpub/28552",
        "Sending PINGRESP to mosqpub/28552",
        "Received DISCONNECT from mosqpub/28552",
        "Client mosqpub/28552 disconnected.",
        "Client other closed its connection.",
    ];
    for e in expected {
        assert!(
            lines.iter().any(|l| l == e.trim_start()),
            "missing {e:?} in {lines:#?}"
        );
    }
}

fn keep_alive_timeout_line() {
    let lines = capture_logs(|| {
        let mut h = Harness::default_config();
        let mut c = connect(V3, "sleepy");
        c.keep_alive = 2;
        h.connect_with(c);
        h.advance(Duration::from_secs(3));
    });
    assert!(
        lines
            .iter()
            .any(|l| l == "Client sleepy has exceeded timeout, disconnecting."),
        "{lines:#?}"
    );
}
