//! Changing a running broker: new limits, a new authenticator or
//! authorizer, and checking connected clients again (Mosquitto's reload on
//! SIGHUP).

use super::*;

impl Broker {
    /// Replaces the authenticator. Connected clients are not checked
    /// again until [`Broker::reauthenticate_connected`].
    pub fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        self.authenticator = authenticator;
    }

    /// Replaces the authorizer: the next PUBLISH, SUBSCRIBE and delivery
    /// are checked against it.
    pub fn set_authorizer(&mut self, authorizer: Box<dyn Authorizer>) {
        self.authorizer = authorizer;
    }

    /// Applies a new configuration to the running broker. Limits apply to
    /// what happens next: `max_queued_messages` to the next message
    /// queued, `max_inflight_messages` to the next one sent,
    /// `message_size_limit` to the next PUBLISH, `max_keepalive` to the
    /// next CONNECT, `sys_interval` from the next `$SYS` update on.
    pub fn set_config(&mut self, now: Instant, config: BrokerConfig) {
        self.touch(now);
        let sys_was_off = self.config.sys_interval.is_zero();
        self.config = config;
        // As Mosquitto: reloaded; a lower limit frees nothing, it refuses
        // new messages until enough is released.
        self.memory.set_limit(self.config.memory_limit);
        if sys_was_off && !self.config.sys_interval.is_zero() {
            let at = now + self.config.sys_interval;
            self.set_timer(at, Timer::Sys);
        }
    }

    /// Checks every connected client against the current authenticator
    /// and anonymous rule, as at CONNECT (with the user name and password
    /// it connected with). A client refused now is disconnected (5.0:
    /// DISCONNECT 0x87 Not authorized); one the authenticator defers is
    /// kept. Returns the client identifiers disconnected.
    pub fn reauthenticate_connected(&mut self, now: Instant) -> Vec<String> {
        self.touch(now);
        let ids: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == ConnState::Connected && c.auth_method.is_none())
            .map(|(_, c)| c.id)
            .collect();
        let mut refused = Vec::new();
        for id in ids {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            let listener = &conn.info.listener;
            let cert_verified = listener.require_certificate && conn.info.tls.is_some();
            let allow_anonymous = listener
                .allow_anonymous
                .unwrap_or(self.config.allow_anonymous);
            let decision = if conn.username.is_none() && !cert_verified && !allow_anonymous {
                AuthDecision::Deny(ReasonCode::NotAuthorized)
            } else {
                self.authenticator.authenticate(&crate::AuthRequest {
                    client_id: conn.name(),
                    username: conn.username.as_deref(),
                    password: conn.password.as_deref(),
                    username_from_certificate: conn.username_from_certificate,
                    certificate: conn.info.tls.as_ref(),
                    certificate_verified: cert_verified,
                    remote_addr: conn.info.remote_addr,
                    listener,
                })
            };
            if let AuthDecision::Deny(_) = decision {
                let name = conn.name().to_string();
                tracing::info!(
                    target: TARGET,
                    "Client {} disconnected: its credentials are no longer accepted (configuration reloaded).",
                    name
                );
                self.send_disconnect(id, ReasonCode::NotAuthorized);
                self.close_conn(now, id, true, DisconnectReason::NotAuthorized);
                refused.push(name);
            }
        }
        refused
    }
}
