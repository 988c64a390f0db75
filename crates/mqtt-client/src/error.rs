//! [`Error`]: everything the tokio client reports, in words a person can act on.

use std::io;
use std::sync::Arc;

use mqtt_codec::{EncodeError, ReasonCode, TopicError};
use mqtt_tls::TlsError;

use crate::proto::{ConnectionError, PublishError, ReauthError};

fn broker_says(s: &Option<String>) -> String {
    match s {
        Some(s) if !s.is_empty() => format!(" (broker says: {s})"),
        _ => String::new(),
    }
}

fn dial_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "; is the broker running and listening on that address and port (the host and port of the client options)?"
        }
        io::ErrorKind::TimedOut => "; is the address right and the port open in the firewall?",
        _ => "",
    }
}

fn io_text(e: &io::Error, tls: bool) -> String {
    if tls && e.kind() == io::ErrorKind::UnexpectedEof {
        // rustls: "peer closed connection without sending TLS close_notify".
        return "the broker closed the connection without ending TLS (it stopped, crashed or dropped this client)".to_string();
    }
    e.to_string()
}

fn io_hint(e: &io::Error, tls: bool) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof if !tls => {
            "; if that port is a TLS listener (usually 8883), connect with TLS: set `ClientTlsOptions::cafile` to ca.crt (and `certfile`/`keyfile` when it requires client certificates)"
        }
        _ => "",
    }
}

/// Everything that can go wrong in the tokio client. Cheap to clone (sources
/// are shared), so it can sit in [`crate::ConnectionState`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A topic name or filter is not valid.
    #[error("invalid topic {topic:?}: {source}")]
    InvalidTopic {
        /// The topic as given.
        topic: String,
        /// Why.
        source: TopicError,
    },
    /// The TCP connection to the broker could not be opened.
    #[error("could not connect to {address}: {source}{}", dial_hint(.source))]
    Dial {
        /// `host:port` as dialled.
        address: String,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// Opening the TCP connection took longer than the connect time-out.
    #[error("could not connect to {address} within {timeout:?}; is the address right and the port open in the firewall?")]
    DialTimeout {
        /// `host:port` as dialled.
        address: String,
        /// The time-out.
        timeout: std::time::Duration,
    },
    /// The broker did not accept the WebSocket upgrade.
    #[error("WebSocket upgrade to {url} failed: {detail}; is that port a WebSocket listener (Mosquitto: protocol websockets), and is the path right?")]
    WebSocket {
        /// The URL asked for.
        url: String,
        /// What the WebSocket layer said.
        detail: String,
    },
    /// TLS failed, in mqtt-tls's words (what is wrong and what to do).
    #[error("{0}")]
    Tls(Arc<TlsError>),
    /// The connection failed or ended: refused in CONNACK, closed by the
    /// broker, a protocol violation, a time-out, a too-large packet.
    #[error("{0}")]
    Connection(ConnectionError),
    /// Reading or writing the socket failed.
    #[error("connection to {address} failed: {}{}", io_text(source, *tls), io_hint(source, *tls))]
    Io {
        /// `host:port` of the broker.
        address: String,
        /// The operating system's error.
        source: Arc<io::Error>,
        /// Whether the connection was TLS.
        tls: bool,
    },
    /// The message could not be queued or sent.
    #[error("{0}")]
    Publish(PublishError),
    /// The broker refused a QoS 1/2 message (PUBACK or PUBREC with an error code).
    #[error("the broker refused the message: {reason_code}{}", broker_says(.reason_string))]
    PublishRefused {
        /// The reason code.
        reason_code: ReasonCode,
        /// The 5.0 Reason String.
        reason_string: Option<String>,
    },
    /// The broker refused a subscription in SUBACK.
    #[error("the broker refused the subscription to {filter:?}: {reason_code}{}", broker_says(.reason_string))]
    SubscribeRefused {
        /// The topic filter.
        filter: String,
        /// The reason code (3.1.1 brokers only say 0x80 Unspecified error).
        reason_code: ReasonCode,
        /// The 5.0 Reason String.
        reason_string: Option<String>,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE could not be sent: a property the packet
    /// cannot carry, a value the broker would have to reject, or a packet
    /// larger than the broker's Maximum Packet Size.
    #[error("cannot send this request: {0}")]
    InvalidRequest(EncodeError),
    /// A re-authentication could not start.
    #[error("{0}")]
    Reauthenticate(ReauthError),
    /// All 65,535 packet identifiers are in use.
    #[error("all 65535 packet identifiers are in use; wait for earlier requests to complete")]
    NoPacketId,
    /// The event loop has stopped (after `disconnect`, a fatal error, or
    /// because it was dropped); the request was not completed.
    #[error("the client is closed")]
    Closed,
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::Tls(Arc::new(e))
    }
}

impl From<ConnectionError> for Error {
    fn from(e: ConnectionError) -> Self {
        Error::Connection(e)
    }
}

impl From<PublishError> for Error {
    fn from(e: PublishError) -> Self {
        Error::Publish(e)
    }
}

impl Error {
    /// The CONNACK refusal, if this is one (e.g. to pick an exit code).
    pub fn connack_refusal(&self) -> Option<ReasonCode> {
        match self {
            Error::Connection(ConnectionError::Refused { reason, .. }) => Some(*reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: io::ErrorKind, tls: bool) -> String {
        Error::Io {
            address: "127.0.0.1:8883".into(),
            source: Arc::new(io::Error::new(kind, "os says no")),
            tls,
        }
        .to_string()
    }

    #[test]
    fn reset_on_a_plain_connection_suggests_tls() {
        let msg = io(io::ErrorKind::ConnectionReset, false);
        assert!(
            msg.contains("connect with TLS: set `ClientTlsOptions::cafile` to ca.crt"),
            "{msg}"
        );
        assert!(!io(io::ErrorKind::ConnectionReset, true).contains("cafile"));
        // The library names its options; command-line flags are the examples' words.
        assert!(!msg.contains("--"), "{msg}");
    }

    #[test]
    fn tls_eof_says_the_broker_closed_the_connection() {
        let msg = io(io::ErrorKind::UnexpectedEof, true);
        assert!(
            msg.contains("the broker closed the connection without ending TLS"),
            "{msg}"
        );
        assert!(!msg.contains("close_notify"), "{msg}");
    }
}
