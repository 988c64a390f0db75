//! What the broker hands to the outside after each call: the events its
//! driver polls, and the statistics counters (read by the embedder and
//! published under `$SYS`).

use crate::connection::Conn;
use crate::event::{DropReason, Event};
use crate::stats::Statistics;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub events: VecDeque<Event>,
    pub stats: Statistics,
    /// Raise `Subscribed`, `Unsubscribed` and `MessageDropped` events.
    pub report_activity: bool,
}

impl Outbox {
    /// Counts a message not delivered to `client_id`, and reports it when
    /// asked to.
    pub fn dropped(&mut self, client_id: &str, topic: &str, reason: DropReason) {
        self.stats.publish_messages_dropped += 1;
        if self.report_activity {
            self.events.push_back(Event::MessageDropped {
                client_id: client_id.to_string(),
                topic: topic.to_string(),
                reason,
            });
        }
    }

    /// Announces `conn`'s outgoing bytes (or packets) once, until the driver takes them.
    pub fn mark_transmit(&mut self, conn: &mut Conn) {
        if !conn.transmit_pending && conn.has_output() {
            conn.transmit_pending = true;
            self.events.push_back(Event::Transmit(conn.id));
        }
    }
}
