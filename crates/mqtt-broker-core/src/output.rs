//! Writing packets into a connection's outgoing buffer, and moving queued
//! messages into the in-flight window.

use crate::broker_config::BrokerConfig;
use crate::connection::ConnectionId;
use crate::event::Event;
use crate::log_line::PublishSummary;
use crate::message::{Delivery, Message};
use crate::session::{Outgoing, Session};
use crate::stats::Statistics;
use bytes::BytesMut;
use mqtt_codec::{
    Decoder, Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS, TopicName,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Waiting for CONNECT [MQTT-3.1.0-1].
    AwaitingConnect,
    /// CONNECT received, 5.0 AUTH exchange under way.
    Authenticating,
    /// CONNACK sent.
    Connected,
    /// The broker asked the driver to close it; input is ignored.
    Closing,
}

/// Per-connection protocol state. The session state lives in [`Session`].
#[derive(Debug)]
pub(crate) struct Conn {
    pub id: ConnectionId,
    pub info: crate::connection::ConnectionInfo,
    pub state: ConnState,
    pub decoder: Decoder,
    pub version: ProtocolVersion,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub session: Option<u32>,
    pub keep_alive: u16,
    pub last_rx: Instant,
    pub out: BytesMut,
    pub transmit_pending: bool,
    /// The client's Receive Maximum.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size.
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (aliases we may send).
    pub topic_alias_max: u16,
    pub aliases_in: HashMap<u16, TopicName>,
    pub aliases_out: HashMap<TopicName, u16>,
    /// Session Expiry Interval of the CONNECT (for [MQTT-3.14.2-2]).
    pub connect_session_expiry: u32,
    /// Authentication Method of the CONNECT (5.0 enhanced authentication).
    pub auth_method: Option<String>,
    pub pending: Option<Box<crate::broker::PendingConnect>>,
    pub reauth: Option<crate::auth::AuthExchange>,
}

impl Conn {
    pub fn new(
        id: ConnectionId,
        info: crate::connection::ConnectionInfo,
        now: Instant,
        max_packet: u32,
    ) -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_packet_size(max_packet);
        Self {
            id,
            info,
            state: ConnState::AwaitingConnect,
            decoder,
            version: ProtocolVersion::V3_1_1,
            client_id: None,
            username: None,
            session: None,
            keep_alive: 0,
            last_rx: now,
            out: BytesMut::new(),
            transmit_pending: false,
            receive_maximum: u16::MAX,
            max_packet_size: mqtt_codec::MAX_PACKET_SIZE,
            topic_alias_max: 0,
            aliases_in: HashMap::new(),
            aliases_out: HashMap::new(),
            connect_session_expiry: 0,
            auth_method: None,
            pending: None,
            reauth: None,
        }
    }

    /// The client identifier for log lines (`<unknown>` before CONNECT, as Mosquitto).
    pub fn name(&self) -> &str {
        self.client_id.as_deref().unwrap_or("<unknown>")
    }
}

/// Broker-wide parts every output path touches.
pub(crate) struct Ctx {
    pub config: BrokerConfig,
    pub stats: Statistics,
    pub events: VecDeque<Event>,
    pub storage: Option<Box<dyn crate::storage::Storage>>,
    pub timers: crate::timer::Timers,
}

impl Ctx {
    /// Writes a queued or in-flight delivery of a persistent session through to storage.
    pub fn persist(
        &mut self,
        now: Instant,
        session: &Session,
        d: &Delivery,
        packet_id: Option<PacketId>,
        released: bool,
    ) {
        if let Some(storage) = self.storage.as_mut() {
            if session.is_persistent() {
                let stored = crate::storage::StoredDelivery::from_delivery(
                    d,
                    packet_id,
                    released,
                    Some(now),
                );
                storage.save_message(&session.client_id, d.seq, &stored);
            }
        }
    }

    /// A delivery of a persistent session is done (acknowledged or dropped).
    pub fn forget(&mut self, session: &Session, seq: u64) {
        if let Some(storage) = self.storage.as_mut() {
            if session.is_persistent() {
                storage.remove_message(&session.client_id, seq);
            }
        }
    }

    fn mark_transmit(&mut self, conn: &mut Conn) {
        if !conn.transmit_pending && !conn.out.is_empty() {
            conn.transmit_pending = true;
            self.events.push_back(Event::Transmit(conn.id));
        }
    }

    /// Encodes a control packet for `conn`; packets larger than the client's
    /// Maximum Packet Size are not sent [MQTT-3.1.2-24].
    pub fn send(&mut self, conn: &mut Conn, packet: &Packet) -> bool {
        match packet.encode_limited(conn.version, conn.max_packet_size, &mut conn.out) {
            Ok(_) => {
                self.stats.messages_sent += 1;
                self.mark_transmit(conn);
                true
            }
            Err(e) => {
                tracing::debug!(target: "mqtt_broker", "Not sending {} to {}: {}.", packet.packet_type(), conn.name(), e);
                false
            }
        }
    }

    /// Encodes a PUBLISH of `msg` for `conn`. Returns false when it was not
    /// sent (expired, or larger than the client accepts) and counts it dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn send_publish(
        &mut self,
        conn: &mut Conn,
        now: Instant,
        msg: &Message,
        qos: QoS,
        retain: bool,
        sub_ids: &[u32],
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> bool {
        let expiry = match msg.expires_at {
            // [MQTT-3.3.2-5] an expired message is not sent.
            Some(t) if t <= now => {
                self.stats.publish_messages_dropped += 1;
                return false;
            }
            // [MQTT-3.3.2-6] the interval sent is what is left of it.
            Some(t) => {
                let left = t - now;
                Some(
                    u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0))
                        .unwrap_or(u32::MAX),
                )
            }
            None => None,
        };
        let v5 = conn.version.is_v5();
        // The listener's mount_point comes off the topic (the client's
        // subscriptions were mounted, so every message it gets is under it).
        let topic = match &conn.info.listener.mount_point {
            None => msg.topic.clone(),
            Some(m) => match msg
                .topic
                .as_str()
                .strip_prefix(m.as_str())
                .filter(|rest| !rest.is_empty())
                .and_then(|rest| TopicName::try_from(rest).ok())
            {
                Some(t) => t,
                None => {
                    self.stats.publish_messages_dropped += 1;
                    return false;
                }
            },
        };
        let mut publish = Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id: if qos == QoS::AtMostOnce {
                None
            } else {
                packet_id
            },
            properties: if v5 {
                msg.properties.clone()
            } else {
                PublishProperties::default()
            },
            payload: msg.payload.clone(),
        };
        let mut new_alias = None;
        if v5 {
            // The properties are changed only where they must be: writing
            // through them allocates a set for a message without one, and
            // makes the encoder measure them again.
            if expiry.is_some() {
                publish.properties.message_expiry_interval = expiry;
            }
            // [MQTT-3.3.4-3] every matching Subscription Identifier.
            if !sub_ids.is_empty() {
                publish
                    .properties
                    .subscription_identifiers
                    .extend_from_slice(sub_ids);
            }
            // Topic aliases towards the client, up to its Topic Alias Maximum [MQTT-3.3.2-10].
            if conn.topic_alias_max > 0 {
                if let Some(&a) = conn.aliases_out.get(&msg.topic) {
                    publish.topic = TopicName::empty();
                    publish.properties.topic_alias = Some(a);
                } else if conn.aliases_out.len() < usize::from(conn.topic_alias_max) {
                    let a = conn.aliases_out.len() as u16 + 1;
                    publish.properties.topic_alias = Some(a);
                    new_alias = Some(a);
                }
            }
        }
        match publish.encode_limited(conn.version, conn.max_packet_size, &mut conn.out) {
            Ok(_) => {
                if let Some(a) = new_alias {
                    conn.aliases_out.insert(msg.topic.clone(), a);
                }
                tracing::debug!(
                    target: "mqtt_broker",
                    "Sending PUBLISH to {} {}",
                    conn.name(),
                    PublishSummary {
                        dup,
                        qos,
                        retain,
                        mid: packet_id.map_or(0, |p| p.get()),
                        topic: msg.topic.as_str(),
                        len: msg.payload.len(),
                    }
                );
                self.stats.messages_sent += 1;
                self.stats.publish_messages_sent += 1;
                self.mark_transmit(conn);
                true
            }
            Err(e) => {
                // [MQTT-3.1.2-25] too large for the client: discarded.
                tracing::debug!(target: "mqtt_broker", "Dropped PUBLISH to {} ('{}'): {}.", conn.name(), msg.topic, e);
                self.stats.publish_messages_dropped += 1;
                false
            }
        }
    }

    /// Queues a delivery for a session, within `max_queued_messages` and
    /// `max_queued_bytes`; a message beyond them is dropped.
    pub fn enqueue(&mut self, now: Instant, session: &mut Session, mut d: Delivery) -> bool {
        let cfg = &self.config;
        let size = d.msg.size();
        let full = (cfg.max_queued_messages != 0 && session.queue.len() >= cfg.max_queued_messages)
            || (cfg.max_queued_bytes != 0 && session.queued_bytes + size > cfg.max_queued_bytes);
        if full {
            self.stats.publish_messages_dropped += 1;
            if !session.dropping {
                session.dropping = true;
                tracing::info!(target: "mqtt_broker", "Outgoing messages are being dropped for client {}.", session.client_id);
            }
            return false;
        }
        d.seq = session.take_seq();
        self.persist(now, session, &d, None, false);
        if let Some(at) = d.msg.expires_at {
            // Expired messages leave the queue on time, not only when sent.
            self.timers.set(
                at,
                crate::timer::Timer::QueueExpiry(session.slot, session.generation),
            );
        }
        session.queued_bytes += size;
        session.queue.push_back(d);
        true
    }

    /// Removes expired messages from the session's queue [MQTT-3.3.2-5].
    pub fn drop_expired(&mut self, now: Instant, session: &mut Session) {
        let mut kept = VecDeque::with_capacity(session.queue.len());
        while let Some(d) = session.pop_queue() {
            if d.msg.is_expired(now) {
                self.stats.publish_messages_dropped += 1;
                self.forget(session, d.seq);
            } else {
                kept.push_back(d);
            }
        }
        session.queued_bytes = kept.iter().map(|d| d.msg.size()).sum();
        session.queue = kept;
    }

    /// Moves queued messages into the in-flight window while the window
    /// ([`BrokerConfig::max_inflight_messages`] and the client's Receive
    /// Maximum [MQTT-3.3.4-9]) and the outgoing buffer have room.
    pub fn pump(&mut self, now: Instant, session: &mut Session, conn: &mut Conn) {
        if conn.state != ConnState::Connected {
            return;
        }
        let window = usize::from(self.config.inflight_window().min(conn.receive_maximum));
        while conn.out.len() < self.config.max_transmit_bytes {
            let Some(front) = session.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce && session.inflight.len() >= window {
                break;
            }
            let Some(d) = session.pop_queue() else {
                break;
            };
            if d.msg.is_expired(now) {
                self.stats.publish_messages_dropped += 1;
                self.forget(session, d.seq);
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                self.send_publish(conn, now, &d.msg, d.qos, d.retain, &d.sub_ids, None, false);
                self.forget(session, d.seq);
                continue;
            }
            let Some(pid) = session.allocate_packet_id() else {
                session.queued_bytes += d.msg.size();
                session.queue.push_front(d);
                break;
            };
            if self.send_publish(
                conn,
                now,
                &d.msg,
                d.qos,
                d.retain,
                &d.sub_ids,
                Some(pid),
                false,
            ) {
                self.persist(now, session, &d, Some(pid), false);
                session.inflight.push_back(Outgoing {
                    packet_id: pid,
                    delivery: d,
                    released: false,
                });
            } else {
                self.forget(session, d.seq);
            }
        }
    }

    /// Delivers one routed message to one session: straight into the
    /// outgoing buffer at QoS 0, through the queue and window at QoS 1 and 2.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver(
        &mut self,
        now: Instant,
        session: &mut Session,
        conn: Option<&mut Conn>,
        qos: QoS,
        retain: bool,
        sub_ids: &[u32],
        msg: &Message,
        shared: &mut Option<Arc<Message>>,
    ) {
        let conn = conn.filter(|c| c.state == ConnState::Connected);
        if qos == QoS::AtMostOnce {
            match conn {
                Some(conn) => {
                    // Back-pressure: a slow subscriber loses QoS 0 messages
                    // rather than making the broker buffer without bound.
                    if conn.out.len() >= self.config.max_transmit_bytes {
                        self.stats.publish_messages_dropped += 1;
                    } else {
                        self.send_publish(conn, now, msg, qos, retain, sub_ids, None, false);
                    }
                }
                None => {
                    if self.config.queue_qos0_messages && session.is_persistent() {
                        let msg = shared.get_or_insert_with(|| Arc::new(msg.clone())).clone();
                        self.enqueue(
                            now,
                            session,
                            Delivery {
                                msg,
                                qos,
                                retain,
                                sub_ids: sub_ids.to_vec(),
                                seq: 0,
                            },
                        );
                    }
                }
            }
            return;
        }
        let msg = shared.get_or_insert_with(|| Arc::new(msg.clone())).clone();
        self.enqueue(
            now,
            session,
            Delivery {
                msg,
                qos,
                retain,
                sub_ids: sub_ids.to_vec(),
                seq: 0,
            },
        );
        if let Some(conn) = conn {
            self.pump(now, session, conn);
        }
    }
}
