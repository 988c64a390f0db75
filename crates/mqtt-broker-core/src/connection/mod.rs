//! One transport connection: the handles and facts the driver gives the
//! broker (this file), and the per-connection protocol state, one concern
//! per module: the handshake and authentication, keep alive, flow control,
//! topic aliases, and writing packets out.

mod flow_control;
mod handshake;
mod keep_alive;
mod state;
mod topic_aliases;
mod transmit;

pub(crate) use handshake::{auth_request, PendingConnect};
pub(crate) use keep_alive::keep_alive_grace;
pub(crate) use state::{Conn, ConnState, LocalOut};
pub(crate) use transmit::OutgoingPublish;

use mqtt_codec::QoS;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Identifies one transport connection for the lifetime of the [`crate::Broker`].
///
/// Handed out by [`crate::Broker::connection_opened`]; identifiers are never
/// reused for another connection while the broker lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

impl crate::slab::Key for ConnectionId {
    fn from_parts(slot: u32, generation: u32) -> Self {
        Self((u64::from(generation) << 32) | u64::from(slot))
    }

    fn slot(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl ConnectionId {
    /// A number for logs and maps; unique per broker.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.0 as u32, self.0 >> 32)
    }
}

/// The identity a verified TLS client certificate carries, as plain strings
/// (the core does not depend on a TLS library).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PeerCertificate {
    /// The subject's Common Name (CN), if the certificate has one.
    pub common_name: Option<String>,
    /// The whole subject as text (for `use_subject_as_username`), e.g.
    /// `CN=sensor-1,O=Home,C=NL`.
    pub subject: String,
}

impl PeerCertificate {
    /// The identity of a certificate with this Common Name and subject.
    pub fn new(common_name: Option<String>, subject: impl Into<String>) -> Self {
        Self {
            common_name,
            subject: subject.into(),
        }
    }
}

/// Per-listener settings that change how a client on that listener is
/// authenticated and what it may do. Names follow Mosquitto's
/// configuration keys. Built from the defaults with one setter per field:
///
/// ```
/// use mqtt_broker_core::ListenerSettings;
/// let settings = ListenerSettings::default()
///     .require_certificate(true)
///     .use_identity_as_username(true);
/// assert!(settings.use_identity_as_username);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerSettings {
    /// Local port of the listener (for the `New connection from … on port …` log line).
    pub port: u16,
    /// `require_certificate`: the TLS layer verified a client certificate.
    /// A client whose certificate was verified under this setting counts as
    /// authenticated (so the seed guide's ssl.conf works unchanged), even without a user name.
    pub require_certificate: bool,
    /// `use_identity_as_username`: the certificate's Common Name becomes the
    /// user name; the CONNECT user name and password are ignored.
    pub use_identity_as_username: bool,
    /// `use_subject_as_username`: the certificate's whole subject becomes the
    /// user name; the CONNECT user name and password are ignored.
    pub use_subject_as_username: bool,
    /// `allow_anonymous` for this listener (`per_listener_settings true`);
    /// `None` uses [`crate::BrokerConfig::allow_anonymous`].
    pub allow_anonymous: Option<bool>,
    /// `allow_zero_length_clientid` for this listener; `None` uses
    /// [`crate::BrokerConfig::allow_zero_length_clientid`].
    pub allow_zero_length_clientid: Option<bool>,
    /// `auto_id_prefix` for this listener; `None` uses
    /// [`crate::BrokerConfig::auto_id_prefix`].
    pub auto_id_prefix: Option<String>,
    /// `use_username_as_clientid`: the user name (from CONNECT, or from the
    /// certificate with `use_identity_as_username`) replaces the Client
    /// Identifier, so a client cannot take over another user's session; a
    /// client without a user name is refused.
    pub use_username_as_clientid: bool,
    /// `max_qos`: the highest QoS clients of this listener may publish with
    /// and are granted on subscriptions (sent to 5.0 clients as Maximum
    /// QoS). A PUBLISH above it ends the connection (5.0: DISCONNECT 0x9B),
    /// a will above it refuses the CONNECT. Default 2.
    pub max_qos: QoS,
    /// `mount_point`: the clients of this listener live under this topic
    /// prefix. Their PUBLISH topics, subscription and unsubscription
    /// filters (a shared subscription's shared filter) and will topics are
    /// prefixed with it, and it is taken off the topics of the messages
    /// they receive, so they see only their part of the tree and cannot
    /// reach outside it. `None` (default): no prefix.
    pub mount_point: Option<String>,
    /// `max_topic_alias` of this listener: the Topic Alias Maximum sent to
    /// its 5.0 clients (0: none); `None` uses
    /// [`crate::BrokerConfig::max_topic_alias`].
    pub max_topic_alias: Option<u16>,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            port: 0,
            require_certificate: false,
            use_identity_as_username: false,
            use_subject_as_username: false,
            allow_anonymous: None,
            allow_zero_length_clientid: None,
            auto_id_prefix: None,
            use_username_as_clientid: false,
            max_qos: QoS::ExactlyOnce,
            mount_point: None,
            max_topic_alias: None,
        }
    }
}

crate::setters::setters! {
    ListenerSettings;
    port: u16,
    require_certificate: bool,
    use_identity_as_username: bool,
    use_subject_as_username: bool,
    allow_anonymous: Option<bool>,
    allow_zero_length_clientid: Option<bool>,
    auto_id_prefix: Option<String>,
    use_username_as_clientid: bool,
    max_qos: QoS,
    mount_point: Option<String>,
    max_topic_alias: Option<u16>,
}

/// Everything the broker needs to know about a new transport connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// Settings of the listener that accepted the connection, shared by
    /// the connections it accepted (read them through `Deref`:
    /// `info.listener.port`).
    pub listener: Arc<ListenerSettings>,
    /// The verified client certificate, if the TLS layer received one.
    pub tls: Option<PeerCertificate>,
}

impl ConnectionInfo {
    /// The address an in-process connection carries
    /// ([`ConnectionInfo::in_process`]): `127.0.0.1:0`, a placeholder no
    /// socket has (port 0 is never a peer's port), which log lines show.
    pub const IN_PROCESS_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

    /// A plain TCP connection from `remote_addr` on a listener with default settings.
    pub fn new(remote_addr: SocketAddr) -> Self {
        Self {
            remote_addr,
            listener: Arc::default(),
            tls: None,
        }
    }

    /// With the settings of the listener that accepted it: a
    /// [`ListenerSettings`], or an `Arc` of them shared by the listener's
    /// connections.
    pub fn with_listener(mut self, listener: impl Into<Arc<ListenerSettings>>) -> Self {
        self.listener = listener.into();
        self
    }

    /// With the verified client certificate's identity.
    pub fn with_tls(mut self, tls: Option<PeerCertificate>) -> Self {
        self.tls = tls;
        self
    }

    /// An in-process connection ([`crate::Broker::local_connection_opened`]):
    /// address [`ConnectionInfo::IN_PROCESS_ADDR`], default listener
    /// settings (port 0), no certificate.
    pub fn in_process() -> Self {
        Self::new(Self::IN_PROCESS_ADDR)
    }
}
