//! `$SYS/broker/...`: the broker's statistics as retained messages,
//! published every `sys_interval`.

use super::*;

impl Broker {
    // ----- $SYS --------------------------------------------------------------

    pub(super) fn publish_sys(&mut self, now: Instant) {
        let s = self.stats();
        let uptime = self
            .started
            .map_or(0, |t| now.saturating_duration_since(t).as_secs());
        let items: [(&'static str, String); 15] = [
            (
                "$SYS/broker/version",
                format!("mqtt-broker-core version {}", env!("CARGO_PKG_VERSION")),
            ),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            (
                "$SYS/broker/clients/connected",
                s.clients_connected.to_string(),
            ),
            ("$SYS/broker/clients/total", s.clients_total.to_string()),
            ("$SYS/broker/clients/maximum", s.clients_maximum.to_string()),
            (
                "$SYS/broker/clients/disconnected",
                s.clients_total
                    .saturating_sub(s.clients_connected)
                    .to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                s.messages_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", s.messages_sent.to_string()),
            (
                "$SYS/broker/publish/messages/received",
                s.publish_messages_received.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                s.publish_messages_sent.to_string(),
            ),
            (
                "$SYS/broker/publish/messages/dropped",
                s.publish_messages_dropped.to_string(),
            ),
            ("$SYS/broker/bytes/received", s.bytes_received.to_string()),
            ("$SYS/broker/bytes/sent", s.bytes_sent.to_string()),
            (
                "$SYS/broker/retained messages/count",
                s.retained_messages.to_string(),
            ),
            (
                "$SYS/broker/subscriptions/count",
                s.subscriptions.to_string(),
            ),
        ];
        for (topic, value) in items {
            let Ok(topic) = TopicName::new(Bytes::from_static(topic.as_bytes())) else {
                continue;
            };
            let msg = Message {
                topic,
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: PublishProperties::default(),
                expires_at: None,
            };
            self.publish_message(now, msg, None);
        }
    }
}
