//! Topic tree, wildcards, `$` topics, No Local, Retain As Published,
//! subscription identifiers and shared subscriptions.
mod util;

use mqtt_codec::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
use util::*;

const BOTH: [ProtocolVersion; 2] = [V3, V5];

#[test]
fn wildcards_match_by_level() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let sub = h.connect(v, "sub");
        h.subscribe(sub, "home/+/temp", QoS::AtMostOnce);
        h.subscribe(sub, "office/#", QoS::AtMostOnce);
        let p = h.connect(v, "p");
        for t in [
            "home/kitchen/temp",
            "home/temp",
            "home/a/b/temp",
            "office",
            "office/1/2",
            "officer",
        ] {
            h.publish(p, t, "x", QoS::AtMostOnce);
        }
        let got: Vec<String> = h
            .recv_publishes(sub)
            .iter()
            .map(|p| p.topic.to_string())
            .collect();
        assert_eq!(got, ["home/kitchen/temp", "office", "office/1/2"]);
    }
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    for v in BOTH {
        let mut h = Harness::new(
            mqtt_broker_core::BrokerConfig::default().sys_interval(std::time::Duration::ZERO),
        );
        let all = h.connect(v, "all");
        h.subscribe(all, "#", QoS::AtMostOnce);
        h.subscribe(all, "+/x", QoS::AtMostOnce);
        let dollar = h.connect(v, "dollar");
        h.subscribe(dollar, "$app/#", QoS::AtMostOnce);
        let p = h.connect(v, "p");
        h.publish(p, "$app/x", "m", QoS::AtMostOnce);
        assert!(h.recv_publishes(all).is_empty(), "[MQTT-4.7.2-1]");
        assert_eq!(h.recv_publishes(dollar).len(), 1);
    }
}

#[test]
fn no_local_keeps_a_clients_own_messages_from_it() {
    let mut h = Harness::default_config();
    let c = h.connect(V5, "c");
    let opts = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::qos(QoS::AtLeastOnce)
    };
    h.subscribe_with(c, "chat", opts, None);
    let other = h.connect(V5, "other");
    h.subscribe(other, "chat", QoS::AtLeastOnce);
    h.publish(c, "chat", "mine", QoS::AtLeastOnce);
    assert!(h.recv_publishes(c).is_empty());
    assert_eq!(h.recv_publishes(other).len(), 1);
    h.publish(other, "chat", "theirs", QoS::AtLeastOnce);
    assert_eq!(Harness::payloads(&h.recv_publishes(c)), ["theirs"]);
}

#[test]
fn retain_flag_is_cleared_on_forwarding_unless_retain_as_published() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let plain = h.connect(v, "plain");
        h.subscribe(plain, "t", QoS::AtMostOnce);
        let p = h.connect(v, "p");
        h.publish_retain(p, "t", "r", QoS::AtMostOnce, true);
        let got = h.recv_publishes(plain);
        assert!(!got[0].retain, "{v}: [MQTT-3.3.1-9] / [MQTT-3.3.1-12]");
    }
    let mut h = Harness::default_config();
    let rap = h.connect(V5, "rap");
    let opts = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::qos(QoS::AtMostOnce)
    };
    h.subscribe_with(rap, "t", opts, None);
    let p = h.connect(V5, "p");
    h.publish_retain(p, "t", "r", QoS::AtMostOnce, true);
    assert!(h.recv_publishes(rap)[0].retain, "[MQTT-3.3.1-13]");
}

#[test]
fn subscription_identifiers_of_every_matching_subscription_are_sent() {
    let mut h = Harness::default_config();
    let c = h.connect(V5, "c");
    h.subscribe_with(c, "a/+", SubscriptionOptions::qos(QoS::AtMostOnce), Some(7));
    h.subscribe_with(
        c,
        "a/#",
        SubscriptionOptions::qos(QoS::AtLeastOnce),
        Some(9),
    );
    h.subscribe_with(c, "a/b", SubscriptionOptions::qos(QoS::AtMostOnce), None);
    let p = h.connect(V5, "p");
    h.publish(p, "a/b", "x", QoS::AtLeastOnce);
    let got = h.recv_publishes(c);
    assert_eq!(got.len(), 1);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, [7, 9]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

#[test]
fn shared_subscription_delivers_round_robin_among_the_group() {
    for v in BOTH {
        let mut h = Harness::default_config();
        let members: Vec<_> = (0..3)
            .map(|i| h.connect(v, &format!("worker{i}")))
            .collect();
        for &m in &members {
            h.subscribe(m, "$share/workers/jobs/+", QoS::AtLeastOnce);
        }
        let plain = h.connect(v, "plain");
        h.subscribe(plain, "jobs/#", QoS::AtMostOnce);
        let p = h.connect(v, "p");
        for _ in 0..6 {
            h.publish(p, "jobs/a", "job", QoS::AtLeastOnce);
        }
        let counts: Vec<usize> = members
            .iter()
            .map(|&m| {
                let got = h.recv_publishes(m);
                h.ack_all(m, &got);
                got.len()
            })
            .collect();
        assert_eq!(counts, [2, 2, 2], "{v}");
        assert_eq!(
            h.recv_publishes(plain).len(),
            6,
            "ordinary subscribers get every message"
        );
    }
}

#[test]
fn shared_subscription_skips_offline_members() {
    let mut h = Harness::default_config();
    let (a, _) = h.connect_persistent(V5, "a");
    h.subscribe(a, "$share/g/t", QoS::AtLeastOnce);
    let b = h.connect(V5, "b");
    h.subscribe(b, "$share/g/t", QoS::AtLeastOnce);
    h.disconnect(a);
    let p = h.connect(V5, "p");
    for _ in 0..4 {
        h.publish(p, "t", "x", QoS::AtLeastOnce);
    }
    let got = h.recv_publishes(b);
    assert_eq!(got.len(), 4);
}

#[test]
fn retain_handling_controls_retained_messages_on_subscribe() {
    let mut h = Harness::default_config();
    let p = h.connect(V5, "p");
    h.publish_retain(p, "r", "kept", QoS::AtMostOnce, true);
    let c = h.connect(V5, "c");
    let opts = |rh| SubscriptionOptions {
        retain_handling: rh,
        ..SubscriptionOptions::qos(QoS::AtMostOnce)
    };
    h.subscribe_with(c, "r", opts(RetainHandling::DoNotSend), None);
    assert!(h.recv_publishes(c).is_empty(), "2: never");
    h.subscribe_with(c, "r", opts(RetainHandling::SendIfNew), None);
    assert!(
        h.recv_publishes(c).is_empty(),
        "1: the subscription existed"
    );
    h.subscribe_with(c, "r/#", opts(RetainHandling::SendIfNew), None);
    assert_eq!(h.recv_publishes(c).len(), 1, "1: new subscription");
    h.subscribe_with(c, "r", opts(RetainHandling::SendOnSubscribe), None);
    assert_eq!(h.recv_publishes(c).len(), 1, "0: always");
}
