//! What the sans-IO core needs to know to open (and re-open) a session.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{LastWill, Packet, ProtocolVersion, MAX_PACKET_SIZE};

/// The default maximum incoming packet size: the largest packet MQTT can
/// frame (256 MiB). A broker that sends a large retained message must never
/// trip a client over a hidden limit; set a smaller one to bound memory.
pub const DEFAULT_MAX_INCOMING_PACKET_SIZE: u32 = MAX_PACKET_SIZE;

/// The client's side of a 5.0 enhanced authentication method (section
/// 4.12): the first Authentication Data of each exchange, the answers to
/// the broker's AUTH 0x18 Continue authentication, and a check of the
/// broker's final data (in CONNACK, or in AUTH 0x00 Success after a
/// re-authentication). Methods such as SCRAM need all three: a fresh
/// nonce per connection, and the server's signature verified at the end.
pub trait AuthHandler: Send + Sync {
    /// The Authentication Data that starts an exchange (the CONNECT of every
    /// connection attempt, or a re-authentication given no data). `None`
    /// (the default) sends [`EnhancedAuth::data`].
    fn initial(&self, method: &str) -> Option<Bytes> {
        let _ = method;
        None
    }

    /// The broker's challenge for `method` (its Authentication Data, if
    /// any). Returns the client's Authentication Data, or why the client
    /// gives up (the connection then ends with that message).
    fn challenge(&self, method: &str, data: Option<&[u8]>) -> Result<Option<Bytes>, String>;

    /// The broker's final Authentication Data, from the CONNACK that
    /// accepts the client or the AUTH 0x00 Success that ends a
    /// re-authentication. `Err` (e.g. a server signature that does not
    /// verify) ends the connection with that message. The default accepts.
    fn finish(&self, method: &str, data: Option<&[u8]>) -> Result<(), String> {
        let _ = (method, data);
        Ok(())
    }
}

impl<F> AuthHandler for F
where
    F: Fn(&str, Option<&[u8]>) -> Result<Option<Bytes>, String> + Send + Sync,
{
    fn challenge(&self, method: &str, data: Option<&[u8]>) -> Result<Option<Bytes>, String> {
        self(method, data)
    }
}

/// 5.0 enhanced authentication: the method and first data sent in CONNECT,
/// and the handler for the broker's challenges. Made with [`EnhancedAuth::new`].
#[derive(Clone)]
#[non_exhaustive]
pub struct EnhancedAuth {
    /// Authentication Method (e.g. `SCRAM-SHA-256`), agreed with the broker.
    pub method: String,
    /// Authentication Data of the CONNECT when the handler's
    /// [`AuthHandler::initial`] gives none.
    pub data: Option<Bytes>,
    /// Answers AUTH 0x18 Continue authentication from the broker.
    pub handler: Arc<dyn AuthHandler>,
}

impl EnhancedAuth {
    /// The data that starts an exchange: the handler's, else `data`.
    pub(crate) fn initial_data(&self) -> Option<Bytes> {
        self.handler
            .initial(&self.method)
            .or_else(|| self.data.clone())
    }

    /// `method` with the first `data` and a `handler` for the challenges
    /// (a closure `|method, data| -> Result<Option<Bytes>, String>` will do).
    pub fn new(
        method: impl Into<String>,
        data: Option<Bytes>,
        handler: impl AuthHandler + 'static,
    ) -> Self {
        Self {
            method: method.into(),
            data,
            handler: Arc::new(handler),
        }
    }
}

impl fmt::Debug for EnhancedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnhancedAuth")
            .field("method", &self.method)
            .field("data", &self.data.as_ref().map(|d| d.len()))
            .finish_non_exhaustive()
    }
}

/// Whether a packet given to a [`PacketLog`] was sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketDirection {
    /// Encoded for the network (by [`crate::proto::Connection::poll_transmit`]).
    Sent,
    /// Decoded from the network (by [`crate::proto::Connection::handle_input`]).
    Received,
}

/// A function called with every packet the core sends or receives, in
/// order: for packet traces such as `mosquitto_sub -d`'s "Client X sending
/// CONNECT". It runs inside the core, so it must be quick and must not
/// block. An outgoing PUBLISH is given with its topic, before an automatic
/// topic alias replaces it on the wire.
#[derive(Clone)]
pub struct PacketLog(Arc<PacketLogFn>);

/// The function a [`PacketLog`] calls.
type PacketLogFn = dyn Fn(PacketDirection, &Packet) + Send + Sync;

impl PacketLog {
    /// A log that calls `f`.
    pub fn new(f: impl Fn(PacketDirection, &Packet) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn log(&self, direction: PacketDirection, packet: &Packet) {
        (self.0)(direction, packet)
    }
}

impl fmt::Debug for PacketLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PacketLog(..)")
    }
}

/// Session options: everything that goes into CONNECT, plus the client's own
/// limits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Protocol version: 3.1.1, 5.0, or 3.1 (which behaves as 3.1.1 but
    /// for the protocol name and its 1-to-23-character Client Identifier).
    pub protocol: ProtocolVersion,
    /// Client Identifier. Empty asks the broker to assign one (5.0 returns it
    /// as Assigned Client Identifier, which is used on reconnects); 3.1
    /// has no such thing, and the core sends an empty one as it is
    /// (`Client::new` generates one for 3.1 instead).
    pub client_id: String,
    /// Keep Alive; zero turns it off. Sent in whole seconds (at most 65,535).
    pub keep_alive: Duration,
    /// Clean Start (5.0) / Clean Session (3.1.1) of the first CONNECT.
    ///
    /// Reconnects of a 5.0 session with a non-zero Session Expiry Interval
    /// always resume the session (Clean Start 0), so a dropped connection
    /// does not lose it.
    pub clean_start: bool,
    /// 5.0 Session Expiry Interval in seconds (0: the session ends with the
    /// connection; `u32::MAX`: never expires). Ignored in 3.1.1, where
    /// `clean_start = false` keeps the session.
    pub session_expiry_interval: u32,
    /// Will message.
    pub will: Option<LastWill>,
    /// User Name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// 5.0 Receive Maximum: how many QoS 1 and 2 messages the broker may have
    /// unacknowledged towards this client. `None` sends nothing (65,535).
    pub receive_maximum: Option<u16>,
    /// 5.0 Topic Alias Maximum: how many topic aliases the broker may use
    /// towards this client (0: none).
    pub topic_alias_maximum: u16,
    /// Largest packet accepted from the broker (fixed header included).
    /// Sent as the 5.0 Maximum Packet Size when below the protocol maximum.
    pub max_incoming_packet_size: u32,
    /// 5.0 User Properties of CONNECT.
    pub user_properties: Vec<(String, String)>,
    /// 5.0 Request Response Information.
    pub request_response_information: bool,
    /// 5.0 enhanced authentication (Authentication Method and Data in
    /// CONNECT, AUTH exchanges before CONNACK). Ignored in 3.1.1.
    pub enhanced_auth: Option<EnhancedAuth>,
    /// The client's own cap on outgoing QoS 1 and 2 messages in flight; the
    /// window is the smaller of this and the broker's Receive Maximum.
    pub max_inflight: u16,
    /// How many publishes may wait (offline, or behind a full window) before
    /// [`crate::proto::Connection::publish`] refuses more.
    pub max_queued: usize,
    /// Use 5.0 topic aliases for outgoing messages when the broker allows them.
    pub auto_topic_alias: bool,
    /// How long to wait for CONNACK after CONNECT.
    pub connect_timeout: Duration,
    /// When set, incoming QoS 1 and 2 messages are acknowledged (PUBACK,
    /// PUBREC) only when the driver calls
    /// [`crate::proto::Connection::acknowledge`]; otherwise when the message
    /// is taken with [`crate::proto::Connection::poll_event`].
    pub manual_acks: bool,
    /// Called with every packet sent and received (a packet trace; `None`,
    /// the default, costs nothing).
    pub packet_log: Option<PacketLog>,
    /// Mosquitto's `try_private`: a 3.1 or 3.1.1 CONNECT says this client
    /// is a bridge (protocol level | 0x80), so a broker that knows the
    /// convention does not send its own messages back. Ignored in 5.0,
    /// where a bridge subscribes with No Local. Default false.
    pub bridge: bool,
}

impl ConnectOptions {
    /// Options for `client_id` at `protocol`: clean start, 60 s keep alive,
    /// no session expiry, 256 MiB maximum incoming packet size.
    pub fn new(protocol: ProtocolVersion, client_id: impl Into<String>) -> Self {
        Self {
            protocol,
            client_id: client_id.into(),
            keep_alive: Duration::from_secs(60),
            clean_start: true,
            session_expiry_interval: 0,
            will: None,
            username: None,
            password: None,
            receive_maximum: None,
            topic_alias_maximum: 0,
            max_incoming_packet_size: DEFAULT_MAX_INCOMING_PACKET_SIZE,
            user_properties: Vec::new(),
            request_response_information: false,
            enhanced_auth: None,
            max_inflight: 100,
            max_queued: 10_000,
            auto_topic_alias: true,
            connect_timeout: Duration::from_secs(10),
            manual_acks: false,
            packet_log: None,
            bridge: false,
        }
    }

    /// Keep Alive in whole seconds, as sent in CONNECT.
    pub(crate) fn keep_alive_secs(&self) -> u16 {
        u16::try_from(self.keep_alive.as_secs()).unwrap_or(u16::MAX)
    }

    /// The enhanced authentication in effect: set, and the session is 5.0
    /// (3.1.1 has no AUTH).
    pub(crate) fn active_enhanced_auth(&self) -> Option<&EnhancedAuth> {
        self.enhanced_auth
            .as_ref()
            .filter(|_| self.protocol.is_v5())
    }

    /// Whether the broker keeps the session after a connection ends.
    pub(crate) fn persistent(&self) -> bool {
        if self.protocol.is_v5() {
            self.session_expiry_interval > 0
        } else {
            !self.clean_start
        }
    }
}
