//! What the broker asks its driver to do, and tells it about.

use crate::connection::ConnectionId;
use mqtt_codec::{ProtocolVersion, ReasonCode};

/// An event from [`crate::Broker::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes are ready for this connection: call
    /// [`crate::Broker::take_transmit`] and write them. Raised once until the
    /// bytes are taken.
    Transmit(ConnectionId),
    /// Write what [`crate::Broker::take_transmit`] still returns for this
    /// connection, close the transport, then call
    /// [`crate::Broker::connection_closed`].
    Close(ConnectionId),
    /// A client finished CONNECT (and authentication) and got a successful CONNACK.
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
    },
    /// A client that had connected is gone.
    ClientDisconnected {
        /// Its connection.
        connection: ConnectionId,
        /// Its Client Identifier.
        client_id: String,
        /// Why.
        reason: DisconnectReason,
    },
}

/// Why a connected client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}
