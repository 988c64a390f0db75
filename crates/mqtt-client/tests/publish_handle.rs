//! `Client::start_publish`: many messages in flight from one task, each
//! with a `PublishHandle` that resolves on its acknowledgement. A scripted
//! broker on loopback (mqtt-codec over a tokio socket) decides when each
//! PUBACK goes out, so the tests see exactly what is in flight.

use std::time::Duration;

use bytes::BytesMut;
use mqtt_client::{Client, ClientOptions, Messages, ProtocolVersion, QoS, ReasonCode};
use mqtt_codec::{ConnAck, Decoder, Packet, PacketId, PubAck, Publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The broker's side of one connection.
struct Scripted {
    socket: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Scripted {
    /// Accepts the client's connection and answers its CONNECT with a 5.0
    /// CONNACK carrying `receive_maximum`.
    async fn accept(listener: &TcpListener, receive_maximum: Option<u16>) -> Self {
        let (socket, _) = listener.accept().await.expect("accept");
        let mut broker = Self {
            socket,
            decoder: Decoder::new(),
            buf: BytesMut::new(),
        };
        let Some(Packet::Connect(_)) = broker.next(Duration::from_secs(10)).await else {
            panic!("the client's first packet is not CONNECT");
        };
        let mut connack = ConnAck::new(false, ReasonCode::Success);
        connack.properties.receive_maximum = receive_maximum;
        broker.send(Packet::ConnAck(connack)).await;
        broker
    }

    /// The next packet from the client, or `None` when none arrives within
    /// `wait` (or the connection ended).
    async fn next(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid MQTT") {
                return Some(p);
            }
            let read = self.socket.read_buf(&mut self.buf);
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// The next PUBLISH (within 10 s), skipping nothing: any other packet fails.
    async fn publish(&mut self) -> Publish {
        match self.next(Duration::from_secs(10)).await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts that no packet arrives for `wait`.
    async fn nothing_for(&mut self, wait: Duration, why: &str) {
        if let Some(p) = self.next(wait).await {
            panic!("{why}, but the client sent {p:?}");
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet
            .encode(ProtocolVersion::V5, &mut out)
            .expect("encode");
        self.socket.write_all(&out).await.expect("write");
    }

    async fn puback(&mut self, id: PacketId, reason_code: ReasonCode) {
        self.send(Packet::PubAck(PubAck::with_reason(id, reason_code)))
            .await;
    }
}

async fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// Connects a 5.0 client (no reconnects) to the scripted broker.
async fn connect(
    listener: &TcpListener,
    port: u16,
    receive_maximum: Option<u16>,
) -> (Client, Messages, Scripted) {
    let options = ClientOptions::new("127.0.0.1", port)
        .client_id("handles")
        .reconnect(mqtt_client::ReconnectOptions::disabled());
    let (connected, broker) = tokio::join!(
        Client::connect(options),
        Scripted::accept(listener, receive_maximum)
    );
    let (client, messages) = connected.expect("client connects");
    (client, messages, broker)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test]
async fn handles_resolve_with_the_reason_code_of_their_own_puback_in_order() {
    let (listener, port) = listen().await;
    let (client, _messages, mut broker) = connect(&listener, port, None).await;
    let mut handles = Vec::new();
    for i in 0..20u32 {
        let handle = client
            .start_publish("t/order", QoS::AtLeastOnce, false, i.to_string())
            .await
            .expect("queued");
        handles.push(handle);
    }
    // The broker sees them in the order they were started, all in flight
    // before any acknowledgement.
    let mut ids = Vec::new();
    for i in 0..20u32 {
        let p = broker.publish().await;
        assert_eq!(&p.payload[..], i.to_string().as_bytes(), "message {i}");
        ids.push(p.packet_id.expect("QoS 1 has a packet identifier"));
    }
    // Acknowledge in reverse, the even ones with 0x10 No matching subscribers.
    for (i, id) in ids.iter().enumerate().rev() {
        let code = if i % 2 == 0 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        broker.puback(*id, code).await;
    }
    for (i, handle) in handles.into_iter().enumerate() {
        let code = within("a handle resolves", handle)
            .await
            .expect("acknowledged");
        let expected = if i % 2 == 0 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        assert_eq!(code, expected, "message {i}");
    }
}

#[tokio::test]
async fn a_refusing_puback_fails_only_its_own_handle() {
    let (listener, port) = listen().await;
    let (client, _messages, mut broker) = connect(&listener, port, None).await;
    let refused = client
        .start_publish("t/refuse", QoS::AtLeastOnce, false, "no")
        .await
        .expect("queued");
    let accepted = client
        .start_publish("t/refuse", QoS::AtLeastOnce, false, "yes")
        .await
        .expect("queued");
    let first = broker.publish().await.packet_id.expect("id");
    let second = broker.publish().await.packet_id.expect("id");
    broker.puback(first, ReasonCode::NotAuthorized).await;
    broker.puback(second, ReasonCode::Success).await;
    match within("refused handle", refused).await {
        Err(mqtt_client::Error::PublishRefused { reason_code, .. }) => {
            assert_eq!(reason_code, ReasonCode::NotAuthorized)
        }
        other => panic!("expected PublishRefused, got {other:?}"),
    }
    assert_eq!(
        within("accepted handle", accepted).await.expect("ok"),
        ReasonCode::Success
    );
}

#[tokio::test]
async fn in_flight_messages_are_capped_by_the_brokers_receive_maximum() {
    let (listener, port) = listen().await;
    let (client, _messages, mut broker) = connect(&listener, port, Some(3)).await;
    let mut handles = Vec::new();
    for i in 0..8u32 {
        handles.push(
            client
                .start_publish("t/window", QoS::AtLeastOnce, false, i.to_string())
                .await
                .expect("queued"),
        );
    }
    let mut in_flight = Vec::new();
    for i in 0..3u32 {
        let p = broker.publish().await;
        assert_eq!(&p.payload[..], i.to_string().as_bytes());
        in_flight.push(p.packet_id.expect("id"));
    }
    broker
        .nothing_for(
            Duration::from_millis(300),
            "three messages are in flight and the broker's Receive Maximum is 3",
        )
        .await;
    // Each PUBACK opens the window by one message, the next in order.
    for next in 3..8u32 {
        let acked = in_flight.remove(0);
        broker.puback(acked, ReasonCode::Success).await;
        let p = broker.publish().await;
        assert_eq!(&p.payload[..], next.to_string().as_bytes());
        in_flight.push(p.packet_id.expect("id"));
        broker
            .nothing_for(Duration::from_millis(50), "the window is full again")
            .await;
    }
    for id in in_flight {
        broker.puback(id, ReasonCode::Success).await;
    }
    for handle in handles {
        within("every handle resolves", handle)
            .await
            .expect("acknowledged");
    }
}

#[tokio::test]
async fn start_publish_waits_for_room_instead_of_refusing_when_far_ahead() {
    // max_inflight 2 and Receive Maximum 2: after two in flight and two
    // queued, further start_publish calls wait in the command channel; none
    // fails with QueueFull however far the caller runs ahead.
    let (listener, port) = listen().await;
    let options = ClientOptions::new("127.0.0.1", port)
        .client_id("ahead")
        .reconnect(mqtt_client::ReconnectOptions::disabled())
        .max_inflight(2)
        .max_queued(4);
    let (connected, mut broker) = tokio::join!(
        Client::connect(options),
        Scripted::accept(&listener, Some(2))
    );
    let (client, _messages) = connected.expect("connects");
    let publisher = tokio::spawn(async move {
        let mut handles = Vec::new();
        for i in 0..200u32 {
            handles.push(
                client
                    .start_publish("t/ahead", QoS::AtLeastOnce, false, i.to_string())
                    .await
                    .expect("queued"),
            );
        }
        let mut codes = Vec::new();
        for handle in handles {
            codes.push(handle.await.expect("acknowledged, never QueueFull"));
        }
        codes
    });
    for i in 0..200u32 {
        let p = broker.publish().await;
        assert_eq!(&p.payload[..], i.to_string().as_bytes(), "order kept");
        broker
            .puback(p.packet_id.expect("id"), ReasonCode::Success)
            .await;
    }
    let codes = within("the publisher finishes", publisher)
        .await
        .expect("task");
    assert_eq!(codes.len(), 200);
    assert!(codes.iter().all(|c| *c == ReasonCode::Success));
}

#[tokio::test]
async fn a_dropped_handle_does_not_lose_its_message() {
    let (listener, port) = listen().await;
    let (client, _messages, mut broker) = connect(&listener, port, None).await;
    drop(
        client
            .start_publish("t/dropped", QoS::AtLeastOnce, false, "qos1")
            .await
            .expect("queued"),
    );
    drop(
        client
            .start_publish("t/dropped", QoS::AtMostOnce, false, "qos0")
            .await
            .expect("queued"),
    );
    let p = broker.publish().await;
    assert_eq!((&p.payload[..], p.qos), (&b"qos1"[..], QoS::AtLeastOnce));
    let q = broker.publish().await;
    assert_eq!((&q.payload[..], q.qos), (&b"qos0"[..], QoS::AtMostOnce));
    broker
        .puback(p.packet_id.expect("id"), ReasonCode::Success)
        .await;
    // The client carries on: a later awaited publish completes.
    let later = client.publish("t/dropped", QoS::AtLeastOnce, false, "later");
    let broker_side = async {
        let r = broker.publish().await;
        assert_eq!(&r.payload[..], b"later");
        broker
            .puback(r.packet_id.expect("id"), ReasonCode::Success)
            .await;
    };
    let (code, ()) = within("later publish", async { tokio::join!(later, broker_side) }).await;
    assert_eq!(code.expect("acknowledged"), ReasonCode::Success);
}

#[tokio::test]
async fn qos0_handles_resolve_once_written() {
    let (listener, port) = listen().await;
    let (client, _messages, mut broker) = connect(&listener, port, None).await;
    let mut handles = Vec::new();
    for i in 0..50u32 {
        handles.push(
            client
                .start_publish("t/qos0", QoS::AtMostOnce, false, i.to_string())
                .await
                .expect("queued"),
        );
    }
    // No acknowledgement exists for QoS 0: each handle resolves when the
    // message is written, before the broker answers anything.
    for handle in handles {
        assert_eq!(
            within("QoS 0 handle", handle).await.expect("written"),
            ReasonCode::Success
        );
    }
    for i in 0..50u32 {
        assert_eq!(
            &broker.publish().await.payload[..],
            i.to_string().as_bytes()
        );
    }
}

#[tokio::test]
async fn handles_fail_with_closed_when_the_connection_ends_without_reconnects() {
    let (listener, port) = listen().await;
    let (client, _messages, broker) = connect(&listener, port, None).await;
    let handle = client
        .start_publish("t/closed", QoS::AtLeastOnce, false, "x")
        .await
        .expect("queued");
    drop(broker); // the broker goes away without acknowledging
    match within("handle after the connection ended", handle).await {
        Err(mqtt_client::Error::Closed) => {}
        other => panic!("expected Error::Closed, got {other:?}"),
    }
}
