//! PUBLISH (section 3.3).

use crate::error::{DecodeError, EncodeError};
use crate::out::write_packet;
use crate::publish_properties::PublishProperties;
use crate::topic::TopicName;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{check_field, put_variable_integer, variable_integer_len, Reader};
use bytes::{Buf, Bytes, BytesMut};

/// PUBLISH: an application message. Topic and payload share the buffer they
/// were decoded from.
// `repr(C)`, laid out for the moves of a decoded PUBLISH through
// `Result<Option<Packet>>`: those are copied 16 bytes at a time, and a
// 16-byte load of bytes that were written by more than one store cannot be
// served from the store buffer (a store-forwarding stall, ~15 cycles on the
// AMD machine the benchmarks run on). So the payload `Bytes` comes first
// and the topic on a 16-byte boundary (their words are stored in pairs),
// and the byte-sized fields come last, where the enum tags of `Packet`,
// `Option` and `Result` take a flag's niche: the compiler copies the
// bytes before the tag in aligned 16-byte pieces. A small PUBLISH decode
// in a scratch read loop: 41 ns with the payload at offset 8 (session 7),
// 36 ns with the flags in the first 16 bytes, 33 ns so (3.1.1; 5.0: 85 ->
// 73 ns). `tests::layout_keeps_moves_aligned` pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[repr(C)]
pub struct Publish {
    /// Application payload.
    pub payload: Bytes,
    /// Topic Name; empty only in 5.0 with a Topic Alias.
    pub topic: TopicName,
    /// 5.0 PUBLISH properties.
    pub properties: PublishProperties,
    /// Packet Identifier, present exactly for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    /// DUP flag: a re-delivery.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
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
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    /// Decodes a PUBLISH whose variable header starts at `start` in
    /// `packet`; the payload is the rest of `packet` (the same buffer, no
    /// new reference).
    #[inline(always)]
    pub(crate) fn decode(
        flags: u8,
        packet: Bytes,
        start: usize,
        v: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::starting_at(&packet, start, PacketType::Publish);
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
            PublishProperties::decode(&mut r)?
        } else {
            PublishProperties::default()
        };
        // [MQTT-3.3.2-1] / [MQTT-4.7.3-1]: empty only with a Topic Alias (5.0).
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicName);
        }
        let payload_start = r.position();
        let mut payload = packet;
        payload.advance(payload_start);
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

impl Publish {
    /// Exact number of bytes [`Self::encode`] writes for version `v`.
    pub fn encoded_len(&self, v: ProtocolVersion) -> usize {
        let properties = if v.is_v5() {
            self.properties.body_len()
        } else {
            0
        };
        let body = self.body_len(v, properties);
        1 + variable_integer_len(body) + body
    }

    /// Appends the packet to `buf` (reserving its exact size once) and
    /// returns the number of bytes written. On error nothing is appended.
    #[inline]
    pub fn encode(&self, v: ProtocolVersion, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        self.encode_inner(v, None, buf)
    }

    /// Like [`Self::encode`], but refuses a packet larger than the peer's
    /// Maximum Packet Size.
    pub fn encode_limited(
        &self,
        v: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        self.encode_inner(v, Some(max_packet_size), buf)
    }

    #[inline]
    fn body_len(&self, v: ProtocolVersion, properties: usize) -> usize {
        let mut n = 2 + self.topic.len() + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            n += 2;
        }
        if v.is_v5() {
            n += variable_integer_len(properties) + properties;
        }
        n
    }

    /// PUBLISH is most of what a broker writes. Each version gets a path
    /// of its own, compiled where it is called: the 3.1 / 3.1.1 one is
    /// ~15 instructions shorter without the 5.0 branches and a run-time
    /// version (`cargo bench --bench codec_loop`: 7.7 -> 7.0 ns against
    /// rumqttc's 13.6, from one shared path).
    #[inline]
    fn encode_inner(
        &self,
        v: ProtocolVersion,
        max_packet_size: Option<u32>,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        if v.is_v5() {
            self.encode_as::<true>(max_packet_size, buf)
        } else {
            self.encode_as::<false>(max_packet_size, buf)
        }
    }

    /// Writes the packet with (`V5`) or without properties; the 5.0
    /// properties are measured once. An inline topic is written with one
    /// fixed-size copy.
    #[inline]
    fn encode_as<const V5: bool>(
        &self,
        max_packet_size: Option<u32>,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let packet_id = match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, _) => None,
            (_, Some(id)) => Some(id.get()),
            (_, None) => return Err(EncodeError::MissingPacketId),
        };
        let (v, properties) = if V5 {
            let (len, valid) = self.properties.measure();
            if !valid {
                return Err(self.properties.invalid());
            }
            (ProtocolVersion::V5, len)
        } else {
            (ProtocolVersion::V3_1_1, 0)
        };
        let body = self.body_len(v, properties);
        let total = super::packet_size(body, max_packet_size)?;
        // A TopicName is at most 65,535 bytes (its constructors check).
        debug_assert!(check_field(self.topic.len()).is_ok());
        write_packet(buf, total, |out| {
            out.put_u8(((PacketType::Publish as u8) << 4) | self.flags());
            put_variable_integer(out, body);
            self.topic.put_binary(out);
            if let Some(id) = packet_id {
                out.put_u16(id);
            }
            if V5 {
                self.properties.encode(properties, out);
            }
            out.put_slice(&self.payload);
            Ok(())
        })?;
        Ok(total)
    }

    fn flags(&self) -> u8 {
        ((self.dup as u8) << 3) | (self.qos.as_u8() << 1) | self.retain as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_keeps_moves_aligned() {
        // The buffer-backed fields first, on 16-byte boundaries...
        assert_eq!(offset_of!(Publish, payload), 0);
        assert_eq!(offset_of!(Publish, topic) % 16, 0);
        assert!(offset_of!(Publish, properties) > offset_of!(Publish, topic));
        // ...and the byte-sized fields in the last word, after them.
        let last_word = size_of::<Publish>() - 8;
        for offset in [
            offset_of!(Publish, dup),
            offset_of!(Publish, qos),
            offset_of!(Publish, retain),
            offset_of!(Publish, packet_id),
        ] {
            assert!(offset >= last_word, "a flag at offset {offset}");
        }
        // The enum tags fit in the flags' niche: no word added.
        assert_eq!(size_of::<Packet>(), size_of::<Publish>());
        assert_eq!(
            size_of::<Result<Option<Packet>, DecodeError>>(),
            size_of::<Publish>()
        );
    }
}
