//! A bridge's `topic` lines and Mosquitto's rules for them
//! (`src/bridge_topic.c`, `lib/send_publish.c` of Mosquitto 2.0).
//!
//! `topic PATTERN [out|in|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]`:
//!
//! - the local side subscribes to `LOCAL_PREFIX + PATTERN` (out, both), the
//!   remote side to `REMOTE_PREFIX + PATTERN` (in, both);
//! - a message going out that matches `LOCAL_PREFIX + PATTERN` loses
//!   `LOCAL_PREFIX` and gains `REMOTE_PREFIX`; one coming in that matches
//!   `REMOTE_PREFIX + PATTERN` loses `REMOTE_PREFIX` and gains
//!   `LOCAL_PREFIX`; the first matching line with a prefix decides, a topic
//!   no such line matches is left as it is;
//! - `""` as the pattern means "the prefix alone is the topic" (both
//!   prefixes must then be given); `""` as a prefix means no prefix.

use mqtt_codec::{topic::matches, QoS, TopicFilter, TopicName};

/// Which way a bridge topic's messages flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BridgeDirection {
    /// `out` (the default): local messages go to the remote broker.
    #[default]
    Out,
    /// `in`: remote messages come to the local broker.
    In,
    /// `both`.
    Both,
}

impl BridgeDirection {
    /// Whether local messages go out.
    pub fn outgoing(self) -> bool {
        matches!(self, BridgeDirection::Out | BridgeDirection::Both)
    }

    /// Whether remote messages come in.
    pub fn incoming(self) -> bool {
        matches!(self, BridgeDirection::In | BridgeDirection::Both)
    }
}

/// Why a `topic` line is not a valid bridge topic (Mosquitto's checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeTopicError {
    /// A prefix contains wildcards or is otherwise not a topic name.
    #[error("invalid bridge topic {side} prefix '{prefix}': a prefix is a topic name without wildcards, such as 'site1/'")]
    InvalidPrefix {
        /// `local` or `remote`.
        side: &'static str,
        /// The prefix as written.
        prefix: String,
    },
    /// Prefix and pattern together are not a valid topic filter.
    #[error("invalid bridge topic {side} prefix and pattern combination '{combined}'")]
    InvalidCombination {
        /// `local` or `remote`.
        side: &'static str,
        /// The prefix followed by the pattern.
        combined: String,
    },
    /// `""` as the pattern without both prefixes.
    #[error(
        "invalid bridge remapping: an empty (\"\") topic needs both a local and a remote prefix"
    )]
    EmptyPatternWithoutPrefixes,
}

/// One `topic` line of a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTopic {
    /// The pattern as written; `None` for `""`.
    pub pattern: Option<String>,
    /// Which way messages flow.
    pub direction: BridgeDirection,
    /// The QoS of the subscriptions made for it (default 0).
    pub qos: QoS,
    /// Prefix of the topic on the local broker; `None` for none (or `""`).
    pub local_prefix: Option<String>,
    /// Prefix of the topic on the remote broker; `None` for none (or `""`).
    pub remote_prefix: Option<String>,
    local_filter: TopicFilter,
    remote_filter: TopicFilter,
}

impl BridgeTopic {
    /// A bridge topic, checked as Mosquitto's `bridge__add_topic` checks it.
    /// A pattern or prefix of `""` (the two quote characters) or empty means
    /// none.
    pub fn new(
        pattern: &str,
        direction: BridgeDirection,
        qos: QoS,
        local_prefix: Option<&str>,
        remote_prefix: Option<&str>,
    ) -> Result<Self, BridgeTopicError> {
        fn none_if_empty(s: Option<&str>) -> Option<String> {
            s.filter(|s| !s.is_empty() && *s != "\"\"")
                .map(str::to_owned)
        }
        let pattern = none_if_empty(Some(pattern));
        let local_prefix = none_if_empty(local_prefix);
        let remote_prefix = none_if_empty(remote_prefix);
        for (side, p) in [("local", &local_prefix), ("remote", &remote_prefix)] {
            if let Some(p) = p {
                if TopicName::try_from(p.as_str()).is_err() {
                    return Err(BridgeTopicError::InvalidPrefix {
                        side,
                        prefix: p.clone(),
                    });
                }
            }
        }
        if pattern.is_none() && (local_prefix.is_none() || remote_prefix.is_none()) {
            return Err(BridgeTopicError::EmptyPatternWithoutPrefixes);
        }
        let filter = |side: &'static str, prefix: &Option<String>| {
            let combined = format!(
                "{}{}",
                prefix.as_deref().unwrap_or(""),
                pattern.as_deref().unwrap_or("")
            );
            TopicFilter::try_from(combined.as_str())
                .map_err(|_| BridgeTopicError::InvalidCombination { side, combined })
        };
        let local_filter = filter("local", &local_prefix)?;
        let remote_filter = filter("remote", &remote_prefix)?;
        Ok(Self {
            pattern,
            direction,
            qos,
            local_prefix,
            remote_prefix,
            local_filter,
            remote_filter,
        })
    }

    /// The filter on the local broker: local prefix + pattern.
    pub fn local_filter(&self) -> &TopicFilter {
        &self.local_filter
    }

    /// The filter on the remote broker: remote prefix + pattern.
    pub fn remote_filter(&self) -> &TopicFilter {
        &self.remote_filter
    }

    fn remaps(&self) -> bool {
        self.local_prefix.is_some() || self.remote_prefix.is_some()
    }
}

/// Swaps `from` for `to` at the start of `topic`, as Mosquitto does: the
/// prefix is removed only when the topic starts with it.
fn swap_prefix(topic: &str, from: Option<&str>, to: Option<&str>) -> String {
    let rest = match from {
        Some(p) => topic.strip_prefix(p).unwrap_or(topic),
        None => topic,
    };
    format!("{}{}", to.unwrap_or(""), rest)
}

/// The remote topic of a local message going out through `topics`
/// (Mosquitto's `send__publish` remapping). `None` when the result is not a
/// valid topic name (a prefix swap left it empty).
pub fn map_outgoing(topics: &[BridgeTopic], topic: &str) -> Option<TopicName> {
    let mapped = topics
        .iter()
        .filter(|t| t.direction.outgoing() && t.remaps())
        .find(|t| matches(t.local_filter.as_str(), topic))
        .map(|t| swap_prefix(topic, t.local_prefix.as_deref(), t.remote_prefix.as_deref()));
    match mapped {
        Some(m) => TopicName::try_from(m).ok(),
        None => TopicName::try_from(topic).ok(),
    }
}

/// The local topic of a remote message coming in through `topics`
/// (Mosquitto's `bridge__remap_topic_in`).
pub fn map_incoming(topics: &[BridgeTopic], topic: &str) -> Option<TopicName> {
    let mapped = topics
        .iter()
        .filter(|t| t.direction.incoming() && t.remaps())
        .find(|t| matches(t.remote_filter.as_str(), topic))
        .map(|t| swap_prefix(topic, t.remote_prefix.as_deref(), t.local_prefix.as_deref()));
    match mapped {
        Some(m) => TopicName::try_from(m).ok(),
        None => TopicName::try_from(topic).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BridgeDirection::*;

    fn t(p: &str, d: BridgeDirection, l: Option<&str>, r: Option<&str>) -> BridgeTopic {
        BridgeTopic::new(p, d, QoS::AtMostOnce, l, r).unwrap()
    }

    #[test]
    fn filters_are_prefix_plus_pattern() {
        let b = t("sensors/#", Both, Some("local/"), Some("remote/"));
        assert_eq!(b.local_filter().as_str(), "local/sensors/#");
        assert_eq!(b.remote_filter().as_str(), "remote/sensors/#");
        let plain = t("#", Out, None, None);
        assert_eq!(plain.local_filter().as_str(), "#");
        assert_eq!(plain.remote_filter().as_str(), "#");
    }

    #[test]
    fn empty_pattern_means_the_prefix_is_the_topic() {
        // Mosquitto's documented example: topic "" out 0 local/topic remote/topic
        let b = t("\"\"", Out, Some("local/topic"), Some("remote/topic"));
        assert_eq!(b.pattern, None);
        assert_eq!(b.local_filter().as_str(), "local/topic");
        assert_eq!(
            map_outgoing(std::slice::from_ref(&b), "local/topic")
                .unwrap()
                .as_str(),
            "remote/topic"
        );
        // Without both prefixes, "" is refused.
        assert_eq!(
            BridgeTopic::new("\"\"", Out, QoS::AtMostOnce, Some("a/"), None),
            Err(BridgeTopicError::EmptyPatternWithoutPrefixes)
        );
        assert_eq!(
            BridgeTopic::new("\"\"", Out, QoS::AtMostOnce, None, None),
            Err(BridgeTopicError::EmptyPatternWithoutPrefixes)
        );
    }

    #[test]
    fn quoted_empty_prefix_is_no_prefix() {
        let b = t("a/#", Both, Some("\"\""), Some("site/"));
        assert_eq!(b.local_prefix, None);
        assert_eq!(b.remote_prefix.as_deref(), Some("site/"));
        assert_eq!(
            map_outgoing(std::slice::from_ref(&b), "a/b")
                .unwrap()
                .as_str(),
            "site/a/b"
        );
        assert_eq!(map_incoming(&[b], "site/a/b").unwrap().as_str(), "a/b");
    }

    #[test]
    fn prefixes_with_wildcards_are_refused() {
        for (l, r, side) in [(Some("a/+/"), None, "local"), (None, Some("#/"), "remote")] {
            match BridgeTopic::new("x", Out, QoS::AtMostOnce, l, r) {
                Err(BridgeTopicError::InvalidPrefix { side: s, .. }) => assert_eq!(s, side),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn invalid_combination_is_refused() {
        // "a" + "#" = "a#": '#' not alone in its level.
        assert!(matches!(
            BridgeTopic::new("#", Out, QoS::AtMostOnce, Some("a"), None),
            Err(BridgeTopicError::InvalidCombination { side: "local", .. })
        ));
    }

    #[test]
    fn outgoing_swaps_local_prefix_for_remote_prefix() {
        let topics = [t("sensors/#", Out, Some("home/"), Some("fleet/pi1/"))];
        assert_eq!(
            map_outgoing(&topics, "home/sensors/temp").unwrap().as_str(),
            "fleet/pi1/sensors/temp"
        );
        // Not matching: unchanged.
        assert_eq!(
            map_outgoing(&topics, "other/x").unwrap().as_str(),
            "other/x"
        );
        // An `out` line does not map incoming messages.
        assert_eq!(
            map_incoming(&topics, "fleet/pi1/sensors/temp")
                .unwrap()
                .as_str(),
            "fleet/pi1/sensors/temp"
        );
    }

    #[test]
    fn incoming_swaps_remote_prefix_for_local_prefix() {
        let topics = [t("cmd/#", In, Some("from-central/"), Some("central/"))];
        assert_eq!(
            map_incoming(&topics, "central/cmd/reboot")
                .unwrap()
                .as_str(),
            "from-central/cmd/reboot"
        );
        assert_eq!(
            map_outgoing(&topics, "from-central/cmd/reboot")
                .unwrap()
                .as_str(),
            "from-central/cmd/reboot"
        );
    }

    #[test]
    fn first_matching_line_with_a_prefix_wins_and_lines_without_are_skipped() {
        let topics = [
            t("a/#", Out, None, None),
            t("a/b", Out, Some("x/"), Some("y/")),
            t("a/#", Out, None, Some("z/")),
        ];
        // "a/b" is not under "x/", so the second line's filter x/a/b doesn't match it;
        // the third line matches.
        assert_eq!(map_outgoing(&topics, "a/b").unwrap().as_str(), "z/a/b");
        assert_eq!(map_outgoing(&topics, "x/a/b").unwrap().as_str(), "y/a/b");
    }

    #[test]
    fn only_prefix_remote_means_local_unprefixed() {
        let topics = [t("#", Both, None, Some("site1/"))];
        assert_eq!(map_outgoing(&topics, "t").unwrap().as_str(), "site1/t");
        assert_eq!(map_incoming(&topics, "site1/t").unwrap().as_str(), "t");
    }

    #[test]
    fn directions() {
        assert!(Out.outgoing() && !Out.incoming());
        assert!(!In.outgoing() && In.incoming());
        assert!(Both.outgoing() && Both.incoming());
    }
}
