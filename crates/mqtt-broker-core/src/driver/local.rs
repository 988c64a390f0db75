//! In-process clients of the tokio driver: [`Server::local_client`] gives
//! the hosting program a client that never touches a socket. It speaks to
//! the broker in [`Packet`]s ([`crate::Broker::local_connection_opened`]),
//! so nothing is encoded or decoded, and a message's payload reaches an
//! in-process subscriber as the same [`Bytes`] the publisher handed in.
//!
//! One task per client (spawned by [`Server::local_client`]) plays the
//! part a connection task plays for a socket: it hands the broker the
//! packets [`LocalClient`] asks for, takes what the broker sends back
//! ([`crate::Broker::take_packets_when_stored`], after the storage wrote
//! what it depends on), finishes the QoS 1 and 2 exchanges in both
//! directions, and passes PUBLISHes to [`LocalMessages`].
//!
//! Flow control is the broker's own: the client announces a Receive
//! Maximum of [`LocalOptions::receive_maximum`], which is also the number
//! of messages that may wait unread in [`LocalMessages`]. A QoS 1 or 2
//! message is acknowledged when it enters that buffer, so while it is full
//! the broker keeps further QoS 1/2 messages in the session's queue, and
//! the task leaves the broker's packets where they are, so QoS 0 messages
//! beyond `max_transmit_bytes` are dropped by the broker, as for a slow
//! network subscriber. (While one of the client's own requests waits for
//! its acknowledgement the task keeps taking packets, so a publisher is
//! never stalled by its unread messages; QoS 0 messages that then find the
//! buffer full are dropped and counted in [`LocalMessages::dropped`].)

use super::shared::{ConnSignal, Shared};
use super::Server;
use crate::ConnectionInfo;
use bytes::Bytes;
use mqtt_codec::{
    Connect, Disconnect, LastWill, Packet, PacketId, PacketIdPool, ProtocolVersion, PubAck,
    PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicError,
    TopicFilter, TopicName, Unsubscribe,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Why an in-process client's request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalClientError {
    /// The broker refused the CONNECT with this reason code: the
    /// authenticator's (e.g. 0x86 Bad User Name or Password, 0x87 Not
    /// authorized) or the broker's own (e.g. 0x85 Client Identifier not
    /// valid).
    #[error("the broker refused the connection: {} (0x{:02X})", .0.description(), .0.as_u8())]
    Refused(ReasonCode),
    /// The broker's [`crate::Authorizer`] denied the publication, the
    /// subscription or the unsubscription (5.0 reason code 0x87).
    #[error("not authorised")]
    NotAuthorized,
    /// The broker answered a request with another error reason code (e.g.
    /// 0x97 Quota exceeded, 0x8F Topic Filter invalid).
    #[error("the broker rejected the request: {} (0x{:02X})", .0.description(), .0.as_u8())]
    Rejected(ReasonCode),
    /// The broker shut down (it sent DISCONNECT 0x8B Server shutting
    /// down, or the server is gone).
    #[error("the broker shut down")]
    ShutDown,
    /// The broker closed the connection with this reason code (e.g. 0x8E
    /// Session taken over: another client connected with the same Client
    /// Identifier).
    #[error("the broker closed the connection: {} (0x{:02X})", .0.description(), .0.as_u8())]
    Disconnected(ReasonCode),
    /// The connection is closed: the client disconnected, or the broker
    /// closed it without a reason code.
    #[error("the connection is closed")]
    Closed,
    /// The topic name or filter is not valid.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
}

/// How an in-process client connects: its Client Identifier, the identity
/// the broker's authenticator and authorizer see, its will and session.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    client_id: String,
    username: Option<String>,
    password: Option<Bytes>,
    will: Option<LastWill>,
    clean_start: bool,
    session_expiry: u32,
    receive_maximum: u16,
}

impl LocalOptions {
    /// A client with Client Identifier `client_id` (empty: the broker
    /// assigns one, see [`LocalClient::client_id`]), no user name, no will,
    /// clean start, a session that ends with the connection, and a Receive
    /// Maximum of 100.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            username: None,
            password: None,
            will: None,
            clean_start: true,
            session_expiry: 0,
            receive_maximum: 100,
        }
    }

    /// The user name the broker's [`crate::Authenticator`] and
    /// [`crate::Authorizer`] (ACL) see for this client.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// A user name and password, for an authenticator that checks them
    /// (e.g. a `password_file`).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// The will: published by the broker when the client goes away without
    /// [`LocalClient::disconnect`] (its [`LocalClient`] handles are all
    /// dropped), or with [`LocalClient::disconnect_with_will`]. 5.0 will
    /// properties (Will Delay Interval, ...) go in `will.properties`.
    pub fn will(mut self, will: LastWill) -> Self {
        self.will = Some(will);
        self
    }

    /// Clean Start (default true): false resumes the session this Client
    /// Identifier left, with its subscriptions and queued messages.
    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = clean_start;
        self
    }

    /// Session Expiry Interval in seconds (default 0: the session ends
    /// with the connection; `u32::MAX`: it never expires).
    pub fn session_expiry(mut self, seconds: u32) -> Self {
        self.session_expiry = seconds;
        self
    }

    /// How many received QoS 1/2 messages may be unacknowledged at once
    /// (the Receive Maximum sent to the broker), and how many messages may
    /// wait unread in [`LocalMessages`] (default 100; at least 1).
    pub fn receive_maximum(mut self, n: u16) -> Self {
        self.receive_maximum = n.max(1);
        self
    }
}

/// What a [`LocalClient`] asks its task for.
enum Command {
    Publish(Publish, oneshot::Sender<Result<(), LocalClientError>>),
    Subscribe(
        TopicFilter,
        SubscriptionOptions,
        oneshot::Sender<Result<QoS, LocalClientError>>,
    ),
    Unsubscribe(TopicFilter, oneshot::Sender<Result<(), LocalClientError>>),
    Disconnect(ReasonCode, oneshot::Sender<()>),
}

/// An in-process MQTT 5.0 client of a [`Server`]: publishes, subscribes and
/// unsubscribes without a socket. Cloning it gives another handle on the
/// same connection; the connection ends (and its will is published) when
/// every handle is dropped, unless [`LocalClient::disconnect`] ended it
/// first. Received messages come from the [`LocalMessages`] returned with it.
///
/// ```
/// use mqtt_broker_core::driver::{Listener, LocalOptions, ServerBuilder};
/// use mqtt_broker_core::mqtt_codec::{QoS, SubscriptionOptions};
/// use mqtt_broker_core::BrokerConfig;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = ServerBuilder::new(BrokerConfig::default())
///     .listener(Listener::tcp("127.0.0.1:0".parse()?))
///     .start()
///     .await?;
/// // The program's own client: no socket, an identity the ACL knows.
/// let (app, mut messages) = server
///     .local_client(LocalOptions::new("app").username("app"))
///     .await?;
/// app.subscribe("commands/#", SubscriptionOptions::qos(QoS::AtLeastOnce)).await?;
/// // Retained, so every subscriber that comes later sees it.
/// app.publish("status/app", "online", QoS::AtLeastOnce, true).await?;
/// // Remote clients connect to server.local_addrs()[0] and talk to it like
/// // to any client; here the app sends itself a command.
/// app.publish("commands/reload", "now", QoS::ExactlyOnce, false).await?;
/// let m = messages.recv().await.expect("still connected");
/// assert_eq!((m.topic.as_str(), &m.payload[..]), ("commands/reload", &b"now"[..]));
/// app.clear_retained("status/app").await?;
/// app.disconnect().await; // normal: the will (if any) is discarded
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LocalClient {
    commands: mpsc::Sender<Command>,
    client_id: Arc<str>,
    closed: Arc<Mutex<Option<LocalClientError>>>,
}

impl std::fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClient")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The messages an in-process client receives, in order.
///
/// Flow control is the broker's own: the client announces a Receive
/// Maximum of [`LocalOptions::receive_maximum`], which is also how many
/// messages may wait here unread. A QoS 1 or 2 message is acknowledged when
/// it enters this buffer, so while it is full the broker keeps further QoS
/// 1/2 messages in the session's queue (`max_queued_messages`), and the
/// client's task leaves the broker's packets where they are, so QoS 0
/// messages beyond `max_transmit_bytes` are dropped by the broker, as for a
/// slow network subscriber; other subscribers never wait. (While one of
/// the client's own requests waits for its acknowledgement the task keeps
/// taking packets, so a publisher is never stalled by its unread messages;
/// QoS 0 messages that then find the buffer full are dropped and counted in
/// [`LocalMessages::dropped`].)
#[derive(Debug)]
pub struct LocalMessages {
    messages: mpsc::Receiver<Publish>,
    dropped: Arc<AtomicU64>,
}

impl LocalMessages {
    /// The next message; `None` once the connection is closed and every
    /// message before the close was received. The PUBLISH is the broker's:
    /// topic (without the listener's mount point), payload (shared with the
    /// publisher's, not copied), QoS, RETAIN and 5.0 properties (with the
    /// Subscription Identifiers of the matching subscriptions).
    pub async fn recv(&mut self) -> Option<Publish> {
        self.messages.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Publish> {
        self.messages.try_recv().ok()
    }

    /// QoS 0 messages dropped because the buffer was full while the
    /// client's own requests were waiting for acknowledgements (see
    /// [`LocalMessages`]). Messages the broker dropped count in its
    /// statistics, not here.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Server {
    /// Connects an in-process client: an MQTT 5.0 client of this broker
    /// that never touches a socket (see [`LocalClient`]). It goes through
    /// the broker's [`crate::Authenticator`] with the options' Client
    /// Identifier, user name and password, and its publications and
    /// subscriptions through the [`crate::Authorizer`], like any client's;
    /// it counts in the statistics and `$SYS`, and log lines show it as
    /// connected from `127.0.0.1:0` ([`ConnectionInfo::IN_PROCESS_ADDR`]).
    ///
    /// Returns when the broker has accepted the CONNECT; a refusal is
    /// [`LocalClientError::Refused`] with the reason code.
    pub async fn local_client(
        &self,
        options: LocalOptions,
    ) -> Result<(LocalClient, LocalMessages), LocalClientError> {
        let shared = self.shared.clone();
        let signal = Arc::new(ConnSignal::default());
        let receive_maximum = options.receive_maximum;
        let mut connect = Connect::new(V5, options.client_id.clone());
        connect.keep_alive = 0;
        connect.clean_start = options.clean_start;
        connect.username = options.username;
        connect.password = options.password;
        connect.will = options.will;
        if options.session_expiry != 0 {
            connect.properties.session_expiry_interval = Some(options.session_expiry);
        }
        connect.properties.receive_maximum = Some(receive_maximum);
        let id = {
            let mut g = shared.lock();
            let now = Instant::now();
            let id = g
                .broker()
                .local_connection_opened(now, ConnectionInfo::in_process());
            g.register(id, signal.clone());
            let connect = Packet::Connect(Box::new(connect));
            let len = connect.encoded_len(V5);
            g.broker().handle_packet(now, id, connect, len);
            id
        };
        // Should this future be dropped before the task runs, the
        // connection ends with it.
        let mut opened = Opened(Some((shared.clone(), id)));
        // The CONNACK: at once, or when an authenticator answers.
        let (ack, rest) = loop {
            let taken = shared
                .lock()
                .broker()
                .take_packets_when_stored(Instant::now(), id);
            if let Some(t) = taken {
                let mut packets = t.stored().await.into_iter();
                match packets.next() {
                    Some(Packet::ConnAck(ack)) => break (ack, packets.collect::<Vec<_>>()),
                    _ => continue,
                }
            }
            if signal.close.load(Ordering::Acquire) {
                return Err(LocalClientError::Closed);
            }
            signal.notify.notified().await;
        };
        if ack.reason_code.is_error() {
            return Err(LocalClientError::Refused(ack.reason_code));
        }
        opened.0 = None;
        let client_id: Arc<str> = match &ack.properties.assigned_client_identifier {
            Some(assigned) => assigned.as_str().into(),
            None => options.client_id.as_str().into(),
        };
        let (commands, command_rx) = mpsc::channel(64);
        let (message_tx, messages) = mpsc::channel(usize::from(receive_maximum));
        let closed = Arc::new(Mutex::new(None));
        let dropped = Arc::new(AtomicU64::new(0));
        let task = Task {
            shared,
            signal,
            id,
            messages: message_tx,
            held: VecDeque::new(),
            capacity: usize::from(receive_maximum),
            dropped: dropped.clone(),
            pool: PacketIdPool::new(),
            waiting: HashMap::new(),
            closed: closed.clone(),
            close_reason: None,
            disconnected: None,
            wanted: false,
            routed: Vec::new(),
            publishing: 0,
            quota: usize::from(ack.properties.receive_maximum.unwrap_or(u16::MAX)),
        };
        tokio::spawn(task.run(command_rx, rest, self.alive_tx.clone()));
        Ok((
            LocalClient {
                commands,
                client_id,
                closed,
            },
            LocalMessages { messages, dropped },
        ))
    }
}

/// A connection opened by [`Server::local_client`] that no task serves
/// yet: closed when dropped, unless emptied.
struct Opened(Option<(Arc<Shared>, crate::ConnectionId)>);

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some((shared, id)) = self.0.take() {
            close(&shared, id);
        }
    }
}

/// Ends connection `id` for the broker and the driver.
fn close(shared: &Shared, id: crate::ConnectionId) {
    let mut g = shared.lock();
    g.broker().connection_closed(Instant::now(), id);
    g.unregister(id);
}

impl LocalClient {
    /// The Client Identifier: the one in [`LocalOptions::new`], or the one
    /// the broker assigned when that was empty.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Publishes `payload` to `topic`. Resolves when the broker has taken
    /// the message: at QoS 0 once it was routed, at QoS 1 with its PUBACK,
    /// at QoS 2 with its PUBCOMP (the handle answers PUBREC with PUBREL).
    /// With `retain` the broker keeps it as the topic's retained message.
    ///
    /// A publication the broker's authorizer denies is
    /// [`LocalClientError::NotAuthorized`] at QoS 1 and 2; at QoS 0 there
    /// is no acknowledgement, and the broker drops it silently.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), LocalClientError> {
        let mut p = Publish::new(
            TopicName::new(Bytes::copy_from_slice(topic.as_bytes()))?,
            payload,
        );
        p.qos = qos;
        p.retain = retain;
        self.publish_packet(p).await
    }

    /// Publishes a PUBLISH built by the caller, with its 5.0 properties
    /// (Message Expiry Interval, Content Type, User Properties, ...). The
    /// handle sets the Packet Identifier and clears DUP; a Topic Alias is
    /// not used in process. Resolves as [`LocalClient::publish`] does.
    pub async fn publish_packet(&self, mut publish: Publish) -> Result<(), LocalClientError> {
        publish.dup = false;
        publish.packet_id = None;
        publish.properties.topic_alias = None;
        let (tx, rx) = oneshot::channel();
        self.request(Command::Publish(publish, tx), rx).await
    }

    /// Deletes the retained message of `topic` (publishes an empty
    /// retained message at QoS 1, so a denial is reported).
    pub async fn clear_retained(&self, topic: &str) -> Result<(), LocalClientError> {
        self.publish(topic, Bytes::new(), QoS::AtLeastOnce, true)
            .await
    }

    /// Subscribes to `filter` with `options` (maximum QoS, No Local, Retain
    /// As Published, Retain Handling); returns the QoS the broker granted.
    /// A filter the authorizer denies is [`LocalClientError::NotAuthorized`].
    pub async fn subscribe(
        &self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<QoS, LocalClientError> {
        let filter = TopicFilter::new(filter)?;
        let (tx, rx) = oneshot::channel();
        self.request(Command::Subscribe(filter, options, tx), rx)
            .await
    }

    /// Unsubscribes from `filter`.
    pub async fn unsubscribe(&self, filter: &str) -> Result<(), LocalClientError> {
        let filter = TopicFilter::new(filter)?;
        let (tx, rx) = oneshot::channel();
        self.request(Command::Unsubscribe(filter, tx), rx).await
    }

    /// Disconnects normally: the broker discards the will. Every clone of
    /// this handle is disconnected too. Resolves when the connection is
    /// closed.
    pub async fn disconnect(self) {
        self.end(ReasonCode::Success).await
    }

    /// Disconnects and has the broker publish the will (DISCONNECT 0x04).
    pub async fn disconnect_with_will(self) {
        self.end(ReasonCode::DisconnectWithWillMessage).await
    }

    async fn end(self, rc: ReasonCode) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Disconnect(rc, tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    async fn request<T>(
        &self,
        command: Command,
        reply: oneshot::Receiver<Result<T, LocalClientError>>,
    ) -> Result<T, LocalClientError> {
        if self.commands.send(command).await.is_err() {
            return Err(self.closed_reason());
        }
        match reply.await {
            Ok(r) => r,
            Err(_) => Err(self.closed_reason()),
        }
    }

    fn closed_reason(&self) -> LocalClientError {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(LocalClientError::ShutDown)
    }
}

/// A request of the client waiting for the broker's answer.
enum Waiter {
    Publish(oneshot::Sender<Result<(), LocalClientError>>),
    /// QoS 2 after PUBREL: waiting for PUBCOMP.
    Released(oneshot::Sender<Result<(), LocalClientError>>),
    Subscribe(oneshot::Sender<Result<QoS, LocalClientError>>),
    Unsubscribe(oneshot::Sender<Result<(), LocalClientError>>),
}

impl Waiter {
    fn fail(self, e: LocalClientError) {
        match self {
            Waiter::Publish(tx) | Waiter::Released(tx) | Waiter::Unsubscribe(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiter::Subscribe(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// The error an error reason code stands for.
fn rejected(rc: ReasonCode) -> LocalClientError {
    if rc == ReasonCode::NotAuthorized {
        LocalClientError::NotAuthorized
    } else {
        LocalClientError::Rejected(rc)
    }
}

/// The task of one in-process client: the broker's side of its "socket".
struct Task {
    shared: Arc<Shared>,
    signal: Arc<ConnSignal>,
    id: crate::ConnectionId,
    messages: mpsc::Sender<Publish>,
    /// Messages taken from the broker that did not fit into `messages` yet.
    held: VecDeque<Publish>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
    pool: PacketIdPool,
    waiting: HashMap<PacketId, Waiter>,
    closed: Arc<Mutex<Option<LocalClientError>>>,
    /// Why the broker closed the connection (its DISCONNECT).
    close_reason: Option<LocalClientError>,
    /// The client's own DISCONNECT, answered once closed.
    disconnected: Option<oneshot::Sender<()>>,
    /// The broker announced packets that were not taken yet.
    wanted: bool,
    /// QoS 0 publications to answer once the broker has taken them.
    routed: Vec<oneshot::Sender<Result<(), LocalClientError>>>,
    /// QoS 1/2 publications unacknowledged, and how many may be: the
    /// broker's Receive Maximum.
    publishing: usize,
    quota: usize,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        first: Vec<Packet>,
        _alive: Option<mpsc::Sender<()>>,
    ) {
        let mut replies = self.handle(first);
        loop {
            // Answers to the broker (acknowledgements, PUBREL), and what
            // it sends back, until nothing is left to say.
            while !replies.is_empty() || (self.wanted && self.may_take()) {
                let out = std::mem::take(&mut replies);
                let taken = self.exchange(out);
                if let Some(t) = taken {
                    replies = self.handle(t.stored().await);
                }
            }
            if self.signal.close.load(Ordering::Acquire) {
                break;
            }
            let (signal, messages) = (self.signal.clone(), self.messages.clone());
            tokio::select! {
                _ = signal.notify.notified() => self.wanted = true,
                permit = messages.reserve(), if !self.held.is_empty() => {
                    if let Ok(permit) = permit {
                        if let Some(p) = self.held.pop_front() {
                            replies.extend(acknowledge(&p));
                            permit.send(p);
                        }
                    }
                    // (The receiver gone: `deliver` acknowledges and drops.)
                    self.deliver(&mut replies);
                }
                // Within the broker's Receive Maximum [MQTT-3.3.4-7].
                command = commands.recv(), if self.publishing < self.quota => match command {
                    Some(c) => {
                        replies.extend(self.command(c));
                        // What else is asked goes to the broker under the
                        // same lock.
                        while self.publishing < self.quota {
                            match commands.try_recv() {
                                Ok(c) => replies.extend(self.command(c)),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        // Every handle dropped without DISCONNECT: the
                        // connection is lost, and the will published.
                        break;
                    }
                },
            }
        }
        // Whatever is left (DISCONNECT 0x8B, ...), then the close.
        let rest = self
            .shared
            .lock()
            .broker()
            .take_packets_when_stored(Instant::now(), self.id);
        if let Some(rest) = rest {
            let _ = self.handle(rest.stored().await);
        }
        close(&self.shared, self.id);
        let reason = self.close_reason.take().unwrap_or(LocalClientError::Closed);
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        for (_, w) in self.waiting.drain() {
            w.fail(reason.clone());
        }
        for tx in self.routed.drain(..) {
            let _ = tx.send(Err(reason.clone()));
        }
        // Messages still held go out while there is room; the rest with
        // the connection.
        while let Some(p) = self.held.pop_front() {
            if self.messages.try_send(p).is_err() {
                break;
            }
        }
        if let Some(tx) = self.disconnected.take() {
            let _ = tx.send(());
        }
    }

    /// Whether the task takes the broker's packets now: while there is
    /// room for messages, or while a request waits for its answer.
    fn may_take(&self) -> bool {
        self.held.is_empty() || !self.waiting.is_empty()
    }

    /// Hands the broker `packets`, and takes what it has for the client.
    fn exchange(&mut self, packets: Vec<Packet>) -> Option<crate::Transmit<Vec<Packet>>> {
        let take = self.may_take();
        let mut g = self.shared.lock();
        let broker = g.broker();
        let now = Instant::now();
        for p in packets {
            let len = p.encoded_len(V5);
            broker.handle_packet(now, self.id, p, len);
        }
        for tx in self.routed.drain(..) {
            let _ = tx.send(Ok(()));
        }
        if !take {
            return None;
        }
        self.wanted = false;
        broker.take_packets_when_stored(now, self.id)
    }

    /// The packets for the broker a client's request makes.
    fn command(&mut self, c: Command) -> Option<Packet> {
        const NO_ID: LocalClientError = LocalClientError::Rejected(ReasonCode::QuotaExceeded);
        match c {
            Command::Publish(mut p, tx) => {
                if p.qos == QoS::AtMostOnce {
                    // Answered once the broker has taken it (`exchange`).
                    self.routed.push(tx);
                    return Some(Packet::Publish(p));
                }
                let Some(pid) = self.allocate() else {
                    let _ = tx.send(Err(NO_ID));
                    return None;
                };
                p.packet_id = Some(pid);
                self.publishing += 1;
                self.waiting.insert(pid, Waiter::Publish(tx));
                Some(Packet::Publish(p))
            }
            Command::Subscribe(filter, options, tx) => {
                let Some(pid) = self.allocate() else {
                    let _ = tx.send(Err(NO_ID));
                    return None;
                };
                self.waiting.insert(pid, Waiter::Subscribe(tx));
                Some(Packet::Subscribe(Subscribe::new(pid, filter, options)))
            }
            Command::Unsubscribe(filter, tx) => {
                let Some(pid) = self.allocate() else {
                    let _ = tx.send(Err(NO_ID));
                    return None;
                };
                self.waiting.insert(pid, Waiter::Unsubscribe(tx));
                Some(Packet::Unsubscribe(Unsubscribe {
                    packet_id: pid,
                    properties: Default::default(),
                    filters: vec![filter],
                }))
            }
            Command::Disconnect(rc, tx) => {
                self.disconnected = Some(tx);
                Some(Packet::Disconnect(Disconnect::new(rc)))
            }
        }
    }

    /// A free Packet Identifier. (The commands channel holds at most a few
    /// requests at a time, so the 65,535 identifiers never run out.)
    fn allocate(&mut self) -> Option<PacketId> {
        let waiting = &self.waiting;
        self.pool.allocate(|id| waiting.contains_key(&id))
    }

    /// Handles what the broker sent; returns the client's answers.
    fn handle(&mut self, packets: Vec<Packet>) -> Vec<Packet> {
        let mut replies = Vec::new();
        for packet in packets {
            match packet {
                Packet::Publish(p) => {
                    if self.held.len() >= self.capacity && p.qos == QoS::AtMostOnce {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.held.push_back(p);
                    }
                }
                Packet::PubAck(a) => {
                    if let Some(Waiter::Publish(tx)) = self.waiting.remove(&a.packet_id) {
                        self.publishing -= 1;
                        let r = if a.reason_code.is_error() {
                            Err(rejected(a.reason_code))
                        } else {
                            Ok(())
                        };
                        let _ = tx.send(r);
                    }
                }
                Packet::PubRec(a) => {
                    if let Some(Waiter::Publish(tx)) = self.waiting.remove(&a.packet_id) {
                        if a.reason_code.is_error() {
                            self.publishing -= 1;
                            let _ = tx.send(Err(rejected(a.reason_code)));
                        } else {
                            self.waiting.insert(a.packet_id, Waiter::Released(tx));
                            replies.push(Packet::PubRel(PubRel::new(a.packet_id)));
                        }
                    }
                }
                Packet::PubComp(a) => {
                    if let Some(Waiter::Released(tx)) = self.waiting.remove(&a.packet_id) {
                        self.publishing -= 1;
                        let _ = tx.send(Ok(()));
                    }
                }
                // The second half of a received QoS 2 message.
                Packet::PubRel(r) => replies.push(Packet::PubComp(PubComp::new(r.packet_id))),
                Packet::SubAck(a) => {
                    if let Some(Waiter::Subscribe(tx)) = self.waiting.remove(&a.packet_id) {
                        let rc = a.reason_codes.first().copied();
                        let r = match rc.and_then(|rc| rc.granted_qos()) {
                            Some(q) => Ok(q),
                            None => Err(rejected(rc.unwrap_or(ReasonCode::UnspecifiedError))),
                        };
                        let _ = tx.send(r);
                    }
                }
                Packet::UnsubAck(a) => {
                    if let Some(Waiter::Unsubscribe(tx)) = self.waiting.remove(&a.packet_id) {
                        let r = match a.reason_codes.first() {
                            Some(&rc) if rc.is_error() => Err(rejected(rc)),
                            _ => Ok(()),
                        };
                        let _ = tx.send(r);
                    }
                }
                Packet::Disconnect(d) => {
                    self.close_reason = Some(if d.reason_code == ReasonCode::ServerShuttingDown {
                        LocalClientError::ShutDown
                    } else {
                        LocalClientError::Disconnected(d.reason_code)
                    });
                }
                // CONNACK came before the task; no PINGREQ, no AUTH.
                _ => {}
            }
        }
        self.deliver(&mut replies);
        replies
    }

    /// Moves held messages into the client's buffer while it has room,
    /// acknowledging QoS 1 and 2 ones as they enter it. Messages for a
    /// receiver that is gone are acknowledged and dropped.
    fn deliver(&mut self, replies: &mut Vec<Packet>) {
        while let Some(p) = self.held.pop_front() {
            let ack = acknowledge(&p);
            match self.messages.try_send(p) {
                Ok(()) => replies.extend(ack),
                Err(mpsc::error::TrySendError::Full(p)) => {
                    self.held.push_front(p);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => replies.extend(ack),
            }
        }
    }
}

/// The acknowledgement a received message gets when it is delivered.
fn acknowledge(p: &Publish) -> Option<Packet> {
    match (p.qos, p.packet_id) {
        (QoS::AtLeastOnce, Some(pid)) => Some(Packet::PubAck(PubAck::new(pid))),
        (QoS::ExactlyOnce, Some(pid)) => Some(Packet::PubRec(PubRec::new(pid))),
        _ => None,
    }
}
