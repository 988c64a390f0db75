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

#[path = "common/codec.rs"]
mod common;

use bytes::BytesMut;
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

fn main() {
    println!("small PUBLISH, ns per packet (best of 5), mqtt-codec vs rumqttc");
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let ours = Packet::Publish(publish(v, 16));
        let mut one = BytesMut::new();
        ours.encode(v, &mut one).unwrap();
        let src = repeated(&one, COPIES);
        let peer4 = peer4::Packet::read(&mut one.clone(), MAX);
        let peer5 = peer5::Packet::read(&mut one.clone(), None);
        let mut best = [f64::MAX; 4];
        for _ in 0..5 {
            best[0] = best[0].min(decode_ns(&src, |b| ours_decode_all(v, b)));
            best[1] = best[1].min(decode_ns(&src, |b| peer_decode_all(v, b)));
            best[2] = best[2].min(encode_ns(|b| {
                black_box(&ours).encode(v, b).unwrap();
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
            "{tag} encode: {:6.1} vs {:6.1} ns  ratio {:.2}x",
            best[2],
            best[3],
            best[3] / best[2]
        );
    }
}
