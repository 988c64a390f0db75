//! What the broker hands to the outside after each call: the events its
//! driver polls, and the statistics counters (read by the embedder and
//! published under `$SYS`).

use crate::connection::Conn;
use crate::event::Event;
use crate::stats::Statistics;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub events: VecDeque<Event>,
    pub stats: Statistics,
}

impl Outbox {
    /// Announces `conn`'s outgoing bytes (or packets) once, until the driver takes them.
    pub fn mark_transmit(&mut self, conn: &mut Conn) {
        if !conn.transmit_pending && conn.has_output() {
            conn.transmit_pending = true;
            self.events.push_back(Event::Transmit(conn.id));
        }
    }
}
