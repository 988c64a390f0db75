//! The broker core's hot paths, through its public API (no sockets):
//!
//! - `topic_matching/<n>`: route one QoS 0 PUBLISH against `n` subscriptions
//!   (10 / 10,000 / 1,000,000) made of exact filters with `+` and `#`
//!   mixed in, plus `site/#` and `site/+/4/+`, so three match (two for
//!   `n = 10`): the cost of walking the subscription tree once per message.
//! - `fan_out/<n>`: route one QoS 0 PUBLISH to `n` subscribers (1 / 100 /
//!   10,000), each getting its own encoded copy with the payload shared.
//!
//! Throughput is in messages (PUBLISH packets routed) per second; for
//! `fan_out` multiply by `n` for deliveries per second. Each iteration also
//! plays the driver: it drains the events and takes every connection's
//! outgoing bytes, so buffers do not grow.
//!
//!     cargo bench --bench broker -- --warm-up-time 1 --measurement-time 3

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionId, ConnectionInfo, Event};
use mqtt_codec::{
    Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName,
};
use std::time::{Duration, Instant};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

fn config() -> BrokerConfig {
    BrokerConfig::default()
        .sys_interval(Duration::ZERO)
        .max_transmit_bytes(usize::MAX)
}

fn connect(broker: &mut Broker, now: Instant, n: u32) -> ConnectionId {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], (n % 60_000) as u16 + 1));
    let id = broker.connection_opened(now, ConnectionInfo::new(addr));
    let mut c = Connect::new(V3, format!("client-{n}"));
    c.keep_alive = 0;
    let p = Packet::Connect(Box::new(c));
    let len = p.encoded_len(V3);
    broker.handle_packet(now, id, p, len);
    id
}

fn subscribe(
    broker: &mut Broker,
    now: Instant,
    id: ConnectionId,
    filters: impl Iterator<Item = String>,
) {
    let subscriptions: Vec<Subscription> = filters
        .map(|f| Subscription {
            filter: TopicFilter::new(f).unwrap(),
            options: SubscriptionOptions::qos(QoS::AtMostOnce),
        })
        .collect();
    if subscriptions.is_empty() {
        return;
    }
    let s = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        subscriptions,
    };
    let p = Packet::Subscribe(s);
    let len = p.encoded_len(V3);
    broker.handle_packet(now, id, p, len);
}

/// Plays the driver: takes every connection's bytes.
fn drain(broker: &mut Broker, now: Instant) -> usize {
    let mut bytes = 0;
    while let Some(ev) = broker.poll_event() {
        if let Event::Transmit(id) = ev {
            if let Some(b) = broker.take_transmit(now, id) {
                bytes += b.len();
            }
        }
    }
    bytes
}

/// Filter `i` of a population, all distinct: mostly exact
/// `site/{a}/{b}/{c}` filters, every 10th starting with `+`, every 100th
/// ending in `#`.
fn nth_filter(i: u32) -> String {
    let (a, b, c) = (i % 97, (i / 97) % 101, i / (97 * 101));
    match i % 100 {
        0 => format!("site/{a}/{b}/{c}/#"),
        x if x % 10 == 5 => format!("+/{a}/{b}/{c}"),
        _ => format!("site/{a}/{b}/{c}"),
    }
}

fn bench_topic_matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_matching");
    group.throughput(Throughput::Elements(1));
    for &n in &[10u32, 10_000, 1_000_000] {
        if n >= 1_000_000 {
            group.sample_size(10);
        }
        let now = Instant::now();
        let mut broker = Broker::new(config());
        // 1,000 filters per subscribing session.
        let per_client = 1_000u32;
        let clients = n.div_ceil(per_client);
        for k in 0..clients {
            let id = connect(&mut broker, now, k);
            let start = k * per_client;
            let end = (start + per_client).min(n);
            subscribe(&mut broker, now, id, (start..end).map(nth_filter));
        }
        let wild = connect(&mut broker, now, clients);
        subscribe(
            &mut broker,
            now,
            wild,
            ["site/#".to_string(), "site/+/4/+".to_string()].into_iter(),
        );
        let publisher = connect(&mut broker, now, u32::MAX);
        drain(&mut broker, now);
        assert_eq!(broker.stats().subscriptions, u64::from(n) + 2);
        let publish = Publish::new(
            TopicName::try_from("site/3/4/0").unwrap(),
            Bytes::from_static(b"21.5"),
        );
        let len = Packet::Publish(publish.clone()).encoded_len(V3);
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                broker.handle_packet(now, publisher, Packet::Publish(publish.clone()), len);
                black_box(drain(&mut broker, now));
            })
        });
    }
    group.finish();
}

fn bench_fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    group.throughput(Throughput::Elements(1));
    for &n in &[1u32, 100, 10_000] {
        let now = Instant::now();
        let mut broker = Broker::new(config());
        for k in 0..n {
            let id = connect(&mut broker, now, k);
            subscribe(
                &mut broker,
                now,
                id,
                std::iter::once("sensors/+/temperature".to_string()),
            );
        }
        let publisher = connect(&mut broker, now, u32::MAX);
        drain(&mut broker, now);
        let publish = Publish::new(
            TopicName::try_from("sensors/kitchen/temperature").unwrap(),
            Bytes::from_static(b"{\"celsius\":21.5}"),
        );
        if n >= 10_000 {
            group.sample_size(20);
        }
        let len = Packet::Publish(publish.clone()).encoded_len(V3);
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                broker.handle_packet(now, publisher, Packet::Publish(publish.clone()), len);
                black_box(drain(&mut broker, now));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_topic_matching, bench_fan_out);
criterion_main!(benches);
