//! The core's own guarantee: no byte leaves the broker before the storage
//! records it depends on are flushed. Checked with a storage that records
//! the order of its writes and flushes, and a driver that records when it
//! takes bytes.

use bytes::BytesMut;
use mqtt_broker_core::mqtt_codec::{
    Connect, Packet, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName,
};
use mqtt_broker_core::{
    Broker, BrokerConfig, ConnectionId, ConnectionInfo, Event, FlushTicket, MemoryStorage, Storage,
    StoredDelivery, StoredMessage, StoredSession, StoredState, WriteProgress,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Write(&'static str),
    Flush,
    Transmit(ConnectionId),
}

type Log = Arc<Mutex<Vec<Step>>>;

/// A [`MemoryStorage`] that logs every call.
struct Recording {
    inner: MemoryStorage,
    log: Log,
}

impl Recording {
    fn write(&self, what: &'static str) {
        self.log.lock().unwrap().push(Step::Write(what));
    }
}

impl Storage for Recording {
    fn load(&mut self) -> StoredState {
        self.inner.load()
    }
    fn save_session(&mut self, session: &StoredSession) {
        self.write("save_session");
        self.inner.save_session(session)
    }
    fn remove_session(&mut self, client_id: &str) {
        self.write("remove_session");
        self.inner.remove_session(client_id)
    }
    fn save_message(&mut self, client_id: &str, seq: u64, delivery: &StoredDelivery) {
        self.write("save_message");
        self.inner.save_message(client_id, seq, delivery)
    }
    fn remove_message(&mut self, client_id: &str, seq: u64) {
        self.write("remove_message");
        self.inner.remove_message(client_id, seq)
    }
    fn save_retained(&mut self, message: &StoredMessage) {
        self.write("save_retained");
        self.inner.save_retained(message)
    }
    fn remove_retained(&mut self, topic: &str) {
        self.write("remove_retained");
        self.inner.remove_retained(topic)
    }
    fn flush(&mut self) {
        self.log.lock().unwrap().push(Step::Flush);
    }
}

/// A driver that takes every connection's bytes when told, logging it.
fn drain(broker: &mut Broker, now: Instant, log: &Log) {
    while let Some(e) = broker.poll_event() {
        if let Event::Transmit(id) | Event::Close(id) = e {
            if broker.take_transmit(now, id).is_some() {
                log.lock().unwrap().push(Step::Transmit(id));
            }
        }
    }
}

fn send(broker: &mut Broker, now: Instant, id: ConnectionId, p: Packet, log: &Log) {
    let mut buf = BytesMut::new();
    p.encode(V, &mut buf).unwrap();
    broker.handle_bytes(now, id, &mut buf);
    drain(broker, now, log);
}

fn persistent(client_id: &str) -> Packet {
    let mut c = Connect::new(V, client_id);
    c.clean_start = false;
    Packet::Connect(Box::new(c))
}

#[test]
fn no_byte_leaves_before_the_storage_records_it_depends_on() {
    let log: Log = Arc::default();
    let storage = Recording {
        inner: MemoryStorage::new(),
        log: log.clone(),
    };
    let mut broker = Broker::new(BrokerConfig::default()).with_storage(Box::new(storage));
    let now = Instant::now();

    // A persistent subscriber (its session and subscription are stored
    // before CONNACK and SUBACK), a persistent publisher of QoS 1 and 2
    // retained messages (stored before PUBACK / PUBREC), with the
    // subscriber's copies stored before they are sent.
    let sub = broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:1".parse().unwrap()));
    send(&mut broker, now, sub, persistent("sub"), &log);
    let subscribe = Subscribe::new(
        mqtt_broker_core::mqtt_codec::PacketId::new(1).unwrap(),
        TopicFilter::new("t/#").unwrap(),
        SubscriptionOptions::qos(QoS::ExactlyOnce),
    );
    send(&mut broker, now, sub, Packet::Subscribe(subscribe), &log);
    let publisher =
        broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:2".parse().unwrap()));
    send(&mut broker, now, publisher, persistent("pub"), &log);
    for (n, qos) in [(1, QoS::AtLeastOnce), (2, QoS::ExactlyOnce)] {
        let mut p = Publish::new(TopicName::try_from("t/x").unwrap(), "m");
        p.qos = qos;
        p.retain = true;
        p.packet_id = mqtt_broker_core::mqtt_codec::PacketId::new(n);
        send(&mut broker, now, publisher, Packet::Publish(p), &log);
    }

    let log = log.lock().unwrap().clone();
    for what in ["save_session", "save_message", "save_retained"] {
        assert!(log.contains(&Step::Write(what)), "{what} in {log:?}");
    }
    assert!(log
        .iter()
        .any(|s| matches!(s, Step::Transmit(id) if *id == sub)));
    assert!(log
        .iter()
        .any(|s| matches!(s, Step::Transmit(id) if *id == publisher)));
    // Every write is followed by a flush before the next transmit.
    let mut unflushed = None;
    for (i, step) in log.iter().enumerate() {
        match step {
            Step::Write(what) => unflushed = unflushed.or(Some((i, *what))),
            Step::Flush => unflushed = None,
            Step::Transmit(id) => assert_eq!(
                unflushed, None,
                "bytes for {id} left at step {i} before a stored record was flushed: {log:?}"
            ),
        }
    }
}

/// A storage that "writes" on another thread: `start_flush` hands out a
/// ticket of a [`WriteProgress`] the test completes by hand.
struct Deferred {
    inner: MemoryStorage,
    progress: Arc<WriteProgress>,
    batches: u64,
    unflushed: bool,
}

impl Storage for Deferred {
    fn load(&mut self) -> StoredState {
        self.inner.load()
    }
    fn save_session(&mut self, session: &StoredSession) {
        self.unflushed = true;
        self.inner.save_session(session)
    }
    fn remove_session(&mut self, client_id: &str) {
        self.unflushed = true;
        self.inner.remove_session(client_id)
    }
    fn save_message(&mut self, client_id: &str, seq: u64, delivery: &StoredDelivery) {
        self.unflushed = true;
        self.inner.save_message(client_id, seq, delivery)
    }
    fn remove_message(&mut self, client_id: &str, seq: u64) {
        self.unflushed = true;
        self.inner.remove_message(client_id, seq)
    }
    fn save_retained(&mut self, message: &StoredMessage) {
        self.unflushed = true;
        self.inner.save_retained(message)
    }
    fn remove_retained(&mut self, topic: &str) {
        self.unflushed = true;
        self.inner.remove_retained(topic)
    }
    fn start_flush(&mut self) -> Option<FlushTicket> {
        if std::mem::take(&mut self.unflushed) {
            self.batches += 1;
        }
        (self.progress.written() < self.batches).then(|| self.progress.ticket(self.batches))
    }
}

/// A broker over a [`Deferred`] storage, and the progress the test completes.
fn deferred_broker() -> (Broker, Arc<WriteProgress>) {
    let progress = WriteProgress::new();
    let storage = Deferred {
        inner: MemoryStorage::new(),
        progress: progress.clone(),
        batches: 0,
        unflushed: false,
    };
    let broker = Broker::new(BrokerConfig::default()).with_storage(Box::new(storage));
    (broker, progress)
}

/// The transmit ids the broker announced, in order.
fn announced(broker: &mut Broker) -> Vec<ConnectionId> {
    let mut ids = Vec::new();
    while let Some(e) = broker.poll_event() {
        if let Event::Transmit(id) | Event::Close(id) = e {
            ids.push(id);
        }
    }
    ids
}

#[test]
fn bytes_taken_without_waiting_open_only_after_the_storage_wrote_their_records() {
    let (mut broker, progress) = deferred_broker();
    let now = Instant::now();
    let feed = |broker: &mut Broker, id, p: Packet| {
        let mut buf = BytesMut::new();
        p.encode(V, &mut buf).unwrap();
        broker.handle_bytes(now, id, &mut buf);
    };

    // A persistent client's CONNACK depends on its stored session.
    let a = broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:1".parse().unwrap()));
    feed(&mut broker, a, persistent("a"));
    assert_eq!(announced(&mut broker), [a]);
    let connack = broker.take_transmit_when_stored(now, a).unwrap();
    assert!(
        !connack.is_ready(),
        "CONNACK ready before its session was written"
    );

    // A second client connects while that write is under way; its own
    // session is batch 2. A third, not persistent, stores nothing, but
    // its bytes were taken after batch 2 started, so they wait for it too.
    let b = broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:2".parse().unwrap()));
    feed(&mut broker, b, persistent("b"));
    let c = broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:3".parse().unwrap()));
    feed(
        &mut broker,
        c,
        Packet::Connect(Box::new(Connect::new(V, "c"))),
    );
    announced(&mut broker);
    let connack_b = broker.take_transmit_when_stored(now, b).unwrap();
    let connack_c = broker.take_transmit_when_stored(now, c).unwrap();
    assert!(!connack_b.is_ready() && !connack_c.is_ready());

    progress.done_up_to(1);
    assert!(connack.is_ready());
    assert!(!connack_b.is_ready() && !connack_c.is_ready());
    progress.done_up_to(2);
    assert!(connack_b.is_ready() && connack_c.is_ready());
    // The bytes are the CONNACKs (0x20), handed out whole.
    for t in [connack, connack_b, connack_c] {
        assert_eq!(t.wait()[0], 0x20);
    }

    // Nothing written since: the next bytes are ready at once.
    let mut ping = BytesMut::new();
    Packet::PingReq.encode(V, &mut ping).unwrap();
    broker.handle_bytes(now, c, &mut ping);
    announced(&mut broker);
    assert!(broker.take_transmit_when_stored(now, c).unwrap().is_ready());
}

#[test]
fn a_driver_awaiting_transmit_writes_after_the_storage_thread_finished() {
    let (mut broker, progress) = deferred_broker();
    let now = Instant::now();
    let a = broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:1".parse().unwrap()));
    let mut buf = BytesMut::new();
    persistent("a").encode(V, &mut buf).unwrap();
    broker.handle_bytes(now, a, &mut buf);
    let t = broker.take_transmit_when_stored(now, a).unwrap();
    let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (progress, written) = (progress.clone(), written.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            written.store(true, std::sync::atomic::Ordering::SeqCst);
            progress.done_up_to(1);
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = rt.block_on(t.stored());
    assert!(written.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(bytes[0], 0x20);
    writer.join().unwrap();
}

#[test]
fn an_in_process_connections_packets_wait_for_the_storage_like_bytes() {
    let (mut broker, progress) = deferred_broker();
    let now = Instant::now();
    let a = broker.local_connection_opened(now, ConnectionInfo::in_process());
    let connect = persistent("inside");
    let len = connect.encoded_len(V);
    broker.handle_packet(now, a, connect, len);
    assert_eq!(announced(&mut broker), [a]);
    let connack = broker.take_packets_when_stored(now, a).unwrap();
    assert_eq!(connack.len(), 1);
    assert!(
        !connack.is_ready(),
        "CONNACK handed out before its session was written"
    );
    progress.done_up_to(1);
    assert!(connack.is_ready());
    assert!(matches!(&connack.wait()[..], [Packet::ConnAck(_)]));
}
