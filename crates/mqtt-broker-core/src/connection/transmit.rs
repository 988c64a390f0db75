//! Writing packets into a connection's outgoing buffer, which the driver
//! takes in one piece ([`crate::Broker::take_transmit`]); for an in-process
//! connection, queuing them unencoded ([`crate::Broker::take_packets`]).

use super::{Conn, LocalOut};
use crate::event::DropReason;
use crate::log_line::PublishSummary;
use crate::message::{Delivery, Message};
use crate::outbox::Outbox;
use mqtt_codec::{
    AliasChoice, EncodeError, Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS,
};
use std::time::Instant;

/// A message on its way to one client, with what its subscription decided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutgoingPublish<'a> {
    pub msg: &'a Message,
    pub qos: QoS,
    pub retain: bool,
    /// Subscription Identifiers of the matching subscriptions [MQTT-3.3.4-3].
    pub sub_ids: &'a [u32],
}

impl<'a> OutgoingPublish<'a> {
    /// A queued or in-flight delivery.
    pub fn of(d: &'a Delivery) -> Self {
        Self {
            msg: &d.msg,
            qos: d.qos,
            retain: d.retain,
            sub_ids: &d.sub_ids,
        }
    }
}

impl Conn {
    /// Encodes a control packet (queues it, on an in-process connection);
    /// packets larger than the client's Maximum Packet Size are not sent
    /// [MQTT-3.1.2-24].
    pub fn send(&mut self, out: &mut Outbox, packet: &Packet) -> bool {
        let sent = match &mut self.local {
            Some(local) => queue(local, self.version, self.max_packet_size, packet.clone()),
            None => packet.encode_limited(self.version, self.max_packet_size, &mut self.out),
        };
        match sent {
            Ok(_) => {
                out.stats.messages_sent += 1;
                out.mark_transmit(self);
                true
            }
            Err(e) => {
                tracing::debug!(target: "mqtt_broker", "Not sending {} to {}: {}.", packet.packet_type(), self.name(), e);
                false
            }
        }
    }

    /// Encodes a PUBLISH (queues it, sharing the message's payload, on an
    /// in-process connection). Returns false when it was not sent (expired, or
    /// larger than the client accepts) and counts it dropped.
    pub fn send_publish(
        &mut self,
        out: &mut Outbox,
        now: Instant,
        p: &OutgoingPublish<'_>,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> bool {
        let (msg, qos, retain) = (p.msg, p.qos, p.retain);
        let expiry = match msg.expires_at {
            // [MQTT-3.3.2-5] an expired message is not sent.
            Some(t) if t <= now => {
                out.dropped(self.name(), msg.topic.as_str(), DropReason::Expired);
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
        let v5 = self.version.is_v5();
        // The listener's mount_point comes off the topic (the client's
        // subscriptions were mounted, so every message it gets is under it).
        let topic = match &self.info.listener.mount_point {
            None => msg.topic.clone(),
            Some(m) => match crate::router::unmounted_topic(m, &msg.topic) {
                Some(t) => t,
                None => {
                    out.stats.publish_messages_dropped += 1;
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
        let mut alias = AliasChoice::None;
        if v5 {
            // The properties are changed only where they must be: writing
            // through them allocates a set for a message without one, and
            // makes the encoder measure them again.
            if expiry.is_some() {
                publish.properties.message_expiry_interval = expiry;
            }
            // [MQTT-3.3.4-3] every matching Subscription Identifier.
            if !p.sub_ids.is_empty() {
                publish
                    .properties
                    .subscription_identifiers
                    .extend_from_slice(p.sub_ids);
            }
            // Topic aliases towards the client, up to its Topic Alias
            // Maximum [MQTT-3.3.2-11]; a new one counts once it is encoded.
            // (None in process: no bytes to save.)
            if self.topic_alias_max > 0 && self.local.is_none() {
                alias = self
                    .aliases
                    .get_or_insert_with(Default::default)
                    .outgoing
                    .lookup_or_propose(&msg.topic, self.topic_alias_max);
                alias.apply_to(&mut publish);
            }
        }
        let sent = match &mut self.local {
            Some(local) => queue(
                local,
                self.version,
                self.max_packet_size,
                Packet::Publish(publish),
            ),
            None => publish.encode_limited(self.version, self.max_packet_size, &mut self.out),
        };
        match sent {
            Ok(_) => {
                if let (AliasChoice::New(a), Some(aliases)) = (alias, &mut self.aliases) {
                    aliases.outgoing.commit(msg.topic.clone(), a);
                }
                tracing::debug!(
                    target: "mqtt_broker",
                    "Sending PUBLISH to {} {}",
                    self.name(),
                    PublishSummary {
                        dup,
                        qos,
                        retain,
                        mid: packet_id.map_or(0, |p| p.get()),
                        topic: msg.topic.as_str(),
                        len: msg.payload.len(),
                    }
                );
                out.stats.messages_sent += 1;
                out.stats.publish_messages_sent += 1;
                out.stats.publish_bytes_sent += msg.payload.len() as u64;
                out.mark_transmit(self);
                true
            }
            Err(e) => {
                // [MQTT-3.1.2-25] too large for the client: discarded.
                tracing::debug!(target: "mqtt_broker", "Dropped PUBLISH to {} ('{}'): {}.", self.name(), msg.topic, e);
                out.dropped(self.name(), msg.topic.as_str(), DropReason::TooLarge);
                false
            }
        }
    }
}

/// Queues `packet` for an in-process connection, within the client's
/// Maximum Packet Size as if it were encoded; returns its encoded size.
fn queue(
    local: &mut LocalOut,
    version: ProtocolVersion,
    max_packet_size: u32,
    packet: Packet,
) -> Result<usize, EncodeError> {
    let len = packet.encoded_len(version);
    if len > max_packet_size as usize {
        return Err(EncodeError::PacketTooLarge {
            size: len,
            max: max_packet_size,
        });
    }
    local.bytes += len;
    local.packets.push(packet);
    Ok(len)
}
