//! Authentication and authorisation: the traits an embedder implements, and
//! the ready implementations.
//!
//! The broker applies the anonymous rule itself before asking the
//! [`Authenticator`] (so every authenticator gets it): a client is anonymous
//! when it has neither a user name (after `use_identity_as_username` /
//! `use_subject_as_username`) nor a client certificate verified under
//! `require_certificate true`. Anonymous clients are refused when
//! `allow_anonymous` is off, with the reason in the log and in the 5.0
//! CONNACK Reason String.

use crate::connection::{ListenerSettings, PeerCertificate};
use bytes::Bytes;
use mqtt_codec::ReasonCode;
use std::collections::HashMap;
use std::net::SocketAddr;

/// What an [`Authenticator`] is asked to decide about a CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The Client Identifier (server-assigned if the client sent none).
    pub client_id: &'a str,
    /// The user name: from CONNECT, or from the certificate when
    /// `use_identity_as_username` / `use_subject_as_username` is set.
    pub username: Option<&'a str>,
    /// The CONNECT password (ignored when the user name comes from the certificate).
    pub password: Option<&'a [u8]>,
    /// Whether `username` was taken from the client certificate; the
    /// password is then not checked (as in Mosquitto).
    pub username_from_certificate: bool,
    /// The verified client certificate, if any.
    pub certificate: Option<&'a PeerCertificate>,
    /// The client presented a certificate verified under `require_certificate true`.
    pub certificate_verified: bool,
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// Settings of the listener the client connected to.
    pub listener: &'a ListenerSettings,
}

impl AuthRequest<'_> {
    /// An owned copy, for a decision made later ([`AuthDecision::Defer`]).
    pub fn to_owned(&self) -> OwnedAuthRequest {
        OwnedAuthRequest {
            client_id: self.client_id.to_string(),
            username: self.username.map(str::to_string),
            password: self.password.map(Bytes::copy_from_slice),
            username_from_certificate: self.username_from_certificate,
            certificate: self.certificate.cloned(),
            certificate_verified: self.certificate_verified,
            remote_addr: self.remote_addr,
            listener_port: self.listener.port,
        }
    }
}

/// What an [`AuthRequest`] holds, owned: handed out with
/// [`crate::Event::AuthPending`] when the decision is deferred, to be checked
/// against a database or a web service while the broker serves everyone
/// else.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwnedAuthRequest {
    /// The Client Identifier (server-assigned if the client sent none).
    pub client_id: String,
    /// The user name (from CONNECT, or from the certificate).
    pub username: Option<String>,
    /// The CONNECT password (`None` when the user name comes from the
    /// certificate).
    pub password: Option<Bytes>,
    /// Whether `username` was taken from the client certificate.
    pub username_from_certificate: bool,
    /// The verified client certificate, if any.
    pub certificate: Option<PeerCertificate>,
    /// The client presented a certificate verified under `require_certificate true`.
    pub certificate_verified: bool,
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// The port of the listener the client connected to.
    pub listener_port: u16,
}

/// The answer of [`Authenticator::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthDecision {
    /// The client may connect.
    Allow,
    /// The client is refused with this CONNACK reason code (e.g.
    /// [`ReasonCode::BadUserNameOrPassword`], [`ReasonCode::NotAuthorized`]).
    Deny(ReasonCode),
    /// The decision comes later: the broker holds the CONNECT (and what the
    /// client sends after it), raises [`crate::Event::AuthPending`] with an
    /// [`OwnedAuthRequest`], and serves every other client meanwhile. Give
    /// the answer with [`crate::Broker::complete_auth`]; without one within
    /// [`crate::BrokerConfig::auth_timeout`] the client is refused (0x88
    /// Server unavailable, 3.1.1: 3) with the reason in the log and the 5.0
    /// Reason String.
    Defer,
}

/// One step of a 5.0 enhanced authentication (AUTH) exchange.
#[derive(Debug, Clone)]
pub struct AuthExchange {
    /// The Authentication Method the client chose (fixed for the exchange).
    pub method: String,
    /// The Authentication Data of the CONNECT or AUTH being answered.
    pub data: Option<Bytes>,
    /// 0 for the CONNECT (or the re-authentication AUTH), then 1, 2, ...
    pub step: u32,
    /// Scratch space the authenticator may keep between steps of one exchange.
    pub state: Vec<u8>,
    /// Whether this is a re-authentication of a connected client.
    pub reauthenticate: bool,
}

/// The answer to one step of an enhanced authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// Send AUTH with reason 0x18 Continue authentication and this data.
    Continue(Bytes),
    /// Authenticated; the data (if any) goes in the CONNACK (or AUTH 0x00).
    Success(Option<Bytes>),
    /// Refused with this reason code.
    Fail(ReasonCode),
}

/// Decides whether a client may connect.
///
/// Implementations must be cheap: they run on the broker's thread during
/// CONNECT (under the tokio driver's lock). The `password_file`
/// implementation of this crate is one. A check that has to wait (a
/// database, a web service) returns [`AuthDecision::Defer`] and answers
/// later with [`crate::Broker::complete_auth`]; the tokio driver's
/// `ServerBuilder::async_authenticator` does that for an `async` check.
pub trait Authenticator: Send + Sync {
    /// Checks a CONNECT without an Authentication Method.
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision;

    /// One step of a 5.0 enhanced authentication exchange (CONNECT or AUTH
    /// with an Authentication Method). The default refuses every method with
    /// 0x8C Bad authentication method.
    fn authenticate_enhanced(
        &self,
        req: &AuthRequest<'_>,
        exchange: &mut AuthExchange,
    ) -> AuthStep {
        let _ = (req, exchange);
        AuthStep::Fail(ReasonCode::BadAuthenticationMethod)
    }
}

/// The kind of access an [`AclRequest`] asks for, as in Mosquitto's `acl_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive messages published on the topic.
    Read,
    /// Publish on the topic.
    Write,
    /// Subscribe with this topic filter.
    Subscribe,
}

/// What an [`Authorizer`] is asked to decide.
#[derive(Debug, Clone, Copy)]
pub struct AclRequest<'a> {
    /// The client's identifier (for `%c` patterns).
    pub client_id: &'a str,
    /// The client's user name (for `%u` patterns and `user` blocks).
    pub username: Option<&'a str>,
    /// The topic name (Read, Write) or topic filter (Subscribe).
    pub topic: &'a str,
    /// The access asked for.
    pub access: Access,
}

/// Decides per topic what a client may do. The `acl_file` implementation of
/// this crate is one.
pub trait Authorizer: Send + Sync {
    /// Whether the access is allowed.
    fn authorize(&self, req: &AclRequest<'_>) -> bool;

    /// Shorthand for [`Authorizer::authorize`].
    fn check(&self, client_id: &str, username: Option<&str>, topic: &str, access: Access) -> bool {
        self.authorize(&AclRequest {
            client_id,
            username,
            topic,
            access,
        })
    }
}

/// Allows every client and every access (the anonymous rule of the broker
/// still applies). The default authenticator and authorizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _: &AuthRequest<'_>) -> AuthDecision {
        AuthDecision::Allow
    }
}

impl Authorizer for AllowAll {
    fn authorize(&self, _: &AclRequest<'_>) -> bool {
        true
    }
}

/// User names and plain-text passwords from a map.
///
/// A client that sends a user name must send its password; a client whose
/// user name comes from its certificate, or that sends no user name (when
/// anonymous access is allowed), is not checked.
///
/// ```
/// use mqtt_broker_core::{AuthDecision, Authenticator, PasswordMap};
/// let users = PasswordMap::new().with_user("pi", "raspberry");
/// # let _ = users;
/// ```
#[derive(Debug, Clone, Default)]
pub struct PasswordMap {
    users: HashMap<String, Vec<u8>>,
}

impl PasswordMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a user.
    pub fn with_user(mut self, username: impl Into<String>, password: impl AsRef<[u8]>) -> Self {
        self.insert(username, password);
        self
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, username: impl Into<String>, password: impl AsRef<[u8]>) {
        self.users
            .insert(username.into(), password.as_ref().to_vec());
    }
}

impl Authenticator for PasswordMap {
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision {
        if req.username_from_certificate {
            return AuthDecision::Allow;
        }
        let Some(username) = req.username else {
            return AuthDecision::Allow;
        };
        match (self.users.get(username), req.password) {
            (Some(expected), Some(given)) if constant_time_eq(expected, given) => {
                AuthDecision::Allow
            }
            _ => AuthDecision::Deny(ReasonCode::BadUserNameOrPassword),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
