//! Session lifecycle: created at CONNECT, offline when the connection
//! ends, expired or discarded (section 4.1).

use super::*;

impl Broker {
    pub(super) fn create_session(
        &mut self,
        client_id: &str,
        version: ProtocolVersion,
    ) -> SessionKey {
        let slot = self
            .sessions
            .insert(|key| Session::new(key, client_id.to_string(), version));
        self.by_client_id.insert(client_id.to_string(), slot);
        let total = self.sessions.len() as u64;
        let max = &mut self.out.stats.clients_maximum;
        *max = (*max).max(total);
        slot
    }

    pub(super) fn schedule_expiry(&mut self, now: Instant, slot: SessionKey) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if let Some(d) = session.expiry {
            let at = now + d;
            session.expires_at = Some(at);
            self.set_timer(at, Timer::SessionExpiry(slot));
        }
    }

    /// The session lost its connection: handle the will and the expiry.
    pub(super) fn session_offline(&mut self, now: Instant, slot: SessionKey, publish_will: bool) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        session.conn = None;
        let will = session.will.take();
        let client_id = session.client_id.clone();
        let username = session.username.clone();
        let persistent = session.is_persistent();
        let mut will_now = None;
        if let (true, Some(w)) = (publish_will, will) {
            if w.delay == 0 || !persistent {
                will_now = Some(w);
            } else {
                // [MQTT-3.1.3-9] the will waits for its delay or the end of
                // the session, whichever comes first.
                let delay = Duration::from_secs(u64::from(w.delay));
                let at = now + session.expiry.map_or(delay, |e| e.min(delay));
                session.will = Some(w);
                session.will_at = Some(at);
                self.set_timer(at, Timer::Will(slot));
            }
        }
        if persistent {
            self.schedule_expiry(now, slot);
            self.save_session(slot);
        } else {
            self.destroy_session(now, slot, false);
        }
        if let Some(w) = will_now {
            self.publish_will(now, *w, &client_id, username.as_deref());
        }
    }

    pub(super) fn destroy_session(
        &mut self,
        now: Instant,
        slot: SessionKey,
        send_pending_will: bool,
    ) {
        let Some(session) = self.sessions.remove(slot) else {
            return;
        };
        for sub in session.subscriptions.values() {
            self.router.tree.remove(&sub.filter, slot);
        }
        if self.by_client_id.get(&session.client_id) == Some(&slot) {
            self.by_client_id.remove(&session.client_id);
        }
        if let Some(storage) = self.store.write() {
            storage.remove_session(&session.client_id);
        }
        if send_pending_will && session.will_at.is_some() {
            if let Some(w) = session.will {
                self.publish_will(now, *w, &session.client_id, session.username.as_deref());
            }
        }
    }
}
