//! The broker: sessions, subscriptions, retained messages, wills, timers and
//! statistics, driven by method calls that carry `now`.

use crate::auth::{
    Access, AclRequest, AllowAll, AuthDecision, AuthExchange, AuthRequest, AuthStep, Authenticator,
    Authorizer,
};
use crate::broker_config::BrokerConfig;
use crate::connection::{ConnectionId, ConnectionInfo};
use crate::event::{DisconnectReason, Event};
use crate::log_line::PublishSummary;
use crate::message::Message;
use crate::output::{Conn, ConnState, Ctx};
use crate::retained::RetainedStore;
use crate::session::{Session, StoredSubscription, Will};
use crate::slab::Slab;
use crate::stats::Statistics;
use crate::storage::{Storage, StoredMessage, StoredSession};
use crate::timer::Timer;
use crate::topic_tree::{Match, SubEntry, SubscriptionTree};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, TopicFilter, TopicName, UnsubAck, Unsubscribe,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TARGET: &str = "mqtt_broker";

/// A CONNECT held while its AUTH exchange runs.
#[derive(Debug)]
pub(crate) struct PendingConnect {
    connect: Box<Connect>,
    client_id: String,
    assigned: bool,
    server_keep_alive: Option<u16>,
    username: Option<String>,
    username_from_certificate: bool,
    exchange: Option<AuthExchange>,
}

/// The deterministic MQTT broker state machine.
///
/// See the [crate documentation](crate) for the calls a driver makes and in
/// which order.
pub struct Broker {
    ctx: Ctx,
    authenticator: Box<dyn Authenticator>,
    authorizer: Box<dyn Authorizer>,
    conns: Slab<Conn>,
    sessions: Slab<Session>,
    by_client_id: HashMap<String, u32>,
    tree: SubscriptionTree,
    retained: RetainedStore,
    matches: Vec<Match>,
    sub_ids: Vec<u32>,
    next_auto_id: u64,
    started: Option<Instant>,
    now: Option<Instant>,
    restore: Option<crate::storage::StoredState>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.ctx.config)
            .field("connections", &self.conns.len())
            .field("sessions", &self.sessions.len())
            .field("subscriptions", &self.tree.len())
            .field("retained", &self.retained.len())
            .finish_non_exhaustive()
    }
}

fn expiry_from_seconds(secs: u32) -> Option<Duration> {
    // 0xFFFFFFFF: the session does not expire (section 3.1.2.11.2).
    if secs == u32::MAX {
        None
    } else {
        Some(Duration::from_secs(u64::from(secs)))
    }
}

fn protocol_number(v: ProtocolVersion) -> u8 {
    // Mosquitto's `p` in "New client connected": mosq_p_mqtt31 = 1,
    // mosq_p_mqtt311 = 2, mosq_p_mqtt5 = 5.
    match v {
        ProtocolVersion::V3_1 => 1,
        ProtocolVersion::V3_1_1 => 2,
        ProtocolVersion::V5 => 5,
    }
}

fn connack_code(v: ProtocolVersion, rc: ReasonCode) -> u8 {
    if v.is_v5() {
        rc.as_u8()
    } else {
        rc.to_v3_connack()
    }
}

impl Broker {
    /// A broker with `config`, allowing every client and topic (subject to
    /// `allow_anonymous`), with nothing persisted.
    pub fn new(config: BrokerConfig) -> Self {
        Self {
            ctx: Ctx {
                config,
                stats: Statistics::default(),
                events: Default::default(),
                storage: None,
                timers: Default::default(),
            },
            authenticator: Box::new(AllowAll),
            authorizer: Box::new(AllowAll),
            conns: Slab::default(),
            sessions: Slab::default(),
            by_client_id: HashMap::new(),
            tree: SubscriptionTree::default(),
            retained: RetainedStore::default(),
            matches: Vec::new(),
            sub_ids: Vec::new(),
            next_auto_id: 0,
            started: None,
            now: None,
            restore: None,
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

    /// Persists sessions, subscriptions, queued and in-flight messages and
    /// retained messages to `storage`, and restores what it holds now.
    ///
    /// The broker always works from its in-memory state (the fast path);
    /// `storage` receives every change to persistent state (write-through)
    /// and is read once, here.
    pub fn with_storage(mut self, mut storage: Box<dyn Storage>) -> Self {
        // Restored on the first call that brings a `now`: expiry intervals
        // need a clock value.
        self.restore = Some(storage.load());
        self.ctx.storage = Some(storage);
        self
    }

    fn restore_state(&mut self, now: Instant, state: crate::storage::StoredState) {
        for m in state.retained {
            let msg = m.into_message(Some(now));
            if let Some(at) = msg.expires_at {
                self.set_timer(at, Timer::RetainedExpiry(msg.topic.clone()));
            }
            self.retained.set(Arc::new(msg));
        }
        let mut slots = Vec::new();
        for s in state.sessions {
            slots.push(self.restore_session(s));
        }
        let mut messages = state.messages;
        messages.sort_by_key(|(_, seq, _)| *seq);
        for (client_id, seq, m) in messages {
            let Some(session) = self
                .by_client_id
                .get(&client_id)
                .and_then(|&slot| self.sessions.get_mut(slot))
            else {
                continue;
            };
            let (mut delivery, packet_id, released) = m.into_delivery(now);
            delivery.seq = seq;
            session.next_seq = session.next_seq.max(seq);
            match packet_id {
                Some(packet_id) => session.inflight.push_back(crate::session::Outgoing {
                    packet_id,
                    delivery,
                    released,
                }),
                None => {
                    if let Some(at) = delivery.msg.expires_at {
                        self.ctx
                            .timers
                            .set(at, Timer::QueueExpiry(session.slot, session.generation));
                    }
                    session.queued_bytes += delivery.msg.size();
                    session.queue.push_back(delivery);
                }
            }
        }
        // Restored sessions are offline: their expiry starts now.
        for slot in slots {
            self.schedule_expiry(now, slot);
        }
    }

    /// Gives the storage back (e.g. to build a new broker from it),
    /// flushed.
    pub fn into_storage(mut self) -> Option<Box<dyn Storage>> {
        self.flush_storage();
        self.ctx.storage
    }

    /// Lets the storage write what it buffered ([`Storage::flush`]). A
    /// driver calls it after handling input and before writing the bytes
    /// that input produced (the tokio driver does), so nothing is
    /// acknowledged to a client before it is stored.
    pub fn flush_storage(&mut self) {
        if let Some(s) = self.ctx.storage.as_mut() {
            s.flush();
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.ctx.config
    }

    /// Current statistics.
    pub fn stats(&self) -> Statistics {
        let mut s = self.ctx.stats.clone();
        s.clients_total = self.sessions.len() as u64;
        s.retained_messages = self.retained.len() as u64;
        s.subscriptions = self.tree.len() as u64;
        s.messages_stored = self
            .sessions
            .iter()
            .map(|(_, s)| (s.queue.len() + s.inflight.len()) as u64)
            .sum();
        s
    }

    // ----- driver API -----------------------------------------------------

    /// A transport connection was accepted (after its TLS handshake).
    pub fn connection_opened(&mut self, now: Instant, info: ConnectionInfo) -> ConnectionId {
        self.touch(now);
        let max_packet = self.ctx.config.effective_max_packet_size();
        let slot = self.conns.insert(|slot, generation| {
            Conn::new(ConnectionId::new(slot, generation), info, now, max_packet)
        });
        let conn = self.conns.get_mut(slot).expect("just inserted");
        let id = conn.id;
        self.ctx.stats.connections_open += 1;
        tracing::info!(
            target: TARGET,
            "New connection from {}:{} on port {}.",
            conn.info.remote_addr.ip(),
            conn.info.remote_addr.port(),
            conn.info.listener.port
        );
        if let Some(max) = self.ctx.config.max_connections {
            if self.ctx.stats.connections_open > max as u64 {
                tracing::info!(
                    target: TARGET,
                    "Client connection from {} denied: max_connections exceeded.",
                    conn.info.remote_addr.ip()
                );
                conn.state = ConnState::Closing;
                self.ctx.events.push_back(Event::Close(id));
                return id;
            }
        }
        let at = now + self.ctx.config.connect_timeout;
        self.set_timer(at, Timer::ConnectTimeout(id));
        id
    }

    /// Bytes arrived on connection `id`: every whole packet is decoded (with
    /// the connection's own decoder, limited to `max_packet_size`) and
    /// handled; an incomplete packet stays in `buf`.
    pub fn handle_bytes(&mut self, now: Instant, id: ConnectionId, buf: &mut BytesMut) {
        self.touch(now);
        loop {
            let Some(conn) = self.conn_mut(id) else {
                buf.clear();
                return;
            };
            if conn.state == ConnState::Closing {
                buf.clear();
                return;
            }
            let before = buf.len();
            match conn.decoder.decode(buf) {
                Ok(Some(packet)) => {
                    self.ctx.stats.bytes_received += (before - buf.len()) as u64;
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

    /// A packet decoded by the driver arrived on connection `id`. Use either
    /// this or [`Broker::handle_bytes`] for a connection, not both.
    pub fn handle_packet(&mut self, now: Instant, id: ConnectionId, packet: Packet) {
        self.touch(now);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        let len = packet.encoded_len(conn.version);
        self.ctx.stats.bytes_received += len as u64;
        self.dispatch(now, id, packet);
    }

    /// The driver reports that a decoding error broke connection `id`'s
    /// byte stream (for drivers that decode with their own [`mqtt_codec::Decoder`]).
    pub fn handle_decode_error(&mut self, now: Instant, id: ConnectionId, error: DecodeError) {
        self.touch(now);
        self.decode_error(now, id, error);
    }

    /// The transport of `id` ended. Unless the client sent DISCONNECT (or the
    /// broker closed it), this is an abnormal end: the will is published.
    pub fn connection_closed(&mut self, now: Instant, id: ConnectionId) {
        self.touch(now);
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let state = conn.state;
        let name = conn.name().to_string();
        let session = conn.session;
        if state != ConnState::Closing {
            tracing::info!(target: TARGET, "Client {} closed its connection.", name);
            if state == ConnState::Connected {
                self.ctx.stats.clients_connected =
                    self.ctx.stats.clients_connected.saturating_sub(1);
                self.ctx.events.push_back(Event::ClientDisconnected {
                    connection: id,
                    client_id: name,
                    reason: DisconnectReason::ConnectionLost,
                });
            }
            if let Some(s) = session {
                self.session_offline(now, s, true);
            }
        }
        self.conns.remove(id.slot() as u32);
        self.ctx.stats.connections_open = self.ctx.stats.connections_open.saturating_sub(1);
    }

    /// Fires every timer due at `now`: keep alive, CONNECT time-out, will
    /// delay, session expiry, `$SYS` updates.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        while let Some(timer) = self.ctx.timers.pop_due(now) {
            match timer {
                Timer::KeepAlive(id) => self.check_keep_alive(now, id),
                Timer::ConnectTimeout(id) => {
                    let Some(conn) = self.conn_ref(id) else {
                        continue;
                    };
                    if matches!(
                        conn.state,
                        ConnState::AwaitingConnect | ConnState::Authenticating
                    ) {
                        tracing::info!(target: TARGET, "Client {} has exceeded timeout, disconnecting.", conn.name());
                        self.close_conn(now, id, false, DisconnectReason::KeepAliveTimeout);
                    }
                }
                Timer::Will(slot, generation) => {
                    if self.sessions.generation(slot) != Some(generation) {
                        continue;
                    }
                    let Some(s) = self.sessions.get_mut(slot) else {
                        continue;
                    };
                    if s.conn.is_none() && s.will_at.is_some_and(|t| t <= now) {
                        s.will_at = None;
                        if let Some(w) = s.will.take() {
                            let (cid, user) = (s.client_id.clone(), s.username.clone());
                            self.publish_will(now, w, &cid, user.as_deref());
                        }
                    }
                }
                Timer::SessionExpiry(slot, generation) => {
                    if self.sessions.generation(slot) != Some(generation) {
                        continue;
                    }
                    let due = self.sessions.get(slot).is_some_and(|s| {
                        s.conn.is_none() && s.expires_at.is_some_and(|t| t <= now)
                    });
                    if due {
                        self.destroy_session(now, slot, true);
                    }
                }
                Timer::QueueExpiry(slot, generation) => {
                    if self.sessions.generation(slot) != Some(generation) {
                        continue;
                    }
                    if let Some(session) = self.sessions.get_mut(slot) {
                        self.ctx.drop_expired(now, session);
                    }
                }
                Timer::RetainedExpiry(topic) => {
                    let expired = {
                        let mut found = Vec::new();
                        self.retained.collect(topic.as_str(), &mut found);
                        found.first().is_some_and(|m| m.is_expired(now))
                    };
                    // [MQTT-3.3.2-5] an expired retained message is deleted.
                    if expired && self.retained.remove(topic.as_str()) {
                        if let Some(s) = self.ctx.storage.as_mut() {
                            s.remove_retained(topic.as_str());
                        }
                    }
                }
                Timer::Sys => {
                    self.publish_sys(now);
                    let interval = self.ctx.config.sys_interval;
                    if !interval.is_zero() {
                        self.set_timer(now + interval, Timer::Sys);
                    }
                }
            }
        }
    }

    /// When [`Broker::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ctx.timers.next()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.ctx.events.pop_front()
    }

    /// Takes everything ready to send on `id`, encoded into one buffer.
    /// Taking the bytes makes room for queued messages, which are encoded
    /// next (and announced with another [`Event::Transmit`]).
    pub fn take_transmit(&mut self, id: ConnectionId) -> Option<BytesMut> {
        let now = self.now?;
        let conn = self
            .conns
            .get_mut(id.slot() as u32)
            .filter(|c| c.id == id)?;
        let out = std::mem::take(&mut conn.out);
        conn.transmit_pending = false;
        if let Some(slot) = conn.session {
            if let Some(session) = self.sessions.get_mut(slot) {
                self.ctx.pump(now, session, conn);
            }
        }
        if !conn.out.is_empty() && !conn.transmit_pending {
            conn.transmit_pending = true;
            self.ctx.events.push_back(Event::Transmit(id));
        }
        if out.is_empty() {
            return None;
        }
        self.ctx.stats.bytes_sent += out.len() as u64;
        Some(out)
    }

    /// Appends everything ready to send on `id` to `buf`; whether anything was.
    pub fn poll_transmit(&mut self, id: ConnectionId, buf: &mut BytesMut) -> bool {
        match self.take_transmit(id) {
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
        if self.started.is_none() {
            self.started = Some(now);
            let interval = self.ctx.config.sys_interval;
            if !interval.is_zero() {
                self.set_timer(now + interval, Timer::Sys);
            }
        }
        if let Some(state) = self.restore.take() {
            self.restore_state(now, state);
        }
        self.now = Some(now);
    }

    fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.ctx.timers.set(at, timer);
    }

    fn conn_mut(&mut self, id: ConnectionId) -> Option<&mut Conn> {
        self.conns.get_mut(id.slot() as u32).filter(|c| c.id == id)
    }

    /// The client identifier of `id` for log lines.
    fn name_of(&self, id: ConnectionId) -> &str {
        self.conn_ref(id).map_or("<unknown>", |c| c.name())
    }

    fn conn_ref(&self, id: ConnectionId) -> Option<&Conn> {
        self.conns.get(id.slot() as u32).filter(|c| c.id == id)
    }

    fn send_to(&mut self, id: ConnectionId, packet: &Packet) -> bool {
        match self.conns.get_mut(id.slot() as u32).filter(|c| c.id == id) {
            Some(conn) => self.ctx.send(conn, packet),
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
            self.ctx.stats.clients_connected = self.ctx.stats.clients_connected.saturating_sub(1);
            self.ctx.events.push_back(Event::ClientDisconnected {
                connection: id,
                client_id: name,
                reason,
            });
        }
        self.ctx.events.push_back(Event::Close(id));
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
        self.ctx.stats.messages_received += 1;
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
                Packet::Unsubscribe(u) => self.handle_unsubscribe(id, u),
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

    // ----- CONNECT ---------------------------------------------------------

    /// A Client Identifier nobody uses: `prefix` (`auto_id_prefix`) and a
    /// UUID-shaped value, as Mosquitto assigns them.
    fn new_client_id(&mut self, prefix: &str) -> String {
        loop {
            self.next_auto_id += 1;
            let a = splitmix64(self.next_auto_id);
            let b = splitmix64(a ^ self.next_auto_id.rotate_left(17));
            let id = format!(
                "{prefix}{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
                a >> 32,
                (a >> 16) & 0xFFFF,
                a & 0xFFFF,
                b >> 48,
                b & 0xFFFF_FFFF_FFFF
            );
            if !self.by_client_id.contains_key(&id) {
                return id;
            }
        }
    }

    fn handle_connect(&mut self, now: Instant, id: ConnectionId, mut connect: Box<Connect>) {
        let cfg_max_keepalive = self.ctx.config.max_keepalive;
        let retain_available = self.ctx.config.retain_available;
        let allow_zero_length_clientid = self.ctx.config.allow_zero_length_clientid;
        let version = connect.protocol;
        let v5 = version.is_v5();
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.version = version;
        conn.decoder.set_version(version);
        conn.keep_alive = connect.keep_alive;
        conn.connect_session_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
        if v5 {
            conn.receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            conn.max_packet_size = connect
                .properties
                .maximum_packet_size
                .unwrap_or(mqtt_codec::MAX_PACKET_SIZE);
            conn.topic_alias_max = connect.properties.topic_alias_maximum.unwrap_or(0);
        }
        let listener = conn.info.listener.clone();
        // A will above the listener's max_qos [MQTT-3.2.2-12].
        if let Some(w) = connect.will.as_ref().filter(|w| w.qos > listener.max_qos) {
            let why = format!(
                "its will has QoS {} and this listener allows at most QoS {} (max_qos)",
                w.qos.as_u8(),
                listener.max_qos.as_u8()
            );
            conn.client_id = Some(connect.client_id.clone()).filter(|c| !c.is_empty());
            self.refuse_because(now, id, ReasonCode::QoSNotSupported, why);
            return;
        }
        // The will lives under the listener's mount_point, like the
        // client's PUBLISHes (mounted here, as Mosquitto does on reading it).
        if let (Some(m), Some(w)) = (&listener.mount_point, connect.will.as_mut()) {
            match mounted_topic(m, &w.topic) {
                Some(t) => w.topic = t,
                None => {
                    conn.client_id = Some(connect.client_id.clone()).filter(|c| !c.is_empty());
                    let why = "its will topic is too long under this listener's mount_point";
                    self.refuse_because(now, id, ReasonCode::TopicNameInvalid, why.into());
                    return;
                }
            }
        }
        // Client Identifier rules.
        let mut client_id = connect.client_id.clone();
        let mut assigned = false;
        if client_id.is_empty() {
            // [MQTT-3.1.3-8] 3.1.1 with Clean Session 0 (and 3.1 always): refused with 0x02.
            if version == ProtocolVersion::V3_1 || (!v5 && !connect.clean_start) {
                conn.client_id = None;
                self.refuse(now, id, ReasonCode::ClientIdentifierNotValid, None);
                return;
            }
            let allowed = listener
                .allow_zero_length_clientid
                .unwrap_or(allow_zero_length_clientid);
            if !allowed {
                conn.client_id = None;
                let why = "an empty client identifier is not allowed here (allow_zero_length_clientid false); connect with a client id";
                self.refuse_because(now, id, ReasonCode::ClientIdentifierNotValid, why.into());
                return;
            }
            // [MQTT-3.1.3-6] / [MQTT-3.2.2-16] the server assigns one.
            let prefix = listener
                .auto_id_prefix
                .clone()
                .unwrap_or_else(|| self.ctx.config.auto_id_prefix.clone());
            client_id = self.new_client_id(&prefix);
            assigned = true;
        } else if version == ProtocolVersion::V3_1 && client_id.len() > 23 {
            // MQTT 3.1: 1 to 23 characters.
            self.conn_mut(id).expect("exists").client_id = Some(client_id);
            self.refuse(now, id, ReasonCode::ClientIdentifierNotValid, None);
            return;
        }
        let conn = self.conn_mut(id).expect("exists");
        conn.client_id = Some(client_id.clone());
        // `clientid_prefixes` (checked, as in Mosquitto, after an
        // identifier was assigned).
        if let Some(prefix) = &self.ctx.config.clientid_prefixes {
            if !client_id.starts_with(prefix.as_str()) {
                let why =
                    format!("its client id does not start with '{prefix}' (clientid_prefixes)");
                self.refuse_because(now, id, ReasonCode::NotAuthorized, why);
                return;
            }
        }
        let conn = self.conn_mut(id).expect("exists");
        // Keep alive limit: 5.0 clients are told the server's value
        // [MQTT-3.2.2-21]; 3.1.1 clients are refused, as Mosquitto does.
        let mut server_keep_alive = None;
        if connect.keep_alive > cfg_max_keepalive {
            if v5 {
                server_keep_alive = Some(cfg_max_keepalive);
                conn.keep_alive = cfg_max_keepalive;
            } else {
                tracing::info!(
                    target: TARGET,
                    "Client {} refused: keep alive {} exceeds max_keepalive {}.",
                    client_id,
                    connect.keep_alive,
                    cfg_max_keepalive
                );
                self.refuse(now, id, ReasonCode::ClientIdentifierNotValid, None);
                return;
            }
        }
        // A retained will where retain is not available (section 3.2.2.3.5).
        if connect.will.as_ref().is_some_and(|w| w.retain) && !retain_available {
            self.refuse(now, id, ReasonCode::RetainNotSupported, None);
            return;
        }
        // The user name, possibly from the certificate.
        let cert = conn.info.tls.clone();
        let (username, from_cert) = if listener.use_identity_as_username {
            match cert.as_ref().and_then(|c| c.common_name.clone()) {
                Some(cn) => (Some(cn), true),
                None => {
                    let why = "use_identity_as_username is set but the client presented no certificate with a Common Name";
                    self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
                    return;
                }
            }
        } else if listener.use_subject_as_username {
            match cert.as_ref() {
                Some(c) => (Some(c.subject.clone()), true),
                None => {
                    let why =
                        "use_subject_as_username is set but the client presented no certificate";
                    self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
                    return;
                }
            }
        } else {
            (connect.username.clone(), false)
        };
        // `use_username_as_clientid`: the session is the user's.
        let client_id = if listener.use_username_as_clientid {
            match &username {
                Some(u) => {
                    self.conn_mut(id).expect("exists").client_id = Some(u.clone());
                    u.clone()
                }
                None => {
                    let why = "use_username_as_clientid is set and the client sent no user name; connect with a user name";
                    self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
                    return;
                }
            }
        } else {
            client_id
        };
        let mut pending = PendingConnect {
            connect,
            client_id,
            assigned,
            server_keep_alive,
            username,
            username_from_certificate: from_cert,
            exchange: None,
        };
        // 5.0 enhanced authentication (section 4.12).
        if let Some(method) = pending.connect.properties.authentication_method.clone() {
            let mut exchange = AuthExchange {
                method: method.into(),
                data: pending.connect.properties.authentication_data.clone(),
                step: 0,
                state: Vec::new(),
                reauthenticate: false,
            };
            let step = self.run_enhanced(id, &pending, &mut exchange);
            pending.exchange = Some(exchange);
            self.enhanced_step(now, id, pending, step);
            return;
        }
        // The anonymous rule (DECISIONS.md): a verified certificate
        // authenticates; neither certificate nor user name is anonymous.
        let cert_verified = listener.require_certificate && cert.is_some();
        let allow_anonymous = listener
            .allow_anonymous
            .unwrap_or(self.ctx.config.allow_anonymous);
        if pending.username.is_none() && !cert_verified && !allow_anonymous {
            let why = "anonymous access is off (allow_anonymous false) and the client sent neither a user name nor a client certificate verified under require_certificate true; connect with a user name and password, or a client certificate, or set allow_anonymous true";
            self.refuse_because(now, id, ReasonCode::NotAuthorized, why.into());
            return;
        }
        let decision = {
            let conn = self.conn_ref(id).expect("exists");
            let req = auth_request(conn, &pending);
            self.authenticator.authenticate(&req)
        };
        match decision {
            AuthDecision::Allow => self.finish_connect(now, id, pending, None),
            AuthDecision::Deny(rc) => self.refuse(now, id, rc, None),
        }
    }

    fn run_enhanced(
        &self,
        id: ConnectionId,
        pending: &PendingConnect,
        exchange: &mut AuthExchange,
    ) -> AuthStep {
        match self.conn_ref(id) {
            Some(conn) => {
                let req = auth_request(conn, pending);
                self.authenticator.authenticate_enhanced(&req, exchange)
            }
            None => AuthStep::Fail(ReasonCode::UnspecifiedError),
        }
    }

    fn enhanced_step(
        &mut self,
        now: Instant,
        id: ConnectionId,
        mut pending: PendingConnect,
        step: AuthStep,
    ) {
        let method = pending.exchange.as_ref().map(|e| e.method.clone());
        match step {
            AuthStep::Continue(data) => {
                // [MQTT-4.12.0-2] AUTH 0x18 with the same method.
                let mut auth = Auth {
                    reason_code: ReasonCode::ContinueAuthentication,
                    properties: Properties::default(),
                };
                auth.properties.authentication_method = method.map(Into::into);
                auth.properties.authentication_data = Some(data);
                if let Some(e) = pending.exchange.as_mut() {
                    e.step += 1;
                }
                let Some(conn) = self.conn_mut(id) else {
                    return;
                };
                conn.state = ConnState::Authenticating;
                conn.pending = Some(Box::new(pending));
                tracing::debug!(target: TARGET, "Sending AUTH to {} (rc{})", self.conn_ref(id).map_or("", |c| c.name()), 0x18);
                self.send_to(id, &Packet::Auth(auth));
            }
            AuthStep::Success(data) => {
                let m = method.unwrap_or_default();
                self.finish_connect(now, id, pending, Some((m, data)));
            }
            AuthStep::Fail(rc) => self.refuse(now, id, rc, None),
        }
    }

    fn handle_auth(&mut self, now: Instant, id: ConnectionId, auth: Auth) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Received AUTH from {} (rc{})", name, auth.reason_code.as_u8());
        if !conn.version.is_v5() {
            return self.violation(now, id, ReasonCode::ProtocolError, "AUTH in MQTT 3.1.1");
        }
        let method = auth.properties.authentication_method.clone();
        match conn.state {
            ConnState::Authenticating => {
                let Some(mut pending) = conn.pending.take() else {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "AUTH without exchange",
                    );
                };
                let Some(mut exchange) = pending.exchange.take() else {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "AUTH without exchange",
                    );
                };
                // Same method, reason 0x18 while the exchange runs (section 4.12).
                if auth.reason_code != ReasonCode::ContinueAuthentication
                    || method.as_deref() != Some(exchange.method.as_str())
                {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "AUTH with another method or reason",
                    );
                }
                exchange.data = auth.properties.authentication_data.clone();
                let step = self.run_enhanced(id, &pending, &mut exchange);
                pending.exchange = Some(exchange);
                self.enhanced_step(now, id, *pending, step);
            }
            ConnState::Connected => {
                // Re-authentication [MQTT-4.12.1-1]: the same method as CONNECT.
                let Some(conn_method) = conn.auth_method.clone() else {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "re-authentication without enhanced authentication",
                    );
                };
                if method.as_deref() != Some(conn_method.as_str()) {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "re-authentication with another method",
                    );
                }
                let mut exchange = match (auth.reason_code, conn.reauth.take()) {
                    (ReasonCode::ReAuthenticate, _) => AuthExchange {
                        method: conn_method.clone(),
                        data: None,
                        step: 0,
                        state: Vec::new(),
                        reauthenticate: true,
                    },
                    (ReasonCode::ContinueAuthentication, Some(e)) => e,
                    _ => {
                        return self.violation(
                            now,
                            id,
                            ReasonCode::ProtocolError,
                            "unexpected AUTH",
                        )
                    }
                };
                exchange.data = auth.properties.authentication_data.clone();
                let pending = PendingConnect {
                    connect: Box::new(Connect::new(ProtocolVersion::V5, conn.name())),
                    client_id: conn.name().to_string(),
                    assigned: false,
                    server_keep_alive: None,
                    username: conn.username.clone(),
                    username_from_certificate: false,
                    exchange: None,
                };
                let step = self.run_enhanced(id, &pending, &mut exchange);
                let mut reply = Auth {
                    reason_code: ReasonCode::Success,
                    properties: Properties::default(),
                };
                reply.properties.authentication_method = Some(conn_method.into());
                match step {
                    AuthStep::Continue(data) => {
                        exchange.step += 1;
                        reply.reason_code = ReasonCode::ContinueAuthentication;
                        reply.properties.authentication_data = Some(data);
                        if let Some(conn) = self.conn_mut(id) {
                            conn.reauth = Some(exchange);
                        }
                        self.send_to(id, &Packet::Auth(reply));
                    }
                    AuthStep::Success(data) => {
                        reply.properties.authentication_data = data;
                        self.send_to(id, &Packet::Auth(reply));
                    }
                    AuthStep::Fail(rc) => {
                        let rc = if rc.allowed_in(mqtt_codec::PacketType::Disconnect) {
                            rc
                        } else {
                            ReasonCode::NotAuthorized
                        };
                        tracing::info!(target: TARGET, "Client {} disconnected, not authorised.", name);
                        self.send_disconnect(id, rc);
                        self.close_conn(now, id, true, DisconnectReason::NotAuthorized);
                    }
                }
            }
            _ => {}
        }
    }

    /// Logs why a CONNECT is refused ("Client X refused: why.", as
    /// Mosquitto words it) and refuses it with `why` as the 5.0 Reason
    /// String.
    fn refuse_because(&mut self, now: Instant, id: ConnectionId, rc: ReasonCode, why: String) {
        if let Some(conn) = self.conn_ref(id) {
            tracing::info!(target: TARGET, "Client {} refused: {}.", conn.name(), why);
        }
        self.refuse(now, id, rc, Some(why));
    }

    /// Sends a refusing CONNACK and closes the connection [MQTT-3.2.2-7].
    fn refuse(&mut self, now: Instant, id: ConnectionId, rc: ReasonCode, reason: Option<String>) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let v = conn.version;
        let name = conn.name().to_string();
        // An authenticator's code that CONNACK cannot carry becomes 0x87.
        let rc = if rc.is_error() && rc.allowed_in(mqtt_codec::PacketType::ConnAck) {
            rc
        } else {
            ReasonCode::NotAuthorized
        };
        // [MQTT-3.2.2-6] Session Present is 0 with an error code.
        let mut ack = ConnAck::new(false, rc);
        if v.is_v5() {
            ack.properties.reason_string = reason.map(Into::into);
        }
        tracing::debug!(target: TARGET, "Sending CONNACK to {} (0, {})", name, connack_code(v, rc));
        self.send_to(id, &Packet::ConnAck(ack));
        if matches!(
            rc,
            ReasonCode::NotAuthorized
                | ReasonCode::BadUserNameOrPassword
                | ReasonCode::BadAuthenticationMethod
        ) {
            tracing::info!(target: TARGET, "Client {} disconnected, not authorised.", name);
        } else {
            tracing::info!(target: TARGET, "Client {} disconnected: {}.", name, rc.description());
        }
        self.close_conn(now, id, false, DisconnectReason::ProtocolViolation(rc));
    }

    fn finish_connect(
        &mut self,
        now: Instant,
        id: ConnectionId,
        pending: PendingConnect,
        auth: Option<(String, Option<Bytes>)>,
    ) {
        let PendingConnect {
            connect,
            client_id,
            assigned,
            server_keep_alive,
            username,
            ..
        } = pending;
        let version = connect.protocol;
        let v5 = version.is_v5();
        // Session takeover [MQTT-3.1.4-3]: the old connection is closed
        // (5.0: DISCONNECT 0x8E) and its will is published.
        if let Some(&slot) = self.by_client_id.get(&client_id) {
            if let Some(old) = self.sessions.get(slot).and_then(|s| s.conn) {
                if old != id {
                    tracing::info!(target: TARGET, "Client {} already connected, closing old connection.", client_id);
                    self.send_disconnect(old, ReasonCode::SessionTakenOver);
                    self.close_conn(now, old, true, DisconnectReason::SessionTakenOver);
                }
            }
        }
        let existing = self.by_client_id.get(&client_id).copied();
        let (slot, session_present) = match existing {
            // [MQTT-3.2.2-2] resume the session.
            Some(s) if !connect.clean_start => (s, true),
            Some(s) => {
                // [MQTT-3.1.2-4] Clean Start discards the session; a delayed
                // will is not sent, a new connection was made [MQTT-3.1.3-9].
                self.destroy_session(now, s, false);
                (self.create_session(&client_id, version), false)
            }
            None => (self.create_session(&client_id, version), false),
        };
        let cap = self.ctx.config.persistent_client_expiration;
        let expiry = if v5 {
            expiry_from_seconds(connect.properties.session_expiry_interval.unwrap_or(0))
        } else if connect.clean_start {
            Some(Duration::ZERO)
        } else {
            None
        };
        let expiry = match (expiry, cap) {
            (Some(d), _) if d.is_zero() => Some(d),
            (None, Some(c)) => Some(c),
            (Some(d), Some(c)) => Some(d.min(c)),
            (e, None) => e,
        };
        let keep_alive = server_keep_alive.unwrap_or(connect.keep_alive);
        let will = connect.will.as_ref().map(|w| {
            let delay = w.properties.will_delay_interval.unwrap_or(0);
            let mut properties = PublishProperties::from_will(&w.properties);
            let expiry_secs = properties.message_expiry_interval.take();
            Will {
                message: Message {
                    topic: w.topic.clone(),
                    payload: w.payload.clone(),
                    qos: w.qos,
                    retain: w.retain,
                    properties,
                    expires_at: None,
                },
                delay: if v5 { delay } else { 0 },
            }
            .with_expiry(expiry_secs)
        });
        {
            let session = self.sessions.get_mut(slot).expect("session exists");
            session.protocol = version;
            session.username = username.clone();
            session.conn = Some(id);
            session.expiry = expiry;
            session.expires_at = None;
            // [MQTT-3.1.3-9] a new connection cancels a delayed will.
            session.will_at = None;
            session.will = will;
        }
        let (remote, name_for_log) = {
            let conn = self.conn_mut(id).expect("exists");
            conn.state = ConnState::Connected;
            conn.session = Some(slot);
            conn.username = username.clone();
            conn.keep_alive = keep_alive;
            conn.auth_method = auth.as_ref().map(|(m, _)| m.clone());
            (conn.info.remote_addr, client_id.clone())
        };
        self.ctx.stats.clients_connected += 1;
        self.ctx.stats.clients_maximum = self
            .ctx
            .stats
            .clients_maximum
            .max(self.ctx.stats.clients_connected);
        let user_part = username
            .as_ref()
            .map(|u| format!(", u'{u}'"))
            .unwrap_or_default();
        tracing::info!(
            target: TARGET,
            "New client connected from {}:{} as {} (p{}, c{}, k{}{}).",
            remote.ip(),
            remote.port(),
            name_for_log,
            protocol_number(version),
            u8::from(connect.clean_start),
            keep_alive,
            user_part
        );
        if let Some(w) = &connect.will {
            tracing::debug!(
                target: TARGET,
                "Will message specified ({} bytes) (r{}, q{}).",
                w.payload.len(),
                u8::from(w.retain),
                w.qos.as_u8()
            );
            tracing::debug!(target: TARGET, "\t{}", w.topic);
        }
        let mut ack = ConnAck::new(session_present, ReasonCode::Success);
        if v5 {
            let cfg = &self.ctx.config;
            let p = &mut ack.properties;
            if assigned {
                p.assigned_client_identifier = Some(client_id.as_str().into());
            }
            p.server_keep_alive = server_keep_alive;
            if cfg.inflight_window() != u16::MAX {
                p.receive_maximum = Some(cfg.inflight_window());
            }
            if cfg.max_packet_size != 0 {
                p.maximum_packet_size = Some(cfg.max_packet_size);
            }
            if cfg.max_topic_alias != 0 {
                p.topic_alias_maximum = Some(cfg.max_topic_alias);
            }
            if !cfg.retain_available {
                p.retain_available = Some(false);
            }
            // [MQTT-3.2.2-9] Maximum QoS, when it is not 2.
            if let Some(max_qos) = self
                .conn_ref(id)
                .map(|c| c.info.listener.max_qos)
                .filter(|&q| q != QoS::ExactlyOnce)
            {
                p.maximum_qos = Some(max_qos);
            }
            // Tell the client when its expiry differs from its request (section 3.2.2.3.2).
            let asked = connect.properties.session_expiry_interval.unwrap_or(0);
            let granted =
                expiry.map_or(u32::MAX, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
            if granted != asked {
                p.session_expiry_interval = Some(granted);
            }
            if let Some((m, data)) = auth {
                p.authentication_method = Some(m.into());
                p.authentication_data = data;
            }
        }
        tracing::debug!(target: TARGET, "Sending CONNACK to {} ({}, 0)", client_id, u8::from(session_present));
        self.send_to(id, &Packet::ConnAck(ack));
        self.ctx.events.push_back(Event::ClientConnected {
            connection: id,
            client_id: client_id.clone(),
            username,
            protocol: version,
            session_present,
        });
        if keep_alive > 0 {
            let at = now + keep_alive_grace(keep_alive);
            self.set_timer(at, Timer::KeepAlive(id));
        }
        // [MQTT-4.4.0-1] resend unacknowledged messages with DUP, and PUBREL
        // for those already received, then whatever is queued.
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(id.slot() as u32) else {
            return;
        };
        if session_present {
            for o in session.inflight.iter() {
                if o.released {
                    tracing::debug!(target: TARGET, "Sending PUBREL to {} (m{})", client_id, o.packet_id);
                    self.ctx
                        .send(conn, &Packet::PubRel(PubRel::new(o.packet_id)));
                } else {
                    let d = &o.delivery;
                    self.ctx.send_publish(
                        conn,
                        now,
                        &d.msg,
                        d.qos,
                        d.retain,
                        &d.sub_ids,
                        Some(o.packet_id),
                        true,
                    );
                }
            }
        }
        self.ctx.pump(now, session, conn);
        self.save_session(slot);
    }

    fn create_session(&mut self, client_id: &str, version: ProtocolVersion) -> u32 {
        let slot = self.sessions.insert(|slot, generation| {
            Session::new(slot, generation, client_id.to_string(), version)
        });
        self.by_client_id.insert(client_id.to_string(), slot);
        slot
    }

    fn schedule_expiry(&mut self, now: Instant, slot: u32) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if let Some(d) = session.expiry {
            let at = now + d;
            session.expires_at = Some(at);
            let generation = session.generation;
            self.set_timer(at, Timer::SessionExpiry(slot, generation));
        }
    }

    /// The session lost its connection: handle the will and the expiry.
    fn session_offline(&mut self, now: Instant, slot: u32, publish_will: bool) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        session.conn = None;
        let will = session.will.take();
        let client_id = session.client_id.clone();
        let username = session.username.clone();
        let persistent = session.is_persistent();
        let mut will_now = None;
        if let (true, Some(w)) = (publish_will, will) {
            if w.delay == 0 || !persistent {
                will_now = Some(w);
            } else {
                // [MQTT-3.1.3-9] the will waits for its delay or the end of
                // the session, whichever comes first.
                let delay = Duration::from_secs(u64::from(w.delay));
                let at = now + session.expiry.map_or(delay, |e| e.min(delay));
                session.will = Some(w);
                session.will_at = Some(at);
                let generation = session.generation;
                self.set_timer(at, Timer::Will(slot, generation));
            }
        }
        if persistent {
            self.schedule_expiry(now, slot);
            self.save_session(slot);
        } else {
            self.destroy_session(now, slot, false);
        }
        if let Some(w) = will_now {
            self.publish_will(now, w, &client_id, username.as_deref());
        }
    }

    fn destroy_session(&mut self, now: Instant, slot: u32, send_pending_will: bool) {
        let Some(session) = self.sessions.remove(slot) else {
            return;
        };
        for sub in session.subscriptions.values() {
            self.tree.remove(&sub.filter, slot);
        }
        if self.by_client_id.get(&session.client_id) == Some(&slot) {
            self.by_client_id.remove(&session.client_id);
        }
        if let Some(storage) = self.ctx.storage.as_mut() {
            storage.remove_session(&session.client_id);
        }
        if send_pending_will && session.will_at.is_some() {
            if let Some(w) = session.will {
                self.publish_will(now, w, &session.client_id, session.username.as_deref());
            }
        }
    }

    fn publish_will(&mut self, now: Instant, will: Will, client_id: &str, username: Option<&str>) {
        let mut msg = will.message;
        if !self.may_publish(client_id, username, msg.topic.as_str()) {
            tracing::debug!(target: TARGET, "Denied will of {} on '{}'.", client_id, msg.topic);
            return;
        }
        if let Some(secs) = msg.properties.message_expiry_interval.take() {
            msg.expires_at = Some(now + Duration::from_secs(u64::from(secs)));
        }
        self.publish_message(now, msg, None);
    }

    fn may_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        // Clients do not publish into the broker's own $SYS tree.
        !topic.starts_with("$SYS/")
            && self.authorizer.authorize(&AclRequest {
                client_id,
                username,
                topic,
                access: Access::Write,
            })
    }

    fn check_keep_alive(&mut self, now: Instant, id: ConnectionId) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        if conn.state != ConnState::Connected || conn.keep_alive == 0 {
            return;
        }
        // [MQTT-3.1.2-24] one and a half times the Keep Alive, measured from
        // the last packet received.
        let deadline = conn.last_rx + keep_alive_grace(conn.keep_alive);
        if deadline > now {
            self.set_timer(deadline, Timer::KeepAlive(id));
            return;
        }
        tracing::info!(target: TARGET, "Client {} has exceeded timeout, disconnecting.", conn.name());
        self.send_disconnect(id, ReasonCode::KeepAliveTimeout);
        self.close_conn(now, id, true, DisconnectReason::KeepAliveTimeout);
    }

    // ----- PUBLISH ---------------------------------------------------------

    fn handle_publish(&mut self, now: Instant, id: ConnectionId, mut p: Publish) {
        let max_alias = self.ctx.config.max_topic_alias;
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let v5 = conn.version.is_v5();
        // Above the listener's max_qos (sent to 5.0 clients as Maximum QoS):
        // [MQTT-3.3.1-4] DISCONNECT 0x9B; a 3.1.1 connection is closed.
        if p.qos > conn.info.listener.max_qos {
            tracing::info!(
                target: TARGET,
                "Too high QoS in PUBLISH from {}, disconnecting.",
                conn.name()
            );
            return self.violation(
                now,
                id,
                ReasonCode::QoSNotSupported,
                "PUBLISH above the listener's max_qos",
            );
        }
        // (Read first: writing through the properties makes the encoder
        // measure them again when the message goes out.)
        if let Some(alias) = p.properties.topic_alias {
            p.properties.topic_alias = None;
            // [MQTT-3.3.2-8] 0 and [MQTT-3.3.2-9] above our maximum are invalid.
            if alias == 0 || alias > max_alias {
                return self.violation(
                    now,
                    id,
                    ReasonCode::TopicAliasInvalid,
                    "topic alias out of range",
                );
            }
            if p.topic.is_empty() {
                match conn.aliases_in.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return self.violation(
                            now,
                            id,
                            ReasonCode::ProtocolError,
                            "unknown topic alias",
                        )
                    }
                }
            } else {
                conn.aliases_in.insert(alias, p.topic.clone());
            }
        }
        if p.topic.is_empty() {
            return self.violation(now, id, ReasonCode::ProtocolError, "empty topic name");
        }
        // [MQTT-3.3.4-6] a client PUBLISH must not carry Subscription Identifiers.
        if !p.properties.subscription_identifiers.is_empty() {
            return self.violation(
                now,
                id,
                ReasonCode::ProtocolError,
                "subscription identifier in a client PUBLISH",
            );
        }
        // The listener's mount_point: the client's topics live under it.
        if let Some(mount) = &conn.info.listener.mount_point {
            match mounted_topic(mount, &p.topic) {
                Some(t) => p.topic = t,
                None => {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::TopicNameInvalid,
                        "topic name too long with the listener's mount_point",
                    )
                }
            }
        }
        // No per-message allocation here: the client id and user name are
        // borrowed from the connection where needed.
        let Some(slot) = conn.session else {
            return;
        };
        let mid = p.packet_id.map_or(0, |p| p.get());
        tracing::debug!(
            target: TARGET,
            "Received PUBLISH from {} {}",
            self.name_of(id),
            PublishSummary::of(&p)
        );
        self.ctx.stats.publish_messages_received += 1;
        let window = self.ctx.config.inflight_window();
        if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
            return self.violation(now, id, ReasonCode::ProtocolError, "no packet identifier");
        }
        if p.qos == QoS::ExactlyOnce {
            let Some(session) = self.sessions.get(slot) else {
                return;
            };
            // [MQTT-4.3.3-10] a re-sent PUBLISH before PUBREL is answered
            // with PUBREC again and not delivered twice.
            if session.incoming_qos2.contains(&mid) {
                if let Some(pid) = p.packet_id {
                    tracing::debug!(target: TARGET, "Sending PUBREC to {} (m{}, rc0)", self.name_of(id), mid);
                    self.send_to(id, &Packet::PubRec(PubRec::new(pid)));
                }
                return;
            }
            // [MQTT-3.3.4-9] no more unreleased QoS 2 messages than the
            // Receive Maximum we sent (5.0 only: 3.1.1 has no such limit, and
            // the set is bounded by the 65,535 packet identifiers).
            if v5 && session.incoming_qos2.len() >= usize::from(window) {
                return self.violation(
                    now,
                    id,
                    ReasonCode::ReceiveMaximumExceeded,
                    "receive maximum exceeded",
                );
            }
        }
        if p.retain && !self.ctx.config.retain_available {
            // Retain not supported, as the CONNACK said (section 3.2.2.3.5).
            return self.violation(
                now,
                id,
                ReasonCode::RetainNotSupported,
                "retain not available",
            );
        }
        let limit = self.ctx.config.message_size_limit;
        let mut rc = ReasonCode::Success;
        if limit != 0 && p.payload.len() > limit as usize {
            tracing::info!(
                target: TARGET,
                "Dropped too large PUBLISH from {} {}",
                self.name_of(id),
                PublishSummary::of(&p)
            );
            self.ctx.stats.publish_messages_dropped += 1;
            rc = ReasonCode::ImplementationSpecificError;
        } else if !self
            .conn_ref(id)
            .is_some_and(|c| self.may_publish(c.name(), c.username.as_deref(), p.topic.as_str()))
        {
            tracing::debug!(
                target: TARGET,
                "Denied PUBLISH from {} {}",
                self.name_of(id),
                PublishSummary::of(&p)
            );
            rc = ReasonCode::NotAuthorized;
        }
        let qos = p.qos;
        let packet_id = p.packet_id;
        if rc == ReasonCode::Success {
            let mut properties = std::mem::take(&mut p.properties);
            // Left as decoded unless there is an expiry to take out (a
            // client PUBLISH with Subscription Identifiers was refused).
            let expires_at = properties.message_expiry_interval.map(|s| {
                properties.message_expiry_interval = None;
                now + Duration::from_secs(u64::from(s))
            });
            let msg = Message {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties,
                expires_at,
            };
            let delivered = self.publish_message(now, msg, Some(slot));
            if delivered == 0 && v5 {
                rc = ReasonCode::NoMatchingSubscribers;
            }
        }
        // In 3.1.1 a refused message is acknowledged normally (no reason codes).
        let rc = if v5 { rc } else { ReasonCode::Success };
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(pid)) => {
                tracing::debug!(target: TARGET, "Sending PUBACK to {} (m{}, rc{})", self.name_of(id), mid, rc.as_u8());
                self.send_to(id, &Packet::PubAck(PubAck::with_reason(pid, rc)));
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                if !rc.is_error() {
                    if let Some(s) = self.sessions.get_mut(slot) {
                        s.incoming_qos2.insert(mid);
                    }
                    if self.ctx.storage.is_some() {
                        self.save_session(slot);
                    }
                }
                tracing::debug!(target: TARGET, "Sending PUBREC to {} (m{}, rc{})", self.name_of(id), mid, rc.as_u8());
                self.send_to(id, &Packet::PubRec(PubRec::with_reason(pid, rc)));
            }
            _ => {}
        }
    }

    /// Stores or deletes the retained message, then routes `msg` to every
    /// matching session. Returns how many sessions it went to.
    fn publish_message(&mut self, now: Instant, msg: Message, publisher: Option<u32>) -> usize {
        let mut shared = None;
        if msg.retain && self.ctx.config.retain_available {
            if msg.payload.is_empty() {
                // [MQTT-3.3.1-10] (3.1.1) / [MQTT-3.3.1-6] (5.0): an empty
                // retained message deletes the stored one.
                if self.retained.remove(msg.topic.as_str()) {
                    if let Some(s) = self.ctx.storage.as_mut() {
                        s.remove_retained(msg.topic.as_str());
                    }
                }
            } else {
                // [MQTT-3.3.1-5] store it, replacing the previous one.
                let arc = Arc::new(msg.clone());
                self.retained.set(arc.clone());
                if let Some(at) = msg.expires_at {
                    self.set_timer(at, Timer::RetainedExpiry(msg.topic.clone()));
                }
                // `$SYS` values are the broker's own, published again
                // after a restart: not worth a write every `sys_interval`
                // (an SD card on a Pi wears out).
                let own = publisher.is_none() && msg.topic.as_str().starts_with("$SYS/");
                if let Some(s) = self.ctx.storage.as_mut().filter(|_| !own) {
                    s.save_retained(&StoredMessage::from_message(&arc, Some(now)));
                }
                shared = Some(arc);
            }
        }
        self.route(now, &msg, publisher, &mut shared)
    }

    fn route(
        &mut self,
        now: Instant,
        msg: &Message,
        publisher: Option<u32>,
        shared: &mut Option<Arc<Message>>,
    ) -> usize {
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        {
            let sessions = &self.sessions;
            self.tree.collect(msg.topic.as_str(), &mut matches, &|s| {
                sessions.get(s).is_some_and(|s| s.conn.is_some())
            });
        }
        // One copy per session at the highest QoS of its matching
        // subscriptions [MQTT-3.3.5-1], with every Subscription Identifier
        // [MQTT-3.3.4-3]; shared subscriptions each deliver their own copy.
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| (m.shared, m.session));
        }
        let mut ids = std::mem::take(&mut self.sub_ids);
        let mut delivered = 0;
        let mut i = 0;
        while i < matches.len() {
            let first = matches[i];
            let mut j = i + 1;
            if !first.shared {
                while j < matches.len() && !matches[j].shared && matches[j].session == first.session
                {
                    j += 1;
                }
            }
            ids.clear();
            let mut best: Option<QoS> = None;
            let mut retain_as_published = false;
            for m in &matches[i..j] {
                // [MQTT-3.8.3-3] No Local: not to the publisher's own session.
                if m.no_local && Some(m.session) == publisher {
                    continue;
                }
                best = best.max(Some(m.qos));
                retain_as_published |= m.retain_as_published;
                if m.id != 0 {
                    ids.push(m.id);
                }
            }
            i = j;
            let Some(sub_qos) = best else {
                continue;
            };
            let Some(session) = self.sessions.get_mut(first.session) else {
                continue;
            };
            if !self.authorizer.authorize(&AclRequest {
                client_id: &session.client_id,
                username: session.username.as_deref(),
                topic: msg.topic.as_str(),
                access: Access::Read,
            }) {
                continue;
            }
            // [MQTT-3.8.4-8] / [MQTT-3.3.5-1]: the minimum of the message's and
            // the subscription's QoS; upgraded only when `upgrade_outgoing_qos`
            // (Mosquitto's non-conforming option) says so.
            let qos = outgoing_qos(&self.ctx.config, msg.qos, sub_qos);
            // [MQTT-3.3.1-9] 3.1.1 clears RETAIN on forwarded messages; 5.0
            // keeps it with Retain As Published [MQTT-3.3.1-12], [MQTT-3.3.1-13].
            let retain = msg.retain && retain_as_published;
            let conn = session
                .conn
                .and_then(|c| self.conns.get_mut(c.slot() as u32).filter(|x| x.id == c));
            self.ctx
                .deliver(now, session, conn, qos, retain, &ids, msg, shared);
            delivered += 1;
        }
        self.matches = matches;
        self.sub_ids = ids;
        delivered
    }

    fn handle_puback(&mut self, now: Instant, id: ConnectionId, pid: PacketId, rc: ReasonCode) {
        let Some(conn) = self.conns.get_mut(id.slot() as u32).filter(|c| c.id == id) else {
            return;
        };
        tracing::debug!(target: TARGET, "Received PUBACK from {} (Mid: {}, RC:{})", conn.name(), pid, rc.as_u8());
        let Some(slot) = conn.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if let Some(pos) = session
            .inflight
            .iter()
            .position(|o| o.packet_id == pid && o.delivery.qos == QoS::AtLeastOnce)
        {
            if let Some(o) = session.inflight.remove(pos) {
                self.ctx.forget(session, o.delivery.seq);
            }
        }
        self.ctx.pump(now, session, conn);
    }

    fn handle_pubrec(&mut self, now: Instant, id: ConnectionId, a: PubRec) {
        let Some(conn) = self.conns.get_mut(id.slot() as u32).filter(|c| c.id == id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Received PUBREC from {} (Mid: {})", name, a.packet_id);
        let Some(slot) = conn.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        let pos = session
            .inflight
            .iter()
            .position(|o| o.packet_id == a.packet_id && o.delivery.qos == QoS::ExactlyOnce);
        match pos {
            Some(pos) if a.reason_code.is_error() => {
                // 5.0 section 4.3.3: a PUBREC with an error code ends the exchange.
                if let Some(o) = session.inflight.remove(pos) {
                    self.ctx.forget(session, o.delivery.seq);
                }
                self.ctx.pump(now, session, conn);
            }
            Some(pos) => {
                session.inflight[pos].released = true;
                let o = &session.inflight[pos];
                self.ctx
                    .persist(now, session, &o.delivery, Some(o.packet_id), true);
                tracing::debug!(target: TARGET, "Sending PUBREL to {} (m{})", name, a.packet_id);
                self.ctx
                    .send(conn, &Packet::PubRel(PubRel::new(a.packet_id)));
            }
            None => {
                // Unknown identifier: PUBREL 0x92 Packet Identifier not found (5.0).
                tracing::debug!(target: TARGET, "Sending PUBREL to {} (m{})", name, a.packet_id);
                let rel = PubRel::with_reason(a.packet_id, ReasonCode::PacketIdentifierNotFound);
                self.ctx.send(conn, &Packet::PubRel(rel));
            }
        }
    }

    fn handle_pubrel(&mut self, id: ConnectionId, a: PubRel) {
        let Some(conn) = self.conns.get_mut(id.slot() as u32).filter(|c| c.id == id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Received PUBREL from {} (Mid: {})", name, a.packet_id);
        let Some(slot) = conn.session else {
            return;
        };
        let known = self
            .sessions
            .get_mut(slot)
            .is_some_and(|s| s.incoming_qos2.remove(&a.packet_id.get()));
        // [MQTT-4.3.3-11] PUBCOMP with the same identifier; 0x92 if unknown (5.0).
        let rc = if known {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        tracing::debug!(target: TARGET, "Sending PUBCOMP to {} (m{})", name, a.packet_id);
        self.ctx.send(
            conn,
            &Packet::PubComp(PubComp::with_reason(a.packet_id, rc)),
        );
        if known && self.ctx.storage.is_some() {
            self.save_session(slot);
        }
    }

    fn handle_pubcomp(&mut self, now: Instant, id: ConnectionId, a: PubComp) {
        let Some(conn) = self.conns.get_mut(id.slot() as u32).filter(|c| c.id == id) else {
            return;
        };
        tracing::debug!(
            target: TARGET,
            "Received PUBCOMP from {} (Mid: {}, RC:{})",
            conn.name(),
            a.packet_id,
            a.reason_code.as_u8()
        );
        let Some(slot) = conn.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if let Some(pos) = session
            .inflight
            .iter()
            .position(|o| o.packet_id == a.packet_id && o.released)
        {
            if let Some(o) = session.inflight.remove(pos) {
                self.ctx.forget(session, o.delivery.seq);
            }
        }
        self.ctx.pump(now, session, conn);
    }

    // ----- SUBSCRIBE -------------------------------------------------------

    fn handle_subscribe(&mut self, now: Instant, id: ConnectionId, s: Subscribe) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        let username = conn.username.clone();
        let Some(slot) = conn.session else {
            return;
        };
        tracing::debug!(target: TARGET, "Received SUBSCRIBE from {}", name);
        let sub_id = s
            .properties
            .subscription_identifiers
            .first()
            .copied()
            .unwrap_or(0);
        let max_qos = conn.info.listener.max_qos;
        let mount = conn.info.listener.mount_point.clone();
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut send_retained = Vec::new();
        for mut sub in s.subscriptions {
            tracing::debug!(target: TARGET, "\t{} (QoS {})", sub.filter, sub.options.qos.as_u8());
            // Granted at most the listener's max_qos.
            sub.options.qos = sub.options.qos.min(max_qos);
            if let Some(m) = &mount {
                match mounted_filter(m, &sub.filter) {
                    Some(f) => sub.filter = f,
                    None => {
                        codes.push(ReasonCode::TopicFilterInvalid);
                        continue;
                    }
                }
            }
            let allowed = self.authorizer.authorize(&AclRequest {
                client_id: &name,
                username: username.as_deref(),
                topic: sub.filter.as_str(),
                access: Access::Subscribe,
            });
            if !allowed {
                // 5.0: 0x87 Not authorized; 3.1.1: 0x80 Failure (the encoder maps it).
                codes.push(ReasonCode::NotAuthorized);
                continue;
            }
            let entry = SubEntry {
                session: slot,
                options: sub.options,
                id: sub_id,
            };
            let is_new = self.tree.insert(&sub.filter, entry);
            if let Some(session) = self.sessions.get_mut(slot) {
                session.subscriptions.insert(
                    sub.filter.as_str().to_string(),
                    StoredSubscription {
                        filter: sub.filter.clone(),
                        options: sub.options,
                        id: sub_id,
                    },
                );
            }
            codes.push(ReasonCode::granted(sub.options.qos));
            // Retained messages: not for shared subscriptions (section 4.8.2),
            // and as Retain Handling says [MQTT-3.3.1-9..11].
            let wanted = !sub.filter.is_shared()
                && match sub.options.retain_handling {
                    RetainHandling::SendOnSubscribe => true,
                    RetainHandling::SendIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            if wanted {
                send_retained.push(sub);
            }
        }
        tracing::debug!(target: TARGET, "Sending SUBACK to {}", name);
        // [MQTT-3.8.4-1] SUBACK with one code per filter, in order [MQTT-3.8.4-6].
        self.send_to(
            id,
            &Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: Properties::default(),
                reason_codes: codes,
            }),
        );
        self.save_session(slot);
        let mut found = Vec::new();
        for sub in send_retained {
            found.clear();
            self.retained.collect(sub.filter.filter(), &mut found);
            for m in &found {
                if m.is_expired(now) {
                    // [MQTT-3.3.2-5] expired retained messages are deleted.
                    self.retained.remove(m.topic.as_str());
                    continue;
                }
                if !self.authorizer.authorize(&AclRequest {
                    client_id: &name,
                    username: username.as_deref(),
                    topic: m.topic.as_str(),
                    access: Access::Read,
                }) {
                    continue;
                }
                let Some(session) = self.sessions.get_mut(slot) else {
                    return;
                };
                let conn = self.conns.get_mut(id.slot() as u32).filter(|c| c.id == id);
                let ids: &[u32] = if sub_id != 0 { &[sub_id] } else { &[] };
                let mut shared = Some(m.clone());
                // [MQTT-3.3.1-8] retained messages go out with RETAIN set.
                self.ctx.deliver(
                    now,
                    session,
                    conn,
                    outgoing_qos(&self.ctx.config, m.qos, sub.options.qos),
                    true,
                    ids,
                    m,
                    &mut shared,
                );
            }
        }
    }

    fn handle_unsubscribe(&mut self, id: ConnectionId, u: Unsubscribe) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        let Some(slot) = conn.session else {
            return;
        };
        let mount = conn.info.listener.mount_point.clone();
        tracing::debug!(target: TARGET, "Received UNSUBSCRIBE from {}", name);
        let mut codes = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            let mounted;
            let f = match &mount {
                Some(m) => match mounted_filter(m, f) {
                    Some(g) => {
                        mounted = g;
                        &mounted
                    }
                    None => {
                        codes.push(ReasonCode::TopicFilterInvalid);
                        continue;
                    }
                },
                None => f,
            };
            tracing::debug!(target: TARGET, "\t{}", f);
            let existed = self
                .sessions
                .get_mut(slot)
                .is_some_and(|s| s.subscriptions.remove(f.as_str()).is_some());
            if existed {
                self.tree.remove(f, slot);
            }
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        tracing::debug!(target: TARGET, "Sending UNSUBACK to {}", name);
        // [MQTT-3.10.4-4] UNSUBACK even when nothing was removed.
        self.send_to(
            id,
            &Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::default(),
                reason_codes: codes,
            }),
        );
        self.save_session(slot);
    }

    fn handle_disconnect(&mut self, now: Instant, id: ConnectionId, d: Disconnect) {
        let cap = self.ctx.config.persistent_client_expiration;
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        let v5 = conn.version.is_v5();
        let connect_expiry = conn.connect_session_expiry;
        let slot = conn.session;
        tracing::debug!(target: TARGET, "Received DISCONNECT from {}", name);
        if v5 {
            if let Some(new) = d.properties.session_expiry_interval {
                // [MQTT-3.14.2-2] a session that was to end with the
                // connection cannot be made persistent now.
                if connect_expiry == 0 && new != 0 {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "session expiry set on DISCONNECT after 0 on CONNECT",
                    );
                }
                if let Some(s) = slot.and_then(|s| self.sessions.get_mut(s)) {
                    s.expiry = match (expiry_from_seconds(new), cap) {
                        (Some(d), Some(c)) if !d.is_zero() => Some(d.min(c)),
                        (None, Some(c)) => Some(c),
                        (e, _) => e,
                    };
                }
            }
        }
        // [MQTT-3.1.2-10] a normal DISCONNECT discards the will; 0x04 sends it.
        let will = v5 && d.reason_code == ReasonCode::DisconnectWithWillMessage;
        tracing::info!(target: TARGET, "Client {} disconnected.", name);
        self.close_conn(now, id, will, DisconnectReason::ClientDisconnected);
    }

    // ----- $SYS --------------------------------------------------------------

    fn publish_sys(&mut self, now: Instant) {
        let s = self.stats();
        let uptime = self
            .started
            .map_or(0, |t| now.saturating_duration_since(t).as_secs());
        let items: [(&'static str, String); 15] = [
            (
                "$SYS/broker/version",
                format!("mqtt-broker-core version {}", env!("CARGO_PKG_VERSION")),
            ),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            (
                "$SYS/broker/clients/connected",
                s.clients_connected.to_string(),
            ),
            ("$SYS/broker/clients/total", s.clients_total.to_string()),
            ("$SYS/broker/clients/maximum", s.clients_maximum.to_string()),
            (
                "$SYS/broker/clients/disconnected",
                s.clients_total
                    .saturating_sub(s.clients_connected)
                    .to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                s.messages_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", s.messages_sent.to_string()),
            (
                "$SYS/broker/publish/messages/received",
                s.publish_messages_received.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                s.publish_messages_sent.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/dropped",
                s.publish_messages_dropped.to_string(),
            ),
            ("$SYS/broker/bytes/received", s.bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", s.bytes_sent.to_string()),
            (
                "$SYS/broker/retained messages/count",
                s.retained_messages.to_string(),
            ),
            (
                "$SYS/broker/subscriptions/count",
                s.subscriptions.to_string(),
            ),
        ];
        for (topic, value) in items {
            let Ok(topic) = TopicName::new(Bytes::from_static(topic.as_bytes())) else {
                continue;
            };
            let msg = Message {
                topic,
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: PublishProperties::default(),
                expires_at: None,
            };
            self.publish_message(now, msg, None);
        }
    }

    // ----- storage -------------------------------------------------------------

    fn save_session(&mut self, slot: u32) {
        let (Some(storage), Some(session)) = (self.ctx.storage.as_mut(), self.sessions.get(slot))
        else {
            return;
        };
        if !session.is_persistent() {
            return;
        }
        let stored = StoredSession {
            client_id: session.client_id.clone(),
            username: session.username.clone(),
            protocol: session.protocol,
            expiry: session.expiry,
            subscriptions: session
                .subscriptions
                .values()
                .map(|s| (s.filter.clone(), s.options, s.id))
                .collect(),
            incoming_qos2: session.incoming_qos2.iter().copied().collect(),
        };
        storage.save_session(&stored);
    }

    fn restore_session(&mut self, s: StoredSession) -> u32 {
        let slot = self.create_session(&s.client_id, s.protocol);
        let session = self.sessions.get_mut(slot).expect("just created");
        session.username = s.username;
        session.expiry = s.expiry;
        session.incoming_qos2 = s.incoming_qos2.into_iter().collect();
        for (filter, options, id) in s.subscriptions {
            self.tree.insert(
                &filter,
                SubEntry {
                    session: slot,
                    options,
                    id,
                },
            );
            session.subscriptions.insert(
                filter.as_str().to_string(),
                StoredSubscription {
                    filter,
                    options,
                    id,
                },
            );
        }
        slot
    }
}

fn keep_alive_grace(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}

fn auth_request<'a>(conn: &'a Conn, pending: &'a PendingConnect) -> AuthRequest<'a> {
    let listener = &conn.info.listener;
    AuthRequest {
        client_id: &pending.client_id,
        username: pending.username.as_deref(),
        password: if pending.username_from_certificate {
            None
        } else {
            pending.connect.password.as_deref()
        },
        username_from_certificate: pending.username_from_certificate,
        certificate: conn.info.tls.as_ref(),
        certificate_verified: listener.require_certificate && conn.info.tls.is_some(),
        remote_addr: conn.info.remote_addr,
        listener,
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The QoS a message published at `msg` goes out with on a subscription of
/// `sub`.
fn outgoing_qos(config: &BrokerConfig, msg: QoS, sub: QoS) -> QoS {
    if config.upgrade_outgoing_qos {
        sub
    } else {
        msg.min(sub)
    }
}

/// `topic` under a listener's `mount_point`; `None` when the two are
/// longer than a topic may be.
fn mounted_topic(mount: &str, topic: &TopicName) -> Option<TopicName> {
    TopicName::try_from(format!("{mount}{topic}")).ok()
}

/// `filter` under a listener's `mount_point`; a shared subscription keeps
/// its group and mounts the filter it shares (`$share/g/{mount}{filter}`).
fn mounted_filter(mount: &str, filter: &TopicFilter) -> Option<TopicFilter> {
    let text = match filter.share_group() {
        Some(group) => format!("$share/{group}/{mount}{}", filter.filter()),
        None => format!("{mount}{filter}"),
    };
    TopicFilter::new(text).ok()
}

impl Will {
    fn with_expiry(mut self, secs: Option<u32>) -> Self {
        self.message.properties.message_expiry_interval = secs;
        self
    }
}
