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

use bytes::BytesMut;
use mqtt_codec::{Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, TopicName};
use rumqttc::mqttbytes::v4 as peer4;
use rumqttc::v5::mqttbytes::v5 as peer5;
use std::hint::black_box;
use std::time::{Duration, Instant};

const COPIES: usize = 4096;
const ROUNDS: usize = 200;
const ENCODES: u32 = 2_000_000;

fn publish(v: ProtocolVersion) -> Publish {
    let mut p = Publish::new(
        TopicName::try_from("sensors/kitchen/temperature").unwrap(),
        vec![0x5A; 16],
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = PacketId::new(1);
    if v.is_v5() {
        p.properties.message_expiry_interval = Some(60);
        p.properties.content_type = Some("application/octet-stream".into());
        p.properties.user_properties = vec![("source".into(), "bench".into())];
    }
    p
}

#[inline(never)]
fn ours_decode_all(v: ProtocolVersion, buf: &mut BytesMut) -> usize {
    let mut d = Decoder::with_version(v);
    let mut n = 0;
    while let Some(p) = d.decode(buf).unwrap() {
        black_box(p);
        n += 1;
    }
    n
}

#[inline(never)]
fn peer_decode_all(v: ProtocolVersion, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        if v.is_v5() {
            black_box(peer5::Packet::read(buf, None).unwrap());
        } else {
            black_box(peer4::Packet::read(buf, 1 << 28).unwrap());
        }
        n += 1;
    }
    n
}

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
        let ours = Packet::Publish(publish(v));
        let mut one = BytesMut::new();
        ours.encode(v, &mut one).unwrap();
        let mut src = BytesMut::with_capacity(one.len() * COPIES);
        for _ in 0..COPIES {
            src.extend_from_slice(&one);
        }
        let peer4 = peer4::Packet::read(&mut one.clone(), 1 << 28);
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
