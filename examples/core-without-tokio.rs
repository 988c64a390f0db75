//! The sans-IO broker core driven by plain `std::net` and threads: no tokio,
//! no async. It shows that `mqtt_broker_core::Broker` owns no sockets and
//! reads no clock; any runtime (or none) can drive it.
//!
//! ```text
//! cargo run --example core-without-tokio
//! ```
//!
//! The driver below is the whole contract of the core:
//! 1. `connection_opened(now, info)` for each accepted socket;
//! 2. `handle_bytes(now, id, &mut buf)` with what was read;
//! 3. drain `poll_event()`: `Transmit(id)` → write `take_transmit(now, id)`,
//!    `Close(id)` → write what is left and shut the socket down;
//! 4. `connection_closed(now, id)` when the socket ends;
//! 5. `handle_timeout(now)` at `poll_timeout()` (keep alive, will delay, ...).
//!
//! Then it connects a subscriber and a publisher (hand-encoded with
//! `mqtt-codec`, also without tokio), prints what the subscriber receives,
//! and exits: 0 when `ssltopic testing` arrived.
#![forbid(unsafe_code)]

use bytes::BytesMut;
use mqtt_broker_core::mqtt_codec::{
    Connect, Decoder, Packet, PacketId, ProtocolVersion, Publish, ReasonCode, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionId, ConnectionInfo, Event};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The broker and the sockets it writes to, behind one lock.
struct Core {
    broker: Broker,
    sockets: HashMap<ConnectionId, TcpStream>,
}

impl Core {
    /// Step 3 of the contract: do what the broker asked for.
    fn drain_events(&mut self) {
        while let Some(event) = self.broker.poll_event() {
            match event {
                Event::Transmit(id) => {
                    if let Some(bytes) = self.broker.take_transmit(Instant::now(), id) {
                        if let Some(socket) = self.sockets.get_mut(&id) {
                            // One write for everything the broker batched.
                            let _ = socket.write_all(&bytes);
                        }
                    }
                }
                Event::Close(id) => {
                    let rest = self.broker.take_transmit(Instant::now(), id);
                    if let Some(mut socket) = self.sockets.remove(&id) {
                        if let Some(rest) = rest {
                            let _ = socket.write_all(&rest);
                        }
                        // The reading thread sees the end and reports it.
                        let _ = socket.shutdown(Shutdown::Both);
                    }
                }
                Event::ClientConnected {
                    client_id,
                    protocol,
                    ..
                } => println!("[core] {client_id} connected ({protocol:?})"),
                Event::ClientDisconnected {
                    client_id, reason, ..
                } => println!("[core] {client_id} left ({reason:?})"),
                // Deferred authentications (AuthPending) only come from an
                // authenticator that defers, and activity events only after
                // `report_activity(true)`: neither is used here.
                _ => {}
            }
        }
    }
}

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> std::sync::MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One thread per connection: read, feed the core, write what it answers.
fn serve(core: Shared, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let Ok(writer) = socket.try_clone() else {
        return;
    };
    let id = {
        let mut c = lock(&core);
        let id = c
            .broker
            .connection_opened(Instant::now(), ConnectionInfo::new(peer));
        c.sockets.insert(id, writer);
        c.drain_events();
        id
    };
    let mut socket = socket;
    let mut chunk = [0u8; 4096];
    let mut buf = BytesMut::new();
    loop {
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let mut c = lock(&core);
                c.broker.handle_bytes(Instant::now(), id, &mut buf);
                c.drain_events();
            }
        }
    }
    let mut c = lock(&core);
    c.sockets.remove(&id);
    c.broker.connection_closed(Instant::now(), id);
    c.drain_events();
}

/// Step 5: sleep until the core's next deadline (at most 100 ms, so a new,
/// earlier deadline is noticed soon), then fire what is due.
fn timers(core: Shared) {
    loop {
        let wait = {
            let c = lock(&core);
            c.broker
                .poll_timeout()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(100))
        };
        thread::sleep(wait);
        let mut c = lock(&core);
        c.broker.handle_timeout(Instant::now());
        c.drain_events();
    }
}

/// Starts the broker on a free loopback port; returns its address.
fn start_broker() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let core: Shared = Arc::new(Mutex::new(Core {
        broker: Broker::new(BrokerConfig::default()),
        sockets: HashMap::new(),
    }));
    let timer_core = core.clone();
    thread::spawn(move || timers(timer_core));
    thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            let Ok(peer) = socket.peer_addr() else {
                continue;
            };
            let core = core.clone();
            thread::spawn(move || serve(core, socket, peer));
        }
    });
    println!("[core] listening on {addr} (std::net, one thread per connection, no tokio)");
    Ok(addr)
}

/// A minimal blocking MQTT 3.1.1 client built from `mqtt-codec` packets.
struct RawClient {
    socket: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl RawClient {
    fn connect(addr: SocketAddr, client_id: &str) -> Result<Self, String> {
        let socket = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut c = Self {
            socket,
            decoder: Decoder::with_version(ProtocolVersion::V3_1_1),
            buf: BytesMut::new(),
        };
        c.send(&Packet::Connect(Box::new(Connect::new(
            ProtocolVersion::V3_1_1,
            client_id,
        ))))?;
        match c.recv()? {
            Packet::ConnAck(ack) if ack.reason_code == ReasonCode::Success => Ok(c),
            other => Err(format!("{client_id}: expected CONNACK, got {other:?}")),
        }
    }

    fn send(&mut self, packet: &Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        packet
            .encode(ProtocolVersion::V3_1_1, &mut out)
            .map_err(|e| e.to_string())?;
        self.socket.write_all(&out).map_err(|e| e.to_string())
    }

    fn recv(&mut self) -> Result<Packet, String> {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| e.to_string())?
            {
                return Ok(p);
            }
            let n = self
                .socket
                .read(&mut chunk)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn run() -> Result<(), String> {
    let addr = start_broker().map_err(|e| format!("cannot start the broker: {e}"))?;

    let mut pi = RawClient::connect(addr, "pi")?;
    let filter = TopicFilter::new("ssltopic").map_err(|e| e.to_string())?;
    pi.send(&Packet::Subscribe(Subscribe::new(
        PacketId::MIN,
        filter,
        SubscriptionOptions::default(),
    )))?;
    match pi.recv()? {
        Packet::SubAck(_) => println!("[pi] subscribed to ssltopic"),
        other => return Err(format!("expected SUBACK, got {other:?}")),
    }

    let mut laptop = RawClient::connect(addr, "laptop")?;
    let topic = TopicName::new("ssltopic").map_err(|e| e.to_string())?;
    laptop.send(&Packet::Publish(Publish::new(topic, "testing")))?;
    println!("[laptop] published `testing` to ssltopic");

    let line = match pi.recv()? {
        Packet::Publish(p) => format!(
            "{} {}",
            p.topic.as_str(),
            String::from_utf8_lossy(&p.payload)
        ),
        other => return Err(format!("expected PUBLISH, got {other:?}")),
    };
    println!("[pi] {line}");
    if line != "ssltopic testing" {
        return Err(format!("the subscriber got {line:?}"));
    }
    let _ = laptop.send(&Packet::Disconnect(Default::default()));
    let _ = pi.send(&Packet::Disconnect(Default::default()));
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("done: the core routed the message without an async runtime");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("core-without-tokio failed: {e}");
            ExitCode::FAILURE
        }
    }
}
