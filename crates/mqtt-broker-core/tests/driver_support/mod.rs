//! Helpers for the tokio driver's tests: a raw MQTT client over any stream,
//! certificates, free ports, log capture and third-party binaries.
#![allow(dead_code)]

use bytes::BytesMut;
use mqtt_broker_core::mqtt_codec::{
    ConnAck, Connect, Decoder, Packet, ProtocolVersion, PubAck, PubComp, PubRel, Publish, QoS,
    SubAck, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every await in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A minimal MQTT client built on the codec, for driving the broker.
pub struct RawClient<S> {
    stream: S,
    version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
    next_id: u16,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    /// Sends CONNECT (adjusted by `f`) and waits for CONNACK.
    pub async fn connect(
        stream: S,
        version: ProtocolVersion,
        client_id: &str,
        f: impl FnOnce(&mut Connect),
    ) -> (Self, ConnAck) {
        let mut c = Self {
            stream,
            version,
            decoder: Decoder::with_version(version),
            buf: BytesMut::new(),
            next_id: 1,
        };
        let mut connect = Connect::new(version, client_id);
        f(&mut connect);
        c.send(Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Some(Packet::ConnAck(ack)) => (c, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// A client over `stream` that has sent nothing yet (for input that
    /// is not a CONNECT).
    pub fn unconnected(stream: S, version: ProtocolVersion) -> Self {
        Self {
            stream,
            version,
            decoder: Decoder::with_version(version),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.encode(self.version, &mut out).expect("encodable packet");
        tokio::time::timeout(WAIT, self.stream.write_all(&out))
            .await
            .expect("write timed out")
            .expect("write failed");
    }

    /// Writes raw bytes (for malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write failed");
    }

    /// Writes raw bytes and reports whether the write succeeded.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("write timed out")
    }

    /// The next packet, or `None` when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, self.recv_unbounded())
            .await
            .expect("no packet from the broker in time")
    }

    /// Like `recv`, but `Err(())` when nothing arrives within `d`.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<Packet>, ()> {
        tokio::time::timeout(d, self.recv_unbounded())
            .await
            .map_err(|_| ())
    }

    async fn recv_unbounded(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.buf)
                .expect("broker sent a valid packet")
            {
                return Some(p);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub fn packet_id(&mut self) -> NonZeroU16 {
        let id = NonZeroU16::new(self.next_id).expect("non-zero");
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Subscribes to one filter and returns the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        let id = self.packet_id();
        let filter = TopicFilter::new(filter).expect("valid filter");
        self.send(Packet::Subscribe(Subscribe::new(
            id,
            filter,
            SubscriptionOptions::qos(qos),
        )))
        .await;
        match self.recv().await {
            Some(Packet::SubAck(s)) => s,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS 1/2 handshake with the broker.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let mut p = Publish::new(
            TopicName::try_from(topic).expect("valid topic"),
            bytes::Bytes::copy_from_slice(payload),
        );
        p.qos = qos;
        p.retain = retain;
        if qos != QoS::AtMostOnce {
            p.packet_id = Some(self.packet_id());
        }
        let id = p.packet_id;
        self.send(Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv().await {
                Some(Packet::PubAck(a)) if Some(a.packet_id) == id => {}
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.recv().await {
                    Some(Packet::PubRec(r)) if Some(r.packet_id) == id => {}
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                let id = id.expect("qos 2 id");
                self.send(Packet::PubRel(PubRel::new(id))).await;
                match self.recv().await {
                    Some(Packet::PubComp(c)) if c.packet_id == id => {}
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// Publishes at QoS 0 or 1 and waits for the PUBACK; messages that
    /// arrive in the meantime (QoS 0 or 1) are acknowledged and pushed on
    /// `seen`.
    pub async fn publish_noting(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        seen: &mut Vec<Publish>,
    ) {
        assert!(qos != QoS::ExactlyOnce, "QoS 0 or 1");
        let mut p = Publish::new(
            TopicName::try_from(topic).expect("valid topic"),
            bytes::Bytes::copy_from_slice(payload),
        );
        p.qos = qos;
        let id = (qos == QoS::AtLeastOnce).then(|| self.packet_id());
        p.packet_id = id;
        self.send(Packet::Publish(p)).await;
        let Some(id) = id else { return };
        loop {
            match self.recv().await {
                Some(Packet::PubAck(a)) if a.packet_id == id => return,
                Some(Packet::Publish(m)) => {
                    if let Some(mid) = m.packet_id {
                        self.send(Packet::PubAck(PubAck::new(mid))).await;
                    }
                    seen.push(m);
                }
                Some(_) => {}
                None => panic!("connection closed while publishing"),
            }
        }
    }

    /// Waits for a PUBLISH, acknowledging QoS 1/2 as a subscriber must.
    pub async fn expect_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Some(Packet::Publish(p)) => {
                    match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => {
                            self.send(Packet::PubAck(PubAck::new(id))).await
                        }
                        (QoS::ExactlyOnce, Some(id)) => {
                            self.send(Packet::PubRec(mqtt_broker_core::mqtt_codec::PubRec::new(
                                id,
                            )))
                            .await;
                            match self.recv().await {
                                Some(Packet::PubRel(r)) => {
                                    self.send(Packet::PubComp(PubComp::new(r.packet_id))).await
                                }
                                other => panic!("expected PUBREL, got {other:?}"),
                            }
                        }
                        _ => {}
                    }
                    return p;
                }
                Some(Packet::PingResp) => continue,
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    /// Sends DISCONNECT.
    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Default::default())).await;
    }
}

/// Plain TCP to `addr`.
/// A server with `config` and one plain listener on a free loopback port,
/// and that listener's address.
pub async fn tcp_server(
    config: mqtt_broker_core::BrokerConfig,
) -> (mqtt_broker_core::driver::Server, SocketAddr) {
    let server = mqtt_broker_core::driver::ServerBuilder::new(config)
        .listener(mqtt_broker_core::driver::Listener::tcp(
            "127.0.0.1:0".parse().expect("an address"),
        ))
        .start()
        .await
        .expect("server starts");
    let addr = server.local_addrs()[0];
    (server, addr)
}

pub async fn tcp(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// A CA, a server certificate for 127.0.0.1 (and localhost) and a client
/// certificate named `pi`, written to a temporary directory.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn generate() -> Self {
        Self::for_names(&["127.0.0.1", "localhost"])
    }

    pub fn for_names(names: &[&str]) -> Self {
        use mqtt_tls::gen::{write_set, CertificateAuthority};
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = CertificateAuthority::generate().expect("CA");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let server = ca.issue_server(&names).expect("server cert");
        let client = ca.issue_client("pi").expect("client cert");
        write_set(dir.path(), &ca, &server, &[("pi".to_string(), client)]).expect("write certs");
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn server_options(&self, require_certificate: bool) -> mqtt_tls::ServerTlsOptions {
        mqtt_tls::ServerTlsOptions::new(self.path("server.crt"), self.path("server.key"))
            .cafile(self.path("ca.crt"))
            .require_certificate(require_certificate)
    }

    pub fn client_options(&self, with_cert: bool) -> mqtt_tls::ClientTlsOptions {
        let tls = mqtt_tls::ClientTlsOptions::new().cafile(self.path("ca.crt"));
        if with_cert {
            tls.certfile(self.path("client.crt"))
                .keyfile(self.path("client.key"))
        } else {
            tls
        }
    }
}

/// The client side of a TLS connection.
pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// TLS to `addr`, verifying the server as `host`.
pub async fn tls(
    addr: SocketAddr,
    host: &str,
    options: &mqtt_tls::ClientTlsOptions,
) -> Result<ClientStream, mqtt_tls::TlsError> {
    let config = options.build()?;
    let tcp = tcp(addr).await;
    tokio::time::timeout(WAIT, mqtt_tls::connect(config, host, tcp))
        .await
        .expect("handshake timed out")
}

// The workspace's one `free_port` for tests (the crates are not published,
// so their tests may share a file).
#[path = "../../../../tests/support/ports.rs"]
mod ports;
#[allow(unused_imports)] // not every test binary needs them
pub use ports::free_port;

/// Captures the `mqtt_broker` log lines of the current thread.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capture for the current thread; keep the guard alive.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("mqtt_broker=debug")
            .with_ansi(false)
            .with_target(false)
            .with_level(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Polls the log until `needle` appears (bounded).
    pub async fn wait_for(&self, needle: &str) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Finds a third-party binary: `None` (with the reason printed) when it is
/// missing, a panic when `MQTT_INTEROP=1` demands it.
pub fn tool(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&dirs)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d: PathBuf| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("MQTT_INTEROP").as_deref() == Ok("1") {
            panic!("{name} is required (MQTT_INTEROP=1) but not installed: apt-get install mosquitto mosquitto-clients");
        }
        eprintln!("skipped: {name} is not installed (apt-get install mosquitto mosquitto-clients)");
    }
    found
}

/// Whether `path` exists (for readable assertions).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
