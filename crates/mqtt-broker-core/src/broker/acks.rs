//! Acknowledgements from a client for messages the broker sent it
//! (PUBACK, PUBREC, PUBCOMP) and PUBREL for messages it sent (section 4.3).

use super::*;
use crate::session::Outgoing;

/// Connection `id` and its session, if both are there.
fn conn_and_session<'a>(
    conns: &'a mut Slab<ConnectionId, Conn>,
    sessions: &'a mut Slab<SessionKey, Session>,
    id: ConnectionId,
) -> Option<(&'a mut Conn, &'a mut Session)> {
    let conn = conns.get_mut(id)?;
    let session = sessions.get_mut(conn.session?)?;
    Some((conn, session))
}

impl Broker {
    /// Ends the connection when `ack` does not belong to the flow of the
    /// message it names; whether it did.
    fn wrong_ack(
        &mut self,
        now: Instant,
        id: ConnectionId,
        ack: mqtt_codec::PacketType,
        pid: PacketId,
    ) -> bool {
        let wrong = self
            .conns
            .get(id)
            .and_then(|c| c.session)
            .and_then(|s| self.sessions.get(s))
            .is_some_and(|s| s.is_wrong_ack(ack, pid));
        if wrong {
            let why = match ack {
                mqtt_codec::PacketType::PubAck => "PUBACK for a QoS 2 message",
                mqtt_codec::PacketType::PubRec => "PUBREC for a QoS 1 message",
                _ => "PUBCOMP for a message not released, or of QoS 1",
            };
            self.violation(now, id, ReasonCode::ProtocolError, why);
        }
        wrong
    }

    pub(super) fn handle_puback(
        &mut self,
        now: Instant,
        id: ConnectionId,
        pid: PacketId,
        rc: ReasonCode,
    ) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        tracing::debug!(target: TARGET, "Received PUBACK from {} (Mid: {}, RC:{})", conn.name(), pid, rc.as_u8());
        if self.wrong_ack(now, id, mqtt_codec::PacketType::PubAck, pid) {
            return;
        }
        // QoS 1 is done at PUBACK.
        self.complete(now, id, |o| {
            o.packet_id == pid && o.delivery.qos == QoS::AtLeastOnce
        });
    }

    pub(super) fn handle_pubrec(&mut self, now: Instant, id: ConnectionId, a: PubRec) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Received PUBREC from {} (Mid: {})", name, a.packet_id);
        if self.wrong_ack(now, id, mqtt_codec::PacketType::PubRec, a.packet_id) {
            return;
        }
        let Some((conn, session)) = conn_and_session(&mut self.conns, &mut self.sessions, id)
        else {
            return;
        };
        let pos = session
            .inflight
            .iter()
            .position(|o| o.packet_id == a.packet_id && o.delivery.qos == QoS::ExactlyOnce);
        match pos {
            Some(pos) if a.reason_code.is_error() => {
                // 5.0 section 4.3.3: a PUBREC with an error code ends the exchange.
                if let Some(o) = session.inflight.remove(pos) {
                    self.store.forget(session, o.delivery.seq);
                }
                flow!(self).pump(now, session, conn);
            }
            Some(pos) => {
                session.inflight[pos].released = true;
                let o = &session.inflight[pos];
                self.store
                    .persist(now, session, &o.delivery, Some(o.packet_id), true);
                tracing::debug!(target: TARGET, "Sending PUBREL to {} (m{})", name, a.packet_id);
                conn.send(&mut self.out, &Packet::PubRel(PubRel::new(a.packet_id)));
            }
            None => {
                // Unknown identifier: PUBREL 0x92 Packet Identifier not found (5.0).
                tracing::debug!(target: TARGET, "Sending PUBREL to {} (m{})", name, a.packet_id);
                let rel = PubRel::with_reason(a.packet_id, ReasonCode::PacketIdentifierNotFound);
                conn.send(&mut self.out, &Packet::PubRel(rel));
            }
        }
    }

    pub(super) fn handle_pubrel(&mut self, id: ConnectionId, a: PubRel) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Received PUBREL from {} (Mid: {})", name, a.packet_id);
        let Some(slot) = conn.session else {
            return;
        };
        let known = self
            .sessions
            .get_mut(slot)
            .is_some_and(|s| s.incoming_qos2.remove(&a.packet_id.get()));
        // [MQTT-4.3.3-11] PUBCOMP with the same identifier; 0x92 if unknown (5.0).
        let rc = if known {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        tracing::debug!(target: TARGET, "Sending PUBCOMP to {} (m{})", name, a.packet_id);
        conn.send(
            &mut self.out,
            &Packet::PubComp(PubComp::with_reason(a.packet_id, rc)),
        );
        if known && self.store.is_enabled() {
            self.save_session(slot);
        }
    }

    pub(super) fn handle_pubcomp(&mut self, now: Instant, id: ConnectionId, a: PubComp) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        tracing::debug!(
            target: TARGET,
            "Received PUBCOMP from {} (Mid: {}, RC:{})",
            conn.name(),
            a.packet_id,
            a.reason_code.as_u8()
        );
        if self.wrong_ack(now, id, mqtt_codec::PacketType::PubComp, a.packet_id) {
            return;
        }
        // QoS 2 is done at PUBCOMP, after PUBREC.
        self.complete(now, id, |o| o.packet_id == a.packet_id && o.released);
    }

    /// The in-flight message `done` picks is acknowledged: it leaves the
    /// window and the storage, and the next queued one may go out.
    fn complete(&mut self, now: Instant, id: ConnectionId, done: impl Fn(&Outgoing) -> bool) {
        let Some((conn, session)) = conn_and_session(&mut self.conns, &mut self.sessions, id)
        else {
            return;
        };
        if let Some(pos) = session.inflight.iter().position(done) {
            if let Some(o) = session.inflight.remove(pos) {
                self.store.forget(session, o.delivery.seq);
            }
        }
        flow!(self).pump(now, session, conn);
    }
}
