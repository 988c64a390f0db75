//! Bridges: this broker connects to another broker as a client and passes
//! messages both ways, as Mosquitto's `connection NAME` sections do.
//!
//! Without features this module holds what a bridge is ([`BridgeConfig`])
//! and Mosquitto's topic rules ([`topic`]). With feature `bridge` it also
//! holds `Bridge`, the sans-IO state machine that joins a local
//! connection of the [`Broker`](crate::Broker) to a remote connection
//! driven by `mqtt_client::proto`; the tokio driver dials for it.

pub mod topic;

#[cfg(feature = "bridge")]
mod link;

#[cfg(feature = "bridge")]
pub use link::{Bridge, BridgeAction, BridgeStats};

pub use topic::{map_incoming, map_outgoing, BridgeDirection, BridgeTopic, BridgeTopicError};

use mqtt_codec::ProtocolVersion;
use std::path::PathBuf;
use std::time::Duration;

/// One address of a bridge: `host[:port]` (port 1883 when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAddress {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BridgeAddress {
    /// Parses `host[:port]` as Mosquitto does: the last `:` separates the
    /// port, so an IPv6 address needs one (`::1:1883`); `[::1]:1883` is
    /// accepted too.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty address".into());
        }
        let (host, port) = match s.rfind(':') {
            Some(i) => {
                let port = &s[i + 1..];
                match port.parse::<u16>() {
                    Ok(p) if p >= 1 => (&s[..i], p),
                    _ => return Err(format!("invalid port '{port}' (1 to 65535)")),
                }
            }
            None => (s, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("no host in '{s}'"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for BridgeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// `start_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartType {
    /// `automatic` (default): connect at start, reconnect after
    /// `restart_timeout` when the connection ends.
    #[default]
    Automatic,
    /// `lazy`: connect when `threshold` messages are queued for the remote;
    /// disconnect after `idle_timeout` without traffic.
    Lazy,
    /// `once`: connect at start; never reconnect.
    Once,
}

/// `restart_timeout`: how long to wait before connecting again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartTimeout {
    /// `restart_timeout SECONDS`: always this long.
    Constant(Duration),
    /// `restart_timeout BASE CAP` (default 5 30): Mosquitto's "decorrelated
    /// jitter" back-off, between `base` and three times the last wait,
    /// at most `cap`; back to `base` once connected.
    Backoff {
        /// The shortest wait.
        base: Duration,
        /// The longest wait.
        cap: Duration,
    },
}

impl Default for RestartTimeout {
    fn default() -> Self {
        RestartTimeout::Backoff {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(30),
        }
    }
}

/// A bridge's TLS settings (`bridge_cafile`, ...). TLS is on when
/// `cafile` or `capath` is set, as in Mosquitto.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeTls {
    /// `bridge_cafile`: CA certificates the remote's certificate is checked against.
    pub cafile: Option<PathBuf>,
    /// `bridge_capath`: a directory of CA certificates.
    pub capath: Option<PathBuf>,
    /// `bridge_certfile`: this bridge's client certificate.
    pub certfile: Option<PathBuf>,
    /// `bridge_keyfile`: its private key.
    pub keyfile: Option<PathBuf>,
    /// `bridge_insecure`: do not check that the certificate names the host.
    pub insecure: bool,
    /// `bridge_tls_version`: `true` for `tlsv1.3` (TLS 1.3 only); TLS 1.2
    /// and 1.3 otherwise.
    pub tls13_only: bool,
    /// `bridge_alpn`: the ALPN protocol to offer.
    pub alpn: Option<String>,
}

impl BridgeTls {
    /// Whether the bridge speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cafile.is_some() || self.capath.is_some()
    }
}

/// One bridge (`connection NAME` and the lines after it), with Mosquitto
/// 2.0's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// `connection NAME`.
    pub name: String,
    /// `address` / `addresses`: tried in order (see `round_robin`).
    pub addresses: Vec<BridgeAddress>,
    /// `round_robin`: false (default) goes back to the first address as
    /// soon as it answers again; true stays on whichever address works.
    pub round_robin: bool,
    /// `topic` lines.
    pub topics: Vec<BridgeTopic>,
    /// `bridge_protocol_version`: 3.1, 3.1.1 (default) or 5.0.
    pub protocol: ProtocolVersion,
    /// `cleansession` (default false): whether the remote session starts
    /// clean.
    pub clean_session: bool,
    /// `local_cleansession` (default: as `cleansession`): whether the local
    /// session starts clean. A persistent local session keeps what is
    /// queued for the remote while it is away.
    pub local_clean_session: Option<bool>,
    /// `remote_clientid` (`clientid`); default `HOSTNAME.NAME`.
    pub remote_clientid: Option<String>,
    /// `local_clientid`; default `local.` + the remote client id.
    pub local_clientid: Option<String>,
    /// `remote_username` (`username`).
    pub remote_username: Option<String>,
    /// `remote_password` (`password`).
    pub remote_password: Option<String>,
    /// `local_username`.
    pub local_username: Option<String>,
    /// `local_password`.
    pub local_password: Option<String>,
    /// TLS to the remote.
    pub tls: BridgeTls,
    /// `keepalive_interval` (default 60 s, at least 5 s).
    pub keepalive: u16,
    /// `restart_timeout`.
    pub restart_timeout: RestartTimeout,
    /// `start_type`.
    pub start_type: StartType,
    /// `idle_timeout` (lazy bridges; default 60 s).
    pub idle_timeout: Duration,
    /// `threshold` (lazy bridges; default 10 messages).
    pub threshold: u32,
    /// `notifications` (default true).
    pub notifications: bool,
    /// `notification_topic`; default `$SYS/broker/connection/REMOTE_CLIENTID/state`.
    pub notification_topic: Option<String>,
    /// `notifications_local_only` (default false).
    pub notifications_local_only: bool,
    /// `try_private` (default true): tell the remote this is a bridge
    /// (protocol level | 0x80, 3.1 and 3.1.1).
    pub try_private: bool,
    /// `bridge_outgoing_retain` (default true): keep the RETAIN flag on
    /// messages sent to the remote.
    pub outgoing_retain: bool,
    /// `bridge_max_packet_size` (default 0: the protocol's maximum): the
    /// largest packet accepted from the remote.
    pub max_packet_size: u32,
    /// `bridge_attempt_unsubscribe` (default true): unsubscribe on the
    /// remote from `out` topics, in case an earlier configuration
    /// subscribed to them.
    pub attempt_unsubscribe: bool,
}

impl BridgeConfig {
    /// A bridge named `name` to `addresses` with Mosquitto 2.0's defaults
    /// and no topics yet.
    pub fn new(name: impl Into<String>, addresses: Vec<BridgeAddress>) -> Self {
        Self {
            name: name.into(),
            addresses,
            round_robin: false,
            topics: Vec::new(),
            protocol: ProtocolVersion::V3_1_1,
            clean_session: false,
            local_clean_session: None,
            remote_clientid: None,
            local_clientid: None,
            remote_username: None,
            remote_password: None,
            local_username: None,
            local_password: None,
            tls: BridgeTls::default(),
            keepalive: 60,
            restart_timeout: RestartTimeout::default(),
            start_type: StartType::Automatic,
            idle_timeout: Duration::from_secs(60),
            threshold: 10,
            notifications: true,
            notification_topic: None,
            notifications_local_only: false,
            try_private: true,
            outgoing_retain: true,
            max_packet_size: 0,
            attempt_unsubscribe: true,
        }
    }

    /// Adds a topic line.
    pub fn topic(mut self, topic: BridgeTopic) -> Self {
        self.topics.push(topic);
        self
    }

    /// The remote client id: `remote_clientid`, or Mosquitto's
    /// `HOSTNAME.NAME` with the `hostname` the driver found.
    pub fn remote_client_id(&self, hostname: &str) -> String {
        self.remote_clientid
            .clone()
            .unwrap_or_else(|| format!("{hostname}.{}", self.name))
    }

    /// The local client id: `local_clientid`, or `local.` + the remote one.
    pub fn local_client_id(&self, hostname: &str) -> String {
        self.local_clientid
            .clone()
            .unwrap_or_else(|| format!("local.{}", self.remote_client_id(hostname)))
    }

    /// The notification topic: `notification_topic`, or Mosquitto's
    /// `$SYS/broker/connection/REMOTE_CLIENTID/state`.
    pub fn notification_topic(&self, hostname: &str) -> String {
        self.notification_topic.clone().unwrap_or_else(|| {
            format!(
                "$SYS/broker/connection/{}/state",
                self.remote_client_id(hostname)
            )
        })
    }

    /// Whether the local session is persistent (see `local_cleansession`).
    pub fn local_persistent(&self) -> bool {
        !self.local_clean_session.unwrap_or(self.clean_session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_mosquitto_does() {
        let a = BridgeAddress::parse("broker.example.com").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("broker.example.com", 1883));
        let a = BridgeAddress::parse("10.0.0.1:8883").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.1", 8883));
        let a = BridgeAddress::parse("::1:1884").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 1884));
        let a = BridgeAddress::parse("[::1]:1885").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 1885));
        assert!(BridgeAddress::parse("h:0").is_err());
        assert!(BridgeAddress::parse("h:70000").is_err());
        assert!(BridgeAddress::parse("h:x").is_err());
    }

    #[test]
    fn default_ids_and_notification_topic_follow_mosquitto() {
        let b = BridgeConfig::new("central", vec![]);
        assert_eq!(b.remote_client_id("laptop"), "laptop.central");
        assert_eq!(b.local_client_id("laptop"), "local.laptop.central");
        assert_eq!(
            b.notification_topic("laptop"),
            "$SYS/broker/connection/laptop.central/state"
        );
        assert!(b.local_persistent());
        let mut c = b.clone();
        c.clean_session = true;
        assert!(!c.local_persistent());
        c.local_clean_session = Some(false);
        assert!(c.local_persistent());
    }
}
