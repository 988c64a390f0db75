//! Counters the embedder can read and that are published under `$SYS/broker/...`
//! (the list, with units: [`crate::sys::SYS_TOPICS`]).

use crate::event::DisconnectReason;
use std::collections::BTreeMap;

/// Broker statistics, as in Mosquitto's `$SYS/broker/...` topics.
///
/// Counters (`..._received`, `..._sent`, `..._dropped`, `..._expired`,
/// `..._accepted`) only grow; the others are gauges: values now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// Clients connected now (`$SYS/broker/clients/connected`).
    pub clients_connected: u64,
    /// Sessions, online and offline (`$SYS/broker/clients/total`).
    pub clients_total: u64,
    /// The most sessions there have been at once, as Mosquitto counts
    /// `$SYS/broker/clients/maximum` (the maximum of `clients/total`).
    pub clients_maximum: u64,
    /// Sessions that expired (`persistent_client_expiration`, 5.0 Session
    /// Expiry Interval) since the start (`$SYS/broker/clients/expired`).
    pub clients_expired: u64,
    /// Transport connections open now, connected or not.
    pub connections_open: u64,
    /// Transport connections open now, by listener port.
    pub connections_by_listener: BTreeMap<u16, u64>,
    /// Transport connections accepted since the start (Mosquitto's socket
    /// count behind `$SYS/broker/load/sockets/...`).
    pub connections_accepted: u64,
    /// CONNECT packets received since the start (behind
    /// `$SYS/broker/load/connections/...`).
    pub connects_received: u64,
    /// Connected clients that went away, by reason.
    pub disconnects: DisconnectCounts,
    /// Control packets received (`$SYS/broker/messages/received`).
    pub messages_received: u64,
    /// Control packets sent (`$SYS/broker/messages/sent`).
    pub messages_sent: u64,
    /// PUBLISH packets received (`$SYS/broker/publish/messages/received`).
    pub publish_messages_received: u64,
    /// PUBLISH packets sent (`$SYS/broker/publish/messages/sent`).
    pub publish_messages_sent: u64,
    /// Messages dropped: queue full, slow subscriber at QoS 0, too large for
    /// the client, or expired (`$SYS/broker/publish/messages/dropped`).
    pub publish_messages_dropped: u64,
    /// Payload bytes of the PUBLISH packets received
    /// (`$SYS/broker/publish/bytes/received`).
    pub publish_bytes_received: u64,
    /// Payload bytes of the PUBLISH packets sent
    /// (`$SYS/broker/publish/bytes/sent`).
    pub publish_bytes_sent: u64,
    /// Bytes received (`$SYS/broker/bytes/received`).
    pub bytes_received: u64,
    /// Bytes handed to the driver (`$SYS/broker/bytes/sent`).
    pub bytes_sent: u64,
    /// Retained messages stored (`$SYS/broker/retained messages/count`).
    pub retained_messages: u64,
    /// Subscriptions, shared ones included (`$SYS/broker/subscriptions/count`).
    pub subscriptions: u64,
    /// Shared subscriptions (`$SYS/broker/shared_subscriptions/count`).
    pub shared_subscriptions: u64,
    /// Messages waiting in session queues or in flight.
    pub messages_stored: u64,
    /// Messages the broker holds: retained ones, and one per session queue
    /// or in-flight window they wait in (`$SYS/broker/store/messages/count`
    /// and `$SYS/broker/messages/stored`).
    pub store_messages: u64,
    /// Payload bytes of the messages in `store_messages`
    /// (`$SYS/broker/store/messages/bytes`).
    pub store_bytes: u64,
    /// Heap in use, from the embedder's heap source if it gave one, else
    /// the bytes counted against `memory_limit` ([`crate::memory`])
    /// (`$SYS/broker/heap/current`); see [`crate::Broker::with_heap_source`].
    /// `None` when the heap source does not know.
    pub heap_current: Option<u64>,
    /// Most heap in use so far, from the same place
    /// (`$SYS/broker/heap/maximum`).
    pub heap_maximum: Option<u64>,
}

/// Connected clients that went away, one counter per [`DisconnectReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DisconnectCounts {
    /// The client sent DISCONNECT.
    pub client_disconnected: u64,
    /// The transport closed without DISCONNECT.
    pub connection_lost: u64,
    /// No packet within 1.5 times the Keep Alive.
    pub keep_alive_timeout: u64,
    /// Another connection took the session over.
    pub session_taken_over: u64,
    /// The client broke the protocol.
    pub protocol_violation: u64,
    /// Re-authentication failed or access was revoked.
    pub not_authorized: u64,
    /// The broker shut down.
    pub server_shutting_down: u64,
    /// The client stopped reading (`write_timeout`).
    pub write_timeout: u64,
    /// What the client sent did not fit within `memory_limit`.
    pub memory_limit: u64,
}

impl DisconnectCounts {
    /// Counts one disconnect for `reason`.
    pub(crate) fn count(&mut self, reason: DisconnectReason) {
        let c = match reason {
            DisconnectReason::ClientDisconnected => &mut self.client_disconnected,
            DisconnectReason::ConnectionLost => &mut self.connection_lost,
            DisconnectReason::KeepAliveTimeout => &mut self.keep_alive_timeout,
            DisconnectReason::SessionTakenOver => &mut self.session_taken_over,
            DisconnectReason::ProtocolViolation(_) => &mut self.protocol_violation,
            DisconnectReason::NotAuthorized => &mut self.not_authorized,
            DisconnectReason::ServerShuttingDown => &mut self.server_shutting_down,
            DisconnectReason::WriteTimeout => &mut self.write_timeout,
            DisconnectReason::MemoryLimit => &mut self.memory_limit,
        };
        *c += 1;
    }

    /// Each counter with its name in `snake_case` (the `reason` label of
    /// the Prometheus metrics), in a fixed order.
    pub fn by_reason(&self) -> [(&'static str, u64); 9] {
        [
            ("client_disconnected", self.client_disconnected),
            ("connection_lost", self.connection_lost),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("session_taken_over", self.session_taken_over),
            ("protocol_violation", self.protocol_violation),
            ("not_authorized", self.not_authorized),
            ("server_shutting_down", self.server_shutting_down),
            ("write_timeout", self.write_timeout),
            ("memory_limit", self.memory_limit),
        ]
    }
}

/// Heap numbers from the embedder's allocator, for `$SYS/broker/heap/...`.
///
/// The broker has no allocator hook of its own (and no `unsafe` code to
/// install one): an embedder whose allocator keeps counts (a counting
/// `GlobalAlloc` wrapper, jemalloc's statistics, ...) hands them over with
/// [`crate::Broker::with_heap_source`]. Without one, the heap topics are
/// not published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapUsage {
    /// Bytes allocated now.
    pub current: u64,
    /// The most bytes allocated at once so far.
    pub maximum: u64,
}

/// Where the broker reads [`HeapUsage`] from; called once per `sys_interval`
/// and by [`crate::Broker::stats`]. `None` means "not known now".
pub type HeapSource = Box<dyn Fn() -> Option<HeapUsage> + Send>;
