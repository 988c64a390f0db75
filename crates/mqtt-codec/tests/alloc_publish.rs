//! Decoding a PUBLISH from a buffer makes no heap allocation beyond what
//! the `Bytes` split needs.
//!
//! `allocation-counter` replaces the global allocator of this test binary
//! (and only this one) and counts the allocations of the current thread.

use bytes::BytesMut;
use mqtt_codec::{Decoder, Packet, ProtocolVersion, PubAck, Publish, QoS, TopicName};

fn wire(v: ProtocolVersion, qos: QoS, payload: usize) -> Vec<u8> {
    let mut p = Publish::new(
        TopicName::try_from("sensors/kitchen/temperature").unwrap(),
        vec![0x5A; payload],
    );
    p.qos = qos;
    if qos != QoS::AtMostOnce {
        p.packet_id = Some(mqtt_codec::PacketId::new(7).unwrap());
    }
    let mut buf = BytesMut::new();
    p.encode(v, &mut buf).unwrap();
    buf.to_vec()
}

/// Allocations made by decoding one PUBLISH (and dropping it) from a
/// `BytesMut` that already holds it, with a decoder made beforehand.
fn count(v: ProtocolVersion, qos: QoS, payload: usize, copies: usize) -> u64 {
    let one = wire(v, qos, payload);
    let mut buf = BytesMut::with_capacity(one.len() * copies);
    for _ in 0..copies {
        buf.extend_from_slice(&one);
    }
    let mut decoder = Decoder::with_version(v);
    let info = allocation_counter::measure(|| {
        let Some(Packet::Publish(p)) = decoder.decode(&mut buf).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(p.payload.len(), payload);
        assert_eq!(p.qos, qos);
        drop(std::hint::black_box(p));
    });
    info.count_total
}

/// `copies` of the packet `one` in a buffer, and a decoder for `v` that has
/// already decoded the first of them: the buffer is shared from then on,
/// so what the later decodes allocate is their own.
fn after_first_decode(v: ProtocolVersion, one: &[u8], copies: usize) -> (Decoder, BytesMut) {
    let mut buf = BytesMut::new();
    for _ in 0..copies {
        buf.extend_from_slice(one);
    }
    let mut decoder = Decoder::with_version(v);
    decoder
        .decode(&mut buf)
        .unwrap()
        .expect("a whole first packet");
    (decoder, buf)
}

/// The one allocation: `BytesMut::split_to(..).freeze()` on a buffer still in
/// its original "vec" representation promotes it to the shared
/// representation, which allocates the small reference-counted header
/// (`bytes`' `Shared` struct) once. Topic and payload are then `Bytes::slice`s
/// of that chunk (reference-count increments, no allocation, no copy).
/// Nothing else allocates: no `String` for the topic, no `Vec` for
/// properties (an empty `Properties` holds only empty `Vec`s and `None`s).
#[test]
fn publish_decode_allocates_only_the_shared_header() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for payload in [0, 16, 1024, 64 * 1024] {
                assert_eq!(count(v, qos, payload, 1), 1, "{v} {qos:?} {payload} B");
            }
        }
    }
}

/// Once the buffer is shared, later splits allocate nothing at all: decoding
/// the second and later PUBLISHes of one read makes zero allocations.
#[test]
fn publish_decode_after_the_first_allocates_nothing() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let (mut decoder, mut buf) = after_first_decode(v, &wire(v, qos, 16), 100);
            let info = allocation_counter::measure(|| {
                for _ in 0..99 {
                    let p = decoder.decode(&mut buf).unwrap().unwrap();
                    drop(std::hint::black_box(p));
                }
            });
            assert_eq!(info.count_total, 0, "{v} {qos:?}");
        }
    }
}

/// The same holds for the acknowledgements of the QoS flow.
#[test]
fn puback_decode_allocates_only_the_shared_header() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut buf = BytesMut::new();
        PubAck::new(mqtt_codec::PacketId::new(1).unwrap())
            .encode(v, &mut buf)
            .unwrap();
        let mut decoder = Decoder::with_version(v);
        let info = allocation_counter::measure(|| {
            drop(std::hint::black_box(decoder.decode(&mut buf).unwrap()));
        });
        assert!(info.count_total <= 1, "{v}: {}", info.count_total);
    }
}

/// Encoding into a buffer with room allocates nothing.
#[test]
fn publish_encode_into_reserved_buffer_allocates_nothing() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut p = Publish::new(TopicName::try_from("a/b").unwrap(), vec![1u8; 1024]);
        p.qos = QoS::AtLeastOnce;
        p.packet_id = Some(mqtt_codec::PacketId::new(1).unwrap());
        let mut buf = BytesMut::with_capacity(4096);
        let info = allocation_counter::measure(|| {
            p.encode(v, &mut buf).unwrap();
        });
        assert_eq!(info.count_total, 0, "{v}");
    }
}

/// A 5.0 PUBLISH with properties allocates their block once: short strings
/// are inline and a single User Property is kept in the block, so message
/// expiry, content type and one user property cost one allocation; a second
/// user property adds the list's own.
#[test]
fn v5_publish_properties_allocate_one_block() {
    let v = ProtocolVersion::V5;
    for (pairs, expected) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
        let mut p = Publish::new(
            TopicName::try_from("sensors/kitchen").unwrap(),
            vec![7u8; 16],
        );
        p.properties.message_expiry_interval = Some(60);
        p.properties.content_type = Some("application/octet-stream".into());
        for i in 0..pairs {
            p.properties
                .user_properties
                .push(("source".into(), format!("bench-{i}").into()));
        }
        let mut one = BytesMut::new();
        p.encode(v, &mut one).unwrap();
        let (mut decoder, mut buf) = after_first_decode(v, &one, 3);
        let info = allocation_counter::measure(|| {
            let Some(Packet::Publish(got)) = decoder.decode(&mut buf).unwrap() else {
                panic!("not a PUBLISH")
            };
            assert_eq!(got.properties.user_properties.len(), pairs);
            drop(std::hint::black_box(got));
        });
        assert_eq!(info.count_total, expected, "{pairs} user properties");
    }
}

/// A SUBSCRIBE's filters up to 32 bytes are stored inline: decoding one
/// with three such filters allocates only its list of subscriptions; a
/// longer filter shares the packet's buffer (no allocation either).
#[test]
fn subscribe_filters_allocate_nothing_but_the_list() {
    use mqtt_codec::{Subscribe, Subscription, SubscriptionOptions, TopicFilter};
    let long = "building/7/floor/3/room/12/sensors/+/temperature";
    let filters = [
        "sensors/+/temperature",
        "alerts/#",
        "$share/g/home/kitchen",
        long,
    ];
    let mut s = Subscribe::new(
        mqtt_codec::PacketId::new(1).unwrap(),
        TopicFilter::new(filters[0]).unwrap(),
        SubscriptionOptions::qos(QoS::AtLeastOnce),
    );
    for f in &filters[1..] {
        s.subscriptions.push(Subscription {
            filter: TopicFilter::new(*f).unwrap(),
            options: SubscriptionOptions::qos(QoS::AtMostOnce),
        });
    }
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut one = BytesMut::new();
        Packet::Subscribe(s.clone()).encode(v, &mut one).unwrap();
        let (mut decoder, mut buf) = after_first_decode(v, &one, 2);
        let info = allocation_counter::measure(|| {
            let Some(Packet::Subscribe(got)) = decoder.decode(&mut buf).unwrap() else {
                panic!("not a SUBSCRIBE")
            };
            let texts: Vec<&str> = got
                .subscriptions
                .iter()
                .map(|s| s.filter.as_str())
                .collect();
            assert_eq!(texts, filters);
            assert_eq!(got.subscriptions[2].filter.share_group(), Some("g"));
            assert_eq!(got.subscriptions[2].filter.filter(), "home/kitchen");
            drop(std::hint::black_box(got));
        });
        // The Vec of subscriptions, and the `texts` Vec of this test.
        assert_eq!(info.count_total, 2, "{v}");
    }
}
