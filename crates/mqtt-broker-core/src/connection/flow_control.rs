//! Flow control towards the client (section 4.9): how many QoS 1 and 2
//! messages may be unacknowledged at once.

use super::Conn;
use crate::broker_config::BrokerConfig;

impl Conn {
    /// The in-flight window: `max_inflight_messages` and the client's
    /// Receive Maximum [MQTT-3.3.4-9], whichever is smaller.
    pub fn send_window(&self, config: &BrokerConfig) -> usize {
        usize::from(config.inflight_window().min(self.receive_maximum))
    }
}
