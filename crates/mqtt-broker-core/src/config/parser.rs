//! Line parser for `mosquitto.conf`, following Mosquitto 2.0's `src/conf.c`
//! (`config__read_file_core`) where it matters to the result.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::keys;
use super::{
    Config, ConfigError, ListenerConfig, ListenerProtocol, LogType, Origin, SecurityOptions,
    SocketDomain, TlsVersion, Warning, DEFAULT_PORT,
};
use mqtt_codec::QoS;

/// Largest payload MQTT can carry (Mosquitto's `MQTT_MAX_PAYLOAD`).
const MQTT_MAX_PAYLOAD: i64 = 268_435_455;

/// Turns file bytes into text, naming the line of the first invalid byte.
pub(super) fn decode(bytes: &[u8], file: &str) -> Result<String, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            Err(ConfigError::NotUtf8 {
                file: file.to_owned(),
                line,
            })
        }
    }
}

/// Parses the main configuration text.
pub(super) fn parse(text: &str, file: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut p = Parser::new();
    p.cfg.files.push(file.to_owned());
    p.parse_file(text, file, 0)?;
    p.finish()
}

/// One non-comment line: `key rest`.
pub(super) struct Line<'a> {
    pub(super) file: &'a str,
    pub(super) line: usize,
    pub(super) key: &'a str,
    pub(super) rest: &'a str,
}

impl Line<'_> {
    pub(super) fn origin(&self) -> Origin {
        Origin {
            file: self.file.to_owned(),
            line: self.line,
        }
    }

    pub(super) fn invalid(&self, value: &str, expected: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            file: self.file.to_owned(),
            line: self.line,
            key: self.key.to_owned(),
            value: value.to_owned(),
            expected: expected.into(),
        }
    }

    pub(super) fn conflict(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Conflict {
            file: self.file.to_owned(),
            line: self.line,
            key: self.key.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn unsupported(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Unsupported {
            file: self.file.to_owned(),
            line: self.line,
            key: self.key.to_owned(),
            reason: reason.into(),
        }
    }

    pub(super) fn warning(&self, message: impl Into<String>) -> Warning {
        Warning {
            file: self.file.to_owned(),
            line: self.line,
            key: self.key.to_owned(),
            message: message.into(),
        }
    }

    /// The rest of the line (paths may contain spaces).
    pub(super) fn string(&self, what: &str) -> Result<&str, ConfigError> {
        if self.rest.is_empty() {
            Err(self.invalid("", what))
        } else {
            Ok(self.rest)
        }
    }

    /// A single-word value; a trailing `# comment` is allowed.
    pub(super) fn word(&self, what: &str) -> Result<&str, ConfigError> {
        let mut words = self.rest.split_whitespace();
        let Some(first) = words.next() else {
            return Err(self.invalid("", what));
        };
        match words.next() {
            Some(w) if !w.starts_with('#') => Err(self.invalid(self.rest, what)),
            _ => Ok(first),
        }
    }

    pub(super) fn bool(&self) -> Result<bool, ConfigError> {
        let what = "true or false";
        match self.word(what)? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.invalid(other, what)),
        }
    }

    pub(super) fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        self.int_described(min, max, format!("a whole number from {min} to {max}"))
    }

    /// Like [`Line::int`], with `what` as the expectation in the error.
    pub(super) fn int_described(
        &self,
        min: i64,
        max: i64,
        what: String,
    ) -> Result<i64, ConfigError> {
        let w = self.word(&what)?;
        match i64::from_str(w) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.invalid(w, what)),
        }
    }

    pub(super) fn path(&self) -> Result<PathBuf, ConfigError> {
        self.string("a path").map(PathBuf::from)
    }
}

struct Parser {
    cfg: Config,
    /// Mosquitto's "default listener": `port`, `bind_address` and listener
    /// options written before the first `listener` line.
    default_listener: ListenerConfig,
    /// The default listener will be opened (Mosquitto's condition in
    /// `config__parse_args`: port, bind_address, TLS options, ...).
    default_opened: bool,
    /// Options given to the default listener, for warnings if it is unused.
    default_options: Vec<(String, Origin)>,
    /// Index of the current `listener` section; `None` = default listener.
    current: Option<usize>,
    /// A security option was seen (per_listener_settings must come first).
    security_seen: bool,
    /// First `log_type` line replaces the defaults.
    log_type_seen: bool,
    /// Index of the current `connection` section in `cfg.bridges`.
    bridge: Option<usize>,
    /// Where each bridge's `connection` line is.
    bridge_origins: Vec<Origin>,
    warnings: Vec<Warning>,
}

impl Parser {
    fn new() -> Self {
        let mut cfg = Config {
            listeners: Vec::new(),
            ..Config::default()
        };
        cfg.local_only = true;
        Parser {
            cfg,
            default_listener: ListenerConfig::new(0, None),
            default_opened: false,
            default_options: Vec::new(),
            current: None,
            security_seen: false,
            log_type_seen: false,
            bridge: None,
            bridge_origins: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn parse_file(&mut self, text: &str, file: &str, level: usize) -> Result<(), ConfigError> {
        for (idx, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (key, rest) = match trimmed.split_once(char::is_whitespace) {
                Some((k, r)) => (k, r.trim()),
                None => (trimmed, ""),
            };
            let line = Line {
                file,
                line: idx + 1,
                key,
                rest,
            };
            self.apply(&line, level)?;
        }
        Ok(())
    }

    /// The listener that listener options apply to now.
    fn listener(&mut self, line: &Line<'_>, opens_default: bool) -> &mut ListenerConfig {
        match self.current {
            Some(i) => &mut self.cfg.listeners[i],
            None => {
                if opens_default {
                    self.default_opened = true;
                }
                if self.default_options.is_empty() {
                    self.default_listener.origin = line.origin();
                }
                self.default_options
                    .push((line.key.to_owned(), line.origin()));
                &mut self.default_listener
            }
        }
    }

    /// The auth options that security keys apply to now.
    fn security(&mut self, line: &Line<'_>, opens_default: bool) -> &mut SecurityOptions {
        self.security_seen = true;
        if self.cfg.per_listener_settings {
            &mut self.listener(line, opens_default).security
        } else {
            &mut self.cfg.security
        }
    }

    fn set_security_path(
        &mut self,
        line: &Line<'_>,
        get: fn(&mut SecurityOptions) -> &mut Option<PathBuf>,
    ) -> Result<(), ConfigError> {
        let value = line.path()?;
        let per_listener = self.cfg.per_listener_settings;
        let opens_default = line.key == "password_file";
        let slot = get(self.security(line, opens_default));
        if slot.is_some() {
            return Err(if per_listener {
                line.conflict("given twice for the same listener; keep one")
            } else {
                line.conflict(
                    "given twice; with per_listener_settings false (the default) it applies to \
                     all listeners, so set it once, or put 'per_listener_settings true' before \
                     it to give each listener its own",
                )
            });
        }
        *slot = Some(value);
        Ok(())
    }

    fn set_tls_path(
        &mut self,
        line: &Line<'_>,
        get: fn(&mut super::TlsOptions) -> &mut Option<PathBuf>,
    ) -> Result<(), ConfigError> {
        let value = line.path()?;
        let slot = get(&mut self.listener(line, true).tls);
        if slot.is_some() {
            return Err(line.conflict("given twice for the same listener; keep one"));
        }
        *slot = Some(value);
        Ok(())
    }

    fn apply(&mut self, line: &Line<'_>, level: usize) -> Result<(), ConfigError> {
        if line.key == "connection" {
            return self.connection_line(line);
        }
        if super::bridge::is_bridge_key(line.key) {
            let Some(i) = self.bridge else {
                return Err(
                    line.conflict("is a bridge option; it belongs after a 'connection NAME' line")
                );
            };
            let (bridge, warnings) = (&mut self.cfg.bridges[i], &mut self.warnings);
            return super::bridge::apply(bridge, line, warnings);
        }
        match line.key {
            "listener" => self.listener_line(line)?,
            "metrics_listener" => self.metrics_listener_line(line)?,
            "port" => {
                let port = line.int(1, 65535)? as u16;
                self.cfg.local_only = false;
                if self.default_listener.port != 0 {
                    self.warnings.push(
                        line.warning("port is given more than once; only the last one is used"),
                    );
                }
                if self.current.is_some() {
                    self.warnings.push(line.warning(format!(
                        "'port' configures the default listener, not the 'listener' section \
                         above it; this opens port {port} as well (use 'listener {port}' to \
                         make that explicit)"
                    )));
                }
                let saved = self.current.take();
                self.listener(line, true).port = port;
                self.current = saved;
            }
            "bind_address" => {
                let addr = line.word("an address or host name")?.to_owned();
                self.cfg.local_only = false;
                if self.current.is_some() {
                    self.warnings.push(line.warning(
                        "'bind_address' configures the default listener (from 'port'), not the \
                         'listener' section above it; use 'listener PORT ADDRESS' instead",
                    ));
                }
                let saved = self.current.take();
                let l = self.listener(line, true);
                let dup = l.bind_address.is_some();
                l.bind_address = Some(addr);
                self.current = saved;
                if dup {
                    return Err(line.conflict("given twice; keep one"));
                }
            }
            "include_dir" => self.include_dir(line, level)?,
            "per_listener_settings" => {
                let v = line.bool()?;
                if v && self.security_seen {
                    return Err(line.conflict(
                        "must be set before any security option (allow_anonymous, \
                         password_file, acl_file, allow_zero_length_clientid, auto_id_prefix); move it to the \
                         top of the main file",
                    ));
                }
                self.cfg.per_listener_settings = v;
            }
            "allow_anonymous" => {
                let v = line.bool()?;
                self.security(line, false).allow_anonymous = Some(v);
            }
            "allow_zero_length_clientid" => {
                let v = line.bool()?;
                let opens = !v;
                self.security(line, opens).allow_zero_length_clientid = Some(v);
            }
            "auto_id_prefix" => {
                let v = line.string("a prefix")?.to_string();
                // Mosquitto: a non-default security option opens the
                // default listener.
                self.security(line, true).auto_id_prefix = Some(v);
            }
            "clientid_prefixes" => {
                self.cfg.clientid_prefixes = Some(line.string("a prefix")?.to_string());
                self.warnings.push(line.warning(
                    "'clientid_prefixes' is deprecated in Mosquitto 2 (an acl_file or a \
                     password_file is the lasting way to keep clients out); it is honoured: \
                     clients whose identifier does not start with it are refused",
                ));
            }
            "max_qos" | "maximum_qos" => {
                let q = match line.int(0, 2)? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                };
                self.listener(line, q != QoS::ExactlyOnce).max_qos = q;
            }
            "mount_point" => {
                let what = "a topic prefix without wildcards, such as 'tenant-a/'";
                let m = line.string(what)?.to_string();
                if mqtt_codec::TopicName::try_from(m.as_str()).is_err() {
                    return Err(line.invalid(&m, what));
                }
                self.listener(line, true).mount_point = Some(m);
            }
            "use_username_as_clientid" => {
                let v = line.bool()?;
                self.listener(line, v).use_username_as_clientid = v;
            }
            "password_file" => self.set_security_path(line, |s| &mut s.password_file)?,
            "acl_file" => self.set_security_path(line, |s| &mut s.acl_file)?,
            "cafile" => self.set_tls_path(line, |t| &mut t.cafile)?,
            "capath" => self.set_tls_path(line, |t| &mut t.capath)?,
            "certfile" => self.set_tls_path(line, |t| &mut t.certfile)?,
            "keyfile" => self.set_tls_path(line, |t| &mut t.keyfile)?,
            "crlfile" => self.set_tls_path(line, |t| &mut t.crlfile)?,
            "require_certificate" => {
                let v = line.bool()?;
                self.listener(line, true).tls.require_certificate = v;
            }
            "use_identity_as_username" => {
                let v = line.bool()?;
                self.listener(line, true).tls.use_identity_as_username = v;
            }
            "use_subject_as_username" => {
                let v = line.bool()?;
                self.listener(line, true).tls.use_subject_as_username = v;
            }
            "tls_version" => {
                let what = "tlsv1.2 or tlsv1.3";
                let w = line.word(what)?;
                let v = match w {
                    "tlsv1.3" => TlsVersion::Tls13,
                    "tlsv1.2" => TlsVersion::Tls12,
                    "tlsv1.1" | "tlsv1" => {
                        self.warnings.push(line.warning(format!(
                            "tls_version {w}: TLS 1.1 and older are not available (rustls); \
                             the minimum is TLS 1.2"
                        )));
                        TlsVersion::Tls12
                    }
                    other => return Err(line.invalid(other, what)),
                };
                let l = self.listener(line, false);
                let dup = l.tls.tls_version.is_some();
                l.tls.tls_version = Some(v);
                if dup {
                    return Err(line.conflict("given twice for the same listener; keep one"));
                }
            }
            "max_connections" => {
                // Mosquitto: any negative number means no limit.
                let n = line.int_described(
                    i64::MIN,
                    u32::MAX as i64,
                    format!(
                        "a number of connections up to {}, or -1 for no limit",
                        u32::MAX
                    ),
                )?;
                self.listener(line, true).max_connections = u32::try_from(n).ok();
            }
            "max_topic_alias" => {
                let n = line.int(0, 65535)? as u16;
                self.listener(line, false).max_topic_alias = n;
            }
            "socket_domain" => {
                let what = "ipv4 or ipv6";
                let d = match line.word(what)? {
                    "ipv4" => SocketDomain::Ipv4,
                    "ipv6" => SocketDomain::Ipv6,
                    other => return Err(line.invalid(other, what)),
                };
                self.listener(line, true).socket_domain = Some(d);
            }
            "protocol" => {
                let protocol = match line.word("mqtt or websockets")? {
                    "mqtt" => ListenerProtocol::Mqtt,
                    "websockets" => ListenerProtocol::Websockets,
                    "mqttsn" => return Err(line.unsupported("MQTT-SN is not supported")),
                    other => return Err(line.invalid(other, "mqtt or websockets")),
                };
                // It shapes a listener; by itself it does not open the
                // default one.
                self.listener(line, false).protocol = protocol;
            }
            "max_keepalive" => self.cfg.max_keepalive = line.int(0, 65535)? as u16,
            "message_size_limit" => {
                self.cfg.message_size_limit = line.int(0, MQTT_MAX_PAYLOAD)? as u32
            }
            "max_packet_size" => {
                self.cfg.max_packet_size = Some(line.int(20, MQTT_MAX_PAYLOAD + 5)? as u32)
            }
            "max_inflight_messages" => {
                let n = line.int(i64::MIN, 65535)?;
                // Mosquitto: negative or 65535 means no maximum (0).
                self.cfg.max_inflight_messages = if n < 0 || n == 65535 { 0 } else { n as u16 };
            }
            "max_queued_messages" => {
                self.cfg.max_queued_messages = line.int(i64::MIN, u32::MAX as i64)?.max(0) as u32
            }
            "max_queued_bytes" => {
                self.cfg.max_queued_bytes = line.int(i64::MIN, i64::MAX)?.max(0) as u64
            }
            // Plain bytes, as Mosquitto reads it; negative is an error there too.
            "memory_limit" => {
                self.cfg.memory_limit =
                    line.int_described(0, i64::MAX, "a number of bytes (0 = no limit)".into())?
                        as u64
            }
            "queue_qos0_messages" => self.cfg.queue_qos0_messages = line.bool()?,
            "retain_available" => self.cfg.retain_available = line.bool()?,
            "connection_messages" => self.cfg.connection_messages = line.bool()?,
            "upgrade_outgoing_qos" => self.cfg.upgrade_outgoing_qos = line.bool()?,
            "persistence" | "retained_persistence" => self.cfg.persistence = line.bool()?,
            "persistence_location" => self.cfg.persistence_location = Some(line.path()?),
            "persistence_file" => {
                self.cfg.persistence_file = Some(line.string("a file name")?.to_string())
            }
            "persistent_client_expiration" => {
                self.cfg.persistent_client_expiration = Some(parse_expiration(line)?)
            }
            "sys_interval" => self.cfg.sys_interval = line.int(0, 65535)? as u16,
            "certificate_watch_interval" => {
                self.cfg.certificate_watch_interval = match line.int(0, 86_400)? {
                    0 => None,
                    s => Some(Duration::from_secs(s as u64)),
                }
            }
            "max_subscriptions_per_client" => {
                self.cfg.max_subscriptions_per_client = line.int(0, u32::MAX as i64)? as u32
            }
            "write_timeout" => {
                self.cfg.write_timeout = Some(Duration::from_secs(line.int(1, 86_400)? as u64))
            }
            "log_type" => {
                let what = "none, information, notice, warning, error, debug, subscribe, \
                            unsubscribe, websockets, internal or all";
                let w = line.word(what)?;
                if !self.log_type_seen {
                    self.cfg.log_types.clear();
                    self.log_type_seen = true;
                }
                let add: &[LogType] = match w {
                    "none" => {
                        self.cfg.log_types.clear();
                        &[]
                    }
                    "information" => &[LogType::Information],
                    "notice" => &[LogType::Notice],
                    "warning" => &[LogType::Warning],
                    "error" => &[LogType::Error],
                    "debug" => &[LogType::Debug],
                    "subscribe" => &[LogType::Subscribe],
                    "unsubscribe" => &[LogType::Unsubscribe],
                    "websockets" => &[LogType::Websockets],
                    "internal" => &[LogType::Internal],
                    "all" => &LogType::ALL,
                    other => return Err(line.invalid(other, what)),
                };
                self.cfg.log_types.extend(add.iter().copied());
            }
            key => {
                if let Some((_, reason)) = keys::IGNORED.iter().find(|(k, _)| *k == key) {
                    line.string("a value")?;
                    self.warnings
                        .push(line.warning(format!("'{key}' is ignored: {reason}")));
                } else if keys::UNSUPPORTED.contains(&key)
                    || key.starts_with("auth_opt_")
                    || key.starts_with("plugin_opt_")
                {
                    return Err(line.unsupported(keys::unsupported_reason(key)));
                } else {
                    return Err(ConfigError::UnknownKey {
                        file: line.file.to_owned(),
                        line: line.line,
                        key: key.to_owned(),
                        suggestion: keys::suggest(key),
                    });
                }
            }
        }
        Ok(())
    }

    fn connection_line(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let name = line.word("a bridge name")?;
        if let Some(i) = self.cfg.bridges.iter().position(|b| b.name == name) {
            return Err(line.conflict(format!(
                "duplicate bridge name \"{name}\" (the first is at {}); give each connection its own name",
                self.bridge_origins[i]
            )));
        }
        self.cfg
            .bridges
            .push(crate::bridge::BridgeConfig::new(name, Vec::new()));
        self.bridge_origins.push(line.origin());
        self.bridge = Some(self.cfg.bridges.len() - 1);
        Ok(())
    }

    fn metrics_listener_line(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let what = "'metrics_listener PORT [BIND_ADDRESS]' with PORT from 1 to 65535";
        let mut words = line
            .rest
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'));
        let port_s = words.next().ok_or_else(|| line.invalid("", what))?;
        let port = match u16::from_str(port_s) {
            Ok(p) if p != 0 => p,
            _ => return Err(line.invalid(port_s, what)),
        };
        let bind_address = words.next().map(str::to_owned);
        if let Some(extra) = words.next() {
            return Err(line.invalid(extra, what));
        }
        if let Some(prev) = &self.cfg.metrics_listener {
            return Err(line.conflict(format!(
                "a metrics_listener is already defined at {}; keep one",
                prev.origin
            )));
        }
        self.cfg.metrics_listener = Some(super::MetricsListener {
            port,
            bind_address,
            origin: line.origin(),
        });
        Ok(())
    }

    fn listener_line(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let what = "'listener PORT [ADDRESS]' with PORT from 1 to 65535";
        let mut words = line.rest.split_whitespace();
        let port_s = words.next().ok_or_else(|| line.invalid("", what))?;
        let port = match u16::from_str(port_s) {
            Ok(0) => {
                return Err(line.unsupported(
                    "port 0 (a Unix socket listener) is not supported; give a TCP port",
                ))
            }
            Ok(p) => p,
            Err(_) => return Err(line.invalid(port_s, what)),
        };
        let address = match words.next() {
            Some(w) if w.starts_with('#') => None,
            Some(w) => {
                if let Some(extra) = words.next().filter(|x| !x.starts_with('#')) {
                    return Err(line.invalid(extra, what));
                }
                Some(w.to_owned())
            }
            None => None,
        };
        if let Some(prev) = self
            .cfg
            .listeners
            .iter()
            .find(|l| l.port == port && l.bind_address == address)
        {
            return Err(line.conflict(format!(
                "a listener on port {port}{} is already defined at {}",
                address
                    .as_deref()
                    .map(|a| format!(" {a}"))
                    .unwrap_or_default(),
                prev.origin
            )));
        }
        let mut l = ListenerConfig::new(port, address);
        l.origin = line.origin();
        self.cfg.listeners.push(l);
        self.current = Some(self.cfg.listeners.len() - 1);
        self.cfg.local_only = false;
        Ok(())
    }

    fn include_dir(&mut self, line: &Line<'_>, level: usize) -> Result<(), ConfigError> {
        let dir = line.path()?;
        if level > 0 {
            // Mosquitto only follows include_dir in the main file.
            self.warnings.push(line.warning(
                "include_dir is ignored in an included file (Mosquitto only follows it in the \
                 main config file)",
            ));
            return Ok(());
        }
        let include_err = |path: &Path, source| ConfigError::Include {
            file: line.file.to_owned(),
            line: line.line,
            path: path.to_owned(),
            source,
        };
        let entries = std::fs::read_dir(&dir).map_err(|e| include_err(&dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| include_err(&dir, e))?;
            let name = entry.file_name();
            // Mosquitto: names longer than ".conf" ending in ".conf",
            // sorted byte-wise (strcmp).
            if let Some(n) = name.to_str() {
                if n.len() > 5 && n.ends_with(".conf") {
                    names.push(n.to_owned());
                }
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| include_err(&path, e))?;
            let file = path.display().to_string();
            let text = decode(&bytes, &file)?;
            self.cfg.files.push(file.clone());
            self.parse_file(&text, &file, level + 1)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(Config, Vec<Warning>), ConfigError> {
        let default_used = !self.default_options.is_empty();
        if self.cfg.local_only {
            for (key, origin) in &self.default_options {
                self.warnings.push(Warning {
                    file: origin.file.clone(),
                    line: origin.line,
                    key: key.clone(),
                    message: format!(
                        "'{key}' has no effect: no 'listener' is defined, so the broker runs in \
                         local-only mode (127.0.0.1 and ::1, port 1883); add a 'listener' line \
                         before it"
                    ),
                });
            }
            self.cfg.listeners = Config::local_only_listeners(DEFAULT_PORT);
        } else if self.default_opened {
            let mut l = self.default_listener;
            if l.port == 0 {
                l.port = DEFAULT_PORT;
            }
            self.cfg.listeners.push(l);
        } else if default_used {
            for (key, origin) in &self.default_options {
                self.warnings.push(Warning {
                    file: origin.file.clone(),
                    line: origin.line,
                    key: key.clone(),
                    message: format!(
                        "'{key}' is written before the first 'listener' line, so it applies to \
                         the default listener, which is not opened; move it below a 'listener' \
                         line"
                    ),
                });
            }
        }
        for l in &self.cfg.listeners {
            check_tls(l)?;
        }
        super::bridge::check(&self.cfg.bridges, &self.bridge_origins)?;
        Ok((self.cfg, self.warnings))
    }
}

fn check_tls(l: &ListenerConfig) -> Result<(), ConfigError> {
    let t = &l.tls;
    let conflict = |key: &str, message: String| ConfigError::Conflict {
        file: l.origin.file.clone(),
        line: l.origin.line,
        key: key.to_owned(),
        message,
    };
    let name = format!("listener on port {} (defined at {})", l.port, l.origin);
    match (&t.certfile, &t.keyfile) {
        (Some(_), None) => {
            return Err(conflict(
                "keyfile",
                format!("{name} has a certfile but no keyfile; TLS needs both"),
            ))
        }
        (None, Some(_)) => {
            return Err(conflict(
                "certfile",
                format!("{name} has a keyfile but no certfile; TLS needs both"),
            ))
        }
        (None, None) => {
            let tls_only = [
                ("cafile", t.cafile.is_some()),
                ("capath", t.capath.is_some()),
                ("crlfile", t.crlfile.is_some()),
                ("require_certificate", t.require_certificate),
                ("use_identity_as_username", t.use_identity_as_username),
                ("use_subject_as_username", t.use_subject_as_username),
            ];
            if let Some((key, _)) = tls_only.iter().find(|(_, set)| *set) {
                return Err(conflict(
                    key,
                    format!(
                        "{name} sets {key} but has no certfile and keyfile, so it would not use \
                         TLS; add certfile and keyfile"
                    ),
                ));
            }
        }
        (Some(_), Some(_)) => {
            if t.require_certificate && t.cafile.is_none() && t.capath.is_none() {
                return Err(conflict(
                    "require_certificate",
                    format!(
                        "{name} has require_certificate true but no cafile or capath to verify \
                         client certificates with; add cafile"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `persistent_client_expiration`: a positive number followed by `h`, `d`,
/// `w`, `m` (30 days) or `y` (365 days), as in Mosquitto.
fn parse_expiration(line: &Line<'_>) -> Result<Duration, ConfigError> {
    let what = "a positive number followed by h (hours), d (days), w (weeks), m (months) or y \
                (years), e.g. 14d";
    let w = line.word(what)?;
    let (num, unit) = w.split_at(w.len() - w.chars().last().map_or(0, char::len_utf8));
    let mult: u64 = match unit {
        "h" => 3600,
        "d" => 86_400,
        "w" => 86_400 * 7,
        "m" => 86_400 * 30,
        "y" => 86_400 * 365,
        _ => return Err(line.invalid(w, what)),
    };
    match u64::from_str(num) {
        Ok(n) if n > 0 => n
            .checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| line.invalid(w, what)),
        _ => Err(line.invalid(w, what)),
    }
}
