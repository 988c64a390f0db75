//! `mqtt-swarm`: many concurrent MQTT connections to one broker, for the
//! broker's memory per connection, its connection rate, and a fan-out of one
//! message to every connection.
//!
//! ```text
//! mqtt-swarm -c 5000 -p 1883 --broker-pid 1234                 # idle connections: RSS per connection
//! mqtt-swarm -c 19000 -p 1883 --broker-pid 1234 --subscribe swarm/all --fan-out
//! mqtt-swarm -c 5000 -p 8883 --cafile ca.crt --cert client.crt --key client.key --broker-pid 1234 --json
//! ```
//!
//! Phases, each timed: **connect** every connection (TCP, TLS when
//! `--cafile` is given, CONNECT and CONNACK; at most `--concurrency` at once,
//! `--rate` per second if given), then wait `--settle` seconds and sample the
//! broker's `VmRSS`/`VmHWM` from `/proc/PID/status`; **subscribe** every
//! connection to `--subscribe` (time until the last SUBACK), settle and
//! sample again; **fan out**: one more connection publishes one message to
//! the topic, and the tool reports the time until the last subscriber has it.
//! A subscriber that never gets it is a failure (exit status 1), as is a
//! connection or subscription that fails (the reasons are counted and
//! printed). Exit status 2: the run could not start (arguments, the file
//! limit, the broker unreachable).
//!
//! To hold 100,000 connections on loopback without running out of ephemeral
//! ports, each connection binds its own source address first, cycling
//! through `--sources` addresses 127.1.0.1, 127.1.0.2, ... (hosts .1 to .254
//! only) when the broker is on an IPv4 loopback address. Linux routes all of
//! 127.0.0.0/8 to loopback; elsewhere (macOS) pass `--sources 0`.
//!
//! The tool raises its own `RLIMIT_NOFILE` soft limit to the hard limit and
//! refuses to start when the connections would not fit (`--fit-fd-limit`
//! lowers the count instead). It stays lean so that it measures the broker,
//! not itself: a plain connection reads only when its socket is readable and
//! holds no buffer while idle; its state is a task with a socket, a decoder
//! and a few counters.
#![forbid(unsafe_code)]

use bytes::BytesMut;
use clap::Parser;
use mqtt_codec::{
    Connect, Decoder, Disconnect, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// File descriptors kept free beyond one per connection (the runtime, the
/// publisher, stdio, /proc reads).
const FD_MARGIN: u64 = 64;
/// Bytes reserved for one read when the socket is readable.
const READ_CHUNK: usize = 512;

#[path = "common/load_version.rs"]
mod load_version;
use load_version::Version;

/// Opens many MQTT connections to one broker and measures it: connection
/// rate, the broker's memory per connection (with --broker-pid), and the
/// time to fan one message out to every connection.
#[derive(Parser, Debug)]
#[command(name = "mqtt-swarm", about)]
struct Args {
    /// Number of connections to hold open.
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u32).range(1..=2_000_000))]
    connections: u32,
    /// Broker host: an IP address or a name (the name in its certificate for TLS).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// CA certificates to verify the broker with (turns TLS on).
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// Client certificate for mutual TLS (needs --cafile and --key).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client private key (needs --cert).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// The broker's process id: sample its VmRSS and VmHWM from /proc/PID/status.
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
    /// Subscribe every connection to this topic filter.
    #[arg(long, value_name = "TOPIC")]
    subscribe: Option<String>,
    /// QoS of the subscriptions and of the fan-out message.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// After subscribing, publish one message from one more connection and
    /// time its arrival at every subscriber (needs --subscribe).
    #[arg(long, requires = "subscribe")]
    fan_out: bool,
    /// The topic the fan-out message is published to (default: the
    /// --subscribe filter, which must then have no wildcards).
    #[arg(long, value_name = "TOPIC")]
    publish_topic: Option<String>,
    /// Payload size of the fan-out message in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// New connections per second (default: as fast as the broker accepts,
    /// with at most --concurrency being set up at once).
    #[arg(long)]
    rate: Option<f64>,
    /// Connections being set up (TCP, TLS, CONNECT/CONNACK) at once. The
    /// default stays below the listen backlog of 100 that Mosquitto uses:
    /// beyond it the kernel drops connection attempts and each one waits
    /// for a 1 s retransmission, which would measure the backlog.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Source addresses to spread the connections over (127.1.0.1, 127.1.0.2,
    /// ...; each has its own ephemeral ports); 0: let the kernel choose.
    /// Used only when the broker is on an IPv4 loopback address.
    #[arg(long, default_value_t = 200)]
    sources: u32,
    /// Seconds to stay idle after connecting and after subscribing, before
    /// the broker's memory is sampled.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to keep every connection open after the last phase (they
    /// ping as their Keep Alive asks).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Keep Alive sent in CONNECT, in seconds (PINGREQ every half of it).
    #[arg(long, default_value_t = 600)]
    keep_alive: u16,
    /// Seconds one connection may take from TCP connect to CONNACK.
    #[arg(long, default_value_t = 30.0)]
    setup_timeout: f64,
    /// Seconds to wait for the last SUBACK, and for the last fan-out delivery.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// When the connections do not fit the file limit, open as many as fit
    /// instead of stopping.
    #[arg(long)]
    fit_fd_limit: bool,
    /// MQTT version: mqttv311 or mqttv5.
    #[arg(
        short = 'V',
        long = "protocol-version",
        value_enum,
        default_value = "mqttv311"
    )]
    protocol_version: Version,
    /// Client identifier prefix (the connection's number is appended).
    #[arg(long, default_value = "swarm")]
    id_prefix: String,
    /// Worker threads of the tool (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the result as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// A connection's byte stream.
enum Stream {
    /// Plain TCP: read only on readiness, so an idle connection holds no buffer.
    Plain(TcpStream),
    /// TLS (rustls keeps its own record buffers).
    Tls(Box<dyn Io>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Stream {
    /// Reads what is there into `rbuf`; 0 at end of stream. Cancel-safe.
    async fn read_some(&mut self, rbuf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => loop {
                s.readable().await?;
                rbuf.reserve(READ_CHUNK);
                match s.try_read_buf(rbuf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
            Stream::Tls(s) => {
                rbuf.reserve(READ_CHUNK);
                s.read_buf(rbuf).await
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        };
    }
}

/// What the main task asks every connection to do; each connection acts on
/// the parts it has not acted on yet.
#[derive(Clone, Copy, Default)]
struct Command {
    subscribe: bool,
    /// Incremented every half Keep Alive: send a PINGREQ.
    ping: u32,
    close: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    Connect,
    Subscribe,
    /// A connection lost after it was connected.
    Dropped,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Subscribe => "subscribe",
            Phase::Dropped => "dropped",
        }
    }
}

/// Dialling: the broker's address, the source addresses, TLS.
struct Dial {
    broker: SocketAddr,
    host: String,
    sources: u32,
    version: ProtocolVersion,
    keep_alive: u16,
    id_prefix: String,
    tls: Option<Tls>,
    setup_timeout: Duration,
}

struct Tls {
    config: Arc<rustls::ClientConfig>,
    context: mqtt_tls::ClientContext,
}

/// Counters shared by every connection and the main task.
struct Shared {
    base: Instant,
    version: ProtocolVersion,
    qos: QoS,
    filter: Option<TopicFilter>,
    connected: AtomicU32,
    connect_failed: AtomicU32,
    /// Nanoseconds since `base` of the last CONNACK.
    last_connack: AtomicU64,
    subacked: AtomicU32,
    subscribe_failed: AtomicU32,
    last_suback: AtomicU64,
    dropped: AtomicU32,
    /// Connection tasks still running.
    live: AtomicU32,
    received: AtomicU32,
    duplicates: AtomicU32,
    /// Per connection: nanoseconds since `base` when the fan-out message
    /// arrived (0: not yet).
    received_at: Vec<AtomicU64>,
    failures: Mutex<BTreeMap<(Phase, String), u32>>,
    /// Woken whenever a counter above moves.
    progress: Notify,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn fail(&self, phase: Phase, reason: String) {
        if let Ok(mut f) = self.failures.lock() {
            *f.entry((phase, reason)).or_insert(0) += 1;
        }
        match phase {
            Phase::Connect => &self.connect_failed,
            Phase::Subscribe => &self.subscribe_failed,
            Phase::Dropped => &self.dropped,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.progress.notify_one();
    }

    fn count(&self, c: &AtomicU32) -> u32 {
        c.load(Ordering::Relaxed)
    }
}

/// The `i`-th source address: 127.1.0.1, ..., 127.1.0.254, 127.1.1.1, ...
/// (never a .0 or .255 host).
fn source_address(i: u32) -> Ipv4Addr {
    let host = (i % 254) as u8 + 1;
    let block = i / 254;
    let third = (block % 256) as u8;
    let second = 1 + (block / 256).min(253) as u8;
    Ipv4Addr::new(127, second, third, host)
}

/// TCP connect (from connection `idx`'s source address), TLS, CONNECT,
/// CONNACK. Returns the stream and any bytes read past the CONNACK.
async fn open(dial: &Dial, idx: u32) -> Result<(Stream, BytesMut), BoxError> {
    let socket = match dial.broker {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    if dial.sources > 0 {
        let src = SocketAddr::new(IpAddr::V4(source_address(idx % dial.sources)), 0);
        socket
            .bind(src)
            .map_err(|e| format!("cannot bind a source address in 127.1.0.0/16: {e}"))?;
    }
    let tcp = socket
        .connect(dial.broker)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    tcp.set_nodelay(true)?;
    let mut stream = match &dial.tls {
        Some(tls) => Stream::Tls(Box::new(
            mqtt_tls::connect(tls.config.clone(), &dial.host, tcp).await?,
        )),
        None => Stream::Plain(tcp),
    };
    let mut connect = Connect::new(dial.version, format!("{}-{idx}", dial.id_prefix));
    connect.keep_alive = dial.keep_alive;
    let mut out = BytesMut::new();
    connect.encode(dial.version, &mut out)?;
    stream.send(&out).await.map_err(|e| explain(dial, e))?;
    let mut rbuf = BytesMut::new();
    let mut decoder = Decoder::with_version(dial.version);
    loop {
        if let Some(packet) = decoder.decode(&mut rbuf)? {
            return match packet {
                Packet::ConnAck(ack) if ack.reason_code.as_u8() == 0 => Ok((stream, rbuf)),
                Packet::ConnAck(ack) => Err(format!(
                    "the broker refused the connection: {}",
                    ack.properties
                        .reason_string
                        .as_deref()
                        .unwrap_or(ack.reason_code.description())
                )
                .into()),
                other => Err(format!("expected CONNACK, got {:?}", other.packet_type()).into()),
            };
        }
        match stream.read_some(&mut rbuf).await {
            Ok(0) => return Err("the broker closed the connection before CONNACK".into()),
            Ok(_) => {}
            Err(e) => return Err(explain(dial, e)),
        }
    }
}

/// A TLS 1.3 broker refuses a client certificate after the handshake: let
/// mqtt-tls say why.
fn explain(dial: &Dial, err: io::Error) -> BoxError {
    if let Some(tls) = &dial.tls {
        if let Some(e) = mqtt_tls::explain_io_error(&err, &tls.context) {
            return e.into();
        }
    }
    err.into()
}

/// One connection: connect, then follow the main task's commands and
/// answer the broker until told to close.
async fn connection(
    idx: u32,
    dial: Arc<Dial>,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
    mut commands: watch::Receiver<Command>,
) {
    // Boxed: the setup's state (TLS handshake, timer) lives on the heap
    // only while it runs, not in every idle connection's task.
    let setup = Box::pin(tokio::time::timeout(dial.setup_timeout, open(&dial, idx))).await;
    drop(permit);
    let (mut stream, mut rbuf) = match setup {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return finish(&shared, Phase::Connect, e.to_string()),
        Err(_) => {
            return finish(
                &shared,
                Phase::Connect,
                format!(
                    "not connected within {:?} (TCP, TLS, CONNECT/CONNACK)",
                    dial.setup_timeout
                ),
            )
        }
    };
    shared
        .last_connack
        .fetch_max(shared.now_ns(), Ordering::Relaxed);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    shared.progress.notify_one();
    match serve(idx, &mut stream, &mut rbuf, &shared, &mut commands).await {
        Ok(()) => {
            stream.shutdown().await;
            finish(&shared, Phase::Dropped, String::new())
        }
        Err(e) => finish(&shared, Phase::Dropped, e.to_string()),
    }
}

/// Ends a connection task: records `reason` (none: a clean close).
fn finish(shared: &Shared, phase: Phase, reason: String) {
    if !reason.is_empty() {
        shared.fail(phase, reason);
    }
    shared.live.fetch_sub(1, Ordering::Relaxed);
    shared.progress.notify_one();
}

async fn serve(
    idx: u32,
    stream: &mut Stream,
    rbuf: &mut BytesMut,
    shared: &Shared,
    commands: &mut watch::Receiver<Command>,
) -> Result<(), BoxError> {
    let version = shared.version;
    let mut decoder = Decoder::with_version(version);
    let mut done = Command::default();
    let mut out = BytesMut::new();
    loop {
        // Answer what was read.
        while let Some(packet) = decoder.decode(rbuf)? {
            match packet {
                Packet::SubAck(ack) => {
                    if let Some(bad) = ack.reason_codes.iter().find(|c| c.is_error()) {
                        shared.fail(
                            Phase::Subscribe,
                            format!("the broker refused the subscription: {}", bad.description()),
                        );
                    } else {
                        shared
                            .last_suback
                            .fetch_max(shared.now_ns(), Ordering::Relaxed);
                        shared.subacked.fetch_add(1, Ordering::Relaxed);
                        shared.progress.notify_one();
                    }
                }
                Packet::Publish(p) => {
                    let slot = &shared.received_at[idx as usize];
                    if slot
                        .compare_exchange(0, shared.now_ns(), Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        shared.received.fetch_add(1, Ordering::Relaxed);
                        shared.progress.notify_one();
                    } else {
                        shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => {
                            PubAck::new(id).encode(version, &mut out)?
                        }
                        (QoS::ExactlyOnce, Some(id)) => {
                            PubRec::new(id).encode(version, &mut out)?
                        }
                        _ => 0,
                    };
                }
                Packet::PubRel(rel) => {
                    PubComp::new(rel.packet_id).encode(version, &mut out)?;
                }
                Packet::Disconnect(d) => {
                    return Err(format!(
                        "the broker sent DISCONNECT: {}",
                        d.properties
                            .reason_string
                            .as_deref()
                            .unwrap_or(d.reason_code.description())
                    )
                    .into())
                }
                _ => {}
            }
        }
        if rbuf.is_empty() && rbuf.capacity() > 0 {
            // Idle connections hold no read buffer.
            *rbuf = BytesMut::new();
        }
        // Act on the main task's commands.
        let now = *commands.borrow_and_update();
        if now.close {
            Disconnect::new(ReasonCode::Success).encode(version, &mut out)?;
            stream.send(&out).await?;
            return Ok(());
        }
        if now.subscribe && !done.subscribe {
            if let Some(filter) = &shared.filter {
                Subscribe::new(
                    PacketId::MIN,
                    filter.clone(),
                    SubscriptionOptions::qos(shared.qos),
                )
                .encode(version, &mut out)?;
            }
            done.subscribe = true;
        }
        if now.ping != done.ping {
            Packet::PingReq.encode(version, &mut out)?;
            done.ping = now.ping;
        }
        if !out.is_empty() {
            stream.send(&out).await?;
            out = BytesMut::new();
        }
        tokio::select! {
            read = stream.read_some(rbuf) => match read {
                Ok(0) => return Err("the broker closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            },
            changed = commands.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// A process's resident memory, from /proc/PID/status, in KiB.
#[derive(Clone, Copy, Debug)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

fn memory(pid: &str) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Waits until `done()` holds or `deadline` passes; whether it holds.
async fn wait_until(shared: &Shared, deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return done();
        }
        let _ = tokio::time::timeout(left, shared.progress.notified()).await;
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[derive(Default)]
struct FanOut {
    expected: u32,
    received: u32,
    duplicates: u32,
    publish_acked: bool,
    first_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    last_ms: f64,
}

#[derive(Default)]
struct Report {
    requested: u32,
    connections: u32,
    tls: bool,
    mutual_tls: bool,
    version: &'static str,
    fd_limit: u64,
    sources: u32,
    connected: u32,
    connect_failed: u32,
    connect_secs: f64,
    subscribed: Option<(u32, u32, f64)>,
    fan_out: Option<FanOut>,
    dropped: u32,
    broker: Vec<(&'static str, Memory)>,
    tool_hwm_kib: u64,
    failures: Vec<(Phase, String, u32)>,
}

impl Report {
    fn connects_per_sec(&self) -> f64 {
        if self.connect_secs > 0.0 {
            f64::from(self.connected) / self.connect_secs
        } else {
            0.0
        }
    }

    fn sample(&self, name: &str) -> Option<Memory> {
        self.broker
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
    }

    /// Broker RSS growth from the start to sample `name`, per connection.
    fn bytes_per_connection(&self, name: &str) -> Option<f64> {
        let (start, at) = (self.sample("start")?, self.sample(name)?);
        if self.connected == 0 {
            return None;
        }
        Some((at.rss_kib as f64 - start.rss_kib as f64) * 1024.0 / f64::from(self.connected))
    }

    fn failed(&self) -> bool {
        self.connect_failed > 0
            || self.dropped > 0
            || self.subscribed.is_some_and(|(_, failed, _)| failed > 0)
            || self
                .fan_out
                .as_ref()
                .is_some_and(|f| f.received < f.expected || f.expected == 0)
    }

    fn link(&self) -> &'static str {
        match (self.tls, self.mutual_tls) {
            (false, _) => "plain TCP",
            (true, false) => "TLS",
            (true, true) => "mutual TLS",
        }
    }

    fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "mqtt-swarm: {} connections over {}, MQTT {}, {} source addresses, file limit {}",
            self.connections,
            self.link(),
            self.version,
            if self.sources == 0 {
                "kernel-chosen".to_string()
            } else {
                self.sources.to_string()
            },
            self.fd_limit
        );
        if self.connections < self.requested {
            let _ = writeln!(
                s,
                "(asked for {}; lowered to fit the file limit)",
                self.requested
            );
        }
        let _ = writeln!(
            s,
            "connect:    {} connected, {} failed in {:.3} s: {:.0} connections/s",
            self.connected,
            self.connect_failed,
            self.connect_secs,
            self.connects_per_sec()
        );
        if let Some((ok, failed, secs)) = self.subscribed {
            let _ = writeln!(
                s,
                "subscribe:  {ok} SUBACKs, {failed} refused or failed; last SUBACK after {secs:.3} s"
            );
        }
        if let Some(f) = &self.fan_out {
            let _ = writeln!(
                s,
                "fan-out:    {}/{} subscribers got the message ({} missing, {} duplicates); first {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, last {:.3} ms{}",
                f.received,
                f.expected,
                f.expected.saturating_sub(f.received),
                f.duplicates,
                f.first_ms,
                f.p50_ms,
                f.p99_ms,
                f.last_ms,
                if f.publish_acked { "" } else { "; the publish was not acknowledged" }
            );
        }
        if self.dropped > 0 {
            let _ = writeln!(
                s,
                "dropped:    {} connections lost after connecting",
                self.dropped
            );
        }
        if !self.broker.is_empty() {
            let _ = writeln!(s, "broker memory (KiB):   {:>12} {:>12}", "VmRSS", "VmHWM");
            for (name, m) in &self.broker {
                let _ = writeln!(s, "  {name:<20} {:>12} {:>12}", m.rss_kib, m.hwm_kib);
            }
            if let Some(b) = self.bytes_per_connection("connected") {
                let _ = writeln!(s, "broker RSS growth per idle connection: {b:.0} bytes");
            }
            if let Some(b) = self.bytes_per_connection("subscribed") {
                let _ = writeln!(
                    s,
                    "broker RSS growth per subscribed connection: {b:.0} bytes"
                );
            }
        }
        let _ = writeln!(s, "mqtt-swarm's own peak RSS: {} KiB", self.tool_hwm_kib);
        for (phase, reason, n) in &self.failures {
            let _ = writeln!(s, "FAILED ({}) x{n}: {reason}", phase.name());
        }
        s
    }

    fn json(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"requested\":{},\"connections\":{},\"link\":\"{}\",\"protocol\":\"{}\",\"sources\":{},\"fd_limit\":{},",
            self.requested,
            self.connections,
            self.link(),
            self.version,
            self.sources,
            self.fd_limit
        );
        let _ = write!(
            s,
            "\"connect\":{{\"connected\":{},\"failed\":{},\"secs\":{:.3},\"per_sec\":{:.1}}},",
            self.connected,
            self.connect_failed,
            self.connect_secs,
            self.connects_per_sec()
        );
        match self.subscribed {
            Some((ok, failed, secs)) => {
                let _ = write!(
                    s,
                    "\"subscribe\":{{\"subacked\":{ok},\"failed\":{failed},\"secs\":{secs:.3}}},"
                );
            }
            None => s.push_str("\"subscribe\":null,"),
        }
        match &self.fan_out {
            Some(f) => {
                let _ = write!(
                    s,
                    "\"fan_out\":{{\"expected\":{},\"received\":{},\"missing\":{},\"duplicates\":{},\"publish_acked\":{},\"first_ms\":{:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"last_ms\":{:.3}}},",
                    f.expected,
                    f.received,
                    f.expected.saturating_sub(f.received),
                    f.duplicates,
                    f.publish_acked,
                    f.first_ms,
                    f.p50_ms,
                    f.p99_ms,
                    f.last_ms
                );
            }
            None => s.push_str("\"fan_out\":null,"),
        }
        let _ = write!(s, "\"dropped\":{},\"broker_kib\":{{", self.dropped);
        for (i, (name, m)) in self.broker.iter().enumerate() {
            let _ = write!(
                s,
                "{}\"{name}\":{{\"rss\":{},\"hwm\":{}}}",
                if i > 0 { "," } else { "" },
                m.rss_kib,
                m.hwm_kib
            );
        }
        let num = |v: Option<f64>| v.map_or("null".to_string(), |b| format!("{b:.0}"));
        let _ = write!(
            s,
            "}},\"bytes_per_idle_connection\":{},\"bytes_per_subscribed_connection\":{},\"tool_hwm_kib\":{},\"failures\":[",
            num(self.bytes_per_connection("connected")),
            num(self.bytes_per_connection("subscribed")),
            self.tool_hwm_kib
        );
        for (i, (phase, reason, n)) in self.failures.iter().enumerate() {
            let _ = write!(
                s,
                "{}{{\"phase\":\"{}\",\"reason\":\"{}\",\"count\":{n}}}",
                if i > 0 { "," } else { "" },
                phase.name(),
                json_escape(reason)
            );
        }
        let _ = write!(s, "],\"ok\":{}}}", !self.failed());
        s
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Raises the soft file limit to the hard one; the connections that fit.
fn fit_file_limit(args: &Args) -> Result<(u32, u64), String> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| format!("cannot read or raise the file limit: {e}"))?;
    let need = u64::from(args.connections) + FD_MARGIN;
    if need <= limit {
        return Ok((args.connections, limit));
    }
    let fits = limit.saturating_sub(FD_MARGIN);
    if args.fit_fd_limit && fits > 0 {
        return Ok((u32::try_from(fits).unwrap_or(u32::MAX), limit));
    }
    Err(format!(
        "{} connections need about {need} file descriptors, but this process may open {limit} \
         (the hard limit of RLIMIT_NOFILE). Raise it before starting: `ulimit -n {need}` as root \
         (or `ulimit -Hn` to see the hard limit), LimitNOFILE={need} in a systemd unit, or \
         `nofile` in /etc/security/limits.conf; the broker needs as many. \
         Or pass --fit-fd-limit to open {fits} connections instead.",
        args.connections
    ))
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, BoxError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{host} has no address").into())
}

fn tls(args: &Args) -> Result<Option<Tls>, BoxError> {
    if args.cafile.is_none() && args.cert.is_none() {
        return Ok(None);
    }
    let mut options = mqtt_tls::ClientTlsOptions::new();
    options.cafile = args.cafile.clone();
    options.certfile = args.cert.clone();
    options.keyfile = args.key.clone();
    let config = options.build()?;
    let context = mqtt_tls::ClientContext::new(&args.host, &config);
    Ok(Some(Tls { config, context }))
}

/// The extra connection of the fan-out: publishes one message and returns
/// the publish time (ns since `base`) and whether the broker acknowledged
/// it (QoS 0: true once written).
async fn publish_one(
    dial: &Dial,
    shared: &Shared,
    topic: TopicName,
    size: usize,
    deadline: Instant,
) -> Result<(u64, Stream, bool), BoxError> {
    let (mut stream, mut rbuf) = open(dial, u32::MAX / 2).await?;
    let version = dial.version;
    let mut publish = Publish::new(topic, vec![b'x'; size]);
    publish.qos = shared.qos;
    if shared.qos != QoS::AtMostOnce {
        publish.packet_id = Some(PacketId::MIN);
    }
    let mut out = BytesMut::new();
    publish.encode(version, &mut out)?;
    let at = shared.now_ns();
    stream.send(&out).await?;
    if shared.qos == QoS::AtMostOnce {
        return Ok((at, stream, true));
    }
    let mut decoder = Decoder::with_version(version);
    let acked = tokio::time::timeout_at(deadline.into(), async {
        loop {
            while let Some(p) = decoder.decode(&mut rbuf)? {
                match p {
                    Packet::PubAck(a) => return Ok::<bool, BoxError>(!a.reason_code.is_error()),
                    Packet::PubRec(r) if r.reason_code.is_error() => return Ok(false),
                    Packet::PubRec(r) => {
                        let mut out = BytesMut::new();
                        PubRel::new(r.packet_id).encode(version, &mut out)?;
                        stream.send(&out).await?;
                    }
                    Packet::PubComp(_) => return Ok(true),
                    _ => {}
                }
            }
            if stream.read_some(&mut rbuf).await? == 0 {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    Ok((at, stream, acked))
}

fn quantile_ms(sorted: &[u64], q: f64, from: u64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].saturating_sub(from) as f64 / 1e6
}

async fn run(args: Args, fd: (u32, u64)) -> Result<Report, BoxError> {
    let (n, fd_limit) = fd;
    let version = args.protocol_version.protocol();
    let qos = QoS::from_u8(args.qos).ok_or("--qos is 0, 1 or 2")?;
    let filter = args.subscribe.clone().map(TopicFilter::new).transpose()?;
    let publish_topic = match (&args.publish_topic, &args.subscribe, args.fan_out) {
        (Some(t), _, true) | (None, Some(t), true) => Some(TopicName::try_from(t.clone()).map_err(|e| {
            format!("cannot publish to {t:?}: {e} (give --publish-topic when --subscribe has wildcards)")
        })?),
        _ => None,
    };
    for (name, v) in [
        ("--settle", args.settle),
        ("--hold", args.hold),
        ("--setup-timeout", args.setup_timeout),
        ("--timeout", args.timeout),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{name} must be a number of seconds, not {v}").into());
        }
    }
    if let Some(r) = args.rate {
        if !r.is_finite() || r <= 0.0 {
            return Err("--rate must be positive".into());
        }
    }
    let broker = resolve(&args.host, args.port).await?;
    let sources = match broker.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => args.sources.min(254 * 256 * 253),
        _ => 0,
    };
    let tls = tls(&args)?;
    let mut report = Report {
        requested: args.connections,
        connections: n,
        tls: tls.is_some(),
        mutual_tls: args.cert.is_some(),
        version: args.protocol_version.label(),
        fd_limit,
        sources,
        ..Report::default()
    };
    let dial = Arc::new(Dial {
        broker,
        host: args.host.clone(),
        sources,
        version,
        keep_alive: args.keep_alive,
        id_prefix: format!("{}-{}", args.id_prefix, std::process::id()),
        tls,
        setup_timeout: Duration::from_secs_f64(args.setup_timeout),
    });
    let shared = Arc::new(Shared {
        base: Instant::now(),
        version,
        qos,
        filter,
        connected: AtomicU32::new(0),
        connect_failed: AtomicU32::new(0),
        last_connack: AtomicU64::new(0),
        subacked: AtomicU32::new(0),
        subscribe_failed: AtomicU32::new(0),
        last_suback: AtomicU64::new(0),
        dropped: AtomicU32::new(0),
        live: AtomicU32::new(0),
        received: AtomicU32::new(0),
        duplicates: AtomicU32::new(0),
        received_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
        failures: Mutex::new(BTreeMap::new()),
        progress: Notify::new(),
    });
    let pid = args.broker_pid.map(|p| p.to_string());
    let sample = |report: &mut Report, name: &'static str| {
        if let Some(m) = pid.as_deref().and_then(memory) {
            report.broker.push((name, m));
        }
    };
    if let Some(p) = &pid {
        if memory(p).is_none() {
            return Err(
                format!("cannot read /proc/{p}/status: is {p} the broker's process id?").into(),
            );
        }
    }
    sample(&mut report, "start");
    let (commands, receiver) = watch::channel(Command::default());
    let commands = Arc::new(commands);
    // Pings every half Keep Alive, for runs held longer than that.
    if args.keep_alive > 0 {
        let commands = commands.clone();
        let every = Duration::from_secs(u64::from(args.keep_alive)) / 2;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((Instant::now() + every).into(), every);
            loop {
                tick.tick().await;
                commands.send_modify(|c| c.ping = c.ping.wrapping_add(1));
            }
        });
    }

    // Connect.
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let start = shared.now_ns();
    let t0 = Instant::now();
    for idx in 0..n {
        if let Some(rate) = args.rate {
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(f64::from(idx) / rate)).into())
                .await;
        }
        let permit = permits.clone().acquire_owned().await?;
        shared.live.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(
            idx,
            dial.clone(),
            shared.clone(),
            permit,
            receiver.clone(),
        ));
    }
    let setup_deadline = Instant::now() + dial.setup_timeout + Duration::from_secs(5);
    wait_until(&shared, setup_deadline, || {
        shared.count(&shared.connected) + shared.count(&shared.connect_failed) >= n
    })
    .await;
    report.connected = shared.count(&shared.connected);
    report.connect_failed = n - report.connected.min(n);
    report.connect_secs = secs(
        shared
            .last_connack
            .load(Ordering::Relaxed)
            .saturating_sub(start),
    );
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    sample(&mut report, "connected");

    // Subscribe.
    if shared.filter.is_some() {
        let start = shared.now_ns();
        commands.send_modify(|c| c.subscribe = true);
        let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
        let connected = report.connected;
        wait_until(&shared, deadline, || {
            shared.count(&shared.subacked)
                + shared.count(&shared.subscribe_failed)
                + shared.count(&shared.dropped)
                >= connected
        })
        .await;
        let ok = shared.count(&shared.subacked);
        let last = shared
            .last_suback
            .load(Ordering::Relaxed)
            .saturating_sub(start);
        report.subscribed = Some((ok, connected.saturating_sub(ok), secs(last)));
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        sample(&mut report, "subscribed");
    }

    // Fan out.
    if let Some(topic) = publish_topic {
        let expected = shared.count(&shared.subacked);
        let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
        let (at, publisher, acked) =
            publish_one(&dial, &shared, topic, args.size, deadline).await?;
        wait_until(&shared, deadline, || {
            shared.count(&shared.received) >= expected
        })
        .await;
        // Duplicates, if any, come right behind.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut times: Vec<u64> = shared
            .received_at
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .filter(|&t| t != 0)
            .collect();
        times.sort_unstable();
        report.fan_out = Some(FanOut {
            expected,
            received: shared.count(&shared.received),
            duplicates: shared.count(&shared.duplicates),
            publish_acked: acked,
            first_ms: quantile_ms(&times, 0.0, at),
            p50_ms: quantile_ms(&times, 0.5, at),
            p99_ms: quantile_ms(&times, 0.99, at),
            last_ms: quantile_ms(&times, 1.0, at),
        });
        drop(publisher);
        sample(&mut report, "after fan-out");
    }

    if args.hold > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    report.dropped = shared.count(&shared.dropped);
    commands.send_modify(|c| c.close = true);
    wait_until(&shared, Instant::now() + Duration::from_secs(10), || {
        shared.count(&shared.live) == 0
    })
    .await;
    if let Ok(f) = shared.failures.lock() {
        report.failures = f.iter().map(|((p, r), n)| (*p, r.clone(), *n)).collect();
    }
    report.tool_hwm_kib = memory("self").map_or(0, |m| m.hwm_kib);
    Ok(report)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fd = match fit_file_limit(&args) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("mqtt-swarm: {e}");
            return ExitCode::from(2);
        }
    };
    let json = args.json;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.threads {
        builder.worker_threads(t.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt-swarm: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(args, fd));
    // Connection tasks still running end with the runtime.
    runtime.shutdown_background();
    match result {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            if report.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("mqtt-swarm: {e}");
            ExitCode::from(2)
        }
    }
}
