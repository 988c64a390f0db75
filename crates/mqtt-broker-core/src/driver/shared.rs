//! State shared by the accept loops, the connection tasks and the timer task:
//! the [`Broker`] behind one mutex, held for one call and never across I/O.

use crate::{Broker, ConnectionId, Event, OwnedAuthRequest};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, Notify};

/// How the broker wakes one connection task.
#[derive(Debug, Default)]
pub(crate) struct ConnSignal {
    /// Bytes are ready, or the connection must close.
    pub(crate) notify: Notify,
    /// The broker asked for the connection to be closed.
    pub(crate) close: AtomicBool,
}

pub(crate) struct Inner {
    pub(crate) broker: Broker,
    conns: HashMap<ConnectionId, Arc<ConnSignal>>,
    /// The deadline the timer task is sleeping until.
    timer_deadline: Option<Instant>,
}

/// A deferred authentication for the async authenticator's task.
pub(crate) type AuthJob = (ConnectionId, Box<OwnedAuthRequest>);

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the timer task when an earlier deadline appears.
    pub(crate) timer: Notify,
    /// What happens, for [`super::Server::events`] (bounded: a slow reader
    /// loses the oldest events and is told how many).
    pub(crate) events: broadcast::Sender<Event>,
    /// Deferred authentications, when an async authenticator is set.
    auth_jobs: Option<mpsc::UnboundedSender<AuthJob>>,
    /// Certificates that expire soon: the threshold and the clients warned about.
    pub(crate) expiry: super::expiry::ExpiryWatch,
}

impl Shared {
    pub(crate) fn new(
        broker: Broker,
        event_capacity: usize,
        auth_jobs: Option<mpsc::UnboundedSender<AuthJob>>,
        expiry: super::expiry::ExpiryWatch,
    ) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                broker,
                conns: HashMap::new(),
                timer_deadline: None,
            }),
            timer: Notify::new(),
            events: broadcast::channel(event_capacity.max(1)).0,
            auth_jobs,
            expiry,
        })
    }

    /// Locks the broker. A panic in another task while it held the lock
    /// does not take the whole broker down with it.
    pub(crate) fn lock(&self) -> Guard<'_> {
        Guard {
            inner: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
            shared: self,
        }
    }
}

/// The locked broker. Dropping it hands the events to the connection tasks
/// and re-arms the timer task when needed.
pub(crate) struct Guard<'a> {
    pub(crate) inner: MutexGuard<'a, Inner>,
    shared: &'a Shared,
}

impl Guard<'_> {
    pub(crate) fn broker(&mut self) -> &mut Broker {
        &mut self.inner.broker
    }

    pub(crate) fn register(&mut self, id: ConnectionId, signal: Arc<ConnSignal>) {
        self.inner.conns.insert(id, signal);
    }

    pub(crate) fn unregister(&mut self, id: ConnectionId) {
        self.inner.conns.remove(&id);
    }

    /// The timer task records what it sleeps until.
    pub(crate) fn set_timer_deadline(&mut self, at: Option<Instant>) {
        self.inner.timer_deadline = at;
    }

    fn dispatch(&mut self) {
        let inner = &mut *self.inner;
        while let Some(event) = inner.broker.poll_event() {
            match event {
                Event::Transmit(id) => {
                    if let Some(s) = inner.conns.get(&id) {
                        s.notify.notify_one();
                    }
                }
                Event::Close(id) => {
                    if let Some(s) = inner.conns.get(&id) {
                        s.close.store(true, Ordering::Release);
                        s.notify.notify_one();
                    }
                }
                Event::AuthPending {
                    connection,
                    request,
                } if self.shared.auth_jobs.is_some() => {
                    if let Some(jobs) = &self.shared.auth_jobs {
                        let _ = jobs.send((connection, request));
                    }
                }
                other => {
                    // Nobody listening is the common case: nothing to do.
                    if self.shared.events.receiver_count() > 0 {
                        let _ = self.shared.events.send(other);
                    }
                }
            }
        }
        let next = inner.broker.poll_timeout();
        if let Some(next) = next {
            if inner.timer_deadline.is_none_or(|d| next < d) {
                inner.timer_deadline = Some(next);
                self.shared.timer.notify_one();
            }
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.dispatch();
    }
}

/// Runs the broker's timers: sleeps until `poll_timeout`, calls
/// `handle_timeout`, and wakes early when a new earlier deadline appears.
pub(crate) async fn timer_task(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let deadline = {
            let mut g = shared.lock();
            let d = g.broker().poll_timeout();
            g.set_timer_deadline(d);
            d
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                let mut g = shared.lock();
                g.broker().handle_timeout(Instant::now());
                g.set_timer_deadline(None);
            }
            _ = shared.timer.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs the async authenticator: each deferred CONNECT in a task of its
/// own, its decision handed back to the broker under the lock.
pub(crate) async fn auth_task(
    shared: Arc<Shared>,
    auth: Arc<dyn super::AsyncAuthenticator>,
    mut jobs: mpsc::UnboundedReceiver<AuthJob>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some((id, request)) = job else { return };
                let decision = auth.authenticate(*request);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let decision = decision.await;
                    shared.lock().broker().complete_auth(Instant::now(), id, decision);
                });
            }
            _ = stop.changed() => return,
        }
    }
}

/// The events of a [`super::Server`], from [`super::Server::events`].
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Event>,
    lost: u64,
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Self { rx, lost: 0 }
    }

    /// The next event; `None` once the server has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => self.lost += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.lost += n,
                Err(_) => return None,
            }
        }
    }

    /// Events this reader lost because it fell behind.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}
