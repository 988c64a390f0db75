//! The storage hooks: persistent sessions written through to [`Storage`],
//! and the state a storage holds restored at the first call.

use super::*;

impl Broker {
    // ----- storage -------------------------------------------------------------

    pub(super) fn save_session(&mut self, slot: SessionKey) {
        let (Some(storage), Some(session)) = (self.store.write(), self.sessions.get(slot)) else {
            return;
        };
        if !session.is_persistent() {
            return;
        }
        let stored = StoredSession {
            client_id: session.client_id.clone(),
            username: session.username.clone(),
            protocol: session.protocol,
            expiry: session.expiry,
            subscriptions: session
                .subscriptions
                .values()
                .map(|s| (s.filter.clone(), s.options, s.id))
                .collect(),
            incoming_qos2: session.incoming_qos2.iter().copied().collect(),
        };
        storage.save_session(&stored);
    }

    pub(super) fn restore_session(&mut self, s: StoredSession) -> SessionKey {
        let slot = self.create_session(&s.client_id, s.protocol);
        let session = self.sessions.get_mut(slot).expect("just created");
        session.username = s.username;
        session.expiry = s.expiry;
        session.incoming_qos2 = s.incoming_qos2.into_iter().collect();
        for (filter, options, id) in s.subscriptions {
            if too_deep(filter.as_str()) {
                continue;
            }
            self.router.tree.insert(
                &filter,
                SubEntry {
                    session: slot,
                    options,
                    id,
                },
            );
            session.subscriptions.insert(
                filter.as_str().to_string(),
                StoredSubscription {
                    filter,
                    options,
                    id,
                },
            );
        }
        slot
    }

    pub(super) fn restore_state(&mut self, now: Instant, state: crate::storage::StoredState) {
        for m in state.retained {
            let msg = m.into_message(Some(now));
            // Stored by an older version without the level limit.
            if too_deep(msg.topic.as_str()) {
                continue;
            }
            if let Some(at) = msg.expires_at {
                self.set_timer(at, Timer::RetainedExpiry(Box::new(msg.topic.clone())));
            }
            self.router
                .retained
                .set(Arc::new(msg.charged(&self.memory)));
        }
        let mut slots = Vec::new();
        for s in state.sessions {
            slots.push(self.restore_session(s));
        }
        let mut messages = state.messages;
        messages.sort_by_key(|(_, seq, _)| *seq);
        for (client_id, seq, m) in messages {
            let Some(session) = self
                .by_client_id
                .get(&client_id)
                .and_then(|&slot| self.sessions.get_mut(slot))
            else {
                continue;
            };
            let (mut delivery, packet_id, released) = m.into_delivery(now);
            if let Some(msg) = Arc::get_mut(&mut delivery.msg) {
                msg.charge_to(&self.memory);
            }
            delivery.seq = seq;
            session.next_seq = session.next_seq.max(seq);
            match packet_id {
                Some(packet_id) => session.inflight.push_back(crate::session::Outgoing {
                    packet_id,
                    delivery,
                    released,
                }),
                None => {
                    if let Some(at) = delivery.msg.expires_at {
                        self.timers.set(at, Timer::QueueExpiry(session.key));
                    }
                    session.queued_bytes += delivery.msg.size();
                    session.queue.push_back(delivery);
                }
            }
        }
        // Restored sessions are offline: their expiry starts now.
        for slot in slots {
            self.schedule_expiry(now, slot);
        }
    }
}
