//! What the broker asks its driver to do, and tells it about.

use crate::auth::OwnedAuthRequest;
use crate::connection::{ConnectionId, PeerCertificate};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};
use std::net::SocketAddr;

/// An event from [`crate::Broker::poll_event`].
///
/// `Transmit`, `Close` and `AuthPending` ask the driver to act; the others
/// tell it what happened (the tokio driver hands them to the program as a
/// stream). `Subscribed`, `Unsubscribed` and `MessageDropped` are raised
/// only after [`crate::Broker::report_activity`] turned them on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bytes are ready for this connection: call
    /// [`crate::Broker::take_transmit`] and write them (for an in-process
    /// connection, [`crate::Broker::take_packets`] and hand them over).
    /// Raised once until they are taken.
    Transmit(ConnectionId),
    /// Write what [`crate::Broker::take_transmit`] still returns for this
    /// connection, close the transport, then call
    /// [`crate::Broker::connection_closed`].
    Close(ConnectionId),
    /// The authenticator deferred its decision about this CONNECT
    /// ([`crate::AuthDecision::Defer`]): decide, then call
    /// [`crate::Broker::complete_auth`].
    AuthPending {
        /// The connection waiting for the decision.
        connection: ConnectionId,
        /// What the authenticator was asked.
        request: Box<OwnedAuthRequest>,
    },
    /// A client finished CONNECT (and authentication) and got a successful CONNACK.
    #[non_exhaustive]
    ClientConnected {
        /// Its connection.
        connection: ConnectionId,
        /// Its Client Identifier (assigned by the broker if it sent none).
        client_id: String,
        /// Its user name after certificate mapping.
        username: Option<String>,
        /// Its protocol version.
        protocol: ProtocolVersion,
        /// Whether an existing session was resumed.
        session_present: bool,
        /// Its address.
        remote_addr: SocketAddr,
        /// Its verified TLS client certificate, if any.
        certificate: Option<PeerCertificate>,
    },
    /// A client that had connected is gone.
    #[non_exhaustive]
    ClientDisconnected {
        /// Its connection.
        connection: ConnectionId,
        /// Its Client Identifier.
        client_id: String,
        /// Why.
        reason: DisconnectReason,
        /// Its user name after certificate mapping.
        username: Option<String>,
        /// Its address.
        remote_addr: SocketAddr,
        /// The reason code of its DISCONNECT, or of the one the broker sent;
        /// `None` when the connection just ended.
        reason_code: Option<ReasonCode>,
    },
    /// A client subscribed ([`crate::Broker::report_activity`]).
    Subscribed {
        /// Its connection.
        connection: ConnectionId,
        /// Its Client Identifier.
        client_id: String,
        /// Each filter as the client sent it, with the QoS granted or the
        /// reason it was refused.
        filters: Vec<(String, Result<QoS, ReasonCode>)>,
    },
    /// A client unsubscribed ([`crate::Broker::report_activity`]).
    Unsubscribed {
        /// Its connection.
        connection: ConnectionId,
        /// Its Client Identifier.
        client_id: String,
        /// The filters, as the client sent them.
        filters: Vec<String>,
    },
    /// A message for a client was dropped ([`crate::Broker::report_activity`]).
    MessageDropped {
        /// The client it was for.
        client_id: String,
        /// Its topic.
        topic: String,
        /// Why.
        reason: DropReason,
    },
}

/// Why a message was not delivered to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The client's queue was full (`max_queued_messages`,
    /// `max_queued_bytes`), or a QoS 0 message found its connection busy.
    QueueFull,
    /// Its Message Expiry Interval ran out before it was sent.
    Expired,
    /// It is larger than the client's Maximum Packet Size.
    TooLarge,
    /// A QoS 0 message written to a client that stopped reading, lost
    /// when its connection was closed (`write_timeout`).
    ClientNotReading,
    /// A QoS 0 PUBLISH from a 5.0 client refused for `memory_limit` (it
    /// has no acknowledgement to carry 0x97 Quota exceeded).
    MemoryLimit,
}

/// Why a connected client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// It sent DISCONNECT.
    ClientDisconnected,
    /// Its transport closed without DISCONNECT.
    ConnectionLost,
    /// No packet within 1.5 times its Keep Alive.
    KeepAliveTimeout,
    /// Another connection took its session over [MQTT-3.1.4-3].
    SessionTakenOver,
    /// It broke the protocol; the 5.0 reason code says how.
    ProtocolViolation(ReasonCode),
    /// Re-authentication failed or access was revoked.
    NotAuthorized,
    /// The broker is shutting down.
    ServerShuttingDown,
    /// It stopped reading: a write made no progress within `write_timeout`.
    WriteTimeout,
    /// What it sent did not fit within `memory_limit`: a PUBLISH from a
    /// 3.1.1 client (as Mosquitto, which closes the connection), or a
    /// packet being received whose announced length did not fit (5.0:
    /// DISCONNECT 0x97 Quota exceeded).
    MemoryLimit,
}

impl DisconnectReason {
    /// The reason code of the DISCONNECT the broker sends for it (a 5.0
    /// client gets it; `None` when there is none to send).
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            Self::ClientDisconnected => Some(ReasonCode::Success),
            Self::ConnectionLost => None,
            Self::KeepAliveTimeout => Some(ReasonCode::KeepAliveTimeout),
            Self::SessionTakenOver => Some(ReasonCode::SessionTakenOver),
            Self::ProtocolViolation(rc) => Some(*rc),
            Self::NotAuthorized => Some(ReasonCode::NotAuthorized),
            Self::ServerShuttingDown => Some(ReasonCode::ServerShuttingDown),
            Self::WriteTimeout => None,
            Self::MemoryLimit => Some(ReasonCode::QuotaExceeded),
        }
    }
}
