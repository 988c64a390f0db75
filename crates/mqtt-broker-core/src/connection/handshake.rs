//! The handshake: a CONNECT between its arrival and its CONNACK, while the
//! authenticator decides (and a 5.0 AUTH exchange runs, section 4.12). The
//! judging itself is the broker's ([`crate::broker`]'s `connect` module),
//! since it reaches sessions and the authenticator.

use super::Conn;
use crate::auth::{AuthExchange, AuthRequest};
use mqtt_codec::Connect;

/// A CONNECT held while its AUTH exchange runs, or while a deferred
/// authentication decision is awaited.
#[derive(Debug)]
pub(crate) struct PendingConnect {
    pub connect: Box<Connect>,
    pub client_id: String,
    pub assigned: bool,
    pub server_keep_alive: Option<u16>,
    pub username: Option<String>,
    pub username_from_certificate: bool,
    pub exchange: Option<AuthExchange>,
    /// The authenticator deferred its decision ([`crate::AuthDecision::Defer`]).
    pub deferred: bool,
    /// What the client sent after CONNECT while the decision is deferred.
    pub held: Vec<mqtt_codec::Packet>,
}

pub(crate) fn auth_request<'a>(conn: &'a Conn, pending: &'a PendingConnect) -> AuthRequest<'a> {
    let listener = &conn.info.listener;
    AuthRequest {
        client_id: &pending.client_id,
        username: pending.username.as_deref(),
        password: if pending.username_from_certificate {
            None
        } else {
            pending.connect.password.as_deref()
        },
        username_from_certificate: pending.username_from_certificate,
        certificate: conn.info.tls.as_ref(),
        certificate_verified: listener.require_certificate && conn.info.tls.is_some(),
        remote_addr: conn.info.remote_addr,
        listener,
    }
}
