//! Counters the embedder can read and that are published under `$SYS/broker/...`.

/// Broker statistics, as in Mosquitto's `$SYS/broker/...` topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Clients connected now (`$SYS/broker/clients/connected`).
    pub clients_connected: u64,
    /// Sessions, online and offline (`$SYS/broker/clients/total`).
    pub clients_total: u64,
    /// Most clients connected at once (`$SYS/broker/clients/maximum`).
    pub clients_maximum: u64,
    /// Transport connections open now, connected or not.
    pub connections_open: u64,
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
    /// Bytes received (`$SYS/broker/bytes/received`).
    pub bytes_received: u64,
    /// Bytes handed to the driver (`$SYS/broker/bytes/sent`).
    pub bytes_sent: u64,
    /// Retained messages stored (`$SYS/broker/retained messages/count`).
    pub retained_messages: u64,
    /// Subscriptions, shared ones included (`$SYS/broker/subscriptions/count`).
    pub subscriptions: u64,
    /// Messages waiting in session queues or in flight (`$SYS/broker/store/messages/count`).
    pub messages_stored: u64,
}
