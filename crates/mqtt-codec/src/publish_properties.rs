//! The properties of a 5.0 PUBLISH (section 3.3.2.3): a type of their own,
//! so a PUBLISH cannot be given a property it may not carry, and decoding
//! or encoding one visits only the eight it can.

use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::properties::{
    flag, put_single, response_topic, set_once, subscription_identifier, user_property,
    valid_subscription_identifier, Properties, PropertyContext, PropertyId, Value,
};
use crate::string::MqttString;
use crate::user_properties::UserProperties;
use crate::wire::{put_variable_integer, variable_integer_len, Reader};
use alloc::boxed::Box;
use alloc::vec::Vec;
use bytes::Bytes;

/// The values of the properties a 5.0 PUBLISH can carry; reached through
/// [`PublishProperties`] (`publish.properties.content_type`,
/// `publish.properties.topic_alias = Some(1)`). The fields are in the
/// order of their identifiers, which is the order they are written in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishPropertyValues {
    /// 0x01 Payload Format Indicator: `true` means UTF-8 payload.
    pub payload_format_indicator: Option<bool>,
    /// 0x02 Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<MqttString>,
    /// 0x08 Response Topic (a topic name: not empty, no wildcards).
    pub response_topic: Option<MqttString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifiers of the subscriptions that matched
    /// (server to client; never 0, at most 268,435,455).
    pub subscription_identifiers: Vec<u32>,
    /// 0x23 Topic Alias (never 0).
    pub topic_alias: Option<u16>,
    /// 0x26 User Properties, in order; a name may repeat.
    pub user_properties: UserProperties,
}

/// The 5.0 properties of a PUBLISH. Empty for 3.1.1.
///
/// Like [`Properties`], the values live out of line: a PUBLISH without
/// properties carries one pointer, reading a property of it reads a shared
/// empty set, and the first property set allocates the values once. Fields
/// are reached through `Deref`/`DerefMut`:
///
/// ```
/// use mqtt_codec::{Publish, TopicName};
/// let mut p = Publish::new(TopicName::try_from("sensors/pi").unwrap(), "21.5");
/// assert!(p.properties.is_empty());
/// p.properties.content_type = Some("text/plain".into());
/// p.properties.user_properties.push(("site".into(), "pi".into()));
/// assert!(!p.properties.is_empty());
/// ```
///
/// A set the decoder read remembers its length on the wire, so writing it
/// back unchanged (a broker forwarding a message) does not measure it
/// again; anything that changes a value goes through `DerefMut` and makes
/// the encoder measure it. To keep that, read a value (`Deref`) before
/// deciding to change it.
#[derive(Clone, Default)]
pub struct PublishProperties(Option<Box<Stored>>);

/// The boxed values and, for values as the decoder read them, their
/// length on the wire.
///
/// A broker writes out most PUBLISHes as it read them (only their packet
/// identifier and flags change, which are not properties), so the length
/// the decoder read saves [`PublishProperties::measure`] a walk over every
/// property. Every way to change a value goes through `DerefMut`, which
/// forgets the length.
#[derive(Clone)]
struct Stored {
    values: PublishPropertyValues,
    /// The values' length on the wire, or [`UNMEASURED`].
    wire_len: u32,
}

/// [`Stored::wire_len`] of values not known to be as decoded. (A property
/// length is at most 268,435,455.)
const UNMEASURED: u32 = u32::MAX;

impl Default for Stored {
    fn default() -> Self {
        Self {
            values: PublishPropertyValues::default(),
            wire_len: UNMEASURED,
        }
    }
}

/// The empty property set every PUBLISH without properties reads through.
static NO_PUBLISH_PROPERTIES: PublishPropertyValues = PublishPropertyValues {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    topic_alias: None,
    user_properties: UserProperties::new(),
};

impl core::ops::Deref for PublishProperties {
    type Target = PublishPropertyValues;
    fn deref(&self) -> &PublishPropertyValues {
        self.values().unwrap_or(&NO_PUBLISH_PROPERTIES)
    }
}

impl core::ops::DerefMut for PublishProperties {
    fn deref_mut(&mut self) -> &mut PublishPropertyValues {
        let stored = self.0.get_or_insert_with(Default::default);
        stored.wire_len = UNMEASURED;
        &mut stored.values
    }
}

impl PartialEq for PublishProperties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PublishProperties {}

impl core::fmt::Debug for PublishProperties {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&**self, f)
    }
}

impl From<PublishPropertyValues> for PublishProperties {
    fn from(values: PublishPropertyValues) -> Self {
        Self(Some(Box::new(Stored {
            values,
            wire_len: UNMEASURED,
        })))
    }
}

impl PublishProperties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.values().is_none_or(|v| *v == NO_PUBLISH_PROPERTIES)
    }

    /// The values, if any property was ever set.
    pub fn values(&self) -> Option<&PublishPropertyValues> {
        self.0.as_deref().map(|s| &s.values)
    }

    /// The properties a will message is published with (3.1.3.2): every
    /// will property except the Will Delay Interval, which only tells the
    /// server when to publish it.
    pub fn from_will(will: &Properties) -> Self {
        let Some(w) = will.values() else {
            return Self::default();
        };
        PublishPropertyValues {
            payload_format_indicator: w.payload_format_indicator,
            message_expiry_interval: w.message_expiry_interval,
            content_type: w.content_type.clone(),
            response_topic: w.response_topic.clone(),
            correlation_data: w.correlation_data.clone(),
            subscription_identifiers: Vec::new(),
            topic_alias: None,
            user_properties: w.user_properties.clone(),
        }
        .into()
    }

    /// Reads a property length and the properties that follow.
    #[inline]
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.variable_integer()? as usize;
        if len == 0 {
            return Ok(Self::default());
        }
        let outer = r.limit(len)?;
        // One allocation, filled in place.
        let mut stored = Box::<Stored>::default();
        let p = &mut stored.values;
        while !r.is_empty() {
            use PropertyId::*;
            match r.variable_integer()? {
                0x01 => {
                    let v = flag(r, PayloadFormatIndicator)?;
                    set_once(&mut p.payload_format_indicator, v, PayloadFormatIndicator)?
                }
                0x02 => {
                    let v = r.u32()?;
                    set_once(&mut p.message_expiry_interval, v, MessageExpiryInterval)?
                }
                0x03 => {
                    let v = r.mqtt_string()?;
                    set_once(&mut p.content_type, v, ContentType)?
                }
                0x08 => {
                    let v = response_topic(r)?;
                    set_once(&mut p.response_topic, v, ResponseTopic)?
                }
                0x09 => {
                    let v = r.binary()?;
                    set_once(&mut p.correlation_data, v, CorrelationData)?
                }
                0x0B => {
                    let v = subscription_identifier(r)?;
                    p.subscription_identifiers.push(v);
                }
                0x23 => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::TopicAliasZero);
                    }
                    set_once(&mut p.topic_alias, v, TopicAlias)?
                }
                0x26 => user_property(r, &mut p.user_properties)?,
                other => return Err(not_in_publish(other)),
            }
        }
        r.restore(outer);
        // Every value read can be written back, to the same length: the
        // strings and binary data came with two-byte lengths, a
        // Subscription Identifier of 0 was refused, and variable integers
        // were in their shortest form (as they are written).
        stored.wire_len = len as u32;
        Ok(PublishProperties(Some(stored)))
    }

    /// Length of the properties, without the length prefix, and whether
    /// every value can be written ([`Self::invalid`] says which cannot): strings
    /// and binary data of at most 65,535 bytes, Subscription Identifiers
    /// from 1 to 268,435,455 (0 is a Protocol Error [MQTT-3.3.4-6]).
    /// Checking here, in the pass that measures, leaves nothing to check
    /// while writing.
    ///
    /// Unlike the other packets' properties, a Topic Alias of 0 or a
    /// Response Topic with wildcards is not refused here: this is the hot
    /// path of a broker, whose PUBLISHes come from the decoder (which
    /// refuses both) with aliases it assigns itself, and of the client,
    /// which assigns the aliases and checks a Response Topic when it is
    /// given the message (measured: the two tests cost 3% of a small 5.0
    /// PUBLISH encode).
    #[inline]
    pub(crate) fn measure(&self) -> (usize, bool) {
        let Some(stored) = self.0.as_deref() else {
            return (0, true);
        };
        if stored.wire_len != UNMEASURED {
            debug_assert_eq!(Self::walk(&stored.values), (stored.wire_len as usize, true));
            return (stored.wire_len as usize, true);
        }
        Self::walk(&stored.values)
    }

    /// [`Self::measure`] by visiting every value.
    #[inline]
    fn walk(v: &PublishPropertyValues) -> (usize, bool) {
        // Any length above 65,535 leaves a bit above the low 16 in the OR
        // of them all (cheaper than a running maximum).
        let mut bits = 0;
        let mut field = |n: usize| {
            bits |= n;
            3 + n
        };
        let mut len = v.payload_format_indicator.wire_len()
            + v.message_expiry_interval.wire_len()
            + v.topic_alias.wire_len()
            + v.content_type.as_ref().map_or(0, |s| field(s.len()))
            + v.response_topic.as_ref().map_or(0, |s| field(s.len()))
            + v.correlation_data.as_ref().map_or(0, |b| field(b.len()));
        for (k, val) in v.user_properties.iter() {
            len += field(k.len()) + field(val.len()) - 1;
        }
        let mut bad_ids = false;
        for &id in &v.subscription_identifiers {
            bad_ids |= !valid_subscription_identifier(id);
            len += 1 + variable_integer_len(id as usize);
        }
        (len, !bad_ids && bits <= usize::from(u16::MAX))
    }

    /// Why [`Self::measure`] found a value that cannot be written: an
    /// invalid Subscription Identifier, else the first field above 65,535
    /// bytes.
    #[cold]
    pub(crate) fn invalid(&self) -> EncodeError {
        let v: &PublishPropertyValues = self;
        if !v
            .subscription_identifiers
            .iter()
            .all(|&id| valid_subscription_identifier(id))
        {
            return EncodeError::InvalidPropertyValue(PropertyId::SubscriptionIdentifier);
        }
        let strings = [&v.content_type, &v.response_topic]
            .into_iter()
            .flatten()
            .map(|s| s.len());
        let pairs = v
            .user_properties
            .iter()
            .flat_map(|(k, val)| [k.len(), val.len()]);
        let longest = strings
            .chain(v.correlation_data.as_ref().map(|b| b.len()))
            .chain(pairs)
            .find(|&n| n > usize::from(u16::MAX));
        EncodeError::FieldTooLong(longest.unwrap_or(usize::MAX))
    }

    /// Length of the properties, without the length prefix.
    pub(crate) fn body_len(&self) -> usize {
        self.measure().0
    }

    /// Writes the length prefix `len` and the properties, which
    /// [`Self::measure`] found to be `len` bytes long and valid.
    #[inline]
    pub(crate) fn encode(&self, len: usize, buf: &mut Out<'_>) {
        put_variable_integer(buf, len);
        let Some(v) = self.values() else {
            return;
        };
        use PropertyId::*;
        put_single(buf, PayloadFormatIndicator, &v.payload_format_indicator);
        put_single(buf, MessageExpiryInterval, &v.message_expiry_interval);
        put_single(buf, ContentType, &v.content_type);
        put_single(buf, ResponseTopic, &v.response_topic);
        put_single(buf, CorrelationData, &v.correlation_data);
        for &id in &v.subscription_identifiers {
            buf.put_u8(SubscriptionIdentifier as u8);
            put_variable_integer(buf, id as usize);
        }
        put_single(buf, TopicAlias, &v.topic_alias);
        for (k, val) in v.user_properties.iter() {
            buf.put_u8(UserProperty as u8);
            k.put_binary(buf);
            val.put_binary(buf);
        }
    }
}

/// The error for a property identifier a PUBLISH cannot carry, in the
/// generic decoder's terms: unknown, or known but not allowed.
#[cold]
fn not_in_publish(raw: u32) -> DecodeError {
    match u8::try_from(raw).ok().and_then(PropertyId::from_u8) {
        None => DecodeError::UnknownProperty(raw.min(255) as u8),
        Some(id) => {
            debug_assert!(!PropertyContext::Publish.allows(id));
            DecodeError::PropertyNotAllowed {
                property: id,
                context: PropertyContext::Publish.name(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out::write_packet;
    use crate::properties::tests::wire_of_only;
    use crate::types::PacketType;
    use bytes::BytesMut;

    /// The PUBLISH decoder takes exactly the properties the table of
    /// section 2.2.2.2 allows in a PUBLISH, refuses the others with the
    /// generic decoder's error, and writes back the same bytes it read.
    #[test]
    fn the_publish_decoder_agrees_with_the_generic_one() {
        let mut seen = 0;
        for id in (0..=u8::MAX).filter_map(PropertyId::from_u8) {
            seen += 1;
            let wire = wire_of_only(id);
            let ours = PublishProperties::decode(&mut Reader::new(&wire, PacketType::Publish));
            let generic = Properties::decode(
                &mut Reader::new(&wire, PacketType::Publish),
                PropertyContext::Publish,
            );
            match (ours, generic) {
                (Ok(p), Ok(g)) => {
                    assert!(PropertyContext::Publish.allows(id), "{id:?}");
                    assert_eq!(p.body_len(), g.body_len(PropertyContext::Publish), "{id:?}");
                    let mut buf = BytesMut::new();
                    let len = p.body_len();
                    write_packet::<()>(&mut buf, variable_integer_len(len) + len, |o| {
                        p.encode(len, o);
                        Ok(())
                    })
                    .unwrap();
                    assert_eq!(buf, wire, "{id:?}");
                }
                (Err(e), Err(g)) => {
                    assert!(!PropertyContext::Publish.allows(id), "{id:?}");
                    assert_eq!(e, g, "{id:?}");
                }
                (ours, generic) => panic!("{id:?}: {ours:?} but generic {generic:?}"),
            }
        }
        assert_eq!(seen, 27, "every 5.0 property");
        // An identifier no property has.
        let wire = Bytes::from_static(&[2, 0x04, 0]);
        assert_eq!(
            PublishProperties::decode(&mut Reader::new(&wire, PacketType::Publish)),
            Err(DecodeError::UnknownProperty(0x04))
        );
    }

    /// A will's properties are published with everything but the Will
    /// Delay Interval.
    #[test]
    fn a_will_is_published_with_its_properties_but_the_delay() {
        let mut will = Properties::default();
        will.will_delay_interval = Some(30);
        will.payload_format_indicator = Some(true);
        will.message_expiry_interval = Some(60);
        will.content_type = Some("text/plain".into());
        will.response_topic = Some("replies/pi".into());
        will.correlation_data = Some(Bytes::from_static(b"id-7"));
        will.user_properties.push(("site".into(), "pi".into()));
        let p = PublishProperties::from_will(&will);
        let want = PublishPropertyValues {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("replies/pi".into()),
            correlation_data: Some(Bytes::from_static(b"id-7")),
            subscription_identifiers: Vec::new(),
            topic_alias: None,
            user_properties: [("site".into(), "pi".into())].into(),
        };
        assert_eq!(p.values(), Some(&want));
        assert!(PublishProperties::from_will(&Properties::default()).is_empty());
    }
}
