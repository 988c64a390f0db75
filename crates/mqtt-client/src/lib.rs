//! An MQTT 3.1.1 and 5.0 (and 3.1) client over TCP, TLS and mutual TLS: a
//! deterministic sans-IO core ([`proto`]) and a tokio API (`Client`) that
//! reconnects with back-off, restores subscriptions and re-sends
//! unacknowledged messages.
//!
//! # Cargo features
//!
//! - `tokio` (default): the tokio API (`Client`, `EventLoop`,
//!   `ClientOptions`, `Error`) and its transports: TCP, TLS with rustls
//!   through `mqtt-tls`, WebSockets.
//!
//! With `default-features = false` the crate is the sans-IO core alone
//! ([`proto`]): its dependencies are `mqtt-codec`, `bytes`, `thiserror` and
//! `tracing`, so any runtime, or none, can drive it (the repository's
//! `examples/client-core-without-tokio.rs` drives it over
//! `std::net::TcpStream` and rustls).
//!
//! # The common case
//!
//! Connect with mutual TLS (files as Mosquitto names them), subscribe, and
//! loop over messages:
//!
//! ```no_run
//! # #[cfg(feature = "tokio")] mod example {
//! use mqtt_client::{Client, ClientOptions, ClientTlsOptions, QoS};
//!
//! # async fn run() -> Result<(), mqtt_client::Error> {
//! let tls = ClientTlsOptions::new()
//!     .cafile("ca.crt")
//!     .certfile("client.crt")
//!     .keyfile("client.key");
//! let options = ClientOptions::new("192.168.1.5", 8883).client_id("pi").tls_files(&tls)?;
//! let (client, mut messages) = Client::connect(options).await?;
//! client.subscribe("ssltopic", QoS::AtLeastOnce).await?;
//! while let Some(message) = messages.recv().await {
//!     println!("{} {}", message.topic, String::from_utf8_lossy(&message.payload));
//! }
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! [`Client::publish`] completes when the broker has the message (QoS 0:
//! written; QoS 1: PUBACK; QoS 2: PUBCOMP) and returns its reason code.
//! [`Client::start_publish`] returns once the message is queued, with a
//! [`PublishHandle`] that resolves then: one task keeps many messages in
//! flight (within the broker's Receive Maximum) without a round trip each.
//! [`Client::state`] tells whether the client is connected or reconnecting,
//! and why.
//!
//! # Back-pressure
//!
//! [`Messages`] is a bounded channel ([`ClientOptions::message_capacity`]).
//! Awaiting a publish, subscribe or unsubscribe while nobody reads
//! `Messages` never deadlocks, because the event loop keeps reading the
//! socket, and so keeps processing the acknowledgements of your requests,
//! while messages wait for room in the channel:
//!
//! - An incoming QoS 1 or 2 message is acknowledged (PUBACK, PUBREC) only
//!   when it enters the channel. The client sends a Receive Maximum equal to
//!   [`ClientOptions::max_held_messages`] (5.0), so the broker may not have
//!   more unacknowledged messages towards it than that: it keeps the rest
//!   queued on its side (Mosquitto does the same for 3.1.1 with its
//!   `max_inflight_messages`, 20 by default). Nothing is lost.
//! - At most [`ClientOptions::max_held_messages`] incoming QoS 0 messages
//!   wait; further ones are dropped (QoS 0 is "at most once") with a warning,
//!   rather than stalling the socket and with it your acknowledgements.
//!
//! So memory stays bounded, and a task may publish and read messages in any
//! order.
//!
//! # Limits
//!
//! The maximum incoming packet size defaults to the protocol's maximum
//! (256 MiB), so a large retained message never trips a client over a
//! hidden limit; set [`ClientOptions::max_incoming_packet_size`] to bound
//! memory, and a larger packet ends the connection with an error that names
//! the limit and the setting.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "tokio")]
mod backoff;
#[cfg(feature = "tokio")]
mod client;
#[cfg(feature = "tokio")]
mod error;
#[cfg(feature = "tokio")]
mod event_loop;
#[cfg(feature = "tokio")]
mod options;
pub mod proto;
#[cfg(feature = "tokio")]
mod state;

#[cfg(feature = "tokio")]
pub use backoff::ReconnectOptions;
#[cfg(feature = "tokio")]
pub use client::{Client, Messages, PublishHandle};
#[cfg(feature = "tokio")]
pub use error::Error;
#[cfg(feature = "tokio")]
pub use event_loop::EventLoop;
#[cfg(feature = "tokio")]
pub use options::ClientOptions;
pub use proto::{AuthHandler, EnhancedAuth, PacketDirection};
#[cfg(feature = "tokio")]
pub use state::ConnectionState;

pub use mqtt_codec::{
    Packet, Properties, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, SubAck,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, UnsubAck,
};
#[cfg(feature = "tokio")]
pub use mqtt_tls::{ClientTlsOptions, TlsError};

/// The README's examples, compiled and run as doctests (the tokio one needs
/// the `tokio` feature).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
