//! Limits and switches of the broker, named after Mosquitto's configuration keys.

use std::time::Duration;

/// The start of an assigned Client Identifier unless `auto_id_prefix` says
/// otherwise (as in Mosquitto).
pub const DEFAULT_AUTO_ID_PREFIX: &str = "auto-";

/// Broker-wide settings. Defaults follow Mosquitto 2.0 without a config file
/// (anonymous clients allowed), except where noted.
///
/// Built from the defaults with one setter per field (the struct may gain
/// fields, so it cannot be built with a literal outside this crate):
///
/// ```
/// use mqtt_broker_core::BrokerConfig;
/// let config = BrokerConfig::default()
///     .allow_anonymous(false)
///     .max_inflight_messages(10);
/// assert!(!config.allow_anonymous);
/// assert_eq!(config.max_queued_messages, 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// `max_connections`: most simultaneous connections; `None` is unlimited
    /// (Mosquitto's `-1`).
    pub max_connections: Option<usize>,
    /// `max_keepalive`: the largest Keep Alive accepted, in seconds. A 5.0
    /// client asking for more is told this value in Server Keep Alive; a 3.1.1
    /// client asking for more is refused (as Mosquitto does).
    pub max_keepalive: u16,
    /// `message_size_limit`: the largest PUBLISH payload accepted, in bytes;
    /// `0` is no limit beyond the packet size. Larger messages are dropped.
    pub message_size_limit: u32,
    /// `max_packet_size`: the largest packet accepted from a client, fixed
    /// header included; `0` is MQTT's maximum. Sent to 5.0 clients as
    /// Maximum Packet Size.
    pub max_packet_size: u32,
    /// `max_inflight_messages`: QoS 1 and 2 messages sent to a client and not
    /// yet acknowledged; `0` is unlimited (65,535). Also sent to 5.0 clients as
    /// Receive Maximum, bounding the QoS 2 messages they may have unreleased.
    pub max_inflight_messages: u16,
    /// `max_queued_messages`: messages waiting for a client beyond the
    /// in-flight window (or while it is offline); `0` is unlimited.
    pub max_queued_messages: usize,
    /// `max_queued_bytes`: payload bytes waiting for a client; `0` is unlimited.
    pub max_queued_bytes: usize,
    /// `queue_qos0_messages`: queue QoS 0 messages for offline persistent sessions.
    pub queue_qos0_messages: bool,
    /// `retain_available`: whether retained messages are supported.
    pub retain_available: bool,
    /// `upgrade_outgoing_qos`: deliver messages at the subscription's QoS
    /// even when they were published at a lower one. This breaks the MQTT
    /// rule that a message never goes out above its published QoS
    /// [MQTT-3.3.5-1]; it exists for Mosquitto configurations that set it
    /// (default false).
    pub upgrade_outgoing_qos: bool,
    /// `max_topic_alias`: Topic Alias Maximum offered to 5.0 clients.
    pub max_topic_alias: u16,
    /// `allow_anonymous`: allow clients with neither a user name nor a
    /// verified client certificate. Listeners may override it.
    pub allow_anonymous: bool,
    /// `allow_zero_length_clientid`: a client may leave its Client
    /// Identifier empty and be assigned one (3.1.1 with Clean Session 1,
    /// 5.0); when false it is refused (Client Identifier not valid).
    /// Listeners may override it.
    pub allow_zero_length_clientid: bool,
    /// `auto_id_prefix`: the start of the Client Identifiers the broker
    /// assigns ([`DEFAULT_AUTO_ID_PREFIX`]). Listeners may override it.
    pub auto_id_prefix: String,
    /// `clientid_prefixes`: only clients whose identifier starts with this
    /// may connect (others: Not authorized); `None` lets any in.
    pub clientid_prefixes: Option<String>,
    /// `sys_interval`: period of the `$SYS/broker/...` updates; zero turns them off.
    pub sys_interval: Duration,
    /// Time a new connection has to send CONNECT (and finish an AUTH
    /// exchange) before it is closed.
    pub connect_timeout: Duration,
    /// How long a deferred authentication ([`crate::AuthDecision::Defer`])
    /// may take before the client is refused (0x88 Server unavailable).
    pub auth_timeout: Duration,
    /// `write_timeout` (this broker's key): how long a write to a client
    /// may make no progress (a client that stopped reading) before its
    /// connection is closed. `None`: 1.5 times the client's Keep Alive, as
    /// Mosquitto users know from keep-alive expiry, or 60 s with Keep Alive
    /// 0.
    pub write_timeout: Option<Duration>,
    /// `persistent_client_expiration`: upper bound on how long a persistent
    /// session (3.1.1 clean session 0, or 5.0 Session Expiry Interval) lives
    /// while its client is offline; `None` keeps them as long as they ask.
    pub persistent_client_expiration: Option<Duration>,
    /// Back-pressure bound (no Mosquitto equivalent): outgoing bytes waiting
    /// for the driver to take them. Beyond it QoS 0 messages for that client
    /// are dropped and QoS 1/2 messages wait in its session queue.
    pub max_transmit_bytes: usize,
    /// `max_subscriptions_per_client` (this broker's key, not Mosquitto's):
    /// the most topic filters one session may hold; `0` is unlimited.
    /// SUBSCRIBE filters beyond it are refused one by one (5.0: 0x97 Quota
    /// exceeded; 3.1.1: 0x80 Failure) while the others in the packet are
    /// granted; subscribing again to a filter the session has replaces it
    /// and does not count twice.
    pub max_subscriptions_per_client: usize,
    /// `memory_limit`: bytes the broker may hold for clients (messages
    /// queued, in flight, retained and wills, counted once each, and
    /// packets being received; see [`crate::memory`]); `0` is no limit.
    /// Past it a new PUBLISH is refused (5.0: PUBACK/PUBREC 0x97 Quota
    /// exceeded, QoS 0 dropped; 3.1.1: the publisher is disconnected, as
    /// in Mosquitto), and a client whose packet being received does not fit
    /// is disconnected (5.0: DISCONNECT 0x97).
    pub memory_limit: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_keepalive: 65_535,
            message_size_limit: 0,
            max_packet_size: 0,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            retain_available: true,
            upgrade_outgoing_qos: false,
            max_topic_alias: 10,
            allow_anonymous: true,
            allow_zero_length_clientid: true,
            auto_id_prefix: DEFAULT_AUTO_ID_PREFIX.to_string(),
            clientid_prefixes: None,
            sys_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            write_timeout: None,
            persistent_client_expiration: None,
            max_transmit_bytes: 1 << 20,
            max_subscriptions_per_client: Self::DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT,
            memory_limit: 0,
        }
    }
}

impl BrokerConfig {
    /// The effective maximum packet size accepted from clients.
    pub fn effective_max_packet_size(&self) -> u32 {
        if self.max_packet_size == 0 {
            mqtt_codec::MAX_PACKET_SIZE
        } else {
            self.max_packet_size
        }
    }

    /// The default of [`BrokerConfig::max_subscriptions_per_client`].
    pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT: usize = 10_000;

    /// Without `write_timeout`, the bound for a client with Keep Alive 0.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

    pub(crate) fn inflight_window(&self) -> u16 {
        if self.max_inflight_messages == 0 {
            u16::MAX
        } else {
            self.max_inflight_messages
        }
    }
}

crate::setters::setters! {
    BrokerConfig;
    max_connections: Option<usize>,
    max_keepalive: u16,
    message_size_limit: u32,
    max_packet_size: u32,
    max_inflight_messages: u16,
    max_queued_messages: usize,
    max_queued_bytes: usize,
    queue_qos0_messages: bool,
    retain_available: bool,
    upgrade_outgoing_qos: bool,
    max_topic_alias: u16,
    allow_anonymous: bool,
    allow_zero_length_clientid: bool,
    clientid_prefixes: Option<String>,
    sys_interval: Duration,
    connect_timeout: Duration,
    auth_timeout: Duration,
    write_timeout: Option<Duration>,
    persistent_client_expiration: Option<Duration>,
    max_transmit_bytes: usize,
    max_subscriptions_per_client: usize,
    memory_limit: usize,
}

impl BrokerConfig {
    /// Sets [`BrokerConfig::auto_id_prefix`].
    pub fn auto_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.auto_id_prefix = prefix.into();
        self
    }
}
