//! `mqtt-soak`: minutes of steady churn against a running broker (ours or
//! Mosquitto), then a check that nothing leaked and no acknowledged message
//! was lost.
//!
//! ```text
//! mqtt-soak -p 1883 --duration 300 --broker-pid 1234 --metrics-port 9100
//! mqtt-soak -p 1883 --tls-port 8883 --cafile ca.crt --cert client.crt --key client.key \
//!     --duration 300 --broker-pid 1234 --json
//! ```
//!
//! Every client loops on one behaviour for the whole `--duration`:
//!
//! - **subscribers** (persistent sessions: 3.1.1 clean session 0, 5.0 a
//!   session expiry) on `PREFIX/data/#` at QoS 2, which leave now and then
//!   with a DISCONNECT or by dropping the socket, and come back;
//! - **publishers** at QoS 0, 1 and 2 on `PREFIX/data/N`, each payload
//!   stamped with (publisher, sequence number), reconnecting now and then
//!   (a clean DISCONNECT once their messages are settled);
//! - **churners**: connect, subscribe, publish at QoS 0, 1 and 2 to
//!   themselves, receive it, DISCONNECT, again;
//! - **droppers**: subscribe and read, then vanish: FIN, RST, or half a
//!   PUBLISH and FIN, never a DISCONNECT;
//! - **half-open holders**: CONNECT with a short keep alive, then neither
//!   read nor write: only the broker's keep alive ends them;
//! - **garbage**: CONNECT, then bytes that are not MQTT;
//! - **non-readers**: a tiny receive buffer, subscribed to a busy topic
//!   (`PREFIX/bulk`, fed by the bulk publisher), never read: the broker's
//!   `write_timeout` should end them;
//! - with `--tls-port`: **TLS stalls** (TCP open and nothing, or half a
//!   ClientHello) and **TLS failures** (no client certificate, or one from
//!   another CA, on a `require_certificate` listener); some publishers,
//!   subscribers and churners use mutual TLS.
//!
//! With `--broker-pid` it samples the broker's RSS (`/proc/PID/status`
//! VmRSS) and open descriptors (`/proc/PID/fd`) every `--sample-every`
//! seconds; with `--metrics-port` (our `metrics_listener`) the tasks alive in
//! its runtime (`mqtt_broker_runtime_alive_tasks`). At the end the
//! publishers settle, the subscribers drain their sessions (and then remove
//! them), every connection of the tool is closed, and it waits (at most
//! `--settle` seconds) for the descriptors and tasks to come back to where
//! they started. Exit status 1: an acknowledged QoS 1/2 message (PUBACK, or
//! PUBREC then PUBCOMP) never reached a subscriber, a QoS 2 message arrived
//! twice, a well-behaved client was cut off, or descriptors or tasks did not
//! come back (a leak). Status 2: the run itself failed.
#![forbid(unsafe_code)]

use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::{ArgAction, Parser};
use mqtt_codec::{
    Connect, Decoder, Disconnect, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::time::{sleep, sleep_until, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connecting, the TLS handshake, CONNACK, SUBACK: each at most this long.
const SETUP: Duration = Duration::from_secs(10);
/// A write to the broker (by a client that reads) at most this long.
const WRITE: Duration = Duration::from_secs(10);
/// Keep alive of the well-behaved clients; they ping at half of it.
const KEEP_ALIVE: u16 = 10;
/// Unacknowledged QoS 1/2 messages per publisher (below both brokers'
/// default 20 in-flight / Receive Maximum).
const INFLIGHT: usize = 10;
/// Stamp: publisher number (u32) and sequence number (u64), big-endian.
const STAMP: usize = 12;

/// Drives a running MQTT broker with minutes of churn, good and hostile,
/// and checks that nothing leaked and no acknowledged message was lost.
#[derive(Parser, Debug, Clone)]
#[command(name = "mqtt-soak", version, about, disable_help_flag = true)]
struct Args {
    /// Broker host (an IP address or the name in its TLS certificate).
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    host: String,
    /// The plain MQTT port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// A mutual-TLS port (`require_certificate true`): TLS clients, stalled
    /// and failing handshakes. Needs --cafile, --cert and --key.
    #[arg(long)]
    tls_port: Option<u16>,
    /// CA certificate the broker's certificate is checked with.
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// Client certificate the broker accepts.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Seconds of churn.
    #[arg(short = 'd', long, default_value_t = 300.0)]
    duration: f64,
    /// The broker's process id: sample its RSS and open descriptors.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Port of the broker's Prometheus endpoint (our `metrics_listener`):
    /// sample `mqtt_broker_runtime_alive_tasks`.
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5.0)]
    sample_every: f64,
    /// Seconds after the start that count as warm-up for the RSS summary
    /// (default: a fifth of --duration, at most 60).
    #[arg(long)]
    warmup: Option<f64>,
    /// Persistent subscribers on PREFIX/data/# (QoS 2).
    #[arg(long, default_value_t = 3)]
    subscribers: u32,
    /// Publishers per QoS (0, 1 and 2) on PREFIX/data/N.
    #[arg(long, default_value_t = 2)]
    publishers: u32,
    /// Messages per second per publisher.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Churners: connect, subscribe, publish, receive, disconnect, again.
    #[arg(long, default_value_t = 4)]
    churners: u32,
    /// Clients that vanish without DISCONNECT (FIN, RST, half a packet).
    #[arg(long, default_value_t = 2)]
    droppers: u32,
    /// Clients that go silent after CONNECT (only keep alive ends them).
    #[arg(long, default_value_t = 2)]
    half_open: u32,
    /// Keep alive of the half-open holders, seconds.
    #[arg(long, default_value_t = 2)]
    half_open_keep_alive: u16,
    /// Clients that send garbage after CONNECT.
    #[arg(long, default_value_t = 2)]
    garbage: u32,
    /// Clients subscribed to PREFIX/bulk that never read.
    #[arg(long, default_value_t = 1)]
    non_readers: u32,
    /// Seconds a non-reader holds its socket before it looks whether the
    /// broker closed it.
    #[arg(long, default_value_t = 30.0)]
    non_reader_hold: f64,
    /// Messages per second of the bulk publisher (QoS 0, to PREFIX/bulk).
    #[arg(long, default_value_t = 100.0)]
    bulk_rate: f64,
    /// Payload bytes of a bulk message.
    #[arg(long, default_value_t = 8192)]
    bulk_size: usize,
    /// TLS clients that stall their handshake (needs --tls-port).
    #[arg(long, default_value_t = 2)]
    tls_stalls: u32,
    /// Seconds a stalled handshake waits for the broker to close it.
    #[arg(long, default_value_t = 30.0)]
    stall_wait: f64,
    /// TLS clients with no or a foreign client certificate (needs --tls-port).
    #[arg(long, default_value_t = 2)]
    tls_failures: u32,
    /// Seconds the subscribers have, after the publishers settled, to
    /// receive every acknowledged message.
    #[arg(long, default_value_t = 60.0)]
    drain: f64,
    /// Seconds to wait, once every connection of the tool is closed, for
    /// the broker's descriptors and tasks to come back to where they started.
    #[arg(long, default_value_t = 60.0)]
    settle: f64,
    /// Topic prefix (the process id is appended).
    #[arg(long, default_value = "soak")]
    topic: String,
    /// Print the result as one JSON object (the samples go to stderr).
    #[arg(long)]
    json: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

// ------------------------------------------------------------------ plumbing

/// A connection's byte stream: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Which TLS configuration a connection dials with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Plain,
    /// Mutual TLS with the good client certificate.
    Tls,
}

struct TlsSetup {
    port: u16,
    good: Arc<rustls::ClientConfig>,
    no_cert: Arc<rustls::ClientConfig>,
    foreign_cert: Arc<rustls::ClientConfig>,
}

/// A tiny xorshift generator: the mix of behaviours needs no more.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What each behaviour did, for the report.
#[derive(Default)]
struct Counters {
    connects: AtomicU64,
    tls_connects: AtomicU64,
    clean_disconnects: AtomicU64,
    /// Clients that vanished without DISCONNECT (droppers, subscribers).
    abrupt_drops: AtomicU64,
    half_open_closed_by_broker: AtomicU64,
    half_open_not_closed: AtomicU64,
    garbage_closed_by_broker: AtomicU64,
    garbage_not_closed: AtomicU64,
    non_reader_closed_by_broker: AtomicU64,
    non_reader_not_closed: AtomicU64,
    tls_stall_closed_by_broker: AtomicU64,
    tls_stall_not_closed: AtomicU64,
    tls_failure_refused: AtomicU64,
    /// A bad or missing client certificate that got a CONNACK: a finding.
    tls_failure_accepted: AtomicU64,
    churn_cycles: AtomicU64,
    published: [AtomicU64; 3],
    qos0_delivered: AtomicU64,
    bulk_published: AtomicU64,
    /// QoS 2 messages with a PUBREC whose PUBCOMP never came (the
    /// publisher's connection ended first): not counted as acknowledged.
    unsettled: AtomicU64,
    /// Well-behaved clients cut off, refused or timed out.
    errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A tracked publisher's messages: 0 not acknowledged, 1 acknowledged
/// (PUBACK, or PUBREC of a QoS 2 exchange in progress), 2 settled (PUBCOMP).
struct Tracked {
    qos: QoS,
    state: Mutex<Vec<u8>>,
}

struct Ctx {
    args: Args,
    prefix: String,
    tls: Option<TlsSetup>,
    counters: Counters,
    /// Set when the churn ends.
    stopping: AtomicBool,
    /// Set when every publisher has settled and closed.
    publishers_done: AtomicBool,
    stop: Notify,
    /// Publishers by number (QoS 0 ones too, with no tracking).
    publishers: Vec<Tracked>,
    /// Per subscriber, per publisher, deliveries per sequence number.
    deliveries: Vec<Mutex<Vec<Vec<u8>>>>,
    /// The first few errors, for the report.
    error_log: Mutex<Vec<String>>,
    /// Churners' QoS 1/2 messages acknowledged and never received back.
    churn_lost: AtomicU64,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sleeps `d`, or less if the churn ends first; whether it ended.
    async fn pause(&self, d: Duration) -> bool {
        let stopped = self.stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if self.stopping() {
            return true;
        }
        tokio::select! {
            _ = sleep(d) => self.stopping(),
            _ = stopped => true,
        }
    }

    fn error(&self, who: &str, e: impl std::fmt::Display) {
        bump(&self.counters.errors);
        let mut log = self.error_log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() < 20 {
            log.push(format!("{who}: {e}"));
        }
    }

    fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    fn addr(&self, port: u16) -> String {
        let host = self.args.host.trim_matches(['[', ']']);
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

async fn tcp(ctx: &Ctx, port: u16, small_rcvbuf: bool) -> Result<TcpStream, BoxError> {
    let addr = ctx.addr(port);
    let target: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(&addr)
            .await?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))?,
    };
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if small_rcvbuf {
        socket.set_recv_buffer_size(4096)?;
    }
    let tcp = timeout(SETUP, socket.connect(target))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))??;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// One MQTT connection of the tool.
struct Conn {
    io: Box<dyn Io>,
    version: ProtocolVersion,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    last_write: Instant,
    next_id: u16,
}

impl Conn {
    /// Connects (over `link`), sends CONNECT (adjusted by `f`) and waits for
    /// a successful CONNACK. Returns the connection and Session Present.
    async fn open(
        ctx: &Ctx,
        link: Link,
        version: ProtocolVersion,
        client_id: &str,
        f: impl FnOnce(&mut Connect),
    ) -> Result<(Conn, bool), BoxError> {
        let (port, tls) = match (link, &ctx.tls) {
            (Link::Tls, Some(t)) => (t.port, Some(t.good.clone())),
            _ => (ctx.args.port, None),
        };
        let tcp = tcp(ctx, port, false).await?;
        Self::handshake(ctx, tcp, tls, version, client_id, f).await
    }

    async fn handshake(
        ctx: &Ctx,
        tcp: TcpStream,
        tls: Option<Arc<rustls::ClientConfig>>,
        version: ProtocolVersion,
        client_id: &str,
        f: impl FnOnce(&mut Connect),
    ) -> Result<(Conn, bool), BoxError> {
        let io: Box<dyn Io> = match tls {
            Some(config) => {
                let s = timeout(SETUP, mqtt_tls::connect(config, &ctx.args.host, tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out")??;
                bump(&ctx.counters.tls_connects);
                Box::new(s)
            }
            None => Box::new(tcp),
        };
        let mut c = Conn {
            io,
            version,
            decoder: Decoder::with_version(version),
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::new(),
            last_write: Instant::now(),
            next_id: 0,
        };
        let mut connect = Connect::new(version, client_id);
        connect.keep_alive = KEEP_ALIVE;
        f(&mut connect);
        c.queue(&Packet::Connect(Box::new(connect)))?;
        c.flush().await?;
        match timeout(SETUP, c.recv())
            .await
            .map_err(|_| "no CONNACK in time")??
        {
            Packet::ConnAck(a) if a.reason_code == ReasonCode::Success => {
                bump(&ctx.counters.connects);
                Ok((c, a.session_present))
            }
            Packet::ConnAck(a) => Err(format!("refused: {}", a.reason_code.description()).into()),
            p => Err(format!("expected CONNACK, got {:?}", p.packet_type()).into()),
        }
    }

    fn queue(&mut self, p: &Packet) -> Result<(), BoxError> {
        p.encode(self.version, &mut self.wbuf)?;
        Ok(())
    }

    /// Writes what is queued (bounded in time).
    async fn flush(&mut self) -> Result<(), BoxError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let out = self.wbuf.split().freeze();
        timeout(WRITE, async {
            self.io.write_all(&out).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| "a write to the broker made no progress")??;
        self.last_write = Instant::now();
        Ok(())
    }

    /// The next packet. Cancel-safe: bytes read stay in the buffer.
    async fn recv(&mut self) -> Result<Packet, BoxError> {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(p);
            }
            if self.io.read_buf(&mut self.rbuf).await? == 0 {
                return Err("the broker closed the connection".into());
            }
        }
    }

    fn packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        PacketId::new(self.next_id).unwrap_or(PacketId::MIN)
    }

    /// SUBSCRIBE and its SUBACK (packets arriving before it go to `other`).
    async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
        mut other: impl FnMut(&mut Conn, Packet) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let id = self.packet_id();
        let sub = Subscribe::new(id, TopicFilter::new(filter)?, SubscriptionOptions::qos(qos));
        self.queue(&Packet::Subscribe(sub))?;
        self.flush().await?;
        let deadline = Instant::now() + SETUP;
        loop {
            let p = timeout(deadline - Instant::now(), self.recv())
                .await
                .map_err(|_| "no SUBACK in time")??;
            match p {
                Packet::SubAck(a) if a.packet_id == id => {
                    return match a.reason_codes.iter().all(|c| !c.is_error()) {
                        true => Ok(()),
                        false => Err(format!("subscription refused: {:?}", a.reason_codes).into()),
                    };
                }
                p => other(self, p)?,
            }
        }
    }

    /// Queues a PINGREQ when nothing was written for half the keep alive.
    fn ping_if_idle(&mut self) -> Result<(), BoxError> {
        if self.wbuf.is_empty()
            && self.last_write.elapsed() >= Duration::from_secs(u64::from(KEEP_ALIVE) / 2)
        {
            self.queue(&Packet::PingReq)?;
        }
        Ok(())
    }

    /// DISCONNECT, then close.
    async fn disconnect(mut self, ctx: &Ctx) {
        let _ = self.queue(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
        if self.flush().await.is_ok() {
            bump(&ctx.counters.clean_disconnects);
            let _ = timeout(Duration::from_secs(2), self.io.shutdown()).await;
        }
    }
}

fn version_for(i: u32) -> ProtocolVersion {
    if i % 2 == 0 {
        ProtocolVersion::V3_1_1
    } else {
        ProtocolVersion::V5
    }
}

fn qos_of(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Waits until the peer closes (EOF or error) for at most `wait`, reading
/// and discarding what arrives; whether it closed. Ends early (false) when
/// the churn ends and `stop_early`.
async fn closed_within<S: AsyncRead + Unpin>(
    ctx: &Ctx,
    s: &mut S,
    wait: Duration,
    stop_early: bool,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    let stopped = async {
        if stop_early {
            ctx.pause(wait).await;
        } else {
            sleep(wait).await;
        }
    };
    tokio::select! {
        closed = read_to_end => closed,
        _ = timeout(wait, stopped) => false,
    }
}

// --------------------------------------------------------------- behaviours

/// A persistent subscriber on PREFIX/data/# at QoS 2, leaving and coming
/// back until the churn ends, then draining its session and removing it.
async fn subscriber(ctx: Arc<Ctx>, i: u32, ready: Arc<tokio::sync::Barrier>) {
    let who = format!("subscriber {i}");
    let version = version_for(i);
    let link = if i % 3 == 2 && ctx.tls.is_some() {
        Link::Tls
    } else {
        Link::Plain
    };
    let id = format!("{}-sub-{i}", ctx.prefix.replace('/', "-"));
    let persistent = |c: &mut Connect| {
        c.clean_start = false;
        if c.protocol.is_v5() {
            c.properties.session_expiry_interval = Some(3600);
        }
    };
    let mut rng = Rng::new(u64::from(i) + 1);
    // Packet identifiers of QoS 2 messages received, PUBREL not yet: the
    // session state that makes a re-sent PUBLISH not a second delivery.
    let mut awaiting_rel: HashSet<u16> = HashSet::new();
    let mut subscribed = false;
    let mut ready = Some(ready);
    let mut drain_attempts = 0;
    loop {
        let draining = ctx.stopping();
        if draining {
            drain_attempts += 1;
            if drain_attempts > 5 {
                return;
            }
        }
        let (mut c, _) = match Conn::open(&ctx, link, version, &id, persistent).await {
            Ok(c) => c,
            Err(e) => {
                ctx.error(&who, e);
                if ctx.pause(Duration::from_secs(1)).await && draining {
                    return;
                }
                continue;
            }
        };
        if !subscribed {
            let filter = ctx.topic("data/#");
            if let Err(e) = c
                .subscribe(&filter, QoS::ExactlyOnce, |c, p| {
                    on_delivery(&ctx, i, c, p, &mut awaiting_rel)
                })
                .await
            {
                ctx.error(&who, e);
                continue;
            }
            subscribed = true;
            if let Some(r) = ready.take() {
                r.wait().await;
            }
        }
        let result = if draining {
            drain(&ctx, i, &mut c, &mut awaiting_rel).await
        } else {
            let online = rng.millis(3000, 8000);
            serve_for(&ctx, i, &mut c, &mut awaiting_rel, online).await
        };
        if let Err(e) = result {
            ctx.error(&who, e);
            continue;
        }
        if draining {
            c.disconnect(&ctx).await;
            // Remove the session: clean session / Clean Start and no expiry.
            match Conn::open(&ctx, link, version, &id, |_| {}).await {
                Ok((c, _)) => c.disconnect(&ctx).await,
                Err(e) => ctx.error(&who, e),
            }
            return;
        }
        if rng.below(3) == 0 {
            // Vanish: the socket closed, no DISCONNECT.
            drop(c);
            bump(&ctx.counters.abrupt_drops);
        } else {
            c.disconnect(&ctx).await;
        }
        ctx.pause(rng.millis(200, 1500)).await;
    }
}

/// Handles a packet a subscriber received: records and acknowledges
/// deliveries, completes QoS 2 exchanges.
fn on_delivery(
    ctx: &Ctx,
    sub: u32,
    c: &mut Conn,
    p: Packet,
    awaiting_rel: &mut HashSet<u16>,
) -> Result<(), BoxError> {
    match p {
        Packet::Publish(p) => {
            let new = match (p.qos, p.packet_id) {
                (QoS::ExactlyOnce, Some(id)) => awaiting_rel.insert(id.get()),
                _ => true,
            };
            if new {
                record(ctx, sub, &p);
            }
            match (p.qos, p.packet_id) {
                (QoS::AtLeastOnce, Some(id)) => c.queue(&Packet::PubAck(PubAck::new(id)))?,
                (QoS::ExactlyOnce, Some(id)) => c.queue(&Packet::PubRec(PubRec::new(id)))?,
                _ => {}
            }
        }
        Packet::PubRel(r) => {
            awaiting_rel.remove(&r.packet_id.get());
            c.queue(&Packet::PubComp(PubComp::new(r.packet_id)))?;
        }
        Packet::Disconnect(d) => {
            return Err(
                format!("the broker sent DISCONNECT {}", d.reason_code.description()).into(),
            )
        }
        _ => {}
    }
    Ok(())
}

fn record(ctx: &Ctx, sub: u32, p: &Publish) {
    if p.qos == QoS::AtMostOnce {
        bump(&ctx.counters.qos0_delivered);
    }
    if p.payload.len() < STAMP {
        return;
    }
    let mut b = &p.payload[..];
    let publisher = b.get_u32() as usize;
    let seq = b.get_u64() as usize;
    let Some(mine) = ctx.deliveries.get(sub as usize) else {
        return;
    };
    let mut d = mine.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(per) = d.get_mut(publisher) {
        if per.len() <= seq {
            per.resize(seq + 1, 0);
        }
        per[seq] = per[seq].saturating_add(1);
    }
}

/// Receives and acknowledges for `d`.
async fn serve_for(
    ctx: &Ctx,
    sub: u32,
    c: &mut Conn,
    awaiting_rel: &mut HashSet<u16>,
    d: Duration,
) -> Result<(), BoxError> {
    let end = tokio::time::Instant::now() + d;
    loop {
        c.ping_if_idle()?;
        c.flush().await?;
        tokio::select! {
            p = c.recv() => on_delivery(ctx, sub, c, p?, awaiting_rel)?,
            _ = sleep_until(end) => return Ok(()),
            _ = sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// After the churn: receives until every acknowledged message of the
/// tracked publishers is here, or `--drain` runs out.
async fn drain(
    ctx: &Ctx,
    sub: u32,
    c: &mut Conn,
    awaiting_rel: &mut HashSet<u16>,
) -> Result<(), BoxError> {
    let mut end = None;
    loop {
        // The clock runs once the publishers are done (no more acknowledged
        // messages to come).
        if end.is_none() && ctx.publishers_done.load(Ordering::Acquire) {
            end = Some(Instant::now() + Duration::from_secs_f64(ctx.args.drain));
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            return Ok(());
        }
        if end.is_some() && missing_for(ctx, sub) == 0 {
            // Every exchange completed, too (PUBREL answered).
            c.flush().await?;
            if awaiting_rel.is_empty() {
                return Ok(());
            }
        }
        c.ping_if_idle()?;
        c.flush().await?;
        tokio::select! {
            p = c.recv() => on_delivery(ctx, sub, c, p?, awaiting_rel)?,
            _ = sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Acknowledged messages of the tracked publishers subscriber `sub` has not
/// received.
fn missing_for(ctx: &Ctx, sub: u32) -> u64 {
    let d = ctx.deliveries[sub as usize]
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut missing = 0;
    for (n, p) in ctx.publishers.iter().enumerate() {
        if p.qos == QoS::AtMostOnce {
            continue;
        }
        let state = p.state.lock().unwrap_or_else(|p| p.into_inner());
        for (seq, s) in state.iter().enumerate() {
            if *s != 0 && d[n].get(seq).copied().unwrap_or(0) == 0 {
                missing += 1;
            }
        }
    }
    missing
}

/// A tracked publisher: stamps (n, seq), reconnects every few seconds with
/// a clean DISCONNECT once its in-flight messages are settled.
async fn publisher(ctx: Arc<Ctx>, n: u32) {
    let who = format!("publisher {n}");
    let qos = ctx.publishers[n as usize].qos;
    let version = version_for(n / 3);
    let link = if (n / 3) % 2 == 1 && ctx.tls.is_some() {
        Link::Tls
    } else {
        Link::Plain
    };
    let topic = match TopicName::new(ctx.topic(&format!("data/{n}"))) {
        Ok(t) => t,
        Err(e) => return ctx.error(&who, e),
    };
    let period = Duration::from_secs_f64(1.0 / ctx.args.rate.max(0.01));
    let mut rng = Rng::new(1000 + u64::from(n));
    let mut seq: u64 = 0;
    let id = format!("{}-pub-{n}", ctx.prefix.replace('/', "-"));
    while !ctx.stopping() {
        let (mut c, _) = match Conn::open(&ctx, link, version, &id, |_| {}).await {
            Ok(c) => c,
            Err(e) => {
                ctx.error(&who, e);
                ctx.pause(Duration::from_secs(1)).await;
                continue;
            }
        };
        let session_end = tokio::time::Instant::now() + rng.millis(4000, 10000);
        // packet id -> (seq, PUBREC received)
        let mut inflight: HashMap<u16, (u64, bool)> = HashMap::new();
        let mut next = tokio::time::Instant::now();
        let mut publishing = true;
        let mut give_up = None;
        let result: Result<(), BoxError> = async {
            loop {
                let now = tokio::time::Instant::now();
                if publishing && (now >= session_end || ctx.stopping()) {
                    publishing = false;
                    give_up = Some(now + Duration::from_secs(10));
                }
                if !publishing && inflight.is_empty() {
                    return Ok(());
                }
                if give_up.is_some_and(|g| now >= g) {
                    return Err("in-flight messages not acknowledged within 10 s".into());
                }
                if publishing && now >= next && inflight.len() < INFLIGHT {
                    let mut payload = BytesMut::with_capacity(64);
                    payload.put_u32(n);
                    payload.put_u64(seq);
                    payload.resize(64, b'.');
                    let mut p = Publish::new(topic.clone(), payload.freeze());
                    p.qos = qos;
                    if qos != QoS::AtMostOnce {
                        let id = c.packet_id();
                        p.packet_id = Some(id);
                        inflight.insert(id.get(), (seq, false));
                    }
                    c.queue(&Packet::Publish(p))?;
                    bump(&ctx.counters.published[qos as usize]);
                    seq += 1;
                    next += period;
                    if next < now {
                        next = now + period;
                    }
                }
                c.ping_if_idle()?;
                c.flush().await?;
                let wake = if publishing {
                    next.min(session_end)
                } else {
                    now + Duration::from_millis(200)
                };
                tokio::select! {
                    p = c.recv() => on_ack(&ctx, n, &mut c, p?, &mut inflight)?,
                    _ = sleep_until(wake) => {}
                }
            }
        }
        .await;
        match result {
            Ok(()) => c.disconnect(&ctx).await,
            Err(e) => {
                // PUBREC without PUBCOMP: the broker may drop such a message
                // with the publisher's session, so it does not count.
                let tracked = &ctx.publishers[n as usize];
                let mut state = tracked.state.lock().unwrap_or_else(|p| p.into_inner());
                for (seq, recd) in inflight.values() {
                    if *recd {
                        if let Some(s) = state.get_mut(*seq as usize) {
                            *s = 0;
                        }
                        bump(&ctx.counters.unsettled);
                    }
                }
                drop(state);
                ctx.error(&who, e);
            }
        }
        ctx.pause(rng.millis(100, 500)).await;
    }
}

fn on_ack(
    ctx: &Ctx,
    n: u32,
    c: &mut Conn,
    p: Packet,
    inflight: &mut HashMap<u16, (u64, bool)>,
) -> Result<(), BoxError> {
    let tracked = &ctx.publishers[n as usize];
    let mark = |seq: u64, v: u8| {
        let mut state = tracked.state.lock().unwrap_or_else(|p| p.into_inner());
        let seq = seq as usize;
        if state.len() <= seq {
            state.resize(seq + 1, 0);
        }
        state[seq] = v;
    };
    match p {
        Packet::PubAck(a) => {
            if let Some((seq, _)) = inflight.remove(&a.packet_id.get()) {
                if !a.reason_code.is_error() {
                    mark(seq, 2);
                }
            }
        }
        Packet::PubRec(a) => {
            if let Some(entry) = inflight.get_mut(&a.packet_id.get()) {
                if a.reason_code.is_error() {
                    inflight.remove(&a.packet_id.get());
                } else {
                    entry.1 = true;
                    mark(entry.0, 1);
                    c.queue(&Packet::PubRel(PubRel::new(a.packet_id)))?;
                }
            }
        }
        Packet::PubComp(a) => {
            if let Some((seq, true)) = inflight.remove(&a.packet_id.get()) {
                mark(seq, 2);
            }
        }
        Packet::Disconnect(d) => {
            return Err(
                format!("the broker sent DISCONNECT {}", d.reason_code.description()).into(),
            )
        }
        _ => {}
    }
    Ok(())
}

/// QoS 0 bulk messages to PREFIX/bulk for the non-readers.
async fn bulk_publisher(ctx: Arc<Ctx>) {
    let who = "bulk publisher";
    let topic = match TopicName::new(ctx.topic("bulk")) {
        Ok(t) => t,
        Err(e) => return ctx.error(who, e),
    };
    let payload = Bytes::from(vec![b'b'; ctx.args.bulk_size]);
    let period = Duration::from_secs_f64(1.0 / ctx.args.bulk_rate.max(0.01));
    let id = format!("{}-bulk", ctx.prefix.replace('/', "-"));
    while !ctx.stopping() {
        let (mut c, _) =
            match Conn::open(&ctx, Link::Plain, ProtocolVersion::V3_1_1, &id, |_| {}).await {
                Ok(c) => c,
                Err(e) => {
                    ctx.error(who, e);
                    ctx.pause(Duration::from_secs(1)).await;
                    continue;
                }
            };
        let mut next = tokio::time::Instant::now();
        let r: Result<(), BoxError> = async {
            while !ctx.stopping() {
                let p = Publish::new(topic.clone(), payload.clone());
                c.queue(&Packet::Publish(p))?;
                c.ping_if_idle()?;
                c.flush().await?;
                bump(&ctx.counters.bulk_published);
                next += period;
                tokio::select! {
                    p = c.recv() => if let Packet::Disconnect(_) = p? {
                        return Err("the broker sent DISCONNECT".into());
                    },
                    _ = sleep_until(next) => {}
                }
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => c.disconnect(&ctx).await,
            Err(e) => ctx.error(who, e),
        }
    }
}

/// Connect, subscribe, publish at QoS 0, 1 and 2 to itself, receive the
/// three, DISCONNECT; again.
async fn churner(ctx: Arc<Ctx>, k: u32) {
    let who = format!("churner {k}");
    let version = version_for(k);
    let link = if k % 2 == 1 && ctx.tls.is_some() {
        Link::Tls
    } else {
        Link::Plain
    };
    let mut rng = Rng::new(2000 + u64::from(k));
    let filter = ctx.topic(&format!("churn/{k}"));
    let Ok(topic) = TopicName::new(filter.clone()) else {
        return;
    };
    let mut cycle = 0u64;
    while !ctx.stopping() {
        cycle += 1;
        let id = format!("{}-churn-{k}-{cycle}", ctx.prefix.replace('/', "-"));
        let r: Result<(), BoxError> = async {
            let (mut c, _) = Conn::open(&ctx, link, version, &id, |_| {}).await?;
            c.subscribe(&filter, QoS::ExactlyOnce, |_, _| Ok(()))
                .await?;
            let mut acked = [false, false, false];
            let mut got = [false, false, false];
            let mut rel_pending = HashSet::new();
            for q in 0..3u8 {
                let mut p = Publish::new(topic.clone(), Bytes::from(vec![q; 16]));
                p.qos = qos_of(q);
                if q > 0 {
                    p.packet_id = Some(c.packet_id());
                } else {
                    acked[0] = true;
                }
                c.queue(&Packet::Publish(p))?;
                bump(&ctx.counters.published[q as usize]);
            }
            c.flush().await?;
            let deadline = tokio::time::Instant::now() + SETUP;
            while !(got.iter().all(|g| *g) && acked.iter().all(|a| *a) && rel_pending.is_empty())
            {
                let p = tokio::select! {
                    p = c.recv() => p?,
                    _ = sleep_until(deadline) => {
                        let lost = (1..3).filter(|&q| acked[q] && !got[q]).count() as u64;
                        ctx.churn_lost.fetch_add(lost, Ordering::Relaxed);
                        return Err(format!("own messages not back within {SETUP:?} (got {got:?}, acked {acked:?})").into());
                    }
                };
                match p {
                    Packet::Publish(p) => {
                        let q = p.payload.first().copied().unwrap_or(0).min(2) as usize;
                        if q == 0 {
                            bump(&ctx.counters.qos0_delivered);
                        }
                        got[q] = true;
                        match (p.qos, p.packet_id) {
                            (QoS::AtLeastOnce, Some(id)) => c.queue(&Packet::PubAck(PubAck::new(id)))?,
                            (QoS::ExactlyOnce, Some(id)) => c.queue(&Packet::PubRec(PubRec::new(id)))?,
                            _ => {}
                        }
                    }
                    Packet::PubRel(r) => c.queue(&Packet::PubComp(PubComp::new(r.packet_id)))?,
                    Packet::PubAck(_) => acked[1] = true,
                    Packet::PubRec(r) => {
                        acked[2] = true;
                        rel_pending.insert(r.packet_id.get());
                        c.queue(&Packet::PubRel(PubRel::new(r.packet_id)))?;
                    }
                    Packet::PubComp(r) => {
                        rel_pending.remove(&r.packet_id.get());
                    }
                    Packet::Disconnect(d) => {
                        return Err(format!("the broker sent DISCONNECT {}", d.reason_code.description()).into())
                    }
                    _ => {}
                }
                c.flush().await?;
            }
            c.disconnect(&ctx).await;
            bump(&ctx.counters.churn_cycles);
            Ok(())
        }
        .await;
        if let Err(e) = r {
            ctx.error(&who, e);
        }
        ctx.pause(rng.millis(50, 300)).await;
    }
}

/// Subscribes and reads, then vanishes: FIN, RST, or half a PUBLISH then FIN.
async fn dropper(ctx: Arc<Ctx>, k: u32) {
    let who = format!("dropper {k}");
    let mut rng = Rng::new(3000 + u64::from(k));
    let mut cycle = 0u64;
    while !ctx.stopping() {
        cycle += 1;
        let id = format!("{}-drop-{k}-{cycle}", ctx.prefix.replace('/', "-"));
        let r: Result<(), BoxError> = async {
            let tcp = tcp(&ctx, ctx.args.port, false).await?;
            if cycle % 3 == 0 {
                // Closing it then sends RST.
                tcp.set_zero_linger()?;
            }
            let (mut c, _) = Conn::handshake(&ctx, tcp, None, version_for(k), &id, |_| {}).await?;
            let mut awaiting = HashSet::new();
            c.subscribe(&ctx.topic("data/#"), QoS::AtLeastOnce, |_, _| Ok(()))
                .await?;
            let end = tokio::time::Instant::now() + rng.millis(300, 2000);
            loop {
                c.flush().await?;
                tokio::select! {
                    p = c.recv() => on_delivery_untracked(&mut c, p?, &mut awaiting)?,
                    _ = sleep_until(end) => break,
                }
            }
            if cycle % 3 == 1 {
                // A PUBLISH header announcing 100 bytes, and 10 of them.
                c.io.write_all(&[0x30, 100, 0, 5, b's', b'o', b'a', b'k', b'/', b'x'])
                    .await?;
            }
            drop(c);
            bump(&ctx.counters.abrupt_drops);
            Ok(())
        }
        .await;
        if let Err(e) = r {
            ctx.error(&who, e);
        }
        ctx.pause(rng.millis(100, 500)).await;
    }
}

/// Acknowledges without recording (droppers).
fn on_delivery_untracked(
    c: &mut Conn,
    p: Packet,
    awaiting: &mut HashSet<u16>,
) -> Result<(), BoxError> {
    match p {
        Packet::Publish(p) => match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => c.queue(&Packet::PubAck(PubAck::new(id)))?,
            (QoS::ExactlyOnce, Some(id)) => {
                awaiting.insert(id.get());
                c.queue(&Packet::PubRec(PubRec::new(id)))?
            }
            _ => {}
        },
        Packet::PubRel(r) => {
            awaiting.remove(&r.packet_id.get());
            c.queue(&Packet::PubComp(PubComp::new(r.packet_id)))?
        }
        _ => {}
    }
    Ok(())
}

/// CONNECT with a short keep alive, then silence until the broker closes.
async fn half_open(ctx: Arc<Ctx>, k: u32) {
    let who = format!("half-open {k}");
    let ka = ctx.args.half_open_keep_alive.max(1);
    // 1.5 x Keep Alive, and time for a loaded machine.
    let wait = Duration::from_secs(u64::from(ka) * 3 / 2 + 10);
    let mut cycle = 0u64;
    while !ctx.stopping() {
        cycle += 1;
        let id = format!("{}-half-{k}-{cycle}", ctx.prefix.replace('/', "-"));
        match Conn::open(&ctx, Link::Plain, version_for(k), &id, |c| {
            c.keep_alive = ka
        })
        .await
        {
            Ok((mut c, _)) => {
                if closed_within(&ctx, &mut c.io, wait, true).await {
                    bump(&ctx.counters.half_open_closed_by_broker);
                } else if !ctx.stopping() {
                    bump(&ctx.counters.half_open_not_closed);
                }
            }
            Err(e) => {
                ctx.error(&who, e);
            }
        }
        ctx.pause(Duration::from_millis(100)).await;
    }
}

/// CONNECT, then bytes that are not MQTT.
async fn garbage(ctx: Arc<Ctx>, k: u32) {
    let who = format!("garbage {k}");
    let mut rng = Rng::new(4000 + u64::from(k));
    let mut cycle = 0u64;
    while !ctx.stopping() {
        cycle += 1;
        let id = format!("{}-garbage-{k}-{cycle}", ctx.prefix.replace('/', "-"));
        let version = version_for(k);
        let mut c = match Conn::open(&ctx, Link::Plain, version, &id, |c| c.keep_alive = 5).await {
            Ok((c, _)) => c,
            Err(e) => {
                ctx.error(&who, e);
                ctx.pause(Duration::from_secs(1)).await;
                continue;
            }
        };
        let r: Result<(), BoxError> = async {
            let bytes: Vec<u8> = match cycle % 4 {
                // Reserved packet type 0.
                0 => vec![0x00, 0x00],
                // A Remaining Length of five bytes.
                1 => vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
                // A second CONNECT.
                2 => {
                    let mut b = BytesMut::new();
                    Packet::Connect(Box::new(Connect::new(version, id.clone())))
                        .encode(version, &mut b)?;
                    b.to_vec()
                }
                // Random bytes.
                _ => (0..64).map(|_| rng.next() as u8).collect(),
            };
            c.io.write_all(&bytes).await?;
            // Garbage may announce a long packet: keep alive (5 s) ends it then.
            if closed_within(&ctx, &mut c.io, Duration::from_secs(20), false).await {
                bump(&ctx.counters.garbage_closed_by_broker);
            } else {
                bump(&ctx.counters.garbage_not_closed);
            }
            Ok(())
        }
        .await;
        if r.is_err() {
            // The broker closed before all the garbage was written.
            bump(&ctx.counters.garbage_closed_by_broker);
        }
        ctx.pause(rng.millis(100, 400)).await;
    }
}

/// A tiny receive buffer, subscribed to PREFIX/bulk, never reads.
async fn non_reader(ctx: Arc<Ctx>, k: u32) {
    let who = format!("non-reader {k}");
    let hold = Duration::from_secs_f64(ctx.args.non_reader_hold);
    let mut cycle = 0u64;
    while !ctx.stopping() {
        cycle += 1;
        let id = format!("{}-stuck-{k}-{cycle}", ctx.prefix.replace('/', "-"));
        let r: Result<(), BoxError> = async {
            let tcp = tcp(&ctx, ctx.args.port, true).await?;
            // Keep alive 0: only a write time-out can end it.
            let (mut c, _) = Conn::handshake(&ctx, tcp, None, ProtocolVersion::V3_1_1, &id, |c| {
                c.keep_alive = 0
            })
            .await?;
            c.subscribe(&ctx.topic("bulk"), QoS::AtMostOnce, |_, _| Ok(()))
                .await?;
            let stopped = ctx.pause(hold).await;
            // Now read: the broker closed it if the bytes end.
            if closed_within(&ctx, &mut c.io, Duration::from_secs(5), false).await {
                bump(&ctx.counters.non_reader_closed_by_broker);
            } else if !stopped {
                bump(&ctx.counters.non_reader_not_closed);
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            ctx.error(&who, e);
        }
        ctx.pause(Duration::from_millis(200)).await;
    }
}

/// The first bytes of a real ClientHello.
fn client_hello(ctx: &Ctx, config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(name) = mqtt_tls::server_name(&ctx.args.host) {
        if let Ok(mut conn) = rustls::ClientConnection::new(config.clone(), name) {
            let _ = conn.write_tls(&mut out);
        }
    }
    out
}

/// TCP to the TLS port, then nothing or half a ClientHello, until the
/// broker closes.
async fn tls_stall(ctx: Arc<Ctx>, k: u32) {
    let Some(tls) = &ctx.tls else { return };
    let who = format!("tls stall {k}");
    let hello = client_hello(&ctx, &tls.good);
    let wait = Duration::from_secs_f64(ctx.args.stall_wait);
    let mut cycle = 0u64;
    while !ctx.stopping() {
        cycle += 1;
        let r: Result<(), BoxError> = async {
            let mut tcp = tcp(&ctx, tls.port, false).await?;
            if cycle % 2 == 0 {
                tcp.write_all(&hello[..hello.len() / 2]).await?;
            }
            if closed_within(&ctx, &mut tcp, wait, true).await {
                bump(&ctx.counters.tls_stall_closed_by_broker);
            } else if !ctx.stopping() {
                bump(&ctx.counters.tls_stall_not_closed);
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            ctx.error(&who, e);
        }
        ctx.pause(Duration::from_millis(100)).await;
    }
}

/// Mutual TLS with no client certificate, or one from another CA.
async fn tls_failure(ctx: Arc<Ctx>, k: u32) {
    let Some(tls) = &ctx.tls else { return };
    let mut rng = Rng::new(5000 + u64::from(k));
    let mut cycle = 0u64;
    while !ctx.stopping() {
        cycle += 1;
        let config = if cycle % 2 == 0 {
            tls.no_cert.clone()
        } else {
            tls.foreign_cert.clone()
        };
        let id = format!("{}-badtls-{k}-{cycle}", ctx.prefix.replace('/', "-"));
        let r = async {
            let tcp = tcp(&ctx, tls.port, false).await?;
            Conn::handshake(&ctx, tcp, Some(config), version_for(k), &id, |_| {}).await
        }
        .await;
        match r {
            Ok((c, _)) => {
                bump(&ctx.counters.tls_failure_accepted);
                c.disconnect(&ctx).await;
            }
            Err(_) => bump(&ctx.counters.tls_failure_refused),
        }
        ctx.pause(rng.millis(100, 400)).await;
    }
}

// ----------------------------------------------------------------- sampling

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: f64,
    rss_kib: Option<u64>,
    fds: Option<u64>,
    tasks: Option<u64>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// `mqtt_broker_runtime_alive_tasks` from the broker's `/metrics`.
async fn tasks(ctx: &Ctx) -> Option<u64> {
    let port = ctx.args.metrics_port?;
    let get = async {
        let mut tcp = TcpStream::connect(ctx.addr(port)).await.ok()?;
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        tcp.read_to_string(&mut body).await.ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix("mqtt_broker_runtime_alive_tasks "))
            .and_then(|v| v.trim().parse().ok())
    };
    timeout(SETUP, get).await.ok().flatten()
}

async fn sample(ctx: &Ctx, start: Instant) -> Sample {
    let pid = ctx.args.broker_pid;
    // Descriptors first: the scrape's own connection is not one of them.
    let fds = pid.and_then(fds);
    let rss_kib = pid.and_then(rss_kib);
    let tasks = tasks(ctx).await;
    Sample {
        at: start.elapsed().as_secs_f64(),
        rss_kib,
        fds,
        tasks,
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

fn show(s: &Sample) {
    eprintln!(
        "t={:>7.1}s rss={} KiB fds={} tasks={}",
        s.at,
        opt(s.rss_kib),
        opt(s.fds),
        opt(s.tasks)
    );
}

// ------------------------------------------------------------------- report

struct Verdict {
    acked: [u64; 3],
    delivered: u64,
    lost: u64,
    qos2_duplicates: u64,
    qos1_duplicates: u64,
}

/// Every acknowledged message of the tracked publishers against what every
/// subscriber received.
fn verdict(ctx: &Ctx) -> Verdict {
    let mut v = Verdict {
        acked: [0; 3],
        delivered: 0,
        lost: ctx.churn_lost.load(Ordering::Relaxed),
        qos2_duplicates: 0,
        qos1_duplicates: 0,
    };
    for (n, p) in ctx.publishers.iter().enumerate() {
        if p.qos == QoS::AtMostOnce {
            continue;
        }
        let state = p.state.lock().unwrap_or_else(|p| p.into_inner());
        let acked: Vec<usize> = (0..state.len()).filter(|&s| state[s] != 0).collect();
        v.acked[p.qos as usize] += acked.len() as u64;
        for d in &ctx.deliveries {
            let d = d.lock().unwrap_or_else(|p| p.into_inner());
            for &seq in &acked {
                match d[n].get(seq).copied().unwrap_or(0) {
                    0 => v.lost += 1,
                    1 => v.delivered += 1,
                    _ if p.qos == QoS::ExactlyOnce => {
                        v.delivered += 1;
                        v.qos2_duplicates += 1
                    }
                    _ => {
                        v.delivered += 1;
                        v.qos1_duplicates += 1
                    }
                }
            }
        }
    }
    v
}

fn tls_setup(args: &Args) -> Result<Option<(TlsSetup, PathBuf)>, BoxError> {
    let Some(port) = args.tls_port else {
        return Ok(None);
    };
    let (Some(cafile), Some(cert), Some(key)) = (&args.cafile, &args.cert, &args.key) else {
        return Err("--tls-port needs --cafile, --cert and --key".into());
    };
    let good = mqtt_tls::ClientTlsOptions::new()
        .cafile(cafile)
        .certfile(cert)
        .keyfile(key)
        .build()?;
    let no_cert = mqtt_tls::ClientTlsOptions::new().cafile(cafile).build()?;
    // A client certificate from a CA the broker does not know.
    let dir = std::env::temp_dir().join(format!("mqtt-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let other_ca = mqtt_tls::gen::CertificateAuthority::generate()?;
    let foreign = other_ca.issue_client("intruder")?;
    let (fcert, fkey) = (dir.join("foreign.crt"), dir.join("foreign.key"));
    foreign.write(&fcert, &fkey)?;
    let foreign_cert = mqtt_tls::ClientTlsOptions::new()
        .cafile(cafile)
        .certfile(&fcert)
        .keyfile(&fkey)
        .build()?;
    Ok(Some((
        TlsSetup {
            port,
            good,
            no_cert,
            foreign_cert,
        },
        dir,
    )))
}

struct Report {
    samples: Vec<Sample>,
    start: Sample,
    warm: Sample,
    end: Sample,
    rss_max: Option<u64>,
    leaked_fds: Option<i64>,
    leaked_tasks: Option<i64>,
    verdict: Verdict,
    counters: Vec<(&'static str, u64)>,
    errors: u64,
    error_log: Vec<String>,
    duration: f64,
}

impl Report {
    fn failed(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.verdict.lost > 0 {
            why.push(format!("{} acknowledged messages LOST", self.verdict.lost));
        }
        if self.verdict.qos2_duplicates > 0 {
            why.push(format!(
                "{} QoS 2 messages delivered twice",
                self.verdict.qos2_duplicates
            ));
        }
        if self.errors > 0 {
            why.push(format!(
                "{} well-behaved clients cut off or refused",
                self.errors
            ));
        }
        if self.leaked_fds.is_some_and(|d| d != 0) {
            why.push(format!(
                "descriptors: {} at the start, {} at the end (LEAK)",
                opt(self.start.fds),
                opt(self.end.fds)
            ));
        }
        if self.leaked_tasks.is_some_and(|d| d != 0) {
            why.push(format!(
                "tasks: {} at the start, {} at the end (LEAK)",
                opt(self.start.tasks),
                opt(self.end.tasks)
            ));
        }
        why
    }

    fn json(&self) -> String {
        let o = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        let oi = |v: Option<i64>| v.map_or("null".to_string(), |v| v.to_string());
        let mut s = String::from("{");
        let _ = write!(s, "\"duration_s\":{:.1},", self.duration);
        let _ = write!(
            s,
            "\"rss_kib\":{{\"start\":{},\"after_warmup\":{},\"max\":{},\"end\":{}}},",
            o(self.start.rss_kib),
            o(self.warm.rss_kib),
            o(self.rss_max),
            o(self.end.rss_kib)
        );
        let _ = write!(
            s,
            "\"fds\":{{\"start\":{},\"end\":{},\"leaked\":{}}},",
            o(self.start.fds),
            o(self.end.fds),
            oi(self.leaked_fds)
        );
        let _ = write!(
            s,
            "\"tasks\":{{\"start\":{},\"end\":{},\"leaked\":{}}},",
            o(self.start.tasks),
            o(self.end.tasks),
            oi(self.leaked_tasks)
        );
        let v = &self.verdict;
        let _ = write!(
            s,
            "\"messages\":{{\"acked_qos1\":{},\"acked_qos2\":{},\"deliveries_checked\":{},\"lost\":{},\"qos2_duplicates\":{},\"qos1_duplicates\":{}}},",
            v.acked[1], v.acked[2], v.delivered, v.lost, v.qos2_duplicates, v.qos1_duplicates
        );
        s.push_str("\"counters\":{");
        for (i, (k, v)) in self.counters.iter().enumerate() {
            let _ = write!(s, "{}\"{k}\":{v}", if i > 0 { "," } else { "" });
        }
        let _ = write!(s, "}},\"errors\":{},\"error_log\":[", self.errors);
        for (i, e) in self.error_log.iter().enumerate() {
            let e = e.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = write!(s, "{}\"{e}\"", if i > 0 { "," } else { "" });
        }
        s.push_str("],\"samples\":[");
        for (i, x) in self.samples.iter().enumerate() {
            let _ = write!(
                s,
                "{}[{:.1},{},{},{}]",
                if i > 0 { "," } else { "" },
                x.at,
                o(x.rss_kib),
                o(x.fds),
                o(x.tasks)
            );
        }
        let failed = self.failed();
        let _ = write!(s, "],\"ok\":{}}}", failed.is_empty());
        s
    }

    fn text(&self) -> String {
        let mut s = String::new();
        let v = &self.verdict;
        let _ = writeln!(s, "soak of {:.0} s", self.duration);
        let _ = writeln!(
            s,
            "RSS KiB: start {}, after warm-up {} (t={:.0}s), max {}, end {}",
            opt(self.start.rss_kib),
            opt(self.warm.rss_kib),
            self.warm.at,
            opt(self.rss_max),
            opt(self.end.rss_kib)
        );
        let _ = writeln!(
            s,
            "descriptors: start {}, end {}; tasks: start {}, end {}",
            opt(self.start.fds),
            opt(self.end.fds),
            opt(self.start.tasks),
            opt(self.end.tasks)
        );
        let _ = writeln!(
            s,
            "acknowledged: QoS 1 {}, QoS 2 {}; deliveries checked {}, lost {}, QoS 2 twice {}, QoS 1 again {}",
            v.acked[1], v.acked[2], v.delivered, v.lost, v.qos2_duplicates, v.qos1_duplicates
        );
        for (k, v) in &self.counters {
            let _ = writeln!(s, "  {k}: {v}");
        }
        for e in &self.error_log {
            let _ = writeln!(s, "  error: {e}");
        }
        let failed = self.failed();
        if failed.is_empty() {
            let _ = writeln!(s, "OK: nothing lost, nothing leaked");
        } else {
            for f in failed {
                let _ = writeln!(s, "FAILED: {f}");
            }
        }
        s
    }
}

async fn run(args: Args) -> Result<Report, BoxError> {
    let tls = tls_setup(&args)?;
    let (tls, tmp_dir) = match tls {
        Some((t, d)) => (Some(t), Some(d)),
        None => (None, None),
    };
    let n_pubs = args.publishers * 3;
    let publishers = (0..n_pubs)
        .map(|n| Tracked {
            qos: qos_of((n % 3) as u8),
            state: Mutex::new(Vec::new()),
        })
        .collect();
    let deliveries = (0..args.subscribers)
        .map(|_| Mutex::new(vec![Vec::new(); n_pubs as usize]))
        .collect();
    let ctx = Arc::new(Ctx {
        prefix: format!("{}/{}", args.topic, std::process::id()),
        args: args.clone(),
        tls,
        counters: Counters::default(),
        stopping: AtomicBool::new(false),
        publishers_done: AtomicBool::new(false),
        stop: Notify::new(),
        publishers,
        deliveries,
        error_log: Mutex::new(Vec::new()),
        churn_lost: AtomicU64::new(0),
    });
    let start = Instant::now();
    // The baseline: two samples 0.5 s apart that agree (a broker that just
    // started may still open a descriptor or two, e.g. its signal pipe).
    let mut first = sample(&ctx, start).await;
    for _ in 0..10 {
        sleep(Duration::from_millis(500)).await;
        let again = sample(&ctx, start).await;
        let same = again.fds == first.fds && again.tasks == first.tasks;
        first = again;
        if same {
            break;
        }
    }
    show(&first);
    let mut samples = vec![first];

    // Subscribers first: every tracked message has all of them subscribed.
    let ready = Arc::new(tokio::sync::Barrier::new(args.subscribers as usize + 1));
    let mut subs = Vec::new();
    for i in 0..args.subscribers {
        subs.push(tokio::spawn(subscriber(ctx.clone(), i, ready.clone())));
    }
    timeout(Duration::from_secs(30), ready.wait())
        .await
        .map_err(|_| {
            format!(
                "the subscribers could not subscribe within 30 s: {:?}",
                ctx.error_log.lock().map(|l| l.clone()).unwrap_or_default()
            )
        })?;
    let mut others = Vec::new();
    let mut pubs = Vec::new();
    for n in 0..n_pubs {
        pubs.push(tokio::spawn(publisher(ctx.clone(), n)));
    }
    if args.non_readers > 0 {
        others.push(tokio::spawn(bulk_publisher(ctx.clone())));
    }
    for k in 0..args.churners {
        others.push(tokio::spawn(churner(ctx.clone(), k)));
    }
    for k in 0..args.droppers {
        others.push(tokio::spawn(dropper(ctx.clone(), k)));
    }
    for k in 0..args.half_open {
        others.push(tokio::spawn(half_open(ctx.clone(), k)));
    }
    for k in 0..args.garbage {
        others.push(tokio::spawn(garbage(ctx.clone(), k)));
    }
    for k in 0..args.non_readers {
        others.push(tokio::spawn(non_reader(ctx.clone(), k)));
    }
    if ctx.tls.is_some() {
        for k in 0..args.tls_stalls {
            others.push(tokio::spawn(tls_stall(ctx.clone(), k)));
        }
        for k in 0..args.tls_failures {
            others.push(tokio::spawn(tls_failure(ctx.clone(), k)));
        }
    }

    let churn_start = Instant::now();
    let end = churn_start + Duration::from_secs_f64(args.duration);
    let every = Duration::from_secs_f64(args.sample_every.max(0.1));
    let mut next = churn_start + every;
    while next < end {
        sleep_until(next.into()).await;
        let s = sample(&ctx, start).await;
        show(&s);
        samples.push(s);
        next += every;
    }
    sleep_until(end.into()).await;
    eprintln!("churn over: settling publishers, draining subscribers");
    ctx.stopping.store(true, Ordering::Release);
    ctx.stop.notify_waiters();
    for p in pubs {
        let _ = p.await;
    }
    ctx.publishers_done.store(true, Ordering::Release);
    for s in subs {
        let _ = s.await;
    }
    for o in others {
        let _ = o.await;
    }
    let closed = sample(&ctx, start).await;
    show(&closed);
    samples.push(closed);
    // Closes are asynchronous: give the broker time to reap them.
    let settle_end = Instant::now() + Duration::from_secs_f64(args.settle);
    let first = samples[0];
    let mut last = closed;
    loop {
        let fds_back = first.fds.is_none() || last.fds == first.fds;
        let tasks_back = first.tasks.is_none() || last.tasks == first.tasks;
        if (fds_back && tasks_back) || Instant::now() >= settle_end {
            break;
        }
        sleep(Duration::from_millis(500)).await;
        last = sample(&ctx, start).await;
    }
    show(&last);
    samples.push(last);
    if let Some(d) = tmp_dir {
        let _ = std::fs::remove_dir_all(d);
    }

    let warmup = args.warmup.unwrap_or((args.duration / 5.0).min(60.0));
    let warm = samples
        .iter()
        .find(|s| s.at >= warmup)
        .copied()
        .unwrap_or(last);
    let diff = |a: Option<u64>, b: Option<u64>| Some(b? as i64 - a? as i64);
    let c = &ctx.counters;
    let counters = vec![
        ("connects", get(&c.connects)),
        ("tls_connects", get(&c.tls_connects)),
        ("clean_disconnects", get(&c.clean_disconnects)),
        ("abrupt_drops", get(&c.abrupt_drops)),
        ("churn_cycles", get(&c.churn_cycles)),
        ("published_qos0", get(&c.published[0])),
        ("published_qos1", get(&c.published[1])),
        ("published_qos2", get(&c.published[2])),
        ("qos0_delivered", get(&c.qos0_delivered)),
        ("bulk_published", get(&c.bulk_published)),
        ("qos2_unsettled", get(&c.unsettled)),
        (
            "half_open_closed_by_broker",
            get(&c.half_open_closed_by_broker),
        ),
        ("half_open_not_closed", get(&c.half_open_not_closed)),
        ("garbage_closed_by_broker", get(&c.garbage_closed_by_broker)),
        ("garbage_not_closed", get(&c.garbage_not_closed)),
        (
            "non_reader_closed_by_broker",
            get(&c.non_reader_closed_by_broker),
        ),
        ("non_reader_not_closed", get(&c.non_reader_not_closed)),
        (
            "tls_stall_closed_by_broker",
            get(&c.tls_stall_closed_by_broker),
        ),
        ("tls_stall_not_closed", get(&c.tls_stall_not_closed)),
        ("tls_failure_refused", get(&c.tls_failure_refused)),
        ("tls_failure_accepted", get(&c.tls_failure_accepted)),
    ];
    Ok(Report {
        rss_max: samples.iter().filter_map(|s| s.rss_kib).max(),
        leaked_fds: diff(first.fds, last.fds),
        leaked_tasks: diff(first.tasks, last.tasks),
        verdict: verdict(&ctx),
        counters,
        errors: get(&c.errors),
        error_log: ctx.error_log.lock().map(|l| l.clone()).unwrap_or_default(),
        start: first,
        warm,
        end: last,
        samples,
        duration: args.duration,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt-soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            if report.failed().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("mqtt-soak: {e}");
            ExitCode::from(2)
        }
    }
}
