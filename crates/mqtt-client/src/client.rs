//! [`Client`]: the cheap-to-clone handle, and [`Messages`], the incoming stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use mqtt_codec::{
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscription,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::event_loop::EventLoop;
use crate::{ClientOptions, ConnectionState, Error};

/// A request from a [`Client`] handle to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        publish: Publish,
        done: oneshot::Sender<Result<ReasonCode, Error>>,
    },
    Subscribe {
        subscriptions: Vec<Subscription>,
        properties: Properties,
        done: oneshot::Sender<Result<SubAck, Error>>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        properties: Properties,
        done: oneshot::Sender<Result<UnsubAck, Error>>,
    },
    Reauthenticate {
        data: Option<Bytes>,
        done: oneshot::Sender<Result<Properties, Error>>,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

/// A handle to an MQTT connection: clone it freely, use it from any task.
///
/// Every request is a future that completes when the broker answered:
/// [`Client::publish`] on PUBACK (QoS 1) or PUBCOMP (QoS 2), or once
/// written (QoS 0); [`Client::subscribe`] on SUBACK. Requests made while the
/// connection is down wait and go out after the reconnect.
///
/// To keep many messages in flight from one task, [`Client::start_publish`]
/// returns as soon as the message is queued, with a [`PublishHandle`] that
/// resolves on the acknowledgement.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
}

/// The incoming application messages, in order. Bounded: see the crate
/// documentation on back-pressure. Ends (`None`) when the client is closed.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Publish>,
}

impl Messages {
    /// The next message, or `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Publish> {
        self.rx.recv().await
    }

    /// A message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Publish> {
        self.rx.try_recv().ok()
    }
}

/// The outcome of a message handed over with [`Client::start_publish`]: a
/// future that resolves like [`Client::publish`] does, when the broker has
/// the message (QoS 0: written; QoS 1: PUBACK; QoS 2: PUBCOMP), with its
/// reason code, or [`Error::PublishRefused`] and the other errors of
/// [`Client::publish`].
///
/// Dropping the handle does not withdraw the message: it is sent (and
/// re-sent after a reconnect) all the same; only its outcome goes unheard.
#[derive(Debug)]
pub struct PublishHandle {
    rx: oneshot::Receiver<Result<ReasonCode, Error>>,
}

impl Future for PublishHandle {
    type Output = Result<ReasonCode, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

fn topic_name(topic: &str) -> Result<TopicName, Error> {
    TopicName::try_from(topic).map_err(|source| Error::InvalidTopic {
        topic: topic.to_string(),
        source,
    })
}

fn topic_filter(filter: &str) -> Result<TopicFilter, Error> {
    TopicFilter::new(filter).map_err(|source| Error::InvalidTopic {
        topic: filter.to_string(),
        source,
    })
}

impl Client {
    /// Connects, spawns the event loop on the current tokio runtime, and
    /// returns once the broker accepted the connection (CONNACK), or with
    /// the reason it did not (TLS failure in mqtt-tls's words, CONNACK
    /// refusal, unreachable broker). Later connection losses are retried
    /// according to [`ClientOptions::reconnect`].
    pub async fn connect(options: ClientOptions) -> Result<(Client, Messages), Error> {
        let (client, messages, event_loop) = Client::new(options);
        let mut state = client.state();
        tokio::spawn(event_loop.run_until_first_connack_fails());
        loop {
            match &*state.borrow_and_update() {
                ConnectionState::Connected { .. } => return Ok((client, messages)),
                ConnectionState::Closed { error } => {
                    return Err(error.clone().unwrap_or(Error::Closed))
                }
                _ => {}
            }
            if state.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    /// The handle, the message stream and the event loop, for callers who
    /// drive the loop themselves (`tokio::spawn(event_loop.run())`). The
    /// first connection failure is retried like any later one.
    ///
    /// An MQTT 3.1 session without a Client Identifier gets a generated
    /// one (`mqtt-client-` and 11 random letters and digits): 3.1 requires
    /// one of 1 to 23 characters.
    pub fn new(mut options: ClientOptions) -> (Client, Messages, EventLoop) {
        if options.session.protocol == ProtocolVersion::V3_1 && options.session.client_id.is_empty()
        {
            options.session.client_id = crate::backoff::generated_client_id();
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (msg_tx, msg_rx) = mpsc::channel(options.message_capacity.max(1));
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let event_loop = EventLoop::new(options, cmd_rx, msg_tx, state_tx);
        (
            Client {
                commands: cmd_tx,
                state: state_rx,
            },
            Messages { rx: msg_rx },
            event_loop,
        )
    }

    /// The connection state (connected, reconnecting with the last error,
    /// closed), as a watch receiver: `.borrow()` for now, `.changed()` to wait.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Publishes `payload` to `topic`. Completes when the message is
    /// acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP) or written (QoS 0), with
    /// the broker's reason code (e.g. 0x10 No matching subscribers); a
    /// refusal is [`Error::PublishRefused`].
    pub async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<ReasonCode, Error> {
        let mut publish = Publish::new(topic_name(topic)?, payload);
        publish.qos = qos;
        publish.retain = retain;
        self.publish_message(publish).await
    }

    /// Publishes a prepared PUBLISH (5.0 properties: user properties,
    /// response topic, correlation data, message expiry, ...). Packet
    /// identifier, DUP and topic alias are set by the client.
    pub async fn publish_message(&self, publish: Publish) -> Result<ReasonCode, Error> {
        self.start_publish_message(publish).await?.await
    }

    /// Hands `payload` for `topic` to the client and returns once it is
    /// queued, with a [`PublishHandle`] that resolves on the
    /// acknowledgement: a task keeps many messages in flight this way
    /// instead of waiting a round trip for each, as with [`Client::publish`].
    ///
    /// Messages go out in the order they were started. QoS 1 and 2
    /// messages in flight are capped by the broker's Receive Maximum (5.0)
    /// and [`crate::proto::ConnectOptions::max_inflight`]; while that
    /// window is full and another window's worth waits behind it, this
    /// call waits for room (back-pressure) instead of queueing without
    /// bound. While the connection is down messages are queued up to
    /// `max_queued`, then refused with [`crate::proto::PublishError::QueueFull`],
    /// which the handle reports.
    pub async fn start_publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<PublishHandle, Error> {
        let mut publish = Publish::new(topic_name(topic)?, payload);
        publish.qos = qos;
        publish.retain = retain;
        self.start_publish_message(publish).await
    }

    /// [`Client::start_publish`] for a prepared PUBLISH (see
    /// [`Client::publish_message`]).
    pub async fn start_publish_message(&self, publish: Publish) -> Result<PublishHandle, Error> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish { publish, done })
            .await
            .map_err(|_| Error::Closed)?;
        Ok(PublishHandle { rx })
    }

    /// Subscribes to one filter at `qos`; returns the SUBACK, or
    /// [`Error::SubscribeRefused`] if the broker refused the filter. The
    /// subscription is restored automatically if the broker loses the session.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<SubAck, Error> {
        let filter = topic_filter(filter)?;
        let name = filter.as_str().to_string();
        let suback = self
            .subscribe_many(
                vec![Subscription {
                    filter,
                    options: SubscriptionOptions::qos(qos),
                }],
                Properties::default(),
            )
            .await?;
        match suback.reason_codes.first() {
            Some(rc) if rc.is_error() => Err(Error::SubscribeRefused {
                filter: name,
                reason_code: *rc,
                reason_string: suback.properties.reason_string.clone().map(String::from),
            }),
            _ => Ok(suback),
        }
    }

    /// Subscribes to several filters with full options and properties; the
    /// SUBACK has one reason code per filter (failures included).
    pub async fn subscribe_many(
        &self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> Result<SubAck, Error> {
        self.request(|done| Command::Subscribe {
            subscriptions,
            properties,
            done,
        })
        .await
    }

    /// Unsubscribes from one filter; returns the UNSUBACK.
    pub async fn unsubscribe(&self, filter: &str) -> Result<UnsubAck, Error> {
        let filter = topic_filter(filter)?;
        self.unsubscribe_many(vec![filter], Properties::default())
            .await
    }

    /// Unsubscribes from several filters, with 5.0 properties (User
    /// Properties); the UNSUBACK has one reason code per filter in 5.0.
    pub async fn unsubscribe_many(
        &self,
        filters: Vec<TopicFilter>,
        properties: Properties,
    ) -> Result<UnsubAck, Error> {
        self.request(|done| Command::Unsubscribe {
            filters,
            properties,
            done,
        })
        .await
    }

    /// Re-authenticates the connected client (5.0 enhanced authentication,
    /// section 4.12.1): sends AUTH 0x19 with the method of the options'
    /// [`crate::EnhancedAuth`] and `data` (`None`: the handler's
    /// [`crate::AuthHandler::initial`] data), answers the broker's
    /// challenges with its handler, checks the final data with
    /// [`crate::AuthHandler::finish`], and completes with the properties of
    /// the broker's AUTH 0x00 Success. A broker that refuses closes the connection: the
    /// future then fails with that reason (and the client reconnects, with
    /// a fresh authentication, as after any connection loss).
    pub async fn reauthenticate(&self, data: Option<Bytes>) -> Result<Properties, Error> {
        self.request(|done| Command::Reauthenticate { data, done })
            .await
    }

    /// Sends DISCONNECT (so the broker discards the will), closes the
    /// connection and stops the event loop. Requests still waiting fail
    /// with [`Error::Closed`].
    pub async fn disconnect(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Disconnect { done: tx })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }
}
