//! The byte examples written out in the MQTT 3.1.1 and 5.0 specifications
//! decode to the values the specifications give, and re-encode to the same
//! bytes.
//!
//! Where a specification figure shows only a variable header (CONNECT,
//! PUBLISH, ...), the test completes it with a payload and says so; the
//! bytes of the figure are kept verbatim.

mod common;

use bytes::{Bytes, BytesMut};
use common::hex;
use mqtt_codec::*;

/// Decodes exactly one packet from `wire` with `v`, and checks that it
/// re-encodes to `wire`.
fn decode_exact(wire: &[u8], v: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(wire);
    let p = Decoder::with_version(v)
        .decode(&mut buf)
        .expect("valid")
        .expect("complete");
    assert!(buf.is_empty(), "trailing bytes after the packet");
    let mut again = BytesMut::new();
    p.encode(v, &mut again).unwrap();
    assert_eq!(&again[..], wire, "re-encoding differs");
    assert_eq!(p.encoded_len(v), wire.len());
    p
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

/// 3.1.1 section 2.2.3 Table 2.4 / 5.0 section 1.5.5 Table 1-1: the size of
/// the Remaining Length / Variable Byte Integer.
const REMAINING_LENGTH_EXAMPLES: [(usize, &str); 8] = [
    (0, "00"),
    (127, "7F"),
    (128, "80 01"),
    (16_383, "FF 7F"),
    (16_384, "80 80 01"),
    (2_097_151, "FF FF 7F"),
    (2_097_152, "80 80 80 01"),
    (268_435_455, "FF FF FF 7F"),
];

#[test]
fn remaining_length_encodings_decode() {
    for (value, bytes) in REMAINING_LENGTH_EXAMPLES {
        // A PUBLISH fixed header (0x30) with that remaining length.
        let mut wire = vec![0x30];
        wire.extend(hex(bytes));
        let h = FixedHeader::parse(&wire).unwrap().expect("complete header");
        assert_eq!(h.packet_type, PacketType::Publish);
        assert_eq!(h.remaining_length, value, "{bytes}");
        assert_eq!(h.header_len, wire.len());
        assert_eq!(h.packet_len(), wire.len() + value);
        // One byte fewer is not a whole header yet.
        assert_eq!(FixedHeader::parse(&wire[..wire.len() - 1]), Ok(None));
    }
}

#[test]
fn remaining_length_encodings_reencode() {
    for (value, bytes) in REMAINING_LENGTH_EXAMPLES {
        // A 3.1.1 QoS 0 PUBLISH to "a" has a body of 3 bytes + payload.
        if value < 3 {
            continue;
        }
        let expected = hex(bytes);
        let payload_len = value - 3;
        if value > 2_097_152 {
            // 256 MB is not worth allocating: check the computed size only.
            let p = Publish::new(TopicName::try_from("a").unwrap(), Bytes::new());
            assert_eq!(p.encoded_len(ProtocolVersion::V3_1_1), 1 + 1 + 3);
            let big = 1 + expected.len() + value;
            assert_eq!(big, MAX_PACKET_SIZE as usize);
            continue;
        }
        let p = Publish::new(TopicName::try_from("a").unwrap(), vec![0u8; payload_len]);
        let mut buf = BytesMut::new();
        p.encode(ProtocolVersion::V3_1_1, &mut buf).unwrap();
        assert_eq!(&buf[1..1 + expected.len()], &expected[..], "{value}");
        assert_eq!(buf.len(), 1 + expected.len() + value);
        let Packet::Publish(d) = decode_exact(&buf, ProtocolVersion::V3_1_1) else {
            panic!()
        };
        assert_eq!(d.payload.len(), payload_len);
    }
}

#[test]
fn variable_byte_integer_in_properties() {
    // 5.0 Subscription Identifier 268,435,455 (FF FF FF 7F) in a SUBSCRIBE.
    let wire = hex("82 0C 00 01 05 0B FF FF FF 7F 00 01 61 00");
    let Packet::Subscribe(s) = decode_exact(&wire, ProtocolVersion::V5) else {
        panic!()
    };
    assert_eq!(s.properties.subscription_identifiers, vec![268_435_455]);
}

/// 3.1.1 section 3.1.2.10 Figure 3.6 (variable header: "MQTT", level 4,
/// flags 0xCE = user name, password, will QoS 1, will flag, clean session;
/// keep alive 10), completed with the payload the flags call for.
#[test]
fn connect_v311_figure_3_6() {
    let variable_header = "00 04 4D 51 54 54 04 CE 00 0A";
    let payload = "00 03 63 69 64  00 03 61 2F 62  00 02 68 69  00 04 75 73 65 72  00 02 70 77";
    let body = hex(&format!("{variable_header} {payload}"));
    let mut wire = vec![0x10, body.len() as u8];
    wire.extend(&body);
    assert_eq!(
        peek_connect_version(&wire),
        Ok(Some(ProtocolVersion::V3_1_1))
    );
    let Packet::Connect(c) = decode_exact(&wire, ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert_eq!(c.protocol, ProtocolVersion::V3_1_1);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.client_id, "cid");
    let w = c.will.as_ref().unwrap();
    assert_eq!(w.topic.as_str(), "a/b");
    assert_eq!(&w.payload[..], b"hi");
    assert_eq!(w.qos, QoS::AtLeastOnce);
    assert!(!w.retain);
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));

    // The server decoder learns 3.1.1 from it.
    let mut d = Decoder::new();
    d.decode(&mut BytesMut::from(&wire[..])).unwrap().unwrap();
    assert_eq!(d.version(), Some(ProtocolVersion::V3_1_1));
}

/// 5.0 section 3.1.2.11 Figure 3-8 (variable header: "MQTT", level 5, flags
/// 0xC2 = user name, password, clean start; keep alive 10; properties length
/// 5, Session Expiry Interval 10), completed with a payload.
#[test]
fn connect_v5_figure_3_8() {
    let variable_header = "00 04 4D 51 54 54 05 C2 00 0A 05 11 00 00 00 0A";
    let payload = "00 03 63 69 64  00 04 75 73 65 72  00 02 70 77";
    let body = hex(&format!("{variable_header} {payload}"));
    let mut wire = vec![0x10, body.len() as u8];
    wire.extend(&body);
    assert_eq!(peek_connect_version(&wire), Ok(Some(ProtocolVersion::V5)));
    let Packet::Connect(c) = decode_exact(&wire, ProtocolVersion::V5) else {
        panic!()
    };
    assert_eq!(c.protocol, ProtocolVersion::V5);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.properties.session_expiry_interval, Some(10));
    assert_eq!(c.client_id, "cid");
    assert!(c.will.is_none());
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

/// MQTT 3.1 (protocol name "MQIsdp", level 3): CONNECT variable header of
/// the 3.1 specification (flags 0xCE, keep alive 10).
#[test]
fn connect_v31_mqisdp() {
    let body = hex("00 06 4D 51 49 73 64 70 03 CE 00 0A  00 03 63 69 64  00 03 61 2F 62  00 02 68 69  00 04 75 73 65 72  00 02 70 77");
    let mut wire = vec![0x10, body.len() as u8];
    wire.extend(&body);
    let mut d = Decoder::new();
    let Some(Packet::Connect(c)) = d.decode(&mut BytesMut::from(&wire[..])).unwrap() else {
        panic!()
    };
    assert_eq!(d.version(), Some(ProtocolVersion::V3_1));
    assert_eq!(c.protocol, ProtocolVersion::V3_1);
    decode_exact(&wire, ProtocolVersion::V3_1);
}

/// 3.1.1 section 3.2 / 5.0 section 3.2: CONNACK.
#[test]
fn connack_examples() {
    // 3.1.1: session present 0, return code 0 (accepted).
    let Packet::ConnAck(c) = decode_exact(&hex("20 02 00 00"), ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert!(!c.session_present);
    assert_eq!(c.reason_code, ReasonCode::Success);
    // 3.1.1 return code 5: not authorized; session present 1.
    let Packet::ConnAck(c) = decode_exact(&hex("20 02 01 05"), ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert!(c.session_present);
    assert_eq!(c.reason_code, ReasonCode::NotAuthorized);
    // 5.0: reason 0x00, no properties.
    let Packet::ConnAck(c) = decode_exact(&hex("20 03 00 00 00"), ProtocolVersion::V5) else {
        panic!()
    };
    assert_eq!(c.reason_code, ReasonCode::Success);
    assert!(c.properties.is_empty());
}

/// 3.1.1 section 3.3.2.3 Figure 3.11 (topic "a/b", packet identifier 10),
/// with a payload; and 5.0 section 1.5.4 Figure 1-3 (the string "A𪛔":
/// 00 05 41 F0 AA 9B 94) as a topic.
#[test]
fn publish_examples() {
    let wire = hex("32 0A 00 03 61 2F 62 00 0A 68 69 21");
    let Packet::Publish(p) = decode_exact(&wire, ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert_eq!(p.topic.as_str(), "a/b");
    assert_eq!(p.packet_id, Some(pid(10)));
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(&p.payload[..], b"hi!");

    let wire = hex("30 07 00 05 41 F0 AA 9B 94");
    let Packet::Publish(p) = decode_exact(&wire, ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert_eq!(p.topic.as_str(), "A\u{2A6D4}");
    assert!(p.payload.is_empty());

    // 5.0: the same with an empty property list.
    let wire = hex("32 0B 00 03 61 2F 62 00 0A 00 68 69 21");
    let Packet::Publish(p) = decode_exact(&wire, ProtocolVersion::V5) else {
        panic!()
    };
    assert_eq!(p.packet_id, Some(pid(10)));
    assert!(p.properties.is_empty());
}

/// PUBACK, PUBREC, PUBREL (flags 0010), PUBCOMP with packet identifier 10;
/// 5.0 with the reason code omitted, present, and with properties.
#[test]
fn publish_response_examples() {
    for (first, ty) in [
        (0x40u8, PacketType::PubAck),
        (0x50, PacketType::PubRec),
        (0x62, PacketType::PubRel),
        (0x70, PacketType::PubComp),
    ] {
        for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let p = decode_exact(&[first, 0x02, 0x00, 0x0A], v);
            assert_eq!(p.packet_type(), ty);
        }
    }
    // 5.0 section 3.4.2.1: 0x10 No matching subscribers, no properties.
    let Packet::PubAck(a) = decode_exact(&hex("40 03 00 0A 10"), ProtocolVersion::V5) else {
        panic!()
    };
    assert_eq!(a.reason_code, ReasonCode::NoMatchingSubscribers);
    // 5.0 PUBREL 0x92 Packet Identifier not found with a Reason String "x".
    let Packet::PubRel(a) =
        decode_exact(&hex("62 08 00 0A 92 04 1F 00 01 78"), ProtocolVersion::V5)
    else {
        panic!()
    };
    assert_eq!(a.reason_code, ReasonCode::PacketIdentifierNotFound);
    assert_eq!(a.properties.reason_string.as_deref(), Some("x"));
}

/// 3.1.1 section 3.8.3 Figure 3.22: SUBSCRIBE "a/b" QoS 1 and "c/d" QoS 2,
/// packet identifier 10 (section 3.8.2 Figure 3.21).
#[test]
fn subscribe_example() {
    let wire = hex("82 0E 00 0A 00 03 61 2F 62 01 00 03 63 2F 64 02");
    let Packet::Subscribe(s) = decode_exact(&wire, ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert_eq!(s.packet_id, pid(10));
    let got: Vec<(&str, QoS)> = s
        .subscriptions
        .iter()
        .map(|s| (s.filter.as_str(), s.options.qos))
        .collect();
    assert_eq!(got, [("a/b", QoS::AtLeastOnce), ("c/d", QoS::ExactlyOnce)]);

    // 5.0 with options: No Local, Retain As Published, Retain Handling 2 (0x2D = QoS 1).
    let wire = hex("82 09 00 0A 00 00 03 61 2F 62 2D");
    let Packet::Subscribe(s) = decode_exact(&wire, ProtocolVersion::V5) else {
        panic!()
    };
    let o = s.subscriptions[0].options;
    assert_eq!(o.qos, QoS::AtLeastOnce);
    assert!(o.no_local && o.retain_as_published);
    assert_eq!(o.retain_handling, RetainHandling::DoNotSend);
}

/// 3.1.1 section 3.9.3 Figure 3.26: SUBACK return codes 0, 1, 2 and 0x80.
#[test]
fn suback_example() {
    let wire = hex("90 06 00 0A 00 01 02 80");
    let Packet::SubAck(s) = decode_exact(&wire, ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert_eq!(
        s.reason_codes,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError
        ]
    );
    assert_eq!(s.reason_codes[1].granted_qos(), Some(QoS::AtLeastOnce));
    assert_eq!(s.reason_codes[3].granted_qos(), None);
}

/// 3.1.1 section 3.10.3 Figure 3.30: UNSUBSCRIBE "a/b" and "c/d"; UNSUBACK.
#[test]
fn unsubscribe_examples() {
    let wire = hex("A2 0C 00 0A 00 03 61 2F 62 00 03 63 2F 64");
    let Packet::Unsubscribe(u) = decode_exact(&wire, ProtocolVersion::V3_1_1) else {
        panic!()
    };
    let filters: Vec<&str> = u.filters.iter().map(|f| f.as_str()).collect();
    assert_eq!(filters, ["a/b", "c/d"]);
    let Packet::UnsubAck(a) = decode_exact(&hex("B0 02 00 0A"), ProtocolVersion::V3_1_1) else {
        panic!()
    };
    assert_eq!(a.packet_id, pid(10));
    assert!(a.reason_codes.is_empty());
    let Packet::UnsubAck(a) = decode_exact(&hex("B0 05 00 0A 00 00 11"), ProtocolVersion::V5)
    else {
        panic!()
    };
    assert_eq!(
        a.reason_codes,
        [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
}

/// PINGREQ C0 00, PINGRESP D0 00, DISCONNECT E0 00 (both versions); 5.0
/// DISCONNECT with reason 0x04 and with a Session Expiry Interval; AUTH.
#[test]
fn empty_and_short_packets() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        assert_eq!(decode_exact(&hex("C0 00"), v), Packet::PingReq);
        assert_eq!(decode_exact(&hex("D0 00"), v), Packet::PingResp);
        let Packet::Disconnect(d) = decode_exact(&hex("E0 00"), v) else {
            panic!()
        };
        assert_eq!(d.reason_code, ReasonCode::NORMAL_DISCONNECTION);
    }
    let Packet::Disconnect(d) = decode_exact(&hex("E0 01 04"), ProtocolVersion::V5) else {
        panic!()
    };
    assert_eq!(d.reason_code, ReasonCode::DisconnectWithWillMessage);
    let Packet::Disconnect(d) =
        decode_exact(&hex("E0 07 00 05 11 00 00 0E 10"), ProtocolVersion::V5)
    else {
        panic!()
    };
    assert_eq!(d.properties.session_expiry_interval, Some(3600));
    let Packet::Auth(a) = decode_exact(
        &hex("F0 0B 18 09 15 00 03 53 43 52 16 00 00"),
        ProtocolVersion::V5,
    ) else {
        panic!()
    };
    assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(a.properties.authentication_method.as_deref(), Some("SCR"));
    assert_eq!(a.properties.authentication_data.as_deref(), Some(&b""[..]));
}
