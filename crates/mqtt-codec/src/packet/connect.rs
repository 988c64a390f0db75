//! CONNECT (section 3.1).

use super::Body;
use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::properties::{Properties, PropertyContext};
use crate::topic::TopicName;
use crate::types::{PacketType, ProtocolVersion, QoS};
use crate::wire::{check_field, put_binary, Reader};
use alloc::string::String;
use bytes::Bytes;

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will Topic.
    pub topic: TopicName,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// 5.0 will properties (Will Delay Interval, Message Expiry, ...).
    pub properties: Properties,
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version (name and level).
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// 5.0 CONNECT properties.
    pub properties: Properties,
    /// Client Identifier; may be empty.
    pub client_id: String,
    /// Will message.
    pub will: Option<LastWill>,
    /// User Name.
    pub username: Option<String>,
    /// Password (binary data).
    pub password: Option<Bytes>,
    /// Mosquitto's bridge bit (`try_private`): a 3.1 or 3.1.1 bridge sets
    /// the top bit of the protocol level (0x83, 0x84) to tell the broker it
    /// is a bridge. Not used with 5.0, where bridges use No Local.
    pub bridge: bool,
}

impl Connect {
    /// A CONNECT with the given version and client identifier, clean start and
    /// a 60 s keep alive.
    pub fn new(protocol: ProtocolVersion, client_id: impl Into<String>) -> Self {
        Self {
            protocol,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            bridge: false,
        }
    }

    pub(crate) fn decode(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let protocol = version_of(&name, level)?;
        let bridge = level & 0x80 != 0;
        let flags = r.u8()?;
        // [MQTT-3.1.2-3] the reserved flag must be 0.
        if flags & 0x01 != 0 {
            return Err(DecodeError::ReservedConnectFlag);
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        // [MQTT-3.1.2-11], [MQTT-3.1.2-13]: no will QoS/retain without a will;
        // [MQTT-3.1.2-12]: will QoS 3 is malformed.
        if (!will_flag && (will_qos != 0 || will_retain)) || will_qos == 3 {
            return Err(DecodeError::InvalidWillFlags);
        }
        // [MQTT-3.1.2-22] (3.1.1 only; 5.0 allows a password alone).
        if !protocol.is_v5() && password_flag && !username_flag {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            Properties::decode(&mut r, PropertyContext::Connect)?
        } else {
            Properties::default()
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                Properties::decode(&mut r, PropertyContext::Will)?
            } else {
                Properties::default()
            };
            let topic = r.topic_name()?;
            if topic.is_empty() {
                return Err(DecodeError::EmptyTopicName);
            }
            let payload = r.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillFlags)?,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if username_flag {
            Some(r.string()?)
        } else {
            None
        };
        let password = if password_flag {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            protocol,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
            bridge,
        })
    }
}

impl Body for Connect {
    const TYPE: PacketType = PacketType::Connect;

    fn body_len(&self, _: ProtocolVersion) -> usize {
        let v5 = self.protocol.is_v5();
        let mut n = 2 + self.protocol.protocol_name().len() + 1 + 1 + 2;
        if v5 {
            n += self.properties.encoded_len(PropertyContext::Connect);
        }
        n += 2 + self.client_id.len();
        if let Some(w) = &self.will {
            if v5 {
                n += w.properties.encoded_len(PropertyContext::Will);
            }
            n += 2 + w.topic.len() + 2 + w.payload.len();
        }
        n += self.username.as_ref().map_or(0, |u| 2 + u.len());
        n += self.password.as_ref().map_or(0, |p| 2 + p.len());
        n
    }

    fn write_body(&self, _: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        // CONNECT always carries its own version; the connection's is ignored.
        let v5 = self.protocol.is_v5();
        put_binary(buf, self.protocol.protocol_name().as_bytes());
        let bridge = if self.bridge && !v5 { 0x80 } else { 0 };
        buf.put_u8(self.protocol.level() | bridge);
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos.as_u8() << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        buf.put_u8(flags);
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(PropertyContext::Connect, buf)?;
        }
        check_field(self.client_id.len())?;
        put_binary(buf, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(PropertyContext::Will, buf)?;
            }
            check_field(w.topic.len())?;
            w.topic.put_binary(buf);
            check_field(w.payload.len())?;
            put_binary(buf, &w.payload);
        }
        if let Some(u) = &self.username {
            check_field(u.len())?;
            put_binary(buf, u.as_bytes());
        }
        if let Some(p) = &self.password {
            check_field(p.len())?;
            put_binary(buf, p);
        }
        Ok(())
    }
}

/// Reads the protocol version from the start of a buffer holding a CONNECT,
/// without consuming anything. `Ok(None)` means more bytes are needed.
pub fn peek_connect_version(buf: &[u8]) -> Result<Option<ProtocolVersion>, DecodeError> {
    let Some(header) = super::FixedHeader::parse(buf)? else {
        return Ok(None);
    };
    if header.packet_type != PacketType::Connect {
        return Err(DecodeError::VersionUnknown(header.packet_type));
    }
    let body = &buf[header.header_len..];
    if body.len() < 2 {
        return Ok(None);
    }
    let name_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    let Some(&level) = body.get(2 + name_len) else {
        return Ok(None);
    };
    version_of(&body[2..2 + name_len], level).map(Some)
}

/// The version a CONNECT's protocol name and level name. Mosquitto's bridge
/// bit (0x80) is allowed on 3.1 and 3.1.1 (0x83, 0x84), as Mosquitto
/// accepts it.
fn version_of(name: &[u8], level: u8) -> Result<ProtocolVersion, DecodeError> {
    match (name, level) {
        (b"MQTT", 4 | 0x84) => Ok(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQIsdp", 3 | 0x83) => Ok(ProtocolVersion::V3_1),
        (b"MQTT", l) | (b"MQIsdp", l) => Err(DecodeError::UnsupportedProtocolVersion(l)),
        _ => Err(DecodeError::InvalidProtocolName),
    }
}
