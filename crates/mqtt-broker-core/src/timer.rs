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
    /// (Boxed: keeps every timer, one or two per connection, at 16 bytes.)
    RetainedExpiry(Box<TopicName>),
    Sys,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
    /// The heap's length at which stale entries are swept out
    /// ([`Timers::needs_sweep`]).
    sweep_at: usize,
}

/// Below this many entries the heap is never swept.
const MIN_SWEEP: usize = 1024;

impl Timers {
    /// How many timers are pending, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether the heap has grown enough since the last sweep for
    /// [`Timers::sweep`] to be worth it: stale entries (of connections and
    /// sessions that are gone, expiries that moved) otherwise wait until
    /// their time, which may be days away (a Keep Alive of 65,535 s, a
    /// Session Expiry Interval), so a client reconnecting in a loop would
    /// grow the heap without bound.
    pub fn needs_sweep(&self) -> bool {
        self.heap.len() >= self.sweep_at.max(MIN_SWEEP)
    }

    /// Keeps the timers `live` says may still do something; the next sweep
    /// waits until the heap has doubled, so sweeping costs O(1) amortised
    /// per timer set.
    pub fn sweep(&mut self, mut live: impl FnMut(Instant, &Timer) -> bool) {
        self.heap.retain(|Reverse((at, _, t))| live(*at, t));
        self.sweep_at = self.heap.len().saturating_mul(2);
    }

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
