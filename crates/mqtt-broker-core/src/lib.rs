//! A deterministic MQTT 3.1.1 and 5.0 broker state machine, in the style of
//! quinn-proto: no sockets, no clock, no threads.
//!
//! A [`Broker`] owns sessions, the subscription tree, retained messages,
//! wills and statistics. A driver (the tokio one behind the `tokio`
//! feature, or a test) feeds it what happens and polls it for what to do:
//!
//! 1. [`Broker::connection_opened`] when a transport connection is accepted
//!    (after TLS), with the peer address, the listener's settings and the
//!    verified client certificate; it returns a [`ConnectionId`].
//! 2. [`Broker::handle_bytes`] with the bytes read (the broker decodes them
//!    with that connection's [`mqtt_codec::Decoder`]), or
//!    [`Broker::handle_packet`] with packets the driver decoded itself
//!    (with the bytes each took, for the statistics).
//! 3. After each call, drain [`Broker::poll_event`]:
//!    [`Event::Transmit`] means [`Broker::take_transmit`] has bytes for that
//!    connection (everything ready, batched into one buffer: write it with
//!    one call; the storage is flushed before any byte is handed out);
//!    [`Event::Close`] means write what is left and close the transport.
//! 4. [`Broker::connection_closed`] when a transport ends (the will is
//!    published unless the client sent DISCONNECT).
//! 5. [`Broker::handle_timeout`] at [`Broker::poll_timeout`]: keep alive
//!    (1.5 times the Keep Alive, measured from the last packet), CONNECT
//!    time-out, will delay, session expiry and `$SYS` updates.
//!
//! An in-process client (one inside the hosting program) has a connection
//! too, opened with [`Broker::local_connection_opened`]: it is fed
//! [`mqtt_codec::Packet`]s with [`Broker::handle_packet`], and after
//! [`Event::Transmit`] its packets are taken unencoded with
//! [`Broker::take_packets`] (step 3's bytes, without the bytes).
//!
//! Every call that can change state takes `now: Instant`; the state machine
//! never reads the clock (only the optional `FileStorage` reads the wall
//! clock, to keep expiry as deadlines across restarts). Logs follow Mosquitto's `-v` lines through [`tracing`]
//! with target `mqtt_broker` (connection lines at INFO, packet lines at DEBUG).
//!
//! Back-pressure: a connection's outgoing bytes are bounded by
//! [`BrokerConfig::max_transmit_bytes`]. Beyond it, QoS 0 messages to that
//! client are dropped and QoS 1/2 messages wait in its session queue
//! (bounded by `max_queued_messages` / `max_queued_bytes`); taking the bytes
//! with [`Broker::take_transmit`] and acknowledgements move them on.
//!
//! Authentication and authorisation are pluggable ([`Authenticator`],
//! [`Authorizer`]); persistence goes through [`Storage`] (see its module for
//! why the in-memory state stays the fast path): [`MemoryStorage`], or a
//! file with `FileStorage` (feature `file-storage`, on with `tokio`), which
//! is what `persistence true` in a config turns on.
//!
//! # Cargo features
//!
//! None is on by default; without any, the crate depends only on
//! `mqtt-codec`, `bytes`, `thiserror` and `tracing`.
//!
//! - `mosquitto`: Mosquitto compatibility without a runtime: `config`
//!   (`mosquitto.conf`), `password_file`, `acl_file`, and `mosquitto`
//!   (`ConfigAuthenticator`, `ConfigAuthorizer`, `broker_config`). Adds
//!   `ring` and `base64` (password hashes).
//! - `file-storage`: `FileStorage`, the persistent state in one file.
//! - `tokio`: the `driver` (listeners, TLS, WebSockets, connection tasks,
//!   `ServerBuilder::from_config`). Turns on `mosquitto` and
//!   `file-storage`, and adds tokio, socket2 and `mqtt-tls` (rustls).
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_broker_core::{Broker, BrokerConfig, ConnectionInfo, Event};
//! use mqtt_codec::{Connect, Decoder, Packet, ProtocolVersion, ReasonCode};
//! use std::time::Instant;
//!
//! let mut broker = Broker::new(BrokerConfig::default());
//! let now = Instant::now(); // the driver's clock, not the library's
//! let conn = broker.connection_opened(now, ConnectionInfo::new("127.0.0.1:51234".parse().unwrap()));
//!
//! let mut wire = BytesMut::new();
//! Connect::new(ProtocolVersion::V3_1_1, "mosqpub/28552")
//!     .encode(ProtocolVersion::V3_1_1, &mut wire)
//!     .unwrap();
//! broker.handle_bytes(now, conn, &mut wire);
//!
//! assert_eq!(broker.poll_event(), Some(Event::Transmit(conn)));
//! let mut out = broker.take_transmit(now, conn).unwrap();
//! let mut client = Decoder::with_version(ProtocolVersion::V3_1_1);
//! let Some(Packet::ConnAck(ack)) = client.decode(&mut out).unwrap() else { panic!() };
//! assert_eq!(ack.reason_code, ReasonCode::Success);
//! assert!(!ack.session_present);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "mosquitto")]
pub mod acl_file;
#[cfg(feature = "mosquitto")]
pub mod config;
/// The tokio driver (listeners, TLS, connection tasks); feature `tokio`.
#[cfg(feature = "tokio")]
pub mod driver;
#[cfg(feature = "mosquitto")]
pub mod mosquitto;
#[cfg(feature = "mosquitto")]
pub mod password_file;

mod auth;
pub mod bridge;
mod broker;
mod broker_config;
mod connection;
mod event;
#[cfg(feature = "file-storage")]
mod file_storage;
mod log_line;
pub mod memory;
mod message;
mod outbox;
mod persistence;
mod router;
mod session;
mod setters;
mod slab;
mod stats;
mod storage;
pub mod sys;
mod timer;
mod write_progress;

pub use auth::{
    Access, AclRequest, AllowAll, AuthDecision, AuthExchange, AuthRequest, AuthStep, Authenticator,
    Authorizer, OwnedAuthRequest, PasswordMap,
};
pub use broker::{Broker, Transmit};
pub use broker_config::{BrokerConfig, DEFAULT_AUTO_ID_PREFIX};
pub use connection::{ConnectionId, ConnectionInfo, ListenerSettings, PeerCertificate};
pub use event::{DisconnectReason, DropReason, Event};
#[cfg(feature = "file-storage")]
pub use file_storage::{FileStorage, FileStorageError};
#[cfg(feature = "mosquitto")]
pub use mosquitto::{ConfigAuthenticator, ConfigAuthorizer};
pub use stats::{DisconnectCounts, HeapSource, HeapUsage, Statistics};
pub use storage::{
    MemoryStorage, Storage, StoredDelivery, StoredMessage, StoredSession, StoredState,
};
pub use write_progress::{FlushTicket, WriteProgress};

/// Re-exported so embedders use the same codec types the broker does.
pub use mqtt_codec;
