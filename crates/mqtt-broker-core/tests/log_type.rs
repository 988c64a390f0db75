//! `log_type` and `connection_messages` decide which lines appear, as in
//! Mosquitto 2.0 (`Config::log_enabled`, what `laptop-broker` filters with).
mod util;

use mqtt_broker_core::config::Config;
use mqtt_codec::QoS;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;
use util::*;

/// The lines a short session logs under the configuration `conf`.
fn lines_under(conf: &str) -> Vec<String> {
    let (config, _) = Config::parse_str(conf, "test.conf").unwrap();
    let out = Captured::default();
    let writer = out.clone();
    let by_config = tracing_subscriber::filter::filter_fn(move |meta| {
        config.log_enabled(meta.target(), *meta.level())
    });
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_level(false)
            .without_time()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(by_config),
    );
    tracing::subscriber::with_default(subscriber, || {
        let mut h = Harness::default_config();
        let s = h.connect(V3, "sensor");
        h.subscribe(s, "a/b", QoS::AtLeastOnce);
        h.publish(s, "a/b", "m", QoS::AtMostOnce);
        h.send(
            s,
            mqtt_codec::Packet::Unsubscribe(mqtt_codec::Unsubscribe {
                packet_id: pid(9),
                properties: Default::default(),
                filters: vec![filter("a/b")],
            }),
        );
        h.drop_transport(s);
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    text.lines().map(|l| l.trim().to_string()).collect()
}

fn has(lines: &[String], start: &str) -> bool {
    lines.iter().any(|l| l.starts_with(start))
}

// One test function: tracing caches callsite interest globally.
#[test]
fn log_type_and_connection_messages_choose_the_lines() {
    // Mosquitto's default: error, warning, notice, information.
    let l = lines_under("");
    assert!(has(&l, "New client connected from"), "{l:?}");
    assert!(has(&l, "Client sensor closed its connection."), "{l:?}");
    assert!(!has(&l, "Received PUBLISH"), "no debug lines: {l:?}");
    assert!(!has(&l, "sensor 1 a/b"), "no subscribe lines: {l:?}");

    // connection_messages false: the connection lines go.
    let l = lines_under("connection_messages false\n");
    assert!(!has(&l, "New connection from"), "{l:?}");
    assert!(!has(&l, "New client connected from"), "{l:?}");
    assert!(!has(&l, "Client sensor closed its connection."), "{l:?}");

    // log_type subscribe and unsubscribe alone: only those lines.
    let l = lines_under("log_type subscribe\nlog_type unsubscribe\n");
    assert_eq!(l, ["sensor 1 a/b", "sensor a/b"], "{l:?}");

    // log_type debug: the packet lines.
    let l = lines_under("log_type debug\n");
    assert!(has(&l, "Received PUBLISH from sensor"), "{l:?}");

    // log_type none: nothing.
    let l = lines_under("log_type none\n");
    assert!(l.is_empty(), "{l:?}");

    // log_type all (what -v turns on): everything.
    let l = lines_under("log_type all\n");
    for line in [
        "New client connected from",
        "sensor 1 a/b",
        "sensor a/b",
        "Received PUBLISH",
    ] {
        assert!(has(&l, line), "{line}: {l:?}");
    }
}
