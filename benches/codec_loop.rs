//! Small PUBLISH (16-byte payload, the `publish_16B` packets of
//! `benches/codec.rs`) decoded and encoded in plain loops, outside
//! criterion: the smallest harness that still compares mqtt-codec with
//! rumqttc's `mqttbytes` on the same bytes. Each figure is the best of five
//! rounds, the two codecs alternating, so a noisy machine penalises both
//! alike.
//!
//!     cargo bench --bench codec_loop
//!
//! `docs/benchmarks.md` (section "Codec") has figures.
//!
//! Two reference lines bound what any codec with this API can reach: the
//! decode floor splits each packet off the buffer as `Bytes` and drops it
//! (what a zero-copy decoder must do, with no parsing at all), and the
//! encode floor writes the same bytes with the fewest `BufMut` calls, no
//! checks and the 5.0 properties as one pre-encoded slice.

#[path = "common/codec.rs"]
mod common;

use bytes::{BufMut, BytesMut};
use common::{ours_decode_all, peer_decode_all, publish, repeated, MAX};
use mqtt_codec::{Packet, ProtocolVersion};
use rumqttc::mqttbytes::v4 as peer4;
use rumqttc::v5::mqttbytes::v5 as peer5;
use std::hint::black_box;
use std::time::{Duration, Instant};

const COPIES: usize = 4096;
const ROUNDS: usize = 200;
const ENCODES: u32 = 2_000_000;

/// Nanoseconds per packet decoding `src` `ROUNDS` times.
fn decode_ns(src: &BytesMut, f: impl Fn(&mut BytesMut) -> usize) -> f64 {
    let mut total = Duration::ZERO;
    for _ in 0..ROUNDS {
        let mut buf = src.clone();
        let t = Instant::now();
        assert_eq!(f(&mut buf), COPIES);
        total += t.elapsed();
    }
    total.as_nanos() as f64 / (ROUNDS * COPIES) as f64
}

/// Nanoseconds per packet encoding with `f` into a cleared buffer.
fn encode_ns(f: impl Fn(&mut BytesMut)) -> f64 {
    let mut out = BytesMut::with_capacity(4096);
    let t = Instant::now();
    for _ in 0..ENCODES {
        out.clear();
        f(&mut out);
        black_box(&out);
    }
    t.elapsed().as_nanos() as f64 / f64::from(ENCODES)
}

/// The decode floor: each packet split off as `Bytes` and dropped.
#[inline(never)]
fn split_all(buf: &mut BytesMut, len: usize) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        black_box(buf.split_to(len).freeze());
        n += 1;
    }
    n
}

/// The encode floor: the packet's fields with one `BufMut` call each.
struct Floor {
    header: [u8; 2],
    topic: Vec<u8>,
    properties: Vec<u8>,
    payload: Vec<u8>,
}

impl Floor {
    /// Splits `wire` (one QoS 1 PUBLISH with a one-byte remaining length)
    /// into its fields.
    fn new(wire: &[u8], v5: bool) -> Self {
        let topic_len = usize::from(u16::from_be_bytes([wire[2], wire[3]]));
        let mut at = 4 + topic_len + 2;
        let properties = if v5 {
            let n = 1 + usize::from(wire[at]);
            at += n;
            wire[at - n..at].to_vec()
        } else {
            Vec::new()
        };
        Self {
            header: [wire[0], wire[1]],
            topic: wire[4..4 + topic_len].to_vec(),
            properties,
            payload: wire[at..].to_vec(),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        out.reserve(2 + 2 + self.topic.len() + 2 + self.properties.len() + self.payload.len());
        out.put_slice(&self.header);
        out.put_u16(self.topic.len() as u16);
        out.put_slice(&self.topic);
        out.put_u16(1);
        out.put_slice(&self.properties);
        out.put_slice(&self.payload);
    }
}

fn main() {
    println!("small PUBLISH, ns per packet (best of 5), mqtt-codec vs rumqttc");
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let ours = Packet::Publish(publish(v, 16));
        let mut one = BytesMut::new();
        ours.encode(v, &mut one).unwrap();
        // What a broker forwards: the packet as the decoder read it (a
        // decoded PUBLISH's 5.0 properties know their length on the wire).
        let decoded = common::ours_decode_one(v, &one);
        let src = repeated(&one, COPIES);
        let peer4 = peer4::Packet::read(&mut one.clone(), MAX);
        let peer5 = peer5::Packet::read(&mut one.clone(), None);
        let floor = Floor::new(&one, v.is_v5());
        let mut check = BytesMut::new();
        floor.write(&mut check);
        assert_eq!(check, one, "the encode floor writes the same bytes");
        let mut best = [f64::MAX; 7];
        for _ in 0..5 {
            best[4] = best[4].min(decode_ns(&src, |b| split_all(b, one.len())));
            best[5] = best[5].min(encode_ns(|b| black_box(&floor).write(b)));
            best[0] = best[0].min(decode_ns(&src, |b| ours_decode_all(v, b)));
            best[1] = best[1].min(decode_ns(&src, |b| peer_decode_all(v, b)));
            best[2] = best[2].min(encode_ns(|b| {
                black_box(&ours).encode(v, b).unwrap();
            }));
            best[6] = best[6].min(encode_ns(|b| {
                black_box(&decoded).encode(v, b).unwrap();
            }));
            best[3] = best[3].min(encode_ns(|b| {
                if v.is_v5() {
                    black_box(peer5.as_ref().unwrap()).write(b, None).unwrap();
                } else {
                    black_box(peer4.as_ref().unwrap())
                        .write(b, 1 << 28)
                        .unwrap();
                }
            }));
        }
        let tag = if v.is_v5() { "5.0  " } else { "3.1.1" };
        println!(
            "{tag} decode: {:6.1} vs {:6.1} ns  ratio {:.2}x",
            best[0],
            best[1],
            best[1] / best[0]
        );
        println!(
            "{tag} encode: {:6.1} vs {:6.1} ns  ratio {:.2}x  (a packet built by hand)",
            best[2],
            best[3],
            best[3] / best[2]
        );
        println!(
            "{tag} encode: {:6.1} vs {:6.1} ns  ratio {:.2}x  (the packet as decoded)",
            best[6],
            best[3],
            best[3] / best[6]
        );
        println!(
            "{tag} floors: decode {:6.1} ns (split off and drop), encode {:6.1} ns (bare puts)",
            best[4], best[5]
        );
    }
}
