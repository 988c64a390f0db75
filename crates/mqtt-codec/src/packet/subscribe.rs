//! SUBSCRIBE and SUBACK (sections 3.8 and 3.9).

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::topic::TopicFilter;
use crate::types::{
    PacketId, PacketType, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions,
};
use crate::wire::{check_field, Reader};
use alloc::vec::Vec;

/// One entry of a SUBSCRIBE: a filter and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topic Filter (possibly `$share/...`).
    pub filter: TopicFilter,
    /// Subscription options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE: one or more topic filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// 5.0 properties (Subscription Identifier, User Properties).
    pub properties: Properties,
    /// The filters, at least one [MQTT-3.8.3-3].
    pub subscriptions: Vec<Subscription>,
}

fn decode_options(b: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if v.is_v5() { 0b1100_0000 } else { 0b1111_1100 };
    // [MQTT-3.8.3-5] (5.0) / [MQTT-3-8.3-4] (3.1.1): reserved bits must be 0.
    if b & reserved != 0 {
        return Err(DecodeError::InvalidSubscriptionOptions(b));
    }
    let qos = QoS::from_u8(b & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let retain_handling = match (b >> 4) & 0b11 {
        0 => RetainHandling::SendOnSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: b & 0b0100 != 0,
        retain_as_published: b & 0b1000 != 0,
        retain_handling,
    })
}

impl Subscribe {
    /// A SUBSCRIBE to one filter.
    pub fn new(packet_id: PacketId, filter: TopicFilter, options: SubscriptionOptions) -> Self {
        Self {
            packet_id,
            properties: Properties::default(),
            subscriptions: alloc::vec![Subscription { filter, options }],
        }
    }

    pub(crate) fn decode(mut r: Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)?;
        let properties = if v.is_v5() {
            Properties::decode(&mut r, PropertyContext::Subscribe)?
        } else {
            Properties::default()
        };
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = r.topic_filter()?;
            let options = decode_options(r.u8()?, v)?;
            // [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error.
            if options.no_local && filter.is_shared() {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::EmptySubscribe);
        }
        Ok(Self {
            packet_id,
            properties,
            subscriptions,
        })
    }
}

impl Body for Subscribe {
    const TYPE: PacketType = PacketType::Subscribe;

    fn flags(&self) -> u8 {
        0b0010
    }

    fn body_len(&self, v: ProtocolVersion) -> usize {
        let mut n = 2;
        if v.is_v5() {
            n += self.properties.encoded_len(PropertyContext::Subscribe);
        }
        n + self
            .subscriptions
            .iter()
            .map(|s| 3 + s.filter.len())
            .sum::<usize>()
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        if self.subscriptions.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        buf.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.encode(PropertyContext::Subscribe, buf)?;
        }
        for s in &self.subscriptions {
            // At most 65,535 bytes: the constructors check.
            debug_assert!(check_field(s.filter.len()).is_ok());
            s.filter.put_binary(buf);
            buf.put_u8(s.options.to_byte(v));
        }
        Ok(())
    }
}

/// SUBACK: one reason code per filter of the SUBSCRIBE, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// 5.0 properties (Reason String, User Properties).
    pub properties: Properties,
    /// Granted QoS or failure for each filter. In 3.1.1 any failure is 0x80.
    pub reason_codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)?;
        let properties = if v.is_v5() {
            Properties::decode(&mut r, PropertyContext::SubAck)?
        } else {
            Properties::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            let rc = ReasonCode::from_u8(code).ok_or(DecodeError::UnknownReasonCode(code))?;
            let allowed = if v.is_v5() {
                rc.allowed_in(PacketType::SubAck)
            } else {
                matches!(code, 0 | 1 | 2 | 0x80)
            };
            if !allowed {
                return Err(DecodeError::ReasonCodeNotAllowed {
                    code: rc,
                    packet: PacketType::SubAck,
                });
            }
            reason_codes.push(rc);
        }
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }
}

impl Body for SubAck {
    const TYPE: PacketType = PacketType::SubAck;

    fn body_len(&self, v: ProtocolVersion) -> usize {
        let mut n = 2 + self.reason_codes.len();
        if v.is_v5() {
            n += self.properties.encoded_len(PropertyContext::SubAck);
        }
        n
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        buf.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.encode(PropertyContext::SubAck, buf)?;
            for rc in &self.reason_codes {
                buf.put_u8(rc.as_u8());
            }
        } else {
            for rc in &self.reason_codes {
                // 3.1.1 knows only granted QoS 0/1/2 and 0x80 Failure.
                buf.put_u8(if rc.is_error() { 0x80 } else { rc.as_u8() });
            }
        }
        Ok(())
    }
}
