//! MQTT 5.0 properties (section 2.2.2): one struct with every property, and the
//! rules of which packet may carry which.

use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::string::MqttString;
use crate::types::QoS;
use crate::user_properties::UserProperties;
use crate::wire::{check_field, put_binary, put_variable_integer, variable_integer_len, Reader};
use alloc::boxed::Box;
use alloc::vec::Vec;
use bytes::Bytes;

/// Identifier of a 5.0 property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    /// The property for its identifier byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        use PropertyId::*;
        Some(match v {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQoS,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }
}

/// Where a property set appears; decides which properties are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyContext {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::Will => "will properties",
            Self::PubResponse => "PUBACK/PUBREC/PUBREL/PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }

    /// Table of section 2.2.2.2.
    #[inline(always)]
    pub(crate) fn allows(self, id: PropertyId) -> bool {
        use PropertyContext as C;
        use PropertyId::*;
        match id {
            UserProperty => true,
            PayloadFormatIndicator
            | MessageExpiryInterval
            | ContentType
            | ResponseTopic
            | CorrelationData => matches!(self, C::Publish | C::Will),
            SubscriptionIdentifier => matches!(self, C::Publish | C::Subscribe),
            SessionExpiryInterval => matches!(self, C::Connect | C::ConnAck | C::Disconnect),
            AssignedClientIdentifier
            | ServerKeepAlive
            | ResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => self == C::ConnAck,
            AuthenticationMethod | AuthenticationData => {
                matches!(self, C::Connect | C::ConnAck | C::Auth)
            }
            RequestProblemInformation | RequestResponseInformation => self == C::Connect,
            WillDelayInterval => self == C::Will,
            ServerReference => matches!(self, C::ConnAck | C::Disconnect),
            ReasonString => matches!(
                self,
                C::ConnAck | C::PubResponse | C::SubAck | C::UnsubAck | C::Disconnect | C::Auth
            ),
            ReceiveMaximum | TopicAliasMaximum | MaximumPacketSize => {
                matches!(self, C::Connect | C::ConnAck)
            }
            TopicAlias => self == C::Publish,
        }
    }
}

/// The values of every MQTT 5.0 property; reached through [`Properties`]
/// (`packet.properties.user_properties`, `packet.properties.topic_alias = Some(1)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyValues {
    /// 0x01 Payload Format Indicator: `true` means UTF-8 payload.
    pub payload_format_indicator: Option<bool>,
    /// 0x02 Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<MqttString>,
    /// 0x08 Response Topic.
    pub response_topic: Option<MqttString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifier(s): several in a PUBLISH, at most one in SUBSCRIBE.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval in seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier.
    pub assigned_client_identifier: Option<MqttString>,
    /// 0x13 Server Keep Alive in seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<MqttString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information.
    pub request_problem_information: Option<bool>,
    /// 0x18 Will Delay Interval in seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information.
    pub request_response_information: Option<bool>,
    /// 0x1A Response Information.
    pub response_information: Option<MqttString>,
    /// 0x1C Server Reference.
    pub server_reference: Option<MqttString>,
    /// 0x1F Reason String.
    pub reason_string: Option<MqttString>,
    /// 0x21 Receive Maximum (never 0).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias (never 0).
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (0 or 1 when present).
    pub maximum_qos: Option<QoS>,
    /// 0x25 Retain Available.
    pub retain_available: Option<bool>,
    /// 0x26 User Properties, in order; a name may repeat.
    pub user_properties: UserProperties,
    /// 0x27 Maximum Packet Size (never 0).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29 Subscription Identifier Available.
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A Shared Subscription Available.
    pub shared_subscription_available: Option<bool>,
}

/// The empty property set every packet without properties reads through.
static NO_PROPERTIES: PropertyValues = PropertyValues {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: UserProperties::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

/// The 5.0 properties of every packet but PUBLISH (which has its own type,
/// [`crate::PublishProperties`]). A packet carries the ones the table of
/// section 2.2.2.2 allows for it: the decoder rejects the others, and the
/// encoder refuses them ([`EncodeError::PropertyNotAllowed`], naming the
/// property and the packet) as it refuses values the peer must reject
/// ([`EncodeError::InvalidPropertyValue`]). Empty for 3.1.1.
///
/// The values live out of line: a packet without properties carries one
/// pointer (so packets stay small and cheap to move), reading any property
/// of it reads a shared empty set, and the first property set allocates the
/// values once. Fields are reached through `Deref`/`DerefMut`:
///
/// ```
/// use mqtt_codec::Properties;
/// let mut p = Properties::default();
/// assert!(p.is_empty() && p.topic_alias.is_none());
/// p.user_properties.push(("site".into(), "pi".into()));
/// assert!(!p.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyValues>>);

/// The impls a property wrapper (`Option<Box<Values>>` read through an
/// empty `static`) shares: `Deref`/`DerefMut` to the values (the first
/// write allocates them), equality and `Debug` of the values, `From` the
/// values, `is_empty` and `values`.
macro_rules! boxed_values {
    ($outer:ident, $values:ty, $empty:expr) => {
        impl core::ops::Deref for $outer {
            type Target = $values;
            fn deref(&self) -> &$values {
                self.0.as_deref().unwrap_or(&$empty)
            }
        }

        impl core::ops::DerefMut for $outer {
            fn deref_mut(&mut self) -> &mut $values {
                self.0.get_or_insert_with(Default::default)
            }
        }

        impl PartialEq for $outer {
            fn eq(&self, other: &Self) -> bool {
                **self == **other
            }
        }

        impl Eq for $outer {}

        impl core::fmt::Debug for $outer {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(&**self, f)
            }
        }

        impl From<$values> for $outer {
            fn from(v: $values) -> Self {
                $outer(Some(alloc::boxed::Box::new(v)))
            }
        }

        impl $outer {
            /// Whether no property is set.
            pub fn is_empty(&self) -> bool {
                self.0.as_deref().is_none_or(|v| *v == $empty)
            }

            /// The values, if any property was ever set.
            pub fn values(&self) -> Option<&$values> {
                self.0.as_deref()
            }
        }
    };
}

boxed_values!(Properties, PropertyValues, NO_PROPERTIES);

#[inline(always)]
pub(crate) fn set_once<T>(slot: &mut Option<T>, v: T, id: PropertyId) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(v);
    Ok(())
}

pub(crate) fn flag(r: &mut Reader<'_>, id: PropertyId) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

/// A User Property, read into a pair appended to `list` (filled in place:
/// building the pair first and moving it in read back, in wider pieces,
/// what had just been stored, a store-to-load forwarding stall).
#[inline(always)]
pub(crate) fn user_property(
    r: &mut Reader<'_>,
    list: &mut UserProperties,
) -> Result<(), DecodeError> {
    let pair = list.push_empty();
    pair.0 = r.mqtt_string()?;
    pair.1 = r.mqtt_string()?;
    Ok(())
}

/// Whether `topic` can be a Response Topic: a Topic Name, so not empty
/// and without wildcards [MQTT-3.3.2-14].
pub(crate) fn valid_response_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// A Response Topic: a string that is a Topic Name [MQTT-3.3.2-14].
pub(crate) fn response_topic(r: &mut Reader<'_>) -> Result<MqttString, DecodeError> {
    let v = r.mqtt_string()?;
    if !valid_response_topic(&v) {
        return Err(DecodeError::InvalidPropertyValue(PropertyId::ResponseTopic));
    }
    Ok(v)
}

/// A Subscription Identifier that can be written: a variable byte integer
/// (at most 268,435,455; the lengths assume 1 to 4 bytes) other than 0,
/// which is a Protocol Error [MQTT-3.3.4-6].
#[inline(always)]
pub(crate) fn valid_subscription_identifier(id: u32) -> bool {
    id != 0 && id <= crate::wire::MAX_VARIABLE_INTEGER
}

/// A Subscription Identifier: 0 is a Protocol Error ([MQTT-3.3.4-6],
/// 3.8.2.1.2).
#[inline(always)]
pub(crate) fn subscription_identifier(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    match r.variable_integer()? {
        0 => Err(DecodeError::InvalidPropertyValue(
            PropertyId::SubscriptionIdentifier,
        )),
        v => Ok(v),
    }
}

impl Properties {
    /// Reads a property length and the properties that follow.
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: PropertyContext) -> Result<Self, DecodeError> {
        let len = r.variable_integer()? as usize;
        if len == 0 {
            return Ok(Properties::default());
        }
        let outer = r.limit(len)?;
        // One allocation, filled in place (not through `DerefMut`, which
        // would test for it at every field).
        let mut values = Box::<PropertyValues>::default();
        let p = &mut *values;
        while !r.is_empty() {
            let raw = r.variable_integer()?;
            let id = u8::try_from(raw)
                .ok()
                .and_then(PropertyId::from_u8)
                .ok_or(DecodeError::UnknownProperty(raw.min(255) as u8))?;
            if !ctx.allows(id) {
                return Err(DecodeError::PropertyNotAllowed {
                    property: id,
                    context: ctx.name(),
                });
            }
            use PropertyId::*;
            match id {
                PayloadFormatIndicator => {
                    let v = flag(r, id)?;
                    set_once(&mut p.payload_format_indicator, v, id)?
                }
                MessageExpiryInterval => {
                    let v = r.u32()?;
                    set_once(&mut p.message_expiry_interval, v, id)?
                }
                ContentType => {
                    let v = r.mqtt_string()?;
                    set_once(&mut p.content_type, v, id)?
                }
                ResponseTopic => {
                    let v = response_topic(r)?;
                    set_once(&mut p.response_topic, v, id)?
                }
                CorrelationData => {
                    let v = r.binary()?;
                    set_once(&mut p.correlation_data, v, id)?
                }
                SubscriptionIdentifier => {
                    let v = subscription_identifier(r)?;
                    if ctx == PropertyContext::Subscribe && !p.subscription_identifiers.is_empty() {
                        return Err(DecodeError::DuplicateProperty(id));
                    }
                    p.subscription_identifiers.push(v);
                }
                SessionExpiryInterval => {
                    let v = r.u32()?;
                    set_once(&mut p.session_expiry_interval, v, id)?
                }
                AssignedClientIdentifier => {
                    let v = r.mqtt_string()?;
                    set_once(&mut p.assigned_client_identifier, v, id)?
                }
                ServerKeepAlive => {
                    let v = r.u16()?;
                    set_once(&mut p.server_keep_alive, v, id)?
                }
                AuthenticationMethod => {
                    let v = r.mqtt_string()?;
                    set_once(&mut p.authentication_method, v, id)?
                }
                AuthenticationData => {
                    let v = r.binary()?;
                    set_once(&mut p.authentication_data, v, id)?
                }
                RequestProblemInformation => {
                    let v = flag(r, id)?;
                    set_once(&mut p.request_problem_information, v, id)?
                }
                WillDelayInterval => {
                    let v = r.u32()?;
                    set_once(&mut p.will_delay_interval, v, id)?
                }
                RequestResponseInformation => {
                    let v = flag(r, id)?;
                    set_once(&mut p.request_response_information, v, id)?
                }
                ResponseInformation => {
                    let v = r.mqtt_string()?;
                    set_once(&mut p.response_information, v, id)?
                }
                ServerReference => {
                    let v = r.mqtt_string()?;
                    set_once(&mut p.server_reference, v, id)?
                }
                ReasonString => {
                    let v = r.mqtt_string()?;
                    set_once(&mut p.reason_string, v, id)?
                }
                ReceiveMaximum => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::InvalidPropertyValue(id));
                    }
                    set_once(&mut p.receive_maximum, v, id)?
                }
                TopicAliasMaximum => {
                    let v = r.u16()?;
                    set_once(&mut p.topic_alias_maximum, v, id)?
                }
                TopicAlias => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::TopicAliasZero);
                    }
                    set_once(&mut p.topic_alias, v, id)?
                }
                MaximumQoS => {
                    let v = match r.u8()? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => return Err(DecodeError::InvalidPropertyValue(id)),
                    };
                    set_once(&mut p.maximum_qos, v, id)?
                }
                RetainAvailable => {
                    let v = flag(r, id)?;
                    set_once(&mut p.retain_available, v, id)?
                }
                UserProperty => user_property(r, &mut p.user_properties)?,
                MaximumPacketSize => {
                    let v = r.u32()?;
                    if v == 0 {
                        return Err(DecodeError::InvalidPropertyValue(id));
                    }
                    set_once(&mut p.maximum_packet_size, v, id)?
                }
                WildcardSubscriptionAvailable => {
                    let v = flag(r, id)?;
                    set_once(&mut p.wildcard_subscription_available, v, id)?
                }
                SubscriptionIdentifierAvailable => {
                    let v = flag(r, id)?;
                    set_once(&mut p.subscription_identifier_available, v, id)?
                }
                SharedSubscriptionAvailable => {
                    let v = flag(r, id)?;
                    set_once(&mut p.shared_subscription_available, v, id)?
                }
            }
        }
        r.restore(outer);
        Ok(Properties(Some(values)))
    }

    /// Length of the properties `ctx` allows, without the length prefix
    /// (what [`Self::encode`] writes when it succeeds).
    #[inline(always)]
    pub(crate) fn body_len(&self, ctx: PropertyContext) -> usize {
        self.0.as_deref().map_or(0, |v| v.allowed_len(ctx))
    }

    /// Length with the variable byte integer prefix.
    #[inline(always)]
    pub(crate) fn encoded_len(&self, ctx: PropertyContext) -> usize {
        let n = self.body_len(ctx);
        variable_integer_len(n) + n
    }

    /// Writes the length prefix and the properties of a packet in `ctx`.
    /// A property the packet cannot carry, or a value the peer must
    /// reject, is an error (the peer would close the connection with a
    /// Protocol Error that names neither).
    ///
    /// Both this and [`Self::body_len`] visit only the properties `ctx`
    /// allows (`ctx` is a constant at every call site, so the others fold
    /// away); the rest are only tested for being set, without branches.
    #[inline(always)]
    pub(crate) fn encode(
        &self,
        ctx: PropertyContext,
        buf: &mut Out<'_>,
    ) -> Result<(), EncodeError> {
        let Some(v) = self.0.as_deref() else {
            buf.put_u8(0);
            return Ok(());
        };
        if v.any_not_allowed(ctx) {
            if let Some(e) = v.not_allowed(ctx) {
                return Err(e);
            }
        }
        if ctx == PropertyContext::Subscribe && v.subscription_identifiers.len() > 1 {
            // "a Protocol Error to include the Subscription Identifier
            // more than once" (3.8.2.1.2).
            return Err(EncodeError::InvalidPropertyValue(
                PropertyId::SubscriptionIdentifier,
            ));
        }
        // The length prefix is not known before the properties are written
        // (measuring them would walk them a second time: the caller already
        // did for the remaining length). Write a one-byte prefix and the
        // properties, then patch the prefix; in the rare case that the
        // length takes more than one byte, write them again after it.
        let at = buf.position();
        buf.put_u8(0);
        v.write_allowed(ctx, buf)?;
        let len = buf.position() - at - 1;
        if len < 0x80 {
            buf.patch_u8(at, len as u8);
        } else {
            buf.rewind(at);
            put_variable_integer(buf, len);
            v.write_allowed(ctx, buf)?;
        }
        Ok(())
    }
}

/// One property's value as [`PropertyValues`] holds it.
pub(crate) trait Value {
    /// Whether the property is set.
    fn is_set(&self) -> bool;
    /// Bytes it takes on the wire, identifiers included (0 when unset).
    fn wire_len(&self) -> usize;
    /// Writes identifier and value when set; refuses a value that cannot
    /// be written or that the peer must reject.
    fn put(&self, id: PropertyId, buf: &mut Out<'_>) -> Result<(), EncodeError>;
}

/// A property that appears at most once: a flag, a two- or four-byte
/// integer, a QoS, a string or binary data. `Option<T>` is its [`Value`].
pub(crate) trait Single {
    /// Bytes of the value on the wire (a length prefix included).
    fn size(&self) -> usize;
    /// Refuses a value of property `id` that cannot be written or that the
    /// peer must reject.
    fn check(&self, _id: PropertyId) -> Result<(), EncodeError> {
        Ok(())
    }
    /// Writes the value.
    fn put_value(&self, buf: &mut Out<'_>);
}

impl Single for bool {
    #[inline(always)]
    fn size(&self) -> usize {
        1
    }
    #[inline(always)]
    fn put_value(&self, buf: &mut Out<'_>) {
        buf.put_u8(*self as u8);
    }
}

impl Single for u16 {
    #[inline(always)]
    fn size(&self) -> usize {
        2
    }
    /// Receive Maximum and Topic Alias 0 are Protocol Errors (3.1.2.11.3,
    /// 3.2.2.3.3, 3.3.2.3.4).
    #[inline(always)]
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        if *self == 0 && matches!(id, PropertyId::ReceiveMaximum | PropertyId::TopicAlias) {
            return Err(EncodeError::InvalidPropertyValue(id));
        }
        Ok(())
    }
    #[inline(always)]
    fn put_value(&self, buf: &mut Out<'_>) {
        buf.put_u16(*self);
    }
}

impl Single for u32 {
    #[inline(always)]
    fn size(&self) -> usize {
        4
    }
    /// Maximum Packet Size 0 is a Protocol Error (3.1.2.11.4, 3.2.2.3.6).
    #[inline(always)]
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        if *self == 0 && id == PropertyId::MaximumPacketSize {
            return Err(EncodeError::InvalidPropertyValue(id));
        }
        Ok(())
    }
    #[inline(always)]
    fn put_value(&self, buf: &mut Out<'_>) {
        buf.put_u32(*self);
    }
}

impl Single for QoS {
    #[inline(always)]
    fn size(&self) -> usize {
        1
    }
    /// Maximum QoS is 0 or 1 when present (3.2.2.3.4).
    #[inline(always)]
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        if *self == QoS::ExactlyOnce {
            return Err(EncodeError::InvalidPropertyValue(id));
        }
        Ok(())
    }
    #[inline(always)]
    fn put_value(&self, buf: &mut Out<'_>) {
        buf.put_u8(self.as_u8());
    }
}

impl Single for MqttString {
    #[inline(always)]
    fn size(&self) -> usize {
        2 + self.len()
    }
    /// At most 65,535 bytes; a Response Topic is a Topic Name
    /// [MQTT-3.3.2-14].
    #[inline(always)]
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        check_field(self.len())?;
        if id == PropertyId::ResponseTopic && !valid_response_topic(self) {
            return Err(EncodeError::InvalidPropertyValue(id));
        }
        Ok(())
    }
    #[inline(always)]
    fn put_value(&self, buf: &mut Out<'_>) {
        self.put_binary(buf);
    }
}

impl Single for Bytes {
    #[inline(always)]
    fn size(&self) -> usize {
        2 + self.len()
    }
    #[inline(always)]
    fn check(&self, _id: PropertyId) -> Result<(), EncodeError> {
        check_field(self.len())
    }
    #[inline(always)]
    fn put_value(&self, buf: &mut Out<'_>) {
        put_binary(buf, self);
    }
}

impl<T: Single> Value for Option<T> {
    #[inline(always)]
    fn is_set(&self) -> bool {
        self.is_some()
    }
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.as_ref().map_or(0, |v| 1 + v.size())
    }
    #[inline(always)]
    fn put(&self, id: PropertyId, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        if let Some(v) = self {
            v.check(id)?;
        }
        put_single(buf, id, self);
        Ok(())
    }
}

/// Writes a set property's identifier and value, without its checks: for
/// [`Value::put`] once it has checked, and for the PUBLISH encoder, whose
/// measuring pass checked what it must.
#[inline(always)]
pub(crate) fn put_single<T: Single>(buf: &mut Out<'_>, id: PropertyId, v: &Option<T>) {
    if let Some(v) = v {
        buf.put_u8(id as u8);
        v.put_value(buf);
    }
}

/// Subscription Identifiers: one property each.
impl Value for Vec<u32> {
    #[inline(always)]
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.iter()
            .map(|&v| 1 + variable_integer_len(v as usize))
            .sum()
    }
    #[inline(always)]
    fn put(&self, id: PropertyId, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        for &v in self {
            if !valid_subscription_identifier(v) {
                return Err(EncodeError::InvalidPropertyValue(id));
            }
            buf.put_u8(id as u8);
            put_variable_integer(buf, v as usize);
        }
        Ok(())
    }
}

/// User Properties: one property per pair.
impl Value for UserProperties {
    #[inline(always)]
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.iter().map(|(k, v)| 5 + k.len() + v.len()).sum()
    }
    #[inline(always)]
    fn put(&self, id: PropertyId, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        for (k, v) in self.iter() {
            check_field(k.len())?;
            check_field(v.len())?;
            buf.put_u8(id as u8);
            k.put_binary(buf);
            v.put_binary(buf);
        }
        Ok(())
    }
}

/// Expands `$m!` with every field of [`PropertyValues`] and its
/// identifier, in the order of the identifiers (the order they are
/// written in).
macro_rules! every_property {
    ($m:ident) => {
        $m! {
            payload_format_indicator: PayloadFormatIndicator,
            message_expiry_interval: MessageExpiryInterval,
            content_type: ContentType,
            response_topic: ResponseTopic,
            correlation_data: CorrelationData,
            subscription_identifiers: SubscriptionIdentifier,
            session_expiry_interval: SessionExpiryInterval,
            assigned_client_identifier: AssignedClientIdentifier,
            server_keep_alive: ServerKeepAlive,
            authentication_method: AuthenticationMethod,
            authentication_data: AuthenticationData,
            request_problem_information: RequestProblemInformation,
            will_delay_interval: WillDelayInterval,
            request_response_information: RequestResponseInformation,
            response_information: ResponseInformation,
            server_reference: ServerReference,
            reason_string: ReasonString,
            receive_maximum: ReceiveMaximum,
            topic_alias_maximum: TopicAliasMaximum,
            topic_alias: TopicAlias,
            maximum_qos: MaximumQoS,
            retain_available: RetainAvailable,
            user_properties: UserProperty,
            maximum_packet_size: MaximumPacketSize,
            wildcard_subscription_available: WildcardSubscriptionAvailable,
            subscription_identifier_available: SubscriptionIdentifierAvailable,
            shared_subscription_available: SharedSubscriptionAvailable,
        }
    };
}

impl PropertyValues {
    /// Wire length of the properties `ctx` allows.
    #[inline(always)]
    fn allowed_len(&self, ctx: PropertyContext) -> usize {
        let mut n = 0;
        macro_rules! add {
            ($($field:ident: $id:ident,)*) => {$(
                if ctx.allows(PropertyId::$id) {
                    n += self.$field.wire_len();
                }
            )*};
        }
        every_property!(add);
        n
    }

    /// Whether a property `ctx` does not allow is set (one test of each,
    /// combined without branches).
    #[inline(always)]
    fn any_not_allowed(&self, ctx: PropertyContext) -> bool {
        let mut set = false;
        macro_rules! test {
            ($($field:ident: $id:ident,)*) => {$(
                if !ctx.allows(PropertyId::$id) {
                    set |= self.$field.is_set();
                }
            )*};
        }
        every_property!(test);
        set
    }

    /// The error for the first property set that `ctx` does not allow.
    #[cold]
    #[inline(never)]
    fn not_allowed(&self, ctx: PropertyContext) -> Option<EncodeError> {
        macro_rules! first {
            ($($field:ident: $id:ident,)*) => {$(
                if !ctx.allows(PropertyId::$id) && self.$field.is_set() {
                    return Some(EncodeError::PropertyNotAllowed {
                        property: PropertyId::$id,
                        context: ctx.name(),
                    });
                }
            )*};
        }
        every_property!(first);
        None
    }

    /// Writes the properties `ctx` allows, without the length prefix.
    #[inline(always)]
    fn write_allowed(&self, ctx: PropertyContext, buf: &mut Out<'_>) -> Result<(), EncodeError> {
        macro_rules! put {
            ($($field:ident: $id:ident,)*) => {$(
                if ctx.allows(PropertyId::$id) {
                    self.$field.put(PropertyId::$id, buf)?;
                }
            )*};
        }
        every_property!(put);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::out::write_packet;
    use crate::types::PacketType;
    use bytes::BytesMut;

    /// Every place properties appear.
    pub(crate) const CONTEXTS: [PropertyContext; 11] = {
        use PropertyContext::*;
        [
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
        ]
    };

    /// The property `id` alone on the wire, with its length prefix, as
    /// the encoder writes it where it is allowed.
    pub(crate) fn wire_of_only(id: PropertyId) -> Bytes {
        let ctx = *CONTEXTS
            .iter()
            .find(|c| c.allows(id))
            .expect("allowed somewhere");
        let p = Properties::from(only(id));
        let mut buf = BytesMut::new();
        write_packet(&mut buf, p.encoded_len(ctx), |o| p.encode(ctx, o)).unwrap();
        buf.freeze()
    }

    /// Values with exactly the property `id` set.
    pub(crate) fn only(id: PropertyId) -> PropertyValues {
        use PropertyId::*;
        let mut v = PropertyValues::default();
        let s = || Some(MqttString::from("x"));
        match id {
            PayloadFormatIndicator => v.payload_format_indicator = Some(true),
            MessageExpiryInterval => v.message_expiry_interval = Some(1),
            ContentType => v.content_type = s(),
            ResponseTopic => v.response_topic = s(),
            CorrelationData => v.correlation_data = Some(Bytes::from_static(b"x")),
            SubscriptionIdentifier => v.subscription_identifiers = alloc::vec![1],
            SessionExpiryInterval => v.session_expiry_interval = Some(1),
            AssignedClientIdentifier => v.assigned_client_identifier = s(),
            ServerKeepAlive => v.server_keep_alive = Some(1),
            AuthenticationMethod => v.authentication_method = s(),
            AuthenticationData => v.authentication_data = Some(Bytes::from_static(b"x")),
            RequestProblemInformation => v.request_problem_information = Some(true),
            WillDelayInterval => v.will_delay_interval = Some(1),
            RequestResponseInformation => v.request_response_information = Some(true),
            ResponseInformation => v.response_information = s(),
            ServerReference => v.server_reference = s(),
            ReasonString => v.reason_string = s(),
            ReceiveMaximum => v.receive_maximum = Some(1),
            TopicAliasMaximum => v.topic_alias_maximum = Some(1),
            TopicAlias => v.topic_alias = Some(1),
            MaximumQoS => v.maximum_qos = Some(QoS::AtMostOnce),
            RetainAvailable => v.retain_available = Some(true),
            UserProperty => v.user_properties = [(s().unwrap(), s().unwrap())].into(),
            MaximumPacketSize => v.maximum_packet_size = Some(1),
            WildcardSubscriptionAvailable => v.wildcard_subscription_available = Some(true),
            SubscriptionIdentifierAvailable => v.subscription_identifier_available = Some(true),
            SharedSubscriptionAvailable => v.shared_subscription_available = Some(true),
        }
        v
    }

    /// `p` encoded for `ctx` with its length prefix, or the error (and
    /// then nothing is written).
    fn encode_in(p: &Properties, ctx: PropertyContext) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        let r = write_packet(&mut buf, p.encoded_len(ctx), |o| p.encode(ctx, o));
        match r {
            Ok(()) => Ok(buf.freeze()),
            Err(e) => {
                assert!(buf.is_empty(), "{ctx:?}: {e} but wrote {buf:?}");
                Err(e)
            }
        }
    }

    /// Every property, set alone, is written in exactly the packets the
    /// table of section 2.2.2.2 allows it in (and decodes back there);
    /// anywhere else the encoder names it and the packet.
    #[test]
    fn every_property_is_written_exactly_where_it_is_allowed() {
        let mut written = 0;
        for id in (0..=u8::MAX).filter_map(PropertyId::from_u8) {
            let p = Properties::from(only(id));
            for ctx in CONTEXTS {
                match encode_in(&p, ctx) {
                    Ok(wire) => {
                        assert!(ctx.allows(id), "{id:?} written in {ctx:?}");
                        let back =
                            Properties::decode(&mut Reader::new(&wire, PacketType::Auth), ctx);
                        assert_eq!(back, Ok(p.clone()), "{id:?} in {ctx:?}");
                        written += 1;
                    }
                    Err(e) => {
                        assert!(!ctx.allows(id), "{id:?} refused in {ctx:?}: {e}");
                        assert_eq!(
                            e,
                            EncodeError::PropertyNotAllowed {
                                property: id,
                                context: ctx.name()
                            }
                        );
                    }
                }
            }
        }
        // The table of section 2.2.2.2 counted by hand, with PUBACK to
        // PUBCOMP as one context: 58 places a property may appear.
        assert_eq!(written, 58);
        let mut sub = Properties::default();
        sub.subscription_identifiers.push(7);
        sub.content_type = Some("text/plain".into());
        let e = encode_in(&sub, PropertyContext::Subscribe).unwrap_err();
        assert_eq!(
            e.to_string(),
            "property ContentType cannot be sent in SUBSCRIBE"
        );
    }

    /// The values the decoder refuses (a Protocol Error for the peer) are
    /// refused by the encoder too, naming the property.
    #[test]
    fn values_the_peer_must_reject_are_not_written() {
        use PropertyContext as C;
        use PropertyId::*;
        type Set = fn(&mut PropertyValues);
        let cases: [(C, PropertyId, Set); 8] = [
            (C::Connect, ReceiveMaximum, |v| v.receive_maximum = Some(0)),
            (C::ConnAck, MaximumPacketSize, |v| {
                v.maximum_packet_size = Some(0)
            }),
            (C::ConnAck, MaximumQoS, |v| {
                v.maximum_qos = Some(QoS::ExactlyOnce)
            }),
            (C::Will, ResponseTopic, |v| {
                v.response_topic = Some("".into())
            }),
            (C::Will, ResponseTopic, |v| {
                v.response_topic = Some("replies/+".into())
            }),
            (C::Subscribe, SubscriptionIdentifier, |v| {
                v.subscription_identifiers = alloc::vec![0]
            }),
            (C::Subscribe, SubscriptionIdentifier, |v| {
                v.subscription_identifiers = alloc::vec![crate::wire::MAX_VARIABLE_INTEGER + 1]
            }),
            (C::Subscribe, SubscriptionIdentifier, |v| {
                v.subscription_identifiers = alloc::vec![1, 2]
            }),
        ];
        for (ctx, id, set) in cases {
            let mut v = PropertyValues::default();
            v.user_properties.push(("k".into(), "v".into()));
            set(&mut v);
            let p = Properties::from(v);
            assert_eq!(
                encode_in(&p, ctx),
                Err(EncodeError::InvalidPropertyValue(id)),
                "{ctx:?} {p:?}"
            );
        }
        // The same properties with valid values are written and read back.
        let p = Properties::from(PropertyValues {
            receive_maximum: Some(1),
            maximum_packet_size: Some(1),
            ..Default::default()
        });
        let wire = encode_in(&p, C::Connect).unwrap();
        let back = Properties::decode(&mut Reader::new(&wire, PacketType::Connect), C::Connect);
        assert_eq!(back, Ok(p));
    }
}
