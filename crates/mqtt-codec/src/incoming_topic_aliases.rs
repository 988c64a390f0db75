//! [`IncomingTopicAliases`]: the 5.0 Topic Aliases the peer assigned.

use alloc::collections::BTreeMap;

use crate::reason::ReasonCode;
use crate::topic::TopicName;

/// The Topic Aliases a receiver of 5.0 PUBLISH packets has learnt from its
/// peer, for one network connection.
///
/// [`IncomingTopicAliases::resolve`] handles the Topic Alias of a received
/// PUBLISH: with a topic name, the peer (re)defines the alias; with an
/// empty topic name, the alias stands for the topic it was last given.
/// An alias must be between 1 and the Topic Alias Maximum this side
/// announced (in CONNECT for a client [MQTT-3.3.2-10], in CONNACK for a
/// server [MQTT-3.3.2-12]); 0 is never valid [MQTT-3.3.2-8].
///
/// Aliases live as long as the network connection [MQTT-3.3.2-7]:
/// [`IncomingTopicAliases::clear`] when it ends. Our maximum is not kept
/// here but passed to each call, so the table is one empty `BTreeMap` (no
/// heap allocation) until the peer defines an alias.
///
/// ```
/// use mqtt_codec::{IncomingTopicAliases, TopicAliasError, TopicName};
///
/// let mut aliases = IncomingTopicAliases::new();
/// let our_max = 4; // the Topic Alias Maximum we announced
///
/// let mut topic = TopicName::try_from("a/b").unwrap();
/// aliases.resolve(2, &mut topic, our_max).unwrap(); // defines alias 2
///
/// let mut topic = TopicName::empty();
/// aliases.resolve(2, &mut topic, our_max).unwrap();
/// assert_eq!(topic.as_str(), "a/b");
///
/// let mut topic = TopicName::empty();
/// assert_eq!(aliases.resolve(3, &mut topic, our_max), Err(TopicAliasError::Unknown(3)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingTopicAliases {
    /// Alias to topic.
    by_alias: BTreeMap<u16, TopicName>,
}

/// Why the Topic Alias of a received PUBLISH is refused. Either is fatal
/// for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TopicAliasError {
    /// The alias is 0 [MQTT-3.3.2-8], or above the Topic Alias Maximum this
    /// side announced [MQTT-3.3.2-10] [MQTT-3.3.2-12].
    #[error("topic alias {alias} outside 1..={max}")]
    OutOfRange {
        /// The alias received.
        alias: u16,
        /// The Topic Alias Maximum this side announced.
        max: u16,
    },
    /// An empty topic name with an alias the peer never defined on this
    /// network connection.
    #[error("unknown topic alias {0}")]
    Unknown(u16),
}

impl TopicAliasError {
    /// The 5.0 reason code of the DISCONNECT that closes the connection:
    /// 0x94 Topic Alias invalid for an alias out of range, 0x82 Protocol
    /// Error for an unknown one.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Self::OutOfRange { .. } => ReasonCode::TopicAliasInvalid,
            Self::Unknown(_) => ReasonCode::ProtocolError,
        }
    }
}

impl IncomingTopicAliases {
    /// An empty table (no heap allocation).
    pub const fn new() -> Self {
        Self {
            by_alias: BTreeMap::new(),
        }
    }

    /// Resolves the Topic Alias `alias` of a received PUBLISH whose topic
    /// name is `topic`, with `our_max` the Topic Alias Maximum this side
    /// announced (0 if none: then every alias is out of range).
    ///
    /// A non-empty `topic` defines (or redefines) the alias and is left as
    /// it is; an empty one is replaced by the topic of the alias. On error
    /// nothing changes.
    pub fn resolve(
        &mut self,
        alias: u16,
        topic: &mut TopicName,
        our_max: u16,
    ) -> Result<(), TopicAliasError> {
        if alias == 0 || alias > our_max {
            return Err(TopicAliasError::OutOfRange {
                alias,
                max: our_max,
            });
        }
        if topic.is_empty() {
            match self.by_alias.get(&alias) {
                Some(t) => *topic = t.clone(),
                None => return Err(TopicAliasError::Unknown(alias)),
            }
        } else {
            self.by_alias.insert(alias, topic.clone());
        }
        Ok(())
    }

    /// The topic `alias` stands for, if the peer defined it.
    pub fn get(&self, alias: u16) -> Option<&TopicName> {
        self.by_alias.get(&alias)
    }

    /// How many aliases the peer defined.
    pub fn len(&self) -> usize {
        self.by_alias.len()
    }

    /// Whether the peer defined no alias.
    pub fn is_empty(&self) -> bool {
        self.by_alias.is_empty()
    }

    /// Forgets every alias, and frees their memory: the network connection
    /// ended [MQTT-3.3.2-7].
    pub fn clear(&mut self) {
        self.by_alias.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TopicName {
        TopicName::try_from(s).unwrap()
    }

    #[test]
    fn a_topic_defines_an_empty_topic_uses() {
        let mut a = IncomingTopicAliases::new();
        let mut topic = t("x/y");
        assert_eq!(a.resolve(1, &mut topic, 3), Ok(()));
        assert_eq!(topic, t("x/y"));
        assert_eq!(a.get(1), Some(&t("x/y")));
        let mut topic = TopicName::empty();
        assert_eq!(a.resolve(1, &mut topic, 3), Ok(()));
        assert_eq!(topic, t("x/y"));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn an_alias_can_be_redefined() {
        let mut a = IncomingTopicAliases::new();
        a.resolve(3, &mut t("x"), 3).unwrap();
        a.resolve(3, &mut t("z"), 3).unwrap();
        let mut topic = TopicName::empty();
        a.resolve(3, &mut topic, 3).unwrap();
        assert_eq!(topic, t("z"));
    }

    #[test]
    fn zero_and_above_our_maximum_are_out_of_range() {
        let mut a = IncomingTopicAliases::new();
        for (alias, max) in [(0, 5), (6, 5), (1, 0), (0, 0), (u16::MAX, u16::MAX - 1)] {
            let mut topic = t("x");
            let e = a.resolve(alias, &mut topic, max).unwrap_err();
            assert_eq!(e, TopicAliasError::OutOfRange { alias, max });
            assert_eq!(e.reason_code(), ReasonCode::TopicAliasInvalid);
        }
        assert!(a.is_empty());
        a.resolve(u16::MAX, &mut t("x"), u16::MAX).unwrap();
    }

    #[test]
    fn an_empty_topic_with_an_unknown_alias_is_refused() {
        let mut a = IncomingTopicAliases::new();
        a.resolve(1, &mut t("x"), 4).unwrap();
        let mut topic = TopicName::empty();
        let e = a.resolve(2, &mut topic, 4).unwrap_err();
        assert_eq!(e, TopicAliasError::Unknown(2));
        assert_eq!(e.reason_code(), ReasonCode::ProtocolError);
        assert!(topic.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut a = IncomingTopicAliases::new();
        a.resolve(1, &mut t("x"), 4).unwrap();
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a, IncomingTopicAliases::default());
        assert_eq!(
            a.resolve(1, &mut TopicName::empty(), 4),
            Err(TopicAliasError::Unknown(1))
        );
    }
}
