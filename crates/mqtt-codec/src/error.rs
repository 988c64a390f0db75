//! Decoding and encoding errors, each mapped to the reason code a peer must send.

use crate::properties::PropertyId;
use crate::reason::ReasonCode;
use crate::types::PacketType;

/// Why a packet could not be decoded. Every variant is fatal for the
/// connection: the byte stream cannot be resynchronised after it.
///
/// [`DecodeError::reason_code`] gives the 5.0 reason code to put in the
/// DISCONNECT (or CONNACK) that closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The remaining length used more than four bytes [MQTT-1.5.5].
    #[error("malformed remaining length: more than four bytes")]
    MalformedRemainingLength,
    /// A variable byte integer inside a packet used more than four bytes,
    /// or more bytes than its value needs [MQTT-1.5.5-1].
    #[error("malformed variable byte integer: more than four bytes, or more than its value needs")]
    MalformedVariableInteger,
    /// The packet is larger than the configured maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Total size of the packet (fixed header included).
        size: usize,
        /// The configured maximum.
        max: u32,
    },
    /// Packet type 0, or AUTH (15) in a 3.x connection.
    #[error("reserved or unsupported packet type {0}")]
    InvalidPacketType(u8),
    /// The fixed header flags are not those the packet type requires [MQTT-2.2.2-2].
    #[error("invalid fixed header flags 0x{flags:X} for {packet}")]
    InvalidHeaderFlags {
        /// The packet type.
        packet: PacketType,
        /// The flags found.
        flags: u8,
    },
    /// A QoS of 3 [MQTT-3.3.1-4].
    #[error("invalid QoS 3")]
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// The packet ended before a field it must contain.
    #[error("{0} ended before all its fields")]
    UnexpectedEnd(PacketType),
    /// The packet had bytes left after its last field.
    #[error("{0} has bytes after its last field")]
    TrailingBytes(PacketType),
    /// The protocol name of CONNECT is neither `MQTT` nor `MQIsdp` [MQTT-3.1.2-1].
    #[error("unknown protocol name in CONNECT")]
    InvalidProtocolName,
    /// The protocol level of CONNECT is not 3, 4 or 5 [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// The reserved bit of the CONNECT flags is set [MQTT-3.1.2-3].
    #[error("reserved CONNECT flag set")]
    ReservedConnectFlag,
    /// Will QoS or Will Retain set without the Will flag, or Will QoS 3 [MQTT-3.1.2-11..14].
    #[error("invalid will flags in CONNECT")]
    InvalidWillFlags,
    /// Password flag without user name flag in 3.1.1 [MQTT-3.1.2-22].
    #[error("password flag set without user name flag")]
    PasswordWithoutUsername,
    /// Reserved bits of the CONNACK acknowledge flags are set [MQTT-3.2.2-1].
    #[error("reserved CONNACK flags set")]
    ReservedConnAckFlags,
    /// A 3.1.1 CONNACK return code above 5.
    #[error("invalid CONNACK return code {0}")]
    InvalidConnAckCode(u8),
    /// A string is not valid UTF-8 [MQTT-1.5.4-1].
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string contains U+0000 [MQTT-1.5.4-2].
    #[error("string contains the null character U+0000")]
    NullCharacter,
    /// A PUBLISH topic name contains `+` or `#` [MQTT-3.3.2-2].
    #[error("topic name contains a wildcard")]
    WildcardInTopicName,
    /// A PUBLISH topic name is empty without a topic alias [MQTT-4.7.3-1].
    #[error("empty topic name")]
    EmptyTopicName,
    /// A topic filter breaks the wildcard rules [MQTT-4.7.1].
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(crate::topic::TopicError),
    /// A packet identifier of 0 where one is required [MQTT-2.2.1-3].
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// SUBSCRIBE without any topic filter [MQTT-3.8.3-3].
    #[error("SUBSCRIBE without topic filters")]
    EmptySubscribe,
    /// UNSUBSCRIBE without any topic filter [MQTT-3.10.3-2].
    #[error("UNSUBSCRIBE without topic filters")]
    EmptyUnsubscribe,
    /// Reserved bits of subscription options set [MQTT-3.8.3-5].
    #[error("reserved subscription option bits set: 0x{0:02X}")]
    InvalidSubscriptionOptions(u8),
    /// Retain Handling 3.
    #[error("retain handling 3 is not defined")]
    InvalidRetainHandling,
    /// No Local on a shared subscription [MQTT-3.8.3-4].
    #[error("No Local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// A property identifier the specification does not define.
    #[error("unknown property identifier 0x{0:02X}")]
    UnknownProperty(u8),
    /// A property not allowed in this packet [MQTT-2.2.2-2].
    #[error("property {property:?} is not allowed in {context}")]
    PropertyNotAllowed {
        /// The property.
        property: PropertyId,
        /// Where it appeared (e.g. `PUBLISH`, `will`).
        context: &'static str,
    },
    /// A property that may appear once appeared twice.
    #[error("property {0:?} appears more than once")]
    DuplicateProperty(PropertyId),
    /// A property has a value the specification forbids (e.g. Receive Maximum 0).
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// Topic Alias 0 [MQTT-3.3.2-8].
    #[error("topic alias 0")]
    TopicAliasZero,
    /// A reason code the specification does not define.
    #[error("unknown reason code 0x{0:02X}")]
    UnknownReasonCode(u8),
    /// A defined reason code that this packet type may not carry.
    #[error("reason code {code} is not allowed in {packet}")]
    ReasonCodeNotAllowed {
        /// The code.
        code: ReasonCode,
        /// The packet type.
        packet: PacketType,
    },
    /// A packet other than CONNECT before the protocol version is known.
    #[error("{0} before CONNECT: the protocol version is not known yet")]
    VersionUnknown(PacketType),
}

impl DecodeError {
    /// The 5.0 reason code to send when closing the connection for this error.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocolVersion(_) | InvalidProtocolName => {
                ReasonCode::UnsupportedProtocolVersion
            }
            WildcardInTopicName => ReasonCode::TopicNameInvalid,
            InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            TopicAliasZero => ReasonCode::TopicAliasInvalid,
            EmptySubscribe
            | EmptyUnsubscribe
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | ReasonCodeNotAllowed { .. }
            | VersionUnknown(_)
            | EmptyTopicName => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet is larger than the peer's Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the peer's maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Encoded size of the packet.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// The remaining length exceeds 268,435,455 bytes.
    #[error("packet body of {0} bytes exceeds the 268,435,455 bytes MQTT can carry")]
    RemainingLengthTooLarge(usize),
    /// A string or binary field is longer than 65,535 bytes.
    #[error("a string or binary field of {0} bytes exceeds 65,535 bytes")]
    FieldTooLong(usize),
    /// A QoS 1 or 2 PUBLISH without packet identifier.
    #[error("QoS 1 and 2 PUBLISH need a packet identifier")]
    MissingPacketId,
    /// A packet that does not exist in the chosen protocol version (AUTH in 3.1.1).
    #[error("{0} does not exist before MQTT 5.0")]
    NotInVersion(PacketType),
    /// SUBSCRIBE or UNSUBSCRIBE without topic filters.
    #[error("SUBSCRIBE and UNSUBSCRIBE need at least one topic filter")]
    NoTopicFilters,
    /// A property value that cannot be encoded or that the peer must reject:
    /// a Subscription Identifier of 0 or above 268,435,455 (or more than
    /// one in a SUBSCRIBE), a Receive Maximum, Maximum Packet Size or
    /// Topic Alias of 0, a Maximum QoS of 2, a Response Topic that is not a
    /// topic name.
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// A property the packet cannot carry (a Content Type on a SUBSCRIBE,
    /// a Reason String on a CONNECT, ...; the table of section 2.2.2.2):
    /// the peer would close the connection with a Protocol Error.
    #[error("property {property:?} cannot be sent in {context}")]
    PropertyNotAllowed {
        /// The property.
        property: PropertyId,
        /// The packet it was set on (`SUBSCRIBE`, `will properties`, ...).
        context: &'static str,
    },
}
