//! Scenario-test harness in the quinn-proto style: one [`Broker`], several
//! in-memory clients (each a decoder and an encoder) and a fake clock.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionId, ConnectionInfo, Event};
use mqtt_codec::{
    ConnAck, Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel,
    Publish, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// One in-memory client as the harness sees it.
pub struct Peer {
    pub version: ProtocolVersion,
    decoder: Decoder,
    wire: BytesMut,
    pub inbox: VecDeque<Packet>,
    pub closed: bool,
    next_pid: u16,
}

pub struct Harness {
    pub broker: Broker,
    pub now: Instant,
    pub start: Instant,
    pub peers: HashMap<ConnectionId, Peer>,
    /// Every event other than `Transmit`, in order.
    pub events: Vec<Event>,
    /// Connections whose bytes the "driver" does not take (slow subscribers).
    pub stalled: HashSet<ConnectionId>,
    next_port: u16,
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn topic(s: &str) -> TopicName {
    TopicName::try_from(s).unwrap()
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

pub fn publish(
    t: &str,
    payload: &'static str,
    qos: QoS,
    retain: bool,
    packet_id: Option<u16>,
) -> Publish {
    let mut p = Publish::new(topic(t), Bytes::from_static(payload.as_bytes()));
    p.qos = qos;
    p.retain = retain;
    p.packet_id = packet_id.map(pid);
    p
}

pub fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect::new(version, client_id)
}

impl Harness {
    pub fn new(config: BrokerConfig) -> Self {
        Self::with_broker(Broker::new(config))
    }

    pub fn default_config() -> Self {
        Self::new(BrokerConfig::default())
    }

    pub fn with_broker(broker: Broker) -> Self {
        // A fixed base instant: tests only use differences from it.
        let start = Instant::now();
        Self {
            broker,
            now: start,
            start,
            peers: HashMap::new(),
            events: Vec::new(),
            stalled: HashSet::new(),
            next_port: 50_000,
        }
    }

    /// Opens a transport connection with `info`.
    pub fn open_with(&mut self, info: ConnectionInfo) -> ConnectionId {
        let id = self.broker.connection_opened(self.now, info);
        self.peers.insert(
            id,
            Peer {
                version: V3,
                decoder: Decoder::with_version(V3),
                wire: BytesMut::new(),
                inbox: VecDeque::new(),
                closed: false,
                next_pid: 1,
            },
        );
        self.pump();
        id
    }

    /// Sets the protocol version the client encodes and decodes with.
    pub fn set_version(&mut self, id: ConnectionId, v: ProtocolVersion) {
        let peer = self.peers.get_mut(&id).unwrap();
        peer.version = v;
        peer.decoder = Decoder::with_version(v);
    }

    /// Opens a plain connection from a new loopback port.
    pub fn open(&mut self) -> ConnectionId {
        self.next_port += 1;
        self.open_with(ConnectionInfo::new(addr(self.next_port)))
    }

    /// Opens a connection and sends `c`; returns the connection and the CONNACK.
    pub fn connect_with(&mut self, c: Connect) -> (ConnectionId, ConnAck) {
        let id = self.open();
        let ack = self.send_connect(id, c);
        (id, ack)
    }

    /// Sends CONNECT on an open connection and returns the CONNACK.
    pub fn send_connect(&mut self, id: ConnectionId, c: Connect) -> ConnAck {
        let v = c.protocol;
        {
            let peer = self.peers.get_mut(&id).unwrap();
            peer.version = v;
            peer.decoder = Decoder::with_version(v);
        }
        self.send(id, Packet::Connect(Box::new(c)));
        let mut got = self.recv(id).into_iter();
        let ack = match got.next() {
            Some(Packet::ConnAck(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        // Whatever followed the CONNACK (re-sent messages) stays for the test.
        self.peers.get_mut(&id).unwrap().inbox.extend(got);
        ack
    }

    /// Connects a client with clean start and the given id; asserts success.
    pub fn connect(&mut self, version: ProtocolVersion, client_id: &str) -> ConnectionId {
        let (id, ack) = self.connect_with(connect(version, client_id));
        assert_eq!(
            ack.reason_code,
            ReasonCode::Success,
            "CONNACK of {client_id}"
        );
        id
    }

    /// Connects with Clean Start 0 (and in 5.0 a session that never expires).
    pub fn connect_persistent(
        &mut self,
        version: ProtocolVersion,
        client_id: &str,
    ) -> (ConnectionId, ConnAck) {
        let mut c = connect(version, client_id);
        c.clean_start = false;
        if version.is_v5() {
            c.properties.session_expiry_interval = Some(u32::MAX);
        }
        self.connect_with(c)
    }

    /// Encodes `packet` as the client would and feeds it to the broker.
    pub fn send(&mut self, id: ConnectionId, packet: Packet) {
        let v = self.peers[&id].version;
        let mut buf = BytesMut::new();
        packet.encode(v, &mut buf).unwrap();
        self.send_raw(id, &buf);
    }

    /// Feeds raw bytes to the broker.
    pub fn send_raw(&mut self, id: ConnectionId, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        self.broker.handle_bytes(self.now, id, &mut buf);
        self.pump();
    }

    /// Plays the driver: takes transmits, closes connections.
    pub fn pump(&mut self) {
        while let Some(ev) = self.broker.poll_event() {
            match ev {
                Event::Transmit(id) => {
                    if !self.stalled.contains(&id) {
                        self.take(id);
                    }
                }
                Event::Close(id) => {
                    self.take(id);
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.closed = true;
                    }
                    self.broker.connection_closed(self.now, id);
                    self.events.push(Event::Close(id));
                }
                other => self.events.push(other),
            }
        }
    }

    fn take(&mut self, id: ConnectionId) {
        while let Some(bytes) = self.broker.take_transmit(self.now, id) {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            peer.wire.extend_from_slice(&bytes);
            while let Some(p) = peer
                .decoder
                .decode(&mut peer.wire)
                .expect("broker sent a malformed packet")
            {
                peer.inbox.push_back(p);
            }
        }
    }

    /// Lets a stalled connection's driver take its bytes again.
    pub fn unstall(&mut self, id: ConnectionId) {
        self.stalled.remove(&id);
        self.take(id);
        self.pump();
    }

    /// Everything the client received since the last call.
    pub fn recv(&mut self, id: ConnectionId) -> Vec<Packet> {
        self.pump();
        self.peers
            .get_mut(&id)
            .map(|p| p.inbox.drain(..).collect())
            .unwrap_or_default()
    }

    /// The PUBLISH packets the client received since the last call (others are dropped).
    pub fn recv_publishes(&mut self, id: ConnectionId) -> Vec<Publish> {
        self.recv(id)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub fn is_closed(&self, id: ConnectionId) -> bool {
        self.peers.get(&id).is_some_and(|p| p.closed)
    }

    /// The transport ends without DISCONNECT.
    pub fn drop_transport(&mut self, id: ConnectionId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.closed = true;
        }
        self.broker.connection_closed(self.now, id);
        self.pump();
    }

    /// Moves the fake clock and fires due timers.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.broker.handle_timeout(self.now);
        self.pump();
    }

    /// Moves the clock to every timer due within `d`, firing each exactly on time.
    pub fn advance_by_timers(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.broker.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.broker.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.broker.handle_timeout(self.now);
        self.pump();
    }

    fn next_pid(&mut self, id: ConnectionId) -> u16 {
        let p = self.peers.get_mut(&id).unwrap();
        let n = p.next_pid;
        p.next_pid = if n == u16::MAX { 1 } else { n + 1 };
        n
    }

    /// Subscribes to one filter with options; returns the SUBACK.
    pub fn subscribe_with(
        &mut self,
        id: ConnectionId,
        f: &str,
        options: SubscriptionOptions,
        sub_id: Option<u32>,
    ) -> SubAck {
        let n = self.next_pid(id);
        let mut s = Subscribe::new(pid(n), filter(f), options);
        if let Some(i) = sub_id {
            s.properties.subscription_identifiers.push(i);
        }
        self.send(id, Packet::Subscribe(s));
        let mut acks = Vec::new();
        for p in self.recv(id) {
            match p {
                Packet::SubAck(a) => acks.push(a),
                other => self.peers.get_mut(&id).unwrap().inbox.push_back(other),
            }
        }
        assert_eq!(acks.len(), 1, "one SUBACK");
        acks.remove(0)
    }

    /// Subscribes to one filter at `qos`; asserts it is granted.
    pub fn subscribe(&mut self, id: ConnectionId, f: &str, qos: QoS) {
        let ack = self.subscribe_with(id, f, SubscriptionOptions::qos(qos), None);
        assert_eq!(ack.reason_codes, vec![ReasonCode::granted(qos)]);
    }

    /// Publishes and completes the QoS flow as a well-behaved client would
    /// (PUBREL after PUBREC); returns the acknowledgement's reason code.
    pub fn publish(
        &mut self,
        id: ConnectionId,
        t: &str,
        payload: &'static str,
        qos: QoS,
    ) -> Option<ReasonCode> {
        self.publish_retain(id, t, payload, qos, false)
    }

    pub fn publish_retain(
        &mut self,
        id: ConnectionId,
        t: &str,
        payload: &'static str,
        qos: QoS,
        retain: bool,
    ) -> Option<ReasonCode> {
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.next_pid(id));
        self.send(
            id,
            Packet::Publish(publish(t, payload, qos, retain, packet_id)),
        );
        let mut rc = None;
        let mut rest = Vec::new();
        for p in self.recv(id) {
            match p {
                Packet::PubAck(a) if Some(a.packet_id.get()) == packet_id => {
                    rc = Some(a.reason_code)
                }
                Packet::PubRec(a) if Some(a.packet_id.get()) == packet_id => {
                    rc = Some(a.reason_code);
                    if !a.reason_code.is_error() {
                        self.send(id, Packet::PubRel(PubRel::new(a.packet_id)));
                        for q in self.recv(id) {
                            match q {
                                Packet::PubComp(_) => {}
                                other => rest.push(other),
                            }
                        }
                    }
                }
                other => rest.push(other),
            }
        }
        self.peers.get_mut(&id).unwrap().inbox.extend(rest);
        rc
    }

    /// Acknowledges every QoS 1/2 PUBLISH in `ps` as a well-behaved subscriber.
    pub fn ack_all(&mut self, id: ConnectionId, ps: &[Publish]) {
        for p in ps {
            match (p.qos, p.packet_id) {
                (QoS::AtLeastOnce, Some(i)) => self.send(id, Packet::PubAck(PubAck::new(i))),
                (QoS::ExactlyOnce, Some(i)) => {
                    self.send(id, Packet::PubRec(PubRec::new(i)));
                    for q in self.recv(id) {
                        match q {
                            Packet::PubRel(r) => {
                                self.send(id, Packet::PubComp(PubComp::new(r.packet_id)))
                            }
                            other => self.peers.get_mut(&id).unwrap().inbox.push_back(other),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    pub fn disconnect(&mut self, id: ConnectionId) {
        self.send(id, Packet::Disconnect(Default::default()));
    }

    pub fn payloads(ps: &[Publish]) -> Vec<String> {
        ps.iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect()
    }
}

/// A log writer whose output a test reads back (`tracing_subscriber`'s
/// `with_writer(move || captured.clone())`).
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
