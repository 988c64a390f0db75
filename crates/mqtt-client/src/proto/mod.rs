//! The sans-IO client core, in the style of quinn-proto: a fully
//! deterministic implementation of the MQTT client protocol logic. It
//! contains no networking code and never reads the clock; every input takes
//! `now: Instant`.
//!
//! Drive a [`Connection`] like this:
//! 1. open a transport, call [`Connection::connect`];
//! 2. write whatever [`Connection::poll_transmit`] returns;
//! 3. feed bytes read with [`Connection::handle_input`];
//! 4. take [`Connection::poll_event`] until `None`;
//! 5. sleep until [`Connection::poll_timeout`], then [`Connection::handle_timeout`];
//! 6. when the transport ends, [`Connection::connection_lost`], and back to 1.
//!
//! The tokio [`crate::Client`] is one such driver.

mod connection;
mod error;
mod event;
mod options;

pub use connection::Connection;
pub use error::{ConnectionError, ProtocolViolation, PublishError, ReauthError};
pub use event::{Event, RequestId};
pub use options::{
    AuthHandler, ConnectOptions, EnhancedAuth, PacketDirection, PacketLog,
    DEFAULT_MAX_INCOMING_PACKET_SIZE,
};

#[cfg(test)]
mod tests;
