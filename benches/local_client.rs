//! Publishing through an in-process client (`Server::local_client`) against
//! publishing through a loopback TCP client, to the same remote TCP
//! subscriber of the same broker, in one run: `cargo bench --bench
//! local_client`.
//!
//! One tokio driver (`ServerBuilder`, a plain TCP listener on 127.0.0.1)
//! in the bench's own runtime; one mqtt-client subscriber over loopback TCP
//! on `bench/#` at QoS 1. The publishers differ only in the path into the
//! broker: `in-process` is a `LocalClient` (packets handed to the broker,
//! nothing encoded or decoded, no socket), `loopback` is an mqtt-client
//! `Client` over TCP (encode, write, the connection task's read and
//! decode). Both speak MQTT 5.0 with 64-byte payloads.
//!
//! - `batch/*`: 1000 publishes in flight at once (each its own task, as
//!   `benches/client.rs` does), done when the subscriber received all of
//!   them: end-to-end throughput.
//! - `one_by_one/qos0`: one publish, then wait until the subscriber has it:
//!   the latency of one message publish -> remote subscriber.
//!
//! Each on a multi-threaded runtime (`multi_thread`) and on one thread
//! (`current_thread`).
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mqtt_broker_core::driver::{Listener, LocalClient, LocalOptions, ServerBuilder};
use mqtt_broker_core::mqtt_codec::QoS;
use mqtt_broker_core::BrokerConfig;
use tokio::runtime::Runtime;

const BATCH: usize = 1000;
const PAYLOAD: &[u8] = &[0x42; 64];
/// A batch that does not arrive within this is a failed run, not a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// The two publishers under test.
#[derive(Clone)]
enum Publisher {
    InProcess(LocalClient),
    Loopback(mqtt_client::Client),
}

impl Publisher {
    async fn publish(&self, topic: &'static str, qos: QoS) {
        match self {
            Publisher::InProcess(c) => c
                .publish(topic, PAYLOAD, qos, false)
                .await
                .expect("in-process publish"),
            Publisher::Loopback(c) => {
                let qos = match qos {
                    QoS::AtMostOnce => mqtt_client::QoS::AtMostOnce,
                    QoS::AtLeastOnce => mqtt_client::QoS::AtLeastOnce,
                    QoS::ExactlyOnce => mqtt_client::QoS::ExactlyOnce,
                };
                c.publish(topic, qos, false, PAYLOAD)
                    .await
                    .map(|_| ())
                    .expect("loopback publish")
            }
        }
    }
}

/// Waits until the subscriber received `n` messages.
async fn received(messages: &mut mqtt_client::Messages, n: usize) {
    let all = async {
        for _ in 0..n {
            messages.recv().await.expect("subscriber connected");
        }
    };
    tokio::time::timeout(DEADLINE, all)
        .await
        .expect("every message reached the subscriber");
}

async fn batch(
    publisher: &Publisher,
    topic: &'static str,
    qos: QoS,
    messages: &mut mqtt_client::Messages,
) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..BATCH {
        let p = publisher.clone();
        set.spawn(async move { p.publish(topic, qos).await });
    }
    received(messages, BATCH).await;
    while let Some(r) = set.join_next().await {
        r.expect("publish task");
    }
}

fn local_vs_loopback(c: &mut Criterion) {
    // Both flavours: on the multi-threaded runtime the broker, the clients
    // and the bench spread over the cores (wake-ups cross threads); on one
    // thread the figures are the work per message.
    let multi = Runtime::new().expect("tokio runtime");
    run(c, "multi_thread", &multi);
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    run(c, "current_thread", &single);
}

fn run(c: &mut Criterion, flavour: &str, rt: &Runtime) {
    let (server, subscriber, mut messages, local, loopback) = rt.block_on(async {
        let server = ServerBuilder::new(BrokerConfig::default())
            .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
            .start()
            .await
            .expect("broker starts");
        let port = server.local_addrs()[0].port();
        let (subscriber, messages) = mqtt_client::Client::connect(
            mqtt_client::ClientOptions::new("127.0.0.1", port).client_id("bench-sub"),
        )
        .await
        .expect("subscriber connects");
        subscriber
            .subscribe("bench/#", mqtt_client::QoS::AtLeastOnce)
            .await
            .expect("subscribed");
        let (local, _local_messages) = server
            .local_client(LocalOptions::new("bench-in-process"))
            .await
            .expect("in-process client connects");
        let (loopback, _loopback_messages) = mqtt_client::Client::connect(
            mqtt_client::ClientOptions::new("127.0.0.1", port).client_id("bench-loopback"),
        )
        .await
        .expect("loopback client connects");
        (
            server,
            subscriber,
            messages,
            Publisher::InProcess(local),
            Publisher::Loopback(loopback),
        )
    });

    let mut group = c.benchmark_group(format!("publish_to_tcp_subscriber/{flavour}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for (name, qos) in [("qos0", QoS::AtMostOnce), ("qos1", QoS::AtLeastOnce)] {
        for (who, publisher, topic) in [
            ("in-process", &local, "bench/in-process"),
            ("loopback", &loopback, "bench/loopback"),
        ] {
            group.bench_function(format!("batch/{name}/{who}"), |b| {
                b.iter(|| rt.block_on(batch(publisher, topic, qos, &mut messages)))
            });
        }
    }
    group.throughput(Throughput::Elements(1));
    for (who, publisher, topic) in [
        ("in-process", &local, "bench/in-process"),
        ("loopback", &loopback, "bench/loopback"),
    ] {
        group.bench_function(format!("one_by_one/qos0/{who}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    publisher.publish(topic, QoS::AtMostOnce).await;
                    received(&mut messages, 1).await;
                })
            })
        });
    }
    group.finish();
    rt.block_on(async {
        drop(subscriber);
        server.shutdown().await;
    });
}

criterion_group!(benches, local_vs_loopback);
criterion_main!(benches);
