//! Keep alive (section 3.1.2.10): the connection ends when nothing arrives
//! within one and a half times its Keep Alive [MQTT-3.1.2-24].

use super::Conn;
use std::time::{Duration, Instant};

/// One and a half times `keep_alive` seconds.
pub(crate) fn keep_alive_grace(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}

impl Conn {
    /// When the connection times out, measured from the last packet
    /// received; `None` with Keep Alive 0.
    pub fn keep_alive_deadline(&self) -> Option<Instant> {
        (self.keep_alive > 0).then(|| self.last_rx + keep_alive_grace(self.keep_alive))
    }
}
