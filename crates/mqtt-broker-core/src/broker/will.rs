//! Wills (section 3.1.2.5): published when a connection ends abnormally,
//! after the Will Delay Interval [MQTT-3.1.3-9].

use super::*;

impl Broker {
    pub(super) fn publish_will(
        &mut self,
        now: Instant,
        will: Will,
        client_id: &str,
        username: Option<&str>,
    ) {
        let mut msg = will.message;
        if !self.may_publish(client_id, username, msg.topic.as_str()) {
            tracing::debug!(target: TARGET, "Denied will of {} on '{}'.", client_id, msg.topic);
            return;
        }
        if let Some(secs) = msg.properties.message_expiry_interval.take() {
            msg.expires_at = Some(now + Duration::from_secs(u64::from(secs)));
        }
        self.publish_message(now, msg, None);
    }
}

impl Will {
    pub(super) fn with_expiry(mut self, secs: Option<u32>) -> Self {
        self.message.properties.message_expiry_interval = secs;
        self
    }
}
