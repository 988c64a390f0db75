//! Sans-IO MQTT packet codec for MQTT 3.1, 3.1.1 and 5.0.
//!
//! - Every control packet and every 5.0 property, with reason codes as enums.
//! - Incremental decoding from partial buffers in the style of tokio-util's
//!   `Decoder`: too few bytes is `Ok(None)`, never an error; a whole packet is
//!   split off the buffer and its payload is a shared [`bytes::Bytes`] (no
//!   copy). Topic names and 5.0 strings ([`MqttString`]) up to 32 bytes are
//!   stored inline, longer ones share the buffer: no heap allocation either way.
//! - The remaining length is checked against a maximum packet size as soon as
//!   the fixed header is read, before anything is buffered.
//! - Every malformed-packet rule is a typed [`DecodeError`] with the 5.0
//!   [`ReasonCode`] to send ([`DecodeError::reason_code`]). No input panics.
//! - Encoding reserves the exact size once ([`Packet::encoded_len`]) and can
//!   refuse packets above the peer's Maximum Packet Size.
//! - Topic names and filters are validated types with the matching rules of
//!   both specifications, including `$share/{group}/{filter}`.
//! - Session pieces shared by clients and servers: the packet identifier
//!   pool ([`PacketIdPool`]) and the 5.0 topic alias tables of each
//!   direction ([`OutgoingTopicAliases`], [`IncomingTopicAliases`]).
//! - `no_std` with `alloc` when the default `std` feature is off.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_codec::{Connect, Decoder, Packet, ProtocolVersion};
//!
//! let mut buf = BytesMut::new();
//! Connect::new(ProtocolVersion::V5, "pi").encode(ProtocolVersion::V5, &mut buf).unwrap();
//!
//! // A server does not know the version until CONNECT arrives.
//! let mut decoder = Decoder::new();
//! let Some(Packet::Connect(c)) = decoder.decode(&mut buf).unwrap() else { unreachable!() };
//! assert_eq!(c.client_id, "pi");
//! assert_eq!(decoder.version(), Some(ProtocolVersion::V5));
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
// One audited `unsafe` block, in `out.rs` (the benchmark that justifies it
// is described there); `deny` keeps every other one out.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;

mod error;
mod incoming_topic_aliases;
mod out;
mod outgoing_topic_aliases;
mod packet;
mod packet_id_pool;
mod properties;
mod publish_properties;
mod reason;
mod small;
mod string;
pub mod topic;
mod types;
pub mod user_properties;
mod wire;

pub use bytes;
pub use error::{DecodeError, EncodeError};
pub use incoming_topic_aliases::{IncomingTopicAliases, TopicAliasError};
pub use outgoing_topic_aliases::{AliasChoice, OutgoingTopicAliases};
pub use packet::{
    decode_packet, peek_connect_version, Auth, ConnAck, Connect, Decoder, Disconnect, FixedHeader,
    LastWill, Packet, PubAck, PubComp, PubRec, PubRel, Publish, SubAck, Subscribe, Subscription,
    UnsubAck, Unsubscribe, MAX_PACKET_SIZE,
};
pub use packet_id_pool::PacketIdPool;
pub use properties::{Properties, PropertyId, PropertyValues};
pub use publish_properties::{PublishProperties, PublishPropertyValues};
pub use reason::ReasonCode;
pub use string::MqttString;
pub use topic::{TopicError, TopicFilter, TopicName};
pub use types::{PacketId, PacketType, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
pub use user_properties::{UserProperties, UserProperty};
pub use wire::MAX_VARIABLE_INTEGER;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
