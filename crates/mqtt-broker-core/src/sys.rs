//! The `$SYS/broker/...` topics, as Mosquitto 2.0.11 publishes them: one
//! table ([`SYS_TOPICS`]) that the broker publishes from, the documentation
//! lists and the tests read.
//!
//! Every value is a retained message, its payload plain text: integers in
//! decimal, load averages with two decimals (`12.34`), the uptime as
//! `N seconds`. The broker publishes each topic one `sys_interval` after
//! its first call and then every `sys_interval`, when its value changed
//! (the uptime every time, a load average when it moved by 0.01 or more),
//! as Mosquitto does.
//!
//! **Load averages.** Each `load/.../1min`, `5min` and `15min` topic is an
//! exponentially weighted moving average of a rate per minute, computed as
//! Mosquitto computes it: at every update, with `t` the seconds since the
//! previous update and `n` what the counter grew by meanwhile, the rate is
//! `r = n * 60 / t` and the average becomes `r + e * (avg - r)` with
//! `e = exp(-t / W)`, `W` being 60, 300 or 900 seconds. The first update
//! publishes 0.00 and only records the counters.

use crate::stats::Statistics;

/// Reads one number from the statistics.
pub(crate) type Counter = fn(&Statistics) -> u64;

/// What a `$SYS` topic's value is made from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SysValue {
    /// `mqtt-broker-core version X.Y.Z`.
    Version,
    /// `N seconds` since the broker's first call.
    Uptime,
    /// A number from the statistics.
    Stat(Counter),
    /// The moving average of the counter `LOAD_SERIES[series]` over `window` seconds.
    Load {
        /// Index into [`LOAD_SERIES`].
        series: usize,
        /// 60, 300 or 900.
        window: u32,
    },
    /// `Statistics::heap_current`, if the embedder gave a heap source.
    HeapCurrent,
    /// `Statistics::heap_maximum`, if the embedder gave a heap source.
    HeapMaximum,
    /// The days left of a TLS listener's certificate, from the driver
    /// ([`crate::Broker::set_tls_days_left`]).
    TlsDaysLeft,
}

/// When a `$SYS` topic is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SysPublish {
    /// Every `sys_interval`.
    Always,
    /// At an update when the value differs from the one last published.
    OnChange,
    /// At the first update, then when the average moved by 0.01 or more.
    LoadChange,
    /// On change: the embedder's heap source
    /// ([`crate::Broker::with_heap_source`]), or without one the bytes the
    /// broker counts against `memory_limit` ([`crate::Broker::memory`]).
    HeapSourceOnChange,
    /// On change, one topic per TLS listener whose driver reported the
    /// value ([`crate::Broker::set_tls_days_left`]).
    PerTlsListenerOnChange,
}

/// One `$SYS/broker/...` topic.
#[derive(Debug, Clone, Copy)]
pub struct SysTopic {
    /// The full topic name; in [`SYS_LISTENER_TOPICS`], a pattern with
    /// `<port>` where the listener's port goes.
    pub topic: &'static str,
    /// What the value is.
    pub meaning: &'static str,
    /// Its unit and format.
    pub unit: &'static str,
    /// Whether it is published retained (all are, as in Mosquitto).
    pub retained: bool,
    /// When it is published.
    pub publish: SysPublish,
    pub(crate) value: SysValue,
}

/// The cumulative counters behind the load averages, by series index, with
/// the topic part they appear under (`$SYS/broker/load/<part>/<window>`).
pub(crate) const LOAD_SERIES: [(&str, Counter); 9] = [
    ("messages/received", |s| s.messages_received),
    ("messages/sent", |s| s.messages_sent),
    ("publish/dropped", |s| s.publish_messages_dropped),
    ("publish/received", |s| s.publish_messages_received),
    ("publish/sent", |s| s.publish_messages_sent),
    ("bytes/received", |s| s.bytes_received),
    ("bytes/sent", |s| s.bytes_sent),
    ("sockets", |s| s.connections_accepted),
    ("connections", |s| s.connects_received),
];

const fn stat(
    topic: &'static str,
    meaning: &'static str,
    unit: &'static str,
    f: Counter,
) -> SysTopic {
    SysTopic {
        topic,
        meaning,
        unit,
        retained: true,
        publish: SysPublish::OnChange,
        value: SysValue::Stat(f),
    }
}

const fn load(topic: &'static str, meaning: &'static str, series: usize, window: u32) -> SysTopic {
    SysTopic {
        topic,
        meaning,
        unit: "per minute, 2 decimals",
        retained: true,
        publish: SysPublish::LoadChange,
        value: SysValue::Load { series, window },
    }
}

/// Every `$SYS/broker/...` topic the broker publishes, in Mosquitto's order.
pub const SYS_TOPICS: &[SysTopic] = &[
    SysTopic {
        topic: "$SYS/broker/version",
        meaning: "the broker's name and version",
        unit: "text: `mqtt-broker-core version X.Y.Z`",
        retained: true,
        publish: SysPublish::OnChange,
        value: SysValue::Version,
    },
    SysTopic {
        topic: "$SYS/broker/uptime",
        meaning: "time since the broker started",
        unit: "text: `N seconds`",
        retained: true,
        publish: SysPublish::Always,
        value: SysValue::Uptime,
    },
    stat("$SYS/broker/clients/total", "sessions, connected or not", "count", |s| s.clients_total),
    stat("$SYS/broker/clients/maximum", "the most sessions at once since the start", "count", |s| s.clients_maximum),
    stat("$SYS/broker/clients/inactive", "sessions without a connection", "count", |s| {
        s.clients_total.saturating_sub(s.clients_connected)
    }),
    stat("$SYS/broker/clients/disconnected", "sessions without a connection (same as clients/inactive)", "count", |s| {
        s.clients_total.saturating_sub(s.clients_connected)
    }),
    stat("$SYS/broker/clients/active", "clients connected now", "count", |s| s.clients_connected),
    stat("$SYS/broker/clients/connected", "clients connected now (same as clients/active)", "count", |s| s.clients_connected),
    stat("$SYS/broker/clients/expired", "sessions expired since the start", "count", |s| s.clients_expired),
    load("$SYS/broker/load/messages/received/1min", "control packets received, 1-minute average", 0, 60),
    load("$SYS/broker/load/messages/sent/1min", "control packets sent, 1-minute average", 1, 60),
    load("$SYS/broker/load/publish/dropped/1min", "messages dropped, 1-minute average", 2, 60),
    load("$SYS/broker/load/publish/received/1min", "PUBLISH packets received, 1-minute average", 3, 60),
    load("$SYS/broker/load/publish/sent/1min", "PUBLISH packets sent, 1-minute average", 4, 60),
    load("$SYS/broker/load/bytes/received/1min", "bytes received, 1-minute average", 5, 60),
    load("$SYS/broker/load/bytes/sent/1min", "bytes sent, 1-minute average", 6, 60),
    load("$SYS/broker/load/sockets/1min", "connections accepted, 1-minute average", 7, 60),
    load("$SYS/broker/load/connections/1min", "CONNECT packets received, 1-minute average", 8, 60),
    load("$SYS/broker/load/messages/received/5min", "control packets received, 5-minute average", 0, 300),
    load("$SYS/broker/load/messages/sent/5min", "control packets sent, 5-minute average", 1, 300),
    load("$SYS/broker/load/publish/dropped/5min", "messages dropped, 5-minute average", 2, 300),
    load("$SYS/broker/load/publish/received/5min", "PUBLISH packets received, 5-minute average", 3, 300),
    load("$SYS/broker/load/publish/sent/5min", "PUBLISH packets sent, 5-minute average", 4, 300),
    load("$SYS/broker/load/bytes/received/5min", "bytes received, 5-minute average", 5, 300),
    load("$SYS/broker/load/bytes/sent/5min", "bytes sent, 5-minute average", 6, 300),
    load("$SYS/broker/load/sockets/5min", "connections accepted, 5-minute average", 7, 300),
    load("$SYS/broker/load/connections/5min", "CONNECT packets received, 5-minute average", 8, 300),
    load("$SYS/broker/load/messages/received/15min", "control packets received, 15-minute average", 0, 900),
    load("$SYS/broker/load/messages/sent/15min", "control packets sent, 15-minute average", 1, 900),
    load("$SYS/broker/load/publish/dropped/15min", "messages dropped, 15-minute average", 2, 900),
    load("$SYS/broker/load/publish/received/15min", "PUBLISH packets received, 15-minute average", 3, 900),
    load("$SYS/broker/load/publish/sent/15min", "PUBLISH packets sent, 15-minute average", 4, 900),
    load("$SYS/broker/load/bytes/received/15min", "bytes received, 15-minute average", 5, 900),
    load("$SYS/broker/load/bytes/sent/15min", "bytes sent, 15-minute average", 6, 900),
    load("$SYS/broker/load/sockets/15min", "connections accepted, 15-minute average", 7, 900),
    load("$SYS/broker/load/connections/15min", "CONNECT packets received, 15-minute average", 8, 900),
    stat("$SYS/broker/messages/stored", "messages held: retained, queued and in flight (same as store/messages/count)", "count", |s| s.store_messages),
    stat("$SYS/broker/store/messages/count", "messages held: retained ones, and one per session queue or in-flight window", "count", |s| s.store_messages),
    stat("$SYS/broker/store/messages/bytes", "payload bytes of the messages held", "bytes", |s| s.store_bytes),
    stat("$SYS/broker/subscriptions/count", "subscriptions, shared ones included", "count", |s| s.subscriptions),
    stat("$SYS/broker/shared_subscriptions/count", "shared subscriptions (`$share/...`)", "count", |s| s.shared_subscriptions),
    stat("$SYS/broker/retained messages/count", "retained messages, `$SYS` ones included", "count", |s| s.retained_messages),
    SysTopic {
        topic: "$SYS/broker/heap/current",
        meaning: "heap in use, from the embedder's heap source; without one, the bytes counted against `memory_limit` (messages held, packets being received)",
        unit: "bytes",
        retained: true,
        publish: SysPublish::HeapSourceOnChange,
        value: SysValue::HeapCurrent,
    },
    SysTopic {
        topic: "$SYS/broker/heap/maximum",
        meaning: "most heap in use so far, from the embedder's heap source; without one, the most bytes counted against `memory_limit` at once",
        unit: "bytes",
        retained: true,
        publish: SysPublish::HeapSourceOnChange,
        value: SysValue::HeapMaximum,
    },
    stat("$SYS/broker/messages/received", "control packets received since the start", "count", |s| s.messages_received),
    stat("$SYS/broker/messages/sent", "control packets sent since the start", "count", |s| s.messages_sent),
    stat("$SYS/broker/publish/messages/dropped", "messages dropped since the start: queue full, QoS 0 to a slow subscriber, too large for the client, expired", "count", |s| s.publish_messages_dropped),
    stat("$SYS/broker/publish/messages/received", "PUBLISH packets received since the start", "count", |s| s.publish_messages_received),
    stat("$SYS/broker/publish/messages/sent", "PUBLISH packets sent since the start", "count", |s| s.publish_messages_sent),
    stat("$SYS/broker/bytes/received", "bytes received since the start", "bytes", |s| s.bytes_received),
    stat("$SYS/broker/bytes/sent", "bytes sent since the start", "bytes", |s| s.bytes_sent),
    stat("$SYS/broker/publish/bytes/received", "payload bytes of the PUBLISH packets received since the start", "bytes", |s| s.publish_bytes_received),
    stat("$SYS/broker/publish/bytes/sent", "payload bytes of the PUBLISH packets sent since the start", "bytes", |s| s.publish_bytes_sent),
];

/// The `$SYS/broker/...` topics published once per listener, with `<port>`
/// in place of the listener's port. Mosquitto has none of these; the names
/// follow its `$SYS/broker/...` style.
pub const SYS_LISTENER_TOPICS: &[SysTopic] = &[SysTopic {
    topic: "$SYS/broker/tls/listener/<port>/certificate/days_left",
    meaning: "whole days until the TLS listener's server certificate expires (0 on its last day, negative once expired), checked at start, on reload and once a day",
    unit: "days",
    retained: true,
    publish: SysPublish::PerTlsListenerOnChange,
    value: SysValue::TlsDaysLeft,
}];

/// The topic of `pattern` (from [`SYS_LISTENER_TOPICS`]) for the listener on `port`.
pub fn listener_topic(pattern: &str, port: u16) -> String {
    pattern.replace("<port>", &port.to_string())
}

/// The `$SYS` state carried from one update to the next.
#[derive(Debug, Default)]
pub(crate) struct SysState {
    /// When the last update ran.
    pub last: Option<std::time::Instant>,
    /// The load counters at the last update.
    pub counters: [u64; LOAD_SERIES.len()],
    /// The current average of each load topic, by index in `SYS_TOPICS`.
    pub loads: Vec<f64>,
    /// The payload last published, by index in `SYS_TOPICS`.
    pub published: Vec<Option<String>>,
    /// Days left of each TLS listener's certificate, by port, and what was
    /// last published for it.
    pub tls_days_left: std::collections::BTreeMap<u16, (i64, Option<i64>)>,
}

/// The new moving average of `current` towards `rate` after `elapsed`
/// seconds, for a window of `window` seconds (Mosquitto's `calc_load`).
pub(crate) fn next_load(current: f64, rate: f64, elapsed: f64, window: u32) -> f64 {
    let e = (-elapsed / f64::from(window)).exp();
    rate + e * (current - rate)
}
