//! Client publish throughput against a local Mosquitto, mqtt-client side by
//! side with rumqttc, at QoS 0 and QoS 1, in one run:
//! `cargo bench --bench client`.
//!
//! Each iteration publishes a batch of messages and waits until all of them
//! are done: written (QoS 0) or acknowledged with PUBACK (QoS 1). Both
//! clients speak MQTT 3.1.1 over loopback TCP to the same broker, with the
//! same in-flight window (100 QoS 1 messages, `INFLIGHT`). mqtt-client runs
//! twice: `publish` (each message its own awaited future, spawned as a
//! task: the simple form) and `start_publish` (one task hands over the
//! whole batch, then awaits the handles).
//! Skipped with a printed reason when `/usr/sbin/mosquitto` is missing.
//!
//! docs/benchmarks.md has the numbers, the command and the machine.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;

const BATCH: usize = 1000;
/// QoS 1 messages in flight, for both clients (rumqttc's default too).
const INFLIGHT: u16 = 100;
const PAYLOAD: &[u8] = &[0x42; 64];

struct Mosquitto {
    child: Child,
    port: u16,
    _dir: std::path::PathBuf,
}

impl Mosquitto {
    fn start() -> Option<Self> {
        let bin = "/usr/sbin/mosquitto";
        if !std::path::Path::new(bin).exists() {
            eprintln!("SKIPPED: {bin} is not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("mqtt-client-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"),
        )
        .ok()?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// mqtt-client, `publish`: BATCH publishes in flight at once, each awaited
/// to completion in its own task.
async fn ours_awaited(client: &mqtt_client::Client, qos: mqtt_client::QoS) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..BATCH {
        let c = client.clone();
        set.spawn(async move { c.publish("bench/ours", qos, false, PAYLOAD).await });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task").expect("publish");
    }
}

/// mqtt-client, `start_publish`: one task hands over BATCH messages (waiting
/// only when the window and the queue behind it are full), then awaits the
/// handles.
async fn ours_handles(client: &mqtt_client::Client, qos: mqtt_client::QoS) {
    let mut handles = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        handles.push(
            client
                .start_publish("bench/ours", qos, false, PAYLOAD)
                .await
                .expect("queued"),
        );
    }
    for handle in handles {
        handle.await.expect("publish");
    }
}

/// rumqttc: BATCH publishes queued, the event loop polled until all are
/// written (QoS 0) or acknowledged (QoS 1).
async fn theirs(
    client: &rumqttc::AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    qos: rumqttc::QoS,
) {
    use rumqttc::{Event, Incoming, Outgoing};
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            for _ in 0..BATCH {
                client
                    .publish("bench/theirs", qos, false, PAYLOAD)
                    .await
                    .expect("publish");
            }
        })
    };
    let mut done = 0;
    while done < BATCH {
        match eventloop.poll().await.expect("rumqttc event loop") {
            Event::Incoming(Incoming::PubAck(_)) if qos == rumqttc::QoS::AtLeastOnce => done += 1,
            Event::Outgoing(Outgoing::Publish(_)) if qos == rumqttc::QoS::AtMostOnce => done += 1,
            _ => {}
        }
    }
    publisher.await.expect("publisher task");
}

fn client_publish(c: &mut Criterion) {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let rt = Runtime::new().expect("tokio runtime");
    let (client, _messages) = rt
        .block_on(mqtt_client::Client::connect(
            mqtt_client::ClientOptions::new("127.0.0.1", broker.port)
                .protocol(mqtt_client::ProtocolVersion::V3_1_1)
                .client_id("bench-ours")
                .max_inflight(INFLIGHT),
        ))
        .expect("mqtt-client connects");
    let mut options = rumqttc::MqttOptions::new("bench-theirs", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_inflight(INFLIGHT);
    let (their_client, mut eventloop) = rumqttc::AsyncClient::new(options, 1024);
    // Run rumqttc's event loop until CONNACK.
    rt.block_on(async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_)) =
                eventloop.poll().await.expect("rumqttc connects")
            {
                break;
            }
        }
    });

    let mut group = c.benchmark_group("client_publish_mosquitto");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for (name, ours_qos, their_qos) in [
        (
            "qos0",
            mqtt_client::QoS::AtMostOnce,
            rumqttc::QoS::AtMostOnce,
        ),
        (
            "qos1",
            mqtt_client::QoS::AtLeastOnce,
            rumqttc::QoS::AtLeastOnce,
        ),
    ] {
        group.bench_function(format!("mqtt-client-publish/{name}"), |b| {
            b.iter(|| rt.block_on(ours_awaited(&client, ours_qos)))
        });
        group.bench_function(format!("mqtt-client-start_publish/{name}"), |b| {
            b.iter(|| rt.block_on(ours_handles(&client, ours_qos)))
        });
        group.bench_function(format!("rumqttc/{name}"), |b| {
            b.iter(|| rt.block_on(theirs(&their_client, &mut eventloop, their_qos)))
        });
    }
    group.finish();
}

criterion_group!(benches, client_publish);
criterion_main!(benches);
