//! Runtime-agnostic MQTT broker state machine (work in progress).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acl_file;
pub mod config;
pub mod password_file;
