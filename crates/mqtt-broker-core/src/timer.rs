//! The broker's timers: one heap, stale entries recognised when they fire.

use crate::connection::ConnectionId;
use crate::session::SessionKey;
use mqtt_codec::TopicName;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    KeepAlive(ConnectionId),
    ConnectTimeout(ConnectionId),
    /// A deferred authentication's time is up.
    AuthTimeout(ConnectionId),
    /// A session's delayed will is due.
    Will(SessionKey),
    SessionExpiry(SessionKey),
    /// A message in a session's queue expires.
    QueueExpiry(SessionKey),
    /// The retained message of a topic expires.
    RetainedExpiry(TopicName),
    Sys,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
}

impl Timers {
    pub fn set(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, timer)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, _, t))| t)
    }
}
