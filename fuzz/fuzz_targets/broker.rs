//! Arbitrary bytes through connections of the broker core, with a fake clock:
//! no input may panic it, and everything it sends to a client that spoke a
//! valid CONNECT must decode as valid packets of that client's version.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_broker_core::mqtt_codec::{Connect, Decoder, ProtocolVersion};
use mqtt_broker_core::{Broker, BrokerConfig, ConnectionId, ConnectionInfo};
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
enum Op {
    /// A new transport connection.
    Open,
    /// A valid CONNECT on connection `conn` (3.1.1 or 5.0).
    Connect {
        conn: u8,
        v5: bool,
        id: u8,
        clean: bool,
    },
    /// Raw bytes on connection `conn`.
    Bytes { conn: u8, data: Vec<u8> },
    /// The transport of `conn` ends.
    Close { conn: u8 },
    /// The clock moves on.
    Tick { millis: u16 },
}

struct Conn {
    id: ConnectionId,
    /// Set when a valid CONNECT was the first thing sent: the broker's
    /// output must then decode with this version.
    client: Option<Decoder>,
    sent_anything: bool,
    inbox: BytesMut,
}

fuzz_target!(|ops: Vec<Op>| {
    let mut broker = Broker::new(BrokerConfig::default().max_packet_size(64 * 1024));
    let mut now = Instant::now();
    let mut conns: Vec<Conn> = Vec::new();
    for op in ops.into_iter().take(64) {
        match op {
            Op::Open => {
                if conns.len() < 8 {
                    let id = broker.connection_opened(
                        now,
                        ConnectionInfo::new("127.0.0.1:1883".parse().unwrap()),
                    );
                    conns.push(Conn {
                        id,
                        client: None,
                        sent_anything: false,
                        inbox: BytesMut::new(),
                    });
                }
            }
            Op::Connect {
                conn,
                v5,
                id,
                clean,
            } => {
                let Some(c) = pick(&mut conns, conn) else {
                    continue;
                };
                let version = if v5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                let mut connect = Connect::new(version, format!("c{}", id % 4));
                connect.clean_start = clean;
                let mut wire = BytesMut::new();
                connect.encode(version, &mut wire).unwrap();
                if !c.sent_anything {
                    c.client = Some(Decoder::with_version(version));
                }
                c.sent_anything = true;
                broker.handle_bytes(now, c.id, &mut wire);
            }
            Op::Bytes { conn, mut data } => {
                let Some(c) = pick(&mut conns, conn) else {
                    continue;
                };
                data.truncate(4096);
                if !c.sent_anything {
                    c.client = None;
                }
                c.sent_anything = true;
                let mut buf = BytesMut::from(&data[..]);
                broker.handle_bytes(now, c.id, &mut buf);
            }
            Op::Close { conn } => {
                if conns.is_empty() {
                    continue;
                }
                let i = conn as usize % conns.len();
                let c = conns.swap_remove(i);
                broker.connection_closed(now, c.id);
            }
            Op::Tick { millis } => {
                now += Duration::from_millis(u64::from(millis) * 100);
                broker.handle_timeout(now);
            }
        }
        drain(&mut broker, &mut conns, now);
    }
});

fn pick(conns: &mut [Conn], conn: u8) -> Option<&mut Conn> {
    if conns.is_empty() {
        None
    } else {
        let n = conns.len();
        conns.get_mut(conn as usize % n)
    }
}

fn drain(broker: &mut Broker, conns: &mut Vec<Conn>, now: Instant) {
    while let Some(event) = broker.poll_event() {
        if let mqtt_broker_core::Event::Close(id) = event {
            if let Some(i) = conns.iter().position(|c| c.id == id) {
                let c = conns.swap_remove(i);
                let _ = broker.take_transmit(now, c.id);
                broker.connection_closed(now, c.id);
            }
        }
    }
    for c in conns.iter_mut() {
        while let Some(out) = broker.take_transmit(now, c.id) {
            if let Some(decoder) = &mut c.client {
                c.inbox.extend_from_slice(&out);
                while let Some(_packet) = decoder
                    .decode(&mut c.inbox)
                    .expect("the broker sent a packet its client cannot decode")
                {}
            }
        }
    }
}
