//! Timers firing: keep alive, CONNECT time-out, will delay, session and
//! message expiry, `$SYS` updates.

use super::*;

impl Broker {
    /// Fires every timer due at `now`: keep alive, CONNECT time-out, will
    /// delay, session expiry, `$SYS` updates.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::KeepAlive(id) => self.check_keep_alive(now, id),
                Timer::ConnectTimeout(id) => {
                    let Some(conn) = self.conn_ref(id) else {
                        continue;
                    };
                    // A deferred authentication has its own time-out.
                    let deferred = conn.pending.as_ref().is_some_and(|p| p.deferred);
                    if !deferred
                        && matches!(
                            conn.state,
                            ConnState::AwaitingConnect | ConnState::Authenticating
                        )
                    {
                        tracing::info!(target: CONNECTION, "Client {} has exceeded timeout, disconnecting.", conn.name());
                        self.close_conn(now, id, false, DisconnectReason::KeepAliveTimeout);
                    }
                }
                Timer::AuthTimeout(id) => self.auth_timed_out(now, id),
                Timer::Will(slot) => {
                    let Some(s) = self.sessions.get_mut(slot) else {
                        continue;
                    };
                    if s.conn.is_none() && s.will_at.is_some_and(|t| t <= now) {
                        s.will_at = None;
                        if let Some(w) = s.will.take() {
                            let (cid, user) = (s.client_id.clone(), s.username.clone());
                            self.publish_will(now, *w, &cid, user.as_deref());
                        }
                    }
                }
                Timer::SessionExpiry(slot) => {
                    let due = self.sessions.get(slot).is_some_and(|s| {
                        s.conn.is_none() && s.expires_at.is_some_and(|t| t <= now)
                    });
                    if due {
                        self.out.stats.clients_expired += 1;
                        self.destroy_session(now, slot, true);
                    }
                }
                Timer::QueueExpiry(slot) => {
                    if let Some(session) = self.sessions.get_mut(slot) {
                        flow!(self).drop_expired(now, session);
                    }
                }
                Timer::RetainedExpiry(topic) => {
                    let expired = {
                        let mut found = Vec::new();
                        self.router.retained.collect(topic.as_str(), &mut found);
                        found.first().is_some_and(|m| m.is_expired(now))
                    };
                    // [MQTT-3.3.2-5] an expired retained message is deleted.
                    if expired && self.router.retained.remove(topic.as_str()) {
                        if let Some(s) = self.store.write() {
                            s.remove_retained(topic.as_str());
                        }
                    }
                }
                Timer::Sys => {
                    self.publish_sys(now);
                    let interval = self.config.sys_interval;
                    if !interval.is_zero() {
                        self.set_timer(now + interval, Timer::Sys);
                    }
                }
            }
        }
    }

    pub(super) fn check_keep_alive(&mut self, now: Instant, id: ConnectionId) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        if conn.state != ConnState::Connected {
            return;
        }
        // [MQTT-3.1.2-24] one and a half times the Keep Alive, measured from
        // the last packet received.
        let Some(deadline) = conn.keep_alive_deadline() else {
            return;
        };
        if deadline > now {
            self.set_timer(deadline, Timer::KeepAlive(id));
            return;
        }
        tracing::info!(target: CONNECTION, "Client {} has exceeded timeout, disconnecting.", conn.name());
        self.send_disconnect(id, ReasonCode::KeepAliveTimeout);
        self.close_conn(now, id, true, DisconnectReason::KeepAliveTimeout);
    }
}
