//! The broker: sessions, subscriptions, retained messages, wills, timers and
//! statistics, driven by method calls that carry `now`.

use crate::auth::{
    Access, AclRequest, AllowAll, AuthDecision, AuthExchange, AuthStep, Authenticator, Authorizer,
};
use crate::broker_config::BrokerConfig;
use crate::connection::{
    auth_request, keep_alive_grace, Conn, ConnState, ConnectionId, ConnectionInfo, OutgoingPublish,
    PendingConnect,
};
use crate::event::{DisconnectReason, DropReason, Event};
use crate::log_line::PublishSummary;
use crate::memory::MemoryAccount;
use crate::message::Message;
use crate::outbox::Outbox;
use crate::persistence::Persistence;
use crate::router::{mounted_filter, mounted_topic, outgoing_qos, too_deep, Router, SubEntry};
use crate::session::{FlowCtx, Session, SessionKey, StoredSubscription, Will};
use crate::slab::Slab;
use crate::stats::{HeapSource, HeapUsage, Statistics};
use crate::storage::{Storage, StoredMessage, StoredSession};
use crate::sys::SysState;
use crate::timer::{Timer, Timers};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, TopicName, UnsubAck, Unsubscribe,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The [`FlowCtx`] of a broker: its fields a session's flow may touch,
/// borrowed apart from `sessions` and `conns`.
macro_rules! flow {
    ($b:expr) => {
        FlowCtx {
            config: &$b.config,
            out: &mut $b.out,
            store: &mut $b.store,
            timers: &mut $b.timers,
            memory: &$b.memory,
        }
    };
}

mod acks;
mod connect;
mod disconnect;
mod persist;
mod publish;
mod reload;
mod sessions;
mod subscribe;
mod sys;
mod timers;
mod will;

const TARGET: &str = "mqtt_broker";
/// The lines Mosquitto's `connection_messages false` turns off: connections
/// opened, clients connected, disconnected or timed out.
const CONNECTION: &str = "mqtt_broker::connection";
/// Mosquitto's `log_type subscribe` lines: `CLIENT QOS FILTER`.
const SUBSCRIBE: &str = "mqtt_broker::subscribe";
/// Mosquitto's `log_type unsubscribe` lines: `CLIENT FILTER`.
const UNSUBSCRIBE: &str = "mqtt_broker::unsubscribe";

/// The deterministic MQTT broker state machine.
///
/// See the [crate documentation](crate) for the calls a driver makes and in
/// which order.
pub struct Broker {
    config: BrokerConfig,
    /// Events for the driver, and the counters.
    out: Outbox,
    /// Write-through to the storage (see [`crate::persistence`]).
    store: Persistence,
    timers: Timers,
    authenticator: Box<dyn Authenticator>,
    authorizer: Box<dyn Authorizer>,
    conns: Slab<ConnectionId, Conn>,
    sessions: Slab<SessionKey, Session>,
    by_client_id: HashMap<String, SessionKey>,
    router: Router,
    next_auto_id: u64,
    started: Option<Instant>,
    restore: Option<crate::storage::StoredState>,
    /// What the `$SYS` updates carry from one to the next.
    sys: SysState,
    /// The embedder's heap numbers, for `$SYS/broker/heap/...`.
    heap: Option<HeapSource>,
    /// What the broker holds for clients, against `memory_limit`.
    memory: Arc<MemoryAccount>,
    /// Whether PUBLISH packets are being refused for `memory_limit` (the
    /// log line is written once per episode).
    memory_refusing: bool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config)
            .field("connections", &self.conns.len())
            .field("sessions", &self.sessions.len())
            .field("subscriptions", &self.router.tree.len())
            .field("retained", &self.router.retained.len())
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with `config`, allowing every client and topic (subject to
    /// `allow_anonymous`), with nothing persisted.
    pub fn new(config: BrokerConfig) -> Self {
        let memory = Arc::new(MemoryAccount::new(config.memory_limit));
        Self {
            config,
            out: Outbox::default(),
            store: Persistence::default(),
            timers: Timers::default(),
            authenticator: Box::new(AllowAll),
            authorizer: Box::new(AllowAll),
            conns: Slab::default(),
            sessions: Slab::default(),
            by_client_id: HashMap::new(),
            router: Router::default(),
            next_auto_id: 0,
            started: None,
            restore: None,
            sys: SysState::default(),
            heap: None,
            memory,
            memory_refusing: false,
        }
    }

    /// Uses `authenticator` to decide who may connect.
    pub fn with_authenticator(mut self, authenticator: Box<dyn Authenticator>) -> Self {
        self.authenticator = authenticator;
        self
    }

    /// Uses `authorizer` to decide who may publish, subscribe and receive what.
    pub fn with_authorizer(mut self, authorizer: Box<dyn Authorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// Reads the heap numbers of `$SYS/broker/heap/current` and
    /// `heap/maximum` (and [`Statistics::heap_current`]) from `source`, the
    /// embedder's allocator statistics. Without a source they are the
    /// bytes the broker counts against `memory_limit` ([`Broker::memory`]):
    /// it has no allocator hook of its own.
    pub fn with_heap_source(
        mut self,
        source: impl Fn() -> Option<HeapUsage> + Send + 'static,
    ) -> Self {
        self.heap = Some(Box::new(source));
        self
    }

    /// Persists sessions, subscriptions, queued and in-flight messages and
    /// retained messages to `storage`, and restores what it holds now.
    ///
    /// The broker always works from its in-memory state (the fast path);
    /// `storage` receives every change to persistent state (write-through)
    /// and is read once, here.
    pub fn with_storage(mut self, storage: Box<dyn Storage>) -> Self {
        // Restored on the first call that brings a `now`: expiry intervals
        // need a clock value.
        self.restore = Some(self.store.set(storage).load());
        self
    }

    /// Gives the storage back (e.g. to build a new broker from it),
    /// flushed.
    pub fn into_storage(mut self) -> Option<Box<dyn Storage>> {
        self.store.take()
    }

    /// Lets the storage write what it buffered ([`Storage::flush`]) now.
    /// A driver need not call it: [`Broker::take_transmit`] flushes before
    /// it hands out any bytes, so nothing is acknowledged to a client
    /// before it is stored (see the `persistence` module).
    pub fn flush_storage(&mut self) {
        self.store.flush();
    }

    /// Turns the `Subscribed`, `Unsubscribed` and `MessageDropped` events
    /// on or off (off by default: they cost an allocation each).
    pub fn report_activity(&mut self, on: bool) {
        self.out.report_activity = on;
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The account of the bytes the broker holds for clients, checked
    /// against [`BrokerConfig::memory_limit`]. A driver that frames packets
    /// itself charges the packets it is receiving to it
    /// ([`crate::memory::ReceiveCharge`]); see [`crate::memory`].
    pub fn memory(&self) -> &Arc<MemoryAccount> {
        &self.memory
    }

    /// Current statistics.
    pub fn stats(&self) -> Statistics {
        let mut s = self.out.stats.clone();
        s.clients_total = self.sessions.len() as u64;
        s.retained_messages = self.router.retained.len() as u64;
        s.clients_maximum = s.clients_maximum.max(s.clients_total);
        s.subscriptions = self.router.tree.len() as u64;
        s.shared_subscriptions = self.router.tree.shared_len() as u64;
        let (mut count, mut bytes) = (0u64, 0u64);
        for (_, session) in self.sessions.iter() {
            count += (session.queue.len() + session.inflight.len()) as u64;
            let queued = session.queue.iter().map(|d| d.msg.payload.len());
            let inflight = session
                .inflight
                .iter()
                .map(|o| o.delivery.msg.payload.len());
            bytes += queued.chain(inflight).map(|n| n as u64).sum::<u64>();
        }
        s.messages_stored = count;
        s.store_messages = count + s.retained_messages;
        s.store_bytes = bytes + self.router.retained.payload_bytes();
        match &self.heap {
            Some(source) => {
                if let Some(heap) = source() {
                    s.heap_current = Some(heap.current);
                    s.heap_maximum = Some(heap.maximum);
                }
            }
            // Without the embedder's numbers: the memory_limit account.
            None => {
                s.heap_current = Some(self.memory.current() as u64);
                s.heap_maximum = Some(self.memory.maximum() as u64);
            }
        }
        s
    }

    // ----- driver API -----------------------------------------------------

    /// A transport connection was accepted (after its TLS handshake).
    pub fn connection_opened(&mut self, now: Instant, info: ConnectionInfo) -> ConnectionId {
        self.open(now, info, false)
    }

    /// An in-process connection: a client inside the hosting program, with
    /// no socket and no encoding either way. Feed it [`Packet`]s with
    /// [`Broker::handle_packet`] (`wire_len`: their encoded size, e.g.
    /// [`Packet::encoded_len`], for the statistics) and take what the
    /// broker sends it as [`Packet`]s with [`Broker::take_packets`] or
    /// [`Broker::take_packets_when_stored`] after [`Event::Transmit`].
    ///
    /// Everything else is a client's: CONNECT with its identifier and
    /// user name goes through the [`Authenticator`], its publications and
    /// subscriptions through the [`Authorizer`]; it counts in the
    /// statistics and `$SYS`, has a session, a will and a Receive Maximum.
    /// An outgoing PUBLISH shares the message's payload (no copy) and keeps
    /// its 5.0 properties; no topic alias is ever used towards it. The
    /// queued packets count against [`BrokerConfig::max_transmit_bytes`]
    /// with their encoded size, as bytes would: a client that does not take
    /// them loses QoS 0 messages and keeps QoS 1/2 ones in its session queue.
    ///
    /// `info` is usually [`ConnectionInfo::in_process`]; log lines show its
    /// `remote_addr` (`127.0.0.1:0` there).
    pub fn local_connection_opened(&mut self, now: Instant, info: ConnectionInfo) -> ConnectionId {
        self.open(now, info, true)
    }

    fn open(&mut self, now: Instant, info: ConnectionInfo, local: bool) -> ConnectionId {
        self.touch(now);
        let id = self.conns.insert(|id| Conn::new(id, info, now));
        let Some(conn) = self.conns.get_mut(id) else {
            return id;
        };
        self.out.stats.connections_open += 1;
        self.out.stats.connections_accepted += 1;
        *(self.out.stats.connections_by_listener)
            .entry(conn.info.listener.port)
            .or_default() += 1;
        if local {
            conn.local = Some(Box::default());
            tracing::info!(
                target: CONNECTION,
                "New in-process connection (shown as {}).",
                conn.info.remote_addr
            );
        } else {
            tracing::info!(
                target: CONNECTION,
                "New connection from {}:{} on port {}.",
                conn.info.remote_addr.ip(),
                conn.info.remote_addr.port(),
                conn.info.listener.port
            );
        }
        if let Some(max) = self.config.max_connections {
            if self.out.stats.connections_open > max as u64 {
                tracing::info!(
                    target: TARGET,
                    "Client connection from {} denied: max_connections exceeded.",
                    conn.info.remote_addr.ip()
                );
                conn.state = ConnState::Closing;
                self.out.events.push_back(Event::Close(id));
                return id;
            }
        }
        let at = now + self.config.connect_timeout;
        self.set_timer(at, Timer::ConnectTimeout(id));
        id
    }

    /// Bytes arrived on connection `id`: every whole packet is decoded (with
    /// the connection's own decoder, limited to `max_packet_size`, made on
    /// the first call) and handled; an incomplete packet stays in `buf`.
    pub fn handle_bytes(&mut self, now: Instant, id: ConnectionId, buf: &mut BytesMut) {
        self.touch(now);
        let max_packet = self.config.effective_max_packet_size();
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                buf.clear();
                return;
            };
            if conn.state == ConnState::Closing {
                buf.clear();
                return;
            }
            let before = buf.len();
            let version = conn.version;
            let connected = conn.state != ConnState::AwaitingConnect;
            let decoder = conn.decoder.get_or_insert_with(|| {
                let mut d = Box::new(mqtt_codec::Decoder::new());
                d.set_max_packet_size(max_packet);
                if connected {
                    d.set_version(version);
                }
                d
            });
            match decoder.decode(buf) {
                Ok(Some(packet)) => {
                    self.out.stats.bytes_received += (before - buf.len()) as u64;
                    self.dispatch(now, id, packet);
                }
                Ok(None) => return,
                Err(e) => {
                    buf.clear();
                    self.decode_error(now, id, e);
                    return;
                }
            }
        }
    }

    /// A packet decoded by the driver arrived on connection `id`;
    /// `wire_len` is how many bytes it took on the wire (what the decoder
    /// consumed), for the statistics. Use either this or
    /// [`Broker::handle_bytes`] for a connection, not both: the connection
    /// then has one decoder, the driver's.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        id: ConnectionId,
        packet: Packet,
        wire_len: usize,
    ) {
        self.touch(now);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        self.out.stats.bytes_received += wire_len as u64;
        self.dispatch(now, id, packet);
    }

    /// The driver reports that a decoding error broke connection `id`'s
    /// byte stream (for drivers that decode with their own [`mqtt_codec::Decoder`]).
    pub fn handle_decode_error(&mut self, now: Instant, id: ConnectionId, error: DecodeError) {
        self.touch(now);
        self.decode_error(now, id, error);
    }

    /// The driver reports that the packet connection `id` is sending does
    /// not fit within `memory_limit` ([`crate::memory::ReceiveCharge::update`]
    /// failed): the connection is closed (5.0: DISCONNECT 0x97 Quota
    /// exceeded; 3.1.1 and before CONNECT: closed), its will published, and
    /// the broker goes on serving everyone else. The driver stops reading
    /// the connection.
    pub fn handle_memory_limit(
        &mut self,
        now: Instant,
        id: ConnectionId,
        exceeded: crate::memory::MemoryLimitExceeded,
    ) {
        self.touch(now);
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        tracing::info!(
            target: CONNECTION,
            "Client {} disconnected due to out of memory: its packet of {} bytes being received does not fit within memory_limit ({} bytes, {} held). Raise memory_limit, or lower max_packet_size so that packets this large are refused as too large (0x95).",
            conn.name(),
            exceeded.needed,
            exceeded.limit,
            exceeded.current
        );
        self.send_disconnect(id, ReasonCode::QuotaExceeded);
        self.close_conn(now, id, true, DisconnectReason::MemoryLimit);
    }

    /// The transport of `id` ended. Unless the client sent DISCONNECT (or the
    /// broker closed it), this is an abnormal end: the will is published.
    pub fn connection_closed(&mut self, now: Instant, id: ConnectionId) {
        self.touch(now);
        self.transport_ended(now, id, DisconnectReason::ConnectionLost);
    }

    /// The transport of `id` failed in a way the client caused (a
    /// WebSocket text frame, a TLS record that does not decrypt, ...):
    /// `why` says how. It ends like [`Broker::connection_closed`] (the will
    /// is published), logged as "Client X disconnected: `why`." instead of
    /// "Client X closed its connection.".
    pub fn connection_failed(&mut self, now: Instant, id: ConnectionId, why: &str) {
        self.touch(now);
        if let Some(conn) = self.conn_ref(id) {
            if conn.state != ConnState::Closing {
                tracing::info!(target: CONNECTION, "Client {} disconnected: {}.", conn.name(), why);
            }
        }
        self.transport_ended_quietly(now, id, DisconnectReason::ConnectionLost);
    }

    fn transport_ended(&mut self, now: Instant, id: ConnectionId, reason: DisconnectReason) {
        if reason == DisconnectReason::ConnectionLost {
            if let Some(conn) = self.conn_ref(id) {
                if conn.state != ConnState::Closing {
                    tracing::info!(target: CONNECTION, "Client {} closed its connection.", conn.name());
                }
            }
        }
        self.transport_ended_quietly(now, id, reason);
    }

    /// [`Broker::transport_ended`] without the "closed its connection" line.
    fn transport_ended_quietly(
        &mut self,
        now: Instant,
        id: ConnectionId,
        reason: DisconnectReason,
    ) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let state = conn.state;
        let name = conn.name().to_string();
        let session = conn.session;
        let (username, remote_addr) = (conn.username.clone(), conn.info.remote_addr);
        if state != ConnState::Closing {
            if state == ConnState::Connected {
                self.out.stats.clients_connected =
                    self.out.stats.clients_connected.saturating_sub(1);
                self.out.stats.disconnects.count(reason);
                self.out.events.push_back(Event::ClientDisconnected {
                    connection: id,
                    client_id: name,
                    reason,
                    username,
                    remote_addr,
                    reason_code: None,
                });
            }
            if let Some(s) = session {
                self.session_offline(now, s, true);
            }
        }
        if let Some(conn) = self.conns.remove(id) {
            let by_port = &mut self.out.stats.connections_by_listener;
            if let Some(n) = by_port.get_mut(&conn.info.listener.port) {
                *n = n.saturating_sub(1);
            }
        }
        self.out.stats.connections_open = self.out.stats.connections_open.saturating_sub(1);
    }

    /// How long a write to connection `id` may make no progress before the
    /// driver gives up on it ([`BrokerConfig::write_timeout`]; by default
    /// 1.5 times the client's Keep Alive) and calls
    /// [`Broker::connection_stalled`].
    pub fn write_timeout(&self, id: ConnectionId) -> Duration {
        if let Some(t) = self.config.write_timeout {
            return t;
        }
        match self.conn_ref(id).map_or(0, |c| c.keep_alive) {
            0 => BrokerConfig::DEFAULT_WRITE_TIMEOUT,
            k => keep_alive_grace(k),
        }
    }

    /// The driver could not write to `id` within [`Broker::write_timeout`]:
    /// the client stopped reading. The connection ends as a lost one (its
    /// will is published; QoS 1 and 2 messages in flight stay in its
    /// session and are sent again when it returns, if the session
    /// persists). `unsent` is what the driver could not write, from the
    /// start of a packet: its QoS 0 messages are counted as dropped.
    pub fn connection_stalled(&mut self, now: Instant, id: ConnectionId, unsent: &[u8]) {
        self.touch(now);
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        let version = conn.version;
        let waited = self.write_timeout(id);
        tracing::info!(
            target: CONNECTION,
            "Client {} has not read what was sent to it for {} s (write_timeout), disconnecting.",
            name,
            waited.as_secs_f32()
        );
        let mut decoder = mqtt_codec::Decoder::with_version(version);
        decoder.set_max_packet_size(u32::MAX);
        let mut rest = BytesMut::from(unsent);
        while let Ok(Some(p)) = decoder.decode(&mut rest) {
            if let Packet::Publish(p) = p {
                if p.qos == QoS::AtMostOnce {
                    self.out
                        .dropped(&name, p.topic.as_str(), DropReason::ClientNotReading);
                }
            }
        }
        self.transport_ended(now, id, DisconnectReason::WriteTimeout);
    }

    /// When [`Broker::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Takes everything ready to send on `id`, encoded into one buffer.
    /// Taking the bytes makes room for queued messages, which are encoded
    /// next (and announced with another [`Event::Transmit`]).
    ///
    /// Before it hands out any bytes, the storage is flushed of every record
    /// written so far: nothing leaves before what it depends on is stored
    /// (see the `persistence` module).
    ///
    /// An in-process connection has no bytes (this returns `None`): take
    /// its packets with [`Broker::take_packets`].
    pub fn take_transmit(&mut self, now: Instant, id: ConnectionId) -> Option<BytesMut> {
        let out = self.take_out(now, id, take_bytes)?;
        self.store.flush();
        Some(out)
    }

    /// Like [`Broker::take_transmit`], without waiting for the storage: the
    /// bytes come inside a [`Transmit`] that hands them out once the
    /// storage has written every record so far. A driver holding the
    /// broker behind a lock calls this, releases the lock, then awaits
    /// [`Transmit::stored`] (or calls [`Transmit::wait`]) and writes: the
    /// disk is never waited for under the lock, and no byte can go out
    /// before what it acknowledges is stored.
    pub fn take_transmit_when_stored(
        &mut self,
        now: Instant,
        id: ConnectionId,
    ) -> Option<Transmit> {
        let data = self.take_out(now, id, take_bytes)?;
        Some(Transmit {
            data,
            stored: self.store.start_flush(),
        })
    }

    /// The packets ready for the in-process connection `id`
    /// ([`Broker::local_connection_opened`]), in order, unencoded: what
    /// [`Broker::take_transmit`] is for a network connection. Taking them
    /// makes room for queued messages (announced with another
    /// [`Event::Transmit`]), and the storage is flushed first. `None` when
    /// there are none, or `id` is not an in-process connection.
    pub fn take_packets(&mut self, now: Instant, id: ConnectionId) -> Option<Vec<Packet>> {
        let out = self.take_out(now, id, take_packets)?;
        self.store.flush();
        Some(out)
    }

    /// Like [`Broker::take_packets`], without waiting for the storage: the
    /// packets are handed out by the [`Transmit`] once the storage has
    /// written every record so far (see
    /// [`Broker::take_transmit_when_stored`]).
    pub fn take_packets_when_stored(
        &mut self,
        now: Instant,
        id: ConnectionId,
    ) -> Option<Transmit<Vec<Packet>>> {
        let data = self.take_out(now, id, take_packets)?;
        Some(Transmit {
            data,
            stored: self.store.start_flush(),
        })
    }

    /// What is ready for `id` (taken by `take`, with its size in bytes),
    /// and the next messages moved out behind it.
    fn take_out<T>(
        &mut self,
        now: Instant,
        id: ConnectionId,
        take: impl FnOnce(&mut Conn) -> Option<(T, usize)>,
    ) -> Option<T> {
        // (No first-call work here: a connection exists only after a call
        // that did it.)
        let conn = self.conns.get_mut(id)?;
        let out = take(conn);
        conn.transmit_pending = false;
        if let Some(slot) = conn.session {
            if let Some(session) = self.sessions.get_mut(slot) {
                flow!(self).pump(now, session, conn);
            }
        }
        if conn.has_output() && !conn.transmit_pending {
            conn.transmit_pending = true;
            self.out.events.push_back(Event::Transmit(id));
        }
        let (out, len) = out?;
        self.out.stats.bytes_sent += len as u64;
        Some(out)
    }

    /// Appends everything ready to send on `id` to `buf`; whether anything was.
    pub fn poll_transmit(&mut self, now: Instant, id: ConnectionId, buf: &mut BytesMut) -> bool {
        match self.take_transmit(now, id) {
            Some(out) if buf.is_empty() => {
                *buf = out;
                true
            }
            Some(out) => {
                buf.extend_from_slice(&out);
                true
            }
            None => false,
        }
    }

    /// Graceful shutdown: every connected 5.0 client gets DISCONNECT 0x8B
    /// Server shutting down, and every connection is closed.
    pub fn shutdown(&mut self, now: Instant) {
        self.touch(now);
        let ids: Vec<ConnectionId> = self.conns.iter().map(|(_, c)| c.id).collect();
        for id in ids {
            self.send_disconnect(id, ReasonCode::ServerShuttingDown);
            self.close_conn(now, id, true, DisconnectReason::ServerShuttingDown);
        }
    }

    /// Client identifiers of the sessions (online and offline).
    pub fn session_client_ids(&self) -> impl Iterator<Item = &str> {
        self.sessions.iter().map(|(_, s)| s.client_id.as_str())
    }

    // ----- internals -------------------------------------------------------

    fn touch(&mut self, now: Instant) {
        if self.started.is_none() || self.restore.is_some() {
            self.first_touch(now);
        }
    }

    /// The first call with a `now`: `$SYS` starts, and a storage's state
    /// is restored.
    #[cold]
    fn first_touch(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
            let interval = self.config.sys_interval;
            if !interval.is_zero() {
                self.set_timer(now + interval, Timer::Sys);
            }
        }
        if let Some(state) = self.restore.take() {
            self.restore_state(now, state);
        }
    }

    fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.set(at, timer);
        if self.timers.needs_sweep() {
            self.sweep_timers();
        }
    }

    /// Drops the timers that can no longer do anything when they fire: of
    /// connections that are gone, and expiries and wills that were
    /// rescheduled or whose session is gone (what the handlers in
    /// `timers.rs` would ignore).
    fn sweep_timers(&mut self) {
        let (conns, sessions) = (&self.conns, &self.sessions);
        self.timers.sweep(|at, timer| match timer {
            Timer::KeepAlive(id) | Timer::ConnectTimeout(id) | Timer::AuthTimeout(id) => {
                conns.get(*id).is_some()
            }
            Timer::Will(slot) => sessions.get(*slot).is_some_and(|s| s.will_at == Some(at)),
            Timer::SessionExpiry(slot) => sessions
                .get(*slot)
                .is_some_and(|s| s.expires_at == Some(at)),
            Timer::QueueExpiry(slot) => sessions.get(*slot).is_some(),
            Timer::RetainedExpiry(_) | Timer::Sys => true,
        });
    }

    /// How many timers the broker holds (keep alive, CONNECT time-outs,
    /// wills, expiries, `$SYS`). Timers of connections and sessions that
    /// are gone are swept out once they outnumber the live ones, so this
    /// stays within a small multiple of the connections and sessions,
    /// however often clients reconnect.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    fn conn_mut(&mut self, id: ConnectionId) -> Option<&mut Conn> {
        self.conns.get_mut(id)
    }

    /// The client identifier of `id` for log lines.
    /// Whether `id`'s authentication waits for a deferred decision.
    fn auth_deferred(&self, id: ConnectionId) -> bool {
        self.conn_ref(id)
            .and_then(|c| c.pending.as_ref())
            .is_some_and(|p| p.deferred)
    }

    /// The peer address of a connection, while it is open.
    #[cfg(feature = "tokio")]
    pub(crate) fn connection_addr(&self, id: ConnectionId) -> Option<std::net::SocketAddr> {
        self.conn_ref(id).map(|c| c.info.remote_addr)
    }

    fn name_of(&self, id: ConnectionId) -> &str {
        self.conn_ref(id).map_or("<unknown>", |c| c.name())
    }

    fn conn_ref(&self, id: ConnectionId) -> Option<&Conn> {
        self.conns.get(id)
    }

    fn send_to(&mut self, id: ConnectionId, packet: &Packet) -> bool {
        match self.conns.get_mut(id) {
            Some(conn) => conn.send(&mut self.out, packet),
            None => false,
        }
    }

    fn send_disconnect(&mut self, id: ConnectionId, rc: ReasonCode) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        // 3.1.1 has no server DISCONNECT: the connection is just closed.
        if conn.state == ConnState::Connected && conn.version.is_v5() {
            tracing::debug!(target: TARGET, "Sending DISCONNECT to {} (rc{})", conn.name(), rc.as_u8());
            self.send_to(id, &Packet::Disconnect(Disconnect::new(rc)));
        }
    }

    /// Closes the connection for a protocol violation: DISCONNECT with the
    /// reason code in 5.0 [MQTT-4.13.1-1], a plain close in 3.1.1. Other
    /// connections are not affected.
    fn violation(&mut self, now: Instant, id: ConnectionId, rc: ReasonCode, why: &str) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Protocol violation by {}: {}.", name, why);
        if rc == ReasonCode::MalformedPacket {
            tracing::info!(target: TARGET, "Client {} disconnected due to malformed packet.", name);
        } else if rc == ReasonCode::PacketTooLarge {
            // Mosquitto's line for a packet over max_packet_size.
            tracing::info!(target: TARGET, "Client {} disconnected due to oversize packet.", name);
        } else {
            tracing::info!(target: TARGET, "Client {} disconnected due to protocol error.", name);
        }
        self.send_disconnect(id, rc);
        self.close_conn(now, id, true, DisconnectReason::ProtocolViolation(rc));
    }

    fn decode_error(&mut self, now: Instant, id: ConnectionId, e: DecodeError) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.state == ConnState::AwaitingConnect {
            if let DecodeError::UnsupportedProtocolVersion(level) = e {
                // [MQTT-3.1.2-2] CONNACK 0x01 (3.1.1 form: the version is unknown).
                conn.version = ProtocolVersion::V3_1_1;
                tracing::info!(
                    target: TARGET,
                    "Client <unknown> uses unsupported protocol level {}.",
                    level
                );
                self.refuse(now, id, ReasonCode::UnsupportedProtocolVersion, None);
                return;
            }
        }
        self.violation(now, id, e.reason_code(), &e.to_string());
    }

    /// Marks the connection closing, detaches its session (publishing the
    /// will if `publish_will`), and asks the driver to close it.
    fn close_conn(
        &mut self,
        now: Instant,
        id: ConnectionId,
        publish_will: bool,
        reason: DisconnectReason,
    ) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        let was_connected = conn.state == ConnState::Connected;
        conn.state = ConnState::Closing;
        conn.pending = None;
        let session = conn.session.take();
        let name = conn.name().to_string();
        if was_connected {
            let reason_code = conn.disconnect_code.or(reason.reason_code());
            let (username, remote_addr) = (conn.username.clone(), conn.info.remote_addr);
            self.out.stats.clients_connected = self.out.stats.clients_connected.saturating_sub(1);
            self.out.stats.disconnects.count(reason);
            self.out.events.push_back(Event::ClientDisconnected {
                connection: id,
                client_id: name,
                reason,
                username,
                remote_addr,
                reason_code,
            });
        }
        self.out.events.push_back(Event::Close(id));
        if let Some(s) = session {
            self.session_offline(now, s, publish_will);
        }
    }

    fn dispatch(&mut self, now: Instant, id: ConnectionId, packet: Packet) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.last_rx = now;
        let state = conn.state;
        self.out.stats.messages_received += 1;
        if matches!(packet, Packet::Connect(_)) {
            self.out.stats.connects_received += 1;
        }
        self.route_in(now, id, state, packet);
    }

    /// A packet received (or held while authentication was deferred) goes
    /// where the connection's state says.
    fn route_packet(&mut self, now: Instant, id: ConnectionId, packet: Packet) {
        if let Some(state) = self.conn_ref(id).map(|c| c.state) {
            self.route_in(now, id, state, packet);
        }
    }

    fn route_in(&mut self, now: Instant, id: ConnectionId, state: ConnState, packet: Packet) {
        match (state, packet) {
            (ConnState::Closing, _) => {}
            (ConnState::AwaitingConnect, Packet::Connect(c)) => self.handle_connect(now, id, c),
            (ConnState::AwaitingConnect, p) => {
                // [MQTT-3.1.0-1] the first packet must be CONNECT.
                self.violation(
                    now,
                    id,
                    ReasonCode::ProtocolError,
                    &format!("{} before CONNECT", p.packet_type()),
                );
            }
            (ConnState::Authenticating, p) if self.auth_deferred(id) => self.hold(now, id, p),
            (ConnState::Authenticating, Packet::Auth(a)) => self.handle_auth(now, id, a),
            (ConnState::Authenticating, p) => {
                // Only AUTH belongs in the exchange (section 4.12).
                self.violation(
                    now,
                    id,
                    ReasonCode::ProtocolError,
                    &format!("{} during authentication", p.packet_type()),
                );
            }
            (ConnState::Connected, packet) => match packet {
                Packet::Connect(_) => {
                    // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
                    self.violation(now, id, ReasonCode::ProtocolError, "second CONNECT");
                }
                Packet::Publish(p) => self.handle_publish(now, id, p),
                Packet::PubAck(a) => self.handle_puback(now, id, a.packet_id, a.reason_code),
                Packet::PubRec(a) => self.handle_pubrec(now, id, a),
                Packet::PubRel(a) => self.handle_pubrel(id, a),
                Packet::PubComp(a) => self.handle_pubcomp(now, id, a),
                Packet::Subscribe(s) => self.handle_subscribe(now, id, s),
                Packet::Unsubscribe(u) => self.handle_unsubscribe(now, id, u),
                Packet::PingReq => {
                    let name = self
                        .conn_ref(id)
                        .map(|c| c.name().to_string())
                        .unwrap_or_default();
                    tracing::debug!(target: TARGET, "Received PINGREQ from {}", name);
                    // [MQTT-3.12.4-1]
                    tracing::debug!(target: TARGET, "Sending PINGRESP to {}", name);
                    self.send_to(id, &Packet::PingResp);
                }
                Packet::Disconnect(d) => self.handle_disconnect(now, id, d),
                Packet::Auth(a) => self.handle_auth(now, id, a),
                p @ (Packet::ConnAck(_)
                | Packet::SubAck(_)
                | Packet::UnsubAck(_)
                | Packet::PingResp) => {
                    self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        &format!("{} sent by a client", p.packet_type()),
                    );
                }
            },
        }
    }
}

/// Takes a network connection's bytes, if any.
fn take_bytes(conn: &mut Conn) -> Option<(BytesMut, usize)> {
    if conn.out.is_empty() {
        return None;
    }
    let out = std::mem::take(&mut conn.out);
    let len = out.len();
    Some((out, len))
}

/// Takes an in-process connection's packets, if any.
fn take_packets(conn: &mut Conn) -> Option<(Vec<Packet>, usize)> {
    let local = conn.local.as_mut().filter(|l| !l.packets.is_empty())?;
    let len = std::mem::take(&mut local.bytes);
    Some((std::mem::take(&mut local.packets), len))
}

/// What one connection is sent, held until the storage has written the
/// records it depends on (see [`Broker::take_transmit_when_stored`]): bytes
/// for a network connection, `Vec<Packet>` for an in-process one
/// ([`Broker::take_packets_when_stored`]).
#[derive(Debug)]
#[must_use = "the bytes are the connection's next packets"]
pub struct Transmit<T = BytesMut> {
    data: T,
    stored: Option<crate::FlushTicket>,
}

impl<T> Transmit<T> {
    /// Whether the data may go out now.
    pub fn is_ready(&self) -> bool {
        self.stored.as_ref().is_none_or(|t| t.is_done())
    }

    /// The data, once the storage has written what it depends on.
    pub async fn stored(self) -> T {
        if let Some(ticket) = self.stored {
            ticket.await;
        }
        self.data
    }

    /// The data, blocking the thread until the storage has written what
    /// it depends on.
    pub fn wait(self) -> T {
        if let Some(ticket) = &self.stored {
            ticket.wait();
        }
        self.data
    }
}

impl Transmit<BytesMut> {
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no bytes (never, for a `Transmit` the broker made).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl Transmit<Vec<Packet>> {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no packets (never, for a `Transmit` the broker made).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
