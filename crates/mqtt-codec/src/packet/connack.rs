//! CONNACK (section 3.2).

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

/// CONNACK: the server's answer to CONNECT.
///
/// The result is a 5.0 [`ReasonCode`]; for 3.1.1 it is written as the closest
/// return code ([`ReasonCode::to_v3_connack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// Connect Reason Code (or 3.1.1 return code).
    pub reason_code: ReasonCode,
    /// 5.0 CONNACK properties.
    pub properties: Properties,
}

impl ConnAck {
    /// A CONNACK with the given result and no properties.
    pub fn new(session_present: bool, reason_code: ReasonCode) -> Self {
        Self {
            session_present,
            reason_code,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::ReservedConnAckFlags);
        }
        let code = r.u8()?;
        let (reason_code, properties) = if v.is_v5() {
            let rc = ReasonCode::from_u8(code).ok_or(DecodeError::UnknownReasonCode(code))?;
            if !rc.allowed_in(PacketType::ConnAck) {
                return Err(DecodeError::ReasonCodeNotAllowed {
                    code: rc,
                    packet: PacketType::ConnAck,
                });
            }
            (rc, Properties::decode(&mut r, PropertyContext::ConnAck)?)
        } else {
            let rc =
                ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidConnAckCode(code))?;
            (rc, Properties::default())
        };
        r.finish()?;
        Ok(Self {
            session_present: flags & 1 != 0,
            reason_code,
            properties,
        })
    }
}

impl Body for ConnAck {
    const TYPE: PacketType = PacketType::ConnAck;

    fn body_len(&self, v: ProtocolVersion) -> usize {
        2 + if v.is_v5() {
            self.properties.encoded_len(PropertyContext::ConnAck)
        } else {
            0
        }
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        buf.put_u8(self.session_present as u8);
        if v.is_v5() {
            buf.put_u8(self.reason_code.as_u8());
            self.properties.encode(PropertyContext::ConnAck, buf)?;
        } else {
            buf.put_u8(self.reason_code.to_v3_connack());
        }
        Ok(())
    }
}
