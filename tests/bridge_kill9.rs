//! Store and forward across a `kill -9`: `laptop-broker` with `persistence
//! true` and a bridge whose remote is down accepts QoS 1 messages for it,
//! is killed with SIGKILL, restarted, and when the remote comes up every
//! acknowledged message arrives there.

#[path = "support/examples.rs"]
mod examples;
use examples::example;

#[path = "support/ports.rs"]
mod ports;

use mqtt_broker_core::driver::{Listener, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{
    Connect, Packet, ProtocolVersion, QoS, Subscribe, SubscriptionOptions, TopicFilter,
};
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionInfo};
use mqtt_client::{Client, ClientOptions};
use ports::free_port;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const MESSAGES: usize = 30;

/// A `laptop-broker` process, killed (SIGKILL) on drop.
struct LaptopBroker {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for LaptopBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LaptopBroker {
    fn start(conf: &Path) -> Self {
        let mut child = Command::new(example("laptop-broker"))
            .arg("-c")
            .arg(conf)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("laptop-broker starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LaptopBroker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a log line containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {needle:?}; the log:\n{}",
            self.seen.join("\n")
        );
    }

    /// SIGKILL: no shutdown, no flush beyond what was already written.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The remote broker's state before it starts: a persistent session
/// `sink` subscribed to `data/#`, offline, so what the bridge forwards is
/// queued for it whatever the timing.
fn remote_broker_with_sink() -> Broker {
    let mut b = Broker::new(BrokerConfig::default());
    let now = Instant::now();
    let id = b.connection_opened(now, ConnectionInfo::new("127.0.0.1:1".parse().unwrap()));
    let mut c = Connect::new(ProtocolVersion::V5, "sink");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(u32::MAX);
    b.handle_packet(now, id, Packet::Connect(Box::new(c)), 0);
    let sub = Subscribe::new(
        std::num::NonZeroU16::new(1).unwrap(),
        TopicFilter::new("data/#").unwrap(),
        SubscriptionOptions::qos(QoS::AtLeastOnce),
    );
    b.handle_packet(now, id, Packet::Subscribe(sub), 0);
    b.handle_packet(now, id, Packet::Disconnect(Default::default()), 0);
    b.connection_closed(now, id);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_survive_kill_9_and_reach_the_remote_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (local_port, remote_port) = (free_port(), free_port());
    let conf = dir.path().join("edge.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {local_port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {}\n\
             connection central\n\
             address 127.0.0.1:{remote_port}\n\
             remote_clientid edge1\n\
             topic data/# out 1\n\
             restart_timeout 1\n",
            dir.path().display()
        ),
    )
    .unwrap();

    // 1. The edge broker runs; its remote is down.
    let mut edge = LaptopBroker::start(&conf);
    edge.wait_for("Connecting bridge central");
    edge.wait_for("Error creating bridge central");
    let (producer, _messages) =
        Client::connect(ClientOptions::new("127.0.0.1", local_port).client_id("producer"))
            .await
            .expect("producer connects");
    for i in 0..MESSAGES {
        // Acknowledged by the edge broker: stored in the bridge's session.
        producer
            .publish(&format!("data/{i}"), QoS::AtLeastOnce, false, i.to_string())
            .await
            .expect("edge acknowledges");
    }
    drop(producer);

    // 2. kill -9, restart with the same file.
    edge.kill9();
    let mut edge = LaptopBroker::start(&conf);
    edge.wait_for("Connecting bridge central");

    // 3. The remote comes up; the bridge connects and forwards.
    let remote = ServerBuilder::with_broker(remote_broker_with_sink())
        .listener(Listener::tcp(
            format!("127.0.0.1:{remote_port}").parse().unwrap(),
        ))
        .start()
        .await
        .expect("remote starts");
    edge.wait_for("Bridge central connected");
    let (sink, mut messages) = Client::connect(
        ClientOptions::new("127.0.0.1", remote_port)
            .client_id("sink")
            .clean_start(false)
            .session_expiry_interval(u32::MAX),
    )
    .await
    .expect("sink connects");
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < MESSAGES {
        let m = tokio::time::timeout_at(deadline, messages.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {MESSAGES} arrived: {got:?}", got.len()))
            .expect("sink connected");
        got.insert(m.topic.as_str().to_owned());
    }
    let want: BTreeSet<String> = (0..MESSAGES).map(|i| format!("data/{i}")).collect();
    assert_eq!(got, want);
    let _ = sink.disconnect().await;
    remote.shutdown().await;
}
