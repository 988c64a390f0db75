//! Re-reading the configuration while running (Mosquitto's SIGHUP).

use super::from_config::{listener_settings, listener_shape, security};
use super::{DriverError, Server, TARGET};
use crate::config::Config;
use crate::mosquitto::broker_config;
use std::sync::Arc;
use std::time::Instant;

/// What [`Server::reload`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// TLS listeners that serve new certificate or key files from now on.
    pub tls_reloaded: usize,
    /// Clients disconnected because the new files no longer accept them.
    pub disconnected: Vec<String>,
    /// Changes that need a restart; they were left as they were (each says
    /// what, and is logged).
    pub needs_restart: Vec<String>,
}

impl Server {
    /// Applies a re-read configuration to the running broker, as Mosquitto
    /// does on SIGHUP:
    ///
    /// - **Certificates and keys** of TLS listeners: new connections get
    ///   the new files; open connections keep theirs. A broken file keeps
    ///   the old certificate and is an error.
    /// - **`password_file` and `acl_file`**: read again. A connected client
    ///   the new password file (or anonymous rule) no longer accepts is
    ///   disconnected now; the others stay. ACL changes apply to the next
    ///   PUBLISH, SUBSCRIBE and delivery.
    /// - **Limits** (`max_queued_messages`, `max_inflight_messages`,
    ///   `message_size_limit`, `max_keepalive`, `sys_interval`,
    ///   `write_timeout`, ...) and per-listener settings such as
    ///   `allow_anonymous`: from the next message or connection on.
    ///
    /// What needs a restart (a listener added, removed or moved, its
    /// protocol or TLS files named differently, `persistence`) is logged,
    /// listed in the report and left as it was. On an error (a password or
    /// ACL file that does not load, a certificate that does not fit its
    /// key) nothing changes and the error says what is wrong. `log_type`
    /// and `connection_messages` are the logger's: the program applies
    /// them (laptop-broker does).
    ///
    /// After a reload, every certificate of the TLS listeners that expires
    /// soon is logged again (see [`super::ServerBuilder::certificate_expiry_warning`]).
    ///
    /// Only a server built with [`super::ServerBuilder::from_config`]
    /// reloads its authentication; for others, only TLS files and limits
    /// are applied.
    pub fn reload(&self, config: &Config) -> Result<ReloadReport, DriverError> {
        let mut report = ReloadReport::default();
        let mut current = self.config.lock().unwrap_or_else(|e| e.into_inner());
        // Everything that can fail first, so an error changes nothing.
        let security = match &*current {
            Some(_) => Some(security(config)?),
            None => None,
        };
        // Listeners: matched by what a reload cannot change.
        let new_shapes: Vec<String> = config.listeners.iter().map(listener_shape).collect();
        let mut tls_to_reload = Vec::new();
        for rt in &self.runtimes {
            if rt.shape.is_empty() {
                if let Some(tls) = &rt.tls {
                    tls_to_reload.push((tls.clone(), rt.port));
                }
                continue;
            }
            match new_shapes.iter().position(|s| *s == rt.shape) {
                Some(i) => {
                    if let Some(tls) = &rt.tls {
                        tls_to_reload.push((tls.clone(), rt.port));
                    }
                    let mut settings = listener_settings(config, &config.listeners[i]);
                    settings.port = rt.port;
                    *rt.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
                }
                None => report.needs_restart.push(format!(
                    "the listener on port {} changed or was removed; it keeps serving as before until a restart",
                    rt.port
                )),
            }
        }
        if current.is_some() {
            for (l, shape) in config.listeners.iter().zip(&new_shapes) {
                if !self.runtimes.iter().any(|rt| rt.shape == *shape) {
                    report.needs_restart.push(format!(
                        "{}: the listener on port {} is new or changed; it opens at the next restart",
                        l.origin, l.port
                    ));
                }
            }
        }
        if let Some(old) = &*current {
            if old.persistence != config.persistence
                || old.persistence_path() != config.persistence_path()
            {
                report
                    .needs_restart
                    .push("persistence settings changed; they apply at the next restart".into());
            }
            if old.bridges != config.bridges {
                // As Mosquitto: bridges are read at start only.
                report.needs_restart.push(
                    "bridges (connection sections) changed; the running bridges keep their settings until a restart"
                        .into(),
                );
            }
        }
        // TLS files: rebuilt only when changed on disk; a bad file keeps
        // the old configuration and is reported.
        for (tls, port) in tls_to_reload {
            match tls.reload_if_changed() {
                Ok(true) => {
                    report.tls_reloaded += 1;
                    tracing::info!(target: TARGET, "Reloaded the certificate and key of the listener on port {port}.");
                }
                Ok(false) => {}
                Err(source) => {
                    return Err(DriverError::Tls {
                        origin: format!(
                            "listener on port {port} (reload; the old certificate stays in use)"
                        ),
                        source: Box::new(source),
                    })
                }
            }
        }
        {
            let mut g = self.shared.lock();
            let broker = g.broker();
            let now = Instant::now();
            let mut limits = broker_config(config);
            // Not a limit: the driver's, fixed at start.
            limits.max_connections = broker.config().max_connections;
            broker.set_config(now, limits);
            if let Some((authenticator, authorizer)) = security {
                broker.set_authenticator(Box::new(authenticator));
                broker.set_authorizer(Box::new(authorizer));
                report.disconnected = broker.reauthenticate_connected(now);
            }
        }
        // Certificates that expire soon, in the files as they are now.
        self.shared
            .expiry
            .check_listeners(&self.shared, &self.runtimes);
        for what in &report.needs_restart {
            tracing::warn!(target: TARGET, "Reload: {what}.");
        }
        if current.is_some() {
            *current = Some(config.clone());
        }
        Ok(report)
    }
}
