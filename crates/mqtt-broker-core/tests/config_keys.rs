//! Every supported key, its default, and the listener / per_listener_settings
//! semantics of Mosquitto 2.

use std::time::Duration;

use mqtt_broker_core::config::{Config, LogType, SocketDomain, TlsVersion};
use mqtt_codec::QoS;

fn parse(text: &str) -> Config {
    let (config, warnings) = Config::parse_str(text, "test.conf").unwrap();
    assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
    config
}

#[test]
fn default_config_is_local_only_loopback_1883_with_anonymous_allowed() {
    let c = Config::default();
    assert!(c.local_only);
    assert_eq!(c.listeners.len(), 2);
    assert!(c
        .listeners
        .iter()
        .all(|l| l.port == 1883 && !l.tls.enabled()));
    assert_eq!(c.listeners[0].bind_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(c.listeners[1].bind_address.as_deref(), Some("::1"));
    assert!(c.listeners.iter().all(|l| c.allow_anonymous(l)));
    assert_eq!(c.max_keepalive, 65535);
    assert_eq!(c.max_inflight_messages, 20);
    assert_eq!(c.max_queued_messages, 1000);
    assert_eq!(c.max_queued_bytes, 0);
    assert_eq!(c.message_size_limit, 0);
    assert_eq!(c.max_packet_size, None);
    assert!(c.retain_available);
    assert!(!c.queue_qos0_messages);
    assert!(c.connection_messages);
    assert_eq!(c.sys_interval, 10);
    assert_eq!(c.persistent_client_expiration, None);
    assert_eq!(c.listeners[0].max_topic_alias, 10);
    let defaults: Vec<LogType> = c.log_types.iter().copied().collect();
    assert_eq!(
        defaults,
        [
            LogType::Error,
            LogType::Warning,
            LogType::Notice,
            LogType::Information
        ]
    );
}

#[test]
fn empty_file_equals_default_config_except_file_list() {
    let mut c = parse("# nothing\n\n");
    assert_eq!(c.files, ["test.conf"]);
    c.files.clear();
    assert_eq!(c, Config::default());
}

#[test]
fn listener_defined_turns_anonymous_off_unless_allowed() {
    let c = parse("listener 1883\n");
    assert!(!c.local_only);
    assert!(!c.allow_anonymous(&c.listeners[0]));
    let c = parse("listener 1883\nallow_anonymous true\n");
    assert!(c.allow_anonymous(&c.listeners[0]));
    // Global when per_listener_settings is false: position does not matter.
    let c = parse("allow_anonymous true\nlistener 1883\nlistener 1884\n");
    assert!(c.listeners.iter().all(|l| c.allow_anonymous(l)));
}

#[test]
fn explicit_allow_anonymous_false_is_honoured_in_local_only_mode() {
    let c = parse("allow_anonymous false\n");
    assert!(c.local_only);
    assert!(!c.allow_anonymous(&c.listeners[0]));
}

#[test]
fn listener_options_apply_to_the_latest_listener_section() {
    let c = parse(
        "listener 1883 127.0.0.1\nmax_connections 10\nsocket_domain ipv4\n\
         listener 8883 ::\ncertfile /c.pem\nkeyfile /k.pem\ncafile /ca dir/ca.pem\n\
         capath /etc/ssl/certs\ncrlfile /crl.pem\nrequire_certificate true\n\
         use_identity_as_username true\nuse_subject_as_username 1\ntls_version tlsv1.3\n\
         max_topic_alias 0\nsocket_domain ipv6\nprotocol mqtt\nmax_connections -1\n",
    );
    assert_eq!(c.listeners.len(), 2);
    let (a, b) = (&c.listeners[0], &c.listeners[1]);
    assert_eq!(
        (a.port, a.bind_address.as_deref()),
        (1883, Some("127.0.0.1"))
    );
    assert_eq!(a.max_connections, Some(10));
    assert_eq!(a.socket_domain, Some(SocketDomain::Ipv4));
    assert!(!a.tls.enabled());
    assert_eq!(a.max_topic_alias, 10);
    assert_eq!((b.port, b.bind_address.as_deref()), (8883, Some("::")));
    assert!(b.tls.enabled());
    assert_eq!(b.tls.cafile.as_deref(), Some("/ca dir/ca.pem".as_ref()));
    assert_eq!(b.tls.capath.as_deref(), Some("/etc/ssl/certs".as_ref()));
    assert_eq!(b.tls.crlfile.as_deref(), Some("/crl.pem".as_ref()));
    assert!(b.tls.require_certificate);
    assert!(b.tls.use_identity_as_username);
    assert!(b.tls.use_subject_as_username);
    assert_eq!(b.tls.tls_version, Some(TlsVersion::Tls13));
    assert_eq!(b.max_topic_alias, 0);
    assert_eq!(b.socket_domain, Some(SocketDomain::Ipv6));
    assert_eq!(b.max_connections, None);
    assert_eq!(b.origin.line, 4);
}

#[test]
fn port_and_bind_address_configure_the_default_listener_opened_last() {
    let c = parse("port 1884\nbind_address 10.0.0.1\nlistener 8883\nallow_anonymous true\n");
    let ports: Vec<u16> = c.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [8883, 1884]);
    assert_eq!(c.listeners[1].bind_address.as_deref(), Some("10.0.0.1"));
    assert_eq!(c.listeners[1].origin.line, 1);
    assert!(!c.local_only);
}

#[test]
fn bind_address_alone_opens_default_listener_on_1883() {
    let c = parse("bind_address 192.168.1.2\n");
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].port, 1883);
    assert_eq!(c.listeners[0].bind_address.as_deref(), Some("192.168.1.2"));
    assert!(!c.allow_anonymous(&c.listeners[0]));
}

#[test]
fn tls_options_before_first_listener_with_port_make_a_tls_default_listener() {
    let c = parse("port 8883\ncertfile /c\nkeyfile /k\ncafile /ca\nlistener 1883\n");
    assert_eq!(c.listeners[0].port, 1883);
    assert!(!c.listeners[0].tls.enabled());
    assert_eq!(c.listeners[1].port, 8883);
    assert!(c.listeners[1].tls.enabled());
}

#[test]
fn auth_options_are_global_without_per_listener_settings() {
    let c = parse(
        "listener 1883\npassword_file /etc/mosquitto/passwd\nlistener 8883\nacl_file /etc/mosquitto/acl\n\
         allow_zero_length_clientid false\ncertfile /c\nkeyfile /k\n",
    );
    assert!(!c.per_listener_settings);
    for l in &c.listeners {
        let s = c.security_for(l);
        assert_eq!(
            s.password_file.as_deref(),
            Some("/etc/mosquitto/passwd".as_ref())
        );
        assert_eq!(s.acl_file.as_deref(), Some("/etc/mosquitto/acl".as_ref()));
        assert_eq!(s.allow_zero_length_clientid, Some(false));
        assert_eq!(l.security, Default::default());
    }
}

#[test]
fn auth_options_are_per_listener_with_per_listener_settings_true() {
    let c = parse(
        "per_listener_settings true\nlistener 1883 127.0.0.1\nallow_anonymous true\n\
         listener 8883\ncertfile /c\nkeyfile /k\npassword_file /p\nacl_file /a\n",
    );
    assert!(c.per_listener_settings);
    let (local, tls) = (&c.listeners[0], &c.listeners[1]);
    assert!(c.allow_anonymous(local));
    assert_eq!(c.security_for(local).password_file, None);
    // Absent on this listener: Mosquitto 2 default is false.
    assert!(!c.allow_anonymous(tls));
    assert_eq!(
        c.security_for(tls).password_file.as_deref(),
        Some("/p".as_ref())
    );
    assert_eq!(c.security_for(tls).acl_file.as_deref(), Some("/a".as_ref()));
    assert_eq!(c.security, Default::default());
}

#[test]
fn global_limits_and_switches_are_parsed() {
    let c = parse(
        "max_keepalive 120\nmessage_size_limit 1024\nmax_packet_size 2048\n\
         max_inflight_messages 5\nmax_queued_messages 50\nmax_queued_bytes 100000\n\
         queue_qos0_messages true\nretain_available false\nconnection_messages false\n\
         sys_interval 0\npersistent_client_expiration 2w\npersistence false\n",
    );
    assert_eq!(c.max_keepalive, 120);
    assert_eq!(c.message_size_limit, 1024);
    assert_eq!(c.max_packet_size, Some(2048));
    assert_eq!(c.max_inflight_messages, 5);
    assert_eq!(c.max_queued_messages, 50);
    assert_eq!(c.max_queued_bytes, 100_000);
    assert!(c.queue_qos0_messages);
    assert!(!c.retain_available);
    assert!(!c.connection_messages);
    assert_eq!(c.sys_interval, 0);
    assert_eq!(
        c.persistent_client_expiration,
        Some(Duration::from_secs(14 * 86_400))
    );
    assert!(!c.persistence);
}

#[test]
fn mosquitto_unlimited_spellings_map_to_zero() {
    let c = parse("max_inflight_messages 65535\nmax_queued_messages -1\nmax_queued_bytes -5\n");
    assert_eq!(c.max_inflight_messages, 0);
    assert_eq!(c.max_queued_messages, 0);
    assert_eq!(c.max_queued_bytes, 0);
    assert_eq!(parse("max_inflight_messages -1\n").max_inflight_messages, 0);
}

#[test]
fn persistent_client_expiration_units_follow_mosquitto() {
    let secs = |v: &str| {
        parse(&format!("persistent_client_expiration {v}\n"))
            .persistent_client_expiration
            .unwrap()
            .as_secs()
    };
    assert_eq!(secs("3h"), 3 * 3600);
    assert_eq!(secs("1d"), 86_400);
    assert_eq!(secs("2w"), 14 * 86_400);
    assert_eq!(secs("1m"), 30 * 86_400);
    assert_eq!(secs("1y"), 365 * 86_400);
}

#[test]
fn log_type_lines_accumulate_and_replace_the_defaults() {
    let c = parse("log_type error\nlog_type subscribe\n");
    let v: Vec<LogType> = c.log_types.iter().copied().collect();
    assert_eq!(v, [LogType::Error, LogType::Subscribe]);
    assert_eq!(parse("log_type all\n").log_types.len(), LogType::ALL.len());
    assert!(parse("log_type all\nlog_type none\n").log_types.is_empty());
}

#[test]
fn comments_blank_lines_tabs_and_trailing_whitespace_are_accepted() {
    let c = parse(
        "# comment\n\n   \nlistener\t8883   # TLS\r\n  certfile   /path with spaces/server.crt   \n\
         keyfile /k\nrequire_certificate true # mutual\ncafile /ca\n    # indented comment\n",
    );
    let l = &c.listeners[0];
    assert_eq!(l.port, 8883);
    assert_eq!(
        l.tls.certfile.as_deref(),
        Some("/path with spaces/server.crt".as_ref())
    );
    assert!(l.tls.require_certificate);
}

#[test]
fn booleans_accept_true_false_1_0() {
    assert!(parse("queue_qos0_messages 1\n").queue_qos0_messages);
    assert!(!parse("retain_available 0\n").retain_available);
}

#[test]
fn client_id_options_and_max_qos_are_parsed() {
    let c = parse(
        "allow_zero_length_clientid false\nauto_id_prefix pi-\n\
         listener 1883\nmax_qos 1\nuse_username_as_clientid true\n\
         listener 1884\nmaximum_qos 0\n",
    );
    let (a, b) = (&c.listeners[0], &c.listeners[1]);
    assert_eq!(a.max_qos, QoS::AtLeastOnce);
    assert!(a.use_username_as_clientid);
    assert_eq!(b.max_qos, QoS::AtMostOnce);
    assert!(!b.use_username_as_clientid);
    // Security options: global without per_listener_settings.
    for l in [a, b] {
        assert!(!c.allow_zero_length_clientid(l));
        assert_eq!(c.auto_id_prefix(l), "pi-");
    }
    let d = Config::default();
    let l = &d.listeners[0];
    assert_eq!(l.max_qos, QoS::ExactlyOnce);
    assert!(!l.use_username_as_clientid);
    assert!(d.allow_zero_length_clientid(l));
    assert_eq!(d.auto_id_prefix(l), "auto-");
    assert_eq!(d.clientid_prefixes, None);
}

#[test]
fn max_qos_and_use_username_as_clientid_before_a_listener_open_the_default_one() {
    // As in Mosquitto: only a value other than the default does (the
    // others are said to apply to no listener).
    let (c, warnings) = Config::parse_str(
        "max_qos 2\nuse_username_as_clientid false\nlistener 1884\n",
        "test.conf",
    )
    .unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].to_string().contains("not opened"),
        "{}",
        warnings[0]
    );
    let c = parse("max_qos 1\nlistener 1884\n");
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[1].port, 1883);
    assert_eq!(c.listeners[1].max_qos, QoS::AtLeastOnce);
}

#[test]
fn retry_interval_and_clientid_prefixes_are_accepted_with_a_warning() {
    let (c, warnings) = Config::parse_str(
        "retry_interval 20\nclientid_prefixes sensor-\n",
        "test.conf",
    )
    .unwrap();
    assert_eq!(c.clientid_prefixes.as_deref(), Some("sensor-"));
    let text: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0].contains("retry_interval") && text[0].contains("no longer available"));
    assert!(text[1].contains("deprecated") && text[1].contains("honoured"));
    assert!(Config::parse_str("max_qos 3\n", "test.conf").is_err());
    assert!(parse("upgrade_outgoing_qos true\n").upgrade_outgoing_qos);
    assert!(!Config::default().upgrade_outgoing_qos);
}

#[test]
fn mount_point_is_a_listener_option_without_wildcards() {
    let c = parse("listener 1883\nmount_point tenant-a/\nlistener 1884\n");
    assert_eq!(c.listeners[0].mount_point.as_deref(), Some("tenant-a/"));
    assert_eq!(c.listeners[1].mount_point, None);
    for bad in ["mount_point a/+/\n", "mount_point a/#\n", "mount_point\n"] {
        let text = format!("listener 1883\n{bad}");
        assert!(Config::parse_str(&text, "test.conf").is_err(), "{bad}");
    }
}

#[test]
fn max_topic_alias_is_kept_per_listener_by_from_config() {
    // (from_config builds the listeners; nothing is bound.)
    let c = parse("listener 18831 127.0.0.1\nmax_topic_alias 3\nlistener 18832 127.0.0.1\nmax_topic_alias 0\nallow_anonymous true\n");
    let builder = mqtt_broker_core::driver::ServerBuilder::from_config(&c).unwrap();
    let per_listener: Vec<Option<u16>> = builder
        .listeners()
        .iter()
        .map(|l| l.settings().max_topic_alias)
        .collect();
    assert_eq!(per_listener, [Some(3), Some(0)]);
}

#[test]
fn write_timeout_is_seconds_and_reaches_the_broker_config() {
    assert_eq!(Config::default().write_timeout, None);
    let c = parse("write_timeout 45\n");
    assert_eq!(c.write_timeout, Some(Duration::from_secs(45)));
    let b = mqtt_broker_core::mosquitto::broker_config(&c);
    assert_eq!(b.write_timeout, Some(Duration::from_secs(45)));
    assert!(Config::parse_str("write_timeout 0\n", "t.conf").is_err());
}

#[test]
fn max_subscriptions_per_client_defaults_to_10000_and_0_is_unlimited() {
    assert_eq!(Config::default().max_subscriptions_per_client, 10_000);
    let b = mqtt_broker_core::mosquitto::broker_config(&Config::default());
    assert_eq!(b.max_subscriptions_per_client, 10_000);
    let c = parse("max_subscriptions_per_client 50\n");
    assert_eq!(c.max_subscriptions_per_client, 50);
    let b = mqtt_broker_core::mosquitto::broker_config(&c);
    assert_eq!(b.max_subscriptions_per_client, 50);
    let c = parse("max_subscriptions_per_client 0\n");
    assert_eq!(
        mqtt_broker_core::mosquitto::broker_config(&c).max_subscriptions_per_client,
        0
    );
    assert!(Config::parse_str("max_subscriptions_per_client -1\n", "t.conf").is_err());
}

#[test]
fn memory_limit_is_plain_bytes_and_reaches_the_broker_config() {
    assert_eq!(Config::default().memory_limit, 0);
    let c = parse("memory_limit 104857600\n");
    assert_eq!(c.memory_limit, 104_857_600);
    let b = mqtt_broker_core::mosquitto::broker_config(&c);
    assert_eq!(b.memory_limit, 104_857_600);
    assert_eq!(parse("memory_limit 0\n").memory_limit, 0);
    // As Mosquitto: a negative limit is an error, and so is a unit.
    for bad in [
        "memory_limit -1\n",
        "memory_limit 100MB\n",
        "memory_limit\n",
    ] {
        let e = Config::parse_str(bad, "t.conf").unwrap_err();
        assert!(e.to_string().contains("memory_limit"), "{bad}: {e}");
    }
}
