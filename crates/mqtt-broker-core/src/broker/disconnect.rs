//! A client's DISCONNECT (section 3.14): session expiry update and the will.

use super::connect::expiry_from_seconds;
use super::*;

impl Broker {
    pub(super) fn handle_disconnect(&mut self, now: Instant, id: ConnectionId, d: Disconnect) {
        let cap = self.config.persistent_client_expiration;
        let Some(conn) = self.conn_ref(id) else {
            return;
        };
        let name = conn.name().to_string();
        let v5 = conn.version.is_v5();
        let connect_expiry = conn.connect_session_expiry;
        let slot = conn.session;
        tracing::debug!(target: TARGET, "Received DISCONNECT from {}", name);
        if v5 {
            if let Some(new) = d.properties.session_expiry_interval {
                // [MQTT-3.14.2-2] a session that was to end with the
                // connection cannot be made persistent now.
                if connect_expiry == 0 && new != 0 {
                    return self.violation(
                        now,
                        id,
                        ReasonCode::ProtocolError,
                        "session expiry set on DISCONNECT after 0 on CONNECT",
                    );
                }
                if let Some(s) = slot.and_then(|s| self.sessions.get_mut(s)) {
                    s.expiry = match (expiry_from_seconds(new), cap) {
                        (Some(d), Some(c)) if !d.is_zero() => Some(d.min(c)),
                        (None, Some(c)) => Some(c),
                        (e, _) => e,
                    };
                }
            }
        }
        // [MQTT-3.1.2-10] a normal DISCONNECT discards the will; 0x04 sends it.
        let will = v5 && d.reason_code == ReasonCode::DisconnectWithWillMessage;
        tracing::info!(target: CONNECTION, "Client {} disconnected.", name);
        if let Some(conn) = self.conn_mut(id) {
            conn.disconnect_code = Some(d.reason_code);
        }
        self.close_conn(now, id, will, DisconnectReason::ClientDisconnected);
    }
}
