//! Topic names, topic filters, matching [MQTT-4.7] and shared subscriptions.

use mqtt_codec::topic::{matches, TopicError};
use mqtt_codec::{TopicFilter, TopicName};

fn m(filter: &str, topic: &str) -> bool {
    TopicFilter::new(filter).unwrap().matches(topic)
}

#[test]
fn single_level_wildcard() {
    assert!(m("sport/tennis/+", "sport/tennis/player1"));
    assert!(m("sport/tennis/+", "sport/tennis/player2"));
    assert!(!m("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert!(m("sport/+", "sport/"));
    assert!(!m("sport/+", "sport"));
    assert!(m("+", "sport"));
    assert!(!m("+", "sport/tennis"));
    assert!(m("+/+", "/finance"));
    assert!(m("/+", "/finance"));
    assert!(!m("+", "/finance"));
    assert!(m("+/tennis/#", "sport/tennis/player1"));
    assert!(m("a/+/c", "a//c"), "+ matches an empty level");
}

#[test]
fn multi_level_wildcard() {
    assert!(m("sport/tennis/player1/#", "sport/tennis/player1"));
    assert!(m("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
    assert!(m(
        "sport/tennis/player1/#",
        "sport/tennis/player1/score/wimbledon"
    ));
    assert!(m("sport/#", "sport"), "# matches the parent level");
    assert!(m("sport/#", "sport/"));
    assert!(m("#", "sport/tennis"));
    assert!(m("#", "/"));
    assert!(!m("sport/#", "sports"));
    assert!(!m("sport/tennis/#", "sport"));
}

#[test]
fn exact_and_case_sensitive() {
    assert!(m("a/b", "a/b"));
    assert!(!m("a/b", "A/b"));
    assert!(!m("a/b", "a/b/"));
    assert!(!m("a/b/", "a/b"));
    assert!(m("/", "/"));
    assert!(m("a b/ü", "a b/ü"));
}

#[test]
fn dollar_topics_not_matched_by_leading_wildcards() {
    // [MQTT-4.7.2-1]
    assert!(!m("#", "$SYS/broker/uptime"));
    assert!(!m("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(!m("+", "$SYS"));
    assert!(m("$SYS/#", "$SYS/monitor/Clients"));
    assert!(m("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert!(m("$SYS/#", "$SYS"));
    // A '$' later in the topic is an ordinary character.
    assert!(m("#", "a/$b"));
    assert!(m("+/+", "a/$b"));
    // Also through a shared subscription.
    assert!(!m("$share/g/#", "$SYS/x"));
    assert!(!matches("#", "$share"));
    assert!(TopicName::try_from("$SYS/x").unwrap().is_dollar());
    assert!(!TopicName::try_from("a/$").unwrap().is_dollar());
}

#[test]
fn shared_subscriptions() {
    let f = TopicFilter::new("$share/consumer1/sport/tennis/+").unwrap();
    assert!(f.is_shared());
    assert_eq!(f.share_group(), Some("consumer1"));
    assert_eq!(f.filter(), "sport/tennis/+");
    assert_eq!(f.as_str(), "$share/consumer1/sport/tennis/+");
    assert!(f.has_wildcards());
    assert!(f.matches("sport/tennis/player1"));
    assert!(!f.matches("$share/consumer1/sport/tennis/player1"));

    let f = TopicFilter::new("$share/g/#").unwrap();
    assert_eq!(f.share_group(), Some("g"));
    assert_eq!(f.filter(), "#");
    assert!(f.matches("a/b"));

    let f = TopicFilter::new("$share/g//").unwrap();
    assert_eq!(f.filter(), "/");

    let f = TopicFilter::new("a/b").unwrap();
    assert!(!f.is_shared());
    assert_eq!(f.share_group(), None);
    assert_eq!(f.filter(), "a/b");
    assert!(!f.has_wildcards());

    // "$share" without the slash is an ordinary filter, as is "$shared/...".
    assert!(!TopicFilter::new("$share").unwrap().is_shared());
    assert!(!TopicFilter::new("$shared/g/a").unwrap().is_shared());

    for bad in [
        "$share/g",
        "$share//a",
        "$share/g/",
        "$share/+/a",
        "$share/#/a",
        "$share/",
    ] {
        assert_eq!(
            TopicFilter::new(bad),
            Err(TopicError::InvalidShare),
            "{bad}"
        );
    }
    assert_eq!(
        TopicFilter::new("$share/g/a/#/b"),
        Err(TopicError::MisplacedMultiLevel)
    );
}

#[test]
fn filter_validation() {
    for ok in [
        "#",
        "+",
        "+/+",
        "a/#",
        "/#",
        "a/+/b",
        "+/#",
        "/",
        "//",
        "a//b",
        "sport/tennis/#",
        "+/tennis/#",
        "sport/+/player1",
        "/+",
        "+/",
    ] {
        assert!(TopicFilter::new(ok).is_ok(), "{ok}");
    }
    let cases = [
        ("", TopicError::Empty),
        ("a/#/b", TopicError::MisplacedMultiLevel),
        ("#/", TopicError::MisplacedMultiLevel),
        ("a#", TopicError::MisplacedMultiLevel),
        ("##", TopicError::MisplacedMultiLevel),
        ("a+", TopicError::MisplacedSingleLevel),
        ("+a/b", TopicError::MisplacedSingleLevel),
        ("a/b+", TopicError::MisplacedSingleLevel),
        // Within one level a misplaced `#` is reported before a `+`; the
        // first bad level wins.
        ("a+#", TopicError::MisplacedMultiLevel),
        ("+#", TopicError::MisplacedMultiLevel),
        ("a+/b#", TopicError::MisplacedSingleLevel),
        ("++", TopicError::MisplacedSingleLevel),
        ("sport/tennis#", TopicError::MisplacedMultiLevel),
        ("sport/tennis/#/ranking", TopicError::MisplacedMultiLevel),
        ("sport+", TopicError::MisplacedSingleLevel),
        ("a\0b", TopicError::NullCharacter),
    ];
    for (bad, e) in cases {
        assert_eq!(TopicFilter::new(bad), Err(e), "{bad}");
    }
    assert_eq!(
        TopicFilter::new("a".repeat(65_536)),
        Err(TopicError::TooLong)
    );
    assert!(TopicFilter::new("a".repeat(65_535)).is_ok());
}

#[test]
fn name_validation() {
    for ok in ["a", "/", "a/b", "$SYS/x", "ü/€/😀", " "] {
        let t = TopicName::try_from(ok).unwrap();
        assert_eq!(t.as_str(), ok);
        assert_eq!(t.len(), ok.len());
    }
    let cases = [
        ("", TopicError::Empty),
        ("a/+", TopicError::WildcardInName),
        ("#", TopicError::WildcardInName),
        ("a+b", TopicError::WildcardInName),
        ("a\0", TopicError::NullCharacter),
    ];
    for (bad, e) in cases {
        assert_eq!(TopicName::try_from(bad), Err(e), "{bad}");
    }
    assert_eq!(
        TopicName::try_from("a".repeat(65_536)),
        Err(TopicError::TooLong)
    );
    assert_eq!(
        TopicName::new(bytes::Bytes::from_static(b"\xC3\x28")),
        Err(TopicError::InvalidUtf8)
    );
    assert!(TopicName::empty().is_empty());
    assert_eq!(TopicName::from_static("x/y").unwrap().as_str(), "x/y");
}

#[test]
fn matching_agrees_with_a_reference_implementation() {
    // A straightforward recursive matcher as an oracle, on small alphabets.
    fn reference(f: &[&str], t: &[&str]) -> bool {
        match (f.first(), t.first()) {
            (Some(&"#"), _) => true,
            (Some(&"+"), Some(_)) => reference(&f[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => reference(&f[1..], &t[1..]),
            (None, None) => true,
            _ => false,
        }
    }
    let levels = ["a", "b", "", "$x"];
    let mut topics = vec![];
    for a in levels {
        topics.push(a.to_string());
        for b in levels {
            topics.push(format!("{a}/{b}"));
            for c in levels {
                topics.push(format!("{a}/{b}/{c}"));
            }
        }
    }
    let flevels = ["a", "b", "", "+", "$x"];
    let mut filters = vec!["#".to_string()];
    for a in flevels {
        filters.push(a.to_string());
        filters.push(format!("{a}/#"));
        for b in flevels {
            filters.push(format!("{a}/{b}"));
            filters.push(format!("{a}/{b}/#"));
        }
    }
    for f in &filters {
        let Ok(tf) = TopicFilter::new(f.as_str()) else {
            continue;
        };
        for t in &topics {
            if t.is_empty() {
                continue;
            }
            let fl: Vec<&str> = f.split('/').collect();
            let tl: Vec<&str> = t.split('/').collect();
            let mut expected = reference(&fl, &tl);
            if t.starts_with('$') && (f.starts_with('+') || f.starts_with('#')) {
                expected = false;
            }
            assert_eq!(tf.matches(t), expected, "filter {f:?} topic {t:?}");
        }
    }
}

#[test]
fn filter_validation_agrees_with_the_rules_level_by_level() {
    // The rules written per level, as an oracle: `#` only as the whole last
    // level, `+` only as a whole level; the first bad level decides, and
    // within it a `#` is reported before a `+`.
    fn reference(f: &str) -> Result<(), TopicError> {
        if f.is_empty() {
            return Err(TopicError::Empty);
        }
        let levels: Vec<&str> = f.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            let last = i + 1 == levels.len();
            if level.contains('#') && !(*level == "#" && last) {
                return Err(TopicError::MisplacedMultiLevel);
            }
            if level.contains('+') && *level != "+" {
                return Err(TopicError::MisplacedSingleLevel);
            }
        }
        Ok(())
    }
    // Every string of up to six characters over `a / + #` (5,461 filters),
    // through the constructor and through a SUBSCRIBE on the wire.
    let mut filters = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..6 {
        last = last
            .iter()
            .flat_map(|s| ['a', '/', '+', '#'].map(|c| format!("{s}{c}")))
            .collect();
        filters.extend(last.iter().cloned());
    }
    for f in &filters {
        let expected = reference(f);
        assert_eq!(TopicFilter::new(f.as_str()).map(|_| ()), expected, "{f:?}");
        if f.is_empty() {
            continue;
        }
        // SUBSCRIBE, packet id 1, the filter, options QoS 0.
        let mut wire = vec![0x82, (2 + 2 + f.len() + 1) as u8, 0, 1, 0, f.len() as u8];
        wire.extend_from_slice(f.as_bytes());
        wire.push(0);
        let mut buf = bytes::BytesMut::from(&wire[..]);
        let got = mqtt_codec::Decoder::with_version(mqtt_codec::ProtocolVersion::V3_1_1)
            .decode(&mut buf)
            .map(|_| ());
        assert_eq!(
            got,
            expected.map_err(mqtt_codec::DecodeError::InvalidTopicFilter),
            "{f:?}"
        );
    }
}
