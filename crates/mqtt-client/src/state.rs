//! [`ConnectionState`], observable through a `tokio::sync::watch`.

use std::time::Duration;

use crate::Error;

/// Where the client's connection stands; see [`crate::Client::state`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Dialling and waiting for the first CONNACK.
    Connecting,
    /// CONNACK accepted the connection.
    Connected {
        /// Whether the broker resumed an existing session.
        session_present: bool,
    },
    /// The connection was lost; the client retries after `retry_in`.
    Reconnecting {
        /// Failed attempts since the last successful connection.
        attempt: u32,
        /// Why the last connection or attempt failed.
        last_error: Error,
        /// The back-off delay before the next attempt.
        retry_in: Duration,
    },
    /// The client stopped: after `disconnect`, or an error with reconnects off.
    Closed {
        /// The error that stopped it, if any.
        error: Option<Error>,
    },
}

impl ConnectionState {
    /// Whether the client is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected { .. })
    }
}
