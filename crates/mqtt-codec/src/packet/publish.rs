//! PUBLISH (section 3.3).

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::topic::TopicName;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{check_field, put_binary, Reader};
use bytes::{BufMut, Bytes, BytesMut};

/// PUBLISH: an application message. Topic and payload share the buffer they
/// were decoded from.
// `repr(C)` with the word-sized fields first: a decoded PUBLISH is moved
// by value through `Result<Option<Packet>>`, and word-aligned fields keep
// those moves free of partial-word loads (store-forwarding stalls).
#[derive(Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct Publish {
    /// Application payload.
    pub payload: Bytes,
    /// Topic Name; empty only in 5.0 with a Topic Alias.
    pub topic: TopicName,
    /// 5.0 PUBLISH properties.
    pub properties: Properties,
    /// Packet Identifier, present exactly for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    /// QoS level.
    pub qos: QoS,
    /// DUP flag: a re-delivery.
    pub dup: bool,
    /// RETAIN flag.
    pub retain: bool,
}

impl Publish {
    /// A QoS 0 PUBLISH of `payload` to `topic`.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: Properties::default(),
            payload: payload.into(),
        }
    }

    #[inline]
    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        v: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
        let retain = flags & 0b0001 != 0;
        // [MQTT-3.3.1-2] DUP must be 0 for QoS 0.
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQoS0);
        }
        // Validates UTF-8, U+0000 and wildcards in one pass.
        let topic = r.topic_name()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)?)
        };
        let properties = if v.is_v5() {
            Properties::decode(&mut r, PropertyContext::Publish)?
        } else {
            Properties::default()
        };
        // [MQTT-3.3.2-1] / [MQTT-4.7.3-1]: empty only with a Topic Alias (5.0).
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicName);
        }
        let payload = r.into_rest();
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    }
}

impl Body for Publish {
    const TYPE: PacketType = PacketType::Publish;

    fn flags(&self) -> u8 {
        ((self.dup as u8) << 3) | (self.qos.as_u8() << 1) | self.retain as u8
    }

    fn body_len(&self, v: ProtocolVersion) -> usize {
        let mut n = 2 + self.topic.len() + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            n += 2;
        }
        if v.is_v5() {
            n += self.properties.encoded_len();
        }
        n
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        check_field(self.topic.len())?;
        put_binary(buf, self.topic.as_bytes());
        if self.qos != QoS::AtMostOnce {
            let id = self.packet_id.ok_or(EncodeError::MissingPacketId)?;
            buf.put_u16(id.get());
        }
        if v.is_v5() {
            self.properties.encode(buf)?;
        }
        buf.put_slice(&self.payload);
        Ok(())
    }
}
