//! SUBSCRIBE and UNSUBSCRIBE: the subscription tree, the session's
//! subscriptions and retained messages on subscribe.

use super::*;

impl Broker {
    // ----- SUBSCRIBE -------------------------------------------------------

    pub(super) fn handle_subscribe(&mut self, now: Instant, id: ConnectionId, s: Subscribe) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        let username = conn.username.clone();
        let Some(slot) = conn.session else {
            return;
        };
        tracing::debug!(target: TARGET, "Received SUBSCRIBE from {}", name);
        if s.subscriptions
            .iter()
            .any(|sub| too_deep(sub.filter.as_str()))
        {
            // As Mosquitto: 3.1.1 closes, 5.0 DISCONNECT 0x81.
            return self.violation(
                now,
                id,
                ReasonCode::MalformedPacket,
                "topic filter with more than 200 levels",
            );
        }
        let sub_id = s
            .properties
            .subscription_identifiers
            .first()
            .copied()
            .unwrap_or(0);
        let max_qos = conn.info.listener.max_qos;
        let bridge = conn.bridge;
        let mount = conn.info.listener.mount_point.clone();
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut send_retained = Vec::new();
        // The first filter refused for max_subscriptions_per_client.
        let mut refused_over_limit: Option<String> = None;
        // The filters as sent, for the event (before the mount point).
        let sent: Vec<String> = if self.out.report_activity {
            s.subscriptions
                .iter()
                .map(|sub| sub.filter.as_str().to_string())
                .collect()
        } else {
            Vec::new()
        };
        for mut sub in s.subscriptions {
            tracing::debug!(target: TARGET, "\t{} (QoS {})", sub.filter, sub.options.qos.as_u8());
            tracing::info!(target: SUBSCRIBE, "{} {} {}", name, sub.options.qos.as_u8(), sub.filter);
            // Granted at most the listener's max_qos.
            sub.options.qos = sub.options.qos.min(max_qos);
            if bridge {
                // As Mosquitto: a 3.1/3.1.1 bridge never gets its own
                // messages back, and sees retain flags as published.
                sub.options.no_local = true;
                sub.options.retain_as_published = true;
            }
            if let Some(m) = &mount {
                match mounted_filter(m, &sub.filter) {
                    Some(f) => sub.filter = f,
                    None => {
                        codes.push(ReasonCode::TopicFilterInvalid);
                        continue;
                    }
                }
            }
            let allowed = self.authorizer.authorize(&AclRequest {
                client_id: &name,
                username: username.as_deref(),
                topic: sub.filter.as_str(),
                access: Access::Subscribe,
            });
            if !allowed {
                // 5.0: 0x87 Not authorized; 3.1.1: 0x80 Failure (the encoder maps it).
                codes.push(ReasonCode::NotAuthorized);
                continue;
            }
            // One client may not fill the broker with subscriptions; a
            // filter the session has already is replaced, not counted twice.
            let limit = self.config.max_subscriptions_per_client;
            if limit != 0
                && self.sessions.get(slot).is_some_and(|session| {
                    session.subscriptions.len() >= limit
                        && !session.subscriptions.contains_key(sub.filter.as_str())
                })
            {
                // 5.0: 0x97 Quota exceeded; 3.1.1: 0x80 Failure (the encoder maps it).
                refused_over_limit.get_or_insert_with(|| sub.filter.to_string());
                codes.push(ReasonCode::QuotaExceeded);
                continue;
            }
            let entry = SubEntry {
                session: slot,
                options: sub.options,
                id: sub_id,
            };
            let is_new = self.router.tree.insert(&sub.filter, entry);
            if let Some(session) = self.sessions.get_mut(slot) {
                session.subscriptions.insert(
                    sub.filter.as_str().to_string(),
                    StoredSubscription {
                        filter: sub.filter.clone(),
                        options: sub.options,
                        id: sub_id,
                    },
                );
            }
            codes.push(ReasonCode::granted(sub.options.qos));
            // Retained messages: not for shared subscriptions (section 4.8.2),
            // and as Retain Handling says [MQTT-3.3.1-9..11].
            let wanted = !sub.filter.is_shared()
                && match sub.options.retain_handling {
                    RetainHandling::SendOnSubscribe => true,
                    RetainHandling::SendIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            if wanted {
                send_retained.push(sub);
            }
        }
        if let Some(first) = refused_over_limit {
            // One line per SUBSCRIBE, however many of its filters were refused.
            let refused = codes
                .iter()
                .filter(|rc| **rc == ReasonCode::QuotaExceeded)
                .count();
            tracing::info!(
                target: TARGET,
                "Client {} has reached max_subscriptions_per_client ({}): {} subscription(s) refused, the first {}.",
                name,
                self.config.max_subscriptions_per_client,
                refused,
                first
            );
        }
        tracing::debug!(target: TARGET, "Sending SUBACK to {}", name);
        if self.out.report_activity {
            let filters = sent
                .into_iter()
                .zip(codes.iter())
                .map(|(f, rc)| (f, granted_qos(*rc)))
                .collect();
            self.out.events.push_back(Event::Subscribed {
                connection: id,
                client_id: name.clone(),
                filters,
            });
        }
        // [MQTT-3.8.4-1] SUBACK with one code per filter, in order [MQTT-3.8.4-6].
        self.send_to(
            id,
            &Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: Properties::default(),
                reason_codes: codes,
            }),
        );
        self.save_session(slot);
        let mut found = Vec::new();
        for sub in send_retained {
            found.clear();
            self.router
                .retained
                .collect(sub.filter.filter(), &mut found);
            for m in &found {
                if m.is_expired(now) {
                    // [MQTT-3.3.2-5] expired retained messages are deleted.
                    self.router.retained.remove(m.topic.as_str());
                    continue;
                }
                if !self.authorizer.authorize(&AclRequest {
                    client_id: &name,
                    username: username.as_deref(),
                    topic: m.topic.as_str(),
                    access: Access::Read,
                }) {
                    continue;
                }
                let Some(session) = self.sessions.get_mut(slot) else {
                    return;
                };
                let conn = self.conns.get_mut(id);
                let ids: &[u32] = if sub_id != 0 { &[sub_id] } else { &[] };
                let mut shared = Some(m.clone());
                // [MQTT-3.3.1-8] retained messages go out with RETAIN set.
                let publish = OutgoingPublish {
                    msg: m,
                    qos: outgoing_qos(&self.config, m.qos, sub.options.qos),
                    retain: true,
                    sub_ids: ids,
                };
                flow!(self).deliver(now, session, conn, &publish, &mut shared);
            }
        }
    }

    pub(super) fn handle_unsubscribe(&mut self, now: Instant, id: ConnectionId, u: Unsubscribe) {
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        let Some(slot) = conn.session else {
            return;
        };
        let mount = conn.info.listener.mount_point.clone();
        tracing::debug!(target: TARGET, "Received UNSUBSCRIBE from {}", name);
        let mut codes = Vec::with_capacity(u.filters.len());
        if u.filters.iter().any(|f| too_deep(f.as_str())) {
            return self.violation(
                now,
                id,
                ReasonCode::MalformedPacket,
                "topic filter with more than 200 levels",
            );
        }
        for f in &u.filters {
            let mounted;
            let f = match &mount {
                Some(m) => match mounted_filter(m, f) {
                    Some(g) => {
                        mounted = g;
                        &mounted
                    }
                    None => {
                        codes.push(ReasonCode::TopicFilterInvalid);
                        continue;
                    }
                },
                None => f,
            };
            tracing::debug!(target: TARGET, "\t{}", f);
            tracing::info!(target: UNSUBSCRIBE, "{} {}", name, f);
            let existed = self
                .sessions
                .get_mut(slot)
                .is_some_and(|s| s.subscriptions.remove(f.as_str()).is_some());
            if existed {
                self.router.tree.remove(f, slot);
            }
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        tracing::debug!(target: TARGET, "Sending UNSUBACK to {}", name);
        if self.out.report_activity {
            self.out.events.push_back(Event::Unsubscribed {
                connection: id,
                client_id: name.clone(),
                filters: u.filters.iter().map(|f| f.as_str().to_string()).collect(),
            });
        }
        // [MQTT-3.10.4-4] UNSUBACK even when nothing was removed.
        self.send_to(
            id,
            &Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::default(),
                reason_codes: codes,
            }),
        );
        self.save_session(slot);
    }
}

/// The QoS a SUBACK code grants, or the refusal.
fn granted_qos(rc: ReasonCode) -> Result<QoS, ReasonCode> {
    match rc {
        ReasonCode::Success => Ok(QoS::AtMostOnce),
        ReasonCode::GrantedQoS1 => Ok(QoS::AtLeastOnce),
        ReasonCode::GrantedQoS2 => Ok(QoS::ExactlyOnce),
        other => Err(other),
    }
}
