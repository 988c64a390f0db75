//! [`Connection`]: all protocol state of one client session.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    AliasChoice, Auth, ConnAck, Connect, Decoder, Disconnect, EncodeError, IncomingTopicAliases,
    OutgoingTopicAliases, Packet, PacketId, PacketIdPool, PacketType, Properties, PropertyId,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, SubAck, Subscribe, Subscription,
    TopicAliasError, TopicFilter, TopicName, UnsubAck, Unsubscribe, MAX_PACKET_SIZE,
};

use super::{
    ConnectOptions, ConnectionError, EnhancedAuth, Event, PacketDirection, ProtocolViolation,
    PublishError, ReauthError, RequestId,
};

/// Where the current network connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No network connection.
    Disconnected,
    /// CONNECT queued; waiting for CONNACK until the deadline.
    AwaitingConnAck { deadline: Instant },
    /// CONNACK accepted.
    Connected,
}

/// An outgoing QoS 1/2 PUBLISH in flight (session state).
#[derive(Debug, Clone)]
enum Outgoing {
    /// Sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish {
        request: RequestId,
        publish: Box<Publish>,
        seq: u64,
    },
    /// PUBREL sent, waiting for PUBCOMP.
    /// PUBREC received, PUBREL sent; `accepted` is PUBREC's reason code
    /// (Success or 5.0's 0x10 No matching subscribers), reported at PUBCOMP.
    Released {
        request: RequestId,
        seq: u64,
        accepted: ReasonCode,
    },
}

impl Outgoing {
    fn seq(&self) -> u64 {
        match self {
            Outgoing::Publish { seq, .. } | Outgoing::Released { seq, .. } => *seq,
        }
    }
}

/// An incoming QoS 2 PUBLISH whose PUBREL has not arrived (session state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IncomingQoS2 {
    /// Delivered to the driver, PUBREC not sent yet (manual acks).
    Delivered,
    /// PUBREC sent.
    Received,
}

/// A SUBSCRIBE or UNSUBSCRIBE waiting for its acknowledgement.
#[derive(Debug, Clone)]
enum PendingRequest {
    Subscribe {
        request: RequestId,
        subscribe: Subscribe,
    },
    Unsubscribe {
        request: RequestId,
        unsubscribe: Unsubscribe,
    },
}

/// A packet waiting for [`Connection::poll_transmit`].
#[derive(Debug)]
enum Transmit {
    Packet(Packet),
    /// A PUBLISH, with the request to report (QoS 0) and whether to try a topic alias.
    Publish {
        publish: Publish,
        request: Option<RequestId>,
    },
}

/// What the broker allows, from CONNACK.
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    receive_maximum: u16,
    maximum_packet_size: u32,
    topic_alias_maximum: u16,
    maximum_qos: QoS,
    retain_available: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            maximum_packet_size: MAX_PACKET_SIZE,
            topic_alias_maximum: 0,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }
}

/// The state of one MQTT client session, without any I/O.
///
/// Inputs are method calls that take `now`; outputs are polled:
/// [`Connection::poll_transmit`] for bytes to write, [`Connection::poll_event`]
/// for events, [`Connection::poll_timeout`] for the next deadline (then call
/// [`Connection::handle_timeout`]). The session (in-flight QoS 1/2 messages in
/// both directions, subscriptions) outlives network connections: call
/// [`Connection::connect`] for each new one and
/// [`Connection::connection_lost`] when it ends.
///
/// ```
/// use std::time::Instant;
/// use mqtt_client::proto::{ConnectOptions, Connection};
/// use mqtt_codec::ProtocolVersion;
///
/// let mut conn = Connection::new(ConnectOptions::new(ProtocolVersion::V5, "pi"));
/// let now = Instant::now();
/// conn.connect(now);
/// let connect_bytes = conn.poll_transmit(now).unwrap(); // write these to the socket
/// assert_eq!(connect_bytes[0] >> 4, 1); // CONNECT
/// ```
#[derive(Debug)]
pub struct Connection {
    options: ConnectOptions,
    phase: Phase,
    decoder: Decoder,
    rx: BytesMut,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_request: u64,
    /// The re-authentication in progress, if any.
    reauth: Option<RequestId>,
    next_seq: u64,
    packet_ids: PacketIdPool,
    /// Publishes not yet sent: offline, or behind a full window.
    queue: VecDeque<(RequestId, Publish)>,
    outgoing: BTreeMap<PacketId, Outgoing>,
    pending: BTreeMap<PacketId, PendingRequest>,
    /// Granted subscriptions, restored when the broker lost the session.
    subscriptions: BTreeMap<String, Subscription>,
    incoming_qos2: HashMap<PacketId, IncomingQoS2>,
    /// QoS 1 messages delivered but not acknowledged (manual acks).
    incoming_qos1_unacked: usize,
    limits: ServerLimits,
    out_aliases: OutgoingTopicAliases,
    in_aliases: IncomingTopicAliases,
    keep_alive: Duration,
    last_transmit: Option<Instant>,
    ping_sent: Option<Instant>,
    /// Whether session state may exist on the broker (a CONNACK was received).
    had_session: bool,
    /// Whether the CONNECT on the wire asked for a clean start.
    sent_clean_start: bool,
}

impl Connection {
    /// A session with these options; nothing happens until [`Connection::connect`].
    pub fn new(options: ConnectOptions) -> Self {
        let mut decoder = Decoder::with_version(options.protocol);
        decoder.set_max_packet_size(options.max_incoming_packet_size);
        Self {
            keep_alive: options.keep_alive,
            options,
            phase: Phase::Disconnected,
            decoder,
            rx: BytesMut::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 0,
            reauth: None,
            next_seq: 0,
            packet_ids: PacketIdPool::new(),
            queue: VecDeque::new(),
            outgoing: BTreeMap::new(),
            pending: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            incoming_qos2: HashMap::new(),
            incoming_qos1_unacked: 0,
            limits: ServerLimits::default(),
            out_aliases: OutgoingTopicAliases::new(),
            in_aliases: IncomingTopicAliases::new(),
            last_transmit: None,
            ping_sent: None,
            had_session: false,
            sent_clean_start: true,
        }
    }

    /// The options (the client id is replaced by a 5.0 Assigned Client Identifier).
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Whether CONNACK accepted the current network connection.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// Outgoing QoS 1/2 messages in flight (PUBLISH or PUBREL sent, not completed).
    pub fn inflight(&self) -> usize {
        self.outgoing.len()
    }

    /// Publishes waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Incoming QoS 2 packet identifiers remembered until their PUBREL.
    pub fn incoming_qos2_pending(&self) -> usize {
        self.incoming_qos2.len()
    }

    /// The granted subscriptions the core would restore.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.values()
    }

    /// Starts a new network connection: queues CONNECT. Call after the
    /// transport (TCP, TLS) is up, then write what [`Connection::poll_transmit`] returns.
    pub fn connect(&mut self, now: Instant) {
        self.reset_network();
        let o = &self.options;
        let mut connect = Connect::new(o.protocol, o.client_id.clone());
        // A reconnect resumes the session the first CONNECT created, so a
        // dropped connection does not lose it.
        connect.clean_start = if self.had_session {
            o.clean_start && !o.persistent()
        } else {
            o.clean_start
        };
        connect.keep_alive = o.keep_alive_secs();
        connect.bridge = o.bridge && !o.protocol.is_v5();
        connect.will = o.will.clone();
        connect.username = o.username.clone();
        connect.password = o.password.clone();
        if o.protocol.is_v5() {
            let p = &mut connect.properties;
            if o.session_expiry_interval > 0 {
                p.session_expiry_interval = Some(o.session_expiry_interval);
            }
            p.receive_maximum = o.receive_maximum.filter(|&r| r > 0 && r < u16::MAX);
            if o.topic_alias_maximum > 0 {
                p.topic_alias_maximum = Some(o.topic_alias_maximum);
            }
            if o.max_incoming_packet_size < MAX_PACKET_SIZE {
                p.maximum_packet_size = Some(o.max_incoming_packet_size.max(1));
            }
            if o.request_response_information {
                p.request_response_information = Some(true);
            }
            if let Some(auth) = &o.enhanced_auth {
                p.authentication_method = Some(auth.method.as_str().into());
                p.authentication_data = auth.initial_data();
            }
            p.user_properties = o
                .user_properties
                .iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
        }
        self.sent_clean_start = connect.clean_start;
        self.transmits
            .push_back(Transmit::Packet(Packet::Connect(Box::new(connect))));
        self.phase = Phase::AwaitingConnAck {
            deadline: now + o.connect_timeout,
        };
    }

    fn reset_network(&mut self) {
        self.rx.clear();
        // QoS 0 messages that never reached the socket go back to the queue.
        let mut unsent = Vec::new();
        for t in self.transmits.drain(..) {
            if let Transmit::Publish {
                publish,
                request: Some(request),
            } = t
            {
                unsent.push((request, publish));
            }
        }
        for item in unsent.into_iter().rev() {
            self.queue.push_front(item);
        }
        self.decoder = Decoder::with_version(self.options.protocol);
        self.decoder
            .set_max_packet_size(self.options.max_incoming_packet_size);
        self.limits = ServerLimits::default();
        // Topic aliases live as long as the network connection [MQTT-3.3.2-7].
        self.out_aliases.clear();
        self.in_aliases.clear();
        self.keep_alive = self.options.keep_alive;
        self.last_transmit = None;
        self.ping_sent = None;
    }

    /// The driver reports that the network connection ended (EOF or an I/O
    /// error). Emits [`Event::Disconnected`] unless the core already ended it.
    pub fn connection_lost(&mut self, reason: ConnectionError) {
        if self.phase != Phase::Disconnected {
            self.phase = Phase::Disconnected;
            self.push_disconnected(reason);
        }
        self.reset_network();
        // Incoming QoS 1 messages not acknowledged yet are re-sent by the broker.
        self.incoming_qos1_unacked = 0;
    }

    /// Sends DISCONNECT (normal disconnection) and ends the connection once
    /// the driver has written what [`Connection::poll_transmit`] returns.
    pub fn disconnect(&mut self) {
        if self.phase == Phase::Disconnected {
            return;
        }
        self.transmits
            .push_back(Transmit::Packet(Packet::Disconnect(Disconnect::new(
                ReasonCode::NORMAL_DISCONNECTION,
            ))));
        self.phase = Phase::Disconnected;
        self.push_disconnected(ConnectionError::Requested);
    }

    /// Reports the end of the connection, and fails a re-authentication
    /// in progress with the same reason (a broker refuses one with
    /// DISCONNECT).
    fn push_disconnected(&mut self, reason: ConnectionError) {
        if let Some(request) = self.reauth.take() {
            self.events.push_back(Event::Reauthenticated {
                request,
                result: Err(reason.clone()),
            });
        }
        self.events.push_back(Event::Disconnected { reason });
    }

    /// Starts a 5.0 re-authentication (section 4.12.1): sends AUTH 0x19
    /// Re-authenticate with the method of the CONNECT and `data` (`None`:
    /// the handler's initial data); the broker's challenges and its final
    /// data go to the [`super::AuthHandler`], and
    /// [`Event::Reauthenticated`] reports the outcome (AUTH 0x00 Success,
    /// or the DISCONNECT with which the broker refused).
    pub fn reauthenticate(&mut self, data: Option<Bytes>) -> Result<RequestId, ReauthError> {
        let Some(auth) = self.options.active_enhanced_auth() else {
            return Err(ReauthError::NoMethod);
        };
        if self.phase != Phase::Connected {
            return Err(ReauthError::NotConnected);
        }
        if self.reauth.is_some() {
            return Err(ReauthError::InProgress);
        }
        let data = data.or_else(|| auth.initial_data());
        let packet = auth_packet(ReasonCode::ReAuthenticate, &auth.method, data);
        self.transmits.push_back(Transmit::Packet(packet));
        let request = self.request_id();
        self.reauth = Some(request);
        Ok(request)
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// A free packet identifier [MQTT-2.2.1-3]: PUBLISH, SUBSCRIBE and
    /// UNSUBSCRIBE share one space, and an identifier is reused only after
    /// its exchange completed.
    fn packet_id(&mut self) -> Option<PacketId> {
        let (outgoing, pending) = (&self.outgoing, &self.pending);
        self.packet_ids
            .allocate(|id| outgoing.contains_key(&id) || pending.contains_key(&id))
    }

    /// Queues an application message. QoS 0 completes with [`Event::Sent`],
    /// QoS 1 with [`Event::PubAck`], QoS 2 with [`Event::PubComp`]. While
    /// offline, or while the in-flight window is full, the message waits in a
    /// queue of at most `max_queued` messages.
    ///
    /// The packet identifier, DUP flag and topic alias are the core's business:
    /// whatever `publish` carries there is replaced.
    pub fn publish(&mut self, mut publish: Publish) -> Result<RequestId, PublishError> {
        if self.queue.len() >= self.options.max_queued {
            return Err(PublishError::QueueFull {
                limit: self.options.max_queued,
            });
        }
        // [MQTT-3.3.2-14] a Response Topic is a Topic Name (the codec's
        // PUBLISH encoder leaves this to its callers: it is the hot path).
        if let Some(t) = &publish.properties.response_topic {
            if self.options.protocol.is_v5() && TopicName::try_from(t.as_str()).is_err() {
                return Err(PublishError::Encode(EncodeError::InvalidPropertyValue(
                    PropertyId::ResponseTopic,
                )));
            }
        }
        if self.phase == Phase::Connected {
            self.check_publish(&publish)?;
        }
        publish.packet_id = None;
        publish.dup = false;
        publish.properties.topic_alias = None;
        let request = self.request_id();
        self.queue.push_back((request, publish));
        self.fill_window();
        Ok(request)
    }

    fn check_publish(&self, p: &Publish) -> Result<(), PublishError> {
        // [MQTT-3.2.2-11] no QoS above the broker's Maximum QoS.
        if p.qos > self.limits.maximum_qos {
            return Err(PublishError::QoSNotSupported {
                asked: p.qos.as_u8(),
                max: self.limits.maximum_qos.as_u8(),
            });
        }
        // [MQTT-3.2.2-14] no RETAIN when Retain Available is 0.
        if p.retain && !self.limits.retain_available {
            return Err(PublishError::RetainNotSupported);
        }
        // [MQTT-3.1.2-24] nothing larger than the broker's Maximum Packet Size.
        let v = self.options.protocol;
        let len = p.encoded_len(v) + if p.qos == QoS::AtMostOnce { 2 } else { 0 };
        if len > self.limits.maximum_packet_size as usize {
            return Err(PublishError::Encode(
                mqtt_codec::EncodeError::PacketTooLarge {
                    size: len,
                    max: self.limits.maximum_packet_size,
                },
            ));
        }
        Ok(())
    }

    fn window(&self) -> usize {
        // [MQTT-4.9.0-2] no more QoS > 0 PUBLISH in flight than Receive Maximum.
        usize::from(
            self.limits
                .receive_maximum
                .min(self.options.max_inflight.max(1)),
        )
    }

    /// Moves queued publishes onto the wire while the window allows.
    fn fill_window(&mut self) {
        if self.phase != Phase::Connected {
            return;
        }
        while let Some((_, front)) = self.queue.front() {
            if front.qos != QoS::AtMostOnce && self.outgoing.len() >= self.window() {
                break;
            }
            let Some((request, mut publish)) = self.queue.pop_front() else {
                break;
            };
            if let Err(error) = self.check_publish(&publish) {
                self.events
                    .push_back(Event::PublishFailed { request, error });
                continue;
            }
            if publish.qos == QoS::AtMostOnce {
                self.transmits.push_back(Transmit::Publish {
                    publish,
                    request: Some(request),
                });
                continue;
            }
            let Some(id) = self.packet_id() else {
                self.queue.push_front((request, publish));
                break;
            };
            publish.packet_id = Some(id);
            self.next_seq += 1;
            self.outgoing.insert(
                id,
                Outgoing::Publish {
                    request,
                    publish: Box::new(publish.clone()),
                    seq: self.next_seq,
                },
            );
            self.transmits.push_back(Transmit::Publish {
                publish,
                request: None,
            });
        }
    }

    /// Queues a SUBSCRIBE; completes with [`Event::SubAck`]. Sent now if
    /// connected, else after the next CONNACK. Granted filters are
    /// remembered and re-subscribed when a broker lost the session.
    pub fn subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> Option<RequestId> {
        let request = self.request_id();
        let packet_id = self.packet_id()?;
        let subscribe = Subscribe {
            packet_id,
            properties,
            subscriptions,
        };
        if let Err(error) = self.check_request(&Packet::Subscribe(subscribe.clone())) {
            self.events
                .push_back(Event::RequestFailed { request, error });
            return Some(request);
        }
        if self.phase == Phase::Connected {
            self.transmits
                .push_back(Transmit::Packet(Packet::Subscribe(subscribe.clone())));
        }
        self.pending
            .insert(packet_id, PendingRequest::Subscribe { request, subscribe });
        Some(request)
    }

    /// Queues an UNSUBSCRIBE; completes with [`Event::UnsubAck`]. The filters
    /// are forgotten at once, so they are not restored by a reconnect.
    pub fn unsubscribe(
        &mut self,
        filters: Vec<TopicFilter>,
        properties: Properties,
    ) -> Option<RequestId> {
        let request = self.request_id();
        let packet_id = self.packet_id()?;
        let unsubscribe = Unsubscribe {
            packet_id,
            properties,
            filters,
        };
        // One that cannot be sent fails before its filters are forgotten.
        if let Err(error) = self.check_request(&Packet::Unsubscribe(unsubscribe.clone())) {
            self.events
                .push_back(Event::RequestFailed { request, error });
            return Some(request);
        }
        for f in &unsubscribe.filters {
            self.subscriptions.remove(f.as_str());
        }
        if self.phase == Phase::Connected {
            self.transmits
                .push_back(Transmit::Packet(Packet::Unsubscribe(unsubscribe.clone())));
        }
        self.pending.insert(
            packet_id,
            PendingRequest::Unsubscribe {
                request,
                unsubscribe,
            },
        );
        Some(request)
    }

    /// Acknowledges a message delivered by [`Event::Message`] (with
    /// `manual_acks`; without, the core did it when the event was polled).
    /// QoS 1: sends PUBACK. QoS 2: sends PUBREC; the identifier is
    /// remembered until PUBREL, so a re-sent PUBLISH is not delivered again.
    pub fn acknowledge(&mut self, publish: &Publish) {
        let Some(id) = publish.packet_id else {
            return;
        };
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.incoming_qos1_unacked = self.incoming_qos1_unacked.saturating_sub(1);
                if self.phase == Phase::Connected {
                    // [MQTT-4.3.2-4] answer with PUBACK carrying the identifier.
                    self.transmits
                        .push_back(Transmit::Packet(Packet::PubAck(PubAck::new(id))));
                }
            }
            QoS::ExactlyOnce => {
                if let Some(state) = self.incoming_qos2.get_mut(&id) {
                    if *state == IncomingQoS2::Delivered {
                        *state = IncomingQoS2::Received;
                        if self.phase == Phase::Connected {
                            // [MQTT-4.3.3-8] answer with PUBREC carrying the identifier.
                            self.transmits
                                .push_back(Transmit::Packet(Packet::PubRec(PubRec::new(id))));
                        }
                    }
                }
            }
        }
    }

    /// Feeds bytes read from the network. On error the core has queued a
    /// DISCONNECT (5.0) for [`Connection::poll_transmit`], emitted
    /// [`Event::Disconnected`], and the driver should close the connection.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), ConnectionError> {
        if self.phase == Phase::Disconnected {
            return Ok(());
        }
        self.rx.extend_from_slice(data);
        loop {
            let packet = match self.decoder.decode(&mut self.rx) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(self.fail(e.into())),
            };
            if let Some(log) = &self.options.packet_log {
                log.log(PacketDirection::Received, &packet);
            }
            if let Err(e) = self.handle_packet(packet, now) {
                return Err(self.fail(e));
            }
            if self.phase == Phase::Disconnected {
                break;
            }
        }
        self.fill_window();
        Ok(())
    }

    /// Ends the connection because of `error`, telling a 5.0 broker why.
    fn fail(&mut self, error: ConnectionError) -> ConnectionError {
        if self.options.protocol.is_v5()
            && !matches!(
                error,
                ConnectionError::Refused { .. } | ConnectionError::ServerDisconnected { .. }
            )
            && self.phase == Phase::Connected
        {
            // [MQTT-4.13.1-1] close with a DISCONNECT that carries the reason.
            self.transmits
                .push_back(Transmit::Packet(Packet::Disconnect(Disconnect::new(
                    error.reason_code(),
                ))));
        }
        if self.phase != Phase::Disconnected {
            self.phase = Phase::Disconnected;
            self.push_disconnected(error.clone());
        }
        error
    }

    fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), ConnectionError> {
        let violation = |v| Err(ConnectionError::ProtocolViolation(v));
        if let Phase::AwaitingConnAck { .. } = self.phase {
            return match packet {
                Packet::ConnAck(c) => self.handle_connack(c, now),
                Packet::Auth(a) => self.handle_auth_challenge(a),
                // [MQTT-3.2.0-1] the first packet from the server is CONNACK.
                p => violation(ProtocolViolation::BeforeConnAck(p.packet_type())),
            };
        }
        match packet {
            Packet::Publish(p) => self.handle_publish(p),
            Packet::PubAck(ack) => {
                match self.outgoing.get(&ack.packet_id) {
                    Some(Outgoing::Publish { publish, .. }) if publish.qos == QoS::AtLeastOnce => {
                        if let Some(Outgoing::Publish { request, .. }) =
                            self.outgoing.remove(&ack.packet_id)
                        {
                            self.events.push_back(Event::PubAck {
                                request,
                                packet_id: ack.packet_id,
                                reason_code: ack.reason_code,
                                properties: ack.properties,
                            });
                        }
                    }
                    // An acknowledgement of nothing (e.g. one that crossed a
                    // reconnect): harmless, so it is not an error.
                    _ => tracing::debug!(
                        packet_id = ack.packet_id.get(),
                        "PUBACK for no QoS 1 PUBLISH in flight"
                    ),
                }
                Ok(())
            }
            Packet::PubRec(rec) => {
                self.handle_pubrec(rec);
                Ok(())
            }
            Packet::PubComp(comp) => {
                if let Some(Outgoing::Released { .. }) = self.outgoing.get(&comp.packet_id) {
                    if let Some(Outgoing::Released {
                        request, accepted, ..
                    }) = self.outgoing.remove(&comp.packet_id)
                    {
                        // 5.0: 0x92 answers a PUBREL re-sent after a
                        // reconnect when the broker had already completed
                        // the exchange; "not an error during recovery"
                        // (3.4.2.1 / 3.7.2.1). The broker acknowledged the
                        // message with PUBREC, so the publish succeeded with
                        // PUBREC's code (which carries 0x10 No matching
                        // subscribers; PUBCOMP has no such code).
                        let reason_code = match comp.reason_code {
                            ReasonCode::Success | ReasonCode::PacketIdentifierNotFound => accepted,
                            other => other,
                        };
                        self.events.push_back(Event::PubComp {
                            request,
                            packet_id: comp.packet_id,
                            reason_code,
                            properties: comp.properties,
                        });
                    }
                } else {
                    tracing::debug!(
                        packet_id = comp.packet_id.get(),
                        "PUBCOMP for no PUBREL in flight"
                    );
                }
                Ok(())
            }
            Packet::PubRel(rel) => {
                // [MQTT-4.3.3-11] PUBREL: forget the identifier, answer PUBCOMP.
                let reason = if self.incoming_qos2.remove(&rel.packet_id).is_some()
                    || !self.options.protocol.is_v5()
                {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                self.transmits
                    .push_back(Transmit::Packet(Packet::PubComp(PubComp::with_reason(
                        rel.packet_id,
                        reason,
                    ))));
                Ok(())
            }
            Packet::Auth(auth) if self.reauth.is_some() => self.handle_reauth(auth),
            Packet::SubAck(suback) => self.handle_suback(suback),
            Packet::UnsubAck(unsuback) => {
                self.handle_unsuback(unsuback);
                Ok(())
            }
            Packet::PingResp => {
                self.ping_sent = None;
                Ok(())
            }
            Packet::Disconnect(d) => {
                self.phase = Phase::Disconnected;
                let reason = ConnectionError::ServerDisconnected {
                    reason: d.reason_code,
                    reason_string: d.properties.reason_string.clone().map(String::from),
                };
                self.push_disconnected(reason.clone());
                Err(reason)
            }
            p => violation(ProtocolViolation::UnexpectedPacket(p.packet_type())),
        }
    }

    /// AUTH before CONNACK: a step of the enhanced authentication the
    /// CONNECT started (section 4.12).
    fn handle_auth_challenge(&mut self, auth: Auth) -> Result<(), ConnectionError> {
        if auth.reason_code != ReasonCode::ContinueAuthentication {
            return Err(ConnectionError::ProtocolViolation(
                ProtocolViolation::UnexpectedAuthReason(auth.reason_code),
            ));
        }
        self.answer_challenge(auth)
    }

    /// AUTH during a re-authentication: a challenge, or the end of it.
    fn handle_reauth(&mut self, auth: Auth) -> Result<(), ConnectionError> {
        match auth.reason_code {
            ReasonCode::ContinueAuthentication => self.answer_challenge(auth),
            ReasonCode::Success => {
                let ours = self.check_auth_method(&auth)?;
                ours.handler
                    .finish(&ours.method, auth.properties.authentication_data.as_deref())
                    .map_err(ConnectionError::Authentication)?;
                if let Some(request) = self.reauth.take() {
                    self.events.push_back(Event::Reauthenticated {
                        request,
                        result: Ok(auth.properties),
                    });
                }
                Ok(())
            }
            other => Err(ConnectionError::ProtocolViolation(
                ProtocolViolation::UnexpectedAuthReason(other),
            )),
        }
    }

    /// [MQTT-4.12.0-5]: every AUTH carries the method of the CONNECT.
    /// Returns the session's enhanced authentication.
    fn check_auth_method(&self, auth: &Auth) -> Result<&EnhancedAuth, ConnectionError> {
        let violation = |v| Err(ConnectionError::ProtocolViolation(v));
        let Some(ours) = self.options.active_enhanced_auth() else {
            // [MQTT-4.12.0-6]: no Authentication Method in CONNECT, no AUTH.
            return violation(ProtocolViolation::UnexpectedPacket(PacketType::Auth));
        };
        let method = auth
            .properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str());
        if method != Some(ours.method.as_str()) {
            return violation(ProtocolViolation::AuthMethodChanged {
                expected: ours.method.clone(),
                got: method.map(String::from),
            });
        }
        Ok(ours)
    }

    /// Answers AUTH 0x18 Continue authentication with what the handler says.
    fn answer_challenge(&mut self, auth: Auth) -> Result<(), ConnectionError> {
        let ours = self.check_auth_method(&auth)?;
        let data = ours
            .handler
            .challenge(&ours.method, auth.properties.authentication_data.as_deref())
            .map_err(ConnectionError::Authentication)?;
        let reply = auth_packet(ReasonCode::ContinueAuthentication, &ours.method, data);
        self.transmits.push_back(Transmit::Packet(reply));
        Ok(())
    }

    fn handle_connack(&mut self, connack: ConnAck, now: Instant) -> Result<(), ConnectionError> {
        if connack.reason_code.is_error() {
            return Err(ConnectionError::Refused {
                reason: connack.reason_code,
                reason_string: connack.properties.reason_string.clone().map(String::from),
            });
        }
        // [MQTT-3.2.2-4] (5.0) / [MQTT-3.2.2-1] (3.1.1): Session Present must
        // be 0 when the client asked for a clean start.
        if connack.session_present && self.sent_clean_start {
            return Err(ConnectionError::ProtocolViolation(
                ProtocolViolation::SessionPresentOnCleanStart,
            ));
        }
        if let Some(ours) = self.options.active_enhanced_auth() {
            // The broker's last word of the exchange (e.g. a server signature).
            ours.handler
                .finish(
                    &ours.method,
                    connack.properties.authentication_data.as_deref(),
                )
                .map_err(ConnectionError::Authentication)?;
        }
        let p = &connack.properties;
        self.limits = ServerLimits {
            receive_maximum: p.receive_maximum.unwrap_or(u16::MAX).max(1),
            maximum_packet_size: p.maximum_packet_size.unwrap_or(MAX_PACKET_SIZE),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            maximum_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
        };
        if let Some(id) = &p.assigned_client_identifier {
            self.options.client_id = id.to_string();
        }
        // [MQTT-3.2.2-21] the Server Keep Alive replaces the client's.
        if let Some(k) = p.server_keep_alive {
            self.keep_alive = Duration::from_secs(k.into());
        }
        self.phase = Phase::Connected;
        self.ping_sent = None;
        self.last_transmit = Some(now);

        if connack.session_present {
            // [MQTT-4.4.0-1] re-send unacknowledged PUBLISH (DUP set,
            // [MQTT-3.3.1-1]) and PUBREL with their original identifiers, in
            // the order they were first sent.
            let mut inflight: Vec<_> = self.outgoing.iter().collect();
            inflight.sort_by_key(|(_, o)| o.seq());
            for (id, o) in inflight {
                match o {
                    Outgoing::Publish { publish, .. } => {
                        let mut p = (**publish).clone();
                        p.dup = true;
                        self.transmits.push_back(Transmit::Publish {
                            publish: p,
                            request: None,
                        });
                    }
                    Outgoing::Released { .. } => self
                        .transmits
                        .push_back(Transmit::Packet(Packet::PubRel(PubRel::new(*id)))),
                }
            }
            // Incoming QoS 2 messages delivered before the drop whose PUBREC
            // never went out: send it now.
            for (id, state) in &self.incoming_qos2 {
                if *state == IncomingQoS2::Received {
                    self.transmits
                        .push_back(Transmit::Packet(Packet::PubRec(PubRec::new(*id))));
                }
            }
        } else {
            self.discard_session();
        }
        // SUBSCRIBE/UNSUBSCRIBE that were not acknowledged are sent again.
        for req in self.pending.values() {
            self.transmits.push_back(Transmit::Packet(match req {
                PendingRequest::Subscribe { subscribe, .. } => Packet::Subscribe(subscribe.clone()),
                PendingRequest::Unsubscribe { unsubscribe, .. } => {
                    Packet::Unsubscribe(unsubscribe.clone())
                }
            }));
        }
        self.had_session = true;
        self.events.push_back(Event::Connected {
            session_present: connack.session_present,
            connack,
        });
        Ok(())
    }

    /// Session Present 0: the broker has no session for us.
    fn discard_session(&mut self) {
        // [MQTT-3.2.2-5] (5.0): discard the session state. The broker
        // delivered nothing it had not acknowledged, so:
        // - a PUBLISH awaiting PUBACK/PUBREC is sent again as a new message
        //   (at the head of the queue, in its original order);
        // - a QoS 2 message whose PUBREC arrived was accepted by the broker;
        //   it completes with the PUBREC's success.
        let mut inflight: Vec<_> = std::mem::take(&mut self.outgoing).into_values().collect();
        inflight.sort_by_key(Outgoing::seq);
        let mut requeue = Vec::new();
        for o in inflight {
            match o {
                Outgoing::Publish {
                    request,
                    mut publish,
                    ..
                } => {
                    publish.packet_id = None;
                    publish.dup = false;
                    requeue.push((request, *publish));
                }
                Outgoing::Released {
                    request, accepted, ..
                } => {
                    tracing::debug!(
                        "broker lost the session after PUBREC; completing the QoS 2 publish"
                    );
                    self.events.push_back(Event::PubComp {
                        request,
                        // Identifiers are gone with the session; report the request only.
                        packet_id: PacketId::MIN,
                        reason_code: accepted,
                        properties: Properties::default(),
                    });
                }
            }
        }
        for item in requeue.into_iter().rev() {
            self.queue.push_front(item);
        }
        self.incoming_qos2.clear();
        // Restore the subscriptions the broker forgot.
        if !self.subscriptions.is_empty() {
            let subs: Vec<Subscription> = self.subscriptions.values().cloned().collect();
            // One SUBSCRIBE per filter keeps each under any Maximum Packet Size.
            for s in subs {
                let request = self.request_id();
                if let Some(packet_id) = self.packet_id() {
                    let subscribe = Subscribe {
                        packet_id,
                        properties: Properties::default(),
                        subscriptions: vec![s],
                    };
                    self.pending
                        .insert(packet_id, PendingRequest::Subscribe { request, subscribe });
                }
            }
        }
    }

    fn handle_pubrec(&mut self, rec: PubRec) {
        let id = rec.packet_id;
        match self.outgoing.get(&id) {
            Some(Outgoing::Publish { publish, .. }) if publish.qos == QoS::ExactlyOnce => {
                let Some(Outgoing::Publish { request, seq, .. }) = self.outgoing.remove(&id) else {
                    return;
                };
                if rec.reason_code.is_error() {
                    // [MQTT-4.3.3] a PUBREC with an error ends the exchange.
                    self.events.push_back(Event::PubComp {
                        request,
                        packet_id: id,
                        reason_code: rec.reason_code,
                        properties: rec.properties,
                    });
                    return;
                }
                // [MQTT-4.3.3-4] answer PUBREC with PUBREL; the message is
                // now the broker's, so it is never re-sent as PUBLISH.
                self.outgoing.insert(
                    id,
                    Outgoing::Released {
                        request,
                        seq,
                        accepted: rec.reason_code,
                    },
                );
                self.transmits
                    .push_back(Transmit::Packet(Packet::PubRel(PubRel::new(id))));
            }
            Some(Outgoing::Released { .. }) => {
                // A repeated PUBREC: repeat PUBREL.
                self.transmits
                    .push_back(Transmit::Packet(Packet::PubRel(PubRel::new(id))));
            }
            _ => {
                // 5.0: PUBREL with 0x92 for an identifier we do not know.
                let rel = if self.options.protocol.is_v5() {
                    PubRel::with_reason(id, ReasonCode::PacketIdentifierNotFound)
                } else {
                    PubRel::new(id)
                };
                self.transmits
                    .push_back(Transmit::Packet(Packet::PubRel(rel)));
            }
        }
    }

    fn handle_publish(&mut self, mut p: Publish) -> Result<(), ConnectionError> {
        // Topic aliases [MQTT-3.3.2-9..12].
        if let Some(alias) = p.properties.topic_alias {
            self.in_aliases
                .resolve(alias, &mut p.topic, self.options.topic_alias_maximum)
                .map_err(|e| {
                    ConnectionError::ProtocolViolation(match e {
                        TopicAliasError::OutOfRange { alias, max } => {
                            ProtocolViolation::TopicAliasOutOfRange { alias, max }
                        }
                        TopicAliasError::Unknown(alias) => {
                            ProtocolViolation::UnknownTopicAlias(alias)
                        }
                    })
                })?;
        }
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) => self.events.push_back(Event::Message(p)),
            (QoS::AtLeastOnce, Some(_)) => {
                self.check_receive_maximum()?;
                self.incoming_qos1_unacked += 1;
                self.events.push_back(Event::Message(p));
            }
            (QoS::ExactlyOnce, Some(id)) => match self.incoming_qos2.get(&id) {
                // [MQTT-4.3.3-9]: a PUBLISH with an identifier whose PUBREL has
                // not arrived is the same message: not delivered again.
                Some(IncomingQoS2::Received) => self
                    .transmits
                    .push_back(Transmit::Packet(Packet::PubRec(PubRec::new(id)))),
                Some(IncomingQoS2::Delivered) => {}
                None => {
                    self.check_receive_maximum()?;
                    self.incoming_qos2.insert(id, IncomingQoS2::Delivered);
                    self.events.push_back(Event::Message(p));
                }
            },
            // The codec guarantees an identifier for QoS 1 and 2.
            _ => {
                return Err(ConnectionError::Malformed(
                    mqtt_codec::DecodeError::ZeroPacketId,
                ))
            }
        }
        Ok(())
    }

    fn check_receive_maximum(&self) -> Result<(), ConnectionError> {
        if !self.options.protocol.is_v5() {
            return Ok(());
        }
        let max = self.options.receive_maximum.unwrap_or(u16::MAX);
        // [MQTT-3.3.4-9] the broker must not exceed our Receive Maximum.
        if self.incoming_qos1_unacked + self.incoming_qos2.len() >= usize::from(max) {
            return Err(ConnectionError::ProtocolViolation(
                ProtocolViolation::ReceiveMaximumExceeded(max),
            ));
        }
        Ok(())
    }

    fn handle_suback(&mut self, suback: SubAck) -> Result<(), ConnectionError> {
        let Some(PendingRequest::Subscribe { .. }) = self.pending.get(&suback.packet_id) else {
            tracing::debug!(
                packet_id = suback.packet_id.get(),
                "SUBACK for no SUBSCRIBE in flight"
            );
            return Ok(());
        };
        let Some(PendingRequest::Subscribe { request, subscribe }) =
            self.pending.remove(&suback.packet_id)
        else {
            return Ok(());
        };
        // [MQTT-3.9.3-1] one reason code per topic filter, in order.
        if suback.reason_codes.len() != subscribe.subscriptions.len() {
            return Err(ConnectionError::ProtocolViolation(
                ProtocolViolation::SubAckCount {
                    expected: subscribe.subscriptions.len(),
                    got: suback.reason_codes.len(),
                },
            ));
        }
        for (s, rc) in subscribe.subscriptions.iter().zip(&suback.reason_codes) {
            if !rc.is_error() {
                self.subscriptions
                    .insert(s.filter.as_str().to_string(), s.clone());
            }
        }
        self.events.push_back(Event::SubAck { request, suback });
        Ok(())
    }

    fn handle_unsuback(&mut self, unsuback: UnsubAck) {
        match self.pending.get(&unsuback.packet_id) {
            Some(PendingRequest::Unsubscribe { .. }) => {
                if let Some(PendingRequest::Unsubscribe { request, .. }) =
                    self.pending.remove(&unsuback.packet_id)
                {
                    self.events.push_back(Event::UnsubAck { request, unsuback });
                }
            }
            _ => tracing::debug!(
                packet_id = unsuback.packet_id.get(),
                "UNSUBACK for no UNSUBSCRIBE in flight"
            ),
        }
    }

    /// The next event. Without `manual_acks`, taking an [`Event::Message`]
    /// of QoS 1 or 2 acknowledges it.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front()?;
        if let Event::Message(p) = &e {
            if !self.options.manual_acks {
                let p = p.clone();
                self.acknowledge(&p);
            }
        }
        Some(e)
    }

    /// Whether [`Connection::poll_transmit`] has something to write.
    pub fn wants_transmit(&self) -> bool {
        !self.transmits.is_empty()
    }

    /// Everything ready to be written, encoded into one buffer (one write,
    /// one TLS record batch), or `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.transmits.is_empty() {
            return None;
        }
        let v = self.options.protocol;
        let max = self.limits.maximum_packet_size;
        let mut buf = BytesMut::new();
        while let Some(t) = self.transmits.pop_front() {
            match t {
                Transmit::Packet(p) => match p.encode_limited(v, max, &mut buf) {
                    Ok(_) => {
                        if let Some(log) = &self.options.packet_log {
                            log.log(PacketDirection::Sent, &p);
                        }
                    }
                    Err(error) => self.request_failed(&p, error),
                },
                Transmit::Publish { publish, request } => {
                    // The log shows the topic, not the alias that may replace it.
                    let logged = self.options.packet_log.is_some().then(|| publish.clone());
                    let (publish, alias) = self.apply_topic_alias(publish);
                    match publish.encode_limited(v, max, &mut buf) {
                        Ok(_) => {
                            // The broker knows the alias only once it is sent.
                            if let AliasChoice::New(alias) = alias {
                                self.out_aliases.commit(publish.topic.clone(), alias);
                            }
                            if let (Some(log), Some(p)) = (&self.options.packet_log, logged) {
                                log.log(PacketDirection::Sent, &Packet::Publish(p));
                            }
                            if let Some(request) = request {
                                self.events.push_back(Event::Sent { request });
                            }
                        }
                        Err(e) => {
                            let request =
                                match publish.packet_id.and_then(|id| self.outgoing.remove(&id)) {
                                    Some(Outgoing::Publish { request, .. }) => Some(request),
                                    _ => request,
                                };
                            if let Some(request) = request {
                                self.events.push_back(Event::PublishFailed {
                                    request,
                                    error: PublishError::Encode(e),
                                });
                            }
                        }
                    }
                }
            }
        }
        if buf.is_empty() {
            return None;
        }
        self.last_transmit = Some(now);
        Some(buf.freeze())
    }

    /// How many SUBSCRIBE and UNSUBSCRIBE requests hold a packet
    /// identifier, waiting for their acknowledgement.
    #[cfg(test)]
    pub(crate) fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Whether a SUBSCRIBE or UNSUBSCRIBE can be encoded now (a property
    /// the packet cannot carry, a value the broker must reject, larger than
    /// the broker's Maximum Packet Size): encoded once into a scratch
    /// buffer, which a request that rare can afford.
    fn check_request(&self, p: &Packet) -> Result<(), EncodeError> {
        let v = self.options.protocol;
        let max = self.limits.maximum_packet_size;
        p.encode_limited(v, max, &mut BytesMut::new()).map(|_| ())
    }

    /// A packet that could not be encoded: a SUBSCRIBE or UNSUBSCRIBE
    /// fails its request (and frees its packet identifier); anything else
    /// the core built itself is logged.
    fn request_failed(&mut self, p: &Packet, error: EncodeError) {
        let id = match p {
            Packet::Subscribe(s) => s.packet_id,
            Packet::Unsubscribe(u) => u.packet_id,
            _ => {
                tracing::warn!(packet = %p.packet_type(), %error, "packet not sent");
                return;
            }
        };
        let request = match self.pending.remove(&id) {
            Some(PendingRequest::Subscribe { request, .. }) => request,
            Some(PendingRequest::Unsubscribe { request, .. }) => request,
            None => return,
        };
        self.events
            .push_back(Event::RequestFailed { request, error });
    }

    /// 5.0 outgoing topic aliases: the first PUBLISH to a topic carries the
    /// topic and a new alias, later ones an empty topic and the alias. A new
    /// alias is to be committed once the PUBLISH is encoded.
    fn apply_topic_alias(&self, mut p: Publish) -> (Publish, AliasChoice) {
        if !self.options.protocol.is_v5() || !self.options.auto_topic_alias {
            return (p, AliasChoice::None);
        }
        // [MQTT-3.3.2-9] never above the broker's Topic Alias Maximum.
        let choice = self
            .out_aliases
            .lookup_or_propose(&p.topic, self.limits.topic_alias_maximum);
        choice.apply_to(&mut p);
        (p, choice)
    }

    /// The next time [`Connection::handle_timeout`] must be called: the
    /// CONNACK deadline, the next PINGREQ, or the PINGRESP deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Disconnected => None,
            Phase::AwaitingConnAck { deadline } => Some(deadline),
            Phase::Connected => {
                if self.keep_alive.is_zero() {
                    return None;
                }
                match self.ping_sent {
                    Some(sent) => Some(sent + self.keep_alive),
                    None => self.last_transmit.map(|t| t + self.keep_alive),
                }
            }
        }
    }

    /// Handles the deadline [`Connection::poll_timeout`] returned. An error
    /// means the connection is dead (the event was emitted too).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnectionError> {
        match self.phase {
            Phase::Disconnected => Ok(()),
            Phase::AwaitingConnAck { deadline } => {
                if now >= deadline {
                    Err(self.fail(ConnectionError::ConnectTimeout(
                        self.options.connect_timeout,
                    )))
                } else {
                    Ok(())
                }
            }
            Phase::Connected => {
                if self.keep_alive.is_zero() {
                    return Ok(());
                }
                if let Some(sent) = self.ping_sent {
                    if now >= sent + self.keep_alive {
                        return Err(self.fail(ConnectionError::KeepAliveTimeout(self.keep_alive)));
                    }
                    return Ok(());
                }
                // [MQTT-3.1.2-20] send PINGREQ when nothing else was sent
                // within the Keep Alive.
                let due = self
                    .last_transmit
                    .is_none_or(|t| now >= t + self.keep_alive);
                if due {
                    self.transmits.push_back(Transmit::Packet(Packet::PingReq));
                    self.ping_sent = Some(now);
                }
                Ok(())
            }
        }
    }
}

/// An AUTH packet with `reason_code`, the Authentication Method and `data`.
fn auth_packet(reason_code: ReasonCode, method: &str, data: Option<Bytes>) -> Packet {
    let mut properties = Properties::default();
    properties.authentication_method = Some(method.into());
    properties.authentication_data = data;
    Packet::Auth(Auth {
        reason_code,
        properties,
    })
}
