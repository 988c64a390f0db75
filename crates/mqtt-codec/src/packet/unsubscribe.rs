//! UNSUBSCRIBE and UNSUBACK (sections 3.10 and 3.11).

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::topic::TopicFilter;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{check_field, Reader};
use alloc::vec::Vec;

/// UNSUBSCRIBE: one or more topic filters to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// 5.0 properties (User Properties).
    pub properties: Properties,
    /// The filters, at least one [MQTT-3.10.3-2].
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)?;
        let properties = if v.is_v5() {
            Properties::decode(&mut r, PropertyContext::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.topic_filter()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyUnsubscribe);
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Body for Unsubscribe {
    const TYPE: PacketType = PacketType::Unsubscribe;

    fn flags(&self) -> u8 {
        0b0010
    }

    fn body_len(&self, v: ProtocolVersion) -> usize {
        let mut n = 2;
        if v.is_v5() {
            n += self.properties.encoded_len(PropertyContext::Unsubscribe);
        }
        n + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        buf.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.encode(PropertyContext::Unsubscribe, buf)?;
        }
        for f in &self.filters {
            // At most 65,535 bytes: the constructors check.
            debug_assert!(check_field(f.len()).is_ok());
            f.put_binary(buf);
        }
        Ok(())
    }
}

/// UNSUBACK. In 3.1.1 it has no reason codes (the list decodes empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// 5.0 properties.
    pub properties: Properties,
    /// 5.0: one reason code per filter.
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)?;
        let mut properties = Properties::default();
        let mut reason_codes = Vec::new();
        if v.is_v5() {
            properties = Properties::decode(&mut r, PropertyContext::UnsubAck)?;
            while !r.is_empty() {
                let code = r.u8()?;
                let rc = ReasonCode::from_u8(code).ok_or(DecodeError::UnknownReasonCode(code))?;
                if !rc.allowed_in(PacketType::UnsubAck) {
                    return Err(DecodeError::ReasonCodeNotAllowed {
                        code: rc,
                        packet: PacketType::UnsubAck,
                    });
                }
                reason_codes.push(rc);
            }
        }
        r.finish()?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }
}

impl Body for UnsubAck {
    const TYPE: PacketType = PacketType::UnsubAck;

    fn body_len(&self, v: ProtocolVersion) -> usize {
        if v.is_v5() {
            2 + self.properties.encoded_len(PropertyContext::UnsubAck) + self.reason_codes.len()
        } else {
            2
        }
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.encode(PropertyContext::UnsubAck, buf)?;
            for rc in &self.reason_codes {
                buf.put_u8(rc.as_u8());
            }
        }
        Ok(())
    }
}
