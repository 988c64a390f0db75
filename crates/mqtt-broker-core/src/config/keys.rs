//! Which keys exist: supported, accepted-and-ignored, and Mosquitto options
//! this broker does not implement. Also the "did you mean" suggestion.

/// Keys this parser understands and applies.
pub const SUPPORTED: &[&str] = &[
    "acl_file",
    "address",
    "addresses",
    "allow_anonymous",
    "allow_zero_length_clientid",
    "auto_id_prefix",
    "bind_address",
    "bridge_alpn",
    "bridge_attempt_unsubscribe",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_tls_version",
    "cafile",
    "capath",
    "certfile",
    "certificate_watch_interval",
    "cleansession",
    "clientid",
    "clientid_prefixes",
    "connection",
    "connection_messages",
    "crlfile",
    "idle_timeout",
    "include_dir",
    "keepalive_interval",
    "keyfile",
    "listener",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "log_type",
    "max_connections",
    "max_inflight_messages",
    "max_keepalive",
    "max_packet_size",
    "max_qos",
    "max_queued_bytes",
    "max_queued_messages",
    "max_subscriptions_per_client",
    "max_topic_alias",
    "maximum_qos",
    "memory_limit",
    "message_size_limit",
    "metrics_listener",
    "mount_point",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password",
    "password_file",
    "per_listener_settings",
    "persistence",
    "persistence_file",
    "persistence_location",
    "persistent_client_expiration",
    "port",
    "protocol",
    "queue_qos0_messages",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "require_certificate",
    "restart_timeout",
    "retain_available",
    "round_robin",
    "socket_domain",
    "start_type",
    "sys_interval",
    "threshold",
    "tls_version",
    "topic",
    "try_private",
    "upgrade_outgoing_qos",
    "use_identity_as_username",
    "use_subject_as_username",
    "use_username_as_clientid",
    "username",
    "write_timeout",
];

/// Keys that are read, checked for a value, and otherwise ignored with a
/// [`Warning`](super::Warning), with the reason given to the user.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "pid_file",
        "no pid file is written; the process supervisor (e.g. systemd) tracks the process",
    ),
    (
        "user",
        "the broker does not change user; run it as the user that should own it",
    ),
    (
        "autosave_interval",
        "with persistence every change is written to the persistence file when it happens, not at intervals",
    ),
    (
        "autosave_on_changes",
        "with persistence every change is written to the persistence file when it happens, not at intervals",
    ),
    (
        "websockets_log_level",
        "WebSocket upgrades that fail are logged like other failed connections, through `tracing`",
    ),
    (
        "websockets_headers_size",
        "the WebSocket upgrade's headers are read whatever their size (within the handshake time-out)",
    ),
    (
        "log_dest",
        "log lines go through `tracing`; the embedding program chooses where they go (laptop-broker: stderr)",
    ),
    (
        "log_facility",
        "log lines go through `tracing`; syslog facilities are not used",
    ),
    (
        "log_timestamp",
        "log lines go through `tracing`, whose subscriber decides on timestamps",
    ),
    (
        "log_timestamp_format",
        "log lines go through `tracing`, whose subscriber decides on timestamps",
    ),
    (
        "set_tcp_nodelay",
        "TCP_NODELAY is always set on accepted sockets",
    ),
    (
        "retry_interval",
        "no longer available in Mosquitto 2 either; QoS 1 and 2 messages are sent again when the client reconnects, as MQTT 3.1.1 and 5.0 require",
    ),
    (
        "allow_duplicate_messages",
        "deprecated in Mosquitto 2.0; overlapping subscriptions follow the MQTT specification",
    ),
];

/// Mosquitto options that exist but are not implemented here; using one is an
/// error, because ignoring it could change security or behaviour.
pub const UNSUPPORTED: &[&str] = &[
    "auth_opt_",
    "auth_plugin",
    "auth_plugin_deny_special_chars",
    "bind_interface",
    "bridge_bind_address",
    "bridge_identity",
    "bridge_psk",
    "bridge_require_ocsp",
    "check_retain_source",
    "ciphers",
    "ciphers_tls1.3",
    "dhparamfile",
    "http_dir",
    "max_inflight_bytes",
    "plugin",
    "plugin_opt_",
    "psk_file",
    "psk_hint",
    "tls_engine",
    "tls_engine_kpass_sha1",
    "tls_keyform",
];

/// Why an unsupported Mosquitto option is refused, in words a user can act on.
pub fn unsupported_reason(key: &str) -> String {
    match key {
        "bridge_psk" | "bridge_identity" => {
            return "TLS-PSK is not supported; give the bridge certificates (bridge_cafile, bridge_certfile, bridge_keyfile)".into()
        }
        "bridge_require_ocsp" => {
            return "OCSP stapling is not checked by this broker's TLS (rustls); remove the option".into()
        }
        "bridge_bind_address" => {
            return "the bridge's outgoing address is chosen by the operating system; remove the option".into()
        }
        _ => {}
    }
    if key.starts_with("auth_") || key.starts_with("plugin") {
        return "plugins are not supported; use password_file and acl_file".into();
    }
    if key.starts_with("psk_") {
        return "TLS-PSK is not supported; use certificates (cafile, certfile, keyfile)".into();
    }
    if key.starts_with("ciphers") || key.starts_with("tls_") || key == "dhparamfile" {
        return "cipher and engine selection is fixed by rustls; remove the option".into();
    }
    if key == "http_dir" {
        return "serving files over HTTP is not supported (MQTT over WebSockets is: protocol websockets); serve the page from a web server".into();
    }
    "this Mosquitto option is not implemented; remove it (see docs/configuration.md)".into()
}

/// The supported or ignored key closest to `key`, if it is a likely typo.
pub fn suggest(key: &str) -> Option<&'static str> {
    let candidates = SUPPORTED
        .iter()
        .copied()
        .chain(IGNORED.iter().map(|(k, _)| *k));
    let max = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggests_nearest_key() {
        assert_eq!(suggest("keyfil"), Some("keyfile"));
        assert_eq!(suggest("allow_anonymus"), Some("allow_anonymous"));
        assert_eq!(suggest("zzzz"), None);
    }
}
