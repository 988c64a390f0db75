//! [`ClientOptions`]: where to connect, how, and the client's limits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{LastWill, Properties, ProtocolVersion, QoS};
use mqtt_tls::ClientTlsOptions;

use crate::backoff::ReconnectOptions;
use crate::proto::ConnectOptions;
use crate::Error;

/// Everything [`crate::Client::connect`] needs. Start from
/// [`ClientOptions::new`] and chain the setters, or set the public fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Broker host name or IP address; for TLS also the name the broker's
    /// certificate must carry.
    pub host: String,
    /// Broker port (1883 plain, 8883 TLS by convention).
    pub port: u16,
    /// TLS configuration (from [`mqtt_tls::ClientTlsOptions::build`]); `None` is plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// MQTT over WebSockets to this path (e.g. `/mqtt`): `ws://host:port/path`,
    /// or `wss://` with [`Self::tls`]. `None` is MQTT straight over TCP/TLS.
    pub websocket: Option<String>,
    /// Session options that go into CONNECT, and the core's limits.
    pub session: ConnectOptions,
    /// Reconnect policy (on by default, with back-off and jitter).
    pub reconnect: ReconnectOptions,
    /// Capacity of the incoming message channel ([`crate::Messages`]).
    pub message_capacity: usize,
    /// Incoming messages held beyond the channel (also the Receive Maximum
    /// sent in 5.0); see the crate documentation on back-pressure.
    pub max_held_messages: usize,
}

impl ClientOptions {
    /// MQTT 5.0 to `host:port` over plain TCP, a broker-assigned client id,
    /// clean start, 60 s keep alive, reconnect with back-off.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            tls: None,
            websocket: None,
            session: ConnectOptions::new(ProtocolVersion::V5, ""),
            reconnect: ReconnectOptions::default(),
            message_capacity: 128,
            max_held_messages: 1024,
        }
    }

    /// Uses TLS with this rustls config.
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Speaks MQTT over WebSockets to `path` (`ws://host:port/path`; with
    /// TLS, `wss://`), offering the `mqtt` subprotocol: for brokers behind
    /// an HTTP proxy or with only a WebSocket port open (Mosquitto's
    /// `protocol websockets`, this workspace's broker, cloud brokers).
    pub fn websocket(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.websocket = Some(if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        });
        self
    }

    /// Uses TLS built from Mosquitto-style files (`cafile`, `certfile`, `keyfile`).
    pub fn tls_files(self, options: &ClientTlsOptions) -> Result<Self, Error> {
        Ok(self.tls(options.build()?))
    }

    /// MQTT version: [`ProtocolVersion::V5`] (the default),
    /// [`ProtocolVersion::V3_1_1`], or [`ProtocolVersion::V3_1`] for old brokers
    /// (protocol name `MQIsdp`; a Client Identifier is then required, and
    /// one is generated when none is set).
    pub fn protocol(mut self, version: ProtocolVersion) -> Self {
        self.session.protocol = version;
        self
    }

    /// 5.0 enhanced authentication: CONNECT carries `auth.method` and
    /// `auth.data`, and `auth.handler` answers the broker's AUTH challenges
    /// until CONNACK; [`crate::Client::reauthenticate`] runs the exchange
    /// again on a connected client.
    pub fn enhanced_auth(mut self, auth: crate::EnhancedAuth) -> Self {
        self.session.enhanced_auth = Some(auth);
        self
    }

    /// Client Identifier.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.session.client_id = id.into();
        self
    }

    /// User Name and Password.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.session.username = Some(username.into());
        self.session.password = Some(password.into());
        self
    }

    /// Keep Alive (0 turns it off).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.session.keep_alive = keep_alive;
        self
    }

    /// Clean Start / Clean Session of the first connection.
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.session.clean_start = clean;
        self
    }

    /// 5.0 Session Expiry Interval in seconds: how long the broker keeps the
    /// session after a connection drops.
    pub fn session_expiry_interval(mut self, seconds: u32) -> Self {
        self.session.session_expiry_interval = seconds;
        self
    }

    /// Will message published by the broker if this client vanishes.
    pub fn will(
        mut self,
        topic: mqtt_codec::TopicName,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Self {
        self.session.will = Some(LastWill {
            topic,
            payload: payload.into(),
            qos,
            retain,
            properties: Properties::default(),
        });
        self
    }

    /// Largest packet accepted from the broker (default: the protocol's 256 MiB).
    pub fn max_incoming_packet_size(mut self, bytes: u32) -> Self {
        self.session.max_incoming_packet_size = bytes;
        self
    }

    /// Calls `f` with every packet sent and received, in order (a packet
    /// trace, like `mosquitto_sub -d`); see [`crate::proto::PacketLog`].
    pub fn packet_log(
        mut self,
        f: impl Fn(crate::proto::PacketDirection, &mqtt_codec::Packet) + Send + Sync + 'static,
    ) -> Self {
        self.session.packet_log = Some(crate::proto::PacketLog::new(f));
        self
    }

    /// Reconnect policy.
    pub fn reconnect(mut self, reconnect: ReconnectOptions) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Capacity of the incoming message channel.
    pub fn message_capacity(mut self, capacity: usize) -> Self {
        self.message_capacity = capacity.max(1);
        self
    }

    /// Incoming messages held beyond the channel (also the Receive Maximum
    /// sent in 5.0); see the crate documentation on back-pressure.
    pub fn max_held_messages(mut self, messages: usize) -> Self {
        self.max_held_messages = messages.max(1);
        self
    }

    /// The client's own cap on outgoing QoS 1 and 2 messages in flight (the
    /// window is the smaller of this and the broker's Receive Maximum;
    /// default 100).
    pub fn max_inflight(mut self, messages: u16) -> Self {
        self.session.max_inflight = messages.max(1);
        self
    }

    /// How many publishes may wait while offline before they are refused
    /// (default 10,000).
    pub fn max_queued(mut self, messages: usize) -> Self {
        self.session.max_queued = messages;
        self
    }

    /// The whole session options (the setters above change parts of them).
    pub fn session(mut self, session: ConnectOptions) -> Self {
        self.session = session;
        self
    }

    /// `host:port` for messages.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
