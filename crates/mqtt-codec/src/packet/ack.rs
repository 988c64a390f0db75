//! PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7): a packet
//! identifier, and in 5.0 a reason code and properties.

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::Reader;

fn decode_parts(
    packet: PacketType,
    mut r: Reader<'_>,
    v: ProtocolVersion,
) -> Result<(PacketId, ReasonCode, Properties), DecodeError> {
    let id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)?;
    let mut reason = ReasonCode::Success;
    let mut properties = Properties::default();
    // 5.0: the reason code and properties may be omitted [3.4.2.1].
    if v.is_v5() && !r.is_empty() {
        let code = r.u8()?;
        reason = ReasonCode::from_u8(code).ok_or(DecodeError::UnknownReasonCode(code))?;
        if !reason.allowed_in(packet) {
            return Err(DecodeError::ReasonCodeNotAllowed {
                code: reason,
                packet,
            });
        }
        if !r.is_empty() {
            properties = Properties::decode(&mut r, PropertyContext::PubResponse)?;
        }
    }
    r.finish()?;
    Ok((id, reason, properties))
}

fn parts_len(reason: ReasonCode, properties: &Properties, v: ProtocolVersion) -> usize {
    if !v.is_v5() || (reason == ReasonCode::Success && properties.is_empty()) {
        2
    } else if properties.is_empty() {
        3
    } else {
        3 + properties.encoded_len(PropertyContext::PubResponse)
    }
}

fn write_parts(
    id: PacketId,
    reason: ReasonCode,
    properties: &Properties,
    v: ProtocolVersion,
    buf: &mut Out<'_>,
) -> Result<(), EncodeError> {
    buf.put_u16(id.get());
    let n = parts_len(reason, properties, v);
    if n >= 3 {
        buf.put_u8(reason.as_u8());
    }
    if n > 3 {
        properties.encode(PropertyContext::PubResponse, buf)?;
    }
    Ok(())
}

macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident, $ty:expr, $flags:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// Packet Identifier of the PUBLISH this answers.
            pub packet_id: PacketId,
            /// 5.0 reason code (always success in 3.1.1).
            pub reason_code: ReasonCode,
            /// 5.0 properties (Reason String, User Properties).
            pub properties: Properties,
        }

        impl $name {
            /// A successful response for `packet_id`.
            pub fn new(packet_id: PacketId) -> Self {
                Self {
                    packet_id,
                    reason_code: ReasonCode::Success,
                    properties: Properties::default(),
                }
            }

            /// A response for `packet_id` with a reason code.
            pub fn with_reason(packet_id: PacketId, reason_code: ReasonCode) -> Self {
                Self {
                    packet_id,
                    reason_code,
                    properties: Properties::default(),
                }
            }

            pub(crate) fn decode(r: Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
                let (packet_id, reason_code, properties) = decode_parts($ty, r, v)?;
                Ok(Self {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
        }

        impl Body for $name {
            const TYPE: PacketType = $ty;

            fn flags(&self) -> u8 {
                $flags
            }

            fn body_len(&self, v: ProtocolVersion) -> usize {
                parts_len(self.reason_code, &self.properties, v)
            }

            fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
                write_parts(self.packet_id, self.reason_code, &self.properties, v, buf)
            }
        }
    };
}

ack_packet!(
    /// PUBACK: acknowledges a QoS 1 PUBLISH.
    PubAck,
    PacketType::PubAck,
    0
);
ack_packet!(
    /// PUBREC: first answer to a QoS 2 PUBLISH.
    PubRec,
    PacketType::PubRec,
    0
);
ack_packet!(
    /// PUBREL: releases a QoS 2 PUBLISH after PUBREC.
    PubRel,
    PacketType::PubRel,
    0b0010
);
ack_packet!(
    /// PUBCOMP: completes a QoS 2 exchange.
    PubComp,
    PacketType::PubComp,
    0
);
