//! [`OutgoingTopicAliases`]: the 5.0 Topic Aliases this side assigned.

use alloc::collections::BTreeMap;

use crate::packet::Publish;
use crate::topic::TopicName;

/// The Topic Aliases a sender of 5.0 PUBLISH packets has told its peer
/// about, for one network connection.
///
/// The first PUBLISH to a topic carries the topic and a new alias; later
/// ones carry the alias and an empty topic name, which the peer resolves.
/// Aliases are numbered 1, 2, … in the order topics are first sent (never
/// 0 [MQTT-3.3.2-8]), never above the peer's Topic Alias Maximum: the one
/// of the server's CONNACK for a client [MQTT-3.3.2-9], of the client's
/// CONNECT for a server [MQTT-3.3.2-11]. They are never reassigned: once
/// all are taken, other topics are sent in full.
///
/// Choosing and recording are separate steps, because the peer learns an
/// alias only if the PUBLISH that carries it is actually sent:
/// [`OutgoingTopicAliases::lookup_or_propose`] says what to put in the
/// packet, and [`OutgoingTopicAliases::commit`] records a new alias once the
/// packet was encoded. A proposal must be committed (or dropped, when the
/// encoding failed) before the next one is asked for.
///
/// Aliases live as long as the network connection [MQTT-3.3.2-7]:
/// [`OutgoingTopicAliases::clear`] when it ends. The peer's maximum is not
/// kept here but passed to each call, so the table is one empty `BTreeMap`
/// (no heap allocation) until the first alias is committed.
///
/// ```
/// use mqtt_codec::{AliasChoice, OutgoingTopicAliases, Publish, TopicName};
///
/// let mut aliases = OutgoingTopicAliases::new();
/// let peer_max = 10; // the peer's Topic Alias Maximum
/// let topic = TopicName::try_from("a/b").unwrap();
///
/// let mut p = Publish::new(topic.clone(), "1");
/// let choice = aliases.lookup_or_propose(&p.topic, peer_max);
/// assert_eq!(choice, AliasChoice::New(1));
/// choice.apply_to(&mut p); // topic "a/b" and alias 1
/// // ... encode `p`; once that succeeded:
/// aliases.commit(p.topic.clone(), 1);
///
/// let mut q = Publish::new(topic.clone(), "2");
/// let choice = aliases.lookup_or_propose(&q.topic, peer_max);
/// assert_eq!(choice, AliasChoice::Existing(1));
/// choice.apply_to(&mut q); // empty topic and alias 1
/// assert!(q.topic.is_empty() && q.properties.topic_alias == Some(1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingTopicAliases {
    /// Topic to alias; the aliases are exactly 1..=len.
    by_topic: BTreeMap<TopicName, u16>,
}

/// What to send for a topic: the answer of
/// [`OutgoingTopicAliases::lookup_or_propose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AliasChoice {
    /// The peer knows the topic as this alias: send an empty topic name and
    /// the alias. Nothing to commit.
    Existing(u16),
    /// A new alias for the topic: send the topic name and the alias, then
    /// [`OutgoingTopicAliases::commit`] it once the packet is encoded.
    New(u16),
    /// No alias: the topic is sent in full (no alias left, or the peer
    /// accepts none).
    None,
}

impl AliasChoice {
    /// Writes the choice into `publish`: for [`AliasChoice::Existing`] an
    /// empty topic name and the alias, for [`AliasChoice::New`] the alias
    /// (the topic stays). [`AliasChoice::None`] leaves `publish` alone
    /// (it should carry no alias already).
    pub fn apply_to(self, publish: &mut Publish) {
        match self {
            Self::Existing(alias) => {
                publish.topic = TopicName::empty();
                publish.properties.topic_alias = Some(alias);
            }
            Self::New(alias) => publish.properties.topic_alias = Some(alias),
            Self::None => {}
        }
    }

    /// The alias to put in the PUBLISH, if any.
    pub fn alias(self) -> Option<u16> {
        match self {
            Self::Existing(alias) | Self::New(alias) => Some(alias),
            Self::None => None,
        }
    }
}

impl OutgoingTopicAliases {
    /// An empty table (no heap allocation).
    pub const fn new() -> Self {
        Self {
            by_topic: BTreeMap::new(),
        }
    }

    /// What to send for `topic` to a peer whose Topic Alias Maximum is
    /// `peer_max` (0: the peer accepts no alias).
    ///
    /// An empty `topic` (already aliased by the caller) gets
    /// [`AliasChoice::None`]. A [`AliasChoice::New`] is only a proposal:
    /// the table changes only on [`OutgoingTopicAliases::commit`].
    pub fn lookup_or_propose(&self, topic: &TopicName, peer_max: u16) -> AliasChoice {
        if peer_max == 0 || topic.is_empty() {
            return AliasChoice::None;
        }
        if let Some(&alias) = self.by_topic.get(topic) {
            // Below the maximum: it cannot change within a connection.
            return AliasChoice::Existing(alias);
        }
        match u16::try_from(self.by_topic.len()) {
            Ok(used) if used < peer_max => AliasChoice::New(used + 1),
            _ => AliasChoice::None,
        }
    }

    /// Records that the peer now knows `topic` as `alias`: the
    /// [`AliasChoice::New`] that [`OutgoingTopicAliases::lookup_or_propose`]
    /// returned for `topic`, once the PUBLISH carrying both was encoded.
    ///
    /// Call it only with the latest proposal, before asking for another one
    /// (checked in debug builds: `alias` must be the next free alias and
    /// `topic` must have none).
    pub fn commit(&mut self, topic: TopicName, alias: u16) {
        debug_assert_eq!(
            usize::from(alias),
            self.by_topic.len() + 1,
            "not the latest proposal"
        );
        debug_assert!(!topic.is_empty(), "the empty topic has no alias");
        let previous = self.by_topic.insert(topic, alias);
        debug_assert!(previous.is_none(), "the topic already had an alias");
    }

    /// The alias of `topic`, if one was committed.
    pub fn get(&self, topic: &TopicName) -> Option<u16> {
        self.by_topic.get(topic).copied()
    }

    /// How many aliases are assigned (they are 1..=len).
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// Whether no alias is assigned.
    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Forgets every alias, and frees their memory: the network connection
    /// ended [MQTT-3.3.2-7].
    pub fn clear(&mut self) {
        self.by_topic.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TopicName {
        TopicName::try_from(s).unwrap()
    }

    #[test]
    fn first_use_proposes_later_uses_reuse() {
        let mut a = OutgoingTopicAliases::new();
        assert!(a.is_empty());
        assert_eq!(a.lookup_or_propose(&t("x"), 2), AliasChoice::New(1));
        // Nothing recorded until the commit.
        assert_eq!(a.lookup_or_propose(&t("x"), 2), AliasChoice::New(1));
        assert_eq!(a.get(&t("x")), None);
        a.commit(t("x"), 1);
        assert_eq!(a.lookup_or_propose(&t("x"), 2), AliasChoice::Existing(1));
        assert_eq!(a.lookup_or_propose(&t("y"), 2), AliasChoice::New(2));
        a.commit(t("y"), 2);
        assert_eq!(a.get(&t("y")), Some(2));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn never_above_the_peer_maximum() {
        let mut a = OutgoingTopicAliases::new();
        assert_eq!(a.lookup_or_propose(&t("x"), 0), AliasChoice::None);
        assert_eq!(a.lookup_or_propose(&t("x"), 1), AliasChoice::New(1));
        a.commit(t("x"), 1);
        // Full: other topics go in full, the aliased one keeps its alias.
        assert_eq!(a.lookup_or_propose(&t("y"), 1), AliasChoice::None);
        assert_eq!(a.lookup_or_propose(&t("x"), 1), AliasChoice::Existing(1));
    }

    #[test]
    fn a_dropped_proposal_is_offered_again() {
        let mut a = OutgoingTopicAliases::new();
        // The PUBLISH for "x" failed to encode: no commit.
        assert_eq!(a.lookup_or_propose(&t("x"), 5), AliasChoice::New(1));
        assert_eq!(a.lookup_or_propose(&t("y"), 5), AliasChoice::New(1));
        a.commit(t("y"), 1);
        assert_eq!(a.lookup_or_propose(&t("x"), 5), AliasChoice::New(2));
    }

    #[test]
    fn the_empty_topic_gets_no_alias() {
        let a = OutgoingTopicAliases::new();
        assert_eq!(
            a.lookup_or_propose(&TopicName::empty(), 5),
            AliasChoice::None
        );
    }

    #[test]
    fn clear_forgets_everything() {
        let mut a = OutgoingTopicAliases::new();
        a.commit(t("x"), 1);
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.lookup_or_propose(&t("x"), 5), AliasChoice::New(1));
        assert_eq!(a, OutgoingTopicAliases::default());
    }

    #[test]
    fn apply_to_writes_the_choice() {
        let mut p = Publish::new(t("x"), "");
        AliasChoice::None.apply_to(&mut p);
        assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("x", None));
        AliasChoice::New(3).apply_to(&mut p);
        assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("x", Some(3)));
        AliasChoice::Existing(3).apply_to(&mut p);
        assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("", Some(3)));
        assert_eq!(AliasChoice::Existing(3).alias(), Some(3));
        assert_eq!(AliasChoice::New(4).alias(), Some(4));
        assert_eq!(AliasChoice::None.alias(), None);
    }

    // Exhaustive over the 65,535 identifiers: left out under Miri (.ci/miri
    // checks the encoders' `unsafe`; nothing here is unsafe), where it
    // would take many minutes.
    #[test]
    #[cfg(not(miri))]
    fn every_alias_up_to_65535() {
        let mut a = OutgoingTopicAliases::new();
        for n in 1..=u16::MAX {
            let topic = t(&alloc::format!("t/{n}"));
            assert_eq!(a.lookup_or_propose(&topic, u16::MAX), AliasChoice::New(n));
            a.commit(topic, n);
        }
        assert_eq!(
            a.lookup_or_propose(&t("other"), u16::MAX),
            AliasChoice::None
        );
        assert_eq!(
            a.lookup_or_propose(&t("t/65535"), u16::MAX),
            AliasChoice::Existing(u16::MAX)
        );
    }
}
