//! A [`ServerBuilder`] from Mosquitto's configuration: listeners, TLS files,
//! `password_file` and `acl_file`.

use super::{DriverError, Listener, ServerBuilder};
use crate::acl_file::AclFile;
use crate::config::{Config, ListenerConfig, ListenerProtocol, SocketDomain};
use crate::mosquitto::{broker_config, ConfigAuthenticator, ConfigAuthorizer};
use crate::password_file::PasswordFile;
use crate::ListenerSettings;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

const TARGET: &str = "mqtt_broker";

fn addresses(l: &ListenerConfig) -> Result<Vec<SocketAddr>, DriverError> {
    let domain_ok = |a: &SocketAddr| match l.socket_domain {
        Some(SocketDomain::Ipv4) => a.is_ipv4(),
        Some(SocketDomain::Ipv6) => a.is_ipv6(),
        None => true,
    };
    let mut addrs: Vec<SocketAddr> = match &l.bind_address {
        None => vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), l.port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), l.port),
        ],
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, l.port)],
            Err(_) => (a.as_str(), l.port)
                .to_socket_addrs()
                .map_err(|e| DriverError::Resolve {
                    address: a.clone(),
                    detail: format!("{e} ({})", l.origin),
                })?
                .collect(),
        },
    };
    addrs.retain(domain_ok);
    addrs.dedup();
    if addrs.is_empty() {
        return Err(DriverError::Config(format!(
            "{}: listener {} has no address left after socket_domain",
            l.origin, l.port
        )));
    }
    Ok(addrs)
}

fn tls_options(l: &ListenerConfig) -> Result<Option<mqtt_tls::ServerTlsOptions>, DriverError> {
    let t = &l.tls;
    match (&t.certfile, &t.keyfile) {
        (Some(cert), Some(key)) => {
            let mut o = mqtt_tls::ServerTlsOptions::new(cert.clone(), key.clone())
                .require_certificate(t.require_certificate)
                // `config::TlsVersion` is `mqtt_tls::TlsVersion` when the driver is on.
                .min_version(t.tls_version.unwrap_or_default())
                .alpn_mqtt(true);
            o.cafile = t.cafile.clone();
            o.capath = t.capath.clone();
            o.crlfile = t.crlfile.clone();
            Ok(Some(o))
        }
        (None, None) => {
            if t.cafile.is_some() || t.capath.is_some() || t.require_certificate {
                Err(DriverError::Config(format!(
                    "{}: listener {} has TLS options (cafile/capath/require_certificate) but no certfile and keyfile; add both to make it a TLS listener",
                    l.origin, l.port
                )))
            } else {
                Ok(None)
            }
        }
        (Some(_), None) | (None, Some(_)) => Err(DriverError::Config(format!(
            "{}: listener {} needs both certfile and keyfile for TLS",
            l.origin, l.port
        ))),
    }
}

impl ServerBuilder {
    /// A server configured like Mosquitto would be by `config`: its
    /// listeners (IPv4 and IPv6 sockets when no address is given), TLS
    /// files (read now, so a wrong file fails here with an explained
    /// error), `password_file`, `acl_file`, limits and `persistence`.
    ///
    /// A persistence file that cannot be used (a directory the broker may
    /// not write, a Mosquitto database, a damaged file) is logged as an
    /// error that says why and is left untouched; the broker then keeps its
    /// state in memory, as Mosquitto keeps running when it cannot save.
    pub fn from_config(config: &Config) -> Result<Self, DriverError> {
        let mut builder = ServerBuilder::new(broker_config(config));
        if config.persistence {
            let path = config.persistence_path();
            match crate::FileStorage::open(&path) {
                Ok(storage) => {
                    tracing::info!(target: TARGET, "Persistence file: {}.", path.display());
                    builder.broker = builder.broker.with_storage(Box::new(storage));
                }
                Err(e) => tracing::error!(
                    target: TARGET,
                    "Error: {e}. Sessions and retained messages are kept in memory only."
                ),
            }
        }

        let (authenticator, authorizer) = security(config)?;
        builder = builder.authenticator(Box::new(authenticator));
        builder = builder.authorizer(Box::new(authorizer));
        builder.config = Some(config.clone());
        builder.certificate_watch = config.certificate_watch_interval;
        builder = listeners(builder, config)?;
        for b in &config.bridges {
            builder = builder.bridge(b.clone());
        }
        if config.local_only {
            tracing::info!(
                target: TARGET,
                "Starting in local only mode. Connections will only be possible from clients running on this machine."
            );
            tracing::info!(
                target: TARGET,
                "Create a configuration file which defines a listener to allow remote access."
            );
        }
        Ok(builder)
    }
}

/// The `password_file` and `acl_file` of `config`, loaded.
pub(super) fn security(
    config: &Config,
) -> Result<(ConfigAuthenticator, ConfigAuthorizer), DriverError> {
    {
        // Authentication: one password file, or one per listener.
        let authenticator = if config.per_listener_settings {
            let mut map = HashMap::new();
            for l in &config.listeners {
                if let Some(p) = &l.security.password_file {
                    map.insert(l.port, PasswordFile::load(p)?);
                }
            }
            ConfigAuthenticator::per_listener(map)
        } else {
            let file = match &config.security.password_file {
                Some(p) => Some(PasswordFile::load(p)?),
                None => None,
            };
            ConfigAuthenticator::global(file)
        };

        // Authorisation: the core asks without naming the listener, so one
        // acl_file serves the whole broker.
        let mut acl_paths: Vec<&PathBuf> = Vec::new();
        if config.per_listener_settings {
            for l in &config.listeners {
                if let Some(p) = &l.security.acl_file {
                    if !acl_paths.contains(&p) {
                        acl_paths.push(p);
                    }
                }
            }
        } else if let Some(p) = &config.security.acl_file {
            acl_paths.push(p);
        }
        if acl_paths.len() > 1 {
            return Err(DriverError::Config(
                "different acl_file per listener is not supported yet; use one acl_file for all listeners".to_string(),
            ));
        }
        let acl = match acl_paths.first() {
            Some(p) => Some(AclFile::load(p)?),
            None => None,
        };
        Ok((authenticator, ConfigAuthorizer::new(acl)))
    }
}

/// What about a listener can only change with a restart: its sockets,
/// protocol, TLS files and settings.
pub(super) fn listener_shape(l: &ListenerConfig) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?} {:?}",
        l.port,
        l.bind_address,
        l.socket_domain,
        l.protocol,
        l.tls,
        l.max_connections,
        l.max_qos,
        l.use_username_as_clientid,
        l.mount_point,
        l.max_topic_alias
    )
}

/// What the clients of listener `l` get.
pub(super) fn listener_settings(config: &Config, l: &ListenerConfig) -> ListenerSettings {
    ListenerSettings {
        port: l.port,
        require_certificate: l.tls.require_certificate,
        use_identity_as_username: l.tls.use_identity_as_username,
        use_subject_as_username: l.tls.use_subject_as_username,
        allow_anonymous: Some(config.allow_anonymous(l)),
        allow_zero_length_clientid: Some(config.allow_zero_length_clientid(l)),
        auto_id_prefix: Some(config.auto_id_prefix(l).to_string()),
        use_username_as_clientid: l.use_username_as_clientid,
        max_qos: l.max_qos,
        mount_point: l.mount_point.clone(),
        max_topic_alias: Some(l.max_topic_alias),
    }
}

/// Adds `config`'s listeners to `builder`.
fn listeners(mut builder: ServerBuilder, config: &Config) -> Result<ServerBuilder, DriverError> {
    {
        for l in &config.listeners {
            let tls = tls_options(l)?;
            let settings = listener_settings(config, l);
            for addr in addresses(l)? {
                let listener = match &tls {
                    None => Listener::tcp(addr),
                    Some(opts) => {
                        Listener::tls(addr, opts.clone()).map_err(|source| DriverError::Tls {
                            origin: l.origin.to_string(),
                            source: Box::new(source),
                        })?
                    }
                };
                let mut listener = listener
                    .with_settings(settings.clone())
                    .with_max_connections(l.max_connections);
                listener.shape = listener_shape(l);
                builder = builder.listener(match l.protocol {
                    ListenerProtocol::Mqtt => listener,
                    ListenerProtocol::Websockets => listener.websockets(),
                });
            }
        }
        if let Some(m) = &config.metrics_listener {
            let addrs: Vec<SocketAddr> = match &m.bind_address {
                None => vec![
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), m.port),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), m.port),
                ],
                Some(a) => match a.parse::<IpAddr>() {
                    Ok(ip) => vec![SocketAddr::new(ip, m.port)],
                    Err(_) => {
                        let mut found: Vec<SocketAddr> = (a.as_str(), m.port)
                            .to_socket_addrs()
                            .map_err(|e| DriverError::Resolve {
                                address: a.clone(),
                                detail: format!("{e} ({})", m.origin),
                            })?
                            .collect();
                        found.dedup();
                        found
                    }
                },
            };
            for addr in addrs {
                builder = builder.metrics_listener(addr);
            }
        }
        Ok(builder)
    }
}
