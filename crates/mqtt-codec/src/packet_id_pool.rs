//! [`PacketIdPool`]: the next free packet identifier of a session.

use core::num::NonZeroU16;

use crate::types::PacketId;

/// Hands out packet identifiers for PUBLISH (QoS 1 and 2), SUBSCRIBE and
/// UNSUBSCRIBE, which share one identifier space per session.
///
/// "Each time a Client sends a new SUBSCRIBE, UNSUBSCRIBE, or PUBLISH (where
/// QoS > 0) MQTT Control Packet it MUST assign it a non-zero Packet
/// Identifier that is currently unused" [MQTT-2.2.1-3]; the same holds for
/// the Server's PUBLISH packets [MQTT-2.2.1-4]. An identifier becomes free
/// again once its exchange completes (PUBACK, PUBCOMP, SUBACK, UNSUBACK, or
/// a PUBREC with an error reason code).
///
/// The pool keeps no record of what is in use, only where to look next: the
/// caller already holds its in-flight exchanges and answers the question
/// through the closure given to [`PacketIdPool::allocate`]. So the pool is
/// two bytes, whatever the number of messages in flight. Identifiers are
/// tried in order 1, 2, …, 65535, 1, … from where the last allocation
/// stopped, so a just-freed identifier is the last to be used again.
///
/// ```
/// use mqtt_codec::{PacketId, PacketIdPool};
///
/// let mut pool = PacketIdPool::new();
/// let in_flight = [PacketId::new(2).unwrap()];
/// let a = pool.allocate(|id| in_flight.contains(&id)).unwrap();
/// let b = pool.allocate(|id| in_flight.contains(&id)).unwrap();
/// assert_eq!((a.get(), b.get()), (1, 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketIdPool {
    /// The first candidate of the next allocation.
    next: PacketId,
}

impl PacketIdPool {
    /// A pool whose first identifier is 1.
    pub const fn new() -> Self {
        Self {
            next: NonZeroU16::MIN,
        }
    }

    /// A pool whose next allocation tries `next` first.
    pub const fn starting_at(next: PacketId) -> Self {
        Self { next }
    }

    /// The identifier the next allocation tries first.
    pub const fn peek(&self) -> PacketId {
        self.next
    }

    /// The first identifier, from the next candidate on and wrapping from
    /// 65535 to 1, for which `in_use` returns `false` [MQTT-2.2.1-3].
    ///
    /// Each of the 65535 identifiers is tried at most once: `None` when all
    /// are in use, and the next allocation then starts where this one did.
    /// Otherwise the next allocation starts just after the returned one.
    pub fn allocate(&mut self, mut in_use: impl FnMut(PacketId) -> bool) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let id = self.next;
            self.next = id.checked_add(1).unwrap_or(NonZeroU16::MIN);
            if !in_use(id) {
                return Some(id);
            }
        }
        None
    }
}

impl Default for PacketIdPool {
    /// [`PacketIdPool::new`]: the first identifier is 1.
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn starts_at_one_and_counts_up() {
        let mut pool = PacketIdPool::default();
        assert_eq!(pool.peek(), id(1));
        for n in 1..=5 {
            assert_eq!(pool.allocate(|_| false), Some(id(n)));
        }
        assert_eq!(pool.peek(), id(6));
        assert_eq!(core::mem::size_of::<PacketIdPool>(), 2);
        assert_eq!(core::mem::size_of::<Option<PacketIdPool>>(), 2);
    }

    #[test]
    fn wraps_from_65535_to_1() {
        let mut pool = PacketIdPool::starting_at(id(u16::MAX - 1));
        assert_eq!(pool.allocate(|_| false), Some(id(u16::MAX - 1)));
        assert_eq!(pool.allocate(|_| false), Some(id(u16::MAX)));
        assert_eq!(pool.allocate(|_| false), Some(id(1)));
    }

    #[test]
    fn skips_identifiers_in_use() {
        let in_use: BTreeSet<u16> = [1, 2, 4, u16::MAX, 5].into_iter().collect();
        let mut pool = PacketIdPool::new();
        let busy = |i: PacketId| in_use.contains(&i.get());
        assert_eq!(pool.allocate(busy), Some(id(3)));
        assert_eq!(pool.allocate(busy), Some(id(6)));
        // Skipping across the wrap.
        let mut pool = PacketIdPool::starting_at(id(u16::MAX));
        assert_eq!(pool.allocate(busy), Some(id(3)));
    }

    // Exhaustive over the 65,535 identifiers: left out under Miri (.ci/miri
    // checks the encoders' `unsafe`; nothing here is unsafe), where it
    // would take many minutes.
    #[test]
    #[cfg(not(miri))]
    fn only_free_identifier_is_found_wherever_it_is() {
        for free in [1, 2, 30_000, u16::MAX - 1, u16::MAX] {
            for start in [1, free, u16::MAX] {
                let mut pool = PacketIdPool::starting_at(id(start));
                assert_eq!(pool.allocate(|i| i.get() != free), Some(id(free)));
                assert_eq!(pool.peek(), id(free).checked_add(1).unwrap_or(id(1)));
            }
        }
    }

    // Exhaustive over the 65,535 identifiers: left out under Miri (.ci/miri
    // checks the encoders' `unsafe`; nothing here is unsafe), where it
    // would take many minutes.
    #[test]
    #[cfg(not(miri))]
    fn none_when_all_in_use_after_trying_each_once() {
        let mut pool = PacketIdPool::starting_at(id(17));
        let mut tried = BTreeSet::new();
        let mut calls = 0u32;
        assert_eq!(
            pool.allocate(|i| {
                calls += 1;
                tried.insert(i.get());
                true
            }),
            None
        );
        assert_eq!(calls, u32::from(u16::MAX));
        assert_eq!(tried.len(), usize::from(u16::MAX));
        // The next attempt starts where this one did.
        assert_eq!(pool.peek(), id(17));
        assert_eq!(pool.allocate(|_| false), Some(id(17)));
    }

    #[test]
    fn a_freed_identifier_is_reused_only_after_the_others() {
        let mut pool = PacketIdPool::new();
        let mut in_flight = BTreeSet::new();
        for _ in 0..3 {
            in_flight.insert(pool.allocate(|i| in_flight.contains(&i)).unwrap());
        }
        in_flight.remove(&id(1));
        // 1 is free again, but 4 comes first.
        assert_eq!(pool.allocate(|i| in_flight.contains(&i)), Some(id(4)));
    }
}
