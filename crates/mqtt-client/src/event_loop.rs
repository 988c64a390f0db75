//! [`EventLoop`]: the tokio driver of [`crate::proto::Connection`]. It owns
//! the socket, dials and re-dials, and completes the [`crate::Client`]'s requests.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{Publish, ReasonCode, SubAck, UnsubAck};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::backoff::{Jitter, ReconnectOptions};
use crate::client::Command;
use crate::proto::{Connection, ConnectionError, Event, RequestId};
use crate::{ClientOptions, ConnectionState, Error};

/// A byte stream to the broker: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Who waits for a request's completion.
#[derive(Debug)]
enum Waiter {
    Publish(oneshot::Sender<Result<ReasonCode, Error>>),
    Subscribe(oneshot::Sender<Result<SubAck, Error>>),
    Unsubscribe(oneshot::Sender<Result<UnsubAck, Error>>),
    Reauthenticate(oneshot::Sender<Result<mqtt_codec::Properties, Error>>),
}

/// How one network connection ended.
enum Outcome {
    /// `disconnect()` was called, or every handle was dropped.
    Shutdown,
    /// The connection failed or was lost; `connected` says whether CONNACK
    /// had accepted it.
    Lost { error: Error, connected: bool },
}

/// The task that runs a client's connection: spawned by
/// [`crate::Client::connect`], or obtained from [`crate::Client::new`] and
/// driven with [`EventLoop::run`].
#[derive(Debug)]
pub struct EventLoop {
    host: String,
    port: u16,
    address: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    websocket: Option<String>,
    reconnect: ReconnectOptions,
    connect_timeout: Duration,
    max_held: usize,
    core: Connection,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    messages: mpsc::Sender<Publish>,
    state: watch::Sender<ConnectionState>,
    waiters: HashMap<RequestId, Waiter>,
    /// Incoming messages not yet in the channel (and not yet acknowledged).
    held: VecDeque<Publish>,
    /// How many of `held` are QoS 0.
    held_qos0: usize,
    /// QoS 0 messages dropped because `max_held` were already waiting.
    dropped_qos0: u64,
    jitter: Jitter,
    disconnect_waiters: Vec<oneshot::Sender<()>>,
    shutdown: bool,
}

impl EventLoop {
    pub(crate) fn new(
        options: ClientOptions,
        commands: mpsc::Receiver<Command>,
        messages: mpsc::Sender<Publish>,
        state: watch::Sender<ConnectionState>,
    ) -> Self {
        let mut session = options.session.clone();
        let max_held = options.max_held_messages.max(1);
        // Incoming QoS 1/2 messages are acknowledged when they enter the
        // channel; the broker's flow control then keeps unacknowledged ones
        // within what the client holds (see the crate docs on back-pressure).
        session.manual_acks = true;
        if session.receive_maximum.is_none() {
            session.receive_maximum = Some(u16::try_from(max_held).unwrap_or(u16::MAX));
        }
        Self {
            address: options.address(),
            host: options.host,
            port: options.port,
            tls: options.tls,
            websocket: options.websocket,
            reconnect: options.reconnect,
            connect_timeout: session.connect_timeout,
            max_held,
            core: Connection::new(session),
            commands,
            commands_open: true,
            messages,
            state,
            waiters: HashMap::new(),
            held: VecDeque::new(),
            held_qos0: 0,
            dropped_qos0: 0,
            jitter: Jitter::new(),
            disconnect_waiters: Vec::new(),
            shutdown: false,
        }
    }

    /// Runs until [`crate::Client::disconnect`], until every handle and the
    /// message stream are dropped, or until a connection fails with
    /// reconnects off. Failed attempts (the first included) are retried
    /// with back-off.
    pub async fn run(self) -> Result<(), Error> {
        self.run_inner(true).await
    }

    pub(crate) async fn run_until_first_connack_fails(self) {
        // The error is reported through the state watch.
        let _ = self.run_inner(false).await;
    }

    async fn run_inner(mut self, retry_initial: bool) -> Result<(), Error> {
        let mut attempt = 0u32;
        let mut ever_connected = false;
        loop {
            match self.connect_once().await {
                Outcome::Shutdown => {
                    self.close(None);
                    return Ok(());
                }
                Outcome::Lost { error, connected } => {
                    tracing::warn!(error = %error, "connection lost");
                    ever_connected |= connected;
                    if (!ever_connected && !retry_initial) || !self.reconnect.enabled {
                        self.close(Some(error.clone()));
                        return Err(error);
                    }
                    if connected {
                        attempt = 0;
                    }
                    attempt += 1;
                    let delay = self.reconnect.delay(attempt, self.jitter.next());
                    self.state.send_replace(ConnectionState::Reconnecting {
                        attempt,
                        last_error: error,
                        retry_in: delay,
                    });
                    if self.wait_offline(delay).await {
                        self.close(None);
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Stops: the state says why, waiting requests fail with [`Error::Closed`].
    fn close(&mut self, error: Option<Error>) {
        self.state.send_replace(ConnectionState::Closed { error });
        for (_, w) in self.waiters.drain() {
            match w {
                Waiter::Publish(tx) => drop(tx.send(Err(Error::Closed))),
                Waiter::Subscribe(tx) => drop(tx.send(Err(Error::Closed))),
                Waiter::Unsubscribe(tx) => drop(tx.send(Err(Error::Closed))),
                Waiter::Reauthenticate(tx) => drop(tx.send(Err(Error::Closed))),
            }
        }
        for tx in self.disconnect_waiters.drain(..) {
            let _ = tx.send(());
        }
    }

    /// Whether a connected loop takes more requests now: not while the
    /// publishes queued behind the in-flight window (QoS 1 and 2 beyond
    /// the broker's Receive Maximum and `max_inflight`) fill another window.
    fn takes_commands(&self) -> bool {
        let options = self.core.options();
        let high = usize::from(options.max_inflight)
            .min(options.max_queued)
            .max(1);
        self.core.queued() < high
    }

    fn abandoned(&self) -> bool {
        !self.commands_open && self.messages.is_closed()
    }

    /// Between connections: queue requests (offline buffering), hand held
    /// messages to the application, until the back-off delay has passed.
    /// Returns whether the client should shut down instead.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let tx = self.messages.clone();
        loop {
            if self.shutdown || self.abandoned() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                cmd = self.commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => self.commands_open = false,
                },
                permit = tx.reserve(), if !self.held.is_empty() => self.deliver(permit.ok()),
            }
        }
    }

    async fn dial(&self) -> Result<Box<dyn Io>, Error> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let tcp =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, self.port)))
                .await
            {
                Err(_) => {
                    return Err(Error::DialTimeout {
                        address: self.address.clone(),
                        timeout: self.connect_timeout,
                    })
                }
                Ok(Err(e)) => {
                    return Err(Error::Dial {
                        address: self.address.clone(),
                        source: Arc::new(e),
                    })
                }
                Ok(Ok(tcp)) => tcp,
            };
        // Without TCP_NODELAY a TLS CONNACK waits ~40 ms behind
        // the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    mqtt_tls::connect(config.clone(), &self.host, tcp),
                )
                .await
                .map_err(|_| Error::DialTimeout {
                    address: self.address.clone(),
                    timeout: self.connect_timeout,
                })??;
                Box::new(tls)
            }
        };
        let Some(path) = &self.websocket else {
            return Ok(stream);
        };
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://{}{path}", self.address);
        let upgrade = mqtt_tls::websocket::connect(stream, &url);
        match tokio::time::timeout(self.connect_timeout, upgrade).await {
            Err(_) => Err(Error::DialTimeout {
                address: self.address.clone(),
                timeout: self.connect_timeout,
            }),
            Ok(Err(e)) => Err(Error::WebSocket {
                url,
                detail: e.to_string(),
            }),
            Ok(Ok((ws, _))) => Ok(Box::new(ws)),
        }
    }

    /// An I/O error on an established stream, explained by mqtt-tls where it
    /// is a TLS alert (a TLS 1.3 broker refuses a client certificate only
    /// after the handshake, on the first read).
    fn io_error(&self, e: std::io::Error) -> Error {
        if let Some(config) = &self.tls {
            let ctx = mqtt_tls::ClientContext::new(&self.host, config);
            match mqtt_tls::explain_io_error(&e, &ctx) {
                Some(mqtt_tls::TlsError::ServerNotTls { .. }) | None => {}
                Some(t) => return t.into(),
            }
        }
        Error::Io {
            address: self.address.clone(),
            source: Arc::new(e),
            tls: self.tls.is_some(),
        }
    }

    async fn flush(&mut self, wr: &mut WriteHalf<Box<dyn Io>>) -> std::io::Result<()> {
        let mut wrote = false;
        while let Some(bytes) = self.core.poll_transmit(Instant::now().into_std()) {
            wr.write_all(&bytes).await?;
            wrote = true;
        }
        if wrote {
            wr.flush().await?;
        }
        Ok(())
    }

    async fn connect_once(&mut self) -> Outcome {
        let stream = match self.dial().await {
            Ok(s) => s,
            Err(error) => {
                return Outcome::Lost {
                    error,
                    connected: false,
                }
            }
        };
        self.core.connect(Instant::now().into_std());
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut rbuf = BytesMut::with_capacity(8 * 1024);
        let mut connected = false;
        let tx = self.messages.clone();
        loop {
            if let Err(e) = self.flush(&mut wr).await {
                let error = self.io_error(e);
                return self.lost(error, connected);
            }
            let mut ended = None;
            while let Some(event) = self.core.poll_event() {
                match event {
                    Event::Connected {
                        session_present, ..
                    } => {
                        connected = true;
                        tracing::debug!(session_present, "connected");
                        self.state
                            .send_replace(ConnectionState::Connected { session_present });
                    }
                    Event::Disconnected { reason } => ended = Some(reason),
                    other => self.handle_event(other),
                }
            }
            if let Some(reason) = ended {
                // Write what the core queued on the way out (DISCONNECT).
                let _ = self.flush(&mut wr).await;
                let _ = wr.shutdown().await;
                if reason == ConnectionError::Requested {
                    return Outcome::Shutdown;
                }
                return Outcome::Lost {
                    error: reason.into(),
                    connected,
                };
            }
            if self.shutdown || self.abandoned() {
                self.core.disconnect();
                continue;
            }
            // Hand over what fits without waiting; acknowledgements follow.
            while !self.held.is_empty() {
                match tx.try_reserve() {
                    Ok(permit) => self.deliver(Some(permit)),
                    Err(mpsc::error::TrySendError::Closed(())) => self.deliver(None),
                    Err(mpsc::error::TrySendError::Full(())) => break,
                }
            }
            if self.core.wants_transmit() {
                continue;
            }
            let timeout = self.core.poll_timeout().map(Instant::from_std);
            let sleep_until = timeout.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                // Back-pressure: the socket keeps being read, so
                // acknowledgements of our own requests keep flowing while
                // messages wait for room in the channel. QoS 1/2 messages are
                // bounded by the broker's flow control (our Receive Maximum),
                // QoS 0 ones by `max_held` (the excess is dropped). The cap
                // below only guards against a broker that ignores flow control.
                r = rd.read_buf(&mut rbuf), if self.held.len() < self.max_held + usize::from(u16::MAX) => match r {
                    Ok(0) => self.core.connection_lost(ConnectionError::Closed),
                    Ok(_) => {
                        let _ = self.core.handle_input(&rbuf, Instant::now().into_std());
                        rbuf.clear();
                    }
                    Err(e) => {
                        let error = self.io_error(e);
                        return self.lost(error, connected);
                    }
                },
                // While a window's worth of publishes waits behind the
                // in-flight window, requests wait in the channel: senders
                // (`start_publish`) feel the back-pressure, instead of the
                // core's queue filling up to `max_queued` and refusing.
                cmd = self.commands.recv(), if self.commands_open && self.takes_commands() => match cmd {
                    Some(cmd) => {
                        self.handle_command(cmd);
                        // Write in batches: take what else is
                        // waiting, so it goes out in one write.
                        for _ in 0..256 {
                            if !self.takes_commands() {
                                break;
                            }
                            let Ok(cmd) = self.commands.try_recv() else { break };
                            self.handle_command(cmd);
                        }
                    }
                    None => self.commands_open = false,
                },
                permit = tx.reserve(), if !self.held.is_empty() => self.deliver(permit.ok()),
                _ = tokio::time::sleep_until(sleep_until), if timeout.is_some() => {
                    let _ = self.core.handle_timeout(Instant::now().into_std());
                }
            }
        }
    }

    /// The transport failed: tell the core, and take the events that
    /// produced (completions, messages) except its `Disconnected`, which
    /// `error` reports better.
    fn lost(&mut self, error: Error, connected: bool) -> Outcome {
        self.core
            .connection_lost(ConnectionError::Transport(error.to_string()));
        while let Some(event) = self.core.poll_event() {
            self.handle_event(event);
        }
        Outcome::Lost { error, connected }
    }

    /// Moves the oldest held message into the channel (or drops it when
    /// nobody reads messages any more) and acknowledges it.
    fn deliver(&mut self, permit: Option<mpsc::Permit<'_, Publish>>) {
        let Some(message) = self.held.pop_front() else {
            return;
        };
        if message.qos == mqtt_codec::QoS::AtMostOnce {
            self.held_qos0 -= 1;
        }
        self.core.acknowledge(&message);
        if let Some(permit) = permit {
            permit.send(message);
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { publish, done } => match self.core.publish(publish) {
                Ok(request) => {
                    self.waiters.insert(request, Waiter::Publish(done));
                }
                Err(e) => {
                    let _ = done.send(Err(e.into()));
                }
            },
            Command::Subscribe {
                subscriptions,
                properties,
                done,
            } => match self.core.subscribe(subscriptions, properties) {
                Some(request) => {
                    self.waiters.insert(request, Waiter::Subscribe(done));
                }
                None => {
                    let _ = done.send(Err(Error::NoPacketId));
                }
            },
            Command::Unsubscribe {
                filters,
                properties,
                done,
            } => match self.core.unsubscribe(filters, properties) {
                Some(request) => {
                    self.waiters.insert(request, Waiter::Unsubscribe(done));
                }
                None => {
                    let _ = done.send(Err(Error::NoPacketId));
                }
            },
            Command::Reauthenticate { data, done } => match self.core.reauthenticate(data) {
                Ok(request) => {
                    self.waiters.insert(request, Waiter::Reauthenticate(done));
                }
                Err(e) => {
                    let _ = done.send(Err(Error::Reauthenticate(e)));
                }
            },
            Command::Disconnect { done } => {
                self.disconnect_waiters.push(done);
                self.shutdown = true;
                self.core.disconnect();
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        let publish_result = |reason_code: ReasonCode, properties: mqtt_codec::Properties| {
            if reason_code.is_error() {
                Err(Error::PublishRefused {
                    reason_code,
                    reason_string: properties.reason_string.clone().map(String::from),
                })
            } else {
                Ok(reason_code)
            }
        };
        match event {
            Event::Message(p) => {
                if p.qos == mqtt_codec::QoS::AtMostOnce {
                    if self.held_qos0 >= self.max_held {
                        // At most once: dropping is allowed, blocking the
                        // socket (and with it every acknowledgement) is not.
                        self.dropped_qos0 += 1;
                        if self.dropped_qos0.is_power_of_two() {
                            tracing::warn!(
                                dropped = self.dropped_qos0,
                                max_held_messages = self.max_held,
                                "incoming QoS 0 messages dropped: the application is not reading Messages fast enough"
                            );
                        }
                        return;
                    }
                    self.held_qos0 += 1;
                }
                self.held.push_back(p);
            }
            Event::Sent { request } => self.complete_publish(request, Ok(ReasonCode::Success)),
            Event::PubAck {
                request,
                reason_code,
                properties,
                ..
            }
            | Event::PubComp {
                request,
                reason_code,
                properties,
                ..
            } => self.complete_publish(request, publish_result(reason_code, properties)),
            Event::PublishFailed { request, error } => {
                self.complete_publish(request, Err(error.into()))
            }
            Event::SubAck { request, suback } => match self.waiters.remove(&request) {
                Some(Waiter::Subscribe(tx)) => {
                    let _ = tx.send(Ok(suback));
                }
                _ => {
                    // A subscription restored after the broker lost the session.
                    if suback.reason_codes.iter().any(|rc| rc.is_error()) {
                        tracing::warn!(codes = ?suback.reason_codes, "the broker refused a restored subscription");
                    }
                }
            },
            Event::RequestFailed { request, error } => match self.waiters.remove(&request) {
                Some(Waiter::Subscribe(tx)) => {
                    let _ = tx.send(Err(Error::InvalidRequest(error)));
                }
                Some(Waiter::Unsubscribe(tx)) => {
                    let _ = tx.send(Err(Error::InvalidRequest(error)));
                }
                _ => tracing::warn!(%error, "a restored subscription could not be sent"),
            },
            Event::UnsubAck { request, unsuback } => {
                if let Some(Waiter::Unsubscribe(tx)) = self.waiters.remove(&request) {
                    let _ = tx.send(Ok(unsuback));
                }
            }
            Event::Reauthenticated { request, result } => {
                if let Some(Waiter::Reauthenticate(tx)) = self.waiters.remove(&request) {
                    let _ = tx.send(result.map_err(Error::Connection));
                }
            }
            Event::Connected { .. } | Event::Disconnected { .. } => {}
        }
    }

    fn complete_publish(&mut self, request: RequestId, result: Result<ReasonCode, Error>) {
        if let Some(Waiter::Publish(tx)) = self.waiters.remove(&request) {
            let _ = tx.send(result);
        }
    }
}
