//! The sans-IO bridge between two in-memory brokers: no sockets, a fake
//! clock. Broker A runs the bridge; broker B is its remote, reached through
//! a pretend transport that the test can cut.

use bytes::BytesMut;
use mqtt_broker_core::bridge::{
    Bridge, BridgeAction, BridgeAddress, BridgeConfig, BridgeDirection, BridgeTopic, RestartTimeout,
};
use mqtt_broker_core::mqtt_codec::{
    Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish,
    QoS, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionId, ConnectionInfo, Event};
use std::time::{Duration, Instant};

/// A plain client of one broker, fed packets directly.
struct Client {
    id: ConnectionId,
    dec: Decoder,
    buf: BytesMut,
    next_id: u16,
    got: Vec<Publish>,
}

impl Client {
    fn new(b: &mut Broker, now: Instant, name: &str) -> Self {
        let id = b.connection_opened(now, ConnectionInfo::new("127.0.0.1:5000".parse().unwrap()));
        b.handle_packet(
            now,
            id,
            Packet::Connect(Box::new(Connect::new(ProtocolVersion::V5, name))),
            0,
        );
        let mut c = Client {
            id,
            dec: Decoder::with_version(ProtocolVersion::V5),
            buf: BytesMut::new(),
            next_id: 0,
            got: Vec::new(),
        };
        c.read(b, now);
        c
    }

    fn pid(&mut self) -> PacketId {
        self.next_id += 1;
        PacketId::new(self.next_id).unwrap()
    }

    fn subscribe(&mut self, b: &mut Broker, now: Instant, filter: &str, qos: QoS) {
        let packet_id = self.pid();
        let s = Subscribe {
            packet_id,
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::new(filter).unwrap(),
                options: SubscriptionOptions::qos(qos),
            }],
        };
        b.handle_packet(now, self.id, Packet::Subscribe(s), 0);
        self.read(b, now);
    }

    fn publish_packet(&mut self, b: &mut Broker, now: Instant, mut p: Publish) {
        if p.qos != QoS::AtMostOnce {
            p.packet_id = Some(self.pid());
        }
        b.handle_packet(now, self.id, Packet::Publish(p), 0);
        self.read(b, now);
    }

    fn publish(&mut self, b: &mut Broker, now: Instant, topic: &str, payload: &str, qos: QoS) {
        let mut p = Publish::new(
            TopicName::new(topic.to_owned()).unwrap(),
            payload.to_owned(),
        );
        p.qos = qos;
        if qos != QoS::AtMostOnce {
            p.packet_id = Some(self.pid());
        }
        b.handle_packet(now, self.id, Packet::Publish(p), 0);
        self.read(b, now);
    }

    /// Reads what the broker sent; messages are kept (and acknowledged).
    fn read(&mut self, b: &mut Broker, now: Instant) {
        while let Some(bytes) = b.take_transmit(now, self.id) {
            self.buf.extend_from_slice(&bytes);
            while let Some(p) = self.dec.decode(&mut self.buf).unwrap() {
                match p {
                    Packet::Publish(p) => {
                        match (p.qos, p.packet_id) {
                            (QoS::AtLeastOnce, Some(id)) => {
                                b.handle_packet(now, self.id, Packet::PubAck(PubAck::new(id)), 0)
                            }
                            (QoS::ExactlyOnce, Some(id)) => {
                                b.handle_packet(now, self.id, Packet::PubRec(PubRec::new(id)), 0)
                            }
                            _ => {}
                        }
                        self.got.push(p);
                    }
                    // Our QoS 2 publish was received: release it.
                    Packet::PubRec(r) => {
                        b.handle_packet(now, self.id, Packet::PubRel(PubRel::new(r.packet_id)), 0)
                    }
                    Packet::PubRel(r) => {
                        b.handle_packet(now, self.id, Packet::PubComp(PubComp::new(r.packet_id)), 0)
                    }
                    _ => {}
                }
            }
        }
    }

    fn payloads(&self, topic: &str) -> Vec<String> {
        self.got
            .iter()
            .filter(|p| p.topic.as_str() == topic)
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect()
    }
}

/// Broker A with a bridge to broker B over a pretend transport.
struct World {
    a: Broker,
    b: Broker,
    bridge: Bridge,
    now: Instant,
    /// B's connection for the bridge's transport, while it is up.
    link: Option<ConnectionId>,
    /// Whether dialling B's addresses works: by address host.
    reachable: Vec<&'static str>,
    dials: Vec<String>,
    probes: Vec<String>,
}

impl World {
    fn new(config: BridgeConfig) -> Self {
        let now = Instant::now();
        let mut a = Broker::new(BrokerConfig::default());
        let b = Broker::new(BrokerConfig::default());
        let mut bridge = Bridge::new(config, "laptop", 7, now);
        bridge.start(now, &mut a);
        let mut w = World {
            a,
            b,
            bridge,
            now,
            link: None,
            reachable: vec!["b"],
            dials: Vec::new(),
            probes: Vec::new(),
        };
        w.settle();
        w
    }

    /// Runs everything until nothing moves (bounded).
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            if self.bridge.poll_timeout().is_some_and(|t| t <= self.now) {
                self.bridge.handle_timeout(self.now, &mut self.a);
            }
            match self.bridge.poll_action(self.now, &self.a) {
                Some(BridgeAction::Dial(addr)) => {
                    moved = true;
                    self.dials.push(addr.to_string());
                    if self.reachable.contains(&addr.host.as_str()) {
                        let info = ConnectionInfo::new("127.0.0.2:6000".parse().unwrap());
                        self.link = Some(self.b.connection_opened(self.now, info));
                        self.bridge.transport_connected(self.now);
                    } else {
                        self.bridge.dial_failed(self.now, "Connection refused");
                    }
                }
                Some(BridgeAction::Probe(addr)) => {
                    moved = true;
                    let ok = self.reachable.contains(&addr.host.as_str());
                    self.probes.push(addr.to_string());
                    self.bridge.probe_result(self.now, &mut self.a, ok);
                }
                Some(BridgeAction::Close) => {
                    moved = true;
                    self.flush_to_b();
                    self.cut("closed by the bridge");
                }
                None => {}
            }
            moved |= self.flush_to_b();
            while let Some(e) = self.b.poll_event() {
                match e {
                    Event::Transmit(id) if Some(id) == self.link => {
                        while let Some(bytes) = self.b.take_transmit(self.now, id) {
                            moved = true;
                            self.bridge
                                .handle_remote_input(self.now, &mut self.a, &bytes);
                        }
                    }
                    Event::Close(id) if Some(id) == self.link => {
                        moved = true;
                        self.cut("closed by the remote");
                    }
                    _ => {}
                }
            }
            while let Some(e) = self.a.poll_event() {
                match e {
                    Event::Transmit(id) if Some(id) == self.bridge.local_connection() => {
                        moved = true;
                        self.bridge.pump_local(self.now, &mut self.a);
                    }
                    Event::Close(id) if Some(id) == self.bridge.local_connection() => {
                        moved = true;
                        self.bridge.local_connection_closed(self.now, &mut self.a);
                    }
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the two brokers never settled: a loop?");
    }

    fn flush_to_b(&mut self) -> bool {
        let mut moved = false;
        while let Some(bytes) = self.bridge.poll_remote_transmit(self.now) {
            moved = true;
            if let Some(id) = self.link {
                let mut buf = BytesMut::from(&bytes[..]);
                self.b.handle_bytes(self.now, id, &mut buf);
            }
        }
        moved
    }

    /// The transport to B ends.
    fn cut(&mut self, why: &str) {
        if let Some(id) = self.link.take() {
            self.b.connection_closed(self.now, id);
        }
        self.bridge.transport_closed(self.now, &mut self.a, why);
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.settle();
    }
}

fn topic(p: &str, d: BridgeDirection, qos: QoS, l: Option<&str>, r: Option<&str>) -> BridgeTopic {
    BridgeTopic::new(p, d, qos, l, r).unwrap()
}

fn config(version: ProtocolVersion, topics: Vec<BridgeTopic>) -> BridgeConfig {
    let mut c = BridgeConfig::new("central", vec![BridgeAddress::parse("b:1883").unwrap()]);
    c.protocol = version;
    c.topics = topics;
    c.restart_timeout = RestartTimeout::Constant(Duration::from_secs(1));
    c
}

#[test]
fn out_in_and_prefixes_in_both_protocol_versions() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut w = World::new(config(
            v,
            vec![
                topic(
                    "sensors/#",
                    BridgeDirection::Out,
                    QoS::AtLeastOnce,
                    Some("home/"),
                    Some("site1/"),
                ),
                topic(
                    "cmd/#",
                    BridgeDirection::In,
                    QoS::AtLeastOnce,
                    Some("from-central/"),
                    Some("site1/"),
                ),
            ],
        ));
        assert!(w.bridge.is_connected(), "{v:?}");
        let (now, a, b) = (w.now, &mut w.a, &mut w.b);
        let mut on_b = Client::new(b, now, "central-app");
        on_b.subscribe(b, now, "site1/#", QoS::AtLeastOnce);
        let mut on_a = Client::new(a, now, "laptop-app");
        on_a.subscribe(a, now, "#", QoS::AtLeastOnce);
        w.settle();
        on_a.publish(&mut w.a, now, "home/sensors/temp", "21", QoS::AtLeastOnce);
        on_a.publish(&mut w.a, now, "home/other", "no", QoS::AtLeastOnce);
        w.settle();
        on_b.read(&mut w.b, now);
        assert_eq!(on_b.payloads("site1/sensors/temp"), ["21"], "{v:?}");
        assert_eq!(on_b.got.len(), 1, "{v:?}: only the out topic crosses");
        on_b.publish(&mut w.b, now, "site1/cmd/reboot", "now", QoS::AtLeastOnce);
        w.settle();
        on_a.read(&mut w.a, now);
        assert_eq!(on_a.payloads("from-central/cmd/reboot"), ["now"], "{v:?}");
        let s = w.bridge.stats(&w.a);
        assert_eq!((s.forwarded_out, s.forwarded_in), (1, 1), "{v:?}");
        assert_eq!(s.queued, 0, "{v:?}");
    }
}

#[test]
fn both_ways_on_everything_delivers_each_message_once_on_each_side() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut c = config(
            v,
            vec![topic(
                "#",
                BridgeDirection::Both,
                QoS::AtLeastOnce,
                None,
                None,
            )],
        );
        c.notifications = false;
        let mut w = World::new(c);
        let now = w.now;
        let mut on_a = Client::new(&mut w.a, now, "a-app");
        on_a.subscribe(&mut w.a, now, "#", QoS::AtLeastOnce);
        let mut on_b = Client::new(&mut w.b, now, "b-app");
        on_b.subscribe(&mut w.b, now, "#", QoS::AtLeastOnce);
        w.settle();
        on_a.publish(&mut w.a, now, "x/from-a", "1", QoS::AtLeastOnce);
        on_b.publish(&mut w.b, now, "x/from-b", "2", QoS::AtMostOnce);
        w.settle();
        on_a.read(&mut w.a, now);
        on_b.read(&mut w.b, now);
        for c in [&on_a, &on_b] {
            assert_eq!(c.payloads("x/from-a"), ["1"], "{v:?}");
            assert_eq!(c.payloads("x/from-b"), ["2"], "{v:?}");
        }
    }
}

#[test]
fn store_and_forward_acknowledges_locally_only_after_the_remote() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "data/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            None,
            None,
        )],
    );
    c.notifications = false;
    let mut w = World::new(c);
    let now = w.now;
    let mut on_b = Client::new(&mut w.b, now, "sink");
    // A persistent subscriber on B, so nothing is lost on B's side either.
    on_b.subscribe(&mut w.b, now, "data/#", QoS::AtLeastOnce);
    w.settle();
    // The remote goes away and stays away.
    w.reachable.clear();
    w.cut("network down");
    let mut on_a = Client::new(&mut w.a, w.now, "producer");
    for i in 0..50 {
        on_a.publish(&mut w.a, w.now, "data/x", &i.to_string(), QoS::AtLeastOnce);
    }
    on_a.publish(&mut w.a, w.now, "data/x", "qos0", QoS::AtMostOnce);
    w.settle();
    // Everything waits in A: the broker's session of the bridge holds the
    // messages, none is acknowledged, the QoS 0 one is dropped and counted.
    let pending = w.a.session_pending(w.bridge.local_client_id()).unwrap();
    assert_eq!(pending, 50);
    let s = w.bridge.stats(&w.a);
    assert_eq!(s.dropped, 1);
    assert!(s.queued >= 50);
    assert!(!s.connected);
    // Attempts go on with the restart time-out.
    w.advance(Duration::from_secs(2));
    assert!(w.dials.len() >= 2);
    // The remote returns: everything arrives, in order, and A's session
    // is empty once B acknowledged.
    w.reachable.push("b");
    w.advance(Duration::from_secs(2));
    assert!(w.bridge.is_connected());
    on_b.read(&mut w.b, w.now);
    w.settle();
    on_b.read(&mut w.b, w.now);
    let got = on_b.payloads("data/x");
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(w.a.session_pending(w.bridge.local_client_id()), Some(0));
}

#[test]
fn failover_tries_the_next_address_with_back_off() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "#",
            BridgeDirection::Out,
            QoS::AtMostOnce,
            None,
            None,
        )],
    );
    c.addresses = vec![
        BridgeAddress::parse("dead:1883").unwrap(),
        BridgeAddress::parse("b:1884").unwrap(),
    ];
    c.round_robin = true;
    c.restart_timeout = RestartTimeout::Backoff {
        base: Duration::from_secs(2),
        cap: Duration::from_secs(10),
    };
    let mut w = World::new(c);
    assert_eq!(w.dials, ["dead:1883"]);
    assert!(!w.bridge.is_connected());
    // Not before the base wait.
    w.advance(Duration::from_millis(1900));
    assert_eq!(w.dials.len(), 1);
    w.advance(Duration::from_secs(30));
    assert_eq!(w.dials, ["dead:1883", "b:1884"]);
    assert!(w.bridge.is_connected());
    assert_eq!(w.bridge.stats(&w.a).address, "b:1884");
}

#[test]
fn notifications_are_retained_one_and_zero_with_a_will_on_the_remote() {
    let mut w = World::new(config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "#",
            BridgeDirection::Out,
            QoS::AtMostOnce,
            None,
            None,
        )],
    ));
    let state = "$SYS/broker/connection/laptop.central/state";
    let now = w.now;
    let mut on_a = Client::new(&mut w.a, now, "watch-a");
    on_a.subscribe(&mut w.a, now, state, QoS::AtLeastOnce);
    let mut on_b = Client::new(&mut w.b, now, "watch-b");
    on_b.subscribe(&mut w.b, now, state, QoS::AtLeastOnce);
    // Retained: both see "1" on subscribing after the bridge connected.
    assert_eq!(on_a.payloads(state), ["1"]);
    assert_eq!(on_b.payloads(state), ["1"]);
    // The link dies without a DISCONNECT: B publishes the will "0", A its own "0".
    w.reachable.clear();
    w.cut("network down");
    w.settle();
    on_a.read(&mut w.a, w.now);
    on_b.read(&mut w.b, w.now);
    assert_eq!(on_a.payloads(state), ["1", "0"]);
    assert_eq!(on_b.payloads(state), ["1", "0"]);
}

#[test]
fn without_round_robin_the_first_address_is_taken_back_when_it_answers() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "#",
            BridgeDirection::Out,
            QoS::AtMostOnce,
            None,
            None,
        )],
    );
    c.addresses = vec![
        BridgeAddress::parse("a:1883").unwrap(),
        BridgeAddress::parse("b:1883").unwrap(),
    ];
    let mut w = World::new(c);
    // "a" is down (only "b" is reachable): failed over to "b".
    w.advance(Duration::from_secs(2));
    assert_eq!(w.dials, ["a:1883", "b:1883"]);
    assert!(w.bridge.is_connected());
    // Every 5 s the first address is probed; while it is down, nothing changes.
    w.advance(Duration::from_secs(6));
    assert_eq!(w.probes, ["a:1883"]);
    assert_eq!(w.dials.len(), 2);
    // It answers again: the bridge goes back to it.
    w.reachable.push("a");
    w.advance(Duration::from_secs(6));
    assert_eq!(w.probes.len(), 2);
    w.advance(Duration::from_secs(2));
    assert_eq!(w.dials.last().map(String::as_str), Some("a:1883"));
    assert!(w.bridge.is_connected());
    assert_eq!(w.bridge.stats(&w.a).address, "a:1883");
}

#[test]
fn lazy_connects_at_the_threshold_and_leaves_when_idle() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "data/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            None,
            None,
        )],
    );
    c.start_type = mqtt_broker_core::bridge::StartType::Lazy;
    c.threshold = 3;
    c.idle_timeout = Duration::from_secs(30);
    c.notifications = false;
    let mut w = World::new(c);
    assert!(w.dials.is_empty(), "lazy: no connection at start");
    let mut on_a = Client::new(&mut w.a, w.now, "producer");
    on_a.publish(&mut w.a, w.now, "data/1", "1", QoS::AtLeastOnce);
    on_a.publish(&mut w.a, w.now, "data/2", "2", QoS::AtLeastOnce);
    w.advance(Duration::from_secs(5));
    assert!(w.dials.is_empty(), "below the threshold");
    on_a.publish(&mut w.a, w.now, "data/3", "3", QoS::AtLeastOnce);
    w.settle();
    assert_eq!(w.dials.len(), 1);
    assert!(w.bridge.is_connected());
    assert_eq!(w.a.session_pending(w.bridge.local_client_id()), Some(0));
    // Idle for idle_timeout: disconnected, and it stays so.
    w.advance(Duration::from_secs(31));
    assert!(!w.bridge.is_connected());
    w.advance(Duration::from_secs(60));
    assert_eq!(w.dials.len(), 1);
}

#[test]
fn once_never_reconnects() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "#",
            BridgeDirection::Out,
            QoS::AtMostOnce,
            None,
            None,
        )],
    );
    c.start_type = mqtt_broker_core::bridge::StartType::Once;
    let mut w = World::new(c);
    assert!(w.bridge.is_connected());
    w.cut("network down");
    w.settle();
    w.advance(Duration::from_secs(120));
    assert_eq!(w.dials.len(), 1);
    assert!(!w.bridge.is_connected());
}

#[test]
fn a_local_connection_taken_over_is_opened_again() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "data/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            None,
            None,
        )],
    );
    c.notifications = false;
    let mut w = World::new(c);
    let now = w.now;
    let mut on_b = Client::new(&mut w.b, now, "sink");
    on_b.subscribe(&mut w.b, now, "data/#", QoS::AtLeastOnce);
    let first = w.bridge.local_connection().unwrap();
    // A client takes the bridge's local client id, then leaves.
    let id = w.bridge.local_client_id().to_owned();
    let intruder = Client::new(&mut w.a, now, &id);
    w.settle();
    assert_ne!(w.bridge.local_connection(), Some(first));
    w.a.connection_closed(w.now, intruder.id);
    w.advance(Duration::from_secs(2));
    let again = w.bridge.local_connection().expect("opened again");
    assert_ne!(again, first);
    // Messages flow through the new local connection.
    let mut on_a = Client::new(&mut w.a, w.now, "producer");
    on_a.publish(&mut w.a, w.now, "data/x", "after", QoS::AtLeastOnce);
    w.settle();
    on_b.read(&mut w.b, w.now);
    assert_eq!(on_b.payloads("data/x"), ["after"]);
}

#[test]
fn sys_counts_what_is_forwarded_queued_and_dropped_per_bridge() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![topic(
            "data/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            None,
            None,
        )],
    );
    c.notifications = false;
    let mut w = World::new(c);
    let now = w.now;
    let mut on_a = Client::new(&mut w.a, now, "producer");
    on_a.publish(&mut w.a, now, "data/1", "1", QoS::AtLeastOnce);
    on_a.publish(&mut w.a, now, "data/2", "2", QoS::AtMostOnce);
    w.settle();
    w.reachable.clear();
    w.cut("network down");
    on_a.publish(&mut w.a, w.now, "data/3", "3", QoS::AtLeastOnce);
    on_a.publish(&mut w.a, w.now, "data/4", "4", QoS::AtMostOnce);
    w.settle();
    // The counters are published every sys_interval (10 s by default).
    w.advance(Duration::from_secs(11));
    let mut watch = Client::new(&mut w.a, w.now, "watch");
    watch.subscribe(
        &mut w.a,
        w.now,
        "$SYS/broker/bridges/central/#",
        QoS::AtMostOnce,
    );
    let value = |leaf: &str| watch.payloads(&format!("$SYS/broker/bridges/central/{leaf}"));
    assert_eq!(value("forwarded/out"), ["2"]);
    assert_eq!(value("queued"), ["1"]);
    assert_eq!(value("dropped"), ["1"]);
    assert_eq!(value("state"), ["0"]);
    assert_eq!(value("address"), ["b:1883"]);
}

#[test]
fn an_out_line_does_not_unsubscribe_what_an_in_line_subscribes() {
    let mut c = config(
        ProtocolVersion::V3_1_1,
        vec![
            topic("x/#", BridgeDirection::Out, QoS::AtLeastOnce, None, None),
            topic("x/#", BridgeDirection::In, QoS::AtLeastOnce, None, None),
            topic("y/#", BridgeDirection::Out, QoS::AtLeastOnce, None, None),
        ],
    );
    c.notifications = false;
    let w = World::new(c);
    assert!(w.bridge.is_connected());
    // B holds the bridge's one subscription, x/#.
    assert_eq!(w.b.stats().subscriptions, 1);
}

#[test]
fn qos2_crosses_both_ways_once_and_completes_on_every_side() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut c = config(
            v,
            vec![topic(
                "q2/#",
                BridgeDirection::Both,
                QoS::ExactlyOnce,
                None,
                None,
            )],
        );
        c.notifications = false;
        let mut w = World::new(c);
        let now = w.now;
        let mut on_a = Client::new(&mut w.a, now, "a-app");
        on_a.subscribe(&mut w.a, now, "q2/#", QoS::ExactlyOnce);
        let mut on_b = Client::new(&mut w.b, now, "b-app");
        on_b.subscribe(&mut w.b, now, "q2/#", QoS::ExactlyOnce);
        w.settle();
        on_a.publish(&mut w.a, now, "q2/a", "from a", QoS::ExactlyOnce);
        on_b.publish(&mut w.b, now, "q2/b", "from b", QoS::ExactlyOnce);
        for _ in 0..3 {
            w.settle();
            on_a.read(&mut w.a, now);
            on_b.read(&mut w.b, now);
        }
        for c in [&on_a, &on_b] {
            assert_eq!(c.payloads("q2/a"), ["from a"], "{v:?}");
            assert_eq!(c.payloads("q2/b"), ["from b"], "{v:?}");
            assert!(c.got.iter().all(|p| p.qos == QoS::ExactlyOnce), "{v:?}");
        }
        // Every flow finished: nothing waits in the bridge's session, and
        // the bridge holds no message for either side.
        assert_eq!(
            w.a.session_pending(w.bridge.local_client_id()),
            Some(0),
            "{v:?}"
        );
        let s = w.bridge.stats(&w.a);
        assert_eq!((s.forwarded_out, s.forwarded_in), (1, 1), "{v:?}");
    }
}

#[test]
fn retained_messages_go_out_when_the_remote_connects_unless_outgoing_retain_is_off() {
    for outgoing_retain in [true, false] {
        let mut c = config(
            ProtocolVersion::V5,
            vec![topic(
                "r/#",
                BridgeDirection::Out,
                QoS::AtLeastOnce,
                None,
                None,
            )],
        );
        c.notifications = false;
        c.outgoing_retain = outgoing_retain;
        c.addresses = vec![BridgeAddress::parse("b:1883").unwrap()];
        let now = Instant::now();
        let mut a = Broker::new(BrokerConfig::default());
        // A retained message on A before the bridge exists.
        let mut producer = Client::new(&mut a, now, "producer");
        let mut p = Publish::new(TopicName::new("r/state").unwrap(), "on");
        p.retain = true;
        producer.publish_packet(&mut a, now, p);
        let mut bridge = Bridge::new(c, "laptop", 7, now);
        bridge.start(now, &mut a);
        let mut w = World {
            a,
            b: Broker::new(BrokerConfig::default()),
            bridge,
            now,
            link: None,
            reachable: vec!["b"],
            dials: Vec::new(),
            probes: Vec::new(),
        };
        w.settle();
        assert!(w.bridge.is_connected());
        let mut on_b = Client::new(&mut w.b, w.now, "watch");
        on_b.subscribe(&mut w.b, w.now, "r/#", QoS::AtLeastOnce);
        // Retained on B only if the RETAIN flag crossed.
        assert_eq!(
            on_b.payloads("r/state"),
            if outgoing_retain {
                vec!["on".to_owned()]
            } else {
                vec![]
            },
            "outgoing_retain {outgoing_retain}"
        );
        assert_eq!(w.bridge.stats(&w.a).forwarded_out, 1);
    }
}
