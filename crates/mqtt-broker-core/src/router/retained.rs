//! Retained messages in a tree of topic levels, walked by a filter on SUBSCRIBE.

use super::FastMap;
use crate::message::Message;
use std::sync::Arc;

#[derive(Debug, Default)]
struct Node {
    children: FastMap<Box<str>, Node>,
    msg: Option<Arc<Message>>,
}

/// The retained message of every topic that has one.
#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    root: Node,
    len: usize,
    /// Payload bytes of the stored messages.
    payload_bytes: u64,
}

impl RetainedStore {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Payload bytes of the stored messages.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Stores `msg` as the retained message of its topic, replacing any
    /// previous one [MQTT-3.3.1-5].
    pub fn set(&mut self, msg: Arc<Message>) {
        let mut node = &mut self.root;
        for level in msg.topic.as_str().split('/') {
            if !node.children.contains_key(level) {
                node.children.insert(level.into(), Node::default());
            }
            node = node.children.get_mut(level).expect("inserted above");
        }
        self.payload_bytes += msg.payload.len() as u64;
        match node.msg.replace(msg) {
            None => self.len += 1,
            Some(old) => {
                self.payload_bytes = self.payload_bytes.saturating_sub(old.payload.len() as u64);
            }
        }
    }

    /// Deletes the retained message of `topic` [MQTT-3.3.1-6]; whether there was one.
    pub fn remove(&mut self, topic: &str) -> bool {
        match remove_in(&mut self.root, &mut topic.split('/')) {
            Some(old) => {
                self.len -= 1;
                self.payload_bytes = self.payload_bytes.saturating_sub(old.payload.len() as u64);
                true
            }
            None => false,
        }
    }

    /// Every retained message whose topic matches `filter` (without `$share`).
    pub fn collect(&self, filter: &str, out: &mut Vec<Arc<Message>>) {
        collect_in(&self.root, Some(filter), true, out);
    }
}

fn remove_in<'a>(
    node: &mut Node,
    levels: &mut impl Iterator<Item = &'a str>,
) -> Option<Arc<Message>> {
    match levels.next() {
        None => node.msg.take(),
        Some(level) => {
            let child = node.children.get_mut(level)?;
            let removed = remove_in(child, levels);
            if child.msg.is_none() && child.children.is_empty() {
                node.children.remove(level);
            }
            removed
        }
    }
}

fn all_below(node: &Node, skip_dollar: bool, out: &mut Vec<Arc<Message>>) {
    for (name, child) in &node.children {
        if skip_dollar && name.starts_with('$') {
            continue;
        }
        if let Some(m) = &child.msg {
            out.push(m.clone());
        }
        all_below(child, false, out);
    }
}

fn collect_in(node: &Node, rest: Option<&str>, root: bool, out: &mut Vec<Arc<Message>>) {
    let Some(rest) = rest else {
        if let Some(m) = &node.msg {
            out.push(m.clone());
        }
        return;
    };
    let (level, tail) = match rest.split_once('/') {
        Some((l, t)) => (l, Some(t)),
        None => (rest, None),
    };
    match level {
        "#" => {
            // The parent level too [MQTT-4.7.1-2], but never `$` topics from
            // a leading wildcard [MQTT-4.7.2-1].
            if !root {
                if let Some(m) = &node.msg {
                    out.push(m.clone());
                }
            }
            all_below(node, root, out);
        }
        "+" => {
            for (name, child) in &node.children {
                if root && name.starts_with('$') {
                    continue;
                }
                collect_in(child, tail, false, out);
            }
        }
        _ => {
            if let Some(child) = node.children.get(level) {
                collect_in(child, tail, false, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::{PublishProperties, QoS, TopicFilter, TopicName};

    fn msg(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::try_from(topic).unwrap(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: PublishProperties::default(),
            expires_at: None,
            charge: Default::default(),
        })
    }

    #[test]
    fn filter_walk_agrees_with_the_codec_matcher() {
        let topics = ["a", "a/b", "a/b/c", "b/b", "$SYS/x", "a/", "/a"];
        let mut store = RetainedStore::default();
        for t in topics {
            store.set(msg(t));
        }
        for f in [
            "#", "+", "a/#", "a/+", "+/b", "$SYS/#", "+/+", "a/b/#", "/+", "a",
        ] {
            let mut out = Vec::new();
            store.collect(f, &mut out);
            let mut got: Vec<String> = out.iter().map(|m| m.topic.to_string()).collect();
            got.sort();
            let filter = TopicFilter::new(f).unwrap();
            let mut want: Vec<String> = topics
                .iter()
                .filter(|t| filter.matches(t))
                .map(|t| t.to_string())
                .collect();
            want.sort();
            assert_eq!(got, want, "filter {f}");
        }
        assert_eq!(store.len(), topics.len());
        assert!(store.remove("a/b"));
        assert_eq!(store.len(), topics.len() - 1);
    }
}
