//! One test per malformed-packet rule: the decoder returns the typed
//! `DecodeError` and the 5.0 reason code a peer must send for it.

mod common;

use bytes::BytesMut;
use common::hex;
use mqtt_codec::topic::TopicError;
use mqtt_codec::*;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A packet: first byte, then the remaining length computed from `body`.
fn pkt(first: u8, body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

/// Decodes `wire` with a decoder for `v` and returns the error.
fn err(wire: &[u8], v: ProtocolVersion) -> DecodeError {
    let mut buf = BytesMut::from(wire);
    match Decoder::with_version(v).decode(&mut buf) {
        Err(e) => e,
        other => panic!("expected an error for {wire:02X?}, got {other:?}"),
    }
}

#[track_caller]
fn check(wire: &[u8], v: ProtocolVersion, expected: DecodeError, reason: ReasonCode) {
    let e = err(wire, v);
    assert_eq!(e, expected, "{wire:02X?}");
    assert_eq!(e.reason_code(), reason, "{e}");
}

/// Both 3.1.1 and 5.0.
#[track_caller]
fn check_both(wire: &[u8], expected: DecodeError, reason: ReasonCode) {
    check(wire, V3, expected.clone(), reason);
    check(wire, V5, expected, reason);
}

const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL: ReasonCode = ReasonCode::ProtocolError;

/// A 5.0 CONNECT with `props` (hex of the properties, without length) and client id "c".
fn connect_v5_with_props(props: &str) -> Vec<u8> {
    let p = hex(props);
    pkt(
        0x10,
        &format!(
            "00 04 4D 51 54 54 05 02 00 3C {:02X} {props} 00 01 63",
            p.len()
        ),
    )
}

/// A 5.0 QoS 0 PUBLISH to "t" with `props`.
fn publish_v5_with_props(props: &str) -> Vec<u8> {
    let p = hex(props);
    pkt(0x30, &format!("00 01 74 {:02X} {props} 68 69", p.len()))
}

// ---- Fixed header ----------------------------------------------------------

#[test]
fn reserved_packet_type_0() {
    check_both(&hex("00 00"), DecodeError::InvalidPacketType(0), MALFORMED);
    let mut buf = BytesMut::from(&hex("00 00")[..]);
    assert_eq!(
        Decoder::new().decode(&mut buf),
        Err(DecodeError::InvalidPacketType(0))
    );
}

#[test]
fn auth_in_v311() {
    check(
        &hex("F0 00"),
        V3,
        DecodeError::InvalidPacketType(15),
        MALFORMED,
    );
    check(
        &hex("F0 00"),
        ProtocolVersion::V3_1,
        DecodeError::InvalidPacketType(15),
        MALFORMED,
    );
    // and AUTH is fine in 5.0
    let mut buf = BytesMut::from(&hex("F0 00")[..]);
    assert!(Decoder::with_version(V5)
        .decode(&mut buf)
        .unwrap()
        .is_some());
}

#[test]
fn wrong_fixed_header_flags_for_every_type_with_required_flags() {
    for nibble in 1u8..=15 {
        let ty = PacketType::from_nibble(nibble).unwrap();
        if ty == PacketType::Publish {
            continue;
        }
        let required = match ty {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        };
        for flags in 0u8..16 {
            if flags == required {
                continue;
            }
            let wire = [(nibble << 4) | flags, 0];
            // The flags are checked from the first byte alone.
            assert_eq!(
                FixedHeader::parse(&wire[..1]),
                Err(DecodeError::InvalidHeaderFlags { packet: ty, flags })
            );
            check_both(
                &wire,
                DecodeError::InvalidHeaderFlags { packet: ty, flags },
                MALFORMED,
            );
        }
    }
}

#[test]
fn remaining_length_of_five_bytes() {
    check_both(
        &hex("30 FF FF FF FF 7F"),
        DecodeError::MalformedRemainingLength,
        MALFORMED,
    );
    // Known as soon as the fourth byte has its continuation bit set.
    check_both(
        &hex("30 80 80 80 80"),
        DecodeError::MalformedRemainingLength,
        MALFORMED,
    );
    let mut buf = BytesMut::from(&hex("30 80 80 80")[..]);
    assert_eq!(Decoder::with_version(V5).decode(&mut buf), Ok(None));
}

#[test]
fn packet_larger_than_configured_maximum() {
    // PUBLISH with remaining length 200 (C8 01): 203 bytes in all.
    let mut d = Decoder::with_version(V5);
    d.set_max_packet_size(202);
    let mut buf = BytesMut::from(&hex("30 C8 01")[..]);
    let e = d.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PacketTooLarge {
            size: 203,
            max: 202
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::PacketTooLarge);
    // Exactly at the maximum is fine (and just needs more bytes).
    d.set_max_packet_size(203);
    let mut buf = BytesMut::from(&hex("30 C8 01")[..]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    // decode_packet takes the maximum too.
    let mut buf = BytesMut::from(&hex("30 C8 01")[..]);
    assert_eq!(
        decode_packet(&mut buf, V3, 100),
        Err(DecodeError::PacketTooLarge {
            size: 203,
            max: 100
        })
    );
}

#[test]
fn header_of_256_mb_errors_without_buffering() {
    // 268,435,455 bytes announced, five bytes present.
    let header = hex("30 FF FF FF 7F");
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(&header);
    let cap = buf.capacity();
    let mut d = Decoder::with_version(V5);
    d.set_max_packet_size(1024 * 1024);
    assert_eq!(
        d.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024 * 1024
        })
    );
    assert_eq!(buf.len(), 5, "nothing consumed");
    assert_eq!(buf.capacity(), cap, "nothing reserved");

    // Server side, before CONNECT: same.
    let mut d = Decoder::new();
    d.set_max_packet_size(1024);
    let mut buf = BytesMut::from(&hex("10 FF FF FF 7F")[..]);
    assert!(matches!(
        d.decode(&mut buf),
        Err(DecodeError::PacketTooLarge { .. })
    ));

    // Even at the default maximum (which admits it), a header alone does
    // not make the decoder reserve 256 MB.
    let mut d = Decoder::with_version(V5);
    assert_eq!(d.max_packet_size(), MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert!(
        buf.capacity() <= 128 * 1024,
        "reserved {} bytes on the word of a header",
        buf.capacity()
    );
}

// ---- PUBLISH ---------------------------------------------------------------

#[test]
fn publish_qos_3() {
    check_both(
        &pkt(0x36, "00 01 74 00 01"),
        DecodeError::InvalidQoS,
        MALFORMED,
    );
}

#[test]
fn publish_dup_on_qos_0() {
    check_both(&pkt(0x38, "00 01 74"), DecodeError::DupOnQoS0, MALFORMED);
    check_both(&pkt(0x39, "00 01 74"), DecodeError::DupOnQoS0, MALFORMED);
}

#[test]
fn invalid_utf8() {
    // PUBLISH topic.
    check_both(
        &pkt(0x30, "00 02 C3 28"),
        DecodeError::InvalidUtf8,
        MALFORMED,
    );
    // Surrogate half encoded in UTF-8 (U+D800), forbidden [MQTT-1.5.4-1].
    check_both(
        &pkt(0x30, "00 03 ED A0 80"),
        DecodeError::InvalidUtf8,
        MALFORMED,
    );
    // CONNECT client identifier.
    check(
        &pkt(0x10, "00 04 4D 51 54 54 04 02 00 3C 00 01 FF"),
        V3,
        DecodeError::InvalidUtf8,
        MALFORMED,
    );
    // SUBSCRIBE topic filter.
    check(
        &pkt(0x82, "00 01 00 01 FE 00"),
        V3,
        DecodeError::InvalidUtf8,
        MALFORMED,
    );
    // 5.0 user property.
    check(
        &publish_v5_with_props("26 00 01 FF 00 01 61"),
        V5,
        DecodeError::InvalidUtf8,
        MALFORMED,
    );
}

#[test]
fn null_character() {
    check_both(
        &pkt(0x30, "00 03 61 00 62"),
        DecodeError::NullCharacter,
        MALFORMED,
    );
    check(
        &pkt(0x10, "00 04 4D 51 54 54 04 02 00 3C 00 01 00"),
        V3,
        DecodeError::NullCharacter,
        MALFORMED,
    );
    check(
        &pkt(0x82, "00 01 00 03 61 00 62 00"),
        V3,
        DecodeError::NullCharacter,
        MALFORMED,
    );
    check(
        &publish_v5_with_props("03 00 02 61 00"),
        V5,
        DecodeError::NullCharacter,
        MALFORMED,
    );
}

#[test]
fn wildcard_in_publish_topic() {
    for topic in ["61 2F 2B", "23", "61 2B"] {
        let len = hex(topic).len();
        check_both(
            &pkt(0x30, &format!("00 {len:02X} {topic}")),
            DecodeError::WildcardInTopicName,
            ReasonCode::TopicNameInvalid,
        );
    }
}

#[test]
fn empty_topic_without_alias() {
    check(
        &pkt(0x30, "00 00"),
        V3,
        DecodeError::EmptyTopicName,
        PROTOCOL,
    );
    check(
        &pkt(0x30, "00 00 00"),
        V5,
        DecodeError::EmptyTopicName,
        PROTOCOL,
    );
    // With a Topic Alias it is fine.
    let mut buf = BytesMut::from(&pkt(0x30, "00 00 03 23 00 01")[..]);
    let Some(Packet::Publish(p)) = Decoder::with_version(V5).decode(&mut buf).unwrap() else {
        panic!()
    };
    assert!(p.topic.is_empty());
    assert_eq!(p.properties.topic_alias, Some(1));
    // Will topics may never be empty.
    check(
        &pkt(0x10, "00 04 4D 51 54 54 04 06 00 3C 00 01 63 00 00 00 00"),
        V3,
        DecodeError::EmptyTopicName,
        PROTOCOL,
    );
}

#[test]
fn packet_id_0() {
    let cases: [(Vec<u8>, &str); 9] = [
        (pkt(0x32, "00 01 74 00 00"), "PUBLISH QoS 1"),
        (pkt(0x34, "00 01 74 00 00"), "PUBLISH QoS 2"),
        (pkt(0x40, "00 00"), "PUBACK"),
        (pkt(0x50, "00 00"), "PUBREC"),
        (pkt(0x62, "00 00"), "PUBREL"),
        (pkt(0x70, "00 00"), "PUBCOMP"),
        (pkt(0xB0, "00 00"), "UNSUBACK"),
        (pkt(0x90, "00 00 00"), "SUBACK 3.1.1"),
        (pkt(0xA2, "00 00 00 01 61"), "UNSUBSCRIBE 3.1.1"),
    ];
    for (wire, what) in cases {
        let e = err(&wire, V3);
        assert_eq!(e, DecodeError::ZeroPacketId, "{what}");
        assert_eq!(e.reason_code(), MALFORMED);
    }
    check(
        &pkt(0x82, "00 00 00 01 61 00"),
        V3,
        DecodeError::ZeroPacketId,
        MALFORMED,
    );
    check(
        &pkt(0x82, "00 00 00 00 01 61 00"),
        V5,
        DecodeError::ZeroPacketId,
        MALFORMED,
    );
    check(
        &pkt(0xA2, "00 00 00 00 01 61"),
        V5,
        DecodeError::ZeroPacketId,
        MALFORMED,
    );
    check(
        &pkt(0x32, "00 01 74 00 00 00"),
        V5,
        DecodeError::ZeroPacketId,
        MALFORMED,
    );
}

// ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------

#[test]
fn empty_subscribe() {
    check(
        &pkt(0x82, "00 01"),
        V3,
        DecodeError::EmptySubscribe,
        PROTOCOL,
    );
    check(
        &pkt(0x82, "00 01 00"),
        V5,
        DecodeError::EmptySubscribe,
        PROTOCOL,
    );
}

#[test]
fn empty_unsubscribe() {
    check(
        &pkt(0xA2, "00 01"),
        V3,
        DecodeError::EmptyUnsubscribe,
        PROTOCOL,
    );
    check(
        &pkt(0xA2, "00 01 00"),
        V5,
        DecodeError::EmptyUnsubscribe,
        PROTOCOL,
    );
}

#[test]
fn reserved_subscription_option_bits() {
    // 3.1.1: bits 2-7 are reserved [MQTT-3.8.3-4].
    for b in [0x04u8, 0x08, 0x10, 0x40, 0x80] {
        check(
            &pkt(0x82, &format!("00 01 00 01 61 {b:02X}")),
            V3,
            DecodeError::InvalidSubscriptionOptions(b),
            MALFORMED,
        );
    }
    // 5.0: bits 6-7 are reserved [MQTT-3.8.3-5].
    for b in [0x40u8, 0x80, 0xC1] {
        check(
            &pkt(0x82, &format!("00 01 00 00 01 61 {b:02X}")),
            V5,
            DecodeError::InvalidSubscriptionOptions(b),
            MALFORMED,
        );
    }
    // QoS 3 in the options.
    check(
        &pkt(0x82, "00 01 00 01 61 03"),
        V3,
        DecodeError::InvalidQoS,
        MALFORMED,
    );
}

#[test]
fn retain_handling_3() {
    check(
        &pkt(0x82, "00 01 00 00 01 61 30"),
        V5,
        DecodeError::InvalidRetainHandling,
        PROTOCOL,
    );
}

#[test]
fn no_local_on_shared_subscription() {
    // "$share/g/a" with No Local.
    check(
        &pkt(0x82, "00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04"),
        V5,
        DecodeError::NoLocalOnSharedSubscription,
        PROTOCOL,
    );
}

#[test]
fn invalid_topic_filters() {
    let cases = [
        ("a/#/b", TopicError::MisplacedMultiLevel),
        ("a#", TopicError::MisplacedMultiLevel),
        ("a+", TopicError::MisplacedSingleLevel),
        ("a/+b", TopicError::MisplacedSingleLevel),
        ("$share/g", TopicError::InvalidShare),
        ("$share//a", TopicError::InvalidShare),
        ("$share/g/", TopicError::InvalidShare),
        ("$share/g+/a", TopicError::InvalidShare),
        ("", TopicError::Empty),
    ];
    for (filter, topic_error) in cases {
        let f: String = filter.bytes().map(|b| format!("{b:02X} ")).collect();
        let n = filter.len();
        let expected = DecodeError::InvalidTopicFilter(topic_error);
        // SUBSCRIBE 3.1.1 and 5.0, UNSUBSCRIBE 3.1.1 and 5.0.
        for (wire, v) in [
            (pkt(0x82, &format!("00 01 00 {n:02X} {f} 00")), V3),
            (pkt(0x82, &format!("00 01 00 00 {n:02X} {f} 00")), V5),
            (pkt(0xA2, &format!("00 01 00 {n:02X} {f}")), V3),
            (pkt(0xA2, &format!("00 01 00 00 {n:02X} {f}")), V5),
        ] {
            check(&wire, v, expected.clone(), ReasonCode::TopicFilterInvalid);
        }
        assert_eq!(TopicFilter::new(filter), Err(topic_error));
    }
}

// ---- Properties ------------------------------------------------------------

#[test]
fn unknown_property() {
    check(
        &publish_v5_with_props("05 00"),
        V5,
        DecodeError::UnknownProperty(0x05),
        MALFORMED,
    );
    check(
        &publish_v5_with_props("FF 01 00"),
        V5,
        DecodeError::UnknownProperty(0xFF),
        MALFORMED,
    );
}

#[test]
fn property_not_allowed_in_packet() {
    check(
        &publish_v5_with_props("11 00 00 00 0A"),
        V5,
        DecodeError::PropertyNotAllowed {
            property: PropertyId::SessionExpiryInterval,
            context: "PUBLISH",
        },
        MALFORMED,
    );
    check(
        &connect_v5_with_props("23 00 01"),
        V5,
        DecodeError::PropertyNotAllowed {
            property: PropertyId::TopicAlias,
            context: "CONNECT",
        },
        MALFORMED,
    );
    // Will Delay Interval is a will property, not a CONNECT property.
    check(
        &connect_v5_with_props("18 00 00 00 01"),
        V5,
        DecodeError::PropertyNotAllowed {
            property: PropertyId::WillDelayInterval,
            context: "CONNECT",
        },
        MALFORMED,
    );
    // Reason String in PUBACK is fine, Content Type is not.
    check(
        &pkt(0x40, "00 01 00 04 03 00 01 61"),
        V5,
        DecodeError::PropertyNotAllowed {
            property: PropertyId::ContentType,
            context: "PUBACK/PUBREC/PUBREL/PUBCOMP",
        },
        MALFORMED,
    );
}

#[test]
fn duplicate_property() {
    check(
        &publish_v5_with_props("02 00 00 00 01 02 00 00 00 02"),
        V5,
        DecodeError::DuplicateProperty(PropertyId::MessageExpiryInterval),
        PROTOCOL,
    );
    // Several Subscription Identifiers in a PUBLISH are fine, not in SUBSCRIBE.
    check(
        &pkt(0x82, "00 01 04 0B 01 0B 02 00 01 61 00"),
        V5,
        DecodeError::DuplicateProperty(PropertyId::SubscriptionIdentifier),
        PROTOCOL,
    );
    let mut buf = BytesMut::from(&publish_v5_with_props("0B 01 0B 02")[..]);
    let Some(Packet::Publish(p)) = Decoder::with_version(V5).decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, [1, 2]);
    // User properties may repeat.
    let mut buf =
        BytesMut::from(&publish_v5_with_props("26 00 01 61 00 01 62 26 00 01 61 00 01 63")[..]);
    let Some(Packet::Publish(p)) = Decoder::with_version(V5).decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.len(), 2);
}

#[test]
fn receive_maximum_0() {
    check(
        &connect_v5_with_props("21 00 00"),
        V5,
        DecodeError::InvalidPropertyValue(PropertyId::ReceiveMaximum),
        PROTOCOL,
    );
}

#[test]
fn maximum_packet_size_0() {
    check(
        &connect_v5_with_props("27 00 00 00 00"),
        V5,
        DecodeError::InvalidPropertyValue(PropertyId::MaximumPacketSize),
        PROTOCOL,
    );
}

#[test]
fn topic_alias_0() {
    check(
        &publish_v5_with_props("23 00 00"),
        V5,
        DecodeError::TopicAliasZero,
        ReasonCode::TopicAliasInvalid,
    );
}

#[test]
fn subscription_identifier_0() {
    check(
        &pkt(0x82, "00 01 02 0B 00 00 01 61 00"),
        V5,
        DecodeError::InvalidPropertyValue(PropertyId::SubscriptionIdentifier),
        PROTOCOL,
    );
    check(
        &publish_v5_with_props("0B 00"),
        V5,
        DecodeError::InvalidPropertyValue(PropertyId::SubscriptionIdentifier),
        PROTOCOL,
    );
}

#[test]
fn invalid_property_values() {
    for (props, id) in [
        ("01 02", PropertyId::PayloadFormatIndicator),
        ("08 00 03 61 2F 23", PropertyId::ResponseTopic),
        ("08 00 00", PropertyId::ResponseTopic),
    ] {
        check(
            &publish_v5_with_props(props),
            V5,
            DecodeError::InvalidPropertyValue(id),
            PROTOCOL,
        );
    }
    check(
        &connect_v5_with_props("17 02"),
        V5,
        DecodeError::InvalidPropertyValue(PropertyId::RequestProblemInformation),
        PROTOCOL,
    );
    check(
        &pkt(0x20, "00 00 02 24 02"),
        V5,
        DecodeError::InvalidPropertyValue(PropertyId::MaximumQoS),
        PROTOCOL,
    );
}

#[test]
fn property_length_malformed_or_too_long() {
    // Property length as a 5-byte variable byte integer.
    check(
        &pkt(0x30, "00 01 74 FF FF FF FF 7F"),
        V5,
        DecodeError::MalformedVariableInteger,
        MALFORMED,
    );
    // [MQTT-1.5.5-1] Variable byte integers in the fewest bytes: a
    // property length of 1 written as `81 00`, a property identifier 0x01
    // as `81 00`, and a Subscription Identifier of 1 as `81 80 00`.
    for wire in [
        pkt(0x30, "00 01 74 81 00 01 01"),
        pkt(0x30, "00 01 74 03 81 00 01"),
        pkt(0x30, "00 01 74 04 0B 81 80 00"),
    ] {
        check(&wire, V5, DecodeError::MalformedVariableInteger, MALFORMED);
    }
    // The same values in their shortest form decode.
    let mut ok = BytesMut::from(&pkt(0x30, "00 01 74 02 0B 01")[..]);
    let Some(Packet::Publish(p)) = Decoder::with_version(V5).decode(&mut ok).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(p.properties.subscription_identifiers, [1]);
    // Property length beyond the end of the packet.
    check(
        &pkt(0x30, "00 01 74 05 01 01"),
        V5,
        DecodeError::UnexpectedEnd(PacketType::Publish),
        MALFORMED,
    );
    // A property value that runs past the property length.
    check(
        &pkt(0x30, "00 01 74 02 02 00 00 00 00"),
        V5,
        DecodeError::UnexpectedEnd(PacketType::Publish),
        MALFORMED,
    );
}

// ---- CONNECT ---------------------------------------------------------------

#[test]
fn invalid_protocol_name() {
    for name in [
        "00 04 4D 51 54 58",
        "00 03 4D 51 54",
        "00 06 4D 51 49 73 64 71",
    ] {
        let wire = pkt(0x10, &format!("{name} 04 02 00 3C 00 01 63"));
        check_both(
            &wire,
            DecodeError::InvalidProtocolName,
            ReasonCode::UnsupportedProtocolVersion,
        );
        assert_eq!(
            peek_connect_version(&wire),
            Err(DecodeError::InvalidProtocolName)
        );
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            Decoder::new().decode(&mut buf),
            Err(DecodeError::InvalidProtocolName)
        );
    }
}

#[test]
fn unsupported_protocol_level() {
    for (name, level) in [
        ("00 04 4D 51 54 54", 6u8),
        ("00 04 4D 51 54 54", 3),
        ("00 06 4D 51 49 73 64 70", 4),
    ] {
        let wire = pkt(0x10, &format!("{name} {level:02X} 02 00 3C 00 01 63"));
        let mut buf = BytesMut::from(&wire[..]);
        let e = Decoder::new().decode(&mut buf).unwrap_err();
        assert_eq!(e, DecodeError::UnsupportedProtocolVersion(level));
        assert_eq!(e.reason_code(), ReasonCode::UnsupportedProtocolVersion);
        assert_eq!(
            peek_connect_version(&wire),
            Err(DecodeError::UnsupportedProtocolVersion(level))
        );
    }
}

#[test]
fn reserved_connect_flag() {
    check_both(
        &pkt(0x10, "00 04 4D 51 54 54 04 03 00 3C 00 01 63"),
        DecodeError::ReservedConnectFlag,
        MALFORMED,
    );
}

#[test]
fn will_flags_without_will() {
    // Will QoS 1 without the will flag; will retain without it; will QoS 3.
    for flags in ["0A", "22", "1E"] {
        check(
            &pkt(
                0x10,
                &format!("00 04 4D 51 54 54 04 {flags} 00 3C 00 01 63"),
            ),
            V3,
            DecodeError::InvalidWillFlags,
            MALFORMED,
        );
    }
}

#[test]
fn password_without_username_311_only() {
    let v3 = pkt(0x10, "00 04 4D 51 54 54 04 42 00 3C 00 01 63 00 02 70 77");
    check(&v3, V3, DecodeError::PasswordWithoutUsername, MALFORMED);
    let v31 = pkt(
        0x10,
        "00 06 4D 51 49 73 64 70 03 42 00 3C 00 01 63 00 02 70 77",
    );
    check(
        &v31,
        ProtocolVersion::V3_1,
        DecodeError::PasswordWithoutUsername,
        MALFORMED,
    );
    // 5.0 allows a password alone.
    let v5 = pkt(
        0x10,
        "00 04 4D 51 54 54 05 42 00 3C 00 00 01 63 00 02 70 77",
    );
    let mut buf = BytesMut::from(&v5[..]);
    let Some(Packet::Connect(c)) = Decoder::new().decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

// ---- CONNACK and reason codes ----------------------------------------------

#[test]
fn connack_reserved_flags() {
    check(
        &pkt(0x20, "02 00"),
        V3,
        DecodeError::ReservedConnAckFlags,
        MALFORMED,
    );
    check(
        &pkt(0x20, "80 00 00"),
        V5,
        DecodeError::ReservedConnAckFlags,
        MALFORMED,
    );
}

#[test]
fn unknown_reason_codes() {
    check(
        &pkt(0x40, "00 01 03"),
        V5,
        DecodeError::UnknownReasonCode(3),
        MALFORMED,
    );
    check(
        &pkt(0x20, "00 03 00"),
        V5,
        DecodeError::UnknownReasonCode(3),
        MALFORMED,
    );
    check(
        &pkt(0xE0, "FF"),
        V5,
        DecodeError::UnknownReasonCode(0xFF),
        MALFORMED,
    );
    check(
        &pkt(0x90, "00 01 00 42"),
        V5,
        DecodeError::UnknownReasonCode(0x42),
        MALFORMED,
    );
    check(
        &pkt(0x90, "00 01 03"),
        V3,
        DecodeError::UnknownReasonCode(3),
        MALFORMED,
    );
    check(
        &pkt(0x20, "00 06"),
        V3,
        DecodeError::InvalidConnAckCode(6),
        MALFORMED,
    );
}

#[test]
fn reason_codes_not_allowed_in_packet() {
    let cases = [
        (
            pkt(0x40, "00 01 8F"),
            PacketType::PubAck,
            ReasonCode::TopicFilterInvalid,
        ),
        (
            pkt(0x62, "00 01 10"),
            PacketType::PubRel,
            ReasonCode::NoMatchingSubscribers,
        ),
        (
            pkt(0x70, "00 01 80"),
            PacketType::PubComp,
            ReasonCode::UnspecifiedError,
        ),
        (
            pkt(0x20, "00 04 00"),
            PacketType::ConnAck,
            ReasonCode::DisconnectWithWillMessage,
        ),
        (
            pkt(0xE0, "01"),
            PacketType::Disconnect,
            ReasonCode::GrantedQoS1,
        ),
        (
            pkt(0x90, "00 01 00 11"),
            PacketType::SubAck,
            ReasonCode::NoSubscriptionExisted,
        ),
        (
            pkt(0xB0, "00 01 00 01"),
            PacketType::UnsubAck,
            ReasonCode::GrantedQoS1,
        ),
        (
            pkt(0xF0, "04"),
            PacketType::Auth,
            ReasonCode::DisconnectWithWillMessage,
        ),
    ];
    for (wire, packet, code) in cases {
        check(
            &wire,
            V5,
            DecodeError::ReasonCodeNotAllowed { code, packet },
            PROTOCOL,
        );
    }
    // 3.1.1 SUBACK knows only 0, 1, 2 and 0x80.
    check(
        &pkt(0x90, "00 01 87"),
        V3,
        DecodeError::ReasonCodeNotAllowed {
            code: ReasonCode::NotAuthorized,
            packet: PacketType::SubAck,
        },
        PROTOCOL,
    );
}

// ---- Lengths ---------------------------------------------------------------

#[test]
fn trailing_bytes() {
    let cases: [(Vec<u8>, ProtocolVersion, PacketType); 8] = [
        (pkt(0xC0, "00"), V3, PacketType::PingReq),
        (pkt(0xD0, "00"), V5, PacketType::PingResp),
        (pkt(0xE0, "00"), V3, PacketType::Disconnect),
        (pkt(0x20, "00 00 00"), V3, PacketType::ConnAck),
        (pkt(0x40, "00 01 00"), V3, PacketType::PubAck),
        (pkt(0xB0, "00 01 00"), V3, PacketType::UnsubAck),
        (
            pkt(0x10, "00 04 4D 51 54 54 04 02 00 3C 00 01 63 00"),
            V3,
            PacketType::Connect,
        ),
        (pkt(0x20, "00 00 00 00"), V5, PacketType::ConnAck),
    ];
    for (wire, v, ty) in cases {
        check(&wire, v, DecodeError::TrailingBytes(ty), MALFORMED);
    }
}

#[test]
fn truncated_packets() {
    // The remaining length is honest but too short for the fields.
    let cases: [(Vec<u8>, ProtocolVersion, PacketType); 9] = [
        (pkt(0x30, "00"), V3, PacketType::Publish),
        (pkt(0x30, "00 05 61"), V3, PacketType::Publish),
        (pkt(0x32, "00 01 74 00"), V3, PacketType::Publish),
        (pkt(0x30, "00 01 74"), V5, PacketType::Publish),
        (
            pkt(0x10, "00 04 4D 51 54 54 04 02 00"),
            V3,
            PacketType::Connect,
        ),
        (pkt(0x20, "00"), V3, PacketType::ConnAck),
        (pkt(0x40, "00"), V5, PacketType::PubAck),
        (pkt(0x82, "00 01 00 02 61"), V3, PacketType::Subscribe),
        (pkt(0x82, "00 01 00 01 61"), V3, PacketType::Subscribe),
    ];
    for (wire, v, ty) in cases {
        check(&wire, v, DecodeError::UnexpectedEnd(ty), MALFORMED);
    }
}

// ---- Server decoder --------------------------------------------------------

#[test]
fn non_connect_first_packet_for_server_decoder() {
    for wire in [
        hex("C0 00"),
        pkt(0x30, "00 01 74"),
        hex("E0 00"),
        hex("82 00"),
    ] {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&wire[..]);
        let e = d.decode(&mut buf).unwrap_err();
        assert!(matches!(e, DecodeError::VersionUnknown(_)), "{e:?}");
        assert_eq!(e.reason_code(), PROTOCOL);
        assert_eq!(d.version(), None);
    }
    assert_eq!(
        peek_connect_version(&hex("C0 00")),
        Err(DecodeError::VersionUnknown(PacketType::PingReq))
    );
}

#[test]
fn every_error_has_a_5_0_reason_code_and_message() {
    // Spot-check Display (thiserror) and that codes are error codes.
    let e = DecodeError::PacketTooLarge { size: 10, max: 5 };
    assert!(e.to_string().contains("10"));
    for e in [
        DecodeError::InvalidUtf8,
        DecodeError::ZeroPacketId,
        DecodeError::EmptySubscribe,
        DecodeError::TopicAliasZero,
    ] {
        assert!(e.reason_code().is_error());
    }
}

// ---- Encoding refusals -----------------------------------------------------

/// What a decoder refuses, the encoder does not write: a property the
/// packet cannot carry is named with the packet, a value the peer must
/// reject with the property; nothing is appended, and 3.1.1 (which has no
/// properties) is unaffected. (PUBLISH: see `encode_errors`.)
#[test]
fn encode_refuses_properties_the_peer_must_reject() {
    let mut buf = BytesMut::new();
    // A Reason String on a SUBSCRIBE.
    let mut s = Subscribe::new(
        PacketId::new(1).unwrap(),
        TopicFilter::new("a/#").unwrap(),
        SubscriptionOptions::default(),
    );
    s.properties.reason_string = Some("why".into());
    let e = s.encode(V5, &mut buf).unwrap_err();
    assert_eq!(
        e,
        EncodeError::PropertyNotAllowed {
            property: PropertyId::ReasonString,
            context: "SUBSCRIBE"
        }
    );
    assert_eq!(
        e.to_string(),
        "property ReasonString cannot be sent in SUBSCRIBE"
    );
    assert!(s.encode(V3, &mut BytesMut::new()).is_ok());
    // A Session Expiry Interval among the will properties (it belongs to
    // the CONNECT itself).
    let mut c = Connect::new(V5, "c");
    let mut will = LastWill {
        topic: TopicName::try_from("status/c").unwrap(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    };
    will.properties.session_expiry_interval = Some(60);
    c.will = Some(will);
    assert_eq!(
        c.encode(V5, &mut buf),
        Err(EncodeError::PropertyNotAllowed {
            property: PropertyId::SessionExpiryInterval,
            context: "will properties"
        })
    );
    // A Maximum QoS of 2 in a CONNACK (only 0 or 1 may be sent).
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.maximum_qos = Some(QoS::ExactlyOnce);
    assert_eq!(
        ack.encode(V5, &mut buf),
        Err(EncodeError::InvalidPropertyValue(PropertyId::MaximumQoS))
    );
    assert!(buf.is_empty(), "nothing appended by failed encodes");
}

#[test]
fn encode_errors() {
    let mut buf = BytesMut::new();
    // AUTH does not exist in 3.1.1.
    assert_eq!(
        Auth::default().encode(V3, &mut buf),
        Err(EncodeError::NotInVersion(PacketType::Auth))
    );
    // QoS 1 without a packet identifier.
    let mut p = Publish::new(TopicName::try_from("t").unwrap(), "x");
    p.qos = QoS::AtLeastOnce;
    assert_eq!(p.encode(V3, &mut buf), Err(EncodeError::MissingPacketId));
    // A subscription identifier a variable byte integer cannot hold.
    let mut p = Publish::new(TopicName::try_from("t").unwrap(), "x");
    p.properties.subscription_identifiers = vec![MAX_VARIABLE_INTEGER + 1];
    assert_eq!(
        p.encode(V5, &mut buf),
        Err(EncodeError::InvalidPropertyValue(
            PropertyId::SubscriptionIdentifier
        ))
    );
    p.properties.subscription_identifiers = vec![0];
    assert!(p.encode(V5, &mut buf).is_err());
    // A PUBLISH property above 65,535 bytes (each of the four kinds of
    // field), refused with nothing written; 3.1.1 writes no properties.
    let long = || MqttString::from("x".repeat(70_000));
    for set in [
        (|p: &mut Publish, s: MqttString| p.properties.content_type = Some(s)) as fn(&mut _, _),
        |p, s| p.properties.response_topic = Some(s),
        |p, s| p.properties.correlation_data = Some(s.to_bytes()),
        |p, s| p.properties.user_properties.push(("k".into(), s)),
        |p, s| p.properties.user_properties.push((s, "v".into())),
    ] {
        let mut p = Publish::new(TopicName::try_from("t").unwrap(), "x");
        set(&mut p, long());
        let before = buf.len();
        assert_eq!(
            p.encode(V5, &mut buf),
            Err(EncodeError::FieldTooLong(70_000))
        );
        assert_eq!(buf.len(), before);
        assert!(p.encode(V3, &mut BytesMut::new()).is_ok());
    }
    // A string field above 65,535 bytes.
    let mut c = Connect::new(V5, "c");
    c.username = Some("u".repeat(70_000));
    assert_eq!(
        c.encode(V5, &mut buf),
        Err(EncodeError::FieldTooLong(70_000))
    );
    // SUBSCRIBE without filters.
    let mut s = Subscribe::new(
        PacketId::new(1).unwrap(),
        TopicFilter::new("a").unwrap(),
        SubscriptionOptions::default(),
    );
    s.subscriptions.clear();
    assert_eq!(s.encode(V3, &mut buf), Err(EncodeError::NoTopicFilters));
    assert!(buf.is_empty(), "nothing appended by failed encodes");
    // Above the peer's maximum.
    let p = Publish::new(TopicName::try_from("t").unwrap(), vec![0u8; 100]);
    assert_eq!(
        p.encode_limited(V3, 50, &mut buf),
        Err(EncodeError::PacketTooLarge { size: 105, max: 50 })
    );
    // A topic name that is not UTF-8 is refused at construction.
    assert_eq!(
        TopicName::new(bytes::Bytes::from_static(&[0xFF])),
        Err(TopicError::InvalidUtf8)
    );
}

#[test]
fn mqtt_3_1_accepts_dup_on_a_resent_pubrel_subscribe_and_unsubscribe_and_3_1_1_does_not() {
    use mqtt_codec::{Decoder, Packet, ProtocolVersion};
    // PUBREL for 1 with DUP (0x6A), as a 3.1 client re-sends it
    // (Mosquitto's 03-publish-c2b-disconnect-qos2 test does).
    let wire: &[u8] = &[0x6A, 0x02, 0x00, 0x01];
    let mut d = Decoder::with_version(ProtocolVersion::V3_1);
    let mut buf = bytes::BytesMut::from(wire);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::PubRel(r))) if r.packet_id.get() == 1));
    // SUBSCRIBE with DUP (0x8A), a partial header first.
    let sub: &[u8] = &[0x8A, 0x06, 0x00, 0x02, 0x00, 0x01, b't', 0x00];
    let mut buf = bytes::BytesMut::from(&sub[..1]);
    assert!(matches!(d.decode(&mut buf), Ok(None)));
    buf.extend_from_slice(&sub[1..]);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Subscribe(_)))));
    // 3.1.1 requires the flags to be exactly 0x2 [MQTT-3.6.1-1].
    let mut d = Decoder::with_version(ProtocolVersion::V3_1_1);
    let mut buf = bytes::BytesMut::from(wire);
    assert!(d.decode(&mut buf).is_err());
}

#[test]
fn mosquitto_bridge_levels_decode_as_bridges_of_3_1_and_3_1_1() {
    use mqtt_codec::{Connect, Decoder, Packet, ProtocolVersion};
    for (v, level) in [
        (ProtocolVersion::V3_1, 0x83u8),
        (ProtocolVersion::V3_1_1, 0x84),
    ] {
        let mut c = Connect::new(v, "bridge");
        c.bridge = true;
        let mut buf = bytes::BytesMut::new();
        Packet::Connect(Box::new(c.clone()))
            .encode(v, &mut buf)
            .unwrap();
        let name_len = if v == ProtocolVersion::V3_1 { 6 } else { 4 };
        assert_eq!(buf[2 + 2 + name_len], level);
        match Decoder::new().decode(&mut buf).unwrap() {
            Some(Packet::Connect(got)) => assert_eq!(*got, c),
            other => panic!("{other:?}"),
        }
    }
    // 5.0 has no bridge bit (bridges use No Local): 0x85 is refused, and a
    // 5.0 CONNECT marked as a bridge is encoded as plain 5.
    let mut c = Connect::new(ProtocolVersion::V5, "b5");
    c.bridge = true;
    let mut buf = bytes::BytesMut::new();
    Packet::Connect(Box::new(c))
        .encode(ProtocolVersion::V5, &mut buf)
        .unwrap();
    assert_eq!(buf[2 + 2 + 4], 5);
    buf[2 + 2 + 4] = 0x85;
    assert!(Decoder::new().decode(&mut buf).is_err());
}
