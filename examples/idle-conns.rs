//! `idle-conns`: opens N idle MQTT connections to a broker and reports the
//! connection rate and, given the broker's process id, how much resident
//! memory each connection costs it.
//!
//! ```text
//! idle-conns -p 1883 -n 5000 --pid $(pidof mosquitto)
//! idle-conns -p 8883 -n 5000 --cafile ca.crt --cert client.crt --key client.key --pid 1234
//! ```
//!
//! Each connection binds its own source address in 127.0.0.0/8 (127.1.x.y)
//! before it connects, sends a CONNECT (MQTT 3.1.1, clean session, Keep
//! Alive 600 s), waits for a successful CONNACK and then stays idle.
//! `--concurrency` connections are being set up at any one time. Before
//! the first connection and when the last CONNACK has arrived and the
//! broker's VmRSS (from /proc/PID/status) has settled, the broker's VmRSS
//! is read: bytes per connection = (after - before) / N. One line of
//! `key=value` pairs goes to stdout; `bench/idle-memory.sh` runs it against
//! Mosquitto and our broker in the same run.
#![forbid(unsafe_code)]

use clap::Parser;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

/// Opens N idle MQTT connections and measures the broker's memory per connection.
#[derive(Parser, Debug)]
#[command(name = "idle-conns", version, about)]
struct Args {
    /// Broker address (IPv4 loopback: source addresses are spread over 127.0.0.0/8).
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    host: Ipv4Addr,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// Number of connections to open and keep idle.
    #[arg(short = 'n', long, default_value_t = 5000)]
    connections: u32,
    /// Connections being set up at one time.
    #[arg(short = 'c', long, default_value_t = 64)]
    concurrency: usize,
    /// The broker's process id: read its VmRSS before and after.
    #[arg(long)]
    pid: Option<u32>,
    /// CA certificate: connect with TLS, verifying the broker against it.
    #[arg(long)]
    cafile: Option<std::path::PathBuf>,
    /// Client certificate (mutual TLS).
    #[arg(long)]
    cert: Option<std::path::PathBuf>,
    /// Client key (mutual TLS).
    #[arg(long)]
    key: Option<std::path::PathBuf>,
    /// How long to keep the connections open after measuring (seconds).
    #[arg(long, default_value_t = 0)]
    hold: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The broker's resident set in bytes.
fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Waits until the broker's VmRSS has not moved for 3 readings 300 ms apart
/// (at most 10 s), and returns it.
async fn settled_rss(pid: u32) -> Option<u64> {
    let mut last = vm_rss(pid)?;
    let mut same = 0;
    for _ in 0..33 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = vm_rss(pid)?;
        if now == last {
            same += 1;
            if same == 3 {
                break;
            }
        } else {
            same = 0;
            last = now;
        }
    }
    Some(last)
}

/// A 3.1.1 CONNECT: clean session, Keep Alive 600 s, `client_id`.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + client_id.len());
    body.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02]);
    body.extend_from_slice(&600u16.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// Source address `i`: 127.1.0.1, 127.1.0.2, ... 250 per /24.
fn source(i: u32) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
    SocketAddr::from((ip, 0))
}

async fn open(
    i: u32,
    broker: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Io>, BoxError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(source(i))?;
    let tcp = socket.connect(broker).await?;
    tcp.set_nodelay(true)?;
    let mut io: Box<dyn Io> = match tls {
        Some(config) => Box::new(mqtt_tls::connect(config, &broker.ip().to_string(), tcp).await?),
        None => Box::new(tcp),
    };
    io.write_all(&connect_packet(&format!("idle-{}-{i}", std::process::id())))
        .await?;
    io.flush().await?;
    let mut connack = [0u8; 4];
    io.read_exact(&mut connack).await?;
    if connack != [0x20, 0x02, 0x00, 0x00] {
        return Err(format!("unexpected CONNACK {connack:02x?}").into());
    }
    Ok(io)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let broker = SocketAddr::from((args.host, args.port));
    let tls = match &args.cafile {
        None => None,
        Some(ca) => {
            let mut options = mqtt_tls::ClientTlsOptions::new().cafile(ca);
            if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
                options = options.certfile(cert).keyfile(key);
            }
            Some(options.build()?)
        }
    };
    let before = match args.pid {
        Some(pid) => Some(
            settled_rss(pid)
                .await
                .ok_or("cannot read the broker's VmRSS")?,
        ),
        None => None,
    };
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let permit = gate.clone().acquire_owned().await?;
        let tls = tls.clone();
        tasks.spawn(async move {
            let r = open(i, broker, tls).await;
            drop(permit);
            r
        });
    }
    let mut open_streams = Vec::with_capacity(args.connections as usize);
    while let Some(r) = tasks.join_next().await {
        open_streams.push(r??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = f64::from(args.connections) / elapsed;
    let mut line = format!(
        "connections={} seconds={elapsed:.3} conn_per_s={rate:.0}",
        args.connections
    );
    if let (Some(pid), Some(before)) = (args.pid, before) {
        let after = settled_rss(pid)
            .await
            .ok_or("cannot read the broker's VmRSS")?;
        let per = (after as f64 - before as f64) / f64::from(args.connections);
        line.push_str(&format!(
            " rss_before={before} rss_after={after} bytes_per_conn={per:.0}"
        ));
    }
    println!("{line}");
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    drop(open_streams);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idle-conns: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle-conns: {e}");
            ExitCode::FAILURE
        }
    }
}
