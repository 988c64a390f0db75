//! The broker's write-through to its [`Storage`], and the one rule that
//! makes it safe: **no byte leaves the broker before the storage records it
//! depends on.**
//!
//! Every change to persistent state (a session, a queued or in-flight
//! message, a retained message) is handed to the storage as it happens,
//! and marks the storage unflushed. [`crate::Broker::take_transmit`] (and
//! [`crate::Broker::poll_transmit`]) flush an unflushed storage before they
//! hand out any bytes, so a PUBACK, PUBREC or CONNACK never reaches a client
//! before what it acknowledges is in the storage. A driver needs to do
//! nothing for this; `tests/storage_order.rs` checks it with a storage that
//! records the order of writes, flushes and transmits.

use crate::message::Delivery;
use crate::session::Session;
use crate::storage::{Storage, StoredDelivery};
use mqtt_codec::PacketId;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Persistence {
    storage: Option<Box<dyn Storage>>,
    /// Records were written since the last flush.
    unflushed: bool,
}

impl Persistence {
    pub fn set(&mut self, storage: Box<dyn Storage>) -> &mut dyn Storage {
        self.unflushed = false;
        self.storage.insert(storage).as_mut()
    }

    pub fn take(&mut self) -> Option<Box<dyn Storage>> {
        self.flush();
        self.storage.take()
    }

    pub fn is_enabled(&self) -> bool {
        self.storage.is_some()
    }

    /// The storage, to write a record to.
    pub fn write(&mut self) -> Option<&mut dyn Storage> {
        let s = self.storage.as_deref_mut()?;
        self.unflushed = true;
        Some(s)
    }

    /// Lets the storage write what it buffered, if anything was recorded
    /// since the last flush.
    pub fn flush(&mut self) {
        if self.unflushed {
            self.unflushed = false;
            if let Some(s) = self.storage.as_deref_mut() {
                s.flush();
            }
        }
    }

    /// Writes a queued or in-flight delivery of a persistent session through.
    pub fn persist(
        &mut self,
        now: Instant,
        session: &Session,
        d: &Delivery,
        packet_id: Option<PacketId>,
        released: bool,
    ) {
        if !session.is_persistent() {
            return;
        }
        if let Some(storage) = self.write() {
            let stored = StoredDelivery::from_delivery(d, packet_id, released, Some(now));
            storage.save_message(&session.client_id, d.seq, &stored);
        }
    }

    /// A delivery of a persistent session is done (acknowledged or dropped).
    pub fn forget(&mut self, session: &Session, seq: u64) {
        if !session.is_persistent() {
            return;
        }
        if let Some(storage) = self.write() {
            storage.remove_message(&session.client_id, seq);
        }
    }
}
