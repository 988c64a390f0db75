//! What the core reports to its driver.

use mqtt_codec::{
    ConnAck, EncodeError, PacketId, Properties, Publish, ReasonCode, SubAck, UnsubAck,
};

use super::{ConnectionError, PublishError};

/// Identifies a request (publish, subscribe, unsubscribe) made to the core,
/// so the driver can match its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The raw number (unique per [`crate::proto::Connection`]).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// An event polled with [`crate::proto::Connection::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// CONNACK accepted the connection.
    Connected {
        /// Session Present: the broker resumed the session.
        session_present: bool,
        /// The whole CONNACK (5.0 properties: assigned client id, limits, ...).
        connack: ConnAck,
    },
    /// An application message from the broker, with its topic resolved from
    /// any topic alias. With `manual_acks`, pass it to
    /// [`crate::proto::Connection::acknowledge`] once it is consumed.
    Message(Publish),
    /// A QoS 0 PUBLISH was handed to the driver in [`crate::proto::Connection::poll_transmit`].
    Sent {
        /// The request.
        request: RequestId,
    },
    /// PUBACK for a QoS 1 PUBLISH.
    PubAck {
        /// The request.
        request: RequestId,
        /// Packet Identifier it used.
        packet_id: PacketId,
        /// The broker's reason code (always success in 3.1.1).
        reason_code: ReasonCode,
        /// 5.0 properties (Reason String, User Properties).
        properties: Properties,
    },
    /// PUBCOMP for a QoS 2 PUBLISH, or a PUBREC with an error reason code,
    /// which ends the exchange [MQTT-4.3.3].
    PubComp {
        /// The request.
        request: RequestId,
        /// Packet Identifier it used.
        packet_id: PacketId,
        /// The reason code of the PUBCOMP (or of the refusing PUBREC).
        reason_code: ReasonCode,
        /// 5.0 properties.
        properties: Properties,
    },
    /// A queued PUBLISH could not be sent (e.g. larger than the broker's
    /// Maximum Packet Size learned at CONNACK).
    PublishFailed {
        /// The request.
        request: RequestId,
        /// Why.
        error: PublishError,
    },
    /// SUBACK for a SUBSCRIBE.
    SubAck {
        /// The request. Subscriptions restored after the broker lost the
        /// session have requests the driver never made.
        request: RequestId,
        /// The SUBACK.
        suback: SubAck,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE could not be sent (a property the packet
    /// cannot carry, a value the broker must reject, larger than the
    /// broker's Maximum Packet Size); the request is dropped.
    RequestFailed {
        /// The request.
        request: RequestId,
        /// Why.
        error: EncodeError,
    },
    /// UNSUBACK for an UNSUBSCRIBE.
    UnsubAck {
        /// The request.
        request: RequestId,
        /// The UNSUBACK.
        unsuback: UnsubAck,
    },
    /// The outcome of [`crate::proto::Connection::reauthenticate`]: the
    /// properties of the broker's AUTH 0x00 Success, or why the connection
    /// ended first (a broker refuses a re-authentication with DISCONNECT).
    Reauthenticated {
        /// The request.
        request: RequestId,
        /// The outcome.
        result: Result<Properties, ConnectionError>,
    },
    /// The connection ended; the session state is kept for the next
    /// [`crate::proto::Connection::connect`].
    Disconnected {
        /// Why.
        reason: ConnectionError,
    },
}
