//! A TCP proxy in front of a broker that forwards whole MQTT packets and,
//! once armed, closes both sides right after a chosen packet of a QoS 2
//! exchange, before the answer can come back. It can also drop every
//! connection and refuse new ones, to keep a client offline for a while.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use mqtt_codec::{FixedHeader, PacketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};

pub const PASS: u8 = 0;
/// Cut after forwarding the next QoS 2 PUBLISH from the client to the broker.
pub const CUT_UPSTREAM: u8 = 1;
/// Cut after forwarding the next QoS 2 PUBLISH from the broker to the client.
pub const CUT_DOWNSTREAM: u8 = 2;
/// Cut after forwarding the next PUBREL from the client to the broker
/// (before its PUBCOMP comes back).
pub const CUT_UPSTREAM_PUBREL: u8 = 3;
/// Cut after forwarding the next PUBREL from the broker to the client
/// (before its PUBCOMP comes back).
pub const CUT_DOWNSTREAM_PUBREL: u8 = 4;

pub struct CutProxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    cuts: Arc<AtomicU8>,
    cut: Arc<Notify>,
    blocked: Arc<AtomicBool>,
    epoch: watch::Sender<u64>,
}

impl CutProxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:broker_port`.
    pub async fn start(broker_port: u16) -> Self {
        // A port no Mosquitto of a parallel test was given, checked before
        // listening on it (see `free_port`).
        let (listener, port) = loop {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let port = socket.local_addr().unwrap().port();
            if super::reserve_port(port) {
                break (socket.listen(128).unwrap(), port);
            }
        };
        let mode = Arc::new(AtomicU8::new(PASS));
        let cuts = Arc::new(AtomicU8::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let (epoch, epoch_rx) = watch::channel(0u64);
        let cut = Arc::new(Notify::new());
        let (m, c, b, n) = (mode.clone(), cuts.clone(), blocked.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if b.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = broker.set_nodelay(true);
                let mut kill = epoch_rx.clone();
                kill.mark_unchanged();
                tokio::spawn(relay(client, broker, m.clone(), c.clone(), n.clone(), kill));
            }
        });
        Self {
            port,
            mode,
            cuts,
            cut,
            blocked,
            epoch,
        }
    }

    /// Cuts the connection after the next packet that `mode` names.
    pub fn arm(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// How many connections were cut by an armed mode.
    pub fn cuts(&self) -> u8 {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Waits until a connection has been cut (callers bound it with a time-out).
    pub async fn cut(&self) {
        while self.cuts() == 0 {
            self.cut.notified().await;
        }
    }

    /// Closes every open connection and, while `blocked`, every new one.
    pub fn drop_all(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Lets new connections through again.
    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

/// What a packet is, as far as cutting goes.
#[derive(PartialEq)]
enum Mark {
    Qos2Publish,
    PubRel,
}

/// Takes whole packets off `buf`, stopping after a QoS 2 PUBLISH or a
/// PUBREL; returns them and that packet's mark.
fn whole_packets(buf: &mut BytesMut) -> (BytesMut, Option<Mark>) {
    let mut out = BytesMut::new();
    while let Ok(Some(h)) = FixedHeader::parse(buf) {
        if buf.len() < h.packet_len() {
            break;
        }
        let mark = match h.packet_type {
            PacketType::Publish if (h.flags >> 1) & 0b11 == 2 => Some(Mark::Qos2Publish),
            PacketType::PubRel => Some(Mark::PubRel),
            _ => None,
        };
        out.extend_from_slice(&buf.split_to(h.packet_len()));
        if mark.is_some() {
            return (out, mark);
        }
    }
    (out, None)
}

/// Whether `mark`, just forwarded in direction `up`, is where `mode` cuts;
/// disarms the proxy when it is.
fn cut_here(mode: &AtomicU8, up: bool, mark: Option<Mark>) -> bool {
    let want = match (up, mark) {
        (true, Some(Mark::Qos2Publish)) => CUT_UPSTREAM,
        (false, Some(Mark::Qos2Publish)) => CUT_DOWNSTREAM,
        (true, Some(Mark::PubRel)) => CUT_UPSTREAM_PUBREL,
        (false, Some(Mark::PubRel)) => CUT_DOWNSTREAM_PUBREL,
        (_, None) => return false,
    };
    mode.compare_exchange(want, PASS, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

async fn relay(
    client: TcpStream,
    broker: TcpStream,
    mode: Arc<AtomicU8>,
    cuts: Arc<AtomicU8>,
    cut: Arc<Notify>,
    mut kill: watch::Receiver<u64>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut br, mut bw) = broker.into_split();
    let (mut up, mut down) = (BytesMut::new(), BytesMut::new());
    let (mut ubuf, mut dbuf) = ([0u8; 4096], [0u8; 4096]);
    loop {
        tokio::select! {
            _ = kill.changed() => return,
            r = cr.read(&mut ubuf) => {
                let Ok(n @ 1..) = r else { return };
                up.extend_from_slice(&ubuf[..n]);
                loop {
                    let (bytes, mark) = whole_packets(&mut up);
                    if bytes.is_empty() { break; }
                    if bw.write_all(&bytes).await.is_err() { return; }
                    if cut_here(&mode, true, mark) {
                        cuts.fetch_add(1, Ordering::SeqCst);
                        cut.notify_one();
                        return; // both sides dropped
                    }
                }
            }
            r = br.read(&mut dbuf) => {
                let Ok(n @ 1..) = r else { return };
                down.extend_from_slice(&dbuf[..n]);
                loop {
                    let (bytes, mark) = whole_packets(&mut down);
                    if bytes.is_empty() { break; }
                    if cw.write_all(&bytes).await.is_err() { return; }
                    if cut_here(&mode, false, mark) {
                        cuts.fetch_add(1, Ordering::SeqCst);
                        cut.notify_one();
                        return;
                    }
                }
            }
        }
    }
}
