//! Session state (section 4.1): what outlives a connection. Its QoS 1 and 2
//! flows towards the client and its queue are in [`flows`] and [`queue`].

mod flows;
mod queue;

pub(crate) use flows::FlowCtx;

use crate::connection::ConnectionId;
use crate::message::{Delivery, Message};
use crate::slab::Key;
use mqtt_codec::{PacketId, PacketIdPool, ProtocolVersion, SubscriptionOptions, TopicFilter};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Names one session in the broker for as long as it lives: a slot and a
/// generation, so a timer or subscription left from an ended session never
/// reaches the session that reuses its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SessionKey(u64);

impl Key for SessionKey {
    fn from_parts(slot: u32, generation: u32) -> Self {
        Self((u64::from(generation) << 32) | u64::from(slot))
    }

    fn slot(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A QoS 1 or 2 message sent to the client and not yet fully acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub packet_id: PacketId,
    pub delivery: Delivery,
    /// QoS 2: PUBREC received and PUBREL sent; waiting for PUBCOMP.
    pub released: bool,
}

/// A subscription as the session remembers it.
#[derive(Debug, Clone)]
pub(crate) struct StoredSubscription {
    pub filter: TopicFilter,
    pub options: SubscriptionOptions,
    pub id: u32,
}

/// The will of the session's current (or last) connection.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub message: Message,
    /// 5.0 Will Delay Interval in seconds.
    pub delay: u32,
}

#[derive(Debug)]
pub(crate) struct Session {
    /// Its key in the broker's slab (timers and subscriptions name it by this).
    pub key: SessionKey,
    pub client_id: String,
    pub username: Option<String>,
    pub protocol: ProtocolVersion,
    pub conn: Option<ConnectionId>,
    /// Subscriptions by full filter text (with any `$share/` prefix).
    pub subscriptions: HashMap<String, StoredSubscription>,
    pub inflight: VecDeque<Outgoing>,
    pub queue: VecDeque<Delivery>,
    pub queued_bytes: usize,
    /// Packet identifiers of messages to the client [MQTT-2.2.1-3].
    pub packet_ids: PacketIdPool,
    /// QoS 2 packet identifiers received and answered with PUBREC but not yet
    /// released by PUBREL; kept across reconnects (section 4.1).
    pub incoming_qos2: BTreeSet<u16>,
    /// Boxed: most sessions have none, and a `Will` is 120 bytes.
    pub will: Option<Box<Will>>,
    /// When a delayed will is due.
    pub will_at: Option<Instant>,
    /// How long the session outlives its connection; `None` is forever.
    pub expiry: Option<Duration>,
    /// When an offline session is removed.
    pub expires_at: Option<Instant>,
    /// Whether "Outgoing messages are being dropped" was logged for the current overflow.
    pub dropping: bool,
    /// Next [`Delivery::seq`].
    pub next_seq: u64,
}

impl Session {
    pub fn new(key: SessionKey, client_id: String, protocol: ProtocolVersion) -> Self {
        Self {
            key,
            client_id,
            username: None,
            protocol,
            conn: None,
            subscriptions: HashMap::new(),
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            packet_ids: PacketIdPool::new(),
            incoming_qos2: BTreeSet::new(),
            will: None,
            will_at: None,
            expiry: Some(Duration::ZERO),
            expires_at: None,
            dropping: false,
            next_seq: 0,
        }
    }

    /// Whether the session outlives its connection.
    pub fn is_persistent(&self) -> bool {
        self.expiry != Some(Duration::ZERO)
    }

    /// A packet identifier not used by any message in flight [MQTT-2.2.1-3].
    pub fn allocate_packet_id(&mut self) -> Option<PacketId> {
        let inflight = &self.inflight;
        self.packet_ids
            .allocate(|id| inflight.iter().any(|o| o.packet_id == id))
    }

    /// The next delivery sequence number.
    pub fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}
