//! Connections cut in the middle of a QoS 2 exchange, through a proxy in
//! front of a real Mosquitto: the client reconnects, resumes the session,
//! re-sends with DUP, and the message arrives exactly once.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::{within, Mosquitto};
use mqtt_client::{Client, ClientOptions, ConnectionState, ProtocolVersion, QoS, ReconnectOptions};
use mqtt_codec::{FixedHeader, PacketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: u8 = 0;
/// Cut after forwarding the next QoS 2 PUBLISH from the client to the broker.
const CUT_UPSTREAM: u8 = 1;
/// Cut after forwarding the next QoS 2 PUBLISH from the broker to the client.
const CUT_DOWNSTREAM: u8 = 2;

/// A TCP proxy that forwards whole MQTT packets and, once armed, closes both
/// sides right after a QoS 2 PUBLISH, before its PUBREC can come back.
struct CutProxy {
    port: u16,
    mode: Arc<AtomicU8>,
    cuts: Arc<AtomicU8>,
}

impl CutProxy {
    async fn start(broker_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let cuts = Arc::new(AtomicU8::new(0));
        let (m, c) = (mode.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                    continue;
                };
                tokio::spawn(relay(client, broker, m.clone(), c.clone()));
            }
        });
        Self { port, mode, cuts }
    }

    fn arm(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn cuts(&self) -> u8 {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Takes whole packets off `buf`; returns them and whether one was a QoS 2 PUBLISH.
fn whole_packets(buf: &mut BytesMut) -> (BytesMut, bool) {
    let mut out = BytesMut::new();
    let mut qos2 = false;
    while let Ok(Some(h)) = FixedHeader::parse(buf) {
        if buf.len() < h.packet_len() {
            break;
        }
        if h.packet_type == PacketType::Publish && (h.flags >> 1) & 0b11 == 2 {
            qos2 = true;
        }
        out.extend_from_slice(&buf.split_to(h.packet_len()));
        if qos2 {
            break;
        }
    }
    (out, qos2)
}

async fn relay(client: TcpStream, broker: TcpStream, mode: Arc<AtomicU8>, cuts: Arc<AtomicU8>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut br, mut bw) = broker.into_split();
    let (mut up, mut down) = (BytesMut::new(), BytesMut::new());
    let (mut ubuf, mut dbuf) = ([0u8; 4096], [0u8; 4096]);
    loop {
        tokio::select! {
            r = cr.read(&mut ubuf) => {
                let Ok(n @ 1..) = r else { return };
                up.extend_from_slice(&ubuf[..n]);
                loop {
                    let (bytes, qos2) = whole_packets(&mut up);
                    if bytes.is_empty() { break; }
                    if bw.write_all(&bytes).await.is_err() { return; }
                    if qos2 && mode.compare_exchange(CUT_UPSTREAM, PASS, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                        cuts.fetch_add(1, Ordering::SeqCst);
                        return; // both sides dropped
                    }
                }
            }
            r = br.read(&mut dbuf) => {
                let Ok(n @ 1..) = r else { return };
                down.extend_from_slice(&dbuf[..n]);
                loop {
                    let (bytes, qos2) = whole_packets(&mut down);
                    if bytes.is_empty() { break; }
                    if cw.write_all(&bytes).await.is_err() { return; }
                    if qos2 && mode.compare_exchange(CUT_DOWNSTREAM, PASS, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                        cuts.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    }
}

fn persistent(port: u16, version: ProtocolVersion, id: &str) -> ClientOptions {
    ClientOptions::new("127.0.0.1", port)
        .protocol(version)
        .client_id(id)
        .clean_start(version.is_v5())
        .session_expiry_interval(3600)
        .reconnect(ReconnectOptions {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            ..ReconnectOptions::default()
        })
}

async fn exactly_once_after_cut(version: ProtocolVersion, mode: u8) {
    let Some(m) = Mosquitto::start("") else {
        return;
    };
    let proxy = CutProxy::start(m.port).await;
    // The side whose connection is cut goes through the proxy.
    let (sub_port, pub_port) = if mode == CUT_DOWNSTREAM {
        (proxy.port, m.port)
    } else {
        (m.port, proxy.port)
    };
    let (s, mut msgs) = within(
        5,
        "connect",
        Client::connect(persistent(sub_port, version, "q2sub")),
    )
    .await
    .unwrap();
    within(5, "subscribe", s.subscribe("q2/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    let (p, _) = within(
        5,
        "connect",
        Client::connect(persistent(pub_port, version, "q2pub")),
    )
    .await
    .unwrap();
    proxy.arm(mode);
    let rc = within(
        20,
        "QoS 2 publish completes across the cut",
        p.publish("q2/x", QoS::ExactlyOnce, false, "once"),
    )
    .await
    .unwrap();
    assert!(!rc.is_error());
    let first = within(10, "message", msgs.recv()).await.unwrap();
    assert_eq!(&first.payload[..], b"once");
    assert_eq!(proxy.cuts(), 1, "the connection was not cut");
    // Exactly once: the next message is a marker, not a duplicate.
    within(
        10,
        "marker",
        p.publish("q2/end", QoS::ExactlyOnce, false, "end"),
    )
    .await
    .unwrap();
    let next = within(10, "marker", msgs.recv()).await.unwrap();
    assert_eq!(
        next.topic.as_str(),
        "q2/end",
        "QoS 2 message delivered twice"
    );
    let cut_client = if mode == CUT_DOWNSTREAM { &s } else { &p };
    assert!(
        matches!(
            *cut_client.state().borrow(),
            ConnectionState::Connected {
                session_present: true
            }
        ),
        "the cut client should have resumed its session"
    );
    p.disconnect().await.unwrap();
    s.disconnect().await.unwrap();
}

#[tokio::test]
async fn qos2_publish_cut_before_pubrec_is_resent_and_delivered_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_UPSTREAM).await;
}

#[tokio::test]
async fn qos2_publish_cut_before_pubrec_is_resent_and_delivered_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_UPSTREAM).await;
}

#[tokio::test]
async fn qos2_message_redelivered_after_a_cut_reaches_the_application_once_in_5() {
    exactly_once_after_cut(ProtocolVersion::V5, CUT_DOWNSTREAM).await;
}

#[tokio::test]
async fn qos2_message_redelivered_after_a_cut_reaches_the_application_once_in_3_1_1() {
    exactly_once_after_cut(ProtocolVersion::V3_1_1, CUT_DOWNSTREAM).await;
}
