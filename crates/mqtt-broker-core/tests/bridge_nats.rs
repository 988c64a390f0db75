//! A fleet on an MQTT cluster: a 3-node nats-server cluster on loopback
//! (cluster routes, JetStream, an MQTT listener per node); two of our
//! brokers bridge to different nodes and exchange QoS 1 messages. The node
//! one bridge uses is killed: the bridge fails over to its next address
//! and every message its broker acknowledged arrives on the other side.
//! Skipped with a printed reason when nats-server is missing; required
//! when `MQTT_INTEROP=1` (`apt-get install nats-server`).
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::bridge::{
    BridgeAddress, BridgeConfig, BridgeDirection, BridgeTopic, RestartTimeout,
};
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{ProtocolVersion, QoS};
use mqtt_broker_core::BrokerConfig;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;

/// JetStream elects its leaders and creates the MQTT streams (replicated
/// on three nodes) before the first MQTT client is accepted: slower than
/// everything else in these tests.
const CLUSTER_WAIT: Duration = Duration::from_secs(60);

/// One nats-server node, killed (SIGKILL) on drop.
struct Node {
    child: Option<Child>,
    mqtt: u16,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn nats_server() -> Option<std::path::PathBuf> {
    let found = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("MQTT_INTEROP").as_deref() == Ok("1") {
            panic!("nats-server is required (MQTT_INTEROP=1) but not installed: apt-get install nats-server");
        }
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// Three nodes with cluster routes to each other, JetStream and MQTT.
fn cluster(dir: &std::path::Path) -> Option<Vec<Node>> {
    let bin = nats_server()?;
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, route, _)| format!("nats-route://127.0.0.1:{route}"))
        .collect();
    let mut nodes = Vec::new();
    for (i, (client, route, mqtt)) in ports.iter().enumerate() {
        let conf = dir.join(format!("n{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: n{i}\n\
                 listen: 127.0.0.1:{client}\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{\n  name: fleet\n  listen: 127.0.0.1:{route}\n  routes: [ {} ]\n}}\n\
                 mqtt {{ listen: 127.0.0.1:{mqtt} }}\n",
                dir.join(format!("js{i}")).display(),
                routes.join(", ")
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("n{i}.log"))).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        nodes.push(Node {
            child: Some(child),
            mqtt: *mqtt,
        });
    }
    Some(nodes)
}

fn addr(port: u16) -> BridgeAddress {
    BridgeAddress::parse(&format!("127.0.0.1:{port}")).unwrap()
}

/// A broker bridged to `addresses` (failover in order), sending `out/#`
/// of its own and receiving `inbound`.
async fn edge(name: &str, addresses: Vec<BridgeAddress>, out: &str, inbound: &str) -> Server {
    let mut c = BridgeConfig::new("fleet", addresses);
    c.remote_clientid = Some(name.to_owned());
    // NATS speaks MQTT 3.1.1 without Mosquitto's bridge bit, and keeps
    // `$` subjects to itself: no try_private, no notifications.
    c.try_private = false;
    c.notifications = false;
    c.restart_timeout = RestartTimeout::Constant(Duration::from_secs(1));
    c.topics = vec![
        BridgeTopic::new(out, BridgeDirection::Out, QoS::AtLeastOnce, None, None).unwrap(),
        BridgeTopic::new(inbound, BridgeDirection::In, QoS::AtLeastOnce, None, None).unwrap(),
    ];
    ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()))
        .bridge(c)
        .start()
        .await
        .expect("edge broker starts")
}

async fn client(addr: SocketAddr, id: &str) -> RawClient<TcpStream> {
    RawClient::connect(tcp(addr).await, ProtocolVersion::V5, id, |_| {})
        .await
        .0
}

/// Messages `c` receives on `prefix` until `want` distinct topics arrived
/// or `wait` passed.
async fn receive(
    c: &mut RawClient<TcpStream>,
    got: &mut BTreeSet<String>,
    want: &BTreeSet<String>,
    wait: Duration,
) {
    use mqtt_broker_core::mqtt_codec::{Packet, PubAck};
    let deadline = tokio::time::Instant::now() + wait;
    while !want.is_subset(got) {
        // Not `expect_publish`: a failover may keep the messages away for
        // longer than its 10 s (JetStream elects new leaders first).
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_within(left).await {
            Ok(Some(Packet::Publish(p))) => {
                if let Some(id) = p.packet_id {
                    c.send(Packet::PubAck(PubAck::new(id))).await;
                }
                got.insert(p.topic.as_str().to_owned());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(()) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_exchange_qos1_through_a_nats_cluster_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut nodes) = cluster(dir.path()) else {
        return;
    };
    let (n0, n1, n2) = (nodes[0].mqtt, nodes[1].mqtt, nodes[2].mqtt);
    // Edge 1 uses node 0 and fails over to node 1; edge 2 uses node 1.
    let e1 = edge(
        "edge1",
        vec![addr(n0), addr(n1), addr(n2)],
        "fleet/e1/#",
        "fleet/e2/#",
    )
    .await;
    let e2 = edge(
        "edge2",
        vec![addr(n1), addr(n2)],
        "fleet/e2/#",
        "fleet/e1/#",
    )
    .await;
    let mut on_e1 = client(e1.local_addrs()[0], "e1-app").await;
    on_e1.subscribe("fleet/e2/#", QoS::AtLeastOnce).await;
    let mut on_e2 = client(e2.local_addrs()[0], "e2-app").await;
    on_e2.subscribe("fleet/e1/#", QoS::AtLeastOnce).await;

    // Until the cluster is ready and both bridges subscribed: probes.
    let logs = || format!("e1 {:?}\ne2 {:?}", e1.bridges(), e2.bridges());
    let deadline = tokio::time::Instant::now() + CLUSTER_WAIT;
    for forward in [true, false] {
        let (from, to, topic) = if forward {
            (&mut on_e1, &mut on_e2, "fleet/e1/probe")
        } else {
            (&mut on_e2, &mut on_e1, "fleet/e2/probe")
        };
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fleet never formed: {}",
                logs()
            );
            from.publish(topic, b"probe", QoS::AtMostOnce, false).await;
            if tokio::time::timeout(Duration::from_millis(500), to.expect_publish())
                .await
                .is_ok()
            {
                break;
            }
        }
    }
    // Probes still under way.
    let mut drained = BTreeSet::new();
    let none = BTreeSet::from(["-".to_owned()]);
    receive(&mut on_e1, &mut drained, &none, Duration::from_millis(500)).await;
    receive(&mut on_e2, &mut drained, &none, Duration::from_millis(500)).await;

    // Both ways, QoS 1.
    let mut want1 = BTreeSet::new();
    let mut want2 = BTreeSet::new();
    let (mut seen1, mut seen2) = (Vec::new(), Vec::new());
    for i in 0..20 {
        on_e1
            .publish_noting(&format!("fleet/e1/{i}"), b"x", QoS::AtLeastOnce, &mut seen2)
            .await;
        want1.insert(format!("fleet/e1/{i}"));
        on_e2
            .publish_noting(&format!("fleet/e2/{i}"), b"y", QoS::AtLeastOnce, &mut seen1)
            .await;
        want2.insert(format!("fleet/e2/{i}"));
    }
    // seen1: what edge 2's client got while publishing (from edge 1).
    let topics = |v: &Vec<_>| -> BTreeSet<String> {
        v.iter()
            .map(|p: &mqtt_broker_core::mqtt_codec::Publish| p.topic.as_str().to_owned())
            .collect()
    };
    let (mut got1, mut got2) = (topics(&seen1), topics(&seen2));
    receive(&mut on_e2, &mut got1, &want1, WAIT).await;
    receive(&mut on_e1, &mut got2, &want2, WAIT).await;
    assert!(
        want1.is_subset(&got1),
        "missing on edge 2: {:?}",
        want1.difference(&got1)
    );
    assert!(
        want2.is_subset(&got2),
        "missing on edge 1: {:?}",
        want2.difference(&got2)
    );

    // The node edge 1 uses dies; edge 1 goes on publishing: its broker
    // acknowledges, the bridge fails over to the next address and delivers
    // everything.
    let used = e1.bridges()[0].1.address.clone();
    let dead = [n0, n1, n2]
        .iter()
        .position(|p| format!("127.0.0.1:{p}") == used)
        .expect("edge 1 uses a node of the cluster");
    nodes[dead].kill();
    let mut want = BTreeSet::new();
    for i in 20..60 {
        on_e1
            .publish_noting(
                &format!("fleet/e1/{i}"),
                b"x",
                QoS::AtLeastOnce,
                &mut Vec::new(),
            )
            .await;
        want.insert(format!("fleet/e1/{i}"));
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut got = BTreeSet::new();
    receive(&mut on_e2, &mut got, &want, CLUSTER_WAIT).await;
    assert!(
        want.is_subset(&got),
        "lost after failover: {:?}; {}",
        want.difference(&got),
        logs()
    );
    // Those messages could only go through another node. The cluster may
    // still be settling (leaders moving off the dead node): once edge 1 is
    // connected again, it is to another address.
    let deadline = tokio::time::Instant::now() + CLUSTER_WAIT;
    while !e1.bridges()[0].1.connected {
        assert!(tokio::time::Instant::now() < deadline, "{}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = &e1.bridges()[0].1;
    assert_ne!(b.address, used, "edge 1 failed over");
    assert!(b.connects >= 2, "{b:?}");
    e1.shutdown().await;
    e2.shutdown().await;
}
