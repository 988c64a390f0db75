//! An application message as the broker keeps it: shared by every session it
//! is queued for.

use crate::memory::{MemoryAccount, MemoryCharge, MESSAGE_OVERHEAD};
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
    /// Its bytes on the broker's memory account (`memory_limit`), charged
    /// once it is held (queued, retained, a will): released when the last
    /// holder drops it. Ignored by `==`.
    pub charge: MemoryCharge,
}

impl Message {
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Bytes charged against `max_queued_bytes`.
    pub fn size(&self) -> usize {
        self.payload.len() + self.topic.len()
    }

    /// Bytes it counts against `memory_limit`: topic, payload, the
    /// variable-length properties and [`MESSAGE_OVERHEAD`].
    pub fn footprint(&self) -> usize {
        let properties = self.properties.values().map_or(0, |p| {
            let s = |s: &Option<mqtt_codec::MqttString>| s.as_ref().map_or(0, |s| s.len());
            s(&p.content_type)
                + s(&p.response_topic)
                + p.correlation_data.as_ref().map_or(0, |d| d.len())
                + p.user_properties
                    .as_slice()
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>()
                + 32
        });
        self.size() + properties + MESSAGE_OVERHEAD
    }

    /// Charges it to `account` (once: a charged message stays as it is).
    pub fn charge_to(&mut self, account: &Arc<MemoryAccount>) {
        if !self.charge.is_charged() {
            self.charge = MemoryCharge::force(account, self.footprint());
        }
    }

    /// [`Message::charge_to`], by value.
    pub fn charged(mut self, account: &Arc<MemoryAccount>) -> Self {
        self.charge_to(account);
        self
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
