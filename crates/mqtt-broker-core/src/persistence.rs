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
//!
//! A storage that writes on its own thread ([`Storage::start_flush`]) does
//! not block the broker: [`crate::Broker::take_transmit_when_stored`] hands
//! the driver its bytes inside a [`crate::Transmit`] that opens only once
//! the write is done, so the driver waits for the disk outside its lock,
//! and the type makes it impossible to write the bytes sooner. The last
//! ticket is kept: bytes taken for another connection after a flush
//! started, but before it finished, wait for the same write.

use crate::message::Delivery;
use crate::session::Session;
use crate::storage::{Storage, StoredDelivery};
use crate::write_progress::FlushTicket;
use mqtt_codec::PacketId;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Persistence {
    storage: Option<Box<dyn Storage>>,
    /// Records were written since the last flush.
    unflushed: bool,
    /// The last flush handed to the storage's own thread, until it is done.
    in_progress: Option<FlushTicket>,
}

impl Persistence {
    pub fn set(&mut self, storage: Box<dyn Storage>) -> &mut dyn Storage {
        self.unflushed = false;
        self.in_progress = None;
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
    /// since the last flush, and returns once everything is written.
    pub fn flush(&mut self) {
        if let Some(ticket) = self.start_flush() {
            ticket.wait();
        }
    }

    /// Starts writing what the storage buffered; the ticket (if any) is
    /// done when every record so far is written.
    pub fn start_flush(&mut self) -> Option<FlushTicket> {
        if self.unflushed {
            self.unflushed = false;
            if let Some(s) = self.storage.as_deref_mut() {
                self.in_progress = s.start_flush();
            }
        }
        match &self.in_progress {
            Some(t) if t.is_done() => {
                self.in_progress = None;
                None
            }
            other => other.clone(),
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
