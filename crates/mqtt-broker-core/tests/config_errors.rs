//! Errors and warnings: each names file, line and key, and says what to do.

use mqtt_broker_core::config::{Config, ConfigError, IGNORED_KEYS};

fn err(text: &str) -> ConfigError {
    Config::parse_str(text, "/etc/mosquitto/conf.d/ssl.conf").unwrap_err()
}

#[test]
fn typo_in_key_is_an_error_with_a_suggestion() {
    let e = err("listener 8883\ncafile /ca\nkeyfil /etc/mosquitto/certs/server.key\n");
    assert_eq!(
        e.to_string(),
        "/etc/mosquitto/conf.d/ssl.conf:3: unknown option 'keyfil' (did you mean 'keyfile'?)"
    );
    assert_eq!(e.file(), Some("/etc/mosquitto/conf.d/ssl.conf"));
    assert_eq!((e.line(), e.key()), (Some(3), Some("keyfil")));
}

#[test]
fn unknown_key_far_from_any_other_has_no_suggestion() {
    let e = err("frobnicate yes\n");
    assert_eq!(
        e.to_string(),
        "/etc/mosquitto/conf.d/ssl.conf:1: unknown option 'frobnicate'"
    );
}

#[test]
fn non_numeric_port_names_file_line_and_expectation() {
    let e = err("\nlistener abc\n");
    assert_eq!(
        e.to_string(),
        "/etc/mosquitto/conf.d/ssl.conf:2: invalid value 'abc' for 'listener': expected \
         'listener PORT [ADDRESS]' with PORT from 1 to 65535"
    );
    let e = err("port 70000\n");
    assert!(
        e.to_string()
            .contains("expected a whole number from 1 to 65535"),
        "{e}"
    );
    assert_eq!(e.key(), Some("port"));
    let e = err("listener 8883\nmax_connections abc\n");
    assert_eq!(
        e.to_string(),
        "/etc/mosquitto/conf.d/ssl.conf:2: invalid value 'abc' for 'max_connections': expected \
         a number of connections up to 4294967295, or -1 for no limit"
    );
    assert!(matches!(
        err("listener\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("listener 1883 1.2.3.4 extra\n"),
        ConfigError::InvalidValue { .. }
    ));
}

#[test]
fn bad_boolean_says_true_or_false() {
    let e = err("listener 8883\nrequire_certificate maybe\n");
    assert_eq!(
        e.to_string(),
        "/etc/mosquitto/conf.d/ssl.conf:2: invalid value 'maybe' for 'require_certificate': \
         expected true or false"
    );
}

#[test]
fn missing_values_are_errors() {
    for key in [
        "cafile",
        "password_file",
        "allow_anonymous",
        "max_keepalive",
        "pid_file",
    ] {
        let e = err(&format!("listener 1\n{key}\n"));
        assert!(
            matches!(e, ConfigError::InvalidValue { line: 2, .. }),
            "{key}: {e:?}"
        );
    }
}

#[test]
fn out_of_range_numbers_are_errors() {
    for text in [
        "max_keepalive 65536",
        "max_packet_size 10",
        "message_size_limit 268435456",
        "max_inflight_messages 65536",
        "sys_interval -1",
        "listener 1\nmax_topic_alias 70000",
        "max_queued_messages lots",
    ] {
        assert!(
            matches!(
                Config::parse_str(text, "f"),
                Err(ConfigError::InvalidValue { .. })
            ),
            "{text}"
        );
    }
}

#[test]
fn bad_persistent_client_expiration_explains_the_syntax() {
    for v in ["10", "0d", "-1d", "d", "5s"] {
        let e = err(&format!("persistent_client_expiration {v}\n"));
        assert!(
            e.to_string().contains("h (hours), d (days), w (weeks)"),
            "{v}: {e}"
        );
    }
}

#[test]
fn protocol_websockets_belongs_to_its_listener_and_other_values_are_errors() {
    use mqtt_broker_core::config::ListenerProtocol;
    let (c, w) = Config::parse_str(
        "listener 1883\nlistener 9001\nprotocol websockets\nwebsockets_log_level 255\n",
        "f",
    )
    .unwrap();
    let protocols: Vec<_> = c.listeners.iter().map(|l| (l.port, l.protocol)).collect();
    assert_eq!(
        protocols,
        [
            (1883, ListenerProtocol::Mqtt),
            (9001, ListenerProtocol::Websockets)
        ]
    );
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("ignored"), "{}", w[0]);
    assert!(matches!(
        err("listener 9001\nprotocol mqttx\n"),
        ConfigError::InvalidValue { .. }
    ));
    let e = err("listener 9001\nprotocol mqttsn\n");
    assert!(e.to_string().contains("MQTT-SN is not supported"), "{e}");
    let e = err("listener 9001\nhttp_dir /var/www\n");
    assert!(e.to_string().contains("protocol websockets"), "{e}");
}

#[test]
fn known_but_unsupported_mosquitto_options_are_errors_not_silence() {
    for (text, needle) in [
        ("connection a\naddress h\ntopic #\nbridge_psk 12ab", "PSK"),
        ("auth_plugin /usr/lib/x.so", "plugins"),
        ("auth_opt_backend x", "plugins"),
        ("psk_hint hint", "PSK"),
        ("ciphers ECDHE", "rustls"),
        ("max_inflight_bytes 1000000", "not implemented"),
        ("listener 0 /tmp/sock", "Unix socket"),
    ] {
        let e = err(&format!("{text}\n"));
        let line = text.lines().count();
        assert!(
            matches!(e, ConfigError::Unsupported { line: l, .. } if l == line),
            "{text}: {e:?}"
        );
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
}

#[test]
fn socket_domain_and_tls_version_reject_unknown_values() {
    let e = err("listener 1\nsocket_domain ipv5\n");
    assert!(e.to_string().contains("expected ipv4 or ipv6"), "{e}");
    let e = err("listener 1\ntls_version ssl3\n");
    assert!(e.to_string().contains("expected tlsv1.2 or tlsv1.3"), "{e}");
}

#[test]
fn tls_version_1_1_is_accepted_as_tls_1_2_minimum_with_a_warning() {
    let (c, w) = Config::parse_str(
        "listener 8883\ncertfile /c\nkeyfile /k\ntls_version tlsv1.1\n",
        "f",
    )
    .unwrap();
    assert_eq!(
        c.listeners[0].tls.tls_version,
        Some(mqtt_broker_core::config::TlsVersion::Tls12)
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, 4);
}

#[test]
fn per_listener_settings_after_a_security_option_is_an_error() {
    let e = err("allow_anonymous true\nlistener 1883\nper_listener_settings true\n");
    assert!(matches!(e, ConfigError::Conflict { line: 3, .. }));
    assert!(
        e.to_string()
            .contains("must be set before any security option"),
        "{e}"
    );
}

#[test]
fn global_password_file_given_twice_explains_per_listener_settings() {
    let e = err("listener 1883\npassword_file /a\nlistener 8883\npassword_file /b\n");
    assert!(matches!(e, ConfigError::Conflict { line: 4, .. }));
    assert!(e.to_string().contains("per_listener_settings true"), "{e}");
}

#[test]
fn same_listener_twice_is_an_error_naming_the_first() {
    let e = err("listener 1883\nlisten 1\n");
    assert!(matches!(e, ConfigError::UnknownKey { .. }));
    let e = err("listener 1883\nallow_anonymous true\nlistener 1883\n");
    assert!(
        e.to_string()
            .contains("already defined at /etc/mosquitto/conf.d/ssl.conf:1"),
        "{e}"
    );
    // Same port on another address is fine.
    assert!(Config::parse_str("listener 1883 127.0.0.1\nlistener 1883 ::1\n", "f").is_ok());
}

#[test]
fn incomplete_tls_listener_is_an_error_naming_the_listener() {
    let e = err("listener 8883\ncertfile /c\n");
    assert_eq!((e.line(), e.key()), (Some(1), Some("keyfile")));
    let e = err("listener 8883\ncafile /ca\nrequire_certificate true\n");
    assert!(e.to_string().contains("no certfile and keyfile"), "{e}");
    let e = err("listener 8883\ncertfile /c\nkeyfile /k\nrequire_certificate true\n");
    assert!(e.to_string().contains("no cafile or capath"), "{e}");
}

#[test]
fn duplicate_tls_path_in_one_listener_is_an_error() {
    let e = err("listener 8883\ncertfile /a\ncertfile /b\n");
    assert!(matches!(e, ConfigError::Conflict { line: 3, .. }), "{e:?}");
}

#[test]
fn every_ignored_key_loads_with_a_warning_naming_it() {
    for (key, _) in IGNORED_KEYS {
        let (_, warnings) = Config::parse_str(&format!("\n{key} somevalue\n"), "f").unwrap();
        assert_eq!(warnings.len(), 1, "{key}");
        assert_eq!((warnings[0].key.as_str(), warnings[0].line), (*key, 2));
        assert!(warnings[0].message.contains("ignored"), "{key}");
    }
}

#[test]
fn persistence_keys_name_the_file_and_autosave_is_explained() {
    let (c, w) = Config::parse_str("persistence true\n", "f").unwrap();
    assert!(c.persistence && w.is_empty(), "{w:?}");
    assert_eq!(c.persistence_path(), std::path::Path::new("mqtt-broker.db"));
    let (c, w) = Config::parse_str(
        "persistence true\npersistence_location /var/lib/mqtt/\npersistence_file state.db\nautosave_interval 60\n",
        "f",
    )
    .unwrap();
    assert_eq!(
        c.persistence_path(),
        std::path::Path::new("/var/lib/mqtt/state.db")
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].key, "autosave_interval");
    assert!(w[0].message.contains("when it happens"), "{}", w[0]);
}

#[test]
fn listener_options_without_any_listener_warn_about_local_only_mode() {
    let (c, w) = Config::parse_str("certfile /c\nkeyfile /k\n", "f").unwrap();
    assert!(c.local_only);
    assert_eq!(w.len(), 2);
    assert!(w[0].message.contains("local-only"), "{}", w[0]);
}

#[test]
fn per_listener_acl_before_first_listener_warns_it_is_unused() {
    let (_, w) = Config::parse_str(
        "per_listener_settings true\nacl_file /a\nlistener 1883\n",
        "f",
    )
    .unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].key, "acl_file");
    assert!(w[0].message.contains("not opened"), "{}", w[0]);
}

#[test]
fn bind_address_after_a_listener_warns_that_it_configures_the_default_listener() {
    let (c, w) = Config::parse_str("listener 8883\nbind_address 127.0.0.1\n", "f").unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].bind_address, None);
    assert_eq!(w[0].key, "bind_address");
}

#[test]
fn invalid_utf8_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.conf");
    std::fs::write(&p, b"listener 1883\ncafile /\xff\n").unwrap();
    let e = Config::load(&p).unwrap_err();
    assert!(matches!(e, ConfigError::NotUtf8 { line: 2, .. }), "{e:?}");
}

#[test]
fn every_supported_and_ignored_key_is_documented() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let supported = mqtt_broker_core::config::SUPPORTED_KEYS.iter().copied();
    for key in supported.chain(IGNORED_KEYS.iter().map(|(k, _)| *k)) {
        assert!(
            doc.contains(&format!("`{key}")),
            "{key} is not in docs/configuration.md"
        );
    }
}
