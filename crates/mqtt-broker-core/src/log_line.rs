//! Pieces of Mosquitto's `-v` log lines shared by several messages.

use mqtt_codec::{Publish, QoS};
use std::fmt;

/// The `(d0, q1, r0, m1, 'topic', ... (7 bytes))` part of Mosquitto's
/// PUBLISH lines (Received, Sending, Denied, Dropped).
pub(crate) struct PublishSummary<'a> {
    pub(crate) dup: bool,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) mid: u16,
    pub(crate) topic: &'a str,
    pub(crate) len: usize,
}

impl<'a> PublishSummary<'a> {
    /// The summary of a PUBLISH as received.
    pub(crate) fn of(p: &'a Publish) -> Self {
        Self {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            mid: p.packet_id.map_or(0, |id| id.get()),
            topic: p.topic.as_str(),
            len: p.payload.len(),
        }
    }
}

impl fmt::Display for PublishSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
            u8::from(self.dup),
            self.qos.as_u8(),
            u8::from(self.retain),
            self.mid,
            self.topic,
            self.len
        )
    }
}
