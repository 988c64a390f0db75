//! Mosquitto's `mosquitto.conf` syntax, parsed into a typed [`Config`].
//!
//! The files users already have keep working: Debian's stock
//! `/etc/mosquitto/mosquitto.conf` (with its `include_dir /etc/mosquitto/conf.d`)
//! and the guide's `conf.d/ssl.conf`:
//!
//! ```
//! use mqtt_broker_core::config::Config;
//! let (config, warnings) = Config::parse_str(
//!     "listener 8883\n\
//!      cafile /etc/mosquitto/ca_certificates/ca.crt\n\
//!      certfile /etc/mosquitto/certs/server.crt\n\
//!      keyfile /etc/mosquitto/certs/server.key\n\
//!      require_certificate true\n",
//!     "ssl.conf",
//! )?;
//! assert!(warnings.is_empty());
//! let listener = &config.listeners[0];
//! assert_eq!(listener.port, 8883);
//! assert!(listener.tls.require_certificate);
//! // Mosquitto 2: a configured listener means anonymous access is off
//! // unless `allow_anonymous true` is written.
//! assert!(!config.allow_anonymous(listener));
//! # Ok::<(), mqtt_broker_core::config::ConfigError>(())
//! ```
//!
//! The parser reads files and lists `include_dir` directories, nothing else:
//! certificate, password and ACL files are only recorded as paths. Every key
//! is described in `docs/configuration.md`.
//!
//! # Anonymous access and `per_listener_settings`
//!
//! [`SecurityOptions::allow_anonymous`] keeps what the file says (`None` when
//! the option is absent). [`Config::allow_anonymous`] applies Mosquitto 2's
//! defaults: absent means `true` in local-only mode (no `listener`, `port` or
//! `bind_address` anywhere, so only loopback is served) and `false` as soon
//! as the configuration defines a listener. With `per_listener_settings
//! false` (the default) `allow_anonymous`, `password_file`, `acl_file` and
//! `allow_zero_length_clientid` are global ([`Config::security`]); with
//! `true` each listener has its own ([`ListenerConfig::security`]), and the
//! option must come before any of them. [`Config::security_for`] picks the
//! right one.

mod bridge;
mod error;
mod keys;
mod parser;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mqtt_codec::QoS;

pub use error::{ConfigError, Warning};
pub use keys::{IGNORED as IGNORED_KEYS, SUPPORTED as SUPPORTED_KEYS};

/// The port Mosquitto listens on when none is given.
pub const DEFAULT_PORT: u16 = 1883;

/// The persistence file's name when `persistence_file` is not given. Not
/// Mosquitto's `mosquitto.db`: the formats differ, so the two brokers can
/// share a `persistence_location` without touching each other's file.
pub const DEFAULT_PERSISTENCE_FILE: &str = "mqtt-broker.db";

/// A whole broker configuration: global options and the listeners to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Files read, in order: the main file, then the `include_dir` files.
    pub files: Vec<String>,
    /// Mosquitto 2's local-only mode: the configuration defines no listener
    /// (no `listener`, `port` or `bind_address`), so the broker listens on
    /// `127.0.0.1` and `::1` port 1883 only, and anonymous clients are
    /// allowed unless `allow_anonymous false` is written. `listeners` then
    /// holds those two loopback listeners.
    pub local_only: bool,
    /// Listeners to open, in file order; a listener configured with `port` /
    /// `bind_address` / options before the first `listener` line (Mosquitto's
    /// "default listener") comes last, as in Mosquitto.
    pub listeners: Vec<ListenerConfig>,
    /// `per_listener_settings`: whether auth options are per listener.
    pub per_listener_settings: bool,
    /// Global auth options (used when `per_listener_settings` is false).
    pub security: SecurityOptions,
    /// `max_keepalive`: the largest keep-alive accepted (5.0 clients asking
    /// for more get a Server Keep Alive). 0..=65535, default 65535.
    pub max_keepalive: u16,
    /// `message_size_limit`: largest PUBLISH payload in bytes; 0 = no limit.
    pub message_size_limit: u32,
    /// `max_packet_size`: largest packet accepted, in bytes; `None` = the
    /// protocol maximum.
    pub max_packet_size: Option<u32>,
    /// `max_inflight_messages`: outgoing QoS 1/2 messages in flight per
    /// client; 0 = no limit. Default 20.
    pub max_inflight_messages: u16,
    /// `max_queued_messages`: QoS 1/2 messages queued per client beyond those
    /// in flight; 0 = no limit. Default 1000.
    pub max_queued_messages: u32,
    /// `max_queued_bytes`: bytes queued per client; 0 = no limit (default).
    pub max_queued_bytes: u64,
    /// `memory_limit`: bytes the broker may hold for clients (see
    /// [`crate::memory`]); 0 = no limit (default). Reloaded.
    pub memory_limit: u64,
    /// `queue_qos0_messages`: queue QoS 0 messages for offline persistent
    /// clients. Default false.
    pub queue_qos0_messages: bool,
    /// `retain_available`: whether retained messages are supported. Default true.
    pub retain_available: bool,
    /// `upgrade_outgoing_qos`: deliver at the subscription's QoS even above
    /// the published one (not MQTT-conforming; Mosquitto's option). Default false.
    pub upgrade_outgoing_qos: bool,
    /// `persistence` (or `retained_persistence`): keep persistent sessions,
    /// their queued and in-flight messages and retained messages in a file
    /// ([`Config::persistence_path`]) across restarts. Default false.
    pub persistence: bool,
    /// `persistence_location`: the directory of the persistence file;
    /// `None` is the working directory (as in Mosquitto).
    pub persistence_location: Option<PathBuf>,
    /// `persistence_file`: the persistence file's name; `None` is
    /// [`DEFAULT_PERSISTENCE_FILE`].
    pub persistence_file: Option<String>,
    /// `persistent_client_expiration`: how long a disconnected persistent
    /// session is kept; `None` = forever (default).
    pub persistent_client_expiration: Option<Duration>,
    /// `write_timeout SECONDS` (this broker's key, not Mosquitto's): how
    /// long a write to a client that stopped reading may make no progress
    /// before its connection is closed. `None`: 1.5 times the client's Keep
    /// Alive (60 s with Keep Alive 0).
    pub write_timeout: Option<Duration>,
    /// `max_subscriptions_per_client N` (this broker's key, not
    /// Mosquitto's): the most topic filters one client's session may hold;
    /// 0 = no limit. Default 10000.
    pub max_subscriptions_per_client: u32,
    /// `certificate_watch_interval SECONDS` (this broker's key): look at
    /// the TLS listeners' certificate, key and CA files this often and
    /// serve new files as soon as a renewal job replaced them, without a
    /// SIGHUP. `None` (the default): only on reload.
    pub certificate_watch_interval: Option<Duration>,
    /// `log_type`: which kinds of log lines to emit. Default: error, warning,
    /// notice, information.
    pub log_types: BTreeSet<LogType>,
    /// `connection_messages`: log client connects and disconnects. Default true.
    pub connection_messages: bool,
    /// `sys_interval`: seconds between `$SYS` updates; 0 disables. Default 10.
    pub sys_interval: u16,
    /// `clientid_prefixes`: only clients whose identifier starts with this
    /// may connect (deprecated in Mosquitto 2, still honoured). `None`
    /// (default): any.
    pub clientid_prefixes: Option<String>,
    /// `connection NAME` sections: bridges to other brokers, in file order
    /// (see [`crate::bridge`] and docs/bridges.md).
    pub bridges: Vec<crate::bridge::BridgeConfig>,
    /// `metrics_listener PORT [BIND_ADDRESS]`: serve the statistics for
    /// Prometheus over HTTP at `/metrics` on this port (all addresses, or
    /// only `BIND_ADDRESS`). `None` (default): no metrics listener.
    pub metrics_listener: Option<MetricsListener>,
}

/// Where the Prometheus metrics are served (`metrics_listener`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsListener {
    /// The TCP port.
    pub port: u16,
    /// The address or host name to bind; `None` = every address (IPv4 and IPv6).
    pub bind_address: Option<String>,
    /// Where it was configured.
    pub origin: Origin,
}

/// Auth options that are global or per listener depending on
/// `per_listener_settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    /// `allow_anonymous` as written; `None` when absent (see
    /// [`Config::allow_anonymous`] for the default).
    pub allow_anonymous: Option<bool>,
    /// `password_file`: Mosquitto password file (see
    /// [`crate::password_file`]).
    pub password_file: Option<PathBuf>,
    /// `acl_file`: Mosquitto ACL file (see [`crate::acl_file`]).
    pub acl_file: Option<PathBuf>,
    /// `allow_zero_length_clientid` as written; `None` = default (`true`).
    pub allow_zero_length_clientid: Option<bool>,
    /// `auto_id_prefix` as written: the start of identifiers the broker
    /// assigns; `None` = default (`auto-`).
    pub auto_id_prefix: Option<String>,
}

/// One listening socket and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// TCP port (1..=65535).
    pub port: u16,
    /// Address or host name to bind; `None` = all addresses.
    pub bind_address: Option<String>,
    /// `socket_domain`: restrict to IPv4 or IPv6; `None` = both.
    pub socket_domain: Option<SocketDomain>,
    /// `max_connections`: `None` = no limit (default; negative values too).
    pub max_connections: Option<u32>,
    /// `max_topic_alias`: topic aliases a 5.0 client may create. Default 10.
    pub max_topic_alias: u16,
    /// TLS options (TLS is on when `certfile` and `keyfile` are set).
    pub tls: TlsOptions,
    /// `protocol`: MQTT straight over TCP/TLS (default), or over WebSockets.
    pub protocol: ListenerProtocol,
    /// `max_qos` (also `maximum_qos`): the highest QoS clients of this
    /// listener may use. Default 2.
    pub max_qos: QoS,
    /// `use_username_as_clientid`: a client's user name replaces its
    /// Client Identifier; clients without one are refused. Default false.
    pub use_username_as_clientid: bool,
    /// `mount_point`: topic prefix the clients of this listener live under
    /// (see [`crate::ListenerSettings::mount_point`]). `None` (default): none.
    pub mount_point: Option<String>,
    /// Auth options of this listener, used only with `per_listener_settings true`.
    pub security: SecurityOptions,
    /// Where the listener was defined.
    pub origin: Origin,
}

/// What a listener speaks (`protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// `mqtt`: MQTT over TCP, or TLS with `certfile`/`keyfile`.
    #[default]
    Mqtt,
    /// `websockets`: MQTT over WebSockets (`ws://`, or `wss://` with
    /// `certfile`/`keyfile`).
    Websockets,
}

/// TLS options of a listener. Paths only; nothing is opened here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `cafile`: CA certificates (PEM) to verify client certificates.
    pub cafile: Option<PathBuf>,
    /// `capath`: directory of CA certificates.
    pub capath: Option<PathBuf>,
    /// `certfile`: the server certificate chain (PEM).
    pub certfile: Option<PathBuf>,
    /// `keyfile`: the server private key (PEM).
    pub keyfile: Option<PathBuf>,
    /// `crlfile`: certificate revocation list (PEM).
    pub crlfile: Option<PathBuf>,
    /// `require_certificate`: clients must present a certificate signed by
    /// `cafile`/`capath`. Default false.
    pub require_certificate: bool,
    /// `use_identity_as_username`: the certificate's Common Name becomes the
    /// username. Default false.
    pub use_identity_as_username: bool,
    /// `use_subject_as_username`: the certificate's full subject becomes the
    /// username. Default false.
    pub use_subject_as_username: bool,
    /// `tls_version`: the minimum TLS version; `None` = TLS 1.2 and 1.3.
    pub tls_version: Option<TlsVersion>,
}

impl TlsOptions {
    /// Whether this listener speaks TLS (`certfile` and `keyfile` given).
    pub fn enabled(&self) -> bool {
        self.certfile.is_some() && self.keyfile.is_some()
    }
}

// One TLS version type, `mqtt_tls::TlsVersion`: with the `tokio` feature
// (the driver, which links rustls through mqtt-tls anyway) the parsed
// `tls_version` is that type, and goes to `ServerTlsOptions::min_version`
// unconverted. mqtt-tls cannot depend on this crate (the client uses it
// too), and `mosquitto` without `tokio` must not pull in rustls, so that
// build declares the same enum below: keep the two alike (variants,
// derives, default), so turning `tokio` on changes no code that compiles.
#[cfg(feature = "tokio")]
pub use mqtt_tls::TlsVersion;

/// Minimum TLS version of a listener (`tls_version`). The same type as
/// `mqtt_tls::TlsVersion` when the `tokio` feature is on.
#[cfg(not(feature = "tokio"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TlsVersion {
    /// `tlsv1.2`: TLS 1.2 and 1.3 (also what `tlsv1.1` gives here).
    #[default]
    Tls12,
    /// `tlsv1.3`: TLS 1.3 only.
    Tls13,
}

/// `socket_domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketDomain {
    /// `ipv4`
    Ipv4,
    /// `ipv6`
    Ipv6,
}

/// A `log_type` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogType {
    /// `debug`
    Debug,
    /// `error`
    Error,
    /// `warning`
    Warning,
    /// `notice`
    Notice,
    /// `information`
    Information,
    /// `subscribe`
    Subscribe,
    /// `unsubscribe`
    Unsubscribe,
    /// `websockets` (accepted; no websockets here)
    Websockets,
    /// `internal`
    Internal,
}

impl LogType {
    /// Every log type (`log_type all`).
    pub const ALL: [LogType; 9] = [
        LogType::Debug,
        LogType::Error,
        LogType::Warning,
        LogType::Notice,
        LogType::Information,
        LogType::Subscribe,
        LogType::Unsubscribe,
        LogType::Websockets,
        LogType::Internal,
    ];
}

/// A place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file (or origin name given to [`Config::parse_str`]).
    pub file: String,
    /// 1-based line; 0 for listeners not written in any file.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl ListenerConfig {
    /// A plain TCP listener with Mosquitto's defaults.
    pub fn new(port: u16, bind_address: Option<String>) -> Self {
        ListenerConfig {
            port,
            bind_address,
            socket_domain: None,
            max_connections: None,
            max_topic_alias: 10,
            tls: TlsOptions::default(),
            protocol: ListenerProtocol::Mqtt,
            max_qos: QoS::ExactlyOnce,
            use_username_as_clientid: false,
            mount_point: None,
            security: SecurityOptions::default(),
            origin: Origin {
                file: String::new(),
                line: 0,
            },
        }
    }
}

impl Default for Config {
    /// No configuration file: Mosquitto 2's local-only mode, listening on
    /// `127.0.0.1:1883` and `[::1]:1883`, anonymous clients allowed.
    fn default() -> Self {
        Config {
            files: Vec::new(),
            local_only: true,
            listeners: Config::local_only_listeners(DEFAULT_PORT),
            per_listener_settings: false,
            security: SecurityOptions::default(),
            max_keepalive: 65535,
            message_size_limit: 0,
            max_packet_size: None,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            memory_limit: 0,
            queue_qos0_messages: false,
            retain_available: true,
            upgrade_outgoing_qos: false,
            persistence: false,
            persistence_location: None,
            persistence_file: None,
            persistent_client_expiration: None,
            write_timeout: None,
            max_subscriptions_per_client: 10_000,
            certificate_watch_interval: None,
            log_types: [
                LogType::Error,
                LogType::Warning,
                LogType::Notice,
                LogType::Information,
            ]
            .into_iter()
            .collect(),
            connection_messages: true,
            sys_interval: 10,
            clientid_prefixes: None,
            bridges: Vec::new(),
            metrics_listener: None,
        }
    }
}

impl Config {
    /// Whether a log line at `level` to `target` is shown under this
    /// configuration's `log_type`s and `connection_messages`, as Mosquitto
    /// 2.0 shows its lines (for a `tracing` filter; `-v` is `log_type all`).
    ///
    /// The broker logs to `mqtt_broker` (errors, warnings, INFO for
    /// Mosquitto's notice and information lines, DEBUG for the packet
    /// lines), `mqtt_broker::connection` (the lines `connection_messages
    /// false` turns off), and `mqtt_broker::subscribe` /
    /// `mqtt_broker::unsubscribe` (`log_type subscribe` / `unsubscribe`).
    pub fn log_enabled(&self, target: &str, level: tracing::Level) -> bool {
        let has = |t: LogType| self.log_types.contains(&t);
        if target.starts_with("mqtt_broker::subscribe") {
            return has(LogType::Subscribe);
        }
        if target.starts_with("mqtt_broker::unsubscribe") {
            return has(LogType::Unsubscribe);
        }
        if target.starts_with("mqtt_broker::connection") && !self.connection_messages {
            return false;
        }
        match level {
            tracing::Level::ERROR => has(LogType::Error),
            tracing::Level::WARN => has(LogType::Warning),
            tracing::Level::INFO => has(LogType::Notice) || has(LogType::Information),
            _ => has(LogType::Debug),
        }
    }

    /// Where `persistence true` keeps its file: `persistence_location`
    /// joined with `persistence_file` ([`DEFAULT_PERSISTENCE_FILE`]).
    pub fn persistence_path(&self) -> PathBuf {
        let file = self
            .persistence_file
            .as_deref()
            .unwrap_or(DEFAULT_PERSISTENCE_FILE);
        match &self.persistence_location {
            Some(dir) => dir.join(file),
            None => PathBuf::from(file),
        }
    }

    /// Reads `path` (and the files of its `include_dir`) into a config.
    pub fn load(path: impl AsRef<Path>) -> Result<(Config, Vec<Warning>), ConfigError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let name = path.display().to_string();
        let text = parser::decode(&bytes, &name)?;
        parser::parse(&text, &name)
    }

    /// Parses configuration text; `origin_name` names it in errors and
    /// warnings. `include_dir` lines are followed on the file system.
    pub fn parse_str(text: &str, origin_name: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        parser::parse(text, origin_name)
    }

    /// The two loopback listeners of local-only mode on `port`.
    pub fn local_only_listeners(port: u16) -> Vec<ListenerConfig> {
        ["127.0.0.1", "::1"]
            .into_iter()
            .map(|a| ListenerConfig::new(port, Some(a.to_owned())))
            .collect()
    }

    /// The auth options that apply to clients of `listener`: its own with
    /// `per_listener_settings true`, the global ones otherwise.
    pub fn security_for<'a>(&'a self, listener: &'a ListenerConfig) -> &'a SecurityOptions {
        if self.per_listener_settings {
            &listener.security
        } else {
            &self.security
        }
    }

    /// Whether clients without a username (and without a
    /// verified certificate) may connect to `listener`.
    ///
    /// An explicit `allow_anonymous` wins. Absent, it is `true` only in
    /// local-only mode: Mosquitto 2 turns anonymous access off as soon as
    /// the configuration defines a listener.
    pub fn allow_anonymous(&self, listener: &ListenerConfig) -> bool {
        self.security_for(listener)
            .allow_anonymous
            .unwrap_or(self.local_only)
    }

    /// Whether a client of `listener` may leave its Client Identifier
    /// empty and have one assigned (`allow_zero_length_clientid`, default
    /// true).
    pub fn allow_zero_length_clientid(&self, listener: &ListenerConfig) -> bool {
        self.security_for(listener)
            .allow_zero_length_clientid
            .unwrap_or(true)
    }

    /// The start of the identifiers assigned to clients of `listener`
    /// (`auto_id_prefix`, default `auto-`).
    pub fn auto_id_prefix<'a>(&'a self, listener: &'a ListenerConfig) -> &'a str {
        self.security_for(listener)
            .auto_id_prefix
            .as_deref()
            .unwrap_or(crate::DEFAULT_AUTO_ID_PREFIX)
    }
}
