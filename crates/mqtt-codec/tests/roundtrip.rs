//! Property tests: encode-then-decode is the identity for every packet of
//! every version, `encoded_len` is exact, a stream split at arbitrary points
//! decodes to the same packets, and arbitrary bytes never panic.

mod common;

use bytes::BytesMut;
use common::*;
use mqtt_codec::{Decoder, Packet, ProtocolVersion};
use proptest::collection::vec;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// Decodes every packet of `buf` (which must hold only whole packets).
fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> Vec<Packet> {
    let mut out = Vec::new();
    while let Some(p) = decoder.decode(buf).expect("decode") {
        out.push(p);
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

/// Feeds `wire` to `decoder` in chunks ending at `cuts`, decoding after each.
fn decode_piecewise(decoder: &mut Decoder, wire: &[u8], cuts: &[usize]) -> Vec<Packet> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.push(wire.len());
    cuts.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts {
        buf.extend_from_slice(&wire[at..cut]);
        at = cut;
        while let Some(p) = decoder.decode(&mut buf).expect("decode") {
            out.push(p);
        }
    }
    assert!(buf.is_empty());
    out
}

/// Decodes until the input is used up, fails, or needs more bytes. Must not panic.
fn drain(decoder: &mut Decoder, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = decoder.decode(&mut buf) {}
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_then_decode_is_identity((v, packet) in versioned_packet()) {
        let mut buf = BytesMut::new();
        let written = packet.encode(v, &mut buf).unwrap();
        prop_assert_eq!(written, buf.len());
        prop_assert_eq!(packet.encoded_len(v), buf.len());
        let wire = buf.clone();
        let mut decoder = Decoder::with_version(v);
        let decoded = decoder.decode(&mut buf).unwrap();
        prop_assert_eq!(decoded.as_ref(), Some(&packet));
        prop_assert!(buf.is_empty());
        // A decoded packet is written back as it was read (a decoded
        // PUBLISH's properties remember their length on the wire)...
        let mut decoded = decoded.unwrap();
        let mut again = BytesMut::new();
        decoded.encode(v, &mut again).unwrap();
        prop_assert_eq!(&again, &wire);
        prop_assert_eq!(decoded.encoded_len(v), wire.len());
        // ...and changed properties are measured again.
        if let Packet::Publish(p) = &mut decoded {
            p.properties.user_properties.push(("added".into(), "after decoding".into()));
            let mut changed = BytesMut::new();
            let n = decoded.encode(v, &mut changed).unwrap();
            prop_assert_eq!(n, changed.len());
            prop_assert_eq!(decoded.encoded_len(v), changed.len());
            let back = Decoder::with_version(v).decode(&mut changed).unwrap();
            if v == ProtocolVersion::V5 {
                prop_assert_eq!(back.as_ref(), Some(&decoded));
            }
        }
    }

    /// The per-type `encode`/`encoded_len` agree with `Packet`'s, and
    /// `encode_limited` refuses exactly the packets above the limit.
    #[test]
    fn encode_limited_refuses_exactly_above_limit((v, packet) in versioned_packet(), slack in -2i64..=2) {
        let len = packet.encoded_len(v) as i64;
        let limit = (len + slack).max(0) as u32;
        let mut buf = BytesMut::from(&b"prefix"[..]);
        let r = packet.encode_limited(v, limit, &mut buf);
        if len <= i64::from(limit) {
            prop_assert_eq!(r.unwrap() as i64, len);
            prop_assert_eq!(buf.len() as i64, 6 + len);
        } else {
            prop_assert!(r.is_err());
            prop_assert_eq!(&buf[..], b"prefix", "nothing appended on error");
        }
    }

    /// A server decoder learns the version from CONNECT and then decodes the
    /// rest of the stream with it.
    #[test]
    fn server_decoder_learns_version(
        (v, connect, rest) in version().prop_flat_map(|v| {
            (Just(v), connect(v), vec(non_connect_packet(v), 0..5))
        }),
    ) {
        let mut all = vec![Packet::Connect(Box::new(connect))];
        all.extend(rest);
        let mut buf = BytesMut::new();
        for p in &all {
            p.encode(v, &mut buf).unwrap();
        }
        let mut decoder = Decoder::new();
        prop_assert_eq!(decoder.version(), None);
        let decoded = decode_all(&mut decoder, &mut buf);
        prop_assert_eq!(decoder.version(), Some(v));
        prop_assert_eq!(decoded, all);
    }

    #[test]
    fn stream_split_at_arbitrary_points(
        (v, packets) in version().prop_flat_map(|v| (Just(v), vec(packet(v), 1..8))),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            p.encode(v, &mut wire).unwrap();
        }
        let mut decoder = Decoder::with_version(v);
        prop_assert_eq!(decode_piecewise(&mut decoder, &wire, &cuts), packets);
    }

    /// Byte by byte: every prefix of a packet is `Ok(None)` and consumes nothing.
    #[test]
    fn every_prefix_needs_more_bytes((v, packet) in versioned_packet()) {
        let wire = encode(&packet, v);
        let mut decoder = Decoder::with_version(v);
        for n in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..n]);
            prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
            prop_assert_eq!(buf.len(), n);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        for v in VERSIONS {
            drain(&mut Decoder::with_version(v), &bytes);
        }
        drain(&mut Decoder::new(), &bytes);
        let _ = mqtt_codec::peek_connect_version(&bytes);
        let _ = mqtt_codec::FixedHeader::parse(&bytes);
    }

    /// Valid packets with a few bytes changed reach deeper into the decoder
    /// than random bytes do.
    #[test]
    fn mutated_packets_never_panic(
        (v, packet) in versioned_packet(),
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        truncate in any::<Option<usize>>(),
    ) {
        let mut wire = encode(&packet, v).to_vec();
        for (at, byte) in edits {
            let n = wire.len();
            wire[at % n] = byte;
        }
        if let Some(t) = truncate {
            let n = wire.len();
            wire.truncate(t % (n + 1));
        }
        drain(&mut Decoder::with_version(v), &wire);
        drain(&mut Decoder::new(), &wire);
        // Whatever decodes must re-encode and decode to the same packet.
        let mut buf = BytesMut::from(&wire[..]);
        if let Ok(Some(p)) = Decoder::with_version(v).decode(&mut buf) {
            let again = encode(&p, v);
            prop_assert_eq!(again.len(), p.encoded_len(v));
            let mut again = again;
            prop_assert_eq!(Decoder::with_version(v).decode(&mut again).unwrap(), Some(p));
        }
    }
}

#[test]
fn server_decoder_v31_connect_sets_version() {
    let mut buf = BytesMut::new();
    mqtt_codec::Connect::new(ProtocolVersion::V3_1, "c")
        .encode(ProtocolVersion::V3_1, &mut buf)
        .unwrap();
    let mut d = Decoder::new();
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    assert_eq!(d.version(), Some(ProtocolVersion::V3_1));
}

/// Property blocks whose length prefix takes one, two and three bytes
/// (the encoder writes a one-byte prefix, then rewrites the block after a
/// longer one).
#[test]
fn property_blocks_of_every_prefix_length_round_trip() {
    use mqtt_codec::{Disconnect, ReasonCode};
    let v = ProtocolVersion::V5;
    for len in [0, 1, 120, 127, 128, 129, 300, 16_383, 16_384, 40_000] {
        let mut d = Disconnect::new(ReasonCode::Success);
        d.properties.reason_string = Some("r".repeat(len).into());
        d.properties.user_properties = vec![("k".into(), "v".into())].into();
        let p = Packet::Disconnect(d);
        let mut buf = BytesMut::new();
        let n = p.encode(v, &mut buf).unwrap();
        assert_eq!(
            (n, buf.len()),
            (p.encoded_len(v), p.encoded_len(v)),
            "{len}"
        );
        assert_eq!(
            Decoder::with_version(v).decode(&mut buf).unwrap(),
            Some(p),
            "{len}"
        );
        assert!(buf.is_empty());
    }
}
