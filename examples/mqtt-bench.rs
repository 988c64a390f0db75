//! `mqtt-bench`: a load generator that measures an MQTT broker over TCP or TLS.
//!
//! ```text
//! mqtt-bench fan-in  -c 10 -q 1 -d 5        # 10 publishers -> 1 subscriber, QoS 1, 5 s
//! mqtt-bench fan-out -c 10 -q 0 -s 256      # 1 publisher -> 10 subscribers, 256-byte payloads
//! mqtt-bench p2p -c 20 -q 2 -p 8883 --cafile ca.crt --cert client.crt --key client.key --json
//! mqtt-bench fan-in -c 1 -q 1 -p 1884 --sub-port 1883  # through a bridge from :1884 to :1883
//! ```
//!
//! Every payload starts with the publisher's number, a sequence number and the
//! send time, so the subscribers report messages per second, latency
//! percentiles, duplicates, and lost messages: at QoS 1 and 2 a message the
//! broker acknowledged (PUBACK, or PUBREC for QoS 2) that a subscriber never
//! received is LOST, and the tool exits with status 1 (status 2: the run
//! itself failed, e.g. a connection was refused or dropped).
//!
//! ## Pacing: what "as fast as the broker accepts" means
//! - QoS 1/2: each publisher keeps at most `--inflight` messages unacknowledged
//!   (capped by a 5.0 broker's Receive Maximum), so it waits for the broker
//!   rather than for itself.
//! - Every QoS: each publisher also keeps at most `--window` messages sent but
//!   not yet received by its slowest subscriber (the window is shared among
//!   the publishers of a fan-in). Without it a fan-in overruns the one
//!   subscriber: the broker's queue for it fills and the broker drops messages
//!   (Mosquitto beyond `max_queued_messages`), so the tool would measure the
//!   queue limit, not the broker's speed. The default, 100, keeps the pipe full
//!   on loopback (a larger window only adds queueing delay) and stays clear of
//!   queue limits: Mosquitto 2.0.11 was seen dropping acknowledged QoS 1
//!   messages in a 10-publisher fan-in with 200 outstanding. At QoS 0, if the
//!   slowest subscriber makes no progress for 1 s, the outstanding messages
//!   are written off for pacing (they still count as missing at the end); at
//!   QoS 1/2 nothing is written off, so a broker that loses messages slows the
//!   run down and fails it. `--window 0` turns the window off.
//! - `--rate R` additionally limits each publisher to R messages per second.
//!
//! Publishing stops after `--duration` seconds (or `--count` messages per
//! publisher); then publishers wait at most `--drain` seconds for their
//! acknowledgements and subscribers at most `--drain` seconds more for the
//! messages sent, so every run ends by itself.
#![forbid(unsafe_code)]

use bytes::{Buf, Bytes, BytesMut};
use clap::{ArgAction, Parser, ValueEnum};
use mqtt_codec::{
    Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Payload header: publisher number (u32), sequence number (u64), send time
/// in nanoseconds since the run's base instant (u64), all big-endian.
const STAMP_LEN: usize = 4 + 8 + 8;
/// A connection encodes up to this many bytes before it writes them at once.
const BATCH_BYTES: usize = 64 * 1024;
const READ_BUF_BYTES: usize = 64 * 1024;
const KEEP_ALIVE_SECS: u16 = 60;
const PING_AFTER: Duration = Duration::from_secs(30);
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// QoS 0: no progress at the slowest subscriber for this long, write the window off.
const STALL: Duration = Duration::from_secs(1);
/// QoS 0 drain: stop waiting after this long without a message.
const QOS0_IDLE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// N publishers -> 1 subscriber, one topic.
    FanIn,
    /// 1 publisher -> N subscribers, one topic.
    FanOut,
    /// N publisher/subscriber pairs, each pair on its own topic.
    P2p,
}

#[path = "common/load_version.rs"]
mod load_version;
use load_version::Version;

/// Load generator for MQTT brokers: fan-in, fan-out and point-to-point.
#[derive(Parser, Debug)]
#[command(name = "mqtt-bench", about, disable_help_flag = true)]
struct Args {
    /// fan-in (N publishers -> 1 subscriber), fan-out (1 -> N) or p2p (N pairs).
    #[arg(value_enum)]
    scenario: Scenario,
    /// Broker host (an IP address or the name in its TLS certificate).
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// The subscribers' port, when they use another broker than the
    /// publishers (a bridge between the two carries the messages).
    #[arg(long)]
    sub_port: Option<u16>,
    /// N: publishers (fan-in), subscribers (fan-out) or pairs (p2p).
    #[arg(short = 'c', long, default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Payload size in bytes (at least 20: the stamp).
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// QoS of the publishes and the subscriptions.
    #[arg(short = 'q', long, default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Seconds of publishing (default 5; with --count, a cap of 60).
    #[arg(short = 'd', long)]
    duration: Option<f64>,
    /// Messages per publisher (stops earlier than --duration if reached).
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// MQTT version: mqttv311 or mqttv5.
    #[arg(
        short = 'V',
        long = "protocol-version",
        value_enum,
        default_value = "mqttv311"
    )]
    protocol_version: Version,
    /// CA certificates to verify the broker with (turns TLS on).
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// Client certificate (needs --cafile).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client private key (needs --cert).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Messages per second per publisher (default: as fast as the broker accepts).
    #[arg(long)]
    rate: Option<f64>,
    /// QoS 1/2: unacknowledged messages per publisher.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    inflight: u16,
    /// Messages sent but not yet received per subscriber (0: no limit).
    #[arg(long, default_value_t = 100)]
    window: u64,
    /// Seconds to wait for acknowledgements, then for deliveries, after publishing.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Topic prefix (the process id and the scenario are appended).
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Persistent sessions (3.1.1 clean session 0; 5.0 Clean Start 0 and a
    /// 60 s Session Expiry Interval): what a broker with `persistence true`
    /// writes to disk. The sessions stay on the broker after the run.
    #[arg(long)]
    persistent: bool,
    /// Print the result as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// A connection's byte stream: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What every connection needs to dial and speak.
struct Dial {
    host: String,
    port: u16,
    tls: Option<Tls>,
    version: ProtocolVersion,
    persistent: bool,
}

type Handshake = Pin<Box<dyn Future<Output = Result<Box<dyn Io>, mqtt_tls::TlsError>> + Send>>;

/// The TLS side of dialling: the handshake (with the config built once) and
/// what mqtt-tls needs to explain a refusal.
struct Tls {
    handshake: Box<dyn Fn(TcpStream) -> Handshake + Send + Sync>,
    context: mqtt_tls::ClientContext,
}

/// A publisher's counters, shared with the subscribers it feeds.
struct PubShared {
    /// Sequence numbers below this have been issued (encoded for sending).
    issued: AtomicU64,
    /// First copies received, one counter per subscriber this publisher feeds.
    received: Vec<AtomicU64>,
    /// Woken when one of `received` moves.
    progress: Notify,
}

struct Shared {
    base: Instant,
    pubs: Vec<PubShared>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Who publishes where and who listens.
struct Plan {
    /// Topic of each publisher.
    publishers: Vec<TopicName>,
    subscribers: Vec<SubPlan>,
}

struct SubPlan {
    filter: TopicFilter,
    /// Publishers this subscriber hears.
    sources: Vec<u32>,
    /// This subscriber's index in each source's `received`.
    slot: usize,
}

fn plan(args: &Args) -> Result<Plan, BoxError> {
    let n = args.connections;
    let prefix = format!("{}/{}", args.topic, std::process::id());
    let topic = |s: String| -> Result<(TopicName, TopicFilter), BoxError> {
        Ok((TopicName::try_from(s.clone())?, TopicFilter::new(s)?))
    };
    Ok(match args.scenario {
        Scenario::FanIn => {
            let (name, filter) = topic(format!("{prefix}/fan-in"))?;
            Plan {
                publishers: vec![name; n as usize],
                subscribers: vec![SubPlan {
                    filter,
                    sources: (0..n).collect(),
                    slot: 0,
                }],
            }
        }
        Scenario::FanOut => {
            let (name, filter) = topic(format!("{prefix}/fan-out"))?;
            Plan {
                publishers: vec![name],
                subscribers: (0..n as usize)
                    .map(|slot| SubPlan {
                        filter: filter.clone(),
                        sources: vec![0],
                        slot,
                    })
                    .collect(),
            }
        }
        Scenario::P2p => {
            let mut publishers = Vec::with_capacity(n as usize);
            let mut subscribers = Vec::with_capacity(n as usize);
            for i in 0..n {
                let (name, filter) = topic(format!("{prefix}/p2p/{i}"))?;
                publishers.push(name);
                subscribers.push(SubPlan {
                    filter,
                    sources: vec![i],
                    slot: 0,
                });
            }
            Plan {
                publishers,
                subscribers,
            }
        }
    })
}

/// A growable set of sequence numbers.
#[derive(Default)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// Adds `i`; false if it was already there.
    fn insert(&mut self, i: u64) -> bool {
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            let len = (w + 1).max(self.words.len() * 2);
            self.words.resize(len, 0);
        }
        let bit = 1u64 << (i % 64);
        let fresh = self.words[w] & bit == 0;
        self.words[w] |= bit;
        fresh
    }

    /// Members of `self` missing from `other`.
    fn count_missing_from(&self, other: &Bitset) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let o = other.words.get(i).copied().unwrap_or(0);
                u64::from((w & !o).count_ones())
            })
            .sum()
    }
}

/// Latency histogram in nanoseconds: 32 linear buckets per power of two (~3%).
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    const SUB: u64 = 32;

    fn new() -> Self {
        Histogram {
            counts: vec![0; 60 * Self::SUB as usize],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < Self::SUB {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() as u64 - 5;
        ((shift + 1) * Self::SUB + ((v >> shift) - Self::SUB)) as usize
    }

    /// Smallest value of bucket `i`.
    fn lower(i: usize) -> u64 {
        let i = i as u64;
        if i < Self::SUB {
            return i;
        }
        let shift = i / Self::SUB - 1;
        (i % Self::SUB + Self::SUB) << shift
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The `q` quantile (upper edge of its bucket, at most the maximum).
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                let upper = Self::lower(i + 1).saturating_sub(1);
                return upper.min(self.max);
            }
        }
        self.max
    }
}

/// Dials, runs the TLS handshake if configured, sends CONNECT and waits for
/// a successful CONNACK. Returns the stream, bytes read past the CONNACK, and
/// the broker's Receive Maximum (5.0).
async fn open(dial: &Dial, client_id: &str) -> Result<(Box<dyn Io>, BytesMut, u16), BoxError> {
    let addr = format!("{}:{}", dial.host.trim_matches(['[', ']']), dial.port);
    let addr = if dial.host.contains(':') {
        format!("[{}]:{}", dial.host.trim_matches(['[', ']']), dial.port)
    } else {
        addr
    };
    let tcp = timeout(SETUP_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    tcp.set_nodelay(true)?;
    let mut io: Box<dyn Io> = match &dial.tls {
        Some(tls) => timeout(SETUP_TIMEOUT, (tls.handshake)(tcp))
            .await
            .map_err(|_| format!("TLS handshake with {addr} timed out"))??,
        None => Box::new(tcp),
    };
    let mut connect = Connect::new(dial.version, client_id);
    connect.keep_alive = KEEP_ALIVE_SECS;
    if dial.persistent {
        connect.clean_start = false;
        if dial.version.is_v5() {
            connect.properties.session_expiry_interval = Some(60);
        }
    }
    let mut out = BytesMut::new();
    connect.encode(dial.version, &mut out)?;
    io.write_all(&out).await?;
    io.flush().await?;
    let mut rbuf = BytesMut::with_capacity(READ_BUF_BYTES);
    let mut decoder = Decoder::with_version(dial.version);
    let packet = timeout(SETUP_TIMEOUT, read_packet(&mut io, &mut rbuf, &mut decoder))
        .await
        .map_err(|_| format!("no CONNACK from {addr} within {SETUP_TIMEOUT:?}"))?
        .map_err(|e| explain(dial, e))?;
    match packet {
        Packet::ConnAck(ack) if !ack.reason_code.is_error() && ack.reason_code.as_u8() == 0 => {
            Ok((io, rbuf, ack.properties.receive_maximum.unwrap_or(u16::MAX)))
        }
        Packet::ConnAck(ack) => Err(format!(
            "{addr} refused {client_id}: {}",
            ack.properties
                .reason_string
                .as_deref()
                .unwrap_or(ack.reason_code.description())
        )
        .into()),
        other => Err(format!(
            "expected CONNACK from {addr}, got {:?}",
            other.packet_type()
        )
        .into()),
    }
}

/// A TLS 1.3 broker refuses a client certificate only after the handshake:
/// let mqtt-tls say why.
fn explain(dial: &Dial, err: BoxError) -> BoxError {
    if let (Some(tls), Some(io)) = (&dial.tls, err.downcast_ref::<std::io::Error>()) {
        if let Some(tls) = mqtt_tls::explain_io_error(io, &tls.context) {
            return tls.into();
        }
    }
    err
}

/// Opens a subscriber connection and subscribes to `filter`.
async fn subscribe(
    dial: &Dial,
    client_id: &str,
    filter: TopicFilter,
    qos: QoS,
) -> Result<(Box<dyn Io>, BytesMut), BoxError> {
    let (mut io, mut rbuf, _) = open(dial, client_id).await?;
    let sub = Subscribe::new(PacketId::MIN, filter, SubscriptionOptions::qos(qos));
    let mut out = BytesMut::new();
    sub.encode(dial.version, &mut out)?;
    io.write_all(&out).await?;
    io.flush().await?;
    let mut decoder = Decoder::with_version(dial.version);
    let ack = timeout(SETUP_TIMEOUT, read_packet(&mut io, &mut rbuf, &mut decoder))
        .await
        .map_err(|_| format!("{client_id}: no SUBACK within {SETUP_TIMEOUT:?}"))??;
    match ack {
        Packet::SubAck(a) if a.reason_codes.iter().all(|c| !c.is_error()) => Ok((io, rbuf)),
        Packet::SubAck(a) => {
            Err(format!("{client_id}: subscription refused: {:?}", a.reason_codes).into())
        }
        other => Err(format!(
            "{client_id}: expected SUBACK, got {:?}",
            other.packet_type()
        )
        .into()),
    }
}

async fn read_packet(
    io: &mut Box<dyn Io>,
    rbuf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<Packet, BoxError> {
    loop {
        if let Some(p) = decoder.decode(rbuf)? {
            return Ok(p);
        }
        if io.read_buf(rbuf).await? == 0 {
            return Err("the broker closed the connection".into());
        }
    }
}

/// Writes part of `buf`, or flushes when `buf` is empty (TLS records may be
/// pending). Cancel-safe: a cancelled call wrote nothing we do not count.
async fn write_or_flush<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> std::io::Result<usize> {
    if buf.is_empty() {
        w.flush().await?;
        return Ok(0);
    }
    match w.write(buf).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        n => Ok(n),
    }
}

fn closed() -> BoxError {
    "the broker closed the connection".into()
}

fn broker_disconnect(reason: ReasonCode) -> BoxError {
    format!("the broker sent DISCONNECT: {}", reason.description()).into()
}

// ---------------------------------------------------------------- publisher

struct PubCfg {
    id: u32,
    topic: TopicName,
    qos: QoS,
    size: usize,
    inflight: u16,
    /// End-to-end window for this publisher (0: none).
    window: u64,
    rate: Option<f64>,
    count: Option<u64>,
    start: Instant,
    end: Instant,
    drain: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitAck(u64),
    /// QoS 2: PUBREL sent, waiting for PUBCOMP.
    AwaitComp,
}

struct PubResult {
    sent: u64,
    acked: Bitset,
    acked_count: u64,
    /// Acknowledgements with an error reason code (5.0).
    refused: u64,
    stopped_at: Instant,
}

async fn publisher(
    io: Box<dyn Io>,
    mut rbuf: BytesMut,
    version: ProtocolVersion,
    cfg: PubCfg,
    shared: Arc<Shared>,
) -> Result<PubResult, BoxError> {
    let me = &shared.pubs[cfg.id as usize];
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut decoder = Decoder::with_version(version);
    let mut packet = Publish::new(cfg.topic.clone(), Bytes::from(vec![0u8; cfg.size]));
    packet.qos = cfg.qos;
    // Packet identifiers map to sequence numbers through a slot table four
    // times the window, so a late acknowledgement never meets a reused id.
    let mut slots = if cfg.qos == QoS::AtMostOnce {
        Vec::new()
    } else {
        vec![Slot::Free; (usize::from(cfg.inflight) * 4).min(usize::from(u16::MAX))]
    };
    let mut wbuf = BytesMut::with_capacity(BATCH_BYTES * 2);
    let mut needs_flush = false;
    let mut result = PubResult {
        sent: 0,
        acked: Bitset::default(),
        acked_count: 0,
        refused: 0,
        stopped_at: cfg.end,
    };
    let mut inflight: u16 = 0;
    let mut stopped = false;
    let mut drain_end = cfg.end + cfg.drain;
    let mut written_off = 0u64;
    let mut last_min = 0u64;
    let mut last_progress = Instant::now();
    let mut last_write = Instant::now();

    loop {
        let now = Instant::now();
        let seq = result.sent;
        if !stopped && (now >= cfg.end || cfg.count.is_some_and(|c| seq >= c)) {
            stopped = true;
            result.stopped_at = now;
            drain_end = now + cfg.drain;
        }
        let mut e2e_blocked = false;
        let mut rate_wake = None;
        if !stopped {
            let mut budget = u64::MAX;
            if cfg.qos != QoS::AtMostOnce {
                budget = u64::from(cfg.inflight - inflight);
            }
            if cfg.window > 0 {
                let min = me
                    .received
                    .iter()
                    .map(|r| r.load(Ordering::Acquire))
                    .min()
                    .unwrap_or(seq);
                if min != last_min {
                    last_min = min;
                    last_progress = now;
                }
                let mut outstanding = seq.saturating_sub(min).saturating_sub(written_off);
                let qos0 = cfg.qos == QoS::AtMostOnce;
                if qos0 && outstanding >= cfg.window && now >= last_progress + STALL {
                    written_off = seq - min;
                    outstanding = 0;
                }
                let room = cfg.window.saturating_sub(outstanding);
                e2e_blocked = room == 0;
                budget = budget.min(room);
            }
            if let Some(rate) = cfg.rate {
                let due = (now.duration_since(cfg.start).as_secs_f64() * rate) as u64 + 1;
                let room = due.saturating_sub(seq);
                if room == 0 {
                    rate_wake = Some(cfg.start + Duration::from_secs_f64((seq as f64) / rate));
                }
                budget = budget.min(room);
            }
            if let Some(count) = cfg.count {
                budget = budget.min(count - seq);
            }
            let stamp_time = shared.now_ns();
            while budget > 0 && wbuf.len() < BATCH_BYTES {
                let seq = result.sent;
                if !slots.is_empty() {
                    let i = (seq % slots.len() as u64) as usize;
                    if slots[i] != Slot::Free {
                        break;
                    }
                    slots[i] = Slot::AwaitAck(seq);
                    inflight += 1;
                    packet.packet_id = PacketId::new(i as u16 + 1);
                }
                packet.encode(version, &mut wbuf)?;
                let at = wbuf.len() - cfg.size;
                wbuf[at..at + 4].copy_from_slice(&cfg.id.to_be_bytes());
                wbuf[at + 4..at + 12].copy_from_slice(&seq.to_be_bytes());
                wbuf[at + 12..at + 20].copy_from_slice(&stamp_time.to_be_bytes());
                result.sent += 1;
                budget -= 1;
            }
            me.issued.store(result.sent, Ordering::Release);
        }
        if stopped && ((inflight == 0 && wbuf.is_empty() && !needs_flush) || now >= drain_end) {
            return Ok(result);
        }
        if wbuf.is_empty() && !needs_flush && now >= last_write + PING_AFTER {
            Packet::PingReq.encode(version, &mut wbuf)?;
        }

        let mut wake = if stopped { drain_end } else { cfg.end };
        if let Some(t) = rate_wake {
            wake = wake.min(t);
        }
        if e2e_blocked && cfg.qos == QoS::AtMostOnce {
            wake = wake.min(last_progress + STALL);
        }
        wake = wake.min(last_write + PING_AFTER);
        let writing = !wbuf.is_empty() || needs_flush;
        tokio::select! {
            r = rd.read_buf(&mut rbuf) => {
                if r? == 0 {
                    return Err(closed());
                }
                while let Some(p) = decoder.decode(&mut rbuf)? {
                    on_ack(p, version, &mut slots, &mut inflight, &mut result, &mut wbuf)?;
                }
            }
            r = write_or_flush(&mut wr, &wbuf), if writing => {
                let n = r?;
                if n == 0 {
                    needs_flush = false;
                } else {
                    wbuf.advance(n);
                    needs_flush = true;
                    last_write = Instant::now();
                }
            }
            _ = me.progress.notified(), if e2e_blocked => {}
            _ = sleep_until(wake.into()) => {}
        }
    }
}

/// Handles a packet the broker sent a publisher: acknowledgements.
fn on_ack(
    p: Packet,
    version: ProtocolVersion,
    slots: &mut [Slot],
    inflight: &mut u16,
    result: &mut PubResult,
    wbuf: &mut BytesMut,
) -> Result<(), BoxError> {
    let slot_of = |id: PacketId, slots: &[Slot]| -> Result<usize, BoxError> {
        let i = usize::from(id.get()) - 1;
        if i < slots.len() && slots[i] != Slot::Free {
            Ok(i)
        } else {
            Err(format!("the broker acknowledged packet id {id}, which is not in flight").into())
        }
    };
    match p {
        Packet::PubAck(a) => {
            let i = slot_of(a.packet_id, slots)?;
            if let Slot::AwaitAck(seq) = slots[i] {
                if a.reason_code.is_error() {
                    result.refused += 1;
                } else {
                    result.acked.insert(seq);
                    result.acked_count += 1;
                }
                slots[i] = Slot::Free;
                *inflight -= 1;
            }
        }
        Packet::PubRec(a) => {
            let i = slot_of(a.packet_id, slots)?;
            if let Slot::AwaitAck(seq) = slots[i] {
                if a.reason_code.is_error() {
                    // An error PUBREC ends the exchange: no PUBREL follows.
                    result.refused += 1;
                    slots[i] = Slot::Free;
                    *inflight -= 1;
                } else {
                    result.acked.insert(seq);
                    result.acked_count += 1;
                    slots[i] = Slot::AwaitComp;
                    PubRel::new(a.packet_id).encode(version, wbuf)?;
                }
            }
        }
        Packet::PubComp(a) => {
            let i = slot_of(a.packet_id, slots)?;
            if slots[i] == Slot::AwaitComp {
                slots[i] = Slot::Free;
                *inflight -= 1;
            }
        }
        Packet::Disconnect(d) => return Err(broker_disconnect(d.reason_code)),
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------- subscriber

struct Source {
    publisher: u32,
    seen: Bitset,
    unique: u64,
    /// `unique` as last stored in the publisher's counter.
    told: u64,
    next_seq: u64,
}

struct SubResult {
    sources: Vec<Source>,
    latency: Histogram,
    duplicates: u64,
    reordered: u64,
    /// Payloads without a valid stamp from one of this run's publishers.
    foreign: u64,
    last_receive: Option<Instant>,
}

struct SubCfg {
    plan_slot: usize,
    sources: Vec<u32>,
    publishers: usize,
    qos0: bool,
    end: Instant,
    drain: Duration,
}

async fn subscriber(
    io: Box<dyn Io>,
    mut rbuf: BytesMut,
    version: ProtocolVersion,
    cfg: SubCfg,
    shared: Arc<Shared>,
    mut done: watch::Receiver<Option<Vec<u64>>>,
) -> Result<SubResult, BoxError> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut decoder = Decoder::with_version(version);
    let mut local = vec![None; cfg.publishers];
    for (i, &p) in cfg.sources.iter().enumerate() {
        local[p as usize] = Some(i);
    }
    let mut r = SubResult {
        sources: cfg
            .sources
            .iter()
            .map(|&publisher| Source {
                publisher,
                seen: Bitset::default(),
                unique: 0,
                told: 0,
                next_seq: 0,
            })
            .collect(),
        latency: Histogram::new(),
        duplicates: 0,
        reordered: 0,
        foreign: 0,
        last_receive: None,
    };
    let mut wbuf = BytesMut::with_capacity(BATCH_BYTES);
    let mut needs_flush = false;
    let mut last_write = Instant::now();
    let mut sent_totals: Option<Vec<u64>> = None;
    let mut drain_end = cfg.end + cfg.drain * 2;

    loop {
        let now = Instant::now();
        if sent_totals.is_none() {
            if let Some(totals) = done.borrow_and_update().clone() {
                drain_end = now + cfg.drain;
                sent_totals = Some(totals);
            }
        }
        if let Some(totals) = &sent_totals {
            let all_in = r
                .sources
                .iter()
                .all(|s| s.unique >= totals[s.publisher as usize]);
            let idle = cfg.qos0 && r.last_receive.unwrap_or(now) + QOS0_IDLE <= now;
            if (all_in && wbuf.is_empty() && !needs_flush) || now >= drain_end || idle {
                return Ok(r);
            }
        }
        if wbuf.is_empty() && !needs_flush && now >= last_write + PING_AFTER {
            Packet::PingReq.encode(version, &mut wbuf)?;
        }
        let mut wake = drain_end.min(last_write + PING_AFTER);
        if cfg.qos0 && sent_totals.is_some() {
            wake = wake.min(r.last_receive.unwrap_or(now) + QOS0_IDLE);
        }
        let writing = !wbuf.is_empty() || needs_flush;
        tokio::select! {
            n = rd.read_buf(&mut rbuf) => {
                if n? == 0 {
                    return Err(closed());
                }
                let now_ns = shared.now_ns();
                while let Some(p) = decoder.decode(&mut rbuf)? {
                    match p {
                        Packet::Publish(p) => {
                            on_publish(&p, now_ns, &local, &shared, &mut r);
                            match (p.qos, p.packet_id) {
                                (QoS::AtLeastOnce, Some(id)) => {
                                    PubAck::new(id).encode(version, &mut wbuf)?;
                                }
                                (QoS::ExactlyOnce, Some(id)) => {
                                    PubRec::new(id).encode(version, &mut wbuf)?;
                                }
                                _ => {}
                            }
                        }
                        Packet::PubRel(rel) => {
                            PubComp::new(rel.packet_id).encode(version, &mut wbuf)?;
                        }
                        Packet::Disconnect(d) => return Err(broker_disconnect(d.reason_code)),
                        _ => {}
                    }
                }
                r.last_receive = Some(Instant::now());
                for s in &mut r.sources {
                    if s.unique != s.told {
                        s.told = s.unique;
                        let p = &shared.pubs[s.publisher as usize];
                        p.received[cfg.plan_slot].store(s.unique, Ordering::Release);
                        p.progress.notify_one();
                    }
                }
            }
            w = write_or_flush(&mut wr, &wbuf), if writing => {
                let n = w?;
                if n == 0 {
                    needs_flush = false;
                } else {
                    wbuf.advance(n);
                    needs_flush = true;
                    last_write = Instant::now();
                }
            }
            _ = done.changed(), if sent_totals.is_none() => {}
            _ = sleep_until(wake.into()) => {}
        }
    }
}

/// Records one received message from its stamp.
fn on_publish(
    p: &Publish,
    now_ns: u64,
    local: &[Option<usize>],
    shared: &Shared,
    r: &mut SubResult,
) {
    let Some(stamp) = p.payload.get(..STAMP_LEN) else {
        r.foreign += 1;
        return;
    };
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&stamp[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let publisher = u32::from_be_bytes([stamp[0], stamp[1], stamp[2], stamp[3]]) as usize;
    let (seq, sent_ns) = (word(4), word(12));
    let Some(&Some(i)) = local.get(publisher) else {
        r.foreign += 1;
        return;
    };
    // A sequence number never issued is not ours (and must not size the set).
    if seq >= shared.pubs[publisher].issued.load(Ordering::Acquire) {
        r.foreign += 1;
        return;
    }
    let s = &mut r.sources[i];
    if !s.seen.insert(seq) {
        r.duplicates += 1;
        return;
    }
    s.unique += 1;
    if seq < s.next_seq {
        r.reordered += 1;
    } else {
        s.next_seq = seq + 1;
    }
    r.latency.record(now_ns.saturating_sub(sent_ns));
}

// ---------------------------------------------------------------- the run

struct Report {
    scenario: Scenario,
    publishers: usize,
    subscribers: usize,
    qos: u8,
    size: usize,
    version: Version,
    tls: bool,
    publish_secs: f64,
    sent: u64,
    acked: u64,
    refused: u64,
    expected: u64,
    received: u64,
    receive_secs: f64,
    latency: Histogram,
    lost: u64,
    missing: u64,
    duplicates: u64,
    reordered: u64,
    foreign: u64,
}

impl Report {
    fn rate(&self) -> f64 {
        if self.receive_secs > 0.0 {
            self.received as f64 / self.receive_secs
        } else {
            0.0
        }
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency.quantile(q) as f64 / 1e6
    }

    fn table(&self) -> String {
        let version = self.version.label();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "mqtt-bench {}: {} publisher(s) -> {} subscriber(s), QoS {}, {}-byte payloads, MQTT {}, {}, {:.1} s publishing",
            self.scenario.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
            self.publishers,
            self.subscribers,
            self.qos,
            self.size,
            version,
            if self.tls { "TLS" } else { "plain TCP" },
            self.publish_secs,
        );
        let _ = writeln!(
            s,
            "{:>10} {:>10} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>5} {:>9}",
            "sent",
            "acked",
            "received",
            "recv msg/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "lost",
            "missing",
            "dup",
            "reordered"
        );
        let _ =
            writeln!(
            s,
            "{:>10} {:>10} {:>10} {:>11.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>6} {:>8} {:>5} {:>9}",
            self.sent,
            if self.qos == 0 { "-".to_string() } else { self.acked.to_string() },
            self.received,
            self.rate(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.latency.max as f64 / 1e6,
            self.lost,
            self.missing,
            self.duplicates,
            self.reordered,
        );
        if self.refused > 0 {
            let _ = writeln!(
                s,
                "{} publishes refused by the broker (error reason code)",
                self.refused
            );
        }
        if self.foreign > 0 {
            let _ = writeln!(s, "{} messages without a stamp from this run", self.foreign);
        }
        if self.lost > 0 {
            let _ = writeln!(
                s,
                "LOST: {} acknowledged messages were never delivered",
                self.lost
            );
        }
        s
    }

    fn json(&self) -> String {
        format!(
            concat!(
                "{{\"scenario\":\"{}\",\"publishers\":{},\"subscribers\":{},\"qos\":{},",
                "\"payload_bytes\":{},\"protocol\":\"{}\",\"tls\":{},\"publish_secs\":{:.3},",
                "\"sent\":{},\"acked\":{},\"refused\":{},\"expected\":{},\"received\":{},",
                "\"receive_secs\":{:.3},\"msgs_per_sec\":{:.1},\"latency_ms\":{{\"p50\":{:.3},",
                "\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\"lost\":{},\"missing\":{},",
                "\"duplicates\":{},\"reordered\":{},\"foreign\":{}}}"
            ),
            self.scenario
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default(),
            self.publishers,
            self.subscribers,
            self.qos,
            self.size,
            self.version.flag(),
            self.tls,
            self.publish_secs,
            self.sent,
            self.acked,
            self.refused,
            self.expected,
            self.received,
            self.receive_secs,
            self.rate(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.latency.max as f64 / 1e6,
            self.lost,
            self.missing,
            self.duplicates,
            self.reordered,
            self.foreign,
        )
    }
}

fn tls_config(args: &Args) -> Result<Option<Tls>, BoxError> {
    if args.cafile.is_none() && args.cert.is_none() && args.key.is_none() {
        return Ok(None);
    }
    if args.cert.is_some() != args.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    let mut options = mqtt_tls::ClientTlsOptions::new();
    options.cafile = args.cafile.clone();
    options.certfile = args.cert.clone();
    options.keyfile = args.key.clone();
    let config = options.build()?;
    let context = mqtt_tls::ClientContext::new(&args.host, &config);
    let host = args.host.clone();
    let handshake = move |tcp: TcpStream| -> Handshake {
        let (config, host) = (config.clone(), host.clone());
        Box::pin(async move {
            let stream = mqtt_tls::connect(config, &host, tcp).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    };
    Ok(Some(Tls {
        handshake: Box::new(handshake),
        context,
    }))
}

async fn run(args: Args) -> Result<Report, BoxError> {
    if args.size < STAMP_LEN {
        return Err(format!("--size must be at least {STAMP_LEN} (the stamp)").into());
    }
    let duration = args
        .duration
        .unwrap_or(if args.count.is_some() { 60.0 } else { 5.0 });
    if duration <= 0.0 || !duration.is_finite() || args.drain < 0.0 || !args.drain.is_finite() {
        return Err("--duration must be positive and --drain not negative".into());
    }
    if args.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        return Err("--rate must be positive".into());
    }
    let qos = QoS::from_u8(args.qos).ok_or("--qos must be 0, 1 or 2")?;
    let dial = Arc::new(Dial {
        host: args.host.clone(),
        port: args.port,
        tls: tls_config(&args)?,
        version: args.protocol_version.protocol(),
        persistent: args.persistent,
    });
    let sub_dial = match args.sub_port {
        None => dial.clone(),
        Some(port) => Arc::new(Dial {
            host: args.host.clone(),
            port,
            tls: tls_config(&args)?,
            version: dial.version,
            persistent: args.persistent,
        }),
    };
    let plan = plan(&args)?;
    let mut feeds = vec![0usize; plan.publishers.len()];
    for s in &plan.subscribers {
        for &p in &s.sources {
            feeds[p as usize] += 1;
        }
    }
    let shared = Arc::new(Shared {
        base: Instant::now(),
        pubs: feeds
            .iter()
            .map(|&n| PubShared {
                issued: AtomicU64::new(0),
                received: (0..n).map(|_| AtomicU64::new(0)).collect(),
                progress: Notify::new(),
            })
            .collect(),
    });
    let pid = std::process::id();

    // Subscribers first, each subscribed before any publisher starts.
    let mut setups = Vec::new();
    for (i, s) in plan.subscribers.iter().enumerate() {
        let dial = sub_dial.clone();
        let filter = s.filter.clone();
        setups.push(tokio::spawn(async move {
            subscribe(&dial, &format!("mqtt-bench-{pid}-s{i}"), filter, qos).await
        }));
    }
    let mut subs = Vec::new();
    for s in setups {
        subs.push(s.await??);
    }
    let mut setups = Vec::new();
    for i in 0..plan.publishers.len() {
        let dial = dial.clone();
        setups.push(tokio::spawn(async move {
            open(&dial, &format!("mqtt-bench-{pid}-p{i}")).await
        }));
    }
    let mut pubs = Vec::new();
    for s in setups {
        pubs.push(s.await??);
    }

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let drain = Duration::from_secs_f64(args.drain);
    let fan_in = plan.subscribers.first().map_or(1, |s| s.sources.len()) as u64;
    let window = if args.window == 0 {
        0
    } else {
        (args.window / fan_in).max(1)
    };
    let (done_tx, done_rx) = watch::channel(None);
    let mut sub_tasks = Vec::new();
    for ((io, rbuf), s) in subs.into_iter().zip(&plan.subscribers) {
        let cfg = SubCfg {
            plan_slot: s.slot,
            sources: s.sources.clone(),
            publishers: plan.publishers.len(),
            qos0: qos == QoS::AtMostOnce,
            end,
            drain,
        };
        let fut = subscriber(io, rbuf, dial.version, cfg, shared.clone(), done_rx.clone());
        sub_tasks.push(tokio::spawn(fut));
    }
    let mut pub_tasks = Vec::new();
    for (i, (io, rbuf, receive_max)) in pubs.into_iter().enumerate() {
        let cfg = PubCfg {
            id: i as u32,
            topic: plan.publishers[i].clone(),
            qos,
            size: args.size,
            inflight: args.inflight.min(receive_max).max(1),
            window,
            rate: args.rate,
            count: args.count,
            start,
            end,
            drain,
        };
        pub_tasks.push(tokio::spawn(publisher(
            io,
            rbuf,
            dial.version,
            cfg,
            shared.clone(),
        )));
    }

    let mut errors = Vec::new();
    let mut pub_results = Vec::new();
    for t in pub_tasks {
        match t.await {
            Ok(Ok(r)) => pub_results.push(Some(r)),
            Ok(Err(e)) => {
                errors.push(format!("publisher: {e}"));
                pub_results.push(None);
            }
            Err(e) => {
                errors.push(format!("publisher task: {e}"));
                pub_results.push(None);
            }
        }
    }
    let totals: Vec<u64> = pub_results
        .iter()
        .zip(&shared.pubs)
        .map(|(r, s)| {
            r.as_ref()
                .map_or(s.issued.load(Ordering::Acquire), |r| r.sent)
        })
        .collect();
    let _ = done_tx.send(Some(totals.clone()));
    let mut sub_results = Vec::new();
    for t in sub_tasks {
        match t.await {
            Ok(Ok(r)) => sub_results.push(r),
            Ok(Err(e)) => errors.push(format!("subscriber: {e}")),
            Err(e) => errors.push(format!("subscriber task: {e}")),
        }
    }
    if !errors.is_empty() {
        errors.dedup();
        return Err(errors.join("; ").into());
    }

    let stopped = pub_results
        .iter()
        .flatten()
        .map(|r| r.stopped_at)
        .max()
        .unwrap_or(end);
    let mut report = Report {
        scenario: args.scenario,
        publishers: plan.publishers.len(),
        subscribers: plan.subscribers.len(),
        qos: args.qos,
        size: args.size,
        version: args.protocol_version,
        tls: dial.tls.is_some(),
        publish_secs: stopped.duration_since(start).as_secs_f64(),
        sent: totals.iter().sum(),
        acked: pub_results.iter().flatten().map(|r| r.acked_count).sum(),
        refused: pub_results.iter().flatten().map(|r| r.refused).sum(),
        expected: 0,
        received: 0,
        receive_secs: 0.0,
        latency: Histogram::new(),
        lost: 0,
        missing: 0,
        duplicates: 0,
        reordered: 0,
        foreign: 0,
    };
    let mut last_receive = start;
    for r in &sub_results {
        report.latency.merge(&r.latency);
        report.duplicates += r.duplicates;
        report.reordered += r.reordered;
        report.foreign += r.foreign;
        if let Some(t) = r.last_receive {
            last_receive = last_receive.max(t);
        }
        for s in &r.sources {
            let sent = totals[s.publisher as usize];
            report.expected += sent;
            report.received += s.unique;
            report.missing += sent.saturating_sub(s.unique);
            if qos != QoS::AtMostOnce {
                if let Some(p) = &pub_results[s.publisher as usize] {
                    report.lost += p.acked.count_missing_from(&s.seen);
                }
            }
        }
    }
    report.receive_secs = last_receive.duration_since(start).as_secs_f64();
    Ok(report)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            if report.lost > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("mqtt-bench: {e}");
            ExitCode::from(2)
        }
    }
}
