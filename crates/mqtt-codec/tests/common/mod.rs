//! Proptest strategies for every packet of every protocol version.
//!
//! Each strategy yields only packets that the specification allows in that
//! version (only the properties a 5.0 packet type may carry, reason codes the
//! packet type may carry, packet identifiers where required, ...), so that
//! encode-then-decode must be the identity.
#![allow(dead_code)]

use bytes::Bytes;
use mqtt_codec::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PacketId, PacketType, Properties,
    PropertyValues, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, PublishProperties,
    PublishPropertyValues, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, MAX_VARIABLE_INTEGER,
};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

/// The three protocol versions.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop::sample::select(VERSIONS.to_vec())
}

/// Where a property set appears (mirror of the codec's private table 2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
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

/// A UTF-8 string without control characters (so no U+0000), any script.
pub fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

pub fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap())
}

/// A valid non-empty topic name: levels of text without wildcards.
pub fn topic_name_string() -> impl Strategy<Value = String> {
    vec("[a-zA-Z0-9 _$é€😀-]{0,6}", 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("non-empty", |s| !s.is_empty())
}

pub fn topic_name() -> impl Strategy<Value = TopicName> {
    topic_name_string().prop_map(|s| TopicName::try_from(s).unwrap())
}

/// A valid topic filter, with `+`, a trailing `#`, and sometimes `$share/{group}/`.
pub fn topic_filter_string(allow_share: bool) -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => "[a-zA-Z0-9 _$é-]{0,5}", 1 => Just("+".to_string())];
    (
        vec(level, 1..5),
        any::<bool>(),
        if allow_share {
            of("[a-zA-Z0-9_]{1,6}").boxed()
        } else {
            Just(None).boxed()
        },
    )
        .prop_map(|(mut levels, hash, share)| {
            if hash {
                levels.push("#".into());
            }
            let f = levels.join("/");
            if f.is_empty() {
                return f; // filtered out below
            }
            match share {
                Some(g) => format!("$share/{g}/{f}"),
                None => f,
            }
        })
        .prop_filter("non-empty", |s| !s.is_empty())
}

pub fn topic_filter(allow_share: bool) -> impl Strategy<Value = TopicFilter> {
    topic_filter_string(allow_share).prop_map(|s| TopicFilter::new(s).unwrap())
}

fn flags_props() -> impl Strategy<Value = [Option<bool>; 7]> {
    [
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
    ]
}

fn int_props() -> impl Strategy<Value = ([Option<u32>; 3], [Option<u16>; 2])> {
    (
        [of(any::<u32>()), of(any::<u32>()), of(any::<u32>())],
        [of(any::<u16>()), of(any::<u16>())],
    )
}

fn nonzero_props() -> impl Strategy<Value = (Option<u16>, Option<u16>, Option<u32>, Option<QoS>)> {
    (
        of(1u16..),
        of(1u16..),
        of(1u32..),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
    )
}

fn string_props() -> impl Strategy<Value = [Option<String>; 6]> {
    [
        of(text()),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
        of(text()),
    ]
}

/// Any combination of every property, then restricted to what `ctx` allows.
pub fn properties(ctx: Ctx) -> impl Strategy<Value = Properties> {
    (
        flags_props(),
        int_props(),
        nonzero_props(),
        string_props(),
        of(topic_name_string()),
        (of(bin()), of(bin())),
        vec(1..=MAX_VARIABLE_INTEGER, 0..3),
        vec((text(), text()), 0..3),
    )
        .prop_map(
            move |(
                f,
                (u4, u2),
                (recv_max, alias, max_packet, max_qos),
                s,
                resp,
                (cd, ad),
                ids,
                up,
            )| {
                let p = Properties::from(PropertyValues {
                    payload_format_indicator: f[0],
                    request_problem_information: f[1],
                    request_response_information: f[2],
                    retain_available: f[3],
                    wildcard_subscription_available: f[4],
                    subscription_identifier_available: f[5],
                    shared_subscription_available: f[6],
                    message_expiry_interval: u4[0],
                    session_expiry_interval: u4[1],
                    will_delay_interval: u4[2],
                    server_keep_alive: u2[0],
                    topic_alias_maximum: u2[1],
                    receive_maximum: recv_max,
                    topic_alias: alias,
                    maximum_packet_size: max_packet,
                    maximum_qos: max_qos,
                    content_type: s[0].clone().map(Into::into),
                    assigned_client_identifier: s[1].clone().map(Into::into),
                    authentication_method: s[2].clone().map(Into::into),
                    response_information: s[3].clone().map(Into::into),
                    server_reference: s[4].clone().map(Into::into),
                    reason_string: s[5].clone().map(Into::into),
                    response_topic: resp.map(Into::into),
                    correlation_data: cd,
                    authentication_data: ad,
                    subscription_identifiers: ids,
                    user_properties: up.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
                });
                restrict(p, ctx)
            },
        )
}

/// Clears every property `ctx` does not allow (table of section 2.2.2.2).
pub fn restrict(mut p: Properties, ctx: Ctx) -> Properties {
    use Ctx as C;
    let publish_or_will = matches!(ctx, C::Publish | C::Will);
    if !publish_or_will {
        p.payload_format_indicator = None;
        p.message_expiry_interval = None;
        p.content_type = None;
        p.response_topic = None;
        p.correlation_data = None;
    }
    match ctx {
        C::Publish => {}
        C::Subscribe => p.subscription_identifiers.truncate(1),
        _ => p.subscription_identifiers.clear(),
    }
    if !matches!(ctx, C::Connect | C::ConnAck | C::Disconnect) {
        p.session_expiry_interval = None;
    }
    if ctx != C::ConnAck {
        p.assigned_client_identifier = None;
        p.server_keep_alive = None;
        p.response_information = None;
        p.maximum_qos = None;
        p.retain_available = None;
        p.wildcard_subscription_available = None;
        p.subscription_identifier_available = None;
        p.shared_subscription_available = None;
    }
    if !matches!(ctx, C::Connect | C::ConnAck | C::Auth) {
        p.authentication_method = None;
        p.authentication_data = None;
    }
    if ctx != C::Connect {
        p.request_problem_information = None;
        p.request_response_information = None;
    }
    if ctx != C::Will {
        p.will_delay_interval = None;
    }
    if !matches!(ctx, C::ConnAck | C::Disconnect) {
        p.server_reference = None;
    }
    if !matches!(
        ctx,
        C::ConnAck | C::PubResponse | C::SubAck | C::UnsubAck | C::Disconnect | C::Auth
    ) {
        p.reason_string = None;
    }
    if !matches!(ctx, C::Connect | C::ConnAck) {
        p.receive_maximum = None;
        p.topic_alias_maximum = None;
        p.maximum_packet_size = None;
    }
    if ctx != C::Publish {
        p.topic_alias = None;
    }
    p
}

/// 5.0 properties for `ctx`, or none before 5.0.
pub fn props_for(v: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        properties(ctx).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

/// The PUBLISH properties among `p` (all of them once restricted to
/// [`Ctx::Publish`]).
pub fn publish_properties(p: Properties) -> PublishProperties {
    let Some(p) = p.values() else {
        return PublishProperties::default();
    };
    PublishProperties::from(PublishPropertyValues {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        subscription_identifiers: p.subscription_identifiers.clone(),
        topic_alias: p.topic_alias,
        user_properties: p.user_properties.clone(),
    })
}

/// The reason codes the specification allows in `packet` (5.0).
pub fn reason(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.allowed_in(packet))
        .collect();
    prop::sample::select(codes)
}

pub fn connect(v: ProtocolVersion) -> impl Strategy<Value = Connect> {
    let will = (
        props_for(v, Ctx::Will),
        topic_name(),
        bin(),
        qos(),
        any::<bool>(),
    )
        .prop_map(|(properties, topic, payload, qos, retain)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        props_for(v, Ctx::Connect),
        text(),
        of(will),
        of(text()),
        of(bin()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // 3.1 and 3.1.1: no password without a user name [MQTT-3.1.2-22].
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                    bridge: false,
                }
            },
        )
}

pub fn connack(v: ProtocolVersion) -> BoxedStrategy<ConnAck> {
    if v.is_v5() {
        (
            any::<bool>(),
            reason(PacketType::ConnAck),
            properties(Ctx::ConnAck),
        )
            .prop_map(|(session_present, reason_code, properties)| ConnAck {
                session_present,
                reason_code,
                properties,
            })
            .boxed()
    } else {
        (any::<bool>(), 0u8..=5)
            .prop_map(|(sp, code)| ConnAck::new(sp, ReasonCode::from_v3_connack(code).unwrap()))
            .boxed()
    }
}

pub fn publish(v: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        props_for(v, Ctx::Publish).prop_map(publish_properties),
        vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, id, properties, payload, use_alias)| {
                let with_id = qos != QoS::AtMostOnce;
                // 5.0: the topic may be empty when a Topic Alias is present.
                let topic = if v.is_v5() && use_alias && properties.topic_alias.is_some() {
                    TopicName::empty()
                } else {
                    topic
                };
                Publish {
                    dup: dup && with_id,
                    qos,
                    retain,
                    topic,
                    packet_id: with_id.then_some(id),
                    properties,
                    payload: Bytes::from(payload),
                }
            },
        )
}

macro_rules! ack_strategy {
    ($fn:ident, $ty:ident, $pt:expr) => {
        pub fn $fn(v: ProtocolVersion) -> BoxedStrategy<$ty> {
            if v.is_v5() {
                (packet_id(), reason($pt), properties(Ctx::PubResponse))
                    .prop_map(|(packet_id, reason_code, properties)| $ty {
                        packet_id,
                        reason_code,
                        properties,
                    })
                    .boxed()
            } else {
                packet_id().prop_map($ty::new).boxed()
            }
        }
    };
}

ack_strategy!(puback, PubAck, PacketType::PubAck);
ack_strategy!(pubrec, PubRec, PacketType::PubRec);
ack_strategy!(pubrel, PubRel, PacketType::PubRel);
ack_strategy!(pubcomp, PubComp, PacketType::PubComp);

pub fn subscription_options(v: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if v.is_v5() {
        (
            qos(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just(RetainHandling::SendOnSubscribe),
                Just(RetainHandling::SendIfNew),
                Just(RetainHandling::DoNotSend)
            ],
        )
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed()
    } else {
        qos().prop_map(SubscriptionOptions::qos).boxed()
    }
}

pub fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let entry =
        (topic_filter(v.is_v5()), subscription_options(v)).prop_map(|(filter, mut options)| {
            // [MQTT-3.8.3-4] No Local is not allowed on a shared subscription.
            if filter.is_shared() {
                options.no_local = false;
            }
            Subscription { filter, options }
        });
    (packet_id(), props_for(v, Ctx::Subscribe), vec(entry, 1..4)).prop_map(
        |(packet_id, properties, subscriptions)| Subscribe {
            packet_id,
            properties,
            subscriptions,
        },
    )
}

pub fn suback(v: ProtocolVersion) -> BoxedStrategy<SubAck> {
    let codes = if v.is_v5() {
        vec(reason(PacketType::SubAck), 0..4).boxed()
    } else {
        vec(
            prop::sample::select(vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ]),
            0..4,
        )
        .boxed()
    };
    (packet_id(), props_for(v, Ctx::SubAck), codes)
        .prop_map(|(packet_id, properties, reason_codes)| SubAck {
            packet_id,
            properties,
            reason_codes,
        })
        .boxed()
}

pub fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    (
        packet_id(),
        props_for(v, Ctx::Unsubscribe),
        vec(topic_filter(v.is_v5()), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

pub fn unsuback(v: ProtocolVersion) -> BoxedStrategy<UnsubAck> {
    if v.is_v5() {
        (
            packet_id(),
            properties(Ctx::UnsubAck),
            vec(reason(PacketType::UnsubAck), 0..4),
        )
            .prop_map(|(packet_id, properties, reason_codes)| UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
            .boxed()
    } else {
        packet_id()
            .prop_map(|packet_id| UnsubAck {
                packet_id,
                properties: Properties::default(),
                reason_codes: Vec::new(),
            })
            .boxed()
    }
}

pub fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Disconnect> {
    if v.is_v5() {
        (reason(PacketType::Disconnect), properties(Ctx::Disconnect))
            .prop_map(|(reason_code, properties)| Disconnect {
                reason_code,
                properties,
            })
            .boxed()
    } else {
        Just(Disconnect::default()).boxed()
    }
}

pub fn auth() -> impl Strategy<Value = Auth> {
    (reason(PacketType::Auth), properties(Ctx::Auth)).prop_map(|(reason_code, properties)| Auth {
        reason_code,
        properties,
    })
}

/// Any packet other than CONNECT that exists in `v`.
pub fn non_connect_packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut s = prop_oneof![
        connack(v).prop_map(Packet::ConnAck),
        publish(v).prop_map(Packet::Publish),
        puback(v).prop_map(Packet::PubAck),
        pubrec(v).prop_map(Packet::PubRec),
        pubrel(v).prop_map(Packet::PubRel),
        pubcomp(v).prop_map(Packet::PubComp),
        subscribe(v).prop_map(Packet::Subscribe),
        suback(v).prop_map(Packet::SubAck),
        unsubscribe(v).prop_map(Packet::Unsubscribe),
        unsuback(v).prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v).prop_map(Packet::Disconnect),
    ]
    .boxed();
    if v.is_v5() {
        s = prop_oneof![13 => s, 1 => auth().prop_map(Packet::Auth)].boxed();
    }
    s
}

/// Any packet that exists in `v` (CONNECT carries `v` as its protocol).
pub fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    prop_oneof![
        1 => connect(v).prop_map(|c| Packet::Connect(Box::new(c))),
        14 => non_connect_packet(v),
    ]
    .boxed()
}

/// A version and a packet of that version.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

/// Encodes `p` with version `v` into fresh bytes.
pub fn encode(p: &Packet, v: ProtocolVersion) -> bytes::BytesMut {
    let mut buf = bytes::BytesMut::new();
    p.encode(v, &mut buf).expect("encode");
    buf
}

/// Reads a hex string (whitespace ignored) into bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    digits
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect()
}
