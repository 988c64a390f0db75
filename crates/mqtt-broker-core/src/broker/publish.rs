//! PUBLISH from a client: checks, authorisation, the retained store, and
//! routing to every matching session.

use super::*;

impl Broker {
    // ----- PUBLISH ---------------------------------------------------------

    pub(super) fn handle_publish(&mut self, now: Instant, id: ConnectionId, mut p: Publish) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let max_alias = conn.topic_alias_max_in(&self.config);
        let v5 = conn.version.is_v5();
        // Above the listener's max_qos (sent to 5.0 clients as Maximum QoS):
        // [MQTT-3.3.1-4] DISCONNECT 0x9B; a 3.1.1 connection is closed.
        if p.qos > conn.info.listener.max_qos {
            tracing::info!(
                target: TARGET,
                "Too high QoS in PUBLISH from {}, disconnecting.",
                conn.name()
            );
            return self.violation(
                now,
                id,
                ReasonCode::QoSNotSupported,
                "PUBLISH above the listener's max_qos",
            );
        }
        if let Err(e) = conn.resolve_topic_alias(&mut p, max_alias) {
            return self.violation(now, id, e.reason_code(), &e.to_string());
        }
        if p.topic.is_empty() {
            return self.violation(now, id, ReasonCode::ProtocolError, "empty topic name");
        }
        // [MQTT-3.3.4-6] a client PUBLISH must not carry Subscription Identifiers.
        if !p.properties.subscription_identifiers.is_empty() {
            return self.violation(
                now,
                id,
                ReasonCode::ProtocolError,
                "subscription identifier in a client PUBLISH",
            );
        }
        // The listener's mount_point: the client's topics live under it.
        if let Some(mount) = &conn.info.listener.mount_point {
            match mounted_topic(mount, &p.topic) {
                Some(t) => p.topic = t,
                None => {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::TopicNameInvalid,
                        "topic name too long with the listener's mount_point",
                    )
                }
            }
        }
        if too_deep(p.topic.as_str()) {
            // As Mosquitto: 3.1.1 closes, 5.0 DISCONNECT 0x82.
            return self.violation(
                now,
                id,
                ReasonCode::ProtocolError,
                "topic name with more than 200 levels",
            );
        }
        // No per-message allocation here: the client id and user name are
        // borrowed from the connection where needed.
        let Some(slot) = conn.session else {
            return;
        };
        let mid = p.packet_id.map_or(0, |p| p.get());
        tracing::debug!(
            target: TARGET,
            "Received PUBLISH from {} {}",
            self.name_of(id),
            PublishSummary::of(&p)
        );
        self.out.stats.publish_messages_received += 1;
        self.out.stats.publish_bytes_received += p.payload.len() as u64;
        let window = self.config.inflight_window();
        if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
            return self.violation(now, id, ReasonCode::ProtocolError, "no packet identifier");
        }
        if p.qos == QoS::ExactlyOnce {
            let Some(session) = self.sessions.get(slot) else {
                return;
            };
            // [MQTT-4.3.3-10] a re-sent PUBLISH before PUBREL is answered
            // with PUBREC again and not delivered twice.
            if session.incoming_qos2.contains(&mid) {
                if let Some(pid) = p.packet_id {
                    tracing::debug!(target: TARGET, "Sending PUBREC to {} (m{}, rc0)", self.name_of(id), mid);
                    self.send_to(id, &Packet::PubRec(PubRec::new(pid)));
                }
                return;
            }
            // [MQTT-3.3.4-9] no more unreleased QoS 2 messages than the
            // Receive Maximum we sent (5.0 only: 3.1.1 has no such limit, and
            // the set is bounded by the 65,535 packet identifiers).
            if v5 && session.incoming_qos2.len() >= usize::from(window) {
                return self.violation(
                    now,
                    id,
                    ReasonCode::ReceiveMaximumExceeded,
                    "receive maximum exceeded",
                );
            }
        }
        if p.retain && !self.config.retain_available {
            // Retain not supported, as the CONNACK said (section 3.2.2.3.5).
            return self.violation(
                now,
                id,
                ReasonCode::RetainNotSupported,
                "retain not available",
            );
        }
        let limit = self.config.message_size_limit;
        let mut rc = ReasonCode::Success;
        if limit != 0 && p.payload.len() > limit as usize {
            tracing::info!(
                target: TARGET,
                "Dropped too large PUBLISH from {} {}",
                self.name_of(id),
                PublishSummary::of(&p)
            );
            let name = self.name_of(id).to_string();
            self.out
                .dropped(&name, p.topic.as_str(), DropReason::TooLarge);
            rc = ReasonCode::ImplementationSpecificError;
        } else if !self
            .conn_ref(id)
            .is_some_and(|c| self.may_publish(c.name(), c.username.as_deref(), p.topic.as_str()))
        {
            tracing::debug!(
                target: TARGET,
                "Denied PUBLISH from {} {}",
                self.name_of(id),
                PublishSummary::of(&p)
            );
            rc = ReasonCode::NotAuthorized;
        }
        let qos = p.qos;
        let packet_id = p.packet_id;
        if rc == ReasonCode::Success {
            let mut properties = std::mem::take(&mut p.properties);
            // Left as decoded unless there is an expiry to take out (a
            // client PUBLISH with Subscription Identifiers was refused).
            let expires_at = properties.message_expiry_interval.map(|s| {
                properties.message_expiry_interval = None;
                now + Duration::from_secs(u64::from(s))
            });
            let msg = Message {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties,
                expires_at,
                charge: Default::default(),
            };
            if !self.memory_has_room(msg.footprint()) {
                // memory_limit: nothing is stored, nothing acknowledged.
                tracing::debug!(
                    target: TARGET,
                    "Refused PUBLISH from {} (memory_limit) {}",
                    self.name_of(id),
                    PublishSummary {
                        dup: false,
                        qos,
                        retain: msg.retain,
                        mid,
                        topic: msg.topic.as_str(),
                        len: msg.payload.len(),
                    }
                );
                if !v5 {
                    // As Mosquitto, whose allocation fails: the 3.1.1
                    // publisher is disconnected (its will is published), and
                    // sends an unacknowledged QoS 1/2 message again when it
                    // reconnects.
                    tracing::info!(
                        target: CONNECTION,
                        "Client {} disconnected due to out of memory.",
                        self.name_of(id)
                    );
                    return self.close_conn(now, id, true, DisconnectReason::MemoryLimit);
                }
                if qos == QoS::AtMostOnce {
                    let name = self.name_of(id).to_string();
                    self.out
                        .dropped(&name, msg.topic.as_str(), DropReason::MemoryLimit);
                }
                rc = ReasonCode::QuotaExceeded;
            } else {
                let delivered = self.publish_message(now, msg, Some(slot));
                if delivered == 0 && v5 {
                    rc = ReasonCode::NoMatchingSubscribers;
                }
            }
        }
        // In 3.1.1 a refused message is acknowledged normally (no reason codes).
        let rc = if v5 { rc } else { ReasonCode::Success };
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(pid)) => {
                tracing::debug!(target: TARGET, "Sending PUBACK to {} (m{}, rc{})", self.name_of(id), mid, rc.as_u8());
                self.send_to(id, &Packet::PubAck(PubAck::with_reason(pid, rc)));
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                if !rc.is_error() {
                    if let Some(s) = self.sessions.get_mut(slot) {
                        s.incoming_qos2.insert(mid);
                    }
                    if self.store.is_enabled() {
                        self.save_session(slot);
                    }
                }
                tracing::debug!(target: TARGET, "Sending PUBREC to {} (m{}, rc{})", self.name_of(id), mid, rc.as_u8());
                self.send_to(id, &Packet::PubRec(PubRec::with_reason(pid, rc)));
            }
            _ => {}
        }
    }

    /// Publishes a message of the broker's own (a bridge's notification,
    /// its `$SYS` counters, an embedder's announcement): no ACL check, and
    /// `$SYS/` topics are allowed. With `from`, the message counts as
    /// published by that connection's session, so its No Local
    /// subscriptions do not get it back. Returns how many sessions it
    /// went to.
    pub fn publish_internal(
        &mut self,
        now: Instant,
        from: Option<ConnectionId>,
        topic: TopicName,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> usize {
        self.touch(now);
        let publisher = from
            .and_then(|id| self.conn_ref(id))
            .and_then(|c| c.session);
        let msg = Message {
            topic,
            payload,
            qos,
            retain,
            properties: PublishProperties::default(),
            expires_at: None,
            charge: Default::default(),
        };
        self.publish_message(now, msg, publisher)
    }

    /// How many messages wait in the session of `client_id` (queued, and
    /// sent but not yet acknowledged); `None` when there is no such
    /// session. A bridge's `threshold` is measured with it.
    pub fn session_pending(&self, client_id: &str) -> Option<usize> {
        let key = self.by_client_id.get(client_id)?;
        self.sessions
            .get(*key)
            .map(|s| s.queue.len() + s.inflight.len())
    }

    /// Stores or deletes the retained message, then routes `msg` to every
    /// matching session. Returns how many sessions it went to.
    pub(super) fn publish_message(
        &mut self,
        now: Instant,
        msg: Message,
        publisher: Option<SessionKey>,
    ) -> usize {
        let mut shared = None;
        if msg.retain && self.config.retain_available {
            if msg.payload.is_empty() {
                // [MQTT-3.3.1-10] (3.1.1) / [MQTT-3.3.1-6] (5.0): an empty
                // retained message deletes the stored one.
                if self.router.retained.remove(msg.topic.as_str()) {
                    if let Some(s) = self.store.write() {
                        s.remove_retained(msg.topic.as_str());
                    }
                }
            } else {
                // [MQTT-3.3.1-5] store it, replacing the previous one.
                let arc = Arc::new(msg.clone().charged(&self.memory));
                self.router.retained.set(arc.clone());
                if let Some(at) = msg.expires_at {
                    self.set_timer(at, Timer::RetainedExpiry(Box::new(msg.topic.clone())));
                }
                // `$SYS` values are the broker's own, published again
                // after a restart: not worth a write every `sys_interval`
                // (an SD card on a Pi wears out).
                let own = publisher.is_none() && msg.topic.as_str().starts_with("$SYS/");
                if let Some(s) = self.store.write().filter(|_| !own) {
                    s.save_retained(&StoredMessage::from_message(&arc, Some(now)));
                }
                shared = Some(arc);
            }
        }
        self.route(now, &msg, publisher, &mut shared)
    }

    /// Delivers `msg` to every session the router says it goes to;
    /// returns how many.
    pub(super) fn route(
        &mut self,
        now: Instant,
        msg: &Message,
        publisher: Option<SessionKey>,
        shared: &mut Option<Arc<Message>>,
    ) -> usize {
        {
            let sessions = &self.sessions;
            let online = |s| sessions.get(s).is_some_and(|s: &Session| s.conn.is_some());
            self.router.collect(msg.topic.as_str(), &online);
        }
        let (sessions, conns, authorizer) = (&mut self.sessions, &mut self.conns, &self.authorizer);
        let mut flow = flow!(self);
        let mut delivered = 0;
        self.router.for_each_target(publisher, |t, sub_ids| {
            let Some(session) = sessions.get_mut(t.session) else {
                return;
            };
            if !authorizer.authorize(&AclRequest {
                client_id: &session.client_id,
                username: session.username.as_deref(),
                topic: msg.topic.as_str(),
                access: Access::Read,
            }) {
                return;
            }
            let publish = OutgoingPublish {
                msg,
                qos: outgoing_qos(flow.config, msg.qos, t.qos),
                // [MQTT-3.3.1-9] 3.1.1 clears RETAIN on forwarded messages; 5.0
                // keeps it with Retain As Published [MQTT-3.3.1-12], [MQTT-3.3.1-13].
                retain: msg.retain && t.retain_as_published,
                sub_ids,
            };
            let conn = session.conn.and_then(|c| conns.get_mut(c));
            flow.deliver(now, session, conn, &publish, shared);
            delivered += 1;
        });
        delivered
    }

    /// Whether a new message of `bytes` fits within `memory_limit`. Says
    /// so in the log when PUBLISH packets start being refused, and when
    /// they are accepted again.
    fn memory_has_room(&mut self, bytes: usize) -> bool {
        let room = self.memory.has_room(bytes);
        if room == self.memory_refusing {
            self.memory_refusing = !room;
            let (current, limit) = (self.memory.current(), self.memory.limit());
            if room {
                tracing::warn!(
                    target: TARGET,
                    "Memory use is back under memory_limit ({current} of {limit} bytes held); PUBLISH packets are accepted again."
                );
            } else {
                tracing::warn!(
                    target: TARGET,
                    "memory_limit reached ({current} of {limit} bytes held): new PUBLISH packets are refused (MQTT 5.0: 0x97 Quota exceeded; 3.1.1 publishers are disconnected) until subscribers take their queued messages. Raise memory_limit, or lower max_queued_messages / max_queued_bytes so that slow subscribers hold less."
                );
            }
        }
        room
    }

    pub(super) fn may_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        // Clients do not publish into the broker's own $SYS tree, except
        // bridges' state notifications (`$SYS/broker/connection/ID/state`,
        // Mosquitto's default notification topic, sent by bridges of
        // either protocol version).
        (!topic.starts_with("$SYS/") || topic.starts_with("$SYS/broker/connection/"))
            && self.authorizer.authorize(&AclRequest {
                client_id,
                username,
                topic,
                access: Access::Write,
            })
    }
}
