//! Structure-aware round trip: packets built from `arbitrary` data (through
//! fuzz-local mirror types, sanitised to what the specification allows) must
//! encode to exactly `encoded_len` bytes and decode back to themselves, also
//! when the stream is fed to the decoder in two pieces.
#![no_main]
use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mqtt_codec::*;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Version {
    V31,
    V311,
    V5,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Ctx {
    Connect,
    ConnAck,
    Publish,
    Will,
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

#[derive(Arbitrary, Debug, Clone, Default)]
struct Props {
    flags: [Option<bool>; 7],
    u32s: [Option<u32>; 4],
    u16s: [Option<u16>; 4],
    max_qos_1: Option<bool>,
    strings: [Option<String>; 7],
    binaries: [Option<Vec<u8>>; 2],
    subscription_ids: Vec<u32>,
    user: Vec<(String, String)>,
}

#[derive(Arbitrary, Debug)]
struct Will {
    props: Props,
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
}

#[derive(Arbitrary, Debug)]
enum FuzzPacket {
    Connect {
        clean: bool,
        keep_alive: u16,
        props: Props,
        client_id: String,
        will: Option<Will>,
        username: Option<String>,
        password: Option<Vec<u8>>,
    },
    ConnAck {
        session_present: bool,
        code: u8,
        props: Props,
    },
    Publish {
        dup: bool,
        qos: u8,
        retain: bool,
        topic: String,
        id: u16,
        props: Props,
        payload: Vec<u8>,
    },
    Ack {
        kind: u8,
        id: u16,
        code: u8,
        props: Props,
    },
    Subscribe {
        id: u16,
        props: Props,
        entries: Vec<(String, u8)>,
    },
    SubAck {
        id: u16,
        props: Props,
        codes: Vec<u8>,
    },
    Unsubscribe {
        id: u16,
        props: Props,
        filters: Vec<String>,
    },
    UnsubAck {
        id: u16,
        props: Props,
        codes: Vec<u8>,
    },
    PingReq,
    PingResp,
    Disconnect {
        code: u8,
        props: Props,
    },
    Auth {
        code: u8,
        props: Props,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    version: Version,
    packets: Vec<FuzzPacket>,
    cut: u16,
}

/// Strips U+0000 (a valid Rust string may hold it; MQTT strings may not).
fn text(s: &str) -> String {
    s.replace('\0', "")
}

fn topic_name(s: &str) -> TopicName {
    let s: String = text(s).replace(['+', '#'], "");
    TopicName::try_from(if s.is_empty() { "t".to_string() } else { s })
        .expect("sanitised topic name")
}

fn topic_filter(s: &str) -> TopicFilter {
    TopicFilter::new(text(s)).unwrap_or_else(|_| TopicFilter::new("f/+/#").unwrap())
}

fn qos(b: u8) -> QoS {
    QoS::from_u8(b % 3).unwrap()
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id.max(1)).unwrap()
}

fn reason(code: u8, packet: PacketType) -> ReasonCode {
    match ReasonCode::from_u8(code) {
        Some(rc) if rc.allowed_in(packet) => rc,
        _ => ReasonCode::Success,
    }
}

/// The PUBLISH properties of `p` (those `props` keeps for a PUBLISH).
fn publish_props(p: &Props, v5: bool) -> PublishProperties {
    let generic = props(p, Ctx::Publish, v5);
    let Some(g) = generic.values() else {
        return PublishProperties::default();
    };
    PublishProperties::from(PublishPropertyValues {
        payload_format_indicator: g.payload_format_indicator,
        message_expiry_interval: g.message_expiry_interval,
        content_type: g.content_type.clone(),
        response_topic: g.response_topic.clone(),
        correlation_data: g.correlation_data.clone(),
        subscription_identifiers: g.subscription_identifiers.clone(),
        topic_alias: g.topic_alias,
        user_properties: g.user_properties.clone(),
    })
}

fn props(p: &Props, ctx: Ctx, v5: bool) -> Properties {
    use Ctx as C;
    if !v5 {
        return Properties::default();
    }
    let pw = matches!(ctx, C::Publish | C::Will);
    let s = |i: usize| p.strings[i].as_deref().map(|t| MqttString::from(text(t)));
    let connack = ctx == C::ConnAck;
    let conn_or_ack = matches!(ctx, C::Connect | C::ConnAck);
    Properties::from(PropertyValues {
        payload_format_indicator: p.flags[0].filter(|_| pw),
        message_expiry_interval: p.u32s[0].filter(|_| pw),
        content_type: s(0).filter(|_| pw),
        response_topic: s(1)
            .map(|t| MqttString::from(topic_name(&t).as_str()))
            .filter(|_| pw),
        correlation_data: p.binaries[0].clone().map(Bytes::from).filter(|_| pw),
        subscription_identifiers: match ctx {
            C::Publish => p
                .subscription_ids
                .iter()
                .map(|&i| i % MAX_VARIABLE_INTEGER + 1)
                .collect(),
            C::Subscribe => p
                .subscription_ids
                .iter()
                .take(1)
                .map(|&i| i % MAX_VARIABLE_INTEGER + 1)
                .collect(),
            _ => Vec::new(),
        },
        session_expiry_interval: p.u32s[1]
            .filter(|_| matches!(ctx, C::Connect | C::ConnAck | C::Disconnect)),
        assigned_client_identifier: s(2).filter(|_| connack),
        server_keep_alive: p.u16s[0].filter(|_| connack),
        authentication_method: s(3).filter(|_| matches!(ctx, C::Connect | C::ConnAck | C::Auth)),
        authentication_data: p.binaries[1]
            .clone()
            .map(Bytes::from)
            .filter(|_| matches!(ctx, C::Connect | C::ConnAck | C::Auth)),
        request_problem_information: p.flags[1].filter(|_| ctx == C::Connect),
        will_delay_interval: p.u32s[2].filter(|_| ctx == C::Will),
        request_response_information: p.flags[2].filter(|_| ctx == C::Connect),
        response_information: s(4).filter(|_| connack),
        server_reference: s(5).filter(|_| matches!(ctx, C::ConnAck | C::Disconnect)),
        reason_string: s(6).filter(|_| {
            matches!(
                ctx,
                C::ConnAck | C::PubResponse | C::SubAck | C::UnsubAck | C::Disconnect | C::Auth
            )
        }),
        receive_maximum: p.u16s[1].map(|v| v.max(1)).filter(|_| conn_or_ack),
        topic_alias_maximum: p.u16s[2].filter(|_| conn_or_ack),
        topic_alias: p.u16s[3].map(|v| v.max(1)).filter(|_| ctx == C::Publish),
        maximum_qos: p
            .max_qos_1
            .map(|b| if b { QoS::AtLeastOnce } else { QoS::AtMostOnce })
            .filter(|_| connack),
        retain_available: p.flags[3].filter(|_| connack),
        user_properties: p.user.iter().map(|(k, v)| (text(k).into(), text(v).into())).collect(),
        maximum_packet_size: p.u32s[3].map(|v| v.max(1)).filter(|_| conn_or_ack),
        wildcard_subscription_available: p.flags[4].filter(|_| connack),
        subscription_identifier_available: p.flags[5].filter(|_| connack),
        shared_subscription_available: p.flags[6].filter(|_| connack),
    })
}

fn build(f: &FuzzPacket, v: ProtocolVersion) -> Packet {
    let v5 = v.is_v5();
    match f {
        FuzzPacket::Connect {
            clean,
            keep_alive,
            props: p,
            client_id,
            will,
            username,
            password,
        } => {
            let username = username.as_deref().map(text);
            Packet::Connect(Box::new(Connect {
                protocol: v,
                clean_start: *clean,
                keep_alive: *keep_alive,
                properties: props(p, Ctx::Connect, v5),
                client_id: text(client_id),
                will: will.as_ref().map(|w| LastWill {
                    topic: topic_name(&w.topic),
                    payload: Bytes::from(w.payload.clone()),
                    qos: qos(w.qos),
                    retain: w.retain,
                    properties: props(&w.props, Ctx::Will, v5),
                }),
                password: password
                    .clone()
                    .filter(|_| v5 || username.is_some())
                    .map(Bytes::from),
                username,
                bridge: false,
            }))
        }
        FuzzPacket::ConnAck {
            session_present,
            code,
            props: p,
        } => Packet::ConnAck(ConnAck {
            session_present: *session_present,
            reason_code: if v5 {
                reason(*code, PacketType::ConnAck)
            } else {
                ReasonCode::from_v3_connack(code % 6).unwrap()
            },
            properties: props(p, Ctx::ConnAck, v5),
        }),
        FuzzPacket::Publish {
            dup,
            qos: q,
            retain,
            topic,
            id,
            props: p,
            payload,
        } => {
            let q = qos(*q);
            let properties = publish_props(p, v5);
            let topic = if v5 && properties.topic_alias.is_some() && topic.is_empty() {
                TopicName::empty()
            } else {
                topic_name(topic)
            };
            Packet::Publish(Publish {
                dup: *dup && q != QoS::AtMostOnce,
                qos: q,
                retain: *retain,
                topic,
                packet_id: (q != QoS::AtMostOnce).then(|| pid(*id)),
                properties,
                payload: Bytes::from(payload.clone()),
            })
        }
        FuzzPacket::Ack {
            kind,
            id,
            code,
            props: p,
        } => {
            let types = [
                PacketType::PubAck,
                PacketType::PubRec,
                PacketType::PubRel,
                PacketType::PubComp,
            ];
            let ty = types[*kind as usize % 4];
            let (reason_code, properties) = if v5 {
                (reason(*code, ty), props(p, Ctx::PubResponse, true))
            } else {
                (ReasonCode::Success, Properties::default())
            };
            let packet_id = pid(*id);
            match ty {
                PacketType::PubAck => Packet::PubAck(PubAck {
                    packet_id,
                    reason_code,
                    properties,
                }),
                PacketType::PubRec => Packet::PubRec(PubRec {
                    packet_id,
                    reason_code,
                    properties,
                }),
                PacketType::PubRel => Packet::PubRel(PubRel {
                    packet_id,
                    reason_code,
                    properties,
                }),
                _ => Packet::PubComp(PubComp {
                    packet_id,
                    reason_code,
                    properties,
                }),
            }
        }
        FuzzPacket::Subscribe {
            id,
            props: p,
            entries,
        } => {
            let mut subscriptions: Vec<Subscription> = entries
                .iter()
                .map(|(f, o)| {
                    let filter = topic_filter(f);
                    let options = if v5 {
                        SubscriptionOptions {
                            qos: qos(*o),
                            no_local: o & 0x04 != 0 && !filter.is_shared(),
                            retain_as_published: o & 0x08 != 0,
                            retain_handling: match (o >> 4) % 3 {
                                0 => RetainHandling::SendOnSubscribe,
                                1 => RetainHandling::SendIfNew,
                                _ => RetainHandling::DoNotSend,
                            },
                        }
                    } else {
                        SubscriptionOptions::qos(qos(*o))
                    };
                    Subscription { filter, options }
                })
                .collect();
            if subscriptions.is_empty() {
                subscriptions.push(Subscription {
                    filter: topic_filter("#"),
                    options: SubscriptionOptions::default(),
                });
            }
            Packet::Subscribe(Subscribe {
                packet_id: pid(*id),
                properties: props(p, Ctx::Subscribe, v5),
                subscriptions,
            })
        }
        FuzzPacket::SubAck {
            id,
            props: p,
            codes,
        } => Packet::SubAck(SubAck {
            packet_id: pid(*id),
            properties: props(p, Ctx::SubAck, v5),
            reason_codes: codes
                .iter()
                .map(|&c| {
                    if v5 {
                        reason(c, PacketType::SubAck)
                    } else {
                        [
                            ReasonCode::Success,
                            ReasonCode::GrantedQoS1,
                            ReasonCode::GrantedQoS2,
                            ReasonCode::UnspecifiedError,
                        ][c as usize % 4]
                    }
                })
                .collect(),
        }),
        FuzzPacket::Unsubscribe {
            id,
            props: p,
            filters,
        } => {
            let mut filters: Vec<TopicFilter> = filters.iter().map(|f| topic_filter(f)).collect();
            if filters.is_empty() {
                filters.push(topic_filter("a"));
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(*id),
                properties: props(p, Ctx::Unsubscribe, v5),
                filters,
            })
        }
        FuzzPacket::UnsubAck {
            id,
            props: p,
            codes,
        } => Packet::UnsubAck(UnsubAck {
            packet_id: pid(*id),
            properties: props(p, Ctx::UnsubAck, v5),
            reason_codes: if v5 {
                codes
                    .iter()
                    .map(|&c| reason(c, PacketType::UnsubAck))
                    .collect()
            } else {
                Vec::new()
            },
        }),
        FuzzPacket::PingReq => Packet::PingReq,
        FuzzPacket::PingResp => Packet::PingResp,
        FuzzPacket::Disconnect { code, props: p } => Packet::Disconnect(if v5 {
            Disconnect {
                reason_code: reason(*code, PacketType::Disconnect),
                properties: props(p, Ctx::Disconnect, true),
            }
        } else {
            Disconnect::default()
        }),
        FuzzPacket::Auth { code, props: p } if v5 => Packet::Auth(Auth {
            reason_code: reason(*code, PacketType::Auth),
            properties: props(p, Ctx::Auth, true),
        }),
        FuzzPacket::Auth { .. } => Packet::PingReq,
    }
}

fuzz_target!(|input: Input| {
    let v = match input.version {
        Version::V31 => ProtocolVersion::V3_1,
        Version::V311 => ProtocolVersion::V3_1_1,
        Version::V5 => ProtocolVersion::V5,
    };
    let packets: Vec<Packet> = input.packets.iter().map(|f| build(f, v)).collect();
    let mut wire = BytesMut::new();
    for p in &packets {
        let before = wire.len();
        match p.encode(v, &mut wire) {
            Ok(n) => {
                assert_eq!(n, wire.len() - before);
                assert_eq!(n, p.encoded_len(v), "encoded_len disagrees: {p:?}");
            }
            // Only fields above 65,535 bytes may be refused; nothing appended then.
            Err(EncodeError::FieldTooLong(_)) => {
                assert_eq!(wire.len(), before);
                return;
            }
            Err(e) => panic!("valid packet refused: {e} {p:?}"),
        }
    }
    let cut = input.cut as usize % (wire.len() + 1);
    let mut decoder = Decoder::with_version(v);
    let mut buf = BytesMut::from(&wire[..cut]);
    let mut decoded = Vec::new();
    while let Some(p) = decoder.decode(&mut buf).expect("valid stream decodes") {
        decoded.push(p);
    }
    buf.extend_from_slice(&wire[cut..]);
    while let Some(p) = decoder.decode(&mut buf).expect("valid stream decodes") {
        decoded.push(p);
    }
    assert!(buf.is_empty());
    assert_eq!(decoded, packets);
});
