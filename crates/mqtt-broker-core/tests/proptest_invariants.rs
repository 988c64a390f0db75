//! Random sequences of connects, subscribes, publishes, acknowledgements,
//! disconnects and clock steps, checked against the invariants of issue 4:
//! every accepted QoS 1/2 message for a matching persistent session is
//! delivered (QoS 1 at least once, QoS 2 exactly once), nothing reaches a
//! session without a matching subscription, and what the broker stores is
//! bounded by its limits.
mod util;

use mqtt_broker_core::{BrokerConfig, ConnectionId};
use mqtt_codec::{Packet, ProtocolVersion, PubAck, PubComp, PubRec, QoS, ReasonCode, TopicFilter};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use util::*;

const FILTERS: [&str; 5] = ["a/b", "a/+", "a/#", "+/c", "#"];
const TOPICS: [&str; 4] = ["a/b", "a/c", "b/c", "a/b/c"];
const SUBSCRIBERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Disconnect(usize),
    Drop(usize),
    Subscribe(usize, usize, u8),
    Unsubscribe(usize, usize),
    Ack(usize),
    Publish(usize, u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SUBSCRIBERS;
    prop_oneof![
        2 => s.clone().prop_map(Op::Connect),
        1 => s.clone().prop_map(Op::Disconnect),
        1 => s.clone().prop_map(Op::Drop),
        2 => (s.clone(), 0..FILTERS.len(), 0u8..3).prop_map(|(c, f, q)| Op::Subscribe(c, f, q)),
        1 => (s.clone(), 0..FILTERS.len()).prop_map(|(c, f)| Op::Unsubscribe(c, f)),
        2 => s.prop_map(Op::Ack),
        4 => (0..TOPICS.len(), 0u8..3).prop_map(|(t, q)| Op::Publish(t, q)),
        1 => (1u64..40).prop_map(Op::Advance),
    ]
}

fn qos(q: u8) -> QoS {
    QoS::from_u8(q).unwrap()
}

/// A subscriber as a correct client behaves: it keeps its QoS 2 receive
/// state across reconnects and acknowledges when told to.
struct Sub {
    version: ProtocolVersion,
    conn: Option<ConnectionId>,
    /// Filters subscribed now, with their QoS.
    filters: HashMap<&'static str, QoS>,
    /// Every filter subscribed since the session began (messages queued
    /// before an UNSUBSCRIBE may still arrive).
    ever: HashSet<&'static str>,
    qos2_unreleased: HashSet<u16>,
    /// Received, not yet acknowledged: QoS, packet id, payload. A QoS 1
    /// message counts as delivered when the application acknowledges it, so
    /// one lost with the connection must come again.
    unacked: Vec<(QoS, u16, String)>,
    /// Application deliveries per payload.
    got: HashMap<String, usize>,
}

struct Model {
    h: Harness,
    publisher: ConnectionId,
    subs: Vec<Sub>,
    /// payload -> (subscriber, effective QoS) pairs that must be delivered.
    expected: Vec<(String, usize, QoS)>,
    next_msg: usize,
    tight: bool,
    config: BrokerConfig,
}

impl Model {
    fn new(versions: [bool; SUBSCRIBERS], tight: bool) -> Self {
        let config = if tight {
            BrokerConfig::default()
                .max_queued_messages(4)
                .max_inflight_messages(2)
        } else {
            BrokerConfig::default().max_queued_messages(0)
        };
        let mut h = Harness::new(config.clone());
        let mut c = connect(V5, "publisher");
        c.keep_alive = 0;
        let (publisher, _) = h.connect_with(c);
        let subs = versions
            .iter()
            .map(|&v5| Sub {
                version: if v5 { V5 } else { V3 },
                conn: None,
                filters: HashMap::new(),
                ever: HashSet::new(),
                qos2_unreleased: HashSet::new(),
                unacked: Vec::new(),
                got: HashMap::new(),
            })
            .collect();
        Self {
            h,
            publisher,
            subs,
            expected: Vec::new(),
            next_msg: 0,
            tight,
            config,
        }
    }

    fn connect(&mut self, i: usize) {
        if self.subs[i].conn.is_some_and(|c| !self.h.is_closed(c)) {
            return;
        }
        let (id, ack) = self
            .h
            .connect_persistent(self.subs[i].version, &format!("sub{i}"));
        assert_eq!(ack.reason_code, ReasonCode::Success);
        self.subs[i].conn = Some(id);
        self.subs[i].unacked.clear();
        self.process(i);
    }

    fn online(&self, i: usize) -> Option<ConnectionId> {
        self.subs[i].conn.filter(|&c| !self.h.is_closed(c))
    }

    /// Reads what the subscriber received and checks it matches a subscription.
    fn process(&mut self, i: usize) {
        let Some(id) = self.online(i) else { return };
        for p in self.h.recv(id) {
            let s = &mut self.subs[i];
            match p {
                Packet::Publish(p) => {
                    let topic = p.topic.as_str().to_string();
                    assert!(
                        s.ever
                            .iter()
                            .any(|f| TopicFilter::new(*f).unwrap().matches(&topic)),
                        "sub{i} got '{topic}' without a matching subscription ({:?})",
                        s.ever
                    );
                    let payload = String::from_utf8(p.payload.to_vec()).unwrap();
                    let pid = p.packet_id.map_or(0, |x| x.get());
                    let fresh = match p.qos {
                        QoS::ExactlyOnce => s.qos2_unreleased.insert(pid),
                        QoS::AtLeastOnce => false,
                        QoS::AtMostOnce => true,
                    };
                    if fresh {
                        *s.got.entry(payload.clone()).or_default() += 1;
                    }
                    if p.qos != QoS::AtMostOnce {
                        s.unacked.push((p.qos, pid, payload));
                    }
                }
                Packet::PubRel(r) => {
                    s.qos2_unreleased.remove(&r.packet_id.get());
                    self.h.send(id, Packet::PubComp(PubComp::new(r.packet_id)));
                }
                _ => {}
            }
        }
    }

    fn ack(&mut self, i: usize) {
        let Some(id) = self.online(i) else { return };
        for (q, pid, payload) in std::mem::take(&mut self.subs[i].unacked) {
            let p = util::pid(pid);
            match q {
                QoS::AtLeastOnce => {
                    *self.subs[i].got.entry(payload).or_default() += 1;
                    self.h.send(id, Packet::PubAck(PubAck::new(p)))
                }
                _ => self.h.send(id, Packet::PubRec(PubRec::new(p))),
            }
        }
        self.process(i);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect(i) => self.connect(i),
            Op::Disconnect(i) => {
                if let Some(id) = self.online(i) {
                    self.h.disconnect(id);
                }
            }
            Op::Drop(i) => {
                if let Some(id) = self.online(i) {
                    self.h.drop_transport(id);
                }
            }
            Op::Subscribe(i, f, q) => {
                if let Some(id) = self.online(i) {
                    let ack = self.h.subscribe_with(
                        id,
                        FILTERS[f],
                        mqtt_codec::SubscriptionOptions::qos(qos(q)),
                        None,
                    );
                    assert_eq!(ack.reason_codes, [ReasonCode::granted(qos(q))]);
                    self.subs[i].filters.insert(FILTERS[f], qos(q));
                    self.subs[i].ever.insert(FILTERS[f]);
                    self.process(i);
                }
            }
            Op::Unsubscribe(i, f) => {
                if let Some(id) = self.online(i) {
                    self.h.send(
                        id,
                        Packet::Unsubscribe(mqtt_codec::Unsubscribe {
                            packet_id: pid(1),
                            properties: Default::default(),
                            filters: vec![filter(FILTERS[f])],
                        }),
                    );
                    self.subs[i].filters.remove(FILTERS[f]);
                    self.process(i);
                }
            }
            Op::Ack(i) => self.ack(i),
            Op::Publish(t, q) => {
                self.next_msg += 1;
                let payload = format!("m{}", self.next_msg);
                let leaked: &'static str = Box::leak(payload.clone().into_boxed_str());
                let rc = self.h.publish(self.publisher, TOPICS[t], leaked, qos(q));
                let accepted = q == 0
                    || matches!(
                        rc,
                        Some(ReasonCode::Success | ReasonCode::NoMatchingSubscribers)
                    );
                assert!(accepted, "publish refused: {rc:?}");
                for (i, s) in self.subs.iter().enumerate() {
                    let best = s
                        .filters
                        .iter()
                        .filter(|(f, _)| TopicFilter::new(**f).unwrap().matches(TOPICS[t]))
                        .map(|(_, q)| *q)
                        .max();
                    if let Some(sub_qos) = best {
                        self.expected
                            .push((payload.clone(), i, qos(q).min(sub_qos)));
                    }
                }
                for i in 0..SUBSCRIBERS {
                    self.process(i);
                }
            }
            Op::Advance(secs) => {
                self.h.advance(Duration::from_secs(secs));
                for i in 0..SUBSCRIBERS {
                    self.process(i);
                }
            }
        }
        self.check_bounds();
    }

    fn check_bounds(&self) {
        let stats = self.h.broker.stats();
        let per_session =
            self.config.max_queued_messages + usize::from(self.config.max_inflight_messages);
        if self.tight {
            assert!(
                stats.messages_stored as usize <= SUBSCRIBERS * per_session,
                "stored {} beyond the limits",
                stats.messages_stored
            );
        }
        for i in 0..SUBSCRIBERS {
            for (payload, n) in &self.subs[i].got {
                let q2 = self
                    .expected
                    .iter()
                    .any(|(p, s, q)| p == payload && *s == i && *q == QoS::ExactlyOnce);
                if q2 {
                    assert_eq!(*n, 1, "QoS 2 '{payload}' delivered {n} times to sub{i}");
                }
            }
        }
    }

    /// Reconnects everyone and acknowledges until nothing more arrives.
    fn drain(&mut self) {
        for i in 0..SUBSCRIBERS {
            if self.subs[i].conn.is_some() || !self.subs[i].ever.is_empty() {
                self.connect(i);
            }
        }
        for _ in 0..200 {
            let mut any = false;
            for i in 0..SUBSCRIBERS {
                if !self.subs[i].unacked.is_empty() {
                    any = true;
                    self.ack(i);
                }
            }
            if !any {
                break;
            }
        }
        self.check_bounds();
        if self.tight {
            return;
        }
        assert_eq!(
            self.h.broker.stats().messages_stored,
            0,
            "everything was acknowledged"
        );
        for (payload, i, q) in &self.expected {
            let n = self.subs[*i].got.get(payload).copied().unwrap_or(0);
            match q {
                QoS::AtMostOnce => {
                    assert!(n <= 1, "QoS 0 '{payload}' delivered {n} times to sub{i}")
                }
                QoS::AtLeastOnce => assert!(n >= 1, "QoS 1 '{payload}' never reached sub{i}"),
                QoS::ExactlyOnce => assert_eq!(n, 1, "QoS 2 '{payload}' reached sub{i} {n} times"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn random_sessions_keep_the_delivery_guarantees(
        versions in proptest::array::uniform3(any::<bool>()),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut m = Model::new(versions, false);
        for op in &ops {
            m.apply(op);
        }
        m.drain();
    }

    #[test]
    fn random_sessions_stay_within_the_configured_limits(
        versions in proptest::array::uniform3(any::<bool>()),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut m = Model::new(versions, true);
        for op in &ops {
            m.apply(op);
        }
        m.drain();
    }
}
