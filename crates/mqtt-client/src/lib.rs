//! mqtt-client.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod proto;
