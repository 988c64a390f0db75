//! The memory account behind Mosquitto's `memory_limit`.
//!
//! Mosquitto counts every byte it allocates and refuses allocations past
//! the limit. This broker has no allocator hook (and no `unsafe` code to
//! install one), so it counts what grows with what clients send instead:
//!
//! - **Messages it holds**: queued for a session, in flight, retained, and
//!   wills. A message counts once however many sessions hold it (the
//!   deliveries share one [`Arc`] and one payload), like an entry of
//!   Mosquitto's message store: its topic, payload and properties plus
//!   [`MESSAGE_OVERHEAD`] bytes of bookkeeping. Its bytes are released
//!   when the last holder lets go of it.
//! - **Packets being received**: a connection whose packet is not complete
//!   yet holds the packet's announced length (as Mosquitto allocates the
//!   announced remaining length before reading it), so a client that
//!   announces a huge packet and trickles it in cannot take memory past
//!   the limit. Packets up to [`RECEIVE_ALLOWANCE`] are counted but not
//!   refused, so that acknowledgements and subscriptions split across
//!   reads still work above the limit.
//!
//! The account is shared: the broker (behind its lock) charges messages,
//! the connection tasks charge packets as they arrive, without the lock
//! ([`ReceiveCharge`]). With a limit, a new PUBLISH that does not fit is
//! refused and a packet whose announced length does not fit closes its
//! connection; nothing already accepted is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes a held message counts on top of its topic, payload and
/// properties: the broker's bookkeeping for it (the message, its place in
/// the queues), an approximation.
pub const MESSAGE_OVERHEAD: usize = 128;

/// A packet being received of at most this many bytes is counted but never
/// refused: acknowledgements, SUBSCRIBE, PINGREQ and DISCONNECT go on
/// working above the limit even when a read ends inside them, and a
/// connection holds no more than this beyond the limit (about what its
/// read buffer and socket buffers cost anyway). Larger packets must fit.
pub const RECEIVE_ALLOWANCE: usize = 16 * 1024;

/// The broker's count of the bytes it holds for clients, and its
/// `memory_limit`; see the [module documentation](self).
///
/// Read it with [`crate::Broker::memory`] (`current`, `maximum` and the
/// limit), or hand it to a driver, which charges the packets it is
/// receiving with a [`ReceiveCharge`].
#[derive(Debug, Default)]
pub struct MemoryAccount {
    limit: AtomicUsize,
    current: AtomicUsize,
    maximum: AtomicUsize,
}

impl MemoryAccount {
    /// An empty account with `limit` bytes (0: no limit).
    pub fn new(limit: usize) -> Self {
        let account = Self::default();
        account.set_limit(limit);
        account
    }

    /// The limit in bytes; 0 is none.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (a configuration reload). Lowering it below what
    /// is held frees nothing: new messages are refused until enough of it
    /// is released, as in Mosquitto.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// The most bytes held at once so far.
    pub fn maximum(&self) -> usize {
        self.maximum.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more fit within the limit (always, without one).
    pub fn has_room(&self, bytes: usize) -> bool {
        let limit = self.limit();
        limit == 0 || self.current().saturating_add(bytes) <= limit
    }

    /// Adds `bytes` whatever the limit.
    fn add(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.maximum.fetch_max(now, Ordering::Relaxed);
    }

    /// Adds `bytes` if they fit within the limit.
    fn try_add(&self, bytes: usize) -> bool {
        let limit = self.limit();
        if limit == 0 {
            self.add(bytes);
            return true;
        }
        let mut cur = self.current();
        loop {
            let Some(next) = cur.checked_add(bytes).filter(|n| *n <= limit) else {
                return false;
            };
            match self.current.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.maximum.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    fn sub(&self, bytes: usize) {
        if bytes != 0 {
            self.current.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

/// Bytes held on a [`MemoryAccount`] until this is dropped. A clone holds
/// the same number of bytes again (it is a second copy).
#[derive(Default)]
pub(crate) struct MemoryCharge {
    account: Option<Arc<MemoryAccount>>,
    bytes: usize,
}

impl MemoryCharge {
    /// Charges `bytes` to `account` whatever its limit (the caller checked
    /// [`MemoryAccount::has_room`] where refusing is possible).
    pub fn force(account: &Arc<MemoryAccount>, bytes: usize) -> Self {
        account.add(bytes);
        Self {
            account: Some(account.clone()),
            bytes,
        }
    }

    /// Whether this charges an account.
    pub fn is_charged(&self) -> bool {
        self.account.is_some()
    }
}

impl Clone for MemoryCharge {
    fn clone(&self) -> Self {
        match &self.account {
            Some(account) => Self::force(account, self.bytes),
            None => Self::default(),
        }
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            account.sub(self.bytes);
        }
    }
}

impl std::fmt::Debug for MemoryCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryCharge({})", self.bytes)
    }
}

/// Two messages are equal whatever they are charged.
impl PartialEq for MemoryCharge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for MemoryCharge {}

/// The bytes one connection holds for the packet it is receiving: a
/// driver that frames packets itself keeps one per connection and calls
/// [`ReceiveCharge::update`] with what is left in its read buffer after
/// decoding. Dropping it releases them.
#[derive(Debug)]
pub struct ReceiveCharge {
    account: Arc<MemoryAccount>,
    bytes: usize,
}

/// A packet being received does not fit within `memory_limit`: what
/// [`ReceiveCharge::update`] returns, for
/// [`crate::Broker::handle_memory_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimitExceeded {
    /// The bytes the packet needs (its announced length).
    pub needed: usize,
    /// The limit.
    pub limit: usize,
    /// What the account held, this packet's earlier part included.
    pub current: usize,
}

impl ReceiveCharge {
    /// Nothing held yet, on `account`.
    pub fn new(account: Arc<MemoryAccount>) -> Self {
        Self { account, bytes: 0 }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds what the start of a packet left in `buffered` (the bytes of
    /// the read buffer no whole packet took) needs: the packet's announced
    /// length once its fixed header is in, else what is there. Growing
    /// past the limit fails and holds nothing more (up to
    /// [`RECEIVE_ALLOWANCE`] it is counted and never fails); shrinking
    /// always works.
    pub fn update(&mut self, buffered: &[u8]) -> Result<(), MemoryLimitExceeded> {
        self.set(receiving_len(buffered))
    }

    /// Holds `bytes` (see [`ReceiveCharge::update`]).
    pub fn set(&mut self, bytes: usize) -> Result<(), MemoryLimitExceeded> {
        if bytes <= self.bytes {
            self.account.sub(self.bytes - bytes);
            self.bytes = bytes;
            return Ok(());
        }
        let more = bytes - self.bytes;
        if bytes <= RECEIVE_ALLOWANCE {
            self.account.add(more);
            self.bytes = bytes;
            Ok(())
        } else if self.account.try_add(more) {
            self.bytes = bytes;
            Ok(())
        } else {
            Err(MemoryLimitExceeded {
                needed: bytes,
                limit: self.account.limit(),
                current: self.account.current(),
            })
        }
    }
}

impl Drop for ReceiveCharge {
    fn drop(&mut self) {
        self.account.sub(self.bytes);
    }
}

/// What the packet starting `buffered` will take: its whole length when the
/// fixed header is complete, else the bytes there (a malformed header is
/// the decoder's to report).
pub fn receiving_len(buffered: &[u8]) -> usize {
    match mqtt_codec::FixedHeader::parse(buffered) {
        Ok(Some(header)) => header.packet_len().max(buffered.len()),
        _ => buffered.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_count_until_dropped_and_clones_count_again() {
        let account = Arc::new(MemoryAccount::new(0));
        let a = MemoryCharge::force(&account, 100);
        let b = a.clone();
        assert_eq!(account.current(), 200);
        drop(a);
        assert_eq!(account.current(), 100);
        drop(b);
        assert_eq!(account.current(), 0);
        assert_eq!(account.maximum(), 200);
    }

    #[test]
    fn a_receive_charge_stops_at_the_limit_and_shrinks_freely() {
        const K: usize = RECEIVE_ALLOWANCE;
        let account = Arc::new(MemoryAccount::new(10 * K));
        let _held = MemoryCharge::force(&account, 4 * K);
        let mut rx = ReceiveCharge::new(account.clone());
        assert!(rx.set(6 * K).is_ok());
        assert_eq!(account.current(), 10 * K);
        let err = rx.set(6 * K + 1).unwrap_err();
        assert_eq!(
            (err.needed, err.limit, err.current),
            (6 * K + 1, 10 * K, 10 * K)
        );
        assert_eq!(rx.bytes(), 6 * K);
        assert!(rx.set(10).is_ok());
        assert_eq!(account.current(), 4 * K + 10);
        drop(rx);
        assert_eq!(account.current(), 4 * K);
    }

    #[test]
    fn small_packets_are_counted_but_never_refused() {
        let account = Arc::new(MemoryAccount::new(1000));
        let _held = MemoryCharge::force(&account, 1000);
        let mut rx = ReceiveCharge::new(account.clone());
        assert!(rx.set(RECEIVE_ALLOWANCE).is_ok());
        assert_eq!(account.current(), 1000 + RECEIVE_ALLOWANCE);
        assert!(rx.set(RECEIVE_ALLOWANCE + 1).is_err());
    }

    #[test]
    fn the_announced_length_of_a_partial_packet_is_held() {
        // PUBLISH announcing 200 MiB (remaining length 0x0C800000 - 5).
        let remaining: u32 = 200 * 1024 * 1024 - 5;
        let mut head = vec![0x30];
        let mut n = remaining;
        loop {
            let mut b = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                b |= 0x80;
            }
            head.push(b);
            if n == 0 {
                break;
            }
        }
        head.extend_from_slice(b"\x00\x01t");
        assert_eq!(receiving_len(&head), 1 + 4 + remaining as usize);
        // An incomplete fixed header: only what is there.
        assert_eq!(receiving_len(&head[..2]), 2);
        assert_eq!(receiving_len(&[]), 0);
    }
}
