//! An application message as the broker keeps it: shared by every session it
//! is queued for.

use bytes::Bytes;
use mqtt_codec::{PublishProperties, QoS, TopicName};
use std::sync::Arc;
use std::time::Instant;

/// A message accepted from a publisher (or a will, or `$SYS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 properties forwarded unchanged [MQTT-3.3.2-17..20]: no Topic
    /// Alias, no Subscription Identifiers, no Message Expiry Interval (that
    /// is recomputed from `expires_at` on every send [MQTT-3.3.2-6]).
    pub properties: PublishProperties,
    pub expires_at: Option<Instant>,
}

impl Message {
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Bytes charged against `max_queued_bytes`.
    pub fn size(&self) -> usize {
        self.payload.len() + self.topic.len()
    }
}

/// One message on its way to one session, with what the subscription decided.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub msg: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// Order of the delivery within its session (the storage key).
    pub seq: u64,
}
