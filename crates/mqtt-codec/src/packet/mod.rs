//! The control packets, the fixed header, and the decoder.

mod ack;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;
mod unsubscribe;

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use connack::ConnAck;
pub use connect::{peek_connect_version, Connect, LastWill};
pub use disconnect::{Auth, Disconnect};
pub use publish::Publish;
pub use subscribe::{SubAck, Subscribe, Subscription};
pub use unsubscribe::{UnsubAck, Unsubscribe};

use crate::error::{DecodeError, EncodeError};
use crate::out::{write_packet, Out};
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{
    put_variable_integer, read_variable_integer, variable_integer_len, Reader, VarInt,
    MAX_VARIABLE_INTEGER,
};
use alloc::boxed::Box;
use bytes::{Buf, Bytes, BytesMut};

/// The largest packet MQTT can frame: 1 type byte, 4 length bytes, 268,435,455 body bytes.
pub const MAX_PACKET_SIZE: u32 = 1 + 4 + MAX_VARIABLE_INTEGER;

/// Most bytes [`Decoder::decode`] reserves ahead for a packet not yet complete.
const RESERVE_AHEAD: usize = 64 * 1024;

/// What every packet type knows to encode itself.
pub(crate) trait Body {
    const TYPE: PacketType;
    fn flags(&self) -> u8 {
        0
    }
    fn body_len(&self, v: ProtocolVersion) -> usize;
    fn write_body(&self, v: ProtocolVersion, buf: &mut Out<'_>) -> Result<(), EncodeError>;
}

/// The size of a packet with a `body`-byte remaining length, checked
/// against the largest remaining length and the peer's Maximum Packet Size.
#[inline]
pub(crate) fn packet_size(body: usize, max_packet_size: Option<u32>) -> Result<usize, EncodeError> {
    if body > MAX_VARIABLE_INTEGER as usize {
        return Err(EncodeError::RemainingLengthTooLarge(body));
    }
    let total = 1 + variable_integer_len(body) + body;
    match max_packet_size {
        Some(max) if total > max as usize => Err(EncodeError::PacketTooLarge { size: total, max }),
        _ => Ok(total),
    }
}

#[inline]
fn encode_body<B: Body>(
    p: &B,
    v: ProtocolVersion,
    max_packet_size: Option<u32>,
    buf: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let body = p.body_len(v);
    let total = packet_size(body, max_packet_size)?;
    write_packet(buf, total, |out| {
        out.put_u8(((B::TYPE as u8) << 4) | p.flags());
        put_variable_integer(out, body);
        p.write_body(v, out)
    })?;
    Ok(total)
}

fn encoded_len_of<B: Body>(p: &B, v: ProtocolVersion) -> usize {
    let body = p.body_len(v);
    1 + variable_integer_len(body) + body
}

macro_rules! encode_methods {
    ($($t:ty),*) => {$(
        impl $t {
            /// Exact number of bytes [`Self::encode`] writes for version `v`.
            pub fn encoded_len(&self, v: ProtocolVersion) -> usize {
                encoded_len_of(self, v)
            }

            /// Appends the packet to `buf` (reserving its exact size once) and
            /// returns the number of bytes written. On error nothing is appended.
            pub fn encode(&self, v: ProtocolVersion, buf: &mut BytesMut) -> Result<usize, EncodeError> {
                encode_body(self, v, None, buf)
            }

            /// Like [`Self::encode`], but refuses a packet larger than the
            /// peer's Maximum Packet Size.
            pub fn encode_limited(
                &self,
                v: ProtocolVersion,
                max_packet_size: u32,
                buf: &mut BytesMut,
            ) -> Result<usize, EncodeError> {
                encode_body(self, v, Some(max_packet_size), buf)
            }
        }
    )*};
}

encode_methods!(
    Connect,
    ConnAck,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);

struct Empty<const T: u8>;

impl Body for Empty<12> {
    const TYPE: PacketType = PacketType::PingReq;
    fn body_len(&self, _: ProtocolVersion) -> usize {
        0
    }
    fn write_body(&self, _: ProtocolVersion, _: &mut Out<'_>) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl Body for Empty<13> {
    const TYPE: PacketType = PacketType::PingResp;
    fn body_len(&self, _: ProtocolVersion) -> usize {
        0
    }
    fn write_body(&self, _: ProtocolVersion, _: &mut Out<'_>) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: it is large and rare).
    Connect(Box<Connect>),
    /// CONNACK
    ConnAck(ConnAck),
    /// PUBLISH
    Publish(Publish),
    /// PUBACK
    PubAck(PubAck),
    /// PUBREC
    PubRec(PubRec),
    /// PUBREL
    PubRel(PubRel),
    /// PUBCOMP
    PubComp(PubComp),
    /// SUBSCRIBE
    Subscribe(Subscribe),
    /// SUBACK
    SubAck(SubAck),
    /// UNSUBSCRIBE
    Unsubscribe(Unsubscribe),
    /// UNSUBACK
    UnsubAck(UnsubAck),
    /// PINGREQ
    PingReq,
    /// PINGRESP
    PingResp,
    /// DISCONNECT
    Disconnect(Disconnect),
    /// AUTH (5.0)
    Auth(Auth),
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $e:expr, $ping_req:expr, $ping_resp:expr) => {
        match $self {
            Packet::Connect($p) => $e,
            Packet::ConnAck($p) => $e,
            Packet::Publish($p) => $e,
            Packet::PubAck($p) => $e,
            Packet::PubRec($p) => $e,
            Packet::PubRel($p) => $e,
            Packet::PubComp($p) => $e,
            Packet::Subscribe($p) => $e,
            Packet::SubAck($p) => $e,
            Packet::Unsubscribe($p) => $e,
            Packet::UnsubAck($p) => $e,
            Packet::Disconnect($p) => $e,
            Packet::Auth($p) => $e,
            Packet::PingReq => $ping_req,
            Packet::PingResp => $ping_resp,
        }
    };
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Exact number of bytes [`Packet::encode`] writes for version `v`.
    pub fn encoded_len(&self, v: ProtocolVersion) -> usize {
        dispatch!(self, p => p.encoded_len(v), 2, 2)
    }

    /// Appends the packet to `buf`; see [`Publish::encode`].
    #[inline]
    pub fn encode(&self, v: ProtocolVersion, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        // PUBLISH is most of what is written: one test, not the jump table.
        if let Packet::Publish(p) = self {
            return p.encode(v, buf);
        }
        self.encode_other(v, buf)
    }

    #[inline(never)]
    fn encode_other(&self, v: ProtocolVersion, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        dispatch!(
            self,
            p => p.encode(v, buf),
            encode_body(&Empty::<12>, v, None, buf),
            encode_body(&Empty::<13>, v, None, buf)
        )
    }

    /// Appends the packet to `buf` unless it exceeds `max_packet_size`.
    pub fn encode_limited(
        &self,
        v: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        dispatch!(
            self,
            p => p.encode_limited(v, max_packet_size, buf),
            encode_body(&Empty::<12>, v, Some(max_packet_size), buf),
            encode_body(&Empty::<13>, v, Some(max_packet_size), buf)
        )
    }
}

/// The fixed header of a packet (section 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type.
    pub packet_type: PacketType,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// Remaining Length: bytes after the fixed header.
    pub remaining_length: usize,
    /// Bytes the fixed header itself takes (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// Parses the fixed header at the start of `buf`. `Ok(None)` means more
    /// bytes are needed. Checks the packet type and the flags every packet
    /// but PUBLISH must carry [MQTT-2.2.2-2].
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet_type = PacketType::from_nibble(first >> 4)
            .ok_or(DecodeError::InvalidPacketType(first >> 4))?;
        let flags = first & 0x0F;
        if let Some(required) = packet_type.required_flags() {
            if flags != required {
                return Err(DecodeError::InvalidHeaderFlags {
                    packet: packet_type,
                    flags,
                });
            }
        }
        match read_variable_integer(&buf[1..]) {
            VarInt::Incomplete => Ok(None),
            VarInt::Malformed => Err(DecodeError::MalformedRemainingLength),
            VarInt::Value(len, n) => Ok(Some(Self {
                packet_type,
                flags,
                remaining_length: len as usize,
                header_len: 1 + n,
            })),
        }
    }

    /// Total size of the packet: fixed header plus remaining length.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_length
    }
}

/// Sans-IO packet decoder in the style of tokio-util's `Decoder`.
///
/// Feed it a buffer that grows as bytes arrive: [`Decoder::decode`] returns
/// `Ok(None)` until a whole packet is there, then splits it off the buffer.
/// Payloads point into that split-off chunk (no copy); topic names and 5.0
/// strings up to 32 bytes are copied inline, longer ones point into it too.
///
/// ```
/// use bytes::BytesMut;
/// use mqtt_codec::{Decoder, Packet, ProtocolVersion, Publish, TopicName};
///
/// let mut wire = BytesMut::new();
/// let publish = Publish::new(TopicName::try_from("ssltopic").unwrap(), "testing");
/// publish.encode(ProtocolVersion::V3_1_1, &mut wire).unwrap();
///
/// let mut decoder = Decoder::with_version(ProtocolVersion::V3_1_1);
/// let mut buf = BytesMut::new();
/// buf.extend_from_slice(&wire[..5]);
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None); // not all there yet
/// buf.extend_from_slice(&wire[5..]);
/// let Some(Packet::Publish(p)) = decoder.decode(&mut buf).unwrap() else { panic!() };
/// assert_eq!(p.topic.as_str(), "ssltopic");
/// assert_eq!(&p.payload[..], b"testing");
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder for the server side: the version is learned from CONNECT,
    /// and any other packet before it is an error.
    pub fn new() -> Self {
        Self {
            version: None,
            max_packet_size: MAX_PACKET_SIZE,
        }
    }

    /// A decoder for a known version (the client side).
    pub fn with_version(version: ProtocolVersion) -> Self {
        Self {
            version: Some(version),
            max_packet_size: MAX_PACKET_SIZE,
        }
    }

    /// Sets the largest packet accepted (fixed header included); larger
    /// packets fail with [`DecodeError::PacketTooLarge`] as soon as their
    /// fixed header is read, before they are buffered.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// The largest packet accepted.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// The protocol version, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Sets the protocol version.
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = Some(version);
    }

    /// Decodes one packet from the front of `buf`.
    ///
    /// `Ok(None)`: not a whole packet yet (nothing consumed). `Ok(Some(_))`:
    /// the packet's bytes were removed from `buf`. `Err(_)`: the stream is
    /// broken and the connection must be closed.
    #[inline(always)]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        // PUBLISH and the two-byte acknowledgements are most of the traffic:
        // their paths are inlined into the caller; everything else goes
        // through `decode_other`.
        if let (Some(&first), Some(v)) = (buf.first(), self.version) {
            // PUBACK, PUBREC, PUBREL, PUBCOMP with only a packet identifier
            // (in 5.0: reason Success, no properties [MQTT-3.4.2.1]). Nothing
            // of the packet is kept, so it is parsed in place and skipped:
            // no buffer reference at all.
            if matches!(first, 0x40 | 0x50 | 0x62 | 0x70)
                && buf.len() >= 4
                && buf[1] == 2
                && self.max_packet_size >= 4
            {
                let id = PacketId::new(u16::from_be_bytes([buf[2], buf[3]]))
                    .ok_or(DecodeError::ZeroPacketId)?;
                buf.advance(4);
                return Ok(Some(match first {
                    0x40 => Packet::PubAck(PubAck::new(id)),
                    0x50 => Packet::PubRec(PubRec::new(id)),
                    0x62 => Packet::PubRel(PubRel::new(id)),
                    _ => Packet::PubComp(PubComp::new(id)),
                }));
            }
            if first >> 4 == PacketType::Publish as u8 {
                if let VarInt::Value(len, n) = read_variable_integer(&buf[1..]) {
                    let total = 1 + n + len as usize;
                    if buf.len() >= total {
                        if total > self.max_packet_size as usize {
                            return Err(DecodeError::PacketTooLarge {
                                size: total,
                                max: self.max_packet_size,
                            });
                        }
                        let packet = buf.split_to(total).freeze();
                        return Publish::decode(first & 0x0F, packet, 1 + n, v)
                            .map(|p| Some(Packet::Publish(p)));
                    }
                }
            }
        }
        self.decode_other(buf)
    }

    #[inline(never)]
    fn decode_other(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let header = match FixedHeader::parse(buf) {
            Err(DecodeError::InvalidHeaderFlags { packet, flags })
                if self.version == Some(ProtocolVersion::V3_1)
                    && matches!(
                        packet,
                        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe
                    )
                    && packet.required_flags() == Some(flags & !0x08) =>
            {
                // MQTT 3.1 sets DUP on a re-sent PUBREL, SUBSCRIBE or
                // UNSUBSCRIBE (3.1 section 3.6, 3.8, 3.10); 3.1.1 fixed the flags.
                let mut head = [0u8; 5];
                let n = buf.len().min(5);
                head[..n].copy_from_slice(&buf[..n]);
                head[0] &= !0x08;
                FixedHeader::parse(&head[..n])?
            }
            other => other?,
        };
        let Some(header) = header else {
            return Ok(None);
        };
        let total = header.packet_len();
        if total > self.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: self.max_packet_size,
            });
        }
        let version = match (self.version, header.packet_type) {
            (_, PacketType::Connect) => None,
            (Some(v), _) => Some(v),
            (None, t) => return Err(DecodeError::VersionUnknown(t)),
        };
        if buf.len() < total {
            // Reserve room for the rest of the packet, but never more than
            // RESERVE_AHEAD on the word of a fixed header alone: a peer that
            // announces 256 MB and sends 5 bytes must not make us allocate
            // 256 MB. Larger packets grow the buffer as their bytes arrive.
            buf.reserve((total - buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        buf.advance(header.header_len);
        let body = buf.split_to(header.remaining_length).freeze();
        let packet = match version {
            None => {
                let c = Connect::decode(Reader::new(&body, header.packet_type))?;
                if self.version.is_none() {
                    self.version = Some(c.protocol);
                }
                Packet::Connect(Box::new(c))
            }
            Some(v) => decode_body(header, body, v)?,
        };
        Ok(Some(packet))
    }
}

#[inline]
fn decode_body(h: FixedHeader, body: Bytes, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    let r = Reader::new(&body, h.packet_type);
    Ok(match h.packet_type {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(r)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r, v)?),
        PacketType::Publish => Packet::Publish(Publish::decode(h.flags, body, 0, v)?),
        PacketType::PubAck => Packet::PubAck(PubAck::decode(r, v)?),
        PacketType::PubRec => Packet::PubRec(PubRec::decode(r, v)?),
        PacketType::PubRel => Packet::PubRel(PubRel::decode(r, v)?),
        PacketType::PubComp => Packet::PubComp(PubComp::decode(r, v)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, v)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(r, v)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, v)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, v)?),
        PacketType::PingReq => {
            r.finish()?;
            Packet::PingReq
        }
        PacketType::PingResp => {
            r.finish()?;
            Packet::PingResp
        }
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, v)?),
        PacketType::Auth => {
            if !v.is_v5() {
                return Err(DecodeError::InvalidPacketType(15));
            }
            Packet::Auth(Auth::decode(r)?)
        }
    })
}

/// Decodes one packet of a known version from the front of `buf`, with a
/// maximum packet size; see [`Decoder::decode`].
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let mut d = Decoder::with_version(version);
    d.set_max_packet_size(max_packet_size);
    d.decode(buf)
}
