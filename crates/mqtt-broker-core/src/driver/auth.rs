//! Authentication that may wait: an `async` check, run outside the broker's
//! lock while every other client is served.

use crate::{AuthDecision, AuthRequest, Authenticator, OwnedAuthRequest};
use std::future::Future;
use std::pin::Pin;

/// The future an [`AsyncAuthenticator`] returns.
pub type AuthFuture = Pin<Box<dyn Future<Output = AuthDecision> + Send + 'static>>;

/// Decides whether a client may connect, taking the time it needs (a
/// database, a web service). Set it with
/// [`super::ServerBuilder::async_authenticator`] (an `async` closure) or
/// [`super::ServerBuilder::async_authenticator_with`]; the broker holds the
/// CONNECT (and what the client sends after it) until the future resolves,
/// serves everyone else meanwhile, and refuses the client (0x88 Server
/// unavailable) if no answer comes within
/// [`crate::BrokerConfig::auth_timeout`].
///
/// Any `Fn(OwnedAuthRequest) -> impl Future<Output = AuthDecision>` is one;
/// `async_authenticator` takes such a closure directly:
///
/// ```
/// use mqtt_broker_core::driver::ServerBuilder;
/// use mqtt_broker_core::mqtt_codec::ReasonCode;
/// use mqtt_broker_core::{AuthDecision, BrokerConfig};
///
/// let builder = ServerBuilder::new(BrokerConfig::default()).async_authenticator(|req| async move {
///     // e.g. a query to the program's user store
///     match (req.username.as_deref(), req.password.as_deref()) {
///         (Some("pi"), Some(b"raspberry")) => AuthDecision::Allow,
///         _ => AuthDecision::Deny(ReasonCode::BadUserNameOrPassword),
///     }
/// });
/// # let _ = builder;
/// ```
pub trait AsyncAuthenticator: Send + Sync + 'static {
    /// Checks a CONNECT (the broker's anonymous rule was applied already).
    /// Returning [`AuthDecision::Defer`] leaves the client waiting until
    /// [`super::Server::complete_auth`] or the time-out.
    fn authenticate(&self, request: OwnedAuthRequest) -> AuthFuture;
}

impl<F, Fut> AsyncAuthenticator for F
where
    F: Fn(OwnedAuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = AuthDecision> + Send + 'static,
{
    fn authenticate(&self, request: OwnedAuthRequest) -> AuthFuture {
        Box::pin(self(request))
    }
}

/// The core's side of an async authenticator: every decision deferred.
pub(crate) struct DeferAll;

impl Authenticator for DeferAll {
    fn authenticate(&self, _: &AuthRequest<'_>) -> AuthDecision {
        AuthDecision::Defer
    }
}
