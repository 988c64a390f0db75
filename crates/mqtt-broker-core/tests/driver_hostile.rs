//! Hostile and stuck clients against the tokio driver on loopback, one
//! input per test, as listed in docs/hostile-clients.md: what the hostile
//! client gets (5.0 reason code, or the connection closed in 3.1.1), the
//! log line, that well-behaved clients on the same broker keep exchanging
//! QoS 1 messages and see nothing else, and what the broker keeps of the
//! hostile client (its will published, its session with its subscriptions
//! and queued messages).
#![cfg(feature = "tokio")]

mod driver_support;

use bytes::Bytes;
use driver_support::*;
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{
    LastWill, Packet, PacketId, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
};
use mqtt_broker_core::{BrokerConfig, DisconnectReason, Event};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

type Client = RawClient<TcpStream>;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn server(config: BrokerConfig) -> Server {
    driver_support::tcp_server(config).await.0
}

/// The well-behaved clients: a subscriber to `calm/#`, a publisher, and a
/// watcher of the wills (`will/#`), all QoS 1.
struct Calm {
    sub: Client,
    publisher: Client,
    watcher: Client,
    sent: u32,
}

impl Calm {
    async fn join(addr: SocketAddr) -> Self {
        let (mut sub, _) = RawClient::connect(tcp(addr).await, V5, "calm-sub", |_| {}).await;
        sub.subscribe("calm/#", QoS::AtLeastOnce).await;
        let (mut watcher, _) =
            RawClient::connect(tcp(addr).await, V3, "calm-watcher", |_| {}).await;
        watcher.subscribe("will/#", QoS::AtLeastOnce).await;
        let (publisher, _) =
            RawClient::connect(tcp(addr).await, V3, "calm-publisher", |_| {}).await;
        Self {
            sub,
            publisher,
            watcher,
            sent: 0,
        }
    }

    /// The publisher sends `n` QoS 1 messages (each acknowledged); the
    /// subscriber gets each, in order, and then nothing else.
    async fn exchange(&mut self, n: u32) {
        for _ in 0..n {
            self.sent += 1;
            let payload = format!("calm {}", self.sent);
            self.publisher
                .publish("calm/talk", payload.as_bytes(), QoS::AtLeastOnce, false)
                .await;
            let p = self.sub.expect_publish().await;
            assert_eq!(p.topic.as_str(), "calm/talk");
            assert_eq!(&p.payload[..], payload.as_bytes(), "in order, none lost");
        }
        // Nothing else is waiting for the subscriber: the answer to its
        // PINGREQ is the next packet.
        self.sub.send(Packet::PingReq).await;
        assert_eq!(self.sub.recv().await, Some(Packet::PingResp));
    }

    /// The watcher gets `id`'s will.
    async fn will_of(&mut self, id: &str) {
        let p = self.watcher.expect_publish().await;
        assert_eq!(p.topic.as_str(), format!("will/{id}"));
        assert_eq!(&p.payload[..], b"gone");
    }

    /// No will reached the watcher.
    async fn no_will(&mut self) {
        self.watcher.send(Packet::PingReq).await;
        assert_eq!(self.watcher.recv().await, Some(Packet::PingResp));
    }

    /// A QoS 1 message for `id`'s session while it is away.
    async fn mail(&mut self, id: &str) {
        self.publisher
            .publish(&format!("mail/{id}"), b"kept", QoS::AtLeastOnce, false)
            .await;
    }
}

/// Connects a client with a will on `will/ID`, a session that outlives the
/// connection (5.0: Session Expiry 300 s; 3.1.1: Clean Session 0) and a
/// subscription to `mail/ID`.
async fn hostile(addr: SocketAddr, version: ProtocolVersion, id: &str) -> Client {
    let (mut c, ack) = RawClient::connect(tcp(addr).await, version, id, |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = version.is_v5().then_some(300);
        c.will = Some(LastWill {
            topic: TopicName::try_from(format!("will/{id}")).unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
    })
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    c.subscribe(&format!("mail/{id}"), QoS::AtLeastOnce).await;
    c
}

/// What the broker sends before it closes: 5.0 a DISCONNECT with `rc`,
/// 3.1.1 nothing.
async fn closed_with(c: &mut Client, version: ProtocolVersion, rc: ReasonCode) {
    if version.is_v5() {
        match c.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, rc),
            other => panic!("expected DISCONNECT {rc:?}, got {other:?}"),
        }
    }
    assert_eq!(c.recv().await, None, "then the connection is closed");
}

/// The session was kept: reconnecting resumes it (Session Present) and
/// delivers the message queued for it meanwhile.
async fn session_kept(addr: SocketAddr, version: ProtocolVersion, id: &str) {
    let (mut c, ack) = RawClient::connect(tcp(addr).await, version, id, |c| {
        c.clean_start = false;
        c.properties.session_expiry_interval = version.is_v5().then_some(300);
    })
    .await;
    assert!(ack.session_present, "the session survived");
    let p = c.expect_publish().await;
    assert_eq!(p.topic.as_str(), format!("mail/{id}"));
    assert_eq!(&p.payload[..], b"kept");
    c.disconnect().await;
}

/// Asserts the log has `line` (waiting for it, bounded).
async fn logged(logs: &LogCapture, line: &str) {
    assert!(
        logs.wait_for(line).await,
        "the log should say {line:?}, got:\n{}",
        logs.text()
    );
}

/// One hostile input sent raw after CONNECT, in both versions: what the
/// client gets, the log line, the others unaffected, will and session kept.
async fn one_bad_packet(
    config: BrokerConfig,
    bad: impl Fn(ProtocolVersion) -> Vec<u8>,
    rc: ReasonCode,
    line: &str,
) {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let server = server(config).await;
    let addr = server.local_addrs()[0];
    let mut calm = Calm::join(addr).await;
    for version in [V5, V3] {
        let id = format!("hostile-{}", u8::from(version.is_v5()) + 4);
        let mut h = hostile(addr, version, &id).await;
        calm.exchange(2).await;
        h.send_raw(&bad(version)).await;
        closed_with(&mut h, version, rc).await;
        logged(&logs, &format!("Client {id} {line}")).await;
        calm.will_of(&id).await;
        calm.exchange(3).await;
        calm.mail(&id).await;
        session_kept(addr, version, &id).await;
    }
    server.shutdown().await;
}

/// A PUBLISH at QoS 0 with `topic` as raw bytes and payload `x`.
fn raw_publish(version: ProtocolVersion, topic: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic);
    if version.is_v5() {
        body.push(0); // no properties
    }
    body.push(b'x');
    let mut p = vec![0x30, body.len() as u8];
    p.extend(body);
    p
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversize_packet_is_refused_from_its_fixed_header() {
    // The fixed header announces a PUBLISH of 1,000,000 bytes; the broker
    // refuses it at once, without waiting for (or buffering) the body.
    one_bad_packet(
        BrokerConfig::default().max_packet_size(4096),
        |_| vec![0x30, 0xC0, 0x84, 0x3D],
        ReasonCode::PacketTooLarge,
        "disconnected due to oversize packet.",
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_utf8_in_a_topic_is_a_malformed_packet() {
    one_bad_packet(
        BrokerConfig::default(),
        |v| raw_publish(v, &[b'a', 0xFF, 0xFE]),
        ReasonCode::MalformedPacket,
        "disconnected due to malformed packet.",
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_wildcard_in_a_publish_topic_is_topic_name_invalid() {
    one_bad_packet(
        BrokerConfig::default(),
        |v| raw_publish(v, b"calm/+"),
        ReasonCode::TopicNameInvalid,
        "disconnected due to protocol error.",
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_second_connect_is_a_protocol_error() {
    one_bad_packet(
        BrokerConfig::default(),
        |v| {
            let mut out = bytes::BytesMut::new();
            Packet::Connect(Box::new(mqtt_broker_core::mqtt_codec::Connect::new(
                v, "again",
            )))
            .encode(v, &mut out)
            .unwrap();
            out.to_vec()
        },
        ReasonCode::ProtocolError,
        "disconnected due to protocol error.",
    )
    .await;
}

/// Sends `head`, then one byte every 200 ms, until the broker answers or
/// closes; returns what it sent.
async fn trickle(c: &mut Client, head: &[u8]) -> Option<Packet> {
    c.send_raw(head).await;
    for _ in 0..50 {
        match c.recv_within(Duration::from_millis(200)).await {
            Ok(p) => return p,
            Err(()) => {
                let _ = c.try_send_raw(&[0]).await;
            }
        }
    }
    panic!("the broker let a trickled packet run for 10 s");
}

#[tokio::test(flavor = "current_thread")]
async fn a_trickled_packet_ends_at_one_and_a_half_keep_alives() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let server = server(BrokerConfig::default().connect_timeout(Duration::from_millis(500))).await;
    let addr = server.local_addrs()[0];
    let mut calm = Calm::join(addr).await;
    // Before CONNECT: a CONNECT announcing 32 bytes that never completes is
    // ended by the CONNECT time-out.
    let mut early = RawClient::unconnected(tcp(addr).await, V5);
    assert_eq!(trickle(&mut early, &[0x10, 0x20]).await, None);
    logged(
        &logs,
        "Client <unknown> has exceeded timeout, disconnecting.",
    )
    .await;
    for version in [V5, V3] {
        let id = format!("trickler-{}", u8::from(version.is_v5()) + 4);
        // Keep Alive 1 s; a PUBLISH announcing 16,000 bytes, one byte
        // every 200 ms: bytes keep arriving, but no packet completes.
        let (mut h, _) = RawClient::connect(tcp(addr).await, version, &id, |c| {
            c.keep_alive = 1;
            c.will = Some(LastWill {
                topic: TopicName::try_from(format!("will/{id}")).unwrap(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::default(),
            });
        })
        .await;
        let answer = trickle(&mut h, &[0x30, 0x80, 0x7D]).await;
        if version.is_v5() {
            match answer {
                Some(Packet::Disconnect(d)) => {
                    assert_eq!(d.reason_code, ReasonCode::KeepAliveTimeout)
                }
                other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
            }
            assert_eq!(h.recv().await, None);
        } else {
            assert_eq!(answer, None, "3.1.1: closed");
        }
        logged(
            &logs,
            &format!("Client {id} has exceeded timeout, disconnecting."),
        )
        .await;
        calm.will_of(&id).await;
        calm.exchange(3).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_pingreq_flood_that_never_reads_is_ended_by_write_timeout() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let server = server(BrokerConfig::default().write_timeout(Some(Duration::from_secs(1)))).await;
    let addr = server.local_addrs()[0];
    let mut calm = Calm::join(addr).await;
    let mut h = hostile(addr, V5, "pinger").await;
    // PINGREQ as fast as the socket takes them, never reading a PINGRESP.
    let flood = tokio::spawn(async move {
        let burst = [0xC0u8, 0x00].repeat(32 * 1024);
        while h.try_send_raw(&burst).await.is_ok() {}
    });
    // Meanwhile the others keep exchanging messages.
    calm.exchange(20).await;
    logged(
        &logs,
        "Client pinger has not read what was sent to it for 1 s (write_timeout), disconnecting.",
    )
    .await;
    tokio::time::timeout(WAIT, flood)
        .await
        .expect("the flood's writes fail once the broker closed it")
        .unwrap();
    let received = server.stats().messages_received;
    assert!(received > 1000, "the flood got going ({received} packets)");
    // A connection lost: the will is published, the session kept.
    calm.will_of("pinger").await;
    calm.exchange(3).await;
    calm.mail("pinger").await;
    session_kept(addr, V5, "pinger").await;
    assert_eq!(server.stats().disconnects.write_timeout, 1);
    server.shutdown().await;
}

fn subscribe_many(id: u16, filters: impl IntoIterator<Item = String>) -> Packet {
    let mut subscriptions = filters.into_iter().map(|f| Subscription {
        filter: TopicFilter::try_from(f.as_str()).unwrap(),
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    });
    let mut s = Subscribe::new(
        PacketId::new(id).unwrap(),
        TopicFilter::try_from("flood/first").unwrap(),
        SubscriptionOptions::qos(QoS::AtLeastOnce),
    );
    s.subscriptions = subscriptions.by_ref().collect();
    Packet::Subscribe(s)
}

async fn suback(c: &mut Client) -> Vec<ReasonCode> {
    match c.recv().await {
        Some(Packet::SubAck(s)) => s.reason_codes,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn subscriptions_past_max_subscriptions_per_client_get_quota_exceeded() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    // The default bound: 10,000 filters per client.
    let server = server(BrokerConfig::default()).await;
    let addr = server.local_addrs()[0];
    let mut calm = Calm::join(addr).await;
    let base = server.stats().subscriptions;
    let (mut h, _) = RawClient::connect(tcp(addr).await, V5, "collector", |_| {}).await;
    let granted = ReasonCode::GrantedQoS1;
    // Three SUBSCRIBE packets of 4,000 filters each.
    for (round, id) in [(0u32, 1u16), (1, 2), (2, 3)] {
        let filters = (round * 4000..(round + 1) * 4000).map(|i| format!("flood/{i}"));
        h.send(subscribe_many(id, filters)).await;
        let codes = suback(&mut h).await;
        assert_eq!(codes.len(), 4000);
        if round < 2 {
            assert!(codes.iter().all(|rc| *rc == granted), "under the bound");
        } else {
            assert!(codes[..2000].iter().all(|rc| *rc == granted));
            assert!(
                codes[2000..]
                    .iter()
                    .all(|rc| *rc == ReasonCode::QuotaExceeded),
                "past 10,000: 0x97"
            );
        }
        calm.exchange(1).await;
    }
    logged(
        &logs,
        "Client collector has reached max_subscriptions_per_client (10000): 2000 subscription(s) refused, the first flood/10000.",
    )
    .await;
    assert_eq!(server.stats().subscriptions, base + 10_000);
    // A filter it has already is replaced (granted), a new one refused.
    h.send(subscribe_many(4, ["flood/7".into(), "flood/99999".into()]))
        .await;
    assert_eq!(suback(&mut h).await, [granted, ReasonCode::QuotaExceeded]);
    // Unsubscribing frees a place.
    h.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: PacketId::new(5).unwrap(),
        properties: Properties::default(),
        filters: vec![TopicFilter::try_from("flood/7").unwrap()],
    }))
    .await;
    assert!(matches!(h.recv().await, Some(Packet::UnsubAck(_))));
    h.send(subscribe_many(6, ["flood/99999".into()])).await;
    assert_eq!(suback(&mut h).await, [granted]);
    // Still connected, and delivered to on what it was granted only.
    calm.publisher
        .publish("flood/99999", b"granted", QoS::AtLeastOnce, false)
        .await;
    calm.publisher
        .publish("flood/10000", b"refused", QoS::AtLeastOnce, false)
        .await;
    calm.publisher
        .publish("flood/9999", b"granted too", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&h.expect_publish().await.payload[..], b"granted");
    assert_eq!(&h.expect_publish().await.payload[..], b"granted too");
    calm.exchange(3).await;
    assert_eq!(server.stats().subscriptions, base + 10_000);
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn subscriptions_past_the_bound_get_0x80_in_3_1_1_and_0_is_unlimited() {
    let server = server(BrokerConfig::default().max_subscriptions_per_client(3)).await;
    let addr = server.local_addrs()[0];
    let (mut h, _) = RawClient::connect(tcp(addr).await, V3, "collector", |_| {}).await;
    h.send(subscribe_many(1, (0..5).map(|i| format!("flood/{i}"))))
        .await;
    let codes = suback(&mut h).await;
    // 3.1.1 has one failure code, 0x80 (the codec maps 0x97 to it).
    let failure = |rc: &ReasonCode| rc.is_error();
    assert!(codes[..3].iter().all(|rc| *rc == ReasonCode::GrantedQoS1));
    assert!(codes[3..].iter().all(failure));
    // 0: no bound.
    server.with_broker(|b| {
        let config = b.config().clone().max_subscriptions_per_client(0);
        b.set_config(std::time::Instant::now(), config)
    });
    h.send(subscribe_many(2, (0..5).map(|i| format!("more/{i}"))))
        .await;
    assert!(suback(&mut h)
        .await
        .iter()
        .all(|rc| *rc == ReasonCode::GrantedQoS1));
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_id_takeover_loop_costs_nothing_that_grows() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let server = server(BrokerConfig::default()).await;
    let addr = server.local_addrs()[0];
    let mut events = server.events();
    let mut calm = Calm::join(addr).await;
    let sessions_before = server.stats().clients_total;
    // 5.0, a will with a Will Delay of 60 s and a session that outlives
    // the connection: each connection takes the session over from the
    // previous one, which gets DISCONNECT 0x8E. The will is not sent: the
    // session is resumed before its delay [MQTT-3.1.3-9].
    let twin = |c: &mut mqtt_broker_core::mqtt_codec::Connect| {
        c.clean_start = false;
        c.keep_alive = 65_535;
        c.properties.session_expiry_interval = Some(86_400);
        let mut properties = Properties::default();
        properties.will_delay_interval = Some(60);
        c.will = Some(LastWill {
            topic: TopicName::try_from("will/twin").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties,
        });
    };
    let (mut old, _) = RawClient::connect(tcp(addr).await, V5, "twin", twin).await;
    const ROUNDS: usize = 700;
    for round in 0..ROUNDS {
        let (new, ack) = RawClient::connect(tcp(addr).await, V5, "twin", twin).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(ack.session_present);
        closed_with(&mut old, V5, ReasonCode::SessionTakenOver).await;
        old = new;
        if round % 100 == 0 {
            calm.exchange(1).await;
        }
    }
    logged(
        &logs,
        "Client twin already connected, closing old connection.",
    )
    .await;
    calm.exchange(3).await;
    calm.no_will().await;
    // One session for the twins, whatever the number of rounds; the
    // broker's timers (keep alive, expiry, CONNECT time-out per
    // connection) do not pile up with the connections that are gone.
    assert_eq!(server.stats().clients_total, sessions_before + 1);
    assert_eq!(server.stats().disconnects.session_taken_over, ROUNDS as u64);
    let timers = server.with_broker(|b| b.timer_count());
    assert!(
        timers < 1100,
        "{timers} timers after {ROUNDS} takeovers: they grow with the connections"
    );
    let mut taken_over = 0;
    while let Some(e) = events.try_recv() {
        if let Event::ClientDisconnected { reason, .. } = e {
            assert_eq!(reason, DisconnectReason::SessionTakenOver);
            taken_over += 1;
        }
    }
    assert!(taken_over > 0);
    // 3.1.1: the old connection is closed, and its will published (3.1.1
    // has no Will Delay).
    drop(old);
    let (mut old, _) = RawClient::connect(tcp(addr).await, V3, "twin3", |c| {
        c.will = Some(LastWill {
            topic: TopicName::try_from("will/twin3").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
    })
    .await;
    for _ in 0..20 {
        let (new, _) = RawClient::connect(tcp(addr).await, V3, "twin3", |c| {
            c.will = Some(LastWill {
                topic: TopicName::try_from("will/twin3").unwrap(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::default(),
            });
        })
        .await;
        closed_with(&mut old, V3, ReasonCode::SessionTakenOver).await;
        calm.will_of("twin3").await;
        old = new;
    }
    calm.exchange(3).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_tls_client_hello_that_never_finishes_is_closed_after_the_handshake_time_out() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let certs = Certs::generate();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback()))
        .listener(Listener::tls(loopback(), certs.server_options(false)).expect("tls listener"))
        .handshake_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("server starts");
    let (plain, secure) = (server.local_addrs()[0], server.local_addrs()[1]);
    let mut calm = Calm::join(plain).await;
    // A TLS record header announcing a 512-byte ClientHello, and its first
    // bytes; the rest never comes.
    let mut stalled = tcp(secure).await;
    use tokio::io::AsyncWriteExt;
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03])
        .await
        .unwrap();
    // Meanwhile a TLS client connects and the others exchange messages.
    let stream = tls(secure, "127.0.0.1", &certs.client_options(false))
        .await
        .expect("handshake");
    let (mut good, ack) = RawClient::connect(stream, V5, "tls-good", |_| {}).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    calm.exchange(3).await;
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(WAIT, stalled.read(&mut byte))
        .await
        .expect("the broker closes it");
    assert!(matches!(n, Ok(0) | Err(_)), "closed without an answer");
    logged(&logs, "failed: no TLS handshake within 0.3 s; closing it.").await;
    // It never was an MQTT client: no session, nothing counted as connected.
    assert_eq!(server.stats().clients_connected, 4);
    good.send(Packet::PingReq).await;
    assert_eq!(good.recv().await, Some(Packet::PingResp));
    calm.no_will().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_websocket_text_frame_closes_the_connection_and_the_log_says_why() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let logs = LogCapture::default();
    let _guard = logs.install();
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback()))
        .listener(Listener::tcp(loopback()).websockets())
        .start()
        .await
        .expect("server starts");
    let (plain, ws_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    let mut calm = Calm::join(plain).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{ws_addr}/"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(request, tcp(ws_addr).await),
    )
    .await
    .unwrap()
    .expect("upgrade");
    // MQTT over the WebSocket through a byte-stream adapter, so the raw
    // client can speak it; the text frame is sent on the WebSocket itself.
    let (mut ws_tx, ws_rx) = futures_util::StreamExt::split(ws);
    let mut connect = bytes::BytesMut::new();
    let mut c = mqtt_broker_core::mqtt_codec::Connect::new(V5, "ws-texter");
    c.will = Some(LastWill {
        topic: TopicName::try_from("will/ws-texter").unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    Packet::Connect(Box::new(c))
        .encode(V5, &mut connect)
        .unwrap();
    ws_tx.send(Message::Binary(connect.freeze())).await.unwrap();
    let mut rx = ws_rx;
    let first = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut rx))
        .await
        .unwrap();
    assert!(
        matches!(first, Some(Ok(Message::Binary(ref b))) if b.first() == Some(&0x20)),
        "CONNACK, got {first:?}"
    );
    // [MQTT-6.0.0-1] MQTT travels in binary frames.
    ws_tx.send(Message::text("hello")).await.unwrap();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match futures_util::StreamExt::next(&mut rx).await {
                Some(Ok(Message::Binary(b))) => panic!("unexpected MQTT bytes {b:?}"),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the broker closes the connection");
    logged(
        &logs,
        "Client ws-texter disconnected: a WebSocket text frame (MQTT is carried in binary frames) [MQTT-6.0.0-1].",
    )
    .await;
    calm.will_of("ws-texter").await;
    calm.exchange(3).await;
    server.shutdown().await;
}
