//! What `pi-subscriber` and `publisher` share: Mosquitto's TLS flags, `-V`,
//! `-L`, `-D`, `-d`, the will, and how errors are printed and turned into
//! exit codes.

// Each example uses what it needs of this file.
#![allow(dead_code)]

use mqtt_client::{
    ClientOptions, ClientTlsOptions, Error, Packet, PacketDirection, ProtocolVersion,
    PublishProperties, QoS, TopicName,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, Ordering};

/// `--cafile --capath --cert --key --insecure`, as mosquitto_sub/pub take them.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// CA certificates to verify the broker with (turns TLS on).
    #[arg(long)]
    pub cafile: Option<PathBuf>,
    /// Directory of CA certificates (turns TLS on).
    #[arg(long)]
    pub capath: Option<PathBuf>,
    /// Client certificate (needs --key and --cafile/--capath).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client private key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Do not check that the broker's certificate names the host dialled.
    #[arg(long)]
    pub insecure: bool,
    /// Lowest TLS version: tlsv1.3 or tlsv1.2 (the default); rustls has no tlsv1.1.
    #[arg(long = "tls-version", value_parser = parse_tls_version)]
    pub tls_version: Option<mqtt_tls::TlsVersion>,
    /// Trust the public CAs (webpki-roots, built in; not read from the OS store).
    #[arg(long = "tls-use-os-certs")]
    pub tls_use_os_certs: bool,
}

/// `--help`: mosquitto_sub's / mosquitto_pub's layout. `intro` and `usage`
/// are printed as given; each option is ` FLAGS : text`, further lines of
/// its text (separated by `\n`) indented as in mosquitto's entry for the
/// first flag; `outro` follows after a blank line.
pub fn format_help(intro: &str, usage: &str, options: &[(&str, &str)], outro: &str) -> String {
    let mut out = format!("{intro}\n\n{usage}\n\n");
    for (flags, text) in options {
        // Under the text of mosquitto's entry, which names only the first
        // flag (` -c : `); our long form follows on the first line only.
        let first = flags.split(", ").next().unwrap_or(flags);
        let indent = " ".repeat(first.len() + 4);
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                out.push_str(&format!(" {flags} : {line}\n"));
            } else {
                out.push_str(&format!("{indent}{line}\n"));
            }
        }
    }
    out.push('\n');
    out.push_str(outro);
    out.push('\n');
    out
}

/// The option-list text both tools share, in mosquitto's words where the
/// behaviour is the same and ours where it is not.
pub mod help {
    /// The will and TLS entries, last in both tools' lists, in mosquitto's order.
    pub const WILL_AND_TLS: &[(&str, &str)] = &[
        ("--will-payload", WILL_PAYLOAD),
        ("--will-qos", WILL_QOS),
        ("--will-retain", WILL_RETAIN),
        ("--will-topic", WILL_TOPIC),
        ("--cafile", CAFILE),
        ("--capath", CAPATH),
        ("--cert", CERT),
        ("--key", KEY),
        ("--tls-version", TLS_VERSION),
        ("--insecure", INSECURE),
        ("--tls-use-os-certs", TLS_USE_OS_CERTS),
    ];

    /// `-D`.
    pub const PROPERTY: &str = "Define MQTT v5 properties: -D command identifier value,
e.g. -D publish content-type text/plain. Supported: connect user-property;
publish user-property, content-type, message-expiry-interval, response-topic,
correlation-data, payload-format-indicator; subscribe subscription-identifier,
user-property; unsubscribe user-property. Implies -V mqttv5 unless a -V comes after it.";
    /// `-h`.
    pub const HOST: &str = "mqtt host to connect to. Defaults to localhost.";
    /// `-I`.
    pub const ID_PREFIX: &str =
        "define the client id as id_prefix appended with the process id. Useful for when the
broker is using the clientid_prefixes option.";
    /// `-k`.
    pub const KEEPALIVE: &str = "keep alive in seconds for this client. Defaults to 60.";
    /// `-L`.
    pub const URL: &str = "specify user, password, hostname, port and topic as a URL in the form:
mqtt(s)://[username[:password]@]host[:port]/topic
mqtts:// uses TLS, port 8883 unless the URL gives one, and trusts the public CAs
built in (webpki-roots) as well as --cafile/--capath.";
    /// `-p`.
    pub const PORT: &str =
        "network port to connect to. Defaults to 1883 for plain MQTT and 8883 for MQTT over TLS
(--cafile or --capath; -L mqtts:// without a port).";
    /// `-P`.
    pub const PASSWORD: &str = "provide a password";
    /// `-u`.
    pub const USERNAME: &str = "provide a username";
    /// `-V`.
    pub const VERSION: &str = "specify the version of the MQTT protocol to use when connecting.
Can be mqttv5, mqttv311 or mqttv31. Defaults to mqttv311.";
    /// `--help`.
    pub const HELP: &str = "display this message.";
    /// `--nodelay`.
    pub const NODELAY: &str =
        "disable Nagle's algorithm, to reduce socket sending latency at the possible
expense of more packets being sent. This client always disables it.";
    /// `--will-payload`.
    pub const WILL_PAYLOAD: &str =
        "payload for the client Will, which is sent by the broker in case of
unexpected disconnection. If not given and will-topic is set, a zero
length message will be sent.";
    /// `--will-qos`.
    pub const WILL_QOS: &str = "QoS level for the client Will.";
    /// `--will-retain`.
    pub const WILL_RETAIN: &str = "if given, make the client Will retained.";
    /// `--will-topic`.
    pub const WILL_TOPIC: &str = "the topic on which to publish the client Will.";
    /// `--cafile`.
    pub const CAFILE: &str = "path to a file containing trusted CA certificates to enable encrypted
certificate based communication.";
    /// `--capath`.
    pub const CAPATH: &str =
        "path to a directory containing trusted CA certificates to enable encrypted
communication.";
    /// `--cert`.
    pub const CERT: &str = "client certificate for authentication, if required by server.
Needs --cafile, --capath or -L mqtts://: without a trust source this program stops
with an error instead of connecting without TLS.";
    /// `--key`.
    pub const KEY: &str = "client private key for authentication, if required by server.";
    /// `--tls-version`.
    pub const TLS_VERSION: &str =
        "TLS protocol version, can be one of tlsv1.3 or tlsv1.2 (the lowest version
accepted; tlsv1.1 is not supported). Defaults to tlsv1.2.";
    /// `--insecure`.
    pub const INSECURE: &str =
        "do not check that the server certificate hostname matches the remote
hostname. Using this option means that you cannot be sure that the
remote host is the server you wish to connect to and so is insecure.
Do not use this option in a production environment.";
    /// `--tls-use-os-certs`.
    pub const TLS_USE_OS_CERTS: &str =
        "Load and trust the public CA certificates built into this program
(webpki-roots); the OS store is not read.";
}

fn parse_tls_version(s: &str) -> Result<mqtt_tls::TlsVersion, String> {
    match s {
        "tlsv1.3" => Ok(mqtt_tls::TlsVersion::Tls13),
        "tlsv1.2" => Ok(mqtt_tls::TlsVersion::Tls12),
        "tlsv1.1" | "tlsv1" => Err(format!(
            "{s} is not supported (rustls speaks TLS 1.2 and 1.3); use tlsv1.2 or tlsv1.3"
        )),
        _ => Err(format!("unknown TLS version {s:?}; use tlsv1.3 or tlsv1.2")),
    }
}

impl TlsArgs {
    /// Whether any TLS flag was given (then the connection uses TLS).
    pub fn enabled(&self) -> bool {
        self.cafile.is_some()
            || self.capath.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.insecure
            || self.tls_use_os_certs
    }

    /// The port without `-p`: 8883 with --cafile or --capath, else 1883, as
    /// mosquitto_sub 2.0.11 (--tls-use-os-certs alone turns TLS on but
    /// keeps 1883).
    pub fn default_port(&self) -> u16 {
        if self.cafile.is_some() || self.capath.is_some() {
            8883
        } else {
            1883
        }
    }

    /// The mqtt-tls options; mqtt-tls refuses --cert without --cafile/--capath,
    /// saying what to add, so nothing silently falls back to plain TCP.
    pub fn options(&self) -> ClientTlsOptions {
        let mut tls = ClientTlsOptions::new()
            .insecure(self.insecure)
            .use_webpki_roots(self.tls_use_os_certs)
            .min_version(self.tls_version.unwrap_or_default());
        // Optional flags: the public fields take the `Option`s as they are.
        tls.cafile = self.cafile.clone();
        tls.capath = self.capath.clone();
        tls.certfile = self.cert.clone();
        tls.keyfile = self.key.clone();
        tls
    }
}

/// `-V`: mqttv311 (311), mqttv5 (5) or mqttv31 (31), as mosquitto_sub.
pub fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "mqttv311" | "311" => Ok(ProtocolVersion::V3_1_1),
        "mqttv5" | "5" => Ok(ProtocolVersion::V5),
        "mqttv31" | "31" => Ok(ProtocolVersion::V3_1),
        _ => Err(format!(
            "invalid protocol version {s:?}; use mqttv311 (311), mqttv5 (5) or mqttv31 (31)"
        )),
    }
}

/// The exit code mosquitto_sub/mosquitto_pub use for an error: the CONNACK
/// code for a refusal, 1 otherwise.
pub fn exit_code(err: &Error, version: ProtocolVersion) -> ExitCode {
    match err.connack_refusal() {
        Some(rc) if version.is_v5() => ExitCode::from(rc.as_u8()),
        Some(rc) => ExitCode::from(rc.to_v3_connack()),
        None => ExitCode::from(1),
    }
}

/// The libraries' advice names their options (`ClientTlsOptions::cafile`,
/// the client options' `username`); on this command line those are flags.
/// Most specific first: whole phrases, then the option names alone.
const CLI_WORDS: &[(&str, &str)] = &[
    (
        "set `ClientTlsOptions::certfile` and `ClientTlsOptions::keyfile` to client.crt and client.key",
        "pass --cert client.crt --key client.key",
    ),
    (
        "set `ClientTlsOptions::cafile` to the ca.crt that signed the broker's certificate",
        "pass the ca.crt that signed the broker's certificate with --cafile",
    ),
    (
        "connect with TLS: set `ClientTlsOptions::cafile` to ca.crt (and `certfile`/`keyfile` when",
        "add --cafile ca.crt (and --cert/--key when",
    ),
    ("set `ClientTlsOptions::cafile` to ca.crt", "add --cafile ca.crt"),
    (
        "`ClientTlsOptions::capath` to a directory of CA certificates",
        "--capath DIR",
    ),
    (
        "set `ClientTlsOptions::use_webpki_roots` to trust the public CAs",
        "give --tls-use-os-certs to trust the public CAs",
    ),
    ("(`username` and `password` in the client options)", "(-u/-P)"),
    (
        "a client certificate (`ClientTlsOptions::certfile` and `keyfile`)",
        "a client certificate (--cert/--key)",
    ),
    ("verified your client certificate", "verified your --cert"),
    ("(`client_id` in the client options)", "(-i)"),
    ("(`protocol` in the client options: 3.1.1 or 5.0)", "(-V 311 or -V 5)"),
    ("(the host and port of the client options)", "(-h, -p)"),
    ("connect with host ", "connect with -h "),
    (" (the host of the client options) or re-issue", " or re-issue"),
    ("TLS port (usually 8883)", "TLS port (usually -p 8883)"),
    ("`ClientTlsOptions::certfile`", "--cert"),
    ("`ClientTlsOptions::keyfile`", "--key"),
    ("`ClientTlsOptions::cafile`", "--cafile"),
    ("`ClientTlsOptions::capath`", "--capath"),
];

/// A library message in this command line's words (see [`CLI_WORDS`]).
pub fn cli_words(message: &str) -> String {
    CLI_WORDS
        .iter()
        .fold(message.to_string(), |text, (library, flags)| {
            text.replace(library, flags)
        })
}

/// Prints an error the way Mosquitto's clients do, with our explanation
/// (in the command line's words).
pub fn report(err: &Error) {
    let text = cli_words(&err.to_string());
    if err.connack_refusal().is_some() {
        eprintln!("Connection error: {text}");
    } else {
        eprintln!("Error: {text}");
    }
}

/// Parses the flags and runs `run` on a current-thread runtime, with
/// Mosquitto's exit code 1 for a usage error (clap would use 2). `run` also
/// gets which flags `-L` overrides (the order they were given in).
pub fn main_with<A, F>(run: impl FnOnce(A, UrlPrecedence) -> F) -> ExitCode
where
    A: clap::Parser,
    F: std::future::Future<Output = ExitCode>,
{
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if property_implies_v5(&argv) {
        // mosquitto's `-D` sets MQTT 5.0, unless a `-V` comes after it: as
        // if `-V mqttv5` were given last.
        argv.extend(["-V".into(), "mqttv5".into()]);
    }
    // A flag given twice: the last one counts, as mosquitto reads them.
    let parsed = A::command()
        .args_override_self(true)
        .try_get_matches_from(argv)
        .and_then(|m| Ok((A::from_arg_matches(&m)?, UrlPrecedence::from_matches(&m))));
    let (args, precedence) = match parsed {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // mosquitto_sub/pub exit 1 after --help too (usage on stdout).
            let help = e.kind() == clap::error::ErrorKind::DisplayHelp;
            return ExitCode::from(u8::from(e.use_stderr() || help));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args, precedence))
}

/// Whether a `-D` property comes after the last `-V` (or there is no `-V`):
/// mosquitto's clients then speak MQTT 5.0.
pub fn property_implies_v5(argv: &[std::ffi::OsString]) -> bool {
    let position = |names: &[&str]| {
        argv.iter().rposition(|a| {
            let a = a.to_string_lossy();
            names
                .iter()
                .any(|n| a == *n || (n.starts_with("--") && a.starts_with(&format!("{n}="))))
                || (names.contains(&"-V") && a.starts_with("-V") && a.len() > 2)
        })
    };
    match position(&["-D", "--property"]) {
        None => false,
        Some(d) => position(&["-V", "--protocol-version"]).is_none_or(|v| v < d),
    }
}

/// Which of `-h`, `-p`, `-u`, `-P` the URL of `-L` replaces. mosquitto
/// reads its flags in order, each setting what it names, so whichever of
/// `-L` and `-h` (say) comes last wins; a flag not given is always
/// replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlPrecedence {
    /// The URL's host over `-h`.
    pub host: bool,
    /// The URL's port (or 1883/8883) over `-p`.
    pub port: bool,
    /// The URL's user name, if it has one, over `-u`.
    pub username: bool,
    /// The URL's password, if it has one, over `-P`.
    pub password: bool,
}

impl Default for UrlPrecedence {
    /// The URL replaces flags not given.
    fn default() -> Self {
        UrlPrecedence {
            host: true,
            port: true,
            username: true,
            password: true,
        }
    }
}

impl UrlPrecedence {
    /// From the positions of `url`, `host`, `port`, `username` and
    /// `password` (the argument ids both tools use) on the command line.
    pub fn from_matches(m: &clap::ArgMatches) -> Self {
        // Only what the command line gave (not -h's default).
        let last = |id: &str| {
            (m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
                .then(|| m.indices_of(id).and_then(|i| i.max()))
                .flatten()
        };
        let url = last("url");
        let after = |id: &str| url > last(id);
        UrlPrecedence {
            host: after("host"),
            port: after("port"),
            username: after("username"),
            password: after("password"),
        }
    }
}

/// `-L mqtt(s)://[username[:password]@]host[:port]/topic`, as Mosquitto's
/// clients read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `mqtts://`: TLS, trusting the public CAs unless --cafile/--capath.
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub host: String,
    /// The port, or 1883 (mqtt://) / 8883 (mqtts://).
    pub port: u16,
    pub topic: String,
}

/// Parses `-L`'s URL, with mosquitto's error messages.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let lower = url.to_ascii_lowercase();
    let (tls, rest) = if lower.starts_with("mqtt://") {
        (false, &url[7..])
    } else if lower.starts_with("mqtts://") {
        (true, &url[8..])
    } else {
        return Err("Error: unsupported URL scheme.".into());
    };
    let Some((authority, topic)) = rest.split_once('/') else {
        return Err("Error: Invalid URL for -L argument specified - topic missing.".into());
    };
    let (credentials, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (username, password) = match credentials {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(c.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("Error: Invalid port given: {p}"))?;
            (h.to_string(), port)
        }
        _ => (hostport.to_string(), if tls { 8883 } else { 1883 }),
    };
    Ok(Url {
        tls,
        username,
        password,
        host,
        port,
        topic: topic.to_string(),
    })
}

/// `--will-topic --will-payload --will-qos --will-retain`.
#[derive(clap::Args, Debug, Clone)]
pub struct WillArgs {
    /// Topic of the client's will, published by the broker if the client
    /// disconnects unexpectedly.
    #[arg(long = "will-topic")]
    pub will_topic: Option<String>,
    /// Payload of the will (default: a zero length message).
    #[arg(long = "will-payload")]
    pub will_payload: Option<String>,
    /// QoS of the will.
    #[arg(long = "will-qos", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub will_qos: u8,
    /// Make the will retained.
    #[arg(long = "will-retain")]
    pub will_retain: bool,
}

impl WillArgs {
    /// Adds the will to `o`; mosquitto's errors for a will without a topic.
    pub fn apply(&self, o: ClientOptions) -> Result<ClientOptions, String> {
        let Some(topic) = &self.will_topic else {
            if self.will_payload.is_some() {
                return Err("Error: Will payload given, but no will topic given.".into());
            }
            if self.will_retain {
                return Err("Error: Will retain given, but no will topic given.".into());
            }
            return Ok(o);
        };
        let topic = TopicName::try_from(topic.as_str())
            .map_err(|e| format!("Error: Invalid will topic '{topic}': {e}."))?;
        let payload = self.will_payload.clone().unwrap_or_default().into_bytes();
        let qos = QoS::from_u8(self.will_qos).unwrap_or_default();
        Ok(o.will(topic, payload, qos, self.will_retain))
    }
}

/// The `-D command identifier value` properties this client can send.
#[derive(Debug, Clone, Default)]
pub struct V5Properties {
    /// `connect user-property`.
    pub connect_user: Vec<(String, String)>,
    /// `publish ...` (user-property, content-type, message-expiry-interval,
    /// response-topic, correlation-data, payload-format-indicator).
    pub publish: PublishProperties,
    /// `subscribe subscription-identifier`.
    pub subscription_identifier: Option<u32>,
    /// `subscribe user-property`.
    pub subscribe_user: Vec<(String, String)>,
    /// `unsubscribe user-property`.
    pub unsubscribe_user: Vec<(String, String)>,
}

const KNOWN_PROPERTIES: &[&str] = &[
    "payload-format-indicator",
    "message-expiry-interval",
    "content-type",
    "response-topic",
    "correlation-data",
    "subscription-identifier",
    "session-expiry-interval",
    "assigned-client-identifier",
    "server-keep-alive",
    "authentication-method",
    "authentication-data",
    "request-problem-information",
    "will-delay-interval",
    "request-response-information",
    "response-information",
    "server-reference",
    "reason-string",
    "receive-maximum",
    "topic-alias-maximum",
    "topic-alias",
    "maximum-qos",
    "retain-available",
    "user-property",
    "maximum-packet-size",
    "wildcard-subscription-available",
    "subscription-identifier-available",
    "shared-subscription-available",
];

/// Parses the `-D` triples (clap gives them flat). A user property's value
/// is `name` and the next argument is its value, as with mosquitto
/// (`-D publish user-property name value`).
pub fn parse_properties(flat: &[String]) -> Result<V5Properties, String> {
    let mut p = V5Properties::default();
    let mut i = 0;
    while i < flat.len() {
        let (command, name) = (
            flat[i].as_str(),
            flat.get(i + 1).map(String::as_str).unwrap_or(""),
        );
        let value = flat.get(i + 2).cloned().unwrap_or_default();
        i += 3;
        if !matches!(
            command,
            "connect" | "publish" | "subscribe" | "unsubscribe" | "disconnect" | "will" | "auth"
        ) {
            return Err(format!(
                "Error: Invalid command {command} given in --property argument."
            ));
        }
        if !KNOWN_PROPERTIES.contains(&name) {
            return Err("Error: Invalid property name given in --property argument.".into());
        }
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("Error: Invalid property value {v} for {name}."))
        };
        match (command, name) {
            ("connect", "user-property") => {
                let (k, v) = user_pair(name, &value, flat.get(i))?;
                i += 1;
                p.connect_user.push((k, v));
            }
            ("publish", "user-property") => {
                let (k, v) = user_pair(name, &value, flat.get(i))?;
                i += 1;
                p.publish.user_properties.push((k.into(), v.into()));
            }
            ("subscribe", "user-property") => {
                let (k, v) = user_pair(name, &value, flat.get(i))?;
                i += 1;
                p.subscribe_user.push((k, v));
            }
            ("unsubscribe", "user-property") => {
                let (k, v) = user_pair(name, &value, flat.get(i))?;
                i += 1;
                p.unsubscribe_user.push((k, v));
            }
            ("publish", "content-type") => p.publish.content_type = Some(value.into()),
            ("publish", "response-topic") => p.publish.response_topic = Some(value.into()),
            ("publish", "correlation-data") => {
                p.publish.correlation_data = Some(value.into_bytes().into())
            }
            ("publish", "message-expiry-interval") => {
                p.publish.message_expiry_interval = Some(number(&value)?)
            }
            ("publish", "payload-format-indicator") => {
                p.publish.payload_format_indicator = Some(number(&value)? != 0)
            }
            ("subscribe", "subscription-identifier") => {
                p.subscription_identifier = Some(number(&value)?)
            }
            _ => {
                return Err(format!(
                    "Error: {name} property for {command} is not supported by this client (see -D in --help)."
                ))
            }
        }
    }
    Ok(p)
}

/// A user property takes two arguments after its name: `-D connect
/// user-property key value`; clap gave `key` as the triple's value, and
/// the value is the next argument (a fourth one, given as another -D).
fn user_pair(_name: &str, key: &str, next: Option<&String>) -> Result<(String, String), String> {
    match next {
        Some(v) => Ok((key.to_string(), v.clone())),
        None => Err("Error: user-property needs a name and a value.".into()),
    }
}

/// The flags both tools turn into a connection: where (`-h -p -L`), who
/// (`-i -I -u -P`), how (`-V -k`, `-D connect`, the will, `-d`, TLS).
pub struct Connection<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub url: Option<&'a Url>,
    pub id: &'a Option<String>,
    pub id_prefix: &'a Option<String>,
    /// The client id without `-i` or `-I`.
    pub default_id: &'a str,
    pub username: &'a Option<String>,
    pub password: &'a Option<String>,
    pub version: ProtocolVersion,
    pub keepalive: u16,
    /// `-D connect user-property`.
    pub connect_user: &'a [(String, String)],
    pub will: &'a WillArgs,
    pub debug: bool,
    pub tls: &'a TlsArgs,
    /// Which of `-h -p -u -P` `-L` replaces.
    pub precedence: UrlPrecedence,
}

impl Connection<'_> {
    /// The client options these flags give: `-L`'s host, port and
    /// credentials unless `-h`/`-p`/`-u`/`-P` say otherwise; port 8883 with
    /// --cafile/--capath; `mqtts://` also trusts the public CAs, as mosquitto.
    pub fn options(&self) -> Result<ClientOptions, String> {
        let url_tls = self.url.is_some_and(|u| u.tls);
        let tls = self.tls.enabled() || url_tls;
        let p = self.precedence;
        let (host, port) = match self.url {
            Some(u) => (
                if p.host {
                    u.host.clone()
                } else {
                    self.host.to_string()
                },
                match self.port {
                    Some(port) if !p.port => port,
                    _ => u.port,
                },
            ),
            None => (
                self.host.to_string(),
                self.port.unwrap_or(self.tls.default_port()),
            ),
        };
        let id = client_id(self.id, self.id_prefix, self.default_id);
        let mut o = ClientOptions::new(host, port)
            .protocol(self.version)
            .client_id(id)
            .keep_alive(std::time::Duration::from_secs(self.keepalive.into()));
        // The URL sets a user name (password) only if it has one.
        let pick = |flag: &Option<String>, url: Option<&String>, url_wins: bool| match (flag, url) {
            (Some(f), Some(u)) => Some(if url_wins { u } else { f }.clone()),
            (f, u) => f.clone().or(u.cloned()),
        };
        o.session.username = pick(
            self.username,
            self.url.and_then(|u| u.username.as_ref()),
            p.username,
        );
        o.session.password = pick(
            self.password,
            self.url.and_then(|u| u.password.as_ref()),
            p.password,
        )
        .map(|p| p.into_bytes().into());
        if self.version.is_v5() {
            o.session.user_properties = self.connect_user.to_vec();
        }
        o = self.will.apply(o)?;
        if self.debug {
            let log = debug_log(o.session.client_id.clone(), self.version);
            o = o.packet_log(log);
        }
        if tls {
            let mut t = self.tls.options();
            // mqtts:// adds the public CAs to --cafile/--capath, as
            // mosquitto's -L adds the OS store.
            if url_tls {
                t.use_webpki_roots = true;
            }
            o = o
                .tls_files(&t)
                .map_err(|e| format!("Error: {}", cli_words(&e.to_string())))?;
        }
        Ok(o)
    }
}

/// `-d`: a packet log printing mosquitto's debug lines ("Client X sending
/// CONNECT") on standard output, as mosquitto_sub and mosquitto_pub do.
pub fn debug_log(
    id: String,
    version: ProtocolVersion,
) -> impl Fn(PacketDirection, &Packet) + Send + Sync + 'static {
    // libmosquitto numbers QoS 0 PUBLISHes too; the client does not.
    let last_mid = AtomicU16::new(0);
    move |direction, packet| {
        let lines = debug_line(&id, version, direction, packet, &last_mid);
        let incoming =
            direction == PacketDirection::Received && matches!(packet, Packet::Publish(_));
        // mosquitto_sub acknowledges a message before printing it.
        let acked = match (direction, packet) {
            (PacketDirection::Sent, Packet::PubAck(a)) => Some(a.packet_id.get()),
            (PacketDirection::Sent, Packet::PubRec(a)) => Some(a.packet_id.get()),
            _ => None,
        };
        let mid = match packet {
            Packet::Publish(p) => p.packet_id.map(|id| id.get()),
            _ => None,
        };
        let mut d = DEBUG.lock().unwrap_or_else(|e| e.into_inner());
        for l in lines {
            if d.pending == 0 {
                write_line(&l);
                if incoming {
                    d.pending = 1;
                }
            } else if let Some(id) = acked {
                // Right after its PUBLISH's line: queued, or the message
                // waiting to be printed.
                let at = d
                    .queue
                    .iter()
                    .position(|(incoming, m, _)| *incoming && *m == Some(id))
                    .map_or(0, |i| i + 1);
                d.queue.insert(at, (false, None, l));
            } else {
                d.queue.push_back((incoming, mid, l));
            }
        }
    }
}

/// The debug lines logged while a received message waits to be printed:
/// the event loop may read several PUBLISHes at once, and mosquitto_sub
/// prints each message right after its "received PUBLISH" line.
struct DebugState {
    /// Received PUBLISHes whose line is written but whose message is not
    /// handled yet.
    pending: usize,
    queue: std::collections::VecDeque<(bool, Option<u16>, String)>,
}

static DEBUG: std::sync::Mutex<DebugState> = std::sync::Mutex::new(DebugState {
    pending: 0,
    queue: std::collections::VecDeque::new(),
});

fn write_line(l: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{l}");
    let _ = out.flush();
}

/// `-d`: before printing a received message, the lines logged after its
/// PUBLISH and before the next one (its PUBACK or PUBREC).
pub fn debug_before_message() {
    let mut d = DEBUG.lock().unwrap_or_else(|e| e.into_inner());
    while d.queue.front().is_some_and(|(incoming, _, _)| !incoming) {
        if let Some((_, _, l)) = d.queue.pop_front() {
            write_line(&l);
        }
    }
}

/// `-d`: a received message was handled (printed or skipped): the lines
/// up to the next received PUBLISH follow.
pub fn debug_after_message() {
    let mut d = DEBUG.lock().unwrap_or_else(|e| e.into_inner());
    d.pending = d.pending.saturating_sub(1);
    while let Some((incoming, _, l)) = d.queue.pop_front() {
        write_line(&l);
        if incoming {
            d.pending += 1;
            break;
        }
    }
}

/// `-d`: writes every line still waiting (before exiting).
pub fn debug_flush() {
    let mut d = DEBUG.lock().unwrap_or_else(|e| e.into_inner());
    while let Some((_, _, l)) = d.queue.pop_front() {
        write_line(&l);
    }
    d.pending = 0;
}

fn debug_line(
    id: &str,
    version: ProtocolVersion,
    direction: PacketDirection,
    packet: &Packet,
    last_mid: &AtomicU16,
) -> Vec<String> {
    let dir = match direction {
        PacketDirection::Sent => "sending",
        PacketDirection::Received => "received",
    };
    let sent = direction == PacketDirection::Sent;
    let mut lines = Vec::new();
    let mut line = |s: String| lines.push(format!("Client {id} {dir} {s}"));
    match packet {
        Packet::Connect(_) => line("CONNECT".into()),
        Packet::ConnAck(c) => {
            let rc = if version.is_v5() {
                c.reason_code.as_u8()
            } else {
                c.reason_code.to_v3_connack()
            };
            line(format!("CONNACK ({rc})"))
        }
        Packet::Publish(p) => {
            let mid = match p.packet_id {
                Some(id) => {
                    if sent {
                        last_mid.store(id.get(), Ordering::Relaxed);
                    }
                    id.get()
                }
                None if sent => last_mid.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
                None => 0,
            };
            line(format!(
                "PUBLISH (d{}, q{}, r{}, m{mid}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos.as_u8(),
                u8::from(p.retain),
                p.topic.as_str(),
                p.payload.len()
            ))
        }
        Packet::PubAck(a) if sent => line(format!(
            "PUBACK (m{}, rc{})",
            a.packet_id.get(),
            a.reason_code.as_u8()
        )),
        Packet::PubAck(a) => line(format!(
            "PUBACK (Mid: {}, RC:{})",
            a.packet_id.get(),
            a.reason_code.as_u8()
        )),
        Packet::PubRec(a) if sent => line(format!(
            "PUBREC (m{}, rc{})",
            a.packet_id.get(),
            a.reason_code.as_u8()
        )),
        Packet::PubRec(a) => line(format!("PUBREC (Mid: {})", a.packet_id.get())),
        Packet::PubRel(a) if sent => line(format!("PUBREL (m{})", a.packet_id.get())),
        Packet::PubRel(a) => line(format!("PUBREL (Mid: {})", a.packet_id.get())),
        Packet::PubComp(a) if sent => line(format!("PUBCOMP (m{})", a.packet_id.get())),
        Packet::PubComp(a) => line(format!(
            "PUBCOMP (Mid: {}, RC:{})",
            a.packet_id.get(),
            a.reason_code.as_u8()
        )),
        Packet::Subscribe(s) => {
            last_mid.store(s.packet_id.get(), Ordering::Relaxed);
            for sub in &s.subscriptions {
                let o = sub.options;
                let options = u8::from(o.no_local) << 2
                    | u8::from(o.retain_as_published) << 3
                    | (o.retain_handling as u8) << 4;
                line(format!(
                    "SUBSCRIBE (Mid: {}, Topic: {}, QoS: {}, Options: 0x{options:02x})",
                    s.packet_id.get(),
                    sub.filter.as_str(),
                    o.qos.as_u8()
                ));
            }
        }
        Packet::SubAck(s) => {
            line("SUBACK".into());
            // mosquitto_sub's subscribe callback, printed with -d.
            let codes: Vec<String> = s
                .reason_codes
                .iter()
                .map(|c| c.as_u8().to_string())
                .collect();
            lines.push(format!(
                "Subscribed (mid: {}): {}",
                s.packet_id.get(),
                codes.join(", ")
            ));
        }
        Packet::Unsubscribe(u) => {
            last_mid.store(u.packet_id.get(), Ordering::Relaxed);
            for f in &u.filters {
                line(format!(
                    "UNSUBSCRIBE (Mid: {}, Topic: {})",
                    u.packet_id.get(),
                    f.as_str()
                ));
            }
        }
        Packet::UnsubAck(_) => line("UNSUBACK".into()),
        Packet::PingReq => line("PINGREQ".into()),
        Packet::PingResp => line("PINGRESP".into()),
        Packet::Disconnect(d) if !sent => line(format!("DISCONNECT ({})", d.reason_code.as_u8())),
        Packet::Disconnect(_) => line("DISCONNECT".into()),
        Packet::Auth(_) => line("AUTH".into()),
    }
    lines
}

/// `-I id_prefix`: the prefix followed by the process id, as mosquitto.
pub fn client_id(id: &Option<String>, prefix: &Option<String>, default: &str) -> String {
    match (id, prefix) {
        (Some(id), _) => id.clone(),
        (None, Some(p)) => format!("{p}{}", std::process::id()),
        (None, None) => format!("{default}_{}", std::process::id()),
    }
}
