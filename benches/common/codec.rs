//! What `benches/codec.rs` and `benches/codec_loop.rs` share: the packets
//! and each codec's read loop.

use bytes::BytesMut;
use mqtt_codec::{
    Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, TopicName, UserProperties,
};
use rumqttc::mqttbytes::v4 as peer4;
use rumqttc::v5::mqttbytes::v5 as peer5;
use std::hint::black_box;

/// Maximum packet size given to the peer's 3.1.1 decoder (no limit).
pub const MAX: usize = 1 << 28;

/// One user property.
pub fn user_props() -> UserProperties {
    [("source".into(), "bench".into())].into()
}

/// The PUBLISH of every benchmark: QoS 1 to `sensors/kitchen/temperature`,
/// in 5.0 with message expiry, content type and a user property.
pub fn publish(v: ProtocolVersion, payload: usize) -> Publish {
    let mut p = Publish::new(
        TopicName::try_from("sensors/kitchen/temperature").unwrap(),
        vec![0x5A; payload],
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = PacketId::new(1);
    if v.is_v5() {
        p.properties.message_expiry_interval = Some(60);
        p.properties.content_type = Some("application/octet-stream".into());
        p.properties.user_properties = user_props();
    }
    p
}

/// `copies` back-to-back copies of `one`.
pub fn repeated(one: &[u8], copies: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(one.len() * copies);
    for _ in 0..copies {
        b.extend_from_slice(one);
    }
    b
}

/// The one packet in `bytes`, decoded by mqtt-codec.
pub fn ours_decode_one(v: ProtocolVersion, bytes: &[u8]) -> Packet {
    let mut b = BytesMut::from(bytes);
    let p = Decoder::with_version(v)
        .decode(&mut b)
        .expect("we decode our own bytes")
        .expect("a whole packet");
    assert!(b.is_empty());
    p
}

/// A connection's read loop with mqtt-codec: decode every packet in `buf`.
/// Kept out of line, as in a real program, so neither codec is measured
/// inlined into criterion's own loop.
#[inline(never)]
pub fn ours_decode_all(v: ProtocolVersion, buf: &mut BytesMut) -> usize {
    let mut d = Decoder::with_version(v);
    let mut n = 0;
    while let Some(p) = d.decode(buf).unwrap() {
        black_box(p);
        n += 1;
    }
    n
}

/// The same read loop with the peer codec.
#[inline(never)]
pub fn peer_decode_all(v: ProtocolVersion, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        if v.is_v5() {
            black_box(peer5::Packet::read(buf, None).unwrap());
        } else {
            black_box(peer4::Packet::read(buf, MAX).unwrap());
        }
        n += 1;
    }
    n
}
