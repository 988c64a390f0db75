//! The sans-IO bridge (see [`Bridge`]).

use super::{map_incoming, map_outgoing, BridgeAddress, BridgeConfig, RestartTimeout, StartType};
use crate::{Broker, ConnectionId, ConnectionInfo, ListenerSettings};
use bytes::Bytes;
use mqtt_client::proto::{
    ConnectOptions, Connection as Remote, ConnectionError, Event as RemoteEvent, RequestId,
};
use mqtt_codec::{
    Connect, Disconnect, LastWill, Packet, PacketId, PacketIdPool, Properties, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, RetainHandling, Subscribe,
    Subscription, SubscriptionOptions, TopicName,
};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const TARGET: &str = "mqtt_broker::bridge";

/// What the driver should do for a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeAction {
    /// Open a transport to this address (TCP, then TLS when the bridge has
    /// `bridge_cafile`/`bridge_capath`); then call
    /// [`Bridge::transport_connected`] or [`Bridge::dial_failed`].
    Dial(BridgeAddress),
    /// Write what [`Bridge::poll_remote_transmit`] still returns, then close
    /// the remote transport and call [`Bridge::transport_closed`].
    Close,
    /// While connected to a later address (`round_robin false`): see
    /// whether this one, the first, accepts a TCP connection again, and
    /// call [`Bridge::probe_result`]. Nothing else is sent to it.
    Probe(BridgeAddress),
}

/// A bridge's counters (published under `$SYS/broker/bridges/NAME/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Messages sent to the remote.
    pub forwarded_out: u64,
    /// Messages received from the remote and published locally.
    pub forwarded_in: u64,
    /// QoS 0 messages for the remote dropped while it was away.
    pub dropped: u64,
    /// QoS 1 and 2 messages waiting for the remote: queued in the local
    /// session, or handed to the bridge and not yet acknowledged by the
    /// remote.
    pub queued: u64,
    /// Connections to the remote that were accepted (CONNACK 0).
    pub connects: u64,
    /// Whether the remote connection is up.
    pub connected: bool,
    /// The address in use or last tried.
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected; dial at `at` (`None`: not by time; a lazy bridge
    /// waits for its threshold, a `once` bridge has stopped).
    Waiting { at: Option<Instant> },
    /// A dial was handed to the driver.
    Dialing,
    /// The transport is up; CONNECT sent, waiting for CONNACK.
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// The remote transport is being closed on purpose.
    Closing,
}

/// One bridge: a local connection of the [`Broker`] joined to a remote
/// connection driven by `mqtt_client::proto`.
///
/// **Local side.** [`Bridge::start`] opens a connection in the broker, as a
/// 5.0 client with a persistent session (Clean Start 0, no expiry, unless
/// `local_cleansession true`), subscribed to the `out`/`both` topics with
/// No Local (so what the bridge brings in never goes back out) and Retain
/// As Published. Its packets go in with [`Broker::handle_packet`]; what the
/// broker sends it is taken with [`Broker::take_packets`]: an in-process
/// connection ([`Broker::local_connection_opened`]), nothing is encoded.
/// The broker's session is therefore the bridge's store: QoS 1 and 2
/// messages beyond the in-flight window wait in its queue (bounded by
/// `max_queued_messages`/`max_queued_bytes`, kept across a restart with
/// `persistence true`), and the bridge acknowledges a message to the
/// broker only once the remote has acknowledged it.
///
/// **Remote side.** An `mqtt_client::proto::Connection` with manual
/// acknowledgements: a remote message is acknowledged to the remote only
/// once the local broker has acknowledged it. `try_private` sets the
/// bridge bit (3.1/3.1.1); 5.0 subscriptions use No Local.
///
/// **Driving it.** The driver dials when [`Bridge::poll_action`] says
/// [`BridgeAction::Dial`], reports [`Bridge::transport_connected`] or
/// [`Bridge::dial_failed`], feeds bytes with [`Bridge::handle_remote_input`],
/// writes [`Bridge::poll_remote_transmit`], calls [`Bridge::pump_local`]
/// when the broker has bytes for the bridge's connection
/// ([`crate::Event::Transmit`] of [`Bridge::local_connection`]), and
/// [`Bridge::handle_timeout`] at [`Bridge::poll_timeout`]. Every call takes
/// `now`; nothing here reads the clock or touches a socket.
#[derive(Debug)]
pub struct Bridge {
    config: BridgeConfig,
    remote_id: String,
    local_id: String,
    notification_topic: String,
    phase: Phase,
    /// Index into `config.addresses` of the address in use / to dial next.
    address: usize,
    /// When to check whether the first address answers again
    /// (`round_robin false`).
    primary_retry: Option<Instant>,
    remote: Remote,
    local: Option<ConnectionId>,
    local_ids: PacketIdPool,
    /// Remote requests carrying a local message: the local packet
    /// identifier to acknowledge when the remote acknowledged.
    out_requests: HashMap<RequestId, (PacketId, QoS)>,
    /// Remote messages published locally and not yet acknowledged by the
    /// local broker, by the local packet identifier.
    in_pending: HashMap<PacketId, Publish>,
    /// Local QoS 2 identifiers released with PUBREL, waiting for PUBCOMP.
    in_released: HashSet<PacketId>,
    /// The current restart wait (back-off state).
    restart_wait: Duration,
    rng: u64,
    /// Last traffic to or from the remote (lazy bridges' idle time-out).
    last_activity: Instant,
    next_sys: Option<Instant>,
    stats: BridgeStats,
    /// A `Close` for the driver is pending.
    close_requested: bool,
    /// A `Probe` of the first address for the driver is pending.
    probe_requested: bool,
    /// When the local connection is opened again after the broker closed it.
    local_reopen_at: Option<Instant>,
    /// When it was last opened again (at most once a second).
    local_reopened: Option<Instant>,
    /// [`Bridge::stop`] was called.
    stopped: bool,
}

impl Bridge {
    /// A bridge for `config`. `hostname` is this machine's name (for the
    /// default client ids, as Mosquitto's `HOSTNAME.NAME`); `seed` makes
    /// the back-off's jitter (any value; the driver passes a random one).
    pub fn new(config: BridgeConfig, hostname: &str, seed: u64, now: Instant) -> Self {
        let remote_id = config.remote_client_id(hostname);
        let local_id = config.local_client_id(hostname);
        let notification_topic = config.notification_topic(hostname);
        let v5 = config.protocol.is_v5();
        let mut o = ConnectOptions::new(config.protocol, remote_id.clone());
        o.keep_alive = Duration::from_secs(u64::from(config.keepalive));
        o.clean_start = config.clean_session;
        if v5 && !config.clean_session {
            o.session_expiry_interval = u32::MAX;
        }
        o.username = config.remote_username.clone();
        o.password = config
            .remote_password
            .as_ref()
            .map(|p| Bytes::from(p.clone().into_bytes()));
        if config.max_packet_size > 0 {
            o.max_incoming_packet_size = config.max_packet_size;
        }
        o.manual_acks = true;
        o.bridge = config.try_private;
        o.max_queued = usize::MAX;
        if config.notifications {
            if let Ok(topic) = TopicName::try_from(notification_topic.as_str()) {
                o.will = Some(LastWill {
                    topic,
                    payload: Bytes::from_static(b"0"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: Properties::default(),
                });
            }
        }
        let restart_wait = match config.restart_timeout {
            RestartTimeout::Constant(d) => d,
            RestartTimeout::Backoff { base, .. } => base,
        };
        let phase = match config.start_type {
            StartType::Lazy => Phase::Waiting { at: None },
            _ => Phase::Waiting { at: Some(now) },
        };
        let stats = BridgeStats {
            address: config
                .addresses
                .first()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            ..BridgeStats::default()
        };
        Self {
            remote_id,
            local_id,
            notification_topic,
            phase,
            address: 0,
            primary_retry: None,
            remote: Remote::new(o),
            local: None,
            local_ids: PacketIdPool::new(),
            out_requests: HashMap::new(),
            in_pending: HashMap::new(),
            in_released: HashSet::new(),
            restart_wait,
            rng: seed | 1,
            last_activity: now,
            next_sys: None,
            stats,
            close_requested: false,
            probe_requested: false,
            local_reopen_at: None,
            local_reopened: None,
            stopped: false,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    /// The bridge's name (`connection NAME`).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The client id on the remote.
    pub fn remote_client_id(&self) -> &str {
        &self.remote_id
    }

    /// The client id of the local session.
    pub fn local_client_id(&self) -> &str {
        &self.local_id
    }

    /// The bridge's connection in the broker, once started.
    pub fn local_connection(&self) -> Option<ConnectionId> {
        self.local
    }

    /// Whether the remote connection is up (CONNACK accepted).
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// The counters, with `queued` measured now.
    pub fn stats(&self, broker: &Broker) -> BridgeStats {
        let mut s = self.stats.clone();
        // Every QoS 1/2 message the bridge holds is still unacknowledged
        // in the local session, so the session's count is the whole of it.
        s.queued = broker.session_pending(&self.local_id).unwrap_or(0) as u64;
        s.connected = self.is_connected();
        s
    }

    /// Opens the bridge's local connection and subscribes it; publishes
    /// the local notification `0`. Call once, before anything else.
    pub fn start(&mut self, now: Instant, broker: &mut Broker) {
        if self.local.is_some() {
            return;
        }
        self.open_local(now, broker);
        if self.config.notifications {
            self.notify_local(now, broker, b"0");
        }
        self.next_sys = Some(now);
        self.pump_local(now, broker);
    }

    /// Opens the local connection (CONNECT, SUBSCRIBE).
    fn open_local(&mut self, now: Instant, broker: &mut Broker) {
        let settings = ListenerSettings {
            // The bridge is part of the broker: anonymous unless the
            // configuration gives it local credentials.
            allow_anonymous: Some(self.config.local_username.is_none()),
            ..ListenerSettings::default()
        };
        let info = ConnectionInfo {
            remote_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            listener: settings.into(),
            tls: None,
        };
        let id = broker.local_connection_opened(now, info);
        self.local = Some(id);
        let persistent = self.config.local_persistent();
        let mut c = Connect::new(ProtocolVersion::V5, self.local_id.clone());
        c.clean_start = !persistent;
        c.keep_alive = 0;
        if persistent {
            c.properties.session_expiry_interval = Some(u32::MAX);
        }
        c.username = self.config.local_username.clone();
        c.password = self
            .config
            .local_password
            .as_ref()
            .map(|p| Bytes::from(p.clone().into_bytes()));
        broker.handle_packet(now, id, Packet::Connect(Box::new(c)), 0);
        // Retained messages are sent when the remote connects (as
        // Mosquitto's retain__queue), not now: none go to an absent remote.
        self.subscribe_local(now, broker, RetainHandling::DoNotSend);
    }

    /// The broker closed the bridge's local connection (a client took its
    /// client id, an administrator's action, a refusal): it is opened
    /// again, at most once a second. Messages in flight on it are sent
    /// again by the broker on the new connection (at least once).
    pub fn local_connection_closed(&mut self, now: Instant, broker: &mut Broker) {
        if self.stopped {
            return;
        }
        let Some(id) = self.local.take() else { return };
        broker.connection_closed(now, id);
        self.out_requests.clear();
        self.in_pending.clear();
        self.in_released.clear();
        let at = self
            .local_reopened
            .map_or(now, |last| (last + Duration::from_secs(1)).max(now));
        tracing::warn!(target: TARGET, "Bridge {}: the local broker closed the bridge's connection ({}); opening it again.", self.config.name, self.local_id);
        self.local_reopen_at = Some(at);
    }

    fn reopen_local(&mut self, now: Instant, broker: &mut Broker) {
        self.local_reopen_at = None;
        if self.stopped {
            return;
        }
        self.local_reopened = Some(now);
        self.open_local(now, broker);
        if self.phase == Phase::Connected {
            self.subscribe_local(now, broker, RetainHandling::DoNotSend);
        }
        self.pump_local(now, broker);
    }

    fn subscribe_local(&mut self, now: Instant, broker: &mut Broker, rh: RetainHandling) {
        let Some(id) = self.local else { return };
        let subscriptions: Vec<Subscription> = self
            .config
            .topics
            .iter()
            .filter(|t| t.direction.outgoing())
            .map(|t| Subscription {
                filter: t.local_filter().clone(),
                options: SubscriptionOptions {
                    qos: t.qos,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: rh,
                },
            })
            .collect();
        if subscriptions.is_empty() {
            return;
        }
        for s in &subscriptions {
            tracing::debug!(target: TARGET, "Bridge {} doing local SUBSCRIBE on topic {}", self.local_id, s.filter.as_str());
        }
        let Some(packet_id) = self.local_packet_id() else {
            return;
        };
        let sub = Subscribe {
            packet_id,
            properties: Properties::default(),
            subscriptions,
        };
        broker.handle_packet(now, id, Packet::Subscribe(sub), 0);
    }

    fn local_packet_id(&mut self) -> Option<PacketId> {
        let (pending, released) = (&self.in_pending, &self.in_released);
        self.local_ids
            .allocate(|id| pending.contains_key(&id) || released.contains(&id))
    }

    fn notify_local(&mut self, now: Instant, broker: &mut Broker, payload: &'static [u8]) {
        let Ok(topic) = TopicName::try_from(self.notification_topic.as_str()) else {
            return;
        };
        broker.publish_internal(
            now,
            self.local,
            topic,
            Bytes::from_static(payload),
            QoS::AtLeastOnce,
            true,
        );
    }

    /// Takes what the broker has for the bridge's local connection and
    /// handles it: messages go to the remote (QoS 0 ones are dropped and
    /// counted while the remote is away), acknowledgements complete the
    /// messages brought in. Call on [`crate::Event::Transmit`] for
    /// [`Bridge::local_connection`] (calling it more often is harmless).
    pub fn pump_local(&mut self, now: Instant, broker: &mut Broker) {
        let Some(id) = self.local else { return };
        while let Some(packets) = broker.take_packets(now, id) {
            for p in packets {
                self.handle_local_packet(now, broker, p);
            }
        }
    }

    fn handle_local_packet(&mut self, now: Instant, broker: &mut Broker, packet: Packet) {
        let Some(id) = self.local else { return };
        match packet {
            Packet::ConnAck(ack) if ack.reason_code != ReasonCode::Success => {
                tracing::error!(target: TARGET, "Bridge {}: the local broker refused the bridge's connection ({:?}); check local_username/local_password", self.config.name, ack.reason_code);
            }
            Packet::Publish(p) => self.local_message(now, broker, p),
            Packet::PubAck(a) => {
                if let Some(p) = self.in_pending.remove(&a.packet_id) {
                    self.remote.acknowledge(&p);
                }
            }
            Packet::PubRec(a) => {
                if let Some(p) = self.in_pending.remove(&a.packet_id) {
                    self.remote.acknowledge(&p);
                    self.in_released.insert(a.packet_id);
                }
                broker.handle_packet(now, id, Packet::PubRel(PubRel::new(a.packet_id)), 0);
            }
            Packet::PubComp(a) => {
                self.in_released.remove(&a.packet_id);
            }
            Packet::PubRel(r) => {
                // Our PUBREC went to the broker only after the remote
                // completed the message: finish the local flow.
                broker.handle_packet(now, id, Packet::PubComp(PubComp::new(r.packet_id)), 0);
            }
            Packet::Disconnect(_) => self.local_connection_closed(now, broker),
            _ => {}
        }
    }

    /// A message the local broker delivered for the remote.
    fn local_message(&mut self, now: Instant, broker: &mut Broker, p: Publish) {
        let Some(topic) = map_outgoing(&self.config.topics, p.topic.as_str()) else {
            self.ack_local(now, broker, &p);
            return;
        };
        if p.qos == QoS::AtMostOnce && self.phase != Phase::Connected {
            self.stats.dropped += 1;
            tracing::debug!(target: TARGET, "Bridge {} is not connected: QoS 0 message on '{}' dropped", self.config.name, p.topic.as_str());
            return;
        }
        let mut out = Publish::new(topic, p.payload.clone());
        out.qos = p.qos;
        out.retain = p.retain && self.config.outgoing_retain;
        if self.config.protocol.is_v5() {
            out.properties = p.properties.clone();
            out.properties.subscription_identifiers.clear();
            out.properties.topic_alias = None;
        }
        match self.remote.publish(out) {
            Ok(request) => {
                self.last_activity = now;
                match p.packet_id {
                    Some(local_id) => {
                        self.out_requests.insert(request, (local_id, p.qos));
                    }
                    None => self.stats.forwarded_out += 1,
                }
            }
            Err(e) => {
                tracing::warn!(target: TARGET, "Bridge {}: message on '{}' cannot go to the remote: {}", self.config.name, p.topic.as_str(), e);
                // Not acknowledged: the broker keeps it and sends it again
                // when the local connection is next opened.
            }
        }
    }

    /// Acknowledges a local message the remote does not need (the broker
    /// would otherwise hold it forever).
    fn ack_local(&mut self, now: Instant, broker: &mut Broker, p: &Publish) {
        let (Some(id), Some(local)) = (p.packet_id, self.local) else {
            return;
        };
        let packet = match p.qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => Packet::PubAck(PubAck::new(id)),
            QoS::ExactlyOnce => Packet::PubRec(PubRec::new(id)),
        };
        broker.handle_packet(now, local, packet, 0);
    }

    /// What to do next, if anything (see [`BridgeAction`]).
    pub fn poll_action(&mut self, now: Instant, broker: &Broker) -> Option<BridgeAction> {
        if self.close_requested {
            self.close_requested = false;
            return Some(BridgeAction::Close);
        }
        if self.probe_requested {
            self.probe_requested = false;
            if self.phase == Phase::Connected {
                return self
                    .config
                    .addresses
                    .first()
                    .cloned()
                    .map(BridgeAction::Probe);
            }
        }
        let Phase::Waiting { at } = self.phase else {
            return None;
        };
        let due = match (at, self.config.start_type) {
            (Some(at), _) => now >= at,
            (None, StartType::Lazy) => {
                broker.session_pending(&self.local_id).unwrap_or(0) as u64
                    >= u64::from(self.config.threshold)
            }
            (None, _) => false,
        };
        if !due {
            return None;
        }
        let address = self.config.addresses.get(self.address)?.clone();
        self.stats.address = address.to_string();
        tracing::info!(target: TARGET, "Connecting bridge {} ({})", self.config.name, address);
        self.phase = Phase::Dialing;
        Some(BridgeAction::Dial(address))
    }

    /// The transport to the address of the last [`BridgeAction::Dial`] is
    /// up (TCP, and TLS when configured): CONNECT is queued.
    pub fn transport_connected(&mut self, now: Instant) {
        if self.phase != Phase::Dialing {
            return;
        }
        self.phase = Phase::Connecting;
        self.last_activity = now;
        self.remote.connect(now);
    }

    /// The dial failed (`why` in the driver's words, e.g. mqtt-tls's
    /// explained TLS error): the next address is tried after the back-off.
    pub fn dial_failed(&mut self, now: Instant, why: &str) {
        if self.phase != Phase::Dialing {
            return;
        }
        tracing::error!(target: TARGET, "Error creating bridge {}: {}.", self.config.name, why);
        self.schedule_restart(now);
    }

    /// Whether the first address accepted a TCP connection (after
    /// [`BridgeAction::Probe`]). If it did, this connection ends and the
    /// next one goes to the first address, as Mosquitto does without
    /// `round_robin`; if not, it is probed again in 5 s.
    pub fn probe_result(&mut self, now: Instant, broker: &mut Broker, reachable: bool) {
        if self.phase != Phase::Connected || self.address == 0 {
            return;
        }
        if !reachable {
            self.primary_retry = Some(now + Duration::from_secs(5));
            return;
        }
        tracing::info!(target: TARGET, "Bridge {}: the first address answers again; reconnecting to it.", self.config.name);
        self.remote.disconnect();
        self.remote_events(now, broker);
        self.phase = Phase::Closing;
        self.close_requested = true;
        // schedule_restart moves on by one: to the first address.
        self.address = self.config.addresses.len().saturating_sub(1);
    }

    /// Bytes read from the remote.
    pub fn handle_remote_input(&mut self, now: Instant, broker: &mut Broker, data: &[u8]) {
        if !matches!(self.phase, Phase::Connecting | Phase::Connected) {
            return;
        }
        self.last_activity = now;
        let result = self.remote.handle_input(data, now);
        self.remote_events(now, broker);
        if result.is_err() {
            self.close_requested = true;
        }
    }

    /// Bytes to write to the remote.
    pub fn poll_remote_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.remote.poll_transmit(now)
    }

    /// The remote transport ended (closed by the peer, an I/O error, or
    /// after [`BridgeAction::Close`]).
    pub fn transport_closed(&mut self, now: Instant, broker: &mut Broker, why: &str) {
        match self.phase {
            Phase::Connecting | Phase::Connected | Phase::Closing => {}
            _ => return,
        }
        let was_connected = matches!(self.phase, Phase::Connected | Phase::Closing);
        self.remote
            .connection_lost(ConnectionError::Transport(why.to_owned()));
        self.remote_events(now, broker);
        if was_connected {
            tracing::info!(target: TARGET, "Bridge {} disconnected: {}", self.config.name, why);
            if self.config.notifications {
                self.notify_local(now, broker, b"0");
            }
        } else {
            tracing::error!(target: TARGET, "Bridge {}: connection to {} failed: {}", self.config.name, self.stats.address, why);
        }
        self.schedule_restart(now);
    }

    fn schedule_restart(&mut self, now: Instant) {
        self.step_backoff();
        // Mosquitto: the next address is tried after each failure.
        if !self.config.addresses.is_empty() {
            self.address = (self.address + 1) % self.config.addresses.len();
        }
        self.primary_retry = None;
        self.phase = match self.config.start_type {
            StartType::Automatic => Phase::Waiting {
                at: Some(now + self.restart_wait),
            },
            StartType::Lazy => Phase::Waiting { at: None },
            StartType::Once => {
                tracing::info!(target: TARGET, "Bridge {} has start_type once: not reconnecting.", self.config.name);
                Phase::Waiting { at: None }
            }
        };
    }

    fn step_backoff(&mut self) {
        if let RestartTimeout::Backoff { base, cap } = self.config.restart_timeout {
            // Mosquitto's "decorrelated jitter": between base and three
            // times the last wait, at most cap.
            let low = base.as_millis() as u64;
            let high = (self.restart_wait.as_millis() as u64)
                .saturating_mul(3)
                .max(low + 1);
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let ms = low + self.rng % (high - low);
            self.restart_wait = Duration::from_millis(ms).min(cap);
        }
    }

    fn remote_events(&mut self, now: Instant, broker: &mut Broker) {
        while let Some(e) = self.remote.poll_event() {
            match e {
                RemoteEvent::Connected {
                    session_present, ..
                } => self.connected(now, broker, session_present),
                RemoteEvent::Disconnected { reason } => {
                    if let ConnectionError::Refused {
                        reason: reason_code,
                        ..
                    } = &reason
                    {
                        tracing::debug!(target: TARGET, "Received CONNACK on connection {}.", self.local_id);
                        tracing::error!(target: TARGET, "Connection Refused: {} (CONNACK code {})", refusal_words(*reason_code), wire_code(self.config.protocol, *reason_code));
                    }
                    if matches!(self.phase, Phase::Connecting | Phase::Connected) {
                        self.close_requested = true;
                        tracing::debug!(target: TARGET, "Bridge {}: {}", self.config.name, reason);
                    }
                }
                RemoteEvent::Message(p) => self.remote_message(now, broker, p),
                RemoteEvent::PubAck {
                    request,
                    reason_code,
                    ..
                } => self.remote_done(now, broker, request, reason_code),
                RemoteEvent::PubComp {
                    request,
                    reason_code,
                    ..
                } => self.remote_done(now, broker, request, reason_code),
                RemoteEvent::PublishFailed { request, error } => {
                    tracing::warn!(target: TARGET, "Bridge {}: a message could not be sent to the remote: {}", self.config.name, error);
                    // Acknowledged locally: it can never be sent.
                    if let Some((id, qos)) = self.out_requests.remove(&request) {
                        self.ack_local_id(now, broker, id, qos);
                    }
                }
                RemoteEvent::SubAck { suback, .. }
                    if suback.reason_codes.iter().any(|c| c.as_u8() >= 0x80) =>
                {
                    tracing::warn!(target: TARGET, "Bridge {}: the remote refused a subscription ({:?})", self.config.name, suback.reason_codes);
                }
                _ => {}
            }
        }
    }

    fn remote_done(
        &mut self,
        now: Instant,
        broker: &mut Broker,
        request: RequestId,
        rc: ReasonCode,
    ) {
        if rc.as_u8() >= 0x80 {
            tracing::warn!(target: TARGET, "Bridge {}: the remote refused a message ({:?})", self.config.name, rc);
        }
        if let Some((id, qos)) = self.out_requests.remove(&request) {
            self.stats.forwarded_out += 1;
            self.ack_local_id(now, broker, id, qos);
        }
    }

    fn ack_local_id(&mut self, now: Instant, broker: &mut Broker, id: PacketId, qos: QoS) {
        let Some(local) = self.local else { return };
        let packet = match qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => Packet::PubAck(PubAck::new(id)),
            QoS::ExactlyOnce => Packet::PubRec(PubRec::new(id)),
        };
        broker.handle_packet(now, local, packet, 0);
        self.pump_local(now, broker);
    }

    fn connected(&mut self, now: Instant, broker: &mut Broker, session_present: bool) {
        tracing::debug!(target: TARGET, "Received CONNACK on connection {}.", self.local_id);
        tracing::info!(target: TARGET, "Bridge {} connected to {} (session present {})", self.config.name, self.stats.address, u8::from(session_present));
        self.phase = Phase::Connected;
        self.stats.connects += 1;
        if let RestartTimeout::Backoff { base, .. } = self.config.restart_timeout {
            self.restart_wait = base;
        }
        if !self.config.round_robin && self.address != 0 {
            // Mosquitto: look whether the first address answers again.
            self.primary_retry = Some(now + Duration::from_secs(5));
        }
        let v5 = self.config.protocol.is_v5();
        if self.config.notifications {
            if let Ok(topic) = TopicName::try_from(self.notification_topic.as_str()) {
                if !self.config.notifications_local_only {
                    let mut p = Publish::new(topic, Bytes::from_static(b"1"));
                    p.qos = QoS::AtLeastOnce;
                    p.retain = true;
                    let _ = self.remote.publish(p);
                }
                self.notify_local(now, broker, b"1");
            }
        }
        let mut subs = Vec::new();
        let mut unsubs = Vec::new();
        for t in &self.config.topics {
            if t.direction.incoming() {
                subs.push(Subscription {
                    filter: t.remote_filter().clone(),
                    options: SubscriptionOptions {
                        qos: t.qos,
                        no_local: v5,
                        retain_as_published: v5,
                        retain_handling: RetainHandling::SendOnSubscribe,
                    },
                });
            } else if self.config.attempt_unsubscribe {
                unsubs.push(t.remote_filter().clone());
            }
        }
        // A filter an `in` line subscribes to stays, whatever an `out`
        // line with the same filter says.
        unsubs.retain(|f| !subs.iter().any(|s| s.filter == *f));
        // One filter per packet, as Mosquitto sends them.
        for s in subs {
            self.remote.subscribe(vec![s], Properties::default());
        }
        for f in unsubs {
            self.remote.unsubscribe(vec![f], Properties::default());
        }
        // Retained local messages go out now (Mosquitto's retain__queue).
        self.subscribe_local(now, broker, RetainHandling::SendOnSubscribe);
        self.pump_local(now, broker);
    }

    /// A message from the remote: published locally; acknowledged to the
    /// remote when the local broker acknowledged it.
    fn remote_message(&mut self, now: Instant, broker: &mut Broker, p: Publish) {
        let Some(local) = self.local else { return };
        self.stats.forwarded_in += 1;
        let Some(topic) = map_incoming(&self.config.topics, p.topic.as_str()) else {
            self.remote.acknowledge(&p);
            return;
        };
        let mut out = Publish::new(topic, p.payload.clone());
        out.qos = p.qos;
        out.retain = p.retain;
        out.properties = p.properties.clone();
        out.properties.subscription_identifiers.clear();
        out.properties.topic_alias = None;
        if p.qos != QoS::AtMostOnce {
            let Some(id) = self.local_packet_id() else {
                // 65,535 local messages unacknowledged: leave this one
                // unacknowledged; the remote sends it again.
                return;
            };
            out.packet_id = Some(id);
            self.in_pending.insert(id, p);
        }
        broker.handle_packet(now, local, Packet::Publish(out), 0);
        self.pump_local(now, broker);
    }

    /// When [`Bridge::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.remote.poll_timeout();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        if let Phase::Waiting { at } = self.phase {
            consider(at);
        }
        consider(self.next_sys);
        consider(self.primary_retry);
        consider(self.local_reopen_at);
        if self.phase == Phase::Connected && self.config.start_type == StartType::Lazy {
            consider(Some(self.last_activity + self.config.idle_timeout));
        }
        next
    }

    /// Timers: the remote's keep alive and CONNACK time-out, the restart
    /// wait, a lazy bridge's idle time-out, the `$SYS` counters.
    pub fn handle_timeout(&mut self, now: Instant, broker: &mut Broker) {
        if self.remote.handle_timeout(now).is_err() {
            self.close_requested = true;
        }
        self.remote_events(now, broker);
        if self.phase == Phase::Connected
            && self.config.start_type == StartType::Lazy
            && now >= self.last_activity + self.config.idle_timeout
        {
            tracing::info!(target: TARGET, "Bridge {} has been idle for {} s (idle_timeout), disconnecting.", self.config.name, self.config.idle_timeout.as_secs());
            self.remote.disconnect();
            self.remote_events(now, broker);
            self.phase = Phase::Closing;
            self.close_requested = true;
        }
        if self.local_reopen_at.is_some_and(|at| now >= at) {
            self.reopen_local(now, broker);
        }
        if self.primary_retry.is_some_and(|at| now >= at) {
            self.primary_retry = None;
            if self.phase == Phase::Connected && !self.config.round_robin && self.address != 0 {
                self.probe_requested = true;
            }
        }
        if let Some(at) = self.next_sys {
            if now >= at {
                self.publish_sys(now, broker);
                let every = broker.config().sys_interval;
                self.next_sys = (!every.is_zero()).then(|| now + every);
            }
        }
    }

    fn publish_sys(&mut self, now: Instant, broker: &mut Broker) {
        let s = self.stats(broker);
        let name = &self.config.name;
        let items = [
            ("state", u8::from(s.connected).to_string()),
            ("queued", s.queued.to_string()),
            ("forwarded/out", s.forwarded_out.to_string()),
            ("forwarded/in", s.forwarded_in.to_string()),
            ("dropped", s.dropped.to_string()),
            ("address", s.address.clone()),
        ];
        for (leaf, value) in items {
            if let Ok(topic) = TopicName::try_from(format!("$SYS/broker/bridges/{name}/{leaf}")) {
                broker.publish_internal(
                    now,
                    self.local,
                    topic,
                    Bytes::from(value),
                    QoS::AtMostOnce,
                    true,
                );
            }
        }
    }

    /// Ends the bridge: DISCONNECT to the remote (its will is not
    /// published), and the local connection closes (its session stays).
    pub fn stop(&mut self, now: Instant, broker: &mut Broker) {
        self.stopped = true;
        self.local_reopen_at = None;
        if matches!(self.phase, Phase::Connecting | Phase::Connected) {
            self.remote.disconnect();
            self.remote_events(now, broker);
            self.phase = Phase::Closing;
            self.close_requested = true;
        }
        if let Some(id) = self.local.take() {
            broker.handle_packet(
                now,
                id,
                Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
                0,
            );
            while broker.take_packets(now, id).is_some() {}
            broker.connection_closed(now, id);
        }
    }
}

/// The CONNACK code as it was on the wire: the 3.1/3.1.1 return code (the
/// client core reports its 5.0 equivalent), or the 5.0 reason code.
fn wire_code(protocol: ProtocolVersion, rc: ReasonCode) -> u8 {
    if protocol.is_v5() {
        return rc.as_u8();
    }
    match rc.as_u8() {
        0x84 => 1,
        0x85 => 2,
        0x88 => 3,
        0x86 => 4,
        0x87 => 5,
        other => other,
    }
}

/// Mosquitto's `mosquitto_connack_string` words for a refusal.
fn refusal_words(rc: ReasonCode) -> &'static str {
    match rc.as_u8() {
        0x01 | 0x84 => "unacceptable protocol version",
        0x02 | 0x85 => "identifier rejected",
        0x03 | 0x88 => "broker unavailable",
        0x04 | 0x86 => "bad user name or password",
        0x05 | 0x87 => "not authorised",
        _ => "reserved code",
    }
}
