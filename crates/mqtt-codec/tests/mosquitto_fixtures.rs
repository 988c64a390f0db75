//! Sessions captured between `mosquitto_pub` / `mosquitto_sub` and a real
//! `mosquitto` 2.0.11 broker (tests/fixtures/capture.py, manifest.txt):
//! every packet decodes with the right version and direction, carries the
//! expected values, and re-encodes to the captured bytes.
//!
//! One caveat on "the same bytes": 5.0 lets a sender put properties in any
//! order, and mosquitto does not use ascending identifier order (e.g. its
//! CONNACK has Topic Alias Maximum before Receive Maximum), whereas our
//! encoder always writes ascending order. Packets whose properties mosquitto
//! wrote in ascending order must re-encode byte for byte; the others must
//! re-encode to the captured bytes with each property block stably sorted by
//! identifier, i.e. the same properties with the same values, the same
//! length, and everything outside the property blocks byte-identical.

mod common;

use bytes::BytesMut;
use common::hex;
use mqtt_codec::*;
use std::path::PathBuf;

struct Session {
    name: String,
    version: ProtocolVersion,
    c2s: Vec<Vec<u8>>,
    s2c: Vec<Vec<u8>>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_packets(path: PathBuf) -> Vec<Vec<u8>> {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(hex)
        .collect()
}

fn sessions() -> Vec<Session> {
    let manifest = std::fs::read_to_string(fixtures().join("manifest.txt")).unwrap();
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let mut it = line.split_whitespace();
            let name = it.next().unwrap().to_string();
            let version = match it.next().unwrap() {
                "3.1.1" => ProtocolVersion::V3_1_1,
                "5.0" => ProtocolVersion::V5,
                other => panic!("unknown version {other}"),
            };
            let dir = fixtures().join("sessions");
            Session {
                c2s: read_packets(dir.join(format!("{name}.c2s.hex"))),
                s2c: read_packets(dir.join(format!("{name}.s2c.hex"))),
                name,
                version,
            }
        })
        .collect()
}

/// Stably sorts the properties of the property block at `at` by identifier;
/// returns the offset after the block.
fn sort_block(p: &mut [u8], at: usize) -> usize {
    let (len, n) = varint(&p[at..]);
    let start = at + n;
    let end = start + len;
    let mut props: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = start;
    while i < end {
        let id = p[i];
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => varint(&p[i + 1..]).1,
            0x26 => {
                let k = u16::from_be_bytes([p[i + 1], p[i + 2]]) as usize;
                let v = u16::from_be_bytes([p[i + 3 + k], p[i + 4 + k]]) as usize;
                4 + k + v
            }
            _ => 2 + u16::from_be_bytes([p[i + 1], p[i + 2]]) as usize,
        };
        props.push((id, p[i..i + 1 + size].to_vec()));
        i += 1 + size;
    }
    props.sort_by_key(|(id, _)| *id);
    let sorted: Vec<u8> = props.into_iter().flat_map(|(_, b)| b).collect();
    p[start..end].copy_from_slice(&sorted);
    end
}

fn varint(b: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    for (i, &byte) in b.iter().enumerate().take(4) {
        v |= ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    panic!("bad varint")
}

/// The packet with every 5.0 property block sorted by identifier.
fn canonical(packet: &[u8], v: ProtocolVersion) -> Vec<u8> {
    let mut p = packet.to_vec();
    if !v.is_v5() {
        return p;
    }
    let (body_len, n) = varint(&p[1..]);
    let body = 1 + n;
    let u16_at = |p: &[u8], i: usize| u16::from_be_bytes([p[i], p[i + 1]]) as usize;
    match p[0] >> 4 {
        1 => {
            let flags_at = body + 2 + u16_at(&p, body) + 1;
            let will = p[flags_at] & 0x04 != 0;
            let after = sort_block(&mut p, flags_at + 3);
            if will {
                let client_id_end = after + 2 + u16_at(&p, after);
                sort_block(&mut p, client_id_end);
            }
        }
        2 => {
            sort_block(&mut p, body + 2);
        }
        3 => {
            let qos = (p[0] >> 1) & 3;
            let at = body + 2 + u16_at(&p, body) + if qos > 0 { 2 } else { 0 };
            sort_block(&mut p, at);
        }
        4..=7 if body_len > 3 => {
            sort_block(&mut p, body + 3);
        }
        8..=11 => {
            sort_block(&mut p, body + 2);
        }
        14 | 15 if body_len > 1 => {
            sort_block(&mut p, body + 1);
        }
        _ => {}
    }
    p
}

/// Decodes a captured direction as one stream and checks packet boundaries
/// and re-encoding. Returns the packets and how many re-encoded byte for byte.
fn decode_direction(
    decoder: &mut Decoder,
    packets: &[Vec<u8>],
    v: ProtocolVersion,
    what: &str,
) -> (Vec<Packet>, usize) {
    let stream: Vec<u8> = packets.concat();
    let mut buf = BytesMut::from(&stream[..]);
    let mut out = Vec::new();
    let mut identical = 0;
    for (i, raw) in packets.iter().enumerate() {
        let before = buf.len();
        let p = decoder
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("{what} packet {i}: {e}"))
            .unwrap_or_else(|| panic!("{what} packet {i}: incomplete"));
        assert_eq!(before - buf.len(), raw.len(), "{what} packet {i}: boundary");
        let mut again = BytesMut::new();
        p.encode(v, &mut again).unwrap();
        assert_eq!(
            p.encoded_len(v),
            raw.len(),
            "{what} packet {i}: encoded_len"
        );
        if again[..] == raw[..] {
            identical += 1;
        } else {
            assert_eq!(
                canonical(&again, v),
                canonical(raw, v),
                "{what} packet {i} ({:?}) re-encodes differently",
                p.packet_type()
            );
        }
        out.push(p);
    }
    assert!(buf.is_empty());
    (out, identical)
}

struct Decoded {
    name: String,
    version: ProtocolVersion,
    c2s: Vec<Packet>,
    s2c: Vec<Packet>,
}

fn decode_all() -> (Vec<Decoded>, usize, usize) {
    let mut total = 0;
    let mut identical = 0;
    let out = sessions()
        .into_iter()
        .map(|s| {
            // Client to server: the server-side decoder learns the version
            // from CONNECT.
            let mut server = Decoder::new();
            let (c2s, a) =
                decode_direction(&mut server, &s.c2s, s.version, &format!("{} c2s", s.name));
            assert_eq!(server.version(), Some(s.version), "{}", s.name);
            // Server to client: the client knows the version it asked for.
            let mut client = Decoder::with_version(s.version);
            let (s2c, b) =
                decode_direction(&mut client, &s.s2c, s.version, &format!("{} s2c", s.name));
            total += s.c2s.len() + s.s2c.len();
            identical += a + b;
            Decoded {
                name: s.name,
                version: s.version,
                c2s,
                s2c,
            }
        })
        .collect();
    (out, total, identical)
}

fn session<'a>(all: &'a [Decoded], name: &str) -> &'a Decoded {
    all.iter().find(|s| s.name == name).unwrap()
}

fn connect(p: &Packet) -> &Connect {
    match p {
        Packet::Connect(c) => c,
        other => panic!("not CONNECT: {other:?}"),
    }
}

fn publishes(ps: &[Packet]) -> Vec<&Publish> {
    ps.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

#[test]
fn every_captured_packet_decodes_and_reencodes() {
    let (all, total, identical) = decode_all();
    assert_eq!(all.len(), 9);
    println!("{identical} of {total} captured packets re-encode byte for byte");
    assert!(total >= 70, "{total} packets");
    // Only packets with several properties in non-ascending order differ.
    assert!(
        identical * 10 >= total * 8,
        "{identical} of {total} byte-identical"
    );
    for s in &all {
        let c = connect(&s.c2s[0]);
        assert_eq!(c.protocol, s.version, "{}", s.name);
        assert!(
            matches!(s.c2s.last(), Some(Packet::Disconnect(_))),
            "{}",
            s.name
        );
        let Packet::ConnAck(ack) = &s.s2c[0] else {
            panic!("{}: first server packet is not CONNACK", s.name)
        };
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(!ack.session_present);
    }
}

#[test]
fn v311_publishers() {
    let (all, _, _) = decode_all();

    let s = session(&all, "pub311-qos1-retained");
    assert_eq!(s.version, ProtocolVersion::V3_1_1);
    assert_eq!(connect(&s.c2s[0]).client_id, "pub311r");
    let p = publishes(&s.c2s)[0];
    assert_eq!(p.topic.as_str(), "fixtures/retained");
    assert_eq!(&p.payload[..], b"retained message");
    assert_eq!((p.qos, p.retain, p.dup), (QoS::AtLeastOnce, true, false));
    assert_eq!(p.packet_id, Some(pid(1)));
    assert_eq!(s.s2c[1], Packet::PubAck(PubAck::new(pid(1))));

    let s = session(&all, "pub311-qos0");
    let c = connect(&s.c2s[0]);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    let p = publishes(&s.c2s)[0];
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("fixtures/a", &b"hello 3.1.1"[..])
    );
    assert_eq!(
        (p.qos, p.retain, p.packet_id),
        (QoS::AtMostOnce, false, None)
    );
    assert_eq!(s.s2c.len(), 1, "QoS 0: only CONNACK comes back");

    let s = session(&all, "pub311-qos2-will-auth");
    let c = connect(&s.c2s[0]);
    assert_eq!(c.username.as_deref(), Some("alice"));
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
    let w = c.will.as_ref().unwrap();
    assert_eq!(
        (w.topic.as_str(), &w.payload[..]),
        ("fixtures/will", &b"gone"[..])
    );
    assert_eq!((w.qos, w.retain), (QoS::AtLeastOnce, true));
    let p = publishes(&s.c2s)[0];
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(&p.payload[..], b"exactly once");
    // QoS 2 flow: PUBLISH, PUBREC, PUBREL, PUBCOMP.
    assert_eq!(s.s2c[1], Packet::PubRec(PubRec::new(pid(1))));
    assert_eq!(s.c2s[2], Packet::PubRel(PubRel::new(pid(1))));
    assert_eq!(s.s2c[2], Packet::PubComp(PubComp::new(pid(1))));
}

#[test]
fn v5_publishers_with_properties() {
    let (all, _, _) = decode_all();

    let s = session(&all, "pub5-qos0-props");
    assert_eq!(s.version, ProtocolVersion::V5);
    let p = publishes(&s.c2s)[0];
    assert_eq!(p.topic.as_str(), "fixtures/v5/a");
    assert_eq!(&p.payload[..], b"hello 5.0");
    let pr = &p.properties;
    assert_eq!(
        pr.user_properties,
        [(MqttString::from("a"), MqttString::from("b"))]
    );
    assert_eq!(pr.message_expiry_interval, Some(3600));
    assert_eq!(pr.content_type.as_deref(), Some("text/plain"));
    assert_eq!(pr.response_topic.as_deref(), Some("fixtures/reply"));
    assert_eq!(pr.correlation_data.as_deref(), Some(&b"1234"[..]));
    assert_eq!(pr.payload_format_indicator, Some(true));
    // mosquitto_pub announces Receive Maximum 20 in 5.0 CONNECT.
    assert_eq!(connect(&s.c2s[0]).properties.receive_maximum, Some(20));
    // The broker's CONNACK: Topic Alias Maximum 10, Receive Maximum 20.
    let Packet::ConnAck(ack) = &s.s2c[0] else {
        panic!()
    };
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));
    assert_eq!(ack.properties.receive_maximum, Some(20));

    let s = session(&all, "pub5-qos1-session");
    let c = connect(&s.c2s[0]);
    assert_eq!(c.properties.session_expiry_interval, Some(60));
    let p = publishes(&s.c2s)[0];
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(
        p.properties.user_properties,
        [(MqttString::from("k"), MqttString::from("v"))]
    );
    assert_eq!(s.s2c[1], Packet::PubAck(PubAck::new(pid(1))));

    let s = session(&all, "pub5-qos2-will");
    let c = connect(&s.c2s[0]);
    let w = c.will.as_ref().unwrap();
    assert_eq!(
        (w.topic.as_str(), &w.payload[..]),
        ("fixtures/will5", &b"gone 5.0"[..])
    );
    assert_eq!(w.qos, QoS::ExactlyOnce);
    assert_eq!(w.properties.will_delay_interval, Some(5));
    assert_eq!(w.properties.message_expiry_interval, Some(10));
    assert_eq!(w.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        w.properties.user_properties,
        [(MqttString::from("w"), MqttString::from("x"))]
    );
    let p = publishes(&s.c2s)[0];
    assert_eq!((p.qos, p.retain), (QoS::ExactlyOnce, true));
    assert!(matches!(s.s2c[1], Packet::PubRec(_)));
    assert!(matches!(s.c2s[2], Packet::PubRel(_)));
    assert!(matches!(s.s2c[2], Packet::PubComp(_)));
}

/// What both subscribers receive: the retained message first, then the six
/// publishes at min(publish QoS, 2).
fn check_subscriber(s: &Decoded) {
    let Packet::Subscribe(sub) = &s.c2s[1] else {
        panic!("{}: no SUBSCRIBE", s.name)
    };
    assert_eq!(sub.subscriptions.len(), 1);
    assert_eq!(sub.subscriptions[0].filter.as_str(), "fixtures/#");
    assert_eq!(sub.subscriptions[0].options.qos, QoS::ExactlyOnce);
    let Packet::SubAck(ack) = &s.s2c[1] else {
        panic!("{}: no SUBACK", s.name)
    };
    assert_eq!(ack.packet_id, sub.packet_id);
    assert_eq!(ack.reason_codes, [ReasonCode::GrantedQoS2]);

    let msgs = publishes(&s.s2c);
    assert_eq!(msgs.len(), 7, "{}", s.name);
    assert_eq!(msgs[0].topic.as_str(), "fixtures/retained");
    assert!(msgs[0].retain, "retained message arrives with RETAIN");
    assert_eq!(msgs[0].qos, QoS::AtLeastOnce);
    for m in &msgs[1..] {
        assert!(!m.retain, "live messages arrive without RETAIN");
        assert!(sub.subscriptions[0].filter.matches(m.topic.as_str()));
    }
    let qos: Vec<QoS> = msgs.iter().map(|m| m.qos).collect();
    assert!(qos.contains(&QoS::AtMostOnce) && qos.contains(&QoS::ExactlyOnce));
    // Every QoS 1 PUBLISH is PUBACKed and every QoS 2 one PUBRECed by the client.
    for m in &msgs {
        let id = m.packet_id;
        match m.qos {
            QoS::AtMostOnce => assert_eq!(id, None),
            QoS::AtLeastOnce => assert!(s
                .c2s
                .iter()
                .any(|p| matches!(p, Packet::PubAck(a) if Some(a.packet_id) == id))),
            QoS::ExactlyOnce => assert!(s
                .c2s
                .iter()
                .any(|p| matches!(p, Packet::PubRec(a) if Some(a.packet_id) == id))),
        }
    }
}

#[test]
fn subscribers() {
    let (all, _, _) = decode_all();

    let s = session(&all, "sub311-qos2");
    assert_eq!(connect(&s.c2s[0]).keep_alive, 30);
    check_subscriber(s);

    let s = session(&all, "sub5-qos2-props");
    let c = connect(&s.c2s[0]);
    assert_eq!(c.properties.session_expiry_interval, Some(60));
    assert_eq!(c.properties.receive_maximum, Some(20));
    assert_eq!(c.properties.maximum_packet_size, Some(10_000));
    assert_eq!(
        c.properties.user_properties,
        [(MqttString::from("client"), MqttString::from("sub5"))]
    );
    let Packet::Subscribe(sub) = &s.c2s[1] else {
        panic!()
    };
    assert_eq!(
        sub.properties.user_properties,
        [(MqttString::from("s"), MqttString::from("v"))]
    );
    check_subscriber(s);
    // The properties of the 5.0 publisher reach the 5.0 subscriber.
    let msgs = publishes(&s.s2c);
    let m = msgs
        .iter()
        .find(|m| m.topic.as_str() == "fixtures/v5/a")
        .unwrap();
    assert_eq!(m.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        m.properties.response_topic.as_deref(),
        Some("fixtures/reply")
    );
    assert_eq!(m.properties.correlation_data.as_deref(), Some(&b"1234"[..]));
    assert_eq!(
        m.properties.user_properties,
        [(MqttString::from("a"), MqttString::from("b"))]
    );
    assert_eq!(m.properties.payload_format_indicator, Some(true));
    // The broker forwards the remaining expiry (3600 s or a second less).
    assert!(matches!(
        m.properties.message_expiry_interval,
        Some(3599..=3600)
    ));
}

/// Piecewise feeding of the captured streams, one byte at a time.
#[test]
fn captured_streams_byte_by_byte() {
    for s in sessions() {
        let stream: Vec<u8> = s.s2c.concat();
        let mut d = Decoder::with_version(s.version);
        let mut buf = BytesMut::new();
        let mut n = 0;
        for b in stream {
            buf.extend_from_slice(&[b]);
            while d.decode(&mut buf).unwrap().is_some() {
                n += 1;
            }
        }
        assert_eq!(n, s.s2c.len(), "{}", s.name);
    }
}
