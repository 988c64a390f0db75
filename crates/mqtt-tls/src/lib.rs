//! # mqtt-tls
//!
//! Everything TLS for the workspace: rustls configs (ring provider, chosen
//! explicitly) built from the files Mosquitto uses — `cafile`/`capath`,
//! `certfile`, `keyfile`, `require_certificate`, `crlfile` — tokio handshakes,
//! the identity of a verified peer, certificate generation, an offline
//! checker, and errors that explain themselves. With feature `websocket`,
//! also MQTT's WebSocket transport ([`websocket`]), shared by the broker and
//! the client.
//!
//! Every [`TlsError`] names the file, the address dialled or the certificate
//! names involved, and says what to do, e.g.
//! "server certificate is for 192.168.1.5, but you connected to 127.0.0.1;
//! connect with host 192.168.1.5 (the host of the client options) or
//! re-issue the certificate with that name". Messages name this crate's
//! options (`ClientTlsOptions::cafile`) and Mosquitto's (`cafile`), never a
//! command line's flags: a program that takes them as flags says so where it
//! prints the error.
//!
//! ```
//! use mqtt_tls::{gen::CertificateAuthority, ClientTlsOptions, ServerTlsOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("mqtt-tls-doc-{}", std::process::id()));
//! let ca = CertificateAuthority::generate()?;
//! let server = ca.issue_server(&["127.0.0.1".to_string()])?;
//! let client = ca.issue_client("sensor-1")?;
//! mqtt_tls::gen::write_set(&dir, &ca, &server, &[("sensor-1".to_string(), client)])?;
//!
//! let broker = ServerTlsOptions {
//!     cafile: Some(dir.join("ca.crt")),
//!     require_certificate: true,
//!     ..ServerTlsOptions::new(dir.join("server.crt"), dir.join("server.key"))
//! }
//! .build()?;
//! let subscriber = ClientTlsOptions::new()
//!     .cafile(dir.join("ca.crt"))
//!     .certfile(dir.join("client.crt"))
//!     .keyfile(dir.join("client.key"))
//!     .build()?;
//! # let _ = (broker, subscriber);
//!
//! // A client certificate without a trust source is refused, with the fix.
//! let err = ClientTlsOptions::new()
//!     .certfile(dir.join("client.crt"))
//!     .keyfile(dir.join("client.key"))
//!     .build()
//!     .unwrap_err();
//! assert!(err.to_string().contains("set `ClientTlsOptions::cafile` to ca.crt"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;

pub mod check;
mod client;
mod error;
pub mod gen;
mod handshake;
mod identity;
mod load;
mod server;
mod verify;
#[cfg(feature = "websocket")]
pub mod websocket;

pub use client::ClientTlsOptions;
pub use error::TlsError;
pub use handshake::{
    accept, connect, explain_accept_error, explain_io_error, server_name, ClientContext,
};
pub use identity::PeerIdentity;
pub use server::{ReloadableServerConfig, ServerTlsOptions};

/// The lowest TLS version to accept (Mosquitto's `tls_version`).
///
/// The workspace's one TLS version type: `mqtt_broker_core::config` parses
/// `tls_version` into it when the broker's `tokio` feature is on. Without
/// that feature the broker core must not link rustls, so it declares an
/// identical enum; keep variants, derives and default in step with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (`tlsv1.2`).
    #[default]
    Tls12,
    /// TLS 1.3 only (`tlsv1.3`).
    Tls13,
}

impl TlsVersion {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &BOTH,
            TlsVersion::Tls13 => &ONLY_13,
        }
    }
}

/// The ring crypto provider every config here is built with.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
