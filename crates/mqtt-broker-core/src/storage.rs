//! The persistence seam: what the broker writes through to durable storage,
//! and the in-memory implementation.
//!
//! Design choice: the broker always routes from its own in-memory state (the
//! topic tree, session queues, retained tree), so the hot path never waits on
//! storage. A [`Storage`] given to [`crate::Broker::with_storage`] receives
//! every change of *persistent* state (sessions that outlive their
//! connection, their subscriptions, queued and in-flight messages, incoming
//! QoS 2 identifiers, retained messages), and is read once at start-up to
//! restore it. Without a storage nothing is written anywhere, which is the
//! fast default. [`MemoryStorage`] outlives a `Broker` but not the process;
//! `FileStorage` (feature `file-storage`) is the durable one behind
//! `persistence true`. Another store only has to implement this trait.

use crate::message::{Delivery, Message};
use crate::write_progress::FlushTicket;
use bytes::Bytes;
use mqtt_codec::{
    PacketId, ProtocolVersion, PublishProperties, QoS, SubscriptionOptions, TopicFilter, TopicName,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An application message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Topic Name.
    pub topic: TopicName,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag it was published with.
    pub retain: bool,
    /// 5.0 properties forwarded with it.
    pub properties: PublishProperties,
    /// Time left before it expires, when it was stored.
    pub expires_in: Option<Duration>,
}

impl StoredMessage {
    pub(crate) fn from_message(m: &Message, now: Option<Instant>) -> Self {
        Self {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            properties: m.properties.clone(),
            expires_in: match (m.expires_at, now) {
                (Some(t), Some(now)) => Some(t.saturating_duration_since(now)),
                _ => None,
            },
        }
    }

    pub(crate) fn into_message(self, now: Option<Instant>) -> Message {
        Message {
            topic: self.topic,
            payload: self.payload,
            qos: self.qos,
            retain: self.retain,
            properties: self.properties,
            expires_at: match (self.expires_in, now) {
                (Some(d), Some(now)) => Some(now + d),
                _ => None,
            },
            charge: Default::default(),
        }
    }
}

/// A message on its way to a session: queued, or in flight with its packet identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The message.
    pub message: StoredMessage,
    /// QoS it is delivered at.
    pub qos: QoS,
    /// RETAIN flag it is delivered with.
    pub retain: bool,
    /// Subscription Identifiers it carries.
    pub subscription_identifiers: Vec<u32>,
    /// Packet Identifier once sent (in flight); `None` while queued.
    pub packet_id: Option<u16>,
    /// QoS 2: PUBREC received, waiting for PUBCOMP.
    pub released: bool,
}

impl StoredDelivery {
    pub(crate) fn from_delivery(
        d: &Delivery,
        packet_id: Option<PacketId>,
        released: bool,
        now: Option<Instant>,
    ) -> Self {
        Self {
            message: StoredMessage::from_message(&d.msg, now),
            qos: d.qos,
            retain: d.retain,
            subscription_identifiers: d.sub_ids.clone(),
            packet_id: packet_id.map(|p| p.get()),
            released,
        }
    }

    pub(crate) fn into_delivery(self, now: Instant) -> (Delivery, Option<PacketId>, bool) {
        let d = Delivery {
            msg: Arc::new(self.message.into_message(Some(now))),
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.subscription_identifiers,
            seq: 0,
        };
        (d, self.packet_id.and_then(PacketId::new), self.released)
    }
}

/// A persistent session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Client Identifier.
    pub client_id: String,
    /// User name of its last connection.
    pub username: Option<String>,
    /// Protocol version of its last connection.
    pub protocol: ProtocolVersion,
    /// How long it outlives its connection; `None` is forever.
    pub expiry: Option<Duration>,
    /// Subscriptions: filter, options, Subscription Identifier (0 for none).
    pub subscriptions: Vec<(TopicFilter, SubscriptionOptions, u32)>,
    /// QoS 2 packet identifiers received and not yet released.
    pub incoming_qos2: Vec<u16>,
}

/// Everything a storage holds, read once at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Persistent sessions (all offline after a restart).
    pub sessions: Vec<StoredSession>,
    /// Queued and in-flight messages: client identifier, sequence number
    /// (the order within the session), delivery.
    pub messages: Vec<(String, u64, StoredDelivery)>,
    /// Retained messages.
    pub retained: Vec<StoredMessage>,
}

/// Where persistent broker state is written through to.
pub trait Storage: Send {
    /// Everything stored; called once by [`crate::Broker::with_storage`].
    fn load(&mut self) -> StoredState;
    /// A persistent session changed (connected, subscribed, went offline,
    /// received or released a QoS 2 message): replaces the stored copy.
    fn save_session(&mut self, session: &StoredSession);
    /// A session ended (expired, or replaced by a clean start): forget it
    /// and its messages.
    fn remove_session(&mut self, client_id: &str);
    /// A message was queued for a persistent session, or changed state
    /// (sent with a packet identifier, PUBREC received): replaces the copy
    /// stored under (`client_id`, `seq`).
    fn save_message(&mut self, client_id: &str, seq: u64, delivery: &StoredDelivery);
    /// A message of a persistent session was acknowledged or dropped.
    fn remove_message(&mut self, client_id: &str, seq: u64);
    /// A retained message was set or replaced.
    fn save_retained(&mut self, message: &StoredMessage);
    /// A retained message was deleted.
    fn remove_retained(&mut self, topic: &str);
    /// Called by the broker before it hands out the bytes that followed
    /// the changes above ([`crate::Broker::take_transmit`] flushes first;
    /// e.g. the PUBACK of a stored message), and by
    /// [`crate::Broker::flush_storage`]: a store may buffer its writes
    /// until then, and write them as one. When it returns, the records
    /// are written. The default does nothing.
    fn flush(&mut self) {}

    /// Like [`Storage::flush`], for a store that writes on another thread:
    /// hands the buffered records to it and returns at once, with a ticket
    /// that is done when they are written (or `None` when they already
    /// are). [`crate::Broker::take_transmit_when_stored`] uses it, so a
    /// driver writes the bytes after the ticket, outside any lock. The
    /// ticket must cover every record handed over before it. The default
    /// calls [`Storage::flush`] and returns `None`.
    fn start_flush(&mut self) -> Option<FlushTicket> {
        self.flush();
        None
    }
}

/// Storage in memory: survives a [`crate::Broker`] (see
/// [`crate::Broker::into_storage`]) but not the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    sessions: BTreeMap<String, StoredSession>,
    messages: BTreeMap<(String, u64), StoredDelivery>,
    retained: BTreeMap<String, StoredMessage>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored session of `client_id`.
    pub fn session(&self, client_id: &str) -> Option<&StoredSession> {
        self.sessions.get(client_id)
    }

    /// Number of stored queued and in-flight messages.
    pub fn messages_len(&self) -> usize {
        self.messages.len()
    }

    /// Number of stored retained messages.
    pub fn retained_len(&self) -> usize {
        self.retained.len()
    }
}

impl Storage for MemoryStorage {
    fn load(&mut self) -> StoredState {
        StoredState {
            sessions: self.sessions.values().cloned().collect(),
            messages: self
                .messages
                .iter()
                .map(|((c, seq), d)| (c.clone(), *seq, d.clone()))
                .collect(),
            retained: self.retained.values().cloned().collect(),
        }
    }

    fn save_session(&mut self, session: &StoredSession) {
        self.sessions
            .insert(session.client_id.clone(), session.clone());
    }

    fn remove_session(&mut self, client_id: &str) {
        self.sessions.remove(client_id);
        self.messages.retain(|(c, _), _| c != client_id);
    }

    fn save_message(&mut self, client_id: &str, seq: u64, delivery: &StoredDelivery) {
        self.messages
            .insert((client_id.to_string(), seq), delivery.clone());
    }

    fn remove_message(&mut self, client_id: &str, seq: u64) {
        self.messages.remove(&(client_id.to_string(), seq));
    }

    fn save_retained(&mut self, message: &StoredMessage) {
        self.retained
            .insert(message.topic.to_string(), message.clone());
    }

    fn remove_retained(&mut self, topic: &str) {
        self.retained.remove(topic);
    }
}
