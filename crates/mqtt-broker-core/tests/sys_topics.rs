//! `$SYS/broker/...` as Mosquitto 2.0.11 publishes it: every topic of
//! `mqtt_broker_core::sys::SYS_TOPICS` read by a `$SYS/#` subscriber, the
//! values after known traffic, the load averages, publication on change,
//! the heap source, and the documentation's table of the same list.
mod util;

use mqtt_broker_core::sys::{
    listener_topic, SysPublish, SysTopic, SYS_LISTENER_TOPICS, SYS_TOPICS,
};
use mqtt_broker_core::{Broker, BrokerConfig, HeapUsage};
use mqtt_codec::{Packet, Publish, QoS};
use std::collections::BTreeMap;
use std::time::Duration;
use util::*;

const INTERVAL: Duration = Duration::from_secs(10);

fn config() -> BrokerConfig {
    BrokerConfig::default().sys_interval(INTERVAL)
}

/// Topic -> (payload, retain flag) of every `$SYS` message `id` got.
fn by_topic(ps: &[Publish]) -> BTreeMap<String, (String, bool)> {
    ps.iter()
        .map(|p| {
            (
                p.topic.to_string(),
                (String::from_utf8_lossy(&p.payload).into_owned(), p.retain),
            )
        })
        .collect()
}

/// Subscribes a new 5.0 client to `$SYS/#` and returns what the retained
/// messages say now.
fn read_sys(h: &mut Harness, name: &str) -> BTreeMap<String, (String, bool)> {
    let s = h.connect(V5, name);
    h.subscribe(s, "$SYS/#", QoS::AtMostOnce);
    by_topic(&h.recv_publishes(s))
}

fn num(values: &BTreeMap<String, (String, bool)>, topic: &str) -> u64 {
    let v = &values[topic].0;
    v.parse()
        .unwrap_or_else(|_| panic!("{topic} is not a decimal integer: {v:?}"))
}

#[test]
fn every_documented_sys_topic_is_published_retained_and_read_by_a_sys_subscriber() {
    let broker = Broker::new(config()).with_heap_source(|| {
        Some(HeapUsage {
            current: 4096,
            maximum: 8192,
        })
    });
    let mut h = Harness::with_broker(broker);
    let p = h.connect(V3, "p");
    h.advance(INTERVAL);
    let values = read_sys(&mut h, "dashboard");
    for t in SYS_TOPICS {
        let Some((value, retain)) = values.get(t.topic) else {
            panic!("{} was not received; got {:?}", t.topic, values.keys());
        };
        assert!(t.retained && *retain, "{} is retained", t.topic);
        let load = t.publish == SysPublish::LoadChange;
        if load {
            // The first update publishes 0.00 (Mosquitto's format: two decimals).
            assert_eq!(value, "0.00", "{}", t.topic);
        } else if t.topic == "$SYS/broker/uptime" {
            assert_eq!(value, "10 seconds");
        } else if t.topic == "$SYS/broker/version" {
            assert_eq!(
                *value,
                format!("mqtt-broker-core version {}", env!("CARGO_PKG_VERSION"))
            );
        } else {
            num(&values, t.topic);
        }
    }
    assert_eq!(values.len(), SYS_TOPICS.len(), "nothing beyond the table");
    assert_eq!(num(&values, "$SYS/broker/heap/current"), 4096);
    assert_eq!(num(&values, "$SYS/broker/heap/maximum"), 8192);
    // At the update: "p" was the one client.
    assert_eq!(num(&values, "$SYS/broker/clients/connected"), 1);
    assert_eq!(num(&values, "$SYS/broker/clients/active"), 1);
    assert_eq!(num(&values, "$SYS/broker/clients/total"), 1);
    assert_eq!(num(&values, "$SYS/broker/clients/inactive"), 0);
    h.disconnect(p);
}

#[test]
fn without_a_heap_source_the_heap_topics_carry_the_memory_account() {
    let mut h = Harness::new(config());
    let first = h.connect(V3, "first");
    h.advance(INTERVAL);
    let values = read_sys(&mut h, "dashboard");
    // The first update was published before any message was held but the
    // `$SYS` ones it stores (retained): what the account held then.
    let current = num(&values, "$SYS/broker/heap/current");
    let maximum = num(&values, "$SYS/broker/heap/maximum");
    assert!(current <= maximum, "{current} <= {maximum}");
    let stats = h.broker.stats();
    assert_eq!(stats.heap_current, Some(h.broker.memory().current() as u64));
    assert_eq!(stats.heap_maximum, Some(h.broker.memory().maximum() as u64));
    assert!(
        h.broker.memory().current() > 0,
        "the retained $SYS messages count"
    );
    assert_eq!(values.len(), SYS_TOPICS.len());
    h.disconnect(first);
}

#[test]
fn sys_values_follow_known_traffic() {
    let mut h = Harness::new(config());
    let sub = h.connect(V5, "sub");
    h.subscribe(sub, "t/#", QoS::AtLeastOnce);
    h.subscribe(sub, "$share/g/s/#", QoS::AtMostOnce);
    let p = h.connect(V5, "p");
    // Payload bytes received: 5 + 3 + 7 = 15; sent to "sub": 5 + 3 (the
    // retained "r/x" has no subscriber).
    h.publish(p, "t/a", "hello", QoS::AtMostOnce);
    h.publish(p, "t/b", "abc", QoS::AtLeastOnce);
    h.publish_retain(p, "r/x", "retain!", QoS::AtMostOnce, true);
    let got = h.recv_publishes(sub);
    assert_eq!(got.len(), 2);
    h.ack_all(sub, &got);
    h.advance(INTERVAL);
    let v = read_sys(&mut h, "dashboard");
    assert_eq!(num(&v, "$SYS/broker/publish/messages/received"), 3);
    assert_eq!(num(&v, "$SYS/broker/publish/bytes/received"), 15);
    assert_eq!(num(&v, "$SYS/broker/publish/messages/sent"), 2);
    assert_eq!(num(&v, "$SYS/broker/publish/bytes/sent"), 8);
    assert_eq!(num(&v, "$SYS/broker/subscriptions/count"), 2);
    assert_eq!(num(&v, "$SYS/broker/shared_subscriptions/count"), 1);
    assert_eq!(num(&v, "$SYS/broker/publish/messages/dropped"), 0);
    assert_eq!(num(&v, "$SYS/broker/clients/maximum"), 2);
    // When the update ran, the one retained message was "r/x": the $SYS
    // ones are stored after the values are read.
    assert_eq!(num(&v, "$SYS/broker/retained messages/count"), 1);
    assert_eq!(num(&v, "$SYS/broker/store/messages/count"), 1);
    assert_eq!(num(&v, "$SYS/broker/messages/stored"), 1);
    assert_eq!(num(&v, "$SYS/broker/store/messages/bytes"), 7);
    let st = h.broker.stats();
    // Received: 2 CONNECT, 2 SUBSCRIBE, 3 PUBLISH and 1 PUBACK, all before
    // the update; the dashboard's CONNECT and SUBSCRIBE came after it.
    assert_eq!(num(&v, "$SYS/broker/messages/received"), 8);
    assert_eq!(st.messages_received, 10);
    assert_eq!(st.connects_received, 3);
    assert!(num(&v, "$SYS/broker/bytes/received") > 0);
    assert!(num(&v, "$SYS/broker/bytes/sent") <= st.bytes_sent);
    // Now the $SYS messages are retained too, and counted at the next update.
    assert_eq!(st.retained_messages as usize, 1 + SYS_TOPICS.len());
}

#[test]
fn values_are_published_when_they_change_and_the_uptime_every_interval() {
    let mut h = Harness::new(config());
    let s = h.connect(V3, "s");
    h.subscribe(s, "$SYS/broker/#", QoS::AtMostOnce);
    h.advance(INTERVAL);
    let first = by_topic(&h.recv_publishes(s));
    assert_eq!(first.len(), SYS_TOPICS.len(), "every topic");
    // Nothing happened in between but the $SYS messages to "s" themselves.
    h.advance(INTERVAL);
    let second = by_topic(&h.recv_publishes(s));
    assert_eq!(second["$SYS/broker/uptime"].0, "20 seconds");
    for unchanged in [
        "$SYS/broker/version",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/total",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/publish/messages/received",
        "$SYS/broker/load/publish/received/1min",
        "$SYS/broker/load/connections/15min",
    ] {
        assert!(
            !second.contains_key(unchanged),
            "{unchanged} again: {second:?}"
        );
    }
    // What grew is published again: the PUBLISH packets sent to "s".
    let sent: u64 = second["$SYS/broker/publish/messages/sent"]
        .0
        .parse()
        .unwrap();
    assert_eq!(sent as usize, first.len());
    let p = h.connect(V3, "p");
    h.advance(INTERVAL);
    let third = by_topic(&h.recv_publishes(s));
    assert_eq!(third["$SYS/broker/clients/connected"].0, "2");
    assert_eq!(third["$SYS/broker/clients/total"].0, "2");
    assert_eq!(third["$SYS/broker/clients/maximum"].0, "2");
    h.disconnect(p);
}

/// Mosquitto's `calc_load`: with `n` more in the counter over `t`
/// seconds, rate = n * 60 / t per minute, and the average moves from `a`
/// to rate + exp(-t / window) * (a - rate).
fn expected_load(previous: f64, n: u64, t: f64, window: f64) -> f64 {
    let rate = n as f64 * 60.0 / t;
    rate + (-t / window).exp() * (previous - rate)
}

#[test]
fn load_averages_are_mosquittos_moving_averages_of_rates_per_minute() {
    let mut h = Harness::new(config());
    let s = h.connect(V3, "s");
    h.subscribe(s, "$SYS/broker/load/publish/received/+", QoS::AtMostOnce);
    let p = h.connect(V3, "p");
    h.advance(INTERVAL);
    let first = by_topic(&h.recv_publishes(s));
    for w in ["1min", "5min", "15min"] {
        assert_eq!(
            first[&format!("$SYS/broker/load/publish/received/{w}")].0,
            "0.00"
        );
    }
    // Six PUBLISH packets in ten seconds: 36 a minute.
    for _ in 0..6 {
        h.publish(p, "x", "1", QoS::AtMostOnce);
    }
    h.advance(INTERVAL);
    let second = by_topic(&h.recv_publishes(s));
    let mut averages = Vec::new();
    for (w, window) in [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)] {
        let want = expected_load(0.0, 6, 10.0, window);
        averages.push(want);
        assert_eq!(
            second[&format!("$SYS/broker/load/publish/received/{w}")].0,
            format!("{want:.2}"),
            "{w}"
        );
    }
    // 36 * (1 - e^(-1/6)), by hand: 5.53.
    assert_eq!(second["$SYS/broker/load/publish/received/1min"].0, "5.53");
    // No traffic for the next interval: the averages decay.
    h.advance(INTERVAL);
    let third = by_topic(&h.recv_publishes(s));
    for ((w, window), prev) in [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)]
        .into_iter()
        .zip(averages)
    {
        let want = expected_load(prev, 0, 10.0, window);
        assert!(want < prev);
        let topic = format!("$SYS/broker/load/publish/received/{w}");
        if prev - want >= 0.01 {
            assert_eq!(third[&topic].0, format!("{want:.2}"), "{w}");
        } else {
            // Moved by less than 0.01 (the 15-minute one): not published.
            assert!(!third.contains_key(&topic), "{w}");
        }
    }
    assert!(!third.contains_key("$SYS/broker/load/publish/received/15min"));
}

#[test]
fn an_expired_session_counts_in_clients_expired() {
    let mut h = Harness::new(config());
    let mut c = connect(V5, "gone");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(5);
    let (id, _) = h.connect_with(c);
    h.disconnect(id);
    assert_eq!(h.broker.stats().clients_total, 1);
    h.advance(Duration::from_secs(6));
    h.advance(Duration::from_secs(4));
    let v = read_sys(&mut h, "dashboard");
    assert_eq!(num(&v, "$SYS/broker/clients/expired"), 1);
    assert_eq!(num(&v, "$SYS/broker/clients/total"), 0);
    assert_eq!(num(&v, "$SYS/broker/clients/maximum"), 1);
}

/// A table of docs/sys-and-metrics.md, made from `topics`.
fn docs_table(topics: &[SysTopic]) -> String {
    let mut t =
        String::from("| topic | meaning | unit | retained | published |\n|---|---|---|---|---|\n");
    for s in topics {
        let when = match s.publish {
            SysPublish::Always => "every interval",
            SysPublish::OnChange => "on change",
            SysPublish::LoadChange => "first update, then on a change of 0.01 or more",
            SysPublish::HeapSourceOnChange => "on change",
            SysPublish::PerTlsListenerOnChange => "on change, for each TLS listener",
            _ => "other",
        };
        t.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            s.topic,
            s.meaning,
            s.unit,
            if s.retained { "yes" } else { "no" },
            when
        ));
    }
    t
}

#[test]
fn the_docs_list_every_sys_topic_as_the_table_says() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sys-and-metrics.md");
    let docs = std::fs::read_to_string(path).expect("docs/sys-and-metrics.md");
    let table = docs_table(SYS_TOPICS);
    assert!(
        docs.contains(&table),
        "docs/sys-and-metrics.md must hold this table (generated from SYS_TOPICS):\n{table}"
    );
    let table = docs_table(SYS_LISTENER_TOPICS);
    assert!(
        docs.contains(&table),
        "docs/sys-and-metrics.md must hold this table (generated from SYS_LISTENER_TOPICS):\n{table}"
    );
}

#[test]
fn tls_days_left_is_published_retained_per_listener_when_it_changes() {
    let mut h = Harness::new(config());
    h.broker.set_tls_days_left(8883, 10);
    h.broker.set_tls_days_left(8884, -2);
    assert_eq!(h.broker.tls_days_left(8883), Some(10));
    let s = h.connect(V5, "s");
    h.subscribe(s, "$SYS/broker/tls/#", QoS::AtMostOnce);
    h.advance(INTERVAL);
    let first = by_topic(&h.recv_publishes(s));
    let topic = |port| listener_topic(SYS_LISTENER_TOPICS[0].topic, port);
    assert_eq!(
        topic(8883),
        "$SYS/broker/tls/listener/8883/certificate/days_left"
    );
    // Delivered live to "s" (retain off, as for any live message).
    assert_eq!(first[&topic(8883)].0, "10");
    assert_eq!(first[&topic(8884)].0, "-2");
    assert_eq!(first.len(), 2, "{first:?}");
    // Unchanged: not published again; changed: published.
    h.broker.set_tls_days_left(8883, 10);
    h.advance(INTERVAL);
    assert!(h.recv_publishes(s).is_empty());
    h.broker.set_tls_days_left(8883, 9);
    h.advance(INTERVAL);
    let third = by_topic(&h.recv_publishes(s));
    assert_eq!(third.len(), 1, "{third:?}");
    assert_eq!(third[&topic(8883)].0, "9");
    // A later subscriber gets the retained values.
    let late = read_sys(&mut h, "late");
    assert_eq!(late[&topic(8883)], ("9".to_string(), true));
    assert_eq!(late[&topic(8884)], ("-2".to_string(), true));
}

#[test]
fn packets_counted_in_sys_are_the_ones_on_the_wire() {
    // bytes/received counts what the decoder consumed, PUBLISH included.
    let mut h = Harness::new(config());
    let p = h.connect(V3, "p");
    let before = h.broker.stats().bytes_received;
    let packet = Packet::Publish(publish("a/b", "xyz", QoS::AtMostOnce, false, None));
    let mut buf = bytes::BytesMut::new();
    packet
        .encode(mqtt_codec::ProtocolVersion::V3_1_1, &mut buf)
        .unwrap();
    h.send(p, packet);
    assert_eq!(h.broker.stats().bytes_received - before, buf.len() as u64);
    assert_eq!(h.broker.stats().publish_bytes_received, 3);
}
