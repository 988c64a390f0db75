//! The lines of a `connection NAME` section, with Mosquitto 2.0's defaults
//! and checks (`src/conf.c`, `config__read_file_core` and `config__check`).

use super::parser::Line;
use super::{ConfigError, Origin, Warning};
use crate::bridge::{
    BridgeAddress, BridgeConfig, BridgeDirection, BridgeTopic, RestartTimeout, StartType,
};
use mqtt_codec::{ProtocolVersion, QoS};
use std::time::Duration;

/// Keys that only make sense inside a `connection` section.
pub(super) fn is_bridge_key(key: &str) -> bool {
    matches!(
        key,
        "address"
            | "addresses"
            | "bridge_alpn"
            | "bridge_attempt_unsubscribe"
            | "bridge_cafile"
            | "bridge_capath"
            | "bridge_certfile"
            | "bridge_insecure"
            | "bridge_keyfile"
            | "bridge_max_packet_size"
            | "bridge_outgoing_retain"
            | "bridge_protocol_version"
            | "bridge_tls_version"
            | "cleansession"
            | "clientid"
            | "remote_clientid"
            | "idle_timeout"
            | "keepalive_interval"
            | "local_cleansession"
            | "local_clientid"
            | "local_password"
            | "local_username"
            | "notification_topic"
            | "notifications"
            | "notifications_local_only"
            | "password"
            | "remote_password"
            | "username"
            | "remote_username"
            | "restart_timeout"
            | "round_robin"
            | "start_type"
            | "threshold"
            | "topic"
            | "try_private"
    )
}

/// Words of the value, up to a `#` comment.
fn words<'a>(line: &Line<'a>) -> Vec<&'a str> {
    line.rest
        .split_whitespace()
        .take_while(|w| !w.starts_with('#'))
        .collect()
}

fn set_once(line: &Line<'_>, slot: &mut Option<String>, value: &str) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(line.conflict("given twice for the same bridge; keep one"));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

/// Applies one bridge line to `b`.
pub(super) fn apply(
    b: &mut BridgeConfig,
    line: &Line<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    match line.key {
        "address" | "addresses" => {
            if !b.addresses.is_empty() {
                return Err(line.conflict(
                    "the bridge already has its addresses; list them all on one line: \
                     'address host1[:port] host2[:port]'",
                ));
            }
            let ws = words(line);
            if ws.is_empty() {
                return Err(line.invalid("", "one or more host[:port]"));
            }
            for w in ws {
                let a = BridgeAddress::parse(w).map_err(|why| {
                    line.invalid(
                        w,
                        format!("host[:port] with a port from 1 to 65535 ({why})"),
                    )
                })?;
                b.addresses.push(a);
            }
        }
        "topic" => b.topics.push(topic_line(line)?),
        "bridge_protocol_version" => {
            let what = "mqttv31, mqttv311 or mqttv50";
            b.protocol = match line.word(what)? {
                "mqttv31" => ProtocolVersion::V3_1,
                "mqttv311" => ProtocolVersion::V3_1_1,
                "mqttv50" => ProtocolVersion::V5,
                other => return Err(line.invalid(other, what)),
            };
        }
        "cleansession" => b.clean_session = line.bool()?,
        "local_cleansession" => b.local_clean_session = Some(line.bool()?),
        "clientid" | "remote_clientid" => {
            let v = line.word("a client identifier")?;
            set_once(line, &mut b.remote_clientid, v)?
        }
        "local_clientid" => {
            let v = line.word("a client identifier")?;
            set_once(line, &mut b.local_clientid, v)?
        }
        "username" | "remote_username" => {
            let v = line.string("a user name")?;
            set_once(line, &mut b.remote_username, v)?
        }
        "password" | "remote_password" => {
            let v = line.string("a password")?;
            set_once(line, &mut b.remote_password, v)?
        }
        "local_username" => {
            let v = line.string("a user name")?;
            set_once(line, &mut b.local_username, v)?
        }
        "local_password" => {
            let v = line.string("a password")?;
            set_once(line, &mut b.local_password, v)?
        }
        "bridge_cafile" => b.tls.cafile = Some(line.path()?),
        "bridge_capath" => b.tls.capath = Some(line.path()?),
        "bridge_certfile" => b.tls.certfile = Some(line.path()?),
        "bridge_keyfile" => b.tls.keyfile = Some(line.path()?),
        "bridge_insecure" => {
            b.tls.insecure = line.bool()?;
            if b.tls.insecure {
                warnings.push(line.warning(format!(
                    "Bridge {} using insecure mode: the remote's certificate is not checked \
                     against the host name",
                    b.name
                )));
            }
        }
        "bridge_tls_version" => {
            let what = "tlsv1.2 or tlsv1.3";
            b.tls.tls13_only = match line.word(what)? {
                "tlsv1.3" => true,
                "tlsv1.2" => false,
                w @ ("tlsv1.1" | "tlsv1") => {
                    warnings.push(line.warning(format!(
                        "bridge_tls_version {w}: TLS 1.1 and older are not available (rustls); \
                         the minimum is TLS 1.2"
                    )));
                    false
                }
                other => return Err(line.invalid(other, what)),
            };
        }
        "bridge_alpn" => b.tls.alpn = Some(line.word("an ALPN protocol name")?.to_owned()),
        "bridge_max_packet_size" => {
            b.max_packet_size = line.int(i64::MIN, u32::MAX as i64)?.max(0) as u32
        }
        "bridge_outgoing_retain" => b.outgoing_retain = line.bool()?,
        "bridge_attempt_unsubscribe" => b.attempt_unsubscribe = line.bool()?,
        "try_private" => b.try_private = line.bool()?,
        "round_robin" => b.round_robin = line.bool()?,
        "notifications" => b.notifications = line.bool()?,
        "notifications_local_only" => b.notifications_local_only = line.bool()?,
        "notification_topic" => {
            let what = "a topic name without wildcards";
            let t = line.word(what)?;
            if mqtt_codec::TopicName::try_from(t).is_err() {
                return Err(line.invalid(t, what));
            }
            b.notification_topic = Some(t.to_owned());
        }
        "keepalive_interval" => {
            let n = line.int(i64::MIN, 65535)?;
            if n < 5 {
                warnings.push(line.warning("keepalive interval too low, using 5 seconds."));
            }
            b.keepalive = n.max(5) as u16;
        }
        "idle_timeout" => {
            let n = line.int(i64::MIN, u32::MAX as i64)?;
            if n < 1 {
                warnings.push(line.warning("idle_timeout interval too low, using 1 second."));
            }
            b.idle_timeout = Duration::from_secs(n.max(1) as u64);
        }
        "threshold" => {
            let n = line.int(i64::MIN, u32::MAX as i64)?;
            if n < 1 {
                warnings.push(line.warning("threshold too low, using 1 message."));
            }
            b.threshold = n.max(1) as u32;
        }
        "restart_timeout" => {
            let what = "SECONDS, or BASE CAP (seconds; CAP at least BASE)";
            let ws = words(line);
            let num = |w: &str| -> Result<i64, ConfigError> {
                w.parse::<i64>().map_err(|_| line.invalid(w, what))
            };
            match ws.as_slice() {
                [one] => {
                    let n = num(one)?;
                    if n < 1 {
                        warnings.push(
                            line.warning("restart_timeout interval too low, using 1 second."),
                        );
                    }
                    b.restart_timeout =
                        RestartTimeout::Constant(Duration::from_secs(n.max(1) as u64));
                }
                [base, cap] => {
                    let base = num(base)?.max(1);
                    let cap = num(cap)?;
                    if cap < base {
                        return Err(
                            line.conflict("backoff cap is lower than the base in restart_timeout")
                        );
                    }
                    b.restart_timeout = RestartTimeout::Backoff {
                        base: Duration::from_secs(base as u64),
                        cap: Duration::from_secs(cap as u64),
                    };
                }
                _ => return Err(line.invalid(line.rest, what)),
            }
        }
        "start_type" => {
            let what = "automatic, lazy or once";
            b.start_type = match line.word(what)? {
                "automatic" => StartType::Automatic,
                "lazy" => StartType::Lazy,
                "once" => StartType::Once,
                "manual" => return Err(line.unsupported("manual start_type is not supported (nor by Mosquitto); use automatic, lazy or once")),
                other => return Err(line.invalid(other, what)),
            };
        }
        _ => return Err(line.invalid(line.rest, "a bridge option")),
    }
    Ok(())
}

/// `topic PATTERN [out|in|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]`.
fn topic_line(line: &Line<'_>) -> Result<BridgeTopic, ConfigError> {
    let what = "'topic PATTERN [out|in|both] [QOS] [LOCAL_PREFIX REMOTE_PREFIX]'";
    let mut ws = line.rest.split_whitespace();
    // The pattern may well be '#'.
    let pattern = ws.next().ok_or_else(|| line.invalid("", what))?;
    let rest: Vec<&str> = ws.take_while(|w| !w.starts_with('#')).collect();
    let direction = match rest.first() {
        None => BridgeDirection::Out,
        Some(d) => match d.to_ascii_lowercase().as_str() {
            "out" => BridgeDirection::Out,
            "in" => BridgeDirection::In,
            "both" => BridgeDirection::Both,
            _ => return Err(line.invalid(d, "a direction: out, in or both")),
        },
    };
    let qos = match rest.get(1) {
        None => QoS::AtMostOnce,
        Some(&"0") => QoS::AtMostOnce,
        Some(&"1") => QoS::AtLeastOnce,
        Some(&"2") => QoS::ExactlyOnce,
        Some(q) => return Err(line.invalid(q, "a bridge QoS: 0, 1 or 2")),
    };
    if rest.len() > 4 {
        return Err(line.invalid(line.rest, what));
    }
    BridgeTopic::new(
        pattern,
        direction,
        qos,
        rest.get(2).copied(),
        rest.get(3).copied(),
    )
    .map_err(|e| line.invalid(line.rest, e.to_string()))
}

/// Checks made once the whole file is read (Mosquitto's `config__check`
/// and the checks of `config__read`), reported at the `connection` line.
pub(super) fn check(bridges: &[BridgeConfig], origins: &[Origin]) -> Result<(), ConfigError> {
    for (b, o) in bridges.iter().zip(origins) {
        let err = |message: String| ConfigError::Conflict {
            file: o.file.clone(),
            line: o.line,
            key: "connection".into(),
            message,
        };
        let name = &b.name;
        if b.addresses.is_empty() {
            return Err(err(format!(
                "bridge {name} has no remote addresses; add 'address host[:port]'"
            )));
        }
        if b.topics.is_empty() {
            return Err(err(format!(
                "bridge {name} has no topics; add at least one 'topic PATTERN [out|in|both] [QOS]'"
            )));
        }
        let t = &b.tls;
        match (&t.certfile, &t.keyfile) {
            (Some(_), None) => {
                return Err(err(format!(
                    "bridge {name} has a bridge_certfile but no bridge_keyfile; TLS client certificates need both"
                )))
            }
            (None, Some(_)) => {
                return Err(err(format!(
                    "bridge {name} has a bridge_keyfile but no bridge_certfile; TLS client certificates need both"
                )))
            }
            _ => {}
        }
        if !t.enabled() {
            let tls_only = [
                ("bridge_certfile", t.certfile.is_some()),
                ("bridge_insecure", t.insecure),
                ("bridge_tls_version", t.tls13_only),
                ("bridge_alpn", t.alpn.is_some()),
            ];
            if let Some((key, _)) = tls_only.iter().find(|(_, set)| *set) {
                return Err(err(format!(
                    "bridge {name} sets {key} but has no bridge_cafile or bridge_capath, so it would not use TLS; add bridge_cafile"
                )));
            }
        }
        if b.local_password.is_some() && b.local_username.is_none() {
            return Err(err(format!(
                "bridge {name} has a local_password but no local_username"
            )));
        }
        if b.remote_password.is_some() && b.remote_username.is_none() {
            return Err(err(format!(
                "bridge {name} has a remote_password but no remote_username"
            )));
        }
    }
    for (i, a) in bridges.iter().enumerate() {
        for (b, o) in bridges.iter().zip(origins).skip(i + 1) {
            if a.local_clientid.is_some() && a.local_clientid == b.local_clientid {
                return Err(ConfigError::Conflict {
                    file: o.file.clone(),
                    line: o.line,
                    key: "local_clientid".into(),
                    message: format!(
                        "Bridge local_clientid '{}' is not unique. Try changing or setting the local_clientid value for one of the bridges.",
                        a.local_clientid.as_deref().unwrap_or_default()
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::bridge::{BridgeDirection, RestartTimeout, StartType};
    use crate::config::{Config, ConfigError};
    use mqtt_codec::{ProtocolVersion, QoS};
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_str(text, "b.conf").map(|(c, _)| c)
    }

    #[test]
    fn defaults_are_mosquittos() {
        let c = parse("listener 1883\nconnection central\naddress 10.0.0.1\ntopic #\n").unwrap();
        let b = &c.bridges[0];
        assert_eq!(b.name, "central");
        assert_eq!(b.addresses[0].to_string(), "10.0.0.1:1883");
        assert_eq!(b.topics[0].direction, BridgeDirection::Out);
        assert_eq!(b.topics[0].qos, QoS::AtMostOnce);
        assert_eq!(b.protocol, ProtocolVersion::V3_1_1);
        assert!(!b.clean_session);
        assert!(b.local_persistent());
        assert_eq!(b.keepalive, 60);
        assert_eq!(b.start_type, StartType::Automatic);
        assert_eq!(b.idle_timeout, Duration::from_secs(60));
        assert_eq!(b.threshold, 10);
        assert_eq!(
            b.restart_timeout,
            RestartTimeout::Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(30)
            }
        );
        assert!(b.notifications && !b.notifications_local_only);
        assert!(b.try_private && b.outgoing_retain && b.attempt_unsubscribe);
        assert!(!b.round_robin);
        assert!(!b.tls.enabled());
        // The listener is unaffected by the bridge section after it.
        assert_eq!(c.listeners.len(), 1);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "connection fleet\n\
             addresses n1.example:1884 n2.example:1885 # two nodes\n\
             round_robin true\n\
             topic sensors/# out 1 home/ site1/\n\
             topic cmd/# in 2 \"\" site1/\n\
             topic \"\" both 0 local/t remote/t\n\
             bridge_protocol_version mqttv50\n\
             cleansession true\n\
             local_cleansession false\n\
             remote_clientid pi1\n\
             local_clientid pi1-local\n\
             remote_username u\n\
             remote_password p w\n\
             local_username lu\n\
             local_password lp\n\
             bridge_cafile /ca.crt\n\
             bridge_capath /certs\n\
             bridge_certfile /c.crt\n\
             bridge_keyfile /c.key\n\
             bridge_insecure false\n\
             bridge_tls_version tlsv1.3\n\
             bridge_alpn mqtt\n\
             keepalive_interval 30\n\
             restart_timeout 2 20\n\
             start_type lazy\n\
             idle_timeout 90\n\
             threshold 5\n\
             notifications false\n\
             notification_topic fleet/pi1/state\n\
             notifications_local_only true\n\
             try_private false\n\
             bridge_outgoing_retain false\n\
             bridge_max_packet_size 2048\n\
             bridge_attempt_unsubscribe false\n",
        )
        .unwrap();
        let b = &c.bridges[0];
        assert_eq!(b.addresses.len(), 2);
        assert_eq!(b.addresses[1].to_string(), "n2.example:1885");
        assert!(b.round_robin);
        assert_eq!(b.topics.len(), 3);
        assert_eq!(b.topics[0].local_filter().as_str(), "home/sensors/#");
        assert_eq!(b.topics[0].remote_filter().as_str(), "site1/sensors/#");
        assert_eq!(b.topics[1].local_prefix, None);
        assert_eq!(b.topics[1].qos, QoS::ExactlyOnce);
        assert_eq!(b.topics[2].pattern, None);
        assert_eq!(b.protocol, ProtocolVersion::V5);
        assert!(b.clean_session);
        assert!(b.local_persistent());
        assert_eq!(b.remote_clientid.as_deref(), Some("pi1"));
        assert_eq!(b.local_clientid.as_deref(), Some("pi1-local"));
        assert_eq!(b.remote_password.as_deref(), Some("p w"));
        assert_eq!(b.local_username.as_deref(), Some("lu"));
        assert!(b.tls.enabled() && b.tls.tls13_only);
        assert_eq!(b.tls.alpn.as_deref(), Some("mqtt"));
        assert_eq!(b.keepalive, 30);
        assert_eq!(
            b.restart_timeout,
            RestartTimeout::Backoff {
                base: Duration::from_secs(2),
                cap: Duration::from_secs(20)
            }
        );
        assert_eq!(b.start_type, StartType::Lazy);
        assert_eq!(b.idle_timeout, Duration::from_secs(90));
        assert_eq!(b.threshold, 5);
        assert!(!b.notifications && b.notifications_local_only);
        assert_eq!(b.notification_topic("h"), "fleet/pi1/state");
        assert!(!b.try_private && !b.outgoing_retain && !b.attempt_unsubscribe);
        assert_eq!(b.max_packet_size, 2048);
    }

    #[test]
    fn low_values_are_raised_with_a_warning() {
        let (c, w) = Config::parse_str(
            "connection a\naddress h\ntopic #\nkeepalive_interval 1\nthreshold 0\nrestart_timeout 0\n",
            "b.conf",
        )
        .unwrap();
        assert_eq!(c.bridges[0].keepalive, 5);
        assert_eq!(c.bridges[0].threshold, 1);
        assert_eq!(
            c.bridges[0].restart_timeout,
            RestartTimeout::Constant(Duration::from_secs(1))
        );
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].line, 4);
    }

    /// (config, line, words the message must contain)
    const BAD: &[(&str, usize, &str)] = &[
        ("address h\n", 1, "after a 'connection NAME' line"),
        ("topic #\n", 1, "after a 'connection NAME' line"),
        ("connection\n", 1, "a bridge name"),
        ("connection a\naddress h\ntopic #\nconnection a\n", 4, "duplicate bridge name"),
        ("connection a\naddress h:0\n", 2, "port"),
        ("connection a\naddress h\naddress g\n", 3, "already has its addresses"),
        ("connection a\naddress h\ntopic # sideways\n", 3, "out, in or both"),
        ("connection a\naddress h\ntopic # out 3\n", 3, "0, 1 or 2"),
        ("connection a\naddress h\ntopic # out 0 a/+/ b/\n", 3, "local prefix"),
        ("connection a\naddress h\ntopic \"\" out 0 a/\n", 3, "remapping"),
        ("connection a\naddress h\ntopic # out 0 a b\n", 3, "combination"),
        ("connection a\naddress h\ntopic #\nbridge_protocol_version mqttv4\n", 4, "mqttv50"),
        ("connection a\naddress h\ntopic #\nstart_type manual\n", 4, "manual"),
        ("connection a\naddress h\ntopic #\nstart_type sometimes\n", 4, "lazy"),
        ("connection a\naddress h\ntopic #\nrestart_timeout 10 5\n", 4, "cap is lower"),
        ("connection a\naddress h\ntopic #\nkeepalive_interval 70000\n", 4, "65535"),
        ("connection a\naddress h\ntopic #\nbridge_tls_version ssl3\n", 4, "tlsv1.2"),
        ("connection a\naddress h\ntopic #\nnotification_topic a/#\n", 4, "wildcards"),
        ("connection a\ntopic #\n", 1, "no remote addresses"),
        ("connection a\naddress h\n", 1, "no topics"),
        ("connection a\naddress h\ntopic #\nbridge_certfile c\nbridge_keyfile k\n", 1, "no bridge_cafile"),
        ("connection a\naddress h\ntopic #\nbridge_cafile ca\nbridge_certfile c\n", 1, "no bridge_keyfile"),
        ("connection a\naddress h\ntopic #\nremote_password p\n", 1, "no remote_username"),
        (
            "connection a\naddress h\ntopic #\nlocal_clientid x\nconnection b\naddress h\ntopic #\nlocal_clientid x\n",
            5,
            "not unique",
        ),
        ("connection a\naddress h\ntopic #\nremote_clientid x\nclientid y\n", 5, "twice"),
    ];

    #[test]
    fn mistakes_are_refused_with_file_and_line() {
        for (text, line, words) in BAD {
            let e = parse(text).expect_err(text);
            assert_eq!(e.file(), Some("b.conf"), "{text}");
            assert_eq!(e.line(), Some(*line), "{text}: {e}");
            assert!(e.to_string().contains(words), "{text}: {e}");
        }
    }

    #[test]
    fn psk_and_ocsp_stay_unsupported_with_a_reason() {
        for key in [
            "bridge_psk 1234",
            "bridge_identity id",
            "bridge_require_ocsp true",
            "bridge_bind_address 10.0.0.2",
        ] {
            let e = parse(&format!("connection a\naddress h\ntopic #\n{key}\n")).unwrap_err();
            assert!(matches!(e, ConfigError::Unsupported { line: 4, .. }), "{e}");
        }
    }
}
