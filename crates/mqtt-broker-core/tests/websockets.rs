//! MQTT over WebSockets (`protocol websockets`, section 6 of the
//! specifications) on loopback: `ws://` and `wss://` with a client
//! certificate, the `mqtt` subprotocol, packets split across frames and
//! frames holding several packets, text frames refused, and a listener
//! from a Mosquitto config.
#![cfg(feature = "tokio")]

mod driver_support;

use bytes::{Bytes, BytesMut};
use driver_support::*;
use futures_util::{SinkExt, StreamExt};
use mqtt_broker_core::config::Config;
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{
    Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_broker_core::BrokerConfig;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An MQTT client that speaks WebSocket frames itself.
struct WsClient<S> {
    ws: WebSocketStream<S>,
    version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
}

/// Opens `ws://` (or `wss://` over `stream`), offering `subprotocols`;
/// returns the client and the subprotocol the broker chose.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    subprotocols: Option<&str>,
    version: ProtocolVersion,
) -> (WsClient<S>, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    if let Some(p) = subprotocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, response) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("upgrade timed out")
            .expect("upgrade accepted");
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    let client = WsClient {
        ws,
        version,
        decoder: Decoder::with_version(version),
        buf: BytesMut::new(),
    };
    (client, chosen)
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    fn bytes(&self, p: Packet) -> Bytes {
        let mut out = BytesMut::new();
        p.encode(self.version, &mut out).unwrap();
        out.freeze()
    }

    async fn send_frame(&mut self, bytes: Bytes) {
        tokio::time::timeout(WAIT, self.ws.send(Message::Binary(bytes)))
            .await
            .expect("send timed out")
            .expect("frame sent");
    }

    async fn send(&mut self, p: Packet) {
        let bytes = self.bytes(p);
        self.send_frame(bytes).await;
    }

    /// The next packet; `None` when the broker closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(p);
            }
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame in time")
            {
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(other)) => panic!("the broker sent {other:?}"),
            }
        }
    }

    async fn connect(&mut self, client_id: &str) -> ReasonCode {
        self.send(Packet::Connect(Box::new(Connect::new(
            self.version,
            client_id,
        ))))
        .await;
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => ack.reason_code,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        let s = Subscribe::new(
            PacketId::new(1).unwrap(),
            TopicFilter::try_from(filter).unwrap(),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
        );
        self.send(Packet::Subscribe(s)).await;
        assert!(matches!(self.recv().await, Some(Packet::SubAck(_))));
    }

    fn publish_packet(topic: &str, payload: &str, id: u16) -> Packet {
        let mut p = Publish::new(
            TopicName::try_from(topic).unwrap(),
            payload.as_bytes().to_vec(),
        );
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(id);
        Packet::Publish(p)
    }

    /// The next PUBLISH's payload (acknowledged).
    async fn expect_payload(&mut self) -> String {
        match self.recv().await {
            Some(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    self.send(Packet::PubAck(PubAck::new(id))).await;
                }
                String::from_utf8_lossy(&p.payload).into_owned()
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

async fn ws_and_tcp_server() -> Server {
    ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp(loopback()).websockets())
        .listener(Listener::tcp(loopback()))
        .start()
        .await
        .expect("server starts")
}

#[tokio::test]
async fn websocket_and_tcp_clients_exchange_messages_in_both_versions() {
    let server = ws_and_tcp_server().await;
    let (ws_addr, tcp_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let url = format!("ws://{ws_addr}/mqtt");
        let (mut ws, chosen) = upgrade(tcp(ws_addr).await, &url, Some("mqtt"), version).await;
        // [MQTT-6.0.0-4]
        assert_eq!(chosen.as_deref(), Some("mqtt"));
        assert_eq!(ws.connect("browser").await, ReasonCode::Success);
        ws.subscribe("sensors/#").await;

        let (mut laptop, _) =
            RawClient::connect(tcp(tcp_addr).await, version, "laptop", |_| {}).await;
        laptop.subscribe("commands/#", QoS::AtLeastOnce).await;
        laptop
            .publish("sensors/kitchen", b"21.5", QoS::AtLeastOnce, false)
            .await;
        assert_eq!(ws.expect_payload().await, "21.5");

        ws.send(WsClient::<tokio::net::TcpStream>::publish_packet(
            "commands/fan",
            "on",
            7,
        ))
        .await;
        assert!(matches!(ws.recv().await, Some(Packet::PubAck(_))));
        assert_eq!(&laptop.expect_publish().await.payload[..], b"on");
        laptop.disconnect().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn packets_may_span_frames_and_frames_may_hold_several_packets() {
    let server = ws_and_tcp_server().await;
    let addr = server.local_addrs()[0];
    let v = ProtocolVersion::V3_1_1;
    let (mut ws, _) = upgrade(tcp(addr).await, &format!("ws://{addr}/"), Some("mqtt"), v).await;
    // CONNECT in three frames [MQTT-6.0.0-2].
    let connect = ws.bytes(Packet::Connect(Box::new(Connect::new(v, "split"))));
    for piece in [&connect[..1], &connect[1..5], &connect[5..]] {
        ws.send_frame(Bytes::copy_from_slice(piece)).await;
    }
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    ws.subscribe("t").await;
    // Two PUBLISHes in one frame: both are delivered, in order.
    let mut two = BytesMut::new();
    two.extend_from_slice(&ws.bytes(WsClient::<tokio::net::TcpStream>::publish_packet(
        "t", "one", 1,
    )));
    two.extend_from_slice(&ws.bytes(WsClient::<tokio::net::TcpStream>::publish_packet(
        "t", "two", 2,
    )));
    ws.send_frame(two.freeze()).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        match ws.recv().await {
            Some(Packet::Publish(p)) => {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
                ws.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
                    .await;
            }
            Some(Packet::PubAck(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, ["one", "two"]);
    server.shutdown().await;
}

#[tokio::test]
async fn the_subprotocol_is_chosen_from_what_the_client_offers() {
    let server = ws_and_tcp_server().await;
    let addr = server.local_addrs()[0];
    let url = format!("ws://{addr}/");
    let v = ProtocolVersion::V3_1_1;
    let (mut ws, chosen) = upgrade(tcp(addr).await, &url, Some("chat, mqtt"), v).await;
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    assert_eq!(ws.connect("a").await, ReasonCode::Success);
    let (mut ws, chosen) = upgrade(tcp(addr).await, &url, Some("mqttv3.1"), v).await;
    assert_eq!(chosen.as_deref(), Some("mqttv3.1"));
    assert_eq!(ws.connect("b").await, ReasonCode::Success);
    // No subprotocol offered: served anyway, none named back.
    let (mut ws, chosen) = upgrade(tcp(addr).await, &url, None, v).await;
    assert_eq!(chosen, None);
    assert_eq!(ws.connect("c").await, ReasonCode::Success);
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_text_frame_closes_the_connection_and_others_are_unaffected() {
    let log = LogCapture::default();
    let _guard = log.install();
    let server = ws_and_tcp_server().await;
    let addr = server.local_addrs()[0];
    let url = format!("ws://{addr}/");
    let v = ProtocolVersion::V3_1_1;
    let (mut bad, _) = upgrade(tcp(addr).await, &url, Some("mqtt"), v).await;
    assert_eq!(bad.connect("bad").await, ReasonCode::Success);
    let (mut good, _) = upgrade(tcp(addr).await, &url, Some("mqtt"), v).await;
    assert_eq!(good.connect("good").await, ReasonCode::Success);
    good.subscribe("t").await;
    // [MQTT-6.0.0-1]
    tokio::time::timeout(WAIT, bad.ws.send(Message::text("hello")))
        .await
        .unwrap()
        .unwrap();
    assert!(bad.recv().await.is_none(), "closed");
    // Plain HTTP that is not an upgrade is refused, and logged.
    let mut http = tcp(addr).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, http.read_to_end(&mut answer)).await;
    assert!(log.wait_for("WebSocket upgrade").await, "{}", log.text());
    let (mut publisher, _) = upgrade(tcp(addr).await, &url, Some("mqtt"), v).await;
    assert_eq!(publisher.connect("p").await, ReasonCode::Success);
    publisher
        .send(WsClient::<tokio::net::TcpStream>::publish_packet(
            "t",
            "still here",
            1,
        ))
        .await;
    assert_eq!(good.expect_payload().await, "still here");
    server.shutdown().await;
}

#[tokio::test]
async fn wss_with_a_client_certificate_from_a_mosquitto_config() {
    let certs = Certs::generate();
    let port = free_port();
    let text = format!(
        "listener {port} 127.0.0.1\nprotocol websockets\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
        certs.path("ca.crt").display(),
        certs.path("server.crt").display(),
        certs.path("server.key").display()
    );
    let (config, warnings) = Config::parse_str(&text, "ws.conf").unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let log = LogCapture::default();
    let _guard = log.install();
    let server = ServerBuilder::from_config(&config)
        .unwrap()
        .start()
        .await
        .expect("server starts");
    assert!(
        log.text()
            .contains(&format!("Opening websockets listen socket on port {port}.")),
        "{}",
        log.text()
    );
    let addr = server.local_addrs()[0];
    let stream = tls(addr, "127.0.0.1", &certs.client_options(true))
        .await
        .expect("TLS handshake");
    let (mut ws, chosen) = upgrade(
        stream,
        &format!("wss://127.0.0.1:{port}/mqtt"),
        Some("mqtt"),
        ProtocolVersion::V5,
    )
    .await;
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    assert_eq!(ws.connect("pi").await, ReasonCode::Success);
    ws.subscribe("ssltopic").await;
    ws.send(WsClient::<driver_support::ClientStream>::publish_packet(
        "ssltopic", "testing", 1,
    ))
    .await;
    let mut payload = None;
    for _ in 0..2 {
        match ws.recv().await {
            Some(Packet::Publish(p)) => payload = Some(p.payload),
            Some(Packet::PubAck(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(payload.as_deref(), Some(&b"testing"[..]));
    // Without a certificate the broker refuses the TLS handshake (TLS 1.3:
    // the client sees it at its first read), so no upgrade.
    if let Ok(stream) = tls(addr, "127.0.0.1", &certs.client_options(false)).await {
        let request = format!("wss://127.0.0.1:{port}/")
            .into_client_request()
            .unwrap();
        let upgrade = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream));
        assert!(upgrade.await.expect("refused in time").is_err());
    }
    server.shutdown().await;
}

/// A Python that can import Eclipse Paho (Debian's `python3-paho-mqtt`):
/// `None` (with the reason printed) when there is none, a panic when
/// `MQTT_INTEROP=1` demands it.
fn python_with_paho() -> Option<&'static str> {
    let found = ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import paho.mqtt.client"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        let why = "Eclipse Paho for Python is not installed (apt-get install python3-paho-mqtt)";
        if std::env::var("MQTT_INTEROP").as_deref() == Ok("1") {
            panic!("{why}, and MQTT_INTEROP=1 requires it");
        }
        eprintln!("skipped: {why}");
    }
    found
}

#[tokio::test]
async fn eclipse_paho_over_websockets_in_both_versions() {
    let Some(python) = python_with_paho() else {
        return;
    };
    let server = ws_and_tcp_server().await;
    let (ws_addr, tcp_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    // A TCP subscriber sees what Paho publishes over WebSockets.
    let (mut tcp_sub, _) =
        RawClient::connect(tcp(tcp_addr).await, ProtocolVersion::V5, "tcp-sub", |_| {}).await;
    tcp_sub.subscribe("paho/ws", QoS::AtLeastOnce).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/paho_websockets.py"
    );
    for version in ["311", "5"] {
        let run = tokio::process::Command::new(python)
            .args([script, &ws_addr.port().to_string(), version])
            .output();
        let out = tokio::time::timeout(WAIT * 2, run)
            .await
            .expect("paho finishes")
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "MQTT {version}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("over websockets"), "{stdout}");
        assert_eq!(
            &tcp_sub.expect_publish().await.payload[..],
            b"over websockets"
        );
    }
    server.shutdown().await;
}
