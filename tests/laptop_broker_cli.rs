//! The `laptop-broker` command line: Mosquitto's flags, its startup lines,
//! config errors that name file:line, and a clean stop on SIGTERM.

#[path = "support/examples.rs"]
mod examples;
use examples::{example, stderr_lines as lines, Killed as Broker};

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> bool {
    examples::wait_for_line(rx, needle, seen, WAIT)
}

#[path = "support/ports.rs"]
mod ports;

use ports::free_port;
use std::io::Read;
use std::net::TcpStream;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn config_error_names_file_line_and_suggests_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ssl.conf");
    std::fs::write(
        &conf,
        "listener 8883\nkeyfil /etc/mosquitto/certs/server.key\n",
    )
    .unwrap();
    let out = Command::new(example("laptop-broker"))
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("laptop-broker runs");
    assert!(
        !out.status.success(),
        "a bad config must not start a broker"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2", conf.display())),
        "names file:line: {err}"
    );
    assert!(err.contains("keyfile"), "suggests the key: {err}");
}

#[test]
fn without_config_it_serves_loopback_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(example("laptop-broker"))
        .args(["-p", &port.to_string(), "-v"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("laptop-broker starts");
    let rx = lines(&mut child);
    let mut broker = Broker(child);
    let mut seen = Vec::new();
    assert!(
        wait_for(&rx, "Starting in local only mode", &mut seen),
        "{seen:?}"
    );
    assert!(
        wait_for(
            &rx,
            &format!("Opening ipv4 listen socket on port {port}."),
            &mut seen
        ),
        "{seen:?}"
    );
    // A client connects: CONNECT (3.1.1, client id "cli"), then CONNACK back.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    s.set_read_timeout(Some(WAIT)).unwrap();
    use std::io::Write;
    s.write_all(&[
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 3, b'c', b'l', b'i',
    ])
    .unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);
    assert!(
        wait_for(&rx, "New client connected from 127.0.0.1", &mut seen),
        "{seen:?}"
    );
    let pid = broker.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(wait_for(&rx, "terminating", &mut seen), "{seen:?}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = broker.0.try_wait().expect("wait") {
            assert!(status.success(), "clean exit on SIGTERM: {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking MQTT 3.1.1 connection over the codec, for the persistence test.
struct Raw {
    stream: TcpStream,
    decoder: mqtt_codec::Decoder,
    buf: bytes::BytesMut,
}

impl Raw {
    fn connect(port: u16, id: &str, clean: bool) -> (Raw, mqtt_codec::ConnAck) {
        use mqtt_codec::{Connect, Packet, ProtocolVersion};
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut raw = Raw {
            stream,
            decoder: mqtt_codec::Decoder::with_version(ProtocolVersion::V3_1_1),
            buf: bytes::BytesMut::new(),
        };
        let mut c = Connect::new(ProtocolVersion::V3_1_1, id);
        c.clean_start = clean;
        raw.send(Packet::Connect(Box::new(c)));
        match raw.recv() {
            Packet::ConnAck(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, p: mqtt_codec::Packet) {
        use std::io::Write;
        let mut out = bytes::BytesMut::new();
        p.encode(mqtt_codec::ProtocolVersion::V3_1_1, &mut out)
            .unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn recv(&mut self) -> mqtt_codec::Packet {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).unwrap() {
                return p;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("a packet in time");
            assert!(n > 0, "the broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn subscribe(&mut self, filter: &str) {
        use mqtt_codec::{Packet, PacketId, QoS, Subscribe, SubscriptionOptions, TopicFilter};
        self.send(Packet::Subscribe(Subscribe::new(
            PacketId::new(1).unwrap(),
            TopicFilter::try_from(filter).unwrap(),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
        )));
        assert!(matches!(self.recv(), Packet::SubAck(_)));
    }

    /// A QoS 1 PUBLISH, acknowledged by the broker before this returns.
    fn publish(&mut self, topic: &str, payload: &str, retain: bool, id: u16) {
        use mqtt_codec::{Packet, PacketId, Publish, QoS, TopicName};
        let mut p = Publish::new(
            TopicName::try_from(topic).unwrap(),
            payload.as_bytes().to_vec(),
        );
        p.qos = QoS::AtLeastOnce;
        p.retain = retain;
        p.packet_id = PacketId::new(id);
        self.send(Packet::Publish(p));
        match self.recv() {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id.get(), id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH (acknowledged): topic, payload, retain flag.
    fn next_message(&mut self) -> (String, String, bool) {
        use mqtt_codec::{Packet, PubAck};
        match self.recv() {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    self.send(Packet::PubAck(PubAck::new(id)));
                }
                (
                    p.topic.as_str().to_string(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                    p.retain,
                )
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

fn start_with_config(conf: &std::path::Path) -> (Broker, mpsc::Receiver<String>) {
    let mut child = Command::new(example("laptop-broker"))
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("laptop-broker starts");
    let rx = lines(&mut child);
    (Broker(child), rx)
}

#[test]
fn persistence_keeps_acknowledged_messages_and_sessions_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (mut broker, rx) = start_with_config(&conf);
    let mut seen = Vec::new();
    let open = format!("Opening ipv4 listen socket on port {port}.");
    assert!(wait_for(&rx, &open, &mut seen), "{seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("Persistence file:") && l.contains("mqtt-broker.db")),
        "{seen:?}"
    );

    // A persistent session subscribes and goes away; a publisher's QoS 1
    // messages are acknowledged: one queued for the session, one retained.
    let (mut keeper, _) = Raw::connect(port, "keeper", false);
    keeper.subscribe("persist/#");
    drop(keeper);
    let (mut publisher, _) = Raw::connect(port, "publisher", true);
    publisher.publish("persist/queued", "while away", false, 1);
    publisher.publish("status/pi", "online", true, 2);
    drop(publisher);

    // No clean shutdown: SIGKILL.
    broker.0.kill().unwrap();
    broker.0.wait().unwrap();
    assert!(dir.path().join("mqtt-broker.db").is_file());

    let (_broker, rx) = start_with_config(&conf);
    let mut seen = Vec::new();
    assert!(wait_for(&rx, &open, &mut seen), "{seen:?}");
    let (mut keeper, ack) = Raw::connect(port, "keeper", false);
    assert!(ack.session_present, "the session came back");
    assert_eq!(
        keeper.next_message(),
        ("persist/queued".into(), "while away".into(), false)
    );
    let (mut fresh, _) = Raw::connect(port, "fresh", true);
    fresh.subscribe("status/#");
    assert_eq!(
        fresh.next_message(),
        ("status/pi".into(), "online".into(), true)
    );
    // The restored subscription still matches new messages.
    fresh.publish("persist/live", "after restart", false, 3);
    assert_eq!(
        keeper.next_message(),
        ("persist/live".into(), "after restart".into(), false)
    );
}

#[test]
fn a_mosquitto_database_in_the_way_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("mosquitto.db");
    let mosquitto_db = b"\x00\xB5\x00mosquitto db\x00\x00\x00\x06";
    std::fs::write(&db, mosquitto_db).unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\npersistence_file mosquitto.db\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (_broker, rx) = start_with_config(&conf);
    let mut seen = Vec::new();
    // It says why, and serves anyway (in memory, as Mosquitto keeps
    // running when it cannot save).
    assert!(
        wait_for(&rx, "is a Mosquitto database", &mut seen),
        "{seen:?}"
    );
    let open = format!("Opening ipv4 listen socket on port {port}.");
    assert!(wait_for(&rx, &open, &mut seen), "{seen:?}");
    let (mut c, _) = Raw::connect(port, "c", true);
    c.publish("t", "x", true, 1);
    assert_eq!(std::fs::read(&db).unwrap(), mosquitto_db);
}

fn hangup(broker: &Broker) {
    let status = Command::new("kill")
        .args(["-HUP", &broker.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn sighup_reloads_the_config_and_a_broken_file_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite #\n").unwrap();
    let text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {}\n",
        acl.display()
    );
    std::fs::write(&conf, &text).unwrap();
    let (mut broker, rx) = start_with_config(&conf);
    let mut seen = Vec::new();
    let open = format!("Opening ipv4 listen socket on port {port}.");
    assert!(wait_for(&rx, &open, &mut seen), "{seen:?}");
    let (mut client, _) = Raw::connect(port, "stays", true);
    client.subscribe("a/#");
    let (mut publisher, _) = Raw::connect(port, "publisher", true);

    // A broken file: the running configuration stays, the log names file:line.
    std::fs::write(&conf, format!("{text}max_queued_mesages 5\n")).unwrap();
    hangup(&broker);
    assert!(wait_for(&rx, "Reloading config.", &mut seen), "{seen:?}");
    assert!(
        wait_for(&rx, "keeping the running configuration", &mut seen),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("{}:4", conf.display()))),
        "{seen:?}"
    );
    publisher.publish("a/1", "still served", false, 1);
    assert_eq!(client.next_message().1, "still served");

    // A good file with a stricter ACL: applied, the client stays connected.
    std::fs::write(&acl, "topic write #\n").unwrap();
    std::fs::write(&conf, &text).unwrap();
    hangup(&broker);
    assert!(
        wait_for(&rx, "Configuration reloaded", &mut seen),
        "{seen:?}"
    );
    publisher.publish("a/2", "not delivered", false, 2);
    client.send(mqtt_codec::Packet::PingReq);
    assert!(
        matches!(client.recv(), mqtt_codec::Packet::PingResp),
        "the denied message was delivered"
    );
    assert!(broker.0.try_wait().unwrap().is_none(), "still running");
}
