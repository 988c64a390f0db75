//! Per-connection protocol state: what the broker knows about one transport
//! connection. What outlives it is in the [`crate::session::Session`].

use super::{ConnectionId, ConnectionInfo, PendingConnect};
use crate::session::SessionKey;
use bytes::BytesMut;
use mqtt_codec::{Decoder, IncomingTopicAliases, OutgoingTopicAliases, Packet, ProtocolVersion};
use std::time::Instant;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Waiting for CONNECT [MQTT-3.1.0-1].
    AwaitingConnect,
    /// CONNECT received, 5.0 AUTH exchange under way.
    Authenticating,
    /// CONNACK sent.
    Connected,
    /// The broker asked the driver to close it; input is ignored.
    Closing,
}

/// The outgoing packets of an in-process connection: handed to the driver
/// as they are, never encoded.
#[derive(Debug, Default)]
pub(crate) struct LocalOut {
    pub packets: Vec<Packet>,
    /// Their encoded size, for `max_transmit_bytes`.
    pub bytes: usize,
}

/// Topic aliases both ways (section 3.3.2.3.4).
#[derive(Debug, Default)]
pub(crate) struct TopicAliases {
    /// Topic aliases the client defined ([`super::topic_aliases`]).
    pub incoming: IncomingTopicAliases,
    /// Topic aliases we defined towards the client.
    pub outgoing: OutgoingTopicAliases,
}

/// One transport connection's protocol state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub id: ConnectionId,
    pub info: ConnectionInfo,
    pub state: ConnState,
    /// The decoder of [`crate::Broker::handle_bytes`], made on its first
    /// call: a driver that decodes itself ([`crate::Broker::handle_packet`])
    /// keeps the connection's only decoder.
    pub decoder: Option<Box<Decoder>>,
    pub version: ProtocolVersion,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub session: Option<SessionKey>,
    pub keep_alive: u16,
    pub last_rx: Instant,
    /// Encoded packets not yet taken by the driver ([`super::transmit`]).
    pub out: BytesMut,
    /// For an in-process connection ([`crate::Broker::local_connection_opened`]):
    /// its packets, not encoded; `out` stays empty. (Boxed: a network
    /// connection pays one pointer for it.)
    pub local: Option<Box<LocalOut>>,
    pub transmit_pending: bool,
    /// The client's Receive Maximum ([`super::flow_control`]).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size.
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (aliases we may send).
    pub topic_alias_max: u16,
    /// The topic aliases of this connection, made when the first one is
    /// used (boxed: most connections never use one).
    pub aliases: Option<Box<TopicAliases>>,
    /// Session Expiry Interval of the CONNECT (for [MQTT-3.14.2-2]).
    pub connect_session_expiry: u32,
    /// Authentication Method of the CONNECT (5.0 enhanced authentication).
    pub auth_method: Option<Box<str>>,
    /// The CONNECT held while its AUTH exchange runs ([`super::handshake`]).
    pub pending: Option<Box<PendingConnect>>,
    /// A re-authentication under way (boxed, like the rest of enhanced
    /// authentication: an idle connection pays a pointer for it).
    pub reauth: Option<Box<crate::auth::AuthExchange>>,
    /// The reason code of the client's DISCONNECT (for the event).
    pub disconnect_code: Option<mqtt_codec::ReasonCode>,
    /// The CONNECT password, to check the client again on a reload (a
    /// copy, not a view into the received packet's buffer).
    pub password: Option<Box<[u8]>>,
    /// The user name came from the client certificate.
    pub username_from_certificate: bool,
    /// A Mosquitto bridge (protocol level 0x83 / 0x84): its subscriptions
    /// are No Local and Retain As Published, so nothing it sends comes
    /// back to it.
    pub bridge: bool,
}

impl Conn {
    /// The Topic Alias Maximum we announce to this client: its listener's
    /// `max_topic_alias`, else the broker's.
    pub fn topic_alias_max_in(&self, config: &crate::BrokerConfig) -> u16 {
        self.info
            .listener
            .max_topic_alias
            .unwrap_or(config.max_topic_alias)
    }

    pub fn new(id: ConnectionId, info: ConnectionInfo, now: Instant) -> Self {
        Self {
            id,
            info,
            state: ConnState::AwaitingConnect,
            decoder: None,
            version: ProtocolVersion::V3_1_1,
            client_id: None,
            username: None,
            session: None,
            keep_alive: 0,
            last_rx: now,
            out: BytesMut::new(),
            local: None,
            transmit_pending: false,
            receive_maximum: u16::MAX,
            max_packet_size: mqtt_codec::MAX_PACKET_SIZE,
            topic_alias_max: 0,
            aliases: None,
            connect_session_expiry: 0,
            auth_method: None,
            pending: None,
            reauth: None,
            disconnect_code: None,
            password: None,
            username_from_certificate: false,
            bridge: false,
        }
    }

    /// How many bytes wait for the driver: the encoded buffer, or the
    /// encoded size of an in-process connection's queued packets (what the
    /// back-pressure limit `max_transmit_bytes` is checked against).
    pub fn pending_bytes(&self) -> usize {
        match &self.local {
            Some(l) => l.bytes,
            None => self.out.len(),
        }
    }

    /// Whether anything waits for the driver.
    pub fn has_output(&self) -> bool {
        match &self.local {
            Some(l) => !l.packets.is_empty(),
            None => !self.out.is_empty(),
        }
    }

    /// The client identifier for log lines (`<unknown>` before CONNECT, as Mosquitto).
    pub fn name(&self) -> &str {
        self.client_id.as_deref().unwrap_or("<unknown>")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn idle_connection_and_session_state_is_small() {
        use std::mem::size_of;
        // One `Conn` and one `Session` per connected client live in the
        // broker's slabs: what only some clients use (topic aliases,
        // enhanced authentication, the password kept for reloads, a will)
        // is boxed, and the listener's settings are shared, not copied.
        // (About 270 and 290 bytes with rustc 1.95.)
        eprintln!(
            "Conn {} bytes, Session {} bytes, ConnectionInfo {} bytes, Timer {} bytes",
            size_of::<super::Conn>(),
            size_of::<crate::session::Session>(),
            size_of::<super::ConnectionInfo>(),
            size_of::<crate::timer::Timer>(),
        );
        assert!(size_of::<super::Conn>() <= 320);
        assert!(size_of::<crate::session::Session>() <= 320);
        assert!(size_of::<crate::timer::Timer>() <= 16);
    }
}
