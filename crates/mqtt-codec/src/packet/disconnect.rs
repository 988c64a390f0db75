//! DISCONNECT and AUTH (sections 3.14 and 3.15): a reason code and properties,
//! both of which may be omitted.

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::Reader;

fn decode_parts(
    packet: PacketType,
    ctx: PropertyContext,
    mut r: Reader<'_>,
) -> Result<(ReasonCode, Properties), DecodeError> {
    let mut reason = ReasonCode::Success;
    let mut properties = Properties::default();
    if !r.is_empty() {
        let code = r.u8()?;
        reason = ReasonCode::from_u8(code).ok_or(DecodeError::UnknownReasonCode(code))?;
        if !reason.allowed_in(packet) {
            return Err(DecodeError::ReasonCodeNotAllowed {
                code: reason,
                packet,
            });
        }
        if !r.is_empty() {
            properties = Properties::decode(&mut r, ctx)?;
        }
    }
    r.finish()?;
    Ok((reason, properties))
}

fn parts_len(reason: ReasonCode, properties: &Properties, ctx: PropertyContext) -> usize {
    if properties.is_empty() {
        usize::from(reason != ReasonCode::Success)
    } else {
        1 + properties.encoded_len(ctx)
    }
}

fn write_parts(
    reason: ReasonCode,
    properties: &Properties,
    ctx: PropertyContext,
    buf: &mut Out<'_>,
) -> Result<(), EncodeError> {
    let n = parts_len(reason, properties, ctx);
    if n >= 1 {
        buf.put_u8(reason.as_u8());
    }
    if n > 1 {
        properties.encode(ctx, buf)?;
    }
    Ok(())
}

/// DISCONNECT. In 3.1.1 it has no body; in 5.0 it carries a reason code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// 5.0 Disconnect Reason Code (0x00 normal disconnection).
    pub reason_code: ReasonCode,
    /// 5.0 properties (Session Expiry Interval, Reason String, Server Reference, ...).
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with a reason code.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(r: Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        if !v.is_v5() {
            r.finish()?;
            return Ok(Self::default());
        }
        let (reason_code, properties) =
            decode_parts(PacketType::Disconnect, PropertyContext::Disconnect, r)?;
        Ok(Self {
            reason_code,
            properties,
        })
    }
}

impl Body for Disconnect {
    const TYPE: PacketType = PacketType::Disconnect;

    fn body_len(&self, v: ProtocolVersion) -> usize {
        if v.is_v5() {
            parts_len(
                self.reason_code,
                &self.properties,
                PropertyContext::Disconnect,
            )
        } else {
            0
        }
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        if v.is_v5() {
            write_parts(
                self.reason_code,
                &self.properties,
                PropertyContext::Disconnect,
                buf,
            )?;
        }
        Ok(())
    }
}

/// AUTH (5.0 only): enhanced authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Authenticate Reason Code.
    pub reason_code: ReasonCode,
    /// Properties (Authentication Method and Data, Reason String, User Properties).
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(r: Reader<'_>) -> Result<Self, DecodeError> {
        let (reason_code, properties) = decode_parts(PacketType::Auth, PropertyContext::Auth, r)?;
        Ok(Self {
            reason_code,
            properties,
        })
    }
}

impl Body for Auth {
    const TYPE: PacketType = PacketType::Auth;

    fn body_len(&self, _: ProtocolVersion) -> usize {
        parts_len(self.reason_code, &self.properties, PropertyContext::Auth)
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        if !v.is_v5() {
            return Err(EncodeError::NotInVersion(PacketType::Auth));
        }
        write_parts(
            self.reason_code,
            &self.properties,
            PropertyContext::Auth,
            buf,
        )
    }
}
