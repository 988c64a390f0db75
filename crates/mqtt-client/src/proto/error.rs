//! Why the core ends a connection, and why it refuses a request.

use mqtt_codec::{DecodeError, EncodeError, PacketType, ReasonCode};

fn with_reason_string(s: &Option<String>) -> String {
    match s {
        Some(s) if !s.is_empty() => format!(" (broker says: {s})"),
        _ => String::new(),
    }
}

/// What a user can do about a CONNACK refusal.
fn refusal_advice(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::BadUserNameOrPassword => {
            "; check the user name and password (`username` and `password` in the client options), or the broker's password_file"
        }
        ReasonCode::NotAuthorized => {
            "; the broker requires authentication: give a user name and password (`username` and `password` in the client options) or a client certificate (`ClientTlsOptions::certfile` and `keyfile`), or allow anonymous clients on the broker (`allow_anonymous true`); a Mosquitto 2 broker that verified your client certificate still refuses you unless it has `use_identity_as_username true` or `allow_anonymous true`"
        }
        ReasonCode::ClientIdentifierNotValid => {
            "; choose another client id (`client_id` in the client options), or connect with a clean session (3.1.1 brokers refuse an empty client id with clean session off)"
        }
        ReasonCode::UnsupportedProtocolVersion => {
            "; the broker does not speak this MQTT version: try the other one (`protocol` in the client options: 3.1.1 or 5.0)"
        }
        ReasonCode::ServerUnavailable | ReasonCode::ServerBusy => "; try again later",
        ReasonCode::Banned => "; this client is banned by the broker",
        _ => "",
    }
}

/// Why a connection ended (or never became usable). Reported by the core
/// as [`crate::proto::Event::Disconnected`] and by the tokio client as
/// [`crate::Error::Connection`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The broker refused the connection in CONNACK.
    #[error("Connection Refused: {reason}{}{}", with_reason_string(.reason_string), refusal_advice(*.reason))]
    Refused {
        /// The CONNACK reason code (3.1.1 return codes are mapped to their 5.0 equivalent).
        reason: ReasonCode,
        /// The 5.0 Reason String, if the broker sent one.
        reason_string: Option<String>,
    },
    /// The broker sent DISCONNECT (5.0) with a reason.
    #[error("the broker closed the connection: {reason}{}", with_reason_string(.reason_string))]
    ServerDisconnected {
        /// The DISCONNECT reason code.
        reason: ReasonCode,
        /// The 5.0 Reason String, if the broker sent one.
        reason_string: Option<String>,
    },
    /// The broker sent a packet larger than the client accepts.
    #[error("the broker sent a packet of {size} bytes, larger than this client's maximum incoming packet size of {max} bytes; raise `max_incoming_packet_size` in the client options (the protocol allows up to 268435460 bytes)")]
    PacketTooLarge {
        /// Size of the packet (fixed header included).
        size: usize,
        /// The configured maximum.
        max: u32,
    },
    /// The broker sent bytes that are not a valid MQTT packet.
    #[error("the broker sent a malformed packet: {0}")]
    Malformed(DecodeError),
    /// The broker broke a rule of the protocol.
    #[error("protocol violation by the broker: {0}")]
    ProtocolViolation(ProtocolViolation),
    /// No CONNACK within the connect time-out.
    #[error("no CONNACK from the broker within {0:?} after CONNECT; is this an MQTT broker?")]
    ConnectTimeout(std::time::Duration),
    /// No PINGRESP within the keep-alive time after PINGREQ.
    #[error("the broker did not answer PINGREQ within {0:?}; the connection is dead")]
    KeepAliveTimeout(std::time::Duration),
    /// The network connection closed (reported by the driver).
    #[error("the connection was closed by the broker")]
    Closed,
    /// The network connection failed (reported by the driver).
    #[error("{0}")]
    Transport(String),
    /// The client disconnected on request.
    #[error("disconnected on request")]
    Requested,
    /// The enhanced authentication handler gave up on the broker's challenge.
    #[error("enhanced authentication failed on the client's side: {0}")]
    Authentication(String),
}

impl From<DecodeError> for ConnectionError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::PacketTooLarge { size, max } => Self::PacketTooLarge { size, max },
            e => Self::Malformed(e),
        }
    }
}

impl ConnectionError {
    /// The 5.0 reason code to put in the DISCONNECT the client sends for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::Malformed(e) => e.reason_code(),
            Self::ProtocolViolation(v) => v.reason_code(),
            Self::KeepAliveTimeout(_) => ReasonCode::KeepAliveTimeout,
            Self::Requested => ReasonCode::NORMAL_DISCONNECTION,
            _ => ReasonCode::UnspecifiedError,
        }
    }
}

/// A rule of the specification the broker broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A packet a server never sends, or one sent at the wrong time.
    #[error("unexpected {0} packet")]
    UnexpectedPacket(PacketType),
    /// A packet other than CONNACK before CONNACK [MQTT-3.2.0-1].
    #[error("{0} before CONNACK; the first packet from a server must be CONNACK")]
    BeforeConnAck(PacketType),
    /// Session Present 1 although the client asked for a clean start [MQTT-3.2.2-4].
    #[error("CONNACK has Session Present 1 although the client sent Clean Start 1")]
    SessionPresentOnCleanStart,
    /// A SUBACK with a different number of reason codes than filters [MQTT-3.9.3-1].
    #[error("SUBACK has {got} reason codes for {expected} topic filters")]
    SubAckCount {
        /// Filters in the SUBSCRIBE.
        expected: usize,
        /// Reason codes in the SUBACK.
        got: usize,
    },
    /// A Topic Alias of 0 or above the client's Topic Alias Maximum [MQTT-3.3.2-9].
    #[error("topic alias {alias} is outside 1..={max}")]
    TopicAliasOutOfRange {
        /// The alias.
        alias: u16,
        /// The client's Topic Alias Maximum.
        max: u16,
    },
    /// An empty topic with an alias the broker never defined.
    #[error("topic alias {0} used before it was defined")]
    UnknownTopicAlias(u16),
    /// More unacknowledged QoS 1/2 messages than the client's Receive Maximum [MQTT-3.3.4-9].
    #[error("more than {0} unacknowledged QoS 1/2 messages (the client's Receive Maximum)")]
    ReceiveMaximumExceeded(u16),
    /// AUTH from the broker with a reason it may not send then: only 0x18
    /// Continue authentication, and 0x00 Success to end a re-authentication.
    #[error("AUTH with reason {0} from the broker; a broker sends 0x18 Continue authentication, and 0x00 Success only to end a re-authentication")]
    UnexpectedAuthReason(ReasonCode),
    /// AUTH naming another Authentication Method than the CONNECT [MQTT-4.12.0-5].
    #[error("AUTH names the authentication method {got:?}, the CONNECT named {expected:?}")]
    AuthMethodChanged {
        /// The method of the CONNECT.
        expected: String,
        /// The method of the AUTH (`None`: none).
        got: Option<String>,
    },
}

impl ProtocolViolation {
    /// The 5.0 reason code for a DISCONNECT about this violation.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::TopicAliasOutOfRange { .. } | Self::UnknownTopicAlias(_) => {
                ReasonCode::TopicAliasInvalid
            }
            Self::ReceiveMaximumExceeded(_) => ReasonCode::ReceiveMaximumExceeded,
            _ => ReasonCode::ProtocolError,
        }
    }
}

/// Why the core refused a PUBLISH (nothing was queued).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Too many publishes are waiting to be sent.
    #[error("{limit} publishes are already waiting to be sent (offline or behind a full in-flight window); raise `max_queued` in the client options or wait for earlier publishes")]
    QueueFull {
        /// The configured `max_queued`.
        limit: usize,
    },
    /// The broker's Maximum QoS is lower than the QoS asked for [MQTT-3.2.2-11].
    #[error("the broker accepts at most QoS {max}, this message asks for QoS {asked}")]
    QoSNotSupported {
        /// QoS of the message.
        asked: u8,
        /// The broker's Maximum QoS.
        max: u8,
    },
    /// The broker does not support retained messages [MQTT-3.2.2-14].
    #[error("the broker does not support retained messages (Retain Available 0)")]
    RetainNotSupported,
    /// The packet is larger than the broker accepts, or than MQTT can carry.
    #[error("cannot send this message: {0}")]
    Encode(EncodeError),
}

/// Why [`crate::proto::Connection::reauthenticate`] cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReauthError {
    /// The session has no enhanced authentication (or is not 5.0).
    #[error("re-authentication needs MQTT 5.0 and enhanced authentication (`enhanced_auth` in the client options)")]
    NoMethod,
    /// The client is not connected.
    #[error("re-authentication needs a connected client; try again once connected")]
    NotConnected,
    /// A re-authentication is already running.
    #[error("a re-authentication is already in progress")]
    InProgress,
}
