//! Mosquitto's configuration applied to the core, without a runtime
//! (feature `mosquitto`): the broker-wide limits of a parsed [`Config`]
//! ([`broker_config`]), and the [`Authenticator`] and [`Authorizer`] that
//! check Mosquitto `password_file`s and `acl_file`s.
//!
//! The tokio driver's `ServerBuilder::from_config` uses these; an embedder
//! with its own runtime uses them the same way:
//!
//! ```
//! use mqtt_broker_core::config::Config;
//! use mqtt_broker_core::mosquitto::{broker_config, ConfigAuthenticator, ConfigAuthorizer};
//! use mqtt_broker_core::Broker;
//!
//! let (config, _warnings) = Config::parse_str("max_keepalive 120\n", "broker.conf")?;
//! let broker = Broker::new(broker_config(&config))
//!     .with_authenticator(Box::new(ConfigAuthenticator::global(None)))
//!     .with_authorizer(Box::new(ConfigAuthorizer::new(None)));
//! # drop(broker);
//! # Ok::<(), mqtt_broker_core::config::ConfigError>(())
//! ```

use crate::acl_file::{self, AclFile};
use crate::config::Config;
use crate::password_file::PasswordFile;
use crate::{
    Access, AclRequest, AuthDecision, AuthRequest, Authenticator, Authorizer, BrokerConfig,
};
use mqtt_codec::ReasonCode;
use std::collections::HashMap;
use std::time::Duration;

/// Checks user names and passwords against Mosquitto `password_file`s:
/// one for the whole broker, or one per listener port with
/// `per_listener_settings true`. Without a file a user name is accepted
/// only where anonymous access is on (the listener's `allow_anonymous`), or
/// with a verified client certificate; a user name taken from the client
/// certificate is not checked against the file, as in Mosquitto. A missing
/// or empty password never matches.
#[derive(Debug, Default)]
pub struct ConfigAuthenticator {
    global: Option<PasswordFile>,
    per_port: Option<HashMap<u16, PasswordFile>>,
}

impl ConfigAuthenticator {
    /// One password file for every listener.
    pub fn global(file: Option<PasswordFile>) -> Self {
        Self {
            global: file,
            per_port: None,
        }
    }

    /// One password file per listener port (`per_listener_settings true`);
    /// a port without one accepts every user name.
    pub fn per_listener(files: HashMap<u16, PasswordFile>) -> Self {
        Self {
            global: None,
            per_port: Some(files),
        }
    }

    fn file_for(&self, port: u16) -> Option<&PasswordFile> {
        match &self.per_port {
            Some(map) => map.get(&port),
            None => self.global.as_ref(),
        }
    }
}

impl Authenticator for ConfigAuthenticator {
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision {
        if req.username_from_certificate {
            return AuthDecision::Allow;
        }
        match (self.file_for(req.listener.port), req.username) {
            (Some(file), Some(user)) => {
                // No password, or an empty one, never matches (as in
                // Mosquitto, whose mosquitto_passwd makes no empty ones).
                let password = req.password.filter(|p| !p.is_empty());
                match password {
                    Some(pw) if file.verify(user, pw) => AuthDecision::Allow,
                    _ => AuthDecision::Deny(ReasonCode::BadUserNameOrPassword),
                }
            }
            // A user name alone authenticates nobody: with anonymous access
            // off and no password file to check it against, only a client
            // certificate verified under require_certificate does (as
            // Mosquitto 2 refuses such clients).
            (None, Some(_))
                if req.listener.allow_anonymous == Some(false) && !req.certificate_verified =>
            {
                AuthDecision::Deny(ReasonCode::NotAuthorized)
            }
            _ => AuthDecision::Allow,
        }
    }
}

/// Per-topic access from a Mosquitto `acl_file`; without one, everything is allowed.
#[derive(Debug, Default)]
pub struct ConfigAuthorizer {
    acl: Option<AclFile>,
}

impl ConfigAuthorizer {
    /// Access from `acl` (everything allowed when `None`).
    pub fn new(acl: Option<AclFile>) -> Self {
        Self { acl }
    }
}

impl Authorizer for ConfigAuthorizer {
    fn authorize(&self, req: &AclRequest<'_>) -> bool {
        let Some(acl) = &self.acl else {
            return true;
        };
        let access = match req.access {
            Access::Read => acl_file::Access::Read,
            Access::Write => acl_file::Access::Write,
            Access::Subscribe => acl_file::Access::Subscribe,
        };
        acl.check(req.client_id, req.username, req.topic, access)
    }
}

/// The broker-wide limits of a configuration. Per-listener settings
/// (`max_connections`, `allow_anonymous` with `per_listener_settings`, ...)
/// are not in [`BrokerConfig`]; a driver applies them per listener.
pub fn broker_config(config: &Config) -> BrokerConfig {
    let defaults = BrokerConfig::default();
    BrokerConfig {
        max_connections: None, // per listener, applied by the driver
        max_keepalive: config.max_keepalive,
        message_size_limit: config.message_size_limit,
        max_packet_size: config.max_packet_size.unwrap_or(0),
        max_inflight_messages: config.max_inflight_messages,
        max_queued_messages: config.max_queued_messages as usize,
        max_queued_bytes: usize::try_from(config.max_queued_bytes).unwrap_or(usize::MAX),
        memory_limit: usize::try_from(config.memory_limit).unwrap_or(usize::MAX),
        queue_qos0_messages: config.queue_qos0_messages,
        retain_available: config.retain_available,
        upgrade_outgoing_qos: config.upgrade_outgoing_qos,
        max_topic_alias: config
            .listeners
            .iter()
            .map(|l| l.max_topic_alias)
            .max()
            .unwrap_or(defaults.max_topic_alias),
        allow_anonymous: config.security.allow_anonymous.unwrap_or(config.local_only),
        allow_zero_length_clientid: config
            .security
            .allow_zero_length_clientid
            .unwrap_or(defaults.allow_zero_length_clientid),
        auto_id_prefix: config
            .security
            .auto_id_prefix
            .clone()
            .unwrap_or_else(|| defaults.auto_id_prefix.clone()),
        clientid_prefixes: config.clientid_prefixes.clone(),
        sys_interval: Duration::from_secs(u64::from(config.sys_interval)),
        persistent_client_expiration: config.persistent_client_expiration,
        write_timeout: config.write_timeout,
        max_subscriptions_per_client: usize::try_from(config.max_subscriptions_per_client)
            .unwrap_or(usize::MAX),
        ..defaults
    }
}
