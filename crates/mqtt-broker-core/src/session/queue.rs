//! A session's queue: messages waiting for the in-flight window, or for
//! the client to come back (section 4.1), bounded by `max_queued_messages`
//! and `max_queued_bytes`.

use super::Session;
use crate::message::Delivery;
use std::collections::VecDeque;
use std::time::Instant;

impl Session {
    /// Whether a message of `size` bytes is beyond the limits (0: none).
    pub fn queue_is_full(&self, max_messages: usize, max_bytes: usize, size: usize) -> bool {
        (max_messages != 0 && self.queue.len() >= max_messages)
            || (max_bytes != 0 && self.queued_bytes + size > max_bytes)
    }

    /// Appends a delivery, keeping the byte count.
    pub fn push_queue(&mut self, d: Delivery) {
        self.queued_bytes += d.msg.size();
        self.queue.push_back(d);
    }

    /// Puts a delivery back at the front (no packet identifier was free).
    pub fn requeue_front(&mut self, d: Delivery) {
        self.queued_bytes += d.msg.size();
        self.queue.push_front(d);
    }

    /// Removes the first queued delivery, keeping the byte count.
    pub fn pop_queue(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(d.msg.size());
        if self.queue.is_empty() {
            self.dropping = false;
        }
        Some(d)
    }

    /// Takes the expired messages out of the queue [MQTT-3.3.2-5], keeping
    /// the order of the rest.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Delivery> {
        let mut expired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        while let Some(d) = self.pop_queue() {
            if d.msg.is_expired(now) {
                expired.push(d);
            } else {
                kept.push_back(d);
            }
        }
        self.queued_bytes = kept.iter().map(|d| d.msg.size()).sum();
        self.queue = kept;
        expired
    }
}
