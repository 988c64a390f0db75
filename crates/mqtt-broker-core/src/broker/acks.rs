//! Acknowledgements from a client for messages the broker sent it
//! (PUBACK, PUBREC, PUBCOMP) and PUBREL for messages it sent (section 4.3).

use super::*;

impl Broker {
    pub(super) fn handle_puback(
        &mut self,
        now: Instant,
        id: ConnectionId,
        pid: PacketId,
        rc: ReasonCode,
    ) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        tracing::debug!(target: TARGET, "Received PUBACK from {} (Mid: {}, RC:{})", conn.name(), pid, rc.as_u8());
        let Some(slot) = conn.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if let Some(pos) = session
            .inflight
            .iter()
            .position(|o| o.packet_id == pid && o.delivery.qos == QoS::AtLeastOnce)
        {
            if let Some(o) = session.inflight.remove(pos) {
                self.store.forget(session, o.delivery.seq);
            }
        }
        flow!(self).pump(now, session, conn);
    }

    pub(super) fn handle_pubrec(&mut self, now: Instant, id: ConnectionId, a: PubRec) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let name = conn.name().to_string();
        tracing::debug!(target: TARGET, "Received PUBREC from {} (Mid: {})", name, a.packet_id);
        let Some(slot) = conn.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(slot) else {
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
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        tracing::debug!(
            target: TARGET,
            "Received PUBCOMP from {} (Mid: {}, RC:{})",
            conn.name(),
            a.packet_id,
            a.reason_code.as_u8()
        );
        let Some(slot) = conn.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if let Some(pos) = session
            .inflight
            .iter()
            .position(|o| o.packet_id == a.packet_id && o.released)
        {
            if let Some(o) = session.inflight.remove(pos) {
                self.store.forget(session, o.delivery.seq);
            }
        }
        flow!(self).pump(now, session, conn);
    }
}
