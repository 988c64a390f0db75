//! The router: the subscription tree (with shared subscriptions), the
//! retained messages, and the rule that turns the subscriptions matching a
//! topic into one delivery per session.

mod retained;
mod topic_tree;

pub(crate) use retained::RetainedStore;
pub(crate) use topic_tree::{FastMap, Match, SubEntry, SubscriptionTree};

use crate::broker_config::BrokerConfig;
use crate::session::SessionKey;
use mqtt_codec::{QoS, TopicFilter, TopicName};

/// One session a message goes to, with what its matching subscriptions decided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub session: SessionKey,
    /// The highest QoS of the session's matching subscriptions.
    pub qos: QoS,
    pub retain_as_published: bool,
}

/// Subscriptions and retained messages of all sessions.
#[derive(Debug, Default)]
pub(crate) struct Router {
    pub tree: SubscriptionTree,
    pub retained: RetainedStore,
    /// Scratch space of [`Router::for_each_target`], kept between calls.
    matches: Vec<Match>,
    sub_ids: Vec<u32>,
}

impl Router {
    /// Collects the subscriptions matching `topic`, for
    /// [`Router::for_each_target`]. `online` says which sessions are
    /// connected (a shared group prefers those).
    pub fn collect(&mut self, topic: &str, online: &dyn Fn(SessionKey) -> bool) {
        self.matches.clear();
        self.tree.collect(topic, &mut self.matches, online);
        if self.matches.len() > 1 {
            self.matches.sort_unstable_by_key(|m| (m.shared, m.session));
        }
    }

    /// Calls `f` once per session the collected message goes to, with its
    /// Subscription Identifiers [MQTT-3.3.4-3]: one copy per session at the
    /// highest QoS of its matching subscriptions [MQTT-3.3.5-1]; each
    /// shared subscription delivers its own copy; never to the publisher's
    /// own session on a No Local subscription [MQTT-3.8.3-3].
    pub fn for_each_target(
        &mut self,
        publisher: Option<SessionKey>,
        mut f: impl FnMut(Target, &[u32]),
    ) {
        let matches = &self.matches;
        let mut i = 0;
        while i < matches.len() {
            let first = matches[i];
            let mut j = i + 1;
            if !first.shared {
                while j < matches.len() && !matches[j].shared && matches[j].session == first.session
                {
                    j += 1;
                }
            }
            self.sub_ids.clear();
            let mut best: Option<QoS> = None;
            let mut retain_as_published = false;
            for m in &matches[i..j] {
                if m.no_local && Some(m.session) == publisher {
                    continue;
                }
                best = best.max(Some(m.qos));
                retain_as_published |= m.retain_as_published;
                if m.id != 0 {
                    self.sub_ids.push(m.id);
                }
            }
            i = j;
            if let Some(qos) = best {
                let target = Target {
                    session: first.session,
                    qos,
                    retain_as_published,
                };
                f(target, &self.sub_ids);
            }
        }
    }
}

/// The most `/` separators a topic name or filter may have (Mosquitto's
/// limit: 201 levels). The specification sets none; the limit keeps every
/// walk of the subscription tree and the retained store shallow, whatever a
/// client sends.
pub(crate) const MAX_TOPIC_SEPARATORS: usize = 200;

/// Whether `topic` (a name or a filter) has more levels than the broker
/// keeps ([`MAX_TOPIC_SEPARATORS`]). Costs nothing for topics shorter than
/// the limit.
pub(crate) fn too_deep(topic: &str) -> bool {
    topic.len() > MAX_TOPIC_SEPARATORS
        && topic.bytes().filter(|&b| b == b'/').count() > MAX_TOPIC_SEPARATORS
}

/// The QoS a message published at `msg` goes out with on a subscription of
/// `sub`: the minimum of the two [MQTT-3.8.4-8] / [MQTT-3.3.5-1], or the
/// subscription's with `upgrade_outgoing_qos` (Mosquitto's non-conforming
/// option).
pub(crate) fn outgoing_qos(config: &BrokerConfig, msg: QoS, sub: QoS) -> QoS {
    if config.upgrade_outgoing_qos {
        sub
    } else {
        msg.min(sub)
    }
}

/// `topic` under a listener's `mount_point`; `None` when the two are
/// longer than a topic may be.
pub(crate) fn mounted_topic(mount: &str, topic: &TopicName) -> Option<TopicName> {
    TopicName::try_from(format!("{mount}{topic}")).ok()
}

/// `topic` with a listener's `mount_point` taken off, for its clients;
/// `None` when it is not under it.
pub(crate) fn unmounted_topic(mount: &str, topic: &TopicName) -> Option<TopicName> {
    topic
        .as_str()
        .strip_prefix(mount)
        .filter(|rest| !rest.is_empty())
        .and_then(|rest| TopicName::try_from(rest).ok())
}

/// `filter` under a listener's `mount_point`; a shared subscription keeps
/// its group and mounts the filter it shares (`$share/g/{mount}{filter}`).
pub(crate) fn mounted_filter(mount: &str, filter: &TopicFilter) -> Option<TopicFilter> {
    let text = match filter.share_group() {
        Some(group) => format!("$share/{group}/{mount}{}", filter.filter()),
        None => format!("{mount}{filter}"),
    };
    TopicFilter::new(text).ok()
}
