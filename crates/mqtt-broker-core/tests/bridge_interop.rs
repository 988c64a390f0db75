//! Bridges against real brokers on loopback: this broker bridging to
//! Mosquitto (out, in and both; 3.1.1 and 5.0; prefixes; mutual TLS with
//! certificates from mqtt_tls::gen), Mosquitto bridging to this broker
//! with its defaults (try_private), and two of these brokers bridged both
//! ways on `#`. Each message must arrive exactly once on each side.
//! Skipped with a printed reason when Mosquitto is missing; required when
//! `MQTT_INTEROP=1`.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::bridge::{
    BridgeAddress, BridgeConfig, BridgeDirection, BridgeTls, BridgeTopic,
};
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{ProtocolVersion, Publish, QoS};
use mqtt_broker_core::BrokerConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;

/// A Mosquitto process on a free loopback port, killed on drop.
struct Mosquitto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    /// Starts `mosquitto -v` with `listener PORT 127.0.0.1`, anonymous
    /// access and `extra` lines; waits (bounded) until it accepts.
    async fn start(extra: &str) -> Option<Mosquitto> {
        let bin = tool("mosquitto")?;
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}\n");
        // Mosquitto drops root to user `mosquitto`, which cannot read the
        // 0600 keys in our temporary directory; stay root for the test.
        if std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        {
            text.push_str("user root\n");
        }
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).expect("log file");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        let m = Mosquitto { child, port, dir };
        let deadline = tokio::time::Instant::now() + WAIT;
        while TcpStream::connect(m.addr()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto did not start: {}",
                m.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(m)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

type Client = RawClient<TcpStream>;

async fn client(addr: SocketAddr, id: &str) -> Client {
    RawClient::connect(tcp(addr).await, ProtocolVersion::V5, id, |_| {})
        .await
        .0
}

async fn server(bridges: Vec<BridgeConfig>) -> Server {
    let mut b = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp("127.0.0.1:0".parse().unwrap()));
    for c in bridges {
        b = b.bridge(c);
    }
    b.start().await.expect("server starts")
}

fn topic(p: &str, d: BridgeDirection, l: Option<&str>, r: Option<&str>) -> BridgeTopic {
    BridgeTopic::new(p, d, QoS::AtLeastOnce, l, r).expect("valid bridge topic")
}

fn bridge_to(addr: SocketAddr, version: ProtocolVersion, topics: Vec<BridgeTopic>) -> BridgeConfig {
    let mut c = BridgeConfig::new(
        "central",
        vec![BridgeAddress::parse(&addr.to_string()).unwrap()],
    );
    c.protocol = version;
    c.topics = topics;
    c.remote_clientid = Some(format!("laptop-{}", addr.port()));
    c
}

async fn wait_connected(server: &Server) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server.bridges()[0].1.connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bridge never connected: {:?}",
            server.bridges()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages received within `d`, by topic, payloads in order.
async fn collect(c: &mut Client, d: Duration) -> BTreeMap<String, Vec<String>> {
    collect_into(c, d, BTreeMap::new()).await
}

async fn collect_into(
    c: &mut Client,
    d: Duration,
    mut got: BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return got;
        }
        match tokio::time::timeout(left, c.expect_publish()).await {
            Ok(p) => add(&mut got, &p),
            Err(_) => return got,
        }
    }
}

/// Publishes and waits for the acknowledgement; messages arriving in the
/// meantime (the client may be subscribed to its own topic) are
/// acknowledged and added to `got`.
async fn publish(
    c: &mut Client,
    got: &mut BTreeMap<String, Vec<String>>,
    topic: &str,
    payload: &str,
    qos: QoS,
) {
    use mqtt_broker_core::mqtt_codec::{Packet, PubAck, TopicName};
    let mut p = Publish::new(TopicName::try_from(topic).unwrap(), payload.to_owned());
    p.qos = qos;
    if qos == QoS::AtMostOnce {
        c.send(Packet::Publish(p)).await;
        return;
    }
    assert_eq!(qos, QoS::AtLeastOnce, "the tests publish at QoS 0 or 1");
    let id = c.packet_id();
    p.packet_id = Some(id);
    c.send(Packet::Publish(p)).await;
    loop {
        match tokio::time::timeout(WAIT, c.recv())
            .await
            .expect("PUBACK in time")
        {
            Some(Packet::PubAck(a)) if a.packet_id == id => return,
            Some(Packet::Publish(m)) => {
                if let Some(mid) = m.packet_id {
                    c.send(Packet::PubAck(PubAck::new(mid))).await;
                }
                add(got, &m);
            }
            Some(_) => {}
            None => panic!("connection closed while publishing"),
        }
    }
}

fn add(got: &mut BTreeMap<String, Vec<String>>, p: &Publish) {
    got.entry(p.topic.as_str().to_owned())
        .or_default()
        .push(String::from_utf8_lossy(&p.payload).into_owned());
}

/// Publishes a probe on `from` until `to` receives it (the far side's
/// subscription is in place), then drains the probes.
async fn until_flowing(from: &mut Client, to: &mut Client, topic: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing crossed the bridge on {topic}"
        );
        from.publish(topic, b"probe", QoS::AtMostOnce, false).await;
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(200), to.expect_publish()).await {
            if p.payload.as_ref() == b"probe" {
                break;
            }
        }
    }
    // Probes still on their way.
    collect(to, Duration::from_millis(300)).await;
}

fn once(got: &BTreeMap<String, Vec<String>>, topic: &str, payload: &str) -> bool {
    got.get(topic).map(|v| v.as_slice()) == Some(&[payload.to_owned()][..])
}

#[tokio::test]
async fn ours_to_mosquitto_out_in_both_with_prefixes_in_3_1_1_and_5() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let Some(mosq) = Mosquitto::start("").await else {
            return;
        };
        let ours = server(vec![bridge_to(
            mosq.addr(),
            version,
            vec![
                topic(
                    "sensors/#",
                    BridgeDirection::Out,
                    Some("home/"),
                    Some("site1/"),
                ),
                topic("cmd/#", BridgeDirection::In, Some("\"\""), Some("site1/")),
                topic("chat/#", BridgeDirection::Both, None, None),
            ],
        )])
        .await;
        wait_connected(&ours).await;
        let mut local = client(ours.local_addrs()[0], "laptop-app").await;
        local.subscribe("cmd/#", QoS::AtLeastOnce).await;
        local.subscribe("chat/#", QoS::AtLeastOnce).await;
        let mut remote = client(mosq.addr(), "central-app").await;
        remote.subscribe("site1/sensors/#", QoS::AtLeastOnce).await;
        remote.subscribe("chat/#", QoS::AtLeastOnce).await;
        until_flowing(&mut remote, &mut local, "site1/cmd/probe").await;
        until_flowing(&mut local, &mut remote, "home/sensors/probe").await;

        collect(&mut remote, Duration::from_millis(200)).await;
        collect(&mut local, Duration::from_millis(200)).await;
        let (mut on_local, mut on_remote) = (BTreeMap::new(), BTreeMap::new());
        let q1 = QoS::AtLeastOnce;
        publish(&mut local, &mut on_local, "home/sensors/temp", "21", q1).await;
        publish(&mut local, &mut on_local, "home/private", "no", q1).await;
        publish(&mut remote, &mut on_remote, "site1/cmd/reboot", "now", q1).await;
        publish(&mut local, &mut on_local, "chat/laptop", "hi", q1).await;
        publish(&mut remote, &mut on_remote, "chat/central", "yo", q1).await;
        let on_remote = collect_into(&mut remote, Duration::from_millis(800), on_remote).await;
        let on_local = collect_into(&mut local, Duration::from_millis(800), on_local).await;
        let v = version;
        assert!(
            once(&on_remote, "site1/sensors/temp", "21"),
            "{v:?} {on_remote:?}\n{}",
            mosq.log()
        );
        assert!(once(&on_local, "cmd/reboot", "now"), "{v:?} {on_local:?}");
        for got in [&on_local, &on_remote] {
            assert!(once(got, "chat/laptop", "hi"), "{v:?} {got:?}");
            assert!(once(got, "chat/central", "yo"), "{v:?} {got:?}");
        }
        assert_eq!(
            on_remote.len(),
            3,
            "{v:?}: only out and both topics cross: {on_remote:?}"
        );
        assert_eq!(on_local.len(), 3, "{v:?}: {on_local:?}");
        // Mosquitto saw a bridge: level 0x84 with try_private in 3.1.1.
        if version == ProtocolVersion::V3_1_1 {
            assert!(
                mosq.log().contains("New bridge connected from"),
                "{}",
                mosq.log()
            );
        }
        ours.shutdown().await;
    }
}

#[tokio::test]
async fn ours_to_mosquitto_over_mutual_tls() {
    let certs = Certs::generate();
    let path = |n: &str| certs.path(n).display().to_string();
    let Some(mosq) = Mosquitto::start(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
        path("ca.crt"),
        path("server.crt"),
        path("server.key")
    ))
    .await
    else {
        return;
    };
    let mut c = bridge_to(
        mosq.addr(),
        ProtocolVersion::V3_1_1,
        vec![topic("tls/#", BridgeDirection::Both, None, None)],
    );
    c.tls = BridgeTls {
        cafile: Some(certs.path("ca.crt")),
        certfile: Some(certs.path("client.crt")),
        keyfile: Some(certs.path("client.key")),
        ..BridgeTls::default()
    };
    let ours = server(vec![c]).await;
    wait_connected(&ours).await;
    let mut local = client(ours.local_addrs()[0], "laptop-app").await;
    local.subscribe("tls/#", QoS::AtLeastOnce).await;
    // Mosquitto's clients need TLS too: check from our side that the
    // bridge carries messages both ways by a round trip through a
    // Mosquitto client over TLS.
    let tls_stream = tls(mosq.addr(), "127.0.0.1", &certs.client_options(true))
        .await
        .expect("TLS to mosquitto");
    let (mut remote, _) =
        RawClient::connect(tls_stream, ProtocolVersion::V5, "central-app", |_| {}).await;
    remote.subscribe("tls/#", QoS::AtLeastOnce).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing crossed: {}",
            mosq.log()
        );
        remote
            .publish("tls/probe", b"p", QoS::AtMostOnce, false)
            .await;
        if tokio::time::timeout(Duration::from_millis(200), local.expect_publish())
            .await
            .is_ok()
        {
            break;
        }
    }
    let mut ignored = BTreeMap::new();
    publish(
        &mut local,
        &mut ignored,
        "tls/up",
        "secure",
        QoS::AtLeastOnce,
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = tokio::time::timeout_at(deadline, remote.expect_publish())
            .await
            .expect("the message crossed the TLS bridge");
        if p.topic.as_str() == "tls/up" {
            assert_eq!(p.payload.as_ref(), b"secure");
            break;
        }
    }
    ours.shutdown().await;
}

#[tokio::test]
async fn ours_to_mosquitto_with_a_wrong_ca_fails_in_mqtt_tls_words() {
    let certs = Certs::generate();
    let other = Certs::generate();
    let path = |n: &str| certs.path(n).display().to_string();
    let Some(mosq) = Mosquitto::start(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        path("ca.crt"),
        path("server.crt"),
        path("server.key")
    ))
    .await
    else {
        return;
    };
    let logs = LogCapture::default();
    let _guard = logs.install();
    let mut c = bridge_to(
        mosq.addr(),
        ProtocolVersion::V3_1_1,
        vec![topic("x", BridgeDirection::Out, None, None)],
    );
    c.tls.cafile = Some(other.path("ca.crt"));
    let ours = server(vec![c]).await;
    assert!(
        logs.wait_for("Connecting bridge central").await,
        "{}",
        logs.text()
    );
    assert!(
        logs.wait_for("Error creating bridge central").await,
        "{}",
        logs.text()
    );
    // The explained certificate error, as mqtt-client gives it.
    assert!(logs.text().contains("certificate"), "{}", logs.text());
    assert!(!ours.bridges()[0].1.connected);
    ours.shutdown().await;
}

#[tokio::test]
async fn mosquitto_bridging_to_ours_with_its_defaults_makes_no_loop() {
    let ours = server(vec![]).await;
    let our_addr = ours.local_addrs()[0];
    let Some(mosq) = Mosquitto::start(&format!(
        "connection to-ours\naddress {our_addr}\ntopic # both 1\nrestart_timeout 1\n"
    ))
    .await
    else {
        return;
    };
    let mut local = client(our_addr, "ours-app").await;
    local.subscribe("#", QoS::AtLeastOnce).await;
    let mut remote = client(mosq.addr(), "mosq-app").await;
    remote.subscribe("#", QoS::AtLeastOnce).await;
    until_flowing(&mut remote, &mut local, "warm/up").await;
    collect(&mut remote, Duration::from_millis(300)).await;
    let (mut on_local, mut on_remote) = (BTreeMap::new(), BTreeMap::new());
    publish(
        &mut local,
        &mut on_local,
        "a/from-ours",
        "1",
        QoS::AtLeastOnce,
    )
    .await;
    publish(
        &mut remote,
        &mut on_remote,
        "a/from-mosq",
        "2",
        QoS::AtLeastOnce,
    )
    .await;
    let on_local = collect_into(&mut local, Duration::from_secs(1), on_local).await;
    let on_remote = collect_into(&mut remote, Duration::from_secs(1), on_remote).await;
    for got in [&on_local, &on_remote] {
        assert!(once(got, "a/from-ours", "1"), "{got:?}\n{}", mosq.log());
        assert!(once(got, "a/from-mosq", "2"), "{got:?}");
        assert_eq!(got.len(), 2, "{got:?}");
    }
    ours.shutdown().await;
}

#[tokio::test]
async fn ours_to_ours_both_ways_on_everything_exactly_once() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let central = server(vec![]).await;
        let edge = server(vec![bridge_to(
            central.local_addrs()[0],
            version,
            vec![topic("#", BridgeDirection::Both, None, None)],
        )])
        .await;
        wait_connected(&edge).await;
        let mut on_edge = client(edge.local_addrs()[0], "edge-app").await;
        on_edge.subscribe("#", QoS::AtLeastOnce).await;
        let mut on_central = client(central.local_addrs()[0], "central-app").await;
        on_central.subscribe("#", QoS::AtLeastOnce).await;
        until_flowing(&mut on_central, &mut on_edge, "warm/up").await;
        collect(&mut on_central, Duration::from_millis(300)).await;
        collect(&mut on_edge, Duration::from_millis(300)).await;
        let (mut got_edge, mut got_central) = (BTreeMap::new(), BTreeMap::new());
        for i in 0..20 {
            publish(
                &mut on_edge,
                &mut got_edge,
                &format!("e/{i}"),
                "e",
                QoS::AtLeastOnce,
            )
            .await;
            publish(
                &mut on_central,
                &mut got_central,
                &format!("c/{i}"),
                "c",
                QoS::AtMostOnce,
            )
            .await;
        }
        let got_edge = collect_into(&mut on_edge, Duration::from_secs(1), got_edge).await;
        let got_central = collect_into(&mut on_central, Duration::from_secs(1), got_central).await;
        for (name, got) in [("edge", &got_edge), ("central", &got_central)] {
            assert_eq!(got.len(), 40, "{version:?} {name}: {got:?}");
            assert!(
                got.values().all(|v| v.len() == 1),
                "{version:?} {name}: {got:?}"
            );
        }
        edge.shutdown().await;
        central.shutdown().await;
    }
}

#[tokio::test]
async fn a_refused_bridge_says_why_in_mosquittos_words_and_retries() {
    // The later allow_anonymous line wins: anonymous clients are refused.
    let Some(mosq) = Mosquitto::start("allow_anonymous false").await else {
        return;
    };
    let logs = LogCapture::default();
    let _guard = logs.install();
    let mut c = bridge_to(
        mosq.addr(),
        ProtocolVersion::V3_1_1,
        vec![topic("x", BridgeDirection::Out, None, None)],
    );
    c.restart_timeout =
        mqtt_broker_core::bridge::RestartTimeout::Constant(Duration::from_millis(200));
    let ours = server(vec![c]).await;
    assert!(
        logs.wait_for("Connection Refused: not authorised (CONNACK code 5)")
            .await,
        "{}\n{}",
        logs.text(),
        mosq.log()
    );
    // And it tries again.
    let first = logs.text().matches("Connecting bridge central").count();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        logs.text().matches("Connecting bridge central").count() > first,
        "{}",
        logs.text()
    );
    assert!(!ours.bridges()[0].1.connected);
    ours.shutdown().await;
}
