//! The subscription tree: one node per topic level, walked once per message.

use crate::session::SessionKey;
use mqtt_codec::{QoS, SubscriptionOptions, TopicFilter};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fast hasher for topic levels (FxHash's multiply-rotate). Topic
/// levels are short and the tree is not keyed by anything a client can use to
/// degrade it beyond its own subscriptions.
#[derive(Default, Clone, Copy)]
pub(crate) struct LevelHasher(u64);

impl Hasher for LevelHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<LevelHasher>>;

/// One subscription of one session, as stored in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubEntry {
    pub session: SessionKey,
    pub options: SubscriptionOptions,
    /// Subscription Identifier, 0 for none.
    pub id: u32,
}

/// A subscription that matched a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Match {
    pub session: SessionKey,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub id: u32,
    /// Chosen from a shared subscription group: delivered on its own, not
    /// merged with the session's other matches.
    pub shared: bool,
}

impl Match {
    fn of(e: &SubEntry, shared: bool) -> Self {
        Self {
            session: e.session,
            qos: e.options.qos,
            no_local: e.options.no_local,
            retain_as_published: e.options.retain_as_published,
            id: e.id,
            shared,
        }
    }
}

#[derive(Debug)]
struct SharedGroup {
    name: Box<str>,
    members: Vec<SubEntry>,
    next: usize,
}

#[derive(Debug, Default)]
struct Node {
    children: FastMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    subs: Vec<SubEntry>,
    shared: Vec<SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.subs.is_empty()
            && self.shared.is_empty()
    }

    fn child_mut(&mut self, level: &str) -> &mut Node {
        match level {
            "+" => self.plus.get_or_insert_with(Default::default),
            "#" => self.hash.get_or_insert_with(Default::default),
            _ => {
                if !self.children.contains_key(level) {
                    self.children.insert(level.into(), Node::default());
                }
                self.children.get_mut(level).expect("inserted above")
            }
        }
    }
}

/// Subscriptions of all sessions, by filter level.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionTree {
    root: Node,
    len: usize,
    /// How many of `len` are members of shared subscription groups.
    shared_len: usize,
}

impl SubscriptionTree {
    /// Number of shared subscriptions (`$share/...`).
    pub fn shared_len(&self) -> usize {
        self.shared_len
    }

    /// Number of subscriptions (shared group members included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds or replaces the subscription of `entry.session` to `filter`.
    /// Returns whether it is new (for Retain Handling 1).
    pub fn insert(&mut self, filter: &TopicFilter, entry: SubEntry) -> bool {
        let mut node = &mut self.root;
        for level in filter.filter().split('/') {
            node = node.child_mut(level);
        }
        let list = match filter.share_group() {
            Some(group) => {
                let i = match node.shared.iter().position(|g| &*g.name == group) {
                    Some(i) => i,
                    None => {
                        node.shared.push(SharedGroup {
                            name: group.into(),
                            members: Vec::new(),
                            next: 0,
                        });
                        node.shared.len() - 1
                    }
                };
                &mut node.shared[i].members
            }
            None => &mut node.subs,
        };
        match list.iter_mut().find(|e| e.session == entry.session) {
            Some(e) => {
                *e = entry;
                false
            }
            None => {
                list.push(entry);
                self.len += 1;
                if filter.share_group().is_some() {
                    self.shared_len += 1;
                }
                true
            }
        }
    }

    /// Removes the subscription of `session` to `filter`; whether it existed.
    pub fn remove(&mut self, filter: &TopicFilter, session: SessionKey) -> bool {
        let mut levels = filter.filter().split('/');
        let removed = remove_in(&mut self.root, &mut levels, filter.share_group(), session);
        if removed {
            self.len -= 1;
            if filter.share_group().is_some() {
                self.shared_len -= 1;
            }
        }
        removed
    }

    /// Appends every subscription matching `topic` to `out`: all ordinary
    /// ones, and one member per shared group, chosen round-robin among the
    /// members for which `online` is true (any member if none is).
    pub fn collect(
        &mut self,
        topic: &str,
        out: &mut Vec<Match>,
        online: &dyn Fn(SessionKey) -> bool,
    ) {
        let dollar = topic.starts_with('$');
        walk(&mut self.root, Some(topic), true, dollar, out, online);
    }
}

fn remove_in<'a>(
    node: &mut Node,
    levels: &mut impl Iterator<Item = &'a str>,
    group: Option<&str>,
    session: SessionKey,
) -> bool {
    match levels.next() {
        None => match group {
            None => {
                let before = node.subs.len();
                node.subs.retain(|e| e.session != session);
                before != node.subs.len()
            }
            Some(group) => {
                let Some(gi) = node.shared.iter().position(|g| &*g.name == group) else {
                    return false;
                };
                let g = &mut node.shared[gi];
                let before = g.members.len();
                g.members.retain(|e| e.session != session);
                let removed = before != g.members.len();
                if g.members.is_empty() {
                    node.shared.swap_remove(gi);
                } else if g.next >= g.members.len() {
                    g.next = 0;
                }
                removed
            }
        },
        Some(level) => {
            let removed;
            match level {
                "+" | "#" => {
                    let slot = if level == "+" {
                        &mut node.plus
                    } else {
                        &mut node.hash
                    };
                    let Some(child) = slot.as_mut() else {
                        return false;
                    };
                    removed = remove_in(child, levels, group, session);
                    if child.is_empty() {
                        *slot = None;
                    }
                }
                _ => {
                    let Some(child) = node.children.get_mut(level) else {
                        return false;
                    };
                    removed = remove_in(child, levels, group, session);
                    if child.is_empty() {
                        node.children.remove(level);
                    }
                }
            }
            removed
        }
    }
}

fn emit(node: &mut Node, out: &mut Vec<Match>, online: &dyn Fn(SessionKey) -> bool) {
    out.extend(node.subs.iter().map(|e| Match::of(e, false)));
    for g in &mut node.shared {
        let n = g.members.len();
        if n == 0 {
            continue;
        }
        let start = g.next % n;
        // Round-robin among the group's online sessions (section 4.8.2); an
        // offline persistent member gets it only if nobody is online.
        let pick = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| online(g.members[i].session))
            .unwrap_or(start);
        out.push(Match::of(&g.members[pick], true));
        g.next = (pick + 1) % n;
    }
}

/// `rest` is the part of the topic below `node`; `None` once every level
/// has been consumed.
fn walk(
    node: &mut Node,
    rest: Option<&str>,
    root: bool,
    dollar: bool,
    out: &mut Vec<Match>,
    online: &dyn Fn(SessionKey) -> bool,
) {
    match rest {
        None => {
            emit(node, out, online);
            // "sport/#" also matches "sport" [MQTT-4.7.1-2].
            if let Some(h) = node.hash.as_deref_mut() {
                emit(h, out, online);
            }
        }
        Some(rest) => {
            let (level, tail) = match rest.split_once('/') {
                Some((l, t)) => (l, Some(t)),
                None => (rest, None),
            };
            // [MQTT-4.7.2-1] a topic starting with '$' is not matched by a
            // filter starting with a wildcard.
            if !(root && dollar) {
                if let Some(h) = node.hash.as_deref_mut() {
                    emit(h, out, online);
                }
                if let Some(p) = node.plus.as_deref_mut() {
                    walk(p, tail, false, dollar, out, online);
                }
            }
            if let Some(c) = node.children.get_mut(level) {
                walk(c, tail, false, dollar, out, online);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slab::Key;

    fn key(n: u32) -> SessionKey {
        SessionKey::from_parts(n, 0)
    }

    fn entry(session: u32) -> SubEntry {
        SubEntry {
            session: key(session),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            id: 0,
        }
    }

    fn matching(tree: &mut SubscriptionTree, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        tree.collect(topic, &mut out, &|_| true);
        let mut v: Vec<u32> = out.iter().map(|m| m.session.slot()).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn tree_agrees_with_the_codec_matcher() {
        let filters = [
            "#", "+", "a", "a/b", "a/+", "a/#", "+/b", "+/+", "a/b/c", "a/+/c", "$SYS/#", "+/#",
            "a//b", "a/", "/#",
        ];
        let topics = [
            "a", "a/b", "a/c", "a/b/c", "b", "$SYS/x", "a//b", "a/", "/x", "/",
        ];
        let mut tree = SubscriptionTree::default();
        for (i, f) in filters.iter().enumerate() {
            tree.insert(&TopicFilter::new(*f).unwrap(), entry(i as u32));
        }
        for t in topics {
            let expected: Vec<u32> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| TopicFilter::new(**f).unwrap().matches(t))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(matching(&mut tree, t), expected, "topic {t}");
        }
    }

    #[test]
    fn removing_prunes_and_counts() {
        let mut tree = SubscriptionTree::default();
        let f = TopicFilter::new("a/+/c").unwrap();
        assert!(tree.insert(&f, entry(1)));
        assert!(!tree.insert(&f, entry(1)));
        assert_eq!(tree.len(), 1);
        assert!(tree.remove(&f, key(1)));
        assert!(!tree.remove(&f, key(1)));
        assert_eq!(tree.len(), 0);
        assert!(tree.root.is_empty());
    }

    #[test]
    fn shared_group_delivers_round_robin_to_online_members() {
        let mut tree = SubscriptionTree::default();
        let f = TopicFilter::new("$share/g/t").unwrap();
        for s in 0..3 {
            tree.insert(&f, entry(s));
        }
        let picks: Vec<u32> = (0..6).map(|_| matching(&mut tree, "t")[0]).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let mut out = Vec::new();
        tree.collect("t", &mut out, &|s| s == key(2));
        assert_eq!(out[0].session, key(2));
    }
}
