//! `pi-subscriber`: subscribes like `mosquitto_sub`, with the same flags,
//! output and exit codes, over plain TCP, TLS or mutual TLS.
//!
//! ```text
//! cargo run --example pi-subscriber -- -t ssltopic -v -p 8883 -h 192.168.1.5 \
//!     --cafile ca.crt --cert client.crt --key client.key
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;

#[path = "common/client_cli.rs"]
mod client_cli;
#[path = "common/sub_format.rs"]
mod sub_format;
use client_cli::{exit_code, parse_version, report, TlsArgs, WillArgs};
use mqtt_client::{
    Client, ClientOptions, ConnectionState, Error, Properties, ProtocolVersion, Publish, QoS,
    Subscription, SubscriptionOptions, TopicFilter,
};
use sub_format::Format;

/// `--help`: mosquitto_sub's text, grouping and order, with the flags this
/// program takes (long forms too) and nothing it does not.
pub(crate) fn help() -> String {
    use client_cli::help::*;
    let intro = concat!(
        "pi-subscriber is a simple mqtt client that will subscribe to a set of topics and print all messages it receives.\n",
        "pi-subscriber version ",
        env!("CARGO_PKG_VERSION"),
        ", with mosquitto_sub's flags, output and exit codes."
    );
    let usage = "\
Usage: pi-subscriber {[-h host] [-p port] [-u username] [-P password] -t topic | -L URL [-t topic]}
                     [-c] [-k keepalive] [-q qos] [-x session-expiry-interval]
                     [-C msg_count] [-E] [-R] [--retained-only] [--remove-retained] [-T filter_out] [-U topic ...]
                     [-F format]
                     [-W timeout_secs]
                     [--nodelay]
                     [-i id] [-I id_prefix]
                     [-d] [-N] [-v]
                     [--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]
                     [{--cafile file | --capath dir} [--cert file] [--key file]
                       [--insecure] [--tls-version version]
                       [--tls-use-os-certs]
                     [-D command identifier value]
       pi-subscriber --help";
    let own: &[(&str, &str)] = &[
        (
            "-c, --disable-clean-session",
            "disable clean session/enable persistent client mode
When this argument is used, the broker will be instructed not to clean existing sessions
for the same client id when the client connects, and sessions will never expire when the
client disconnects. MQTT v5 clients can change their session expiry interval with the -x
argument.",
        ),
        (
            "-C, --count",
            "disconnect and exit after receiving the 'msg_count' messages.",
        ),
        ("-d, --debug", "enable debug messages."),
        ("-D, --property", PROPERTY),
        (
            "-E, --exit-after-subscribe",
            "Exit once all subscriptions have been acknowledged by the broker.",
        ),
        (
            "-F, --format",
            "output format: %t %p %q %r %m %l %x %X %I %U %j %J %P %C %D %E %F %R %S %A %%,
with the flags - and 0, widths and precisions; @@, @N and the strftime conversions
@Y @y @m @d @e @H @M @S @j @s @F @T @D @z @Z (times in UTC); the escapes
\\\\ \\0 \\a \\e \\n \\r \\t \\v.",
        ),
        ("-h, --host", HOST),
        (
            "-i, --id",
            "id to use for this client. Defaults to pi-subscriber_ appended with the process id.",
        ),
        ("-I, --id-prefix", ID_PREFIX),
        ("-k, --keepalive", KEEPALIVE),
        ("-L, --url", URL),
        (
            "-N",
            "do not add an end of line character when printing the payload.",
        ),
        ("-p, --port", PORT),
        ("-P, --pw", PASSWORD),
        (
            "-q, --qos",
            "quality of service level to use for the subscription. Defaults to 0.",
        ),
        (
            "-R, --no-retain",
            "do not print stale messages (those with retain set).",
        ),
        (
            "-t, --topic",
            "mqtt topic to subscribe to. May be repeated multiple times.",
        ),
        (
            "-T, --filter-out",
            "topic string to filter out of results. May be repeated.",
        ),
        ("-u, --username", USERNAME),
        (
            "-U, --unsubscribe",
            "unsubscribe from a topic. May be repeated.",
        ),
        ("-v, --verbose", "print published messages verbosely."),
        ("-V, --protocol-version", VERSION),
        (
            "-W, --timeout",
            "Specifies a timeout in seconds how long to process incoming MQTT messages.
When it expires, this program exits with code 27.",
        ),
        (
            "-x, --session-expiry-interval",
            "Set the session-expiry-interval property on the CONNECT packet. Applies to MQTT v5
clients only. Set to 0-4294967294 to specify the session will expire in that many
seconds after the client disconnects, or use -1, 4294967295, or \u{221e} for a session
that does not expire. Defaults to -1 if -c is also given, or 0 if -c not given.",
        ),
        ("--help", HELP),
        ("--nodelay", NODELAY),
        (
            "--retained-only",
            "only handle messages with the retained flag set, and exit when the
first non-retained message is received.",
        ),
        (
            "--remove-retained",
            "send a message to the server to clear any received retained messages
Use -T to filter out messages you do not want to be cleared.",
        ),
    ];
    let outro = "\
mosquitto_sub options this program does not take: -A, --unix, --quiet, --pretty,
--random-filter, --keyform, --ciphers, --tls-alpn, --tls-engine, --tls-engine-kpass-sha1,
--psk, --psk-identity, --proxy.

Exit codes as mosquitto_sub: 0 after -C messages, 1 on errors, 27 when -W times out, and the
broker's CONNACK code when it refuses the connection (3.1.1: 1-5; 5.0: the reason code, e.g. 135).";
    let options = [own, WILL_AND_TLS].concat();
    client_cli::format_help(intro, usage, &options, outro)
}

/// Subscribe to topics and print the messages, like mosquitto_sub.
#[derive(Parser, Debug)]
#[command(name = "pi-subscriber", override_help = help(), disable_help_flag = true)]
pub(crate) struct Args {
    /// MQTT host to connect to.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    host: String,
    /// Network port (default 1883, or 8883 with --cafile/--capath).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Topic filter to subscribe to; may be repeated.
    #[arg(short = 't', long = "topic", required_unless_present = "url")]
    topics: Vec<String>,
    /// Username, password, host, port and topic as a URL:
    /// mqtt(s)://[username[:password]@]host[:port]/topic.
    #[arg(short = 'L', long = "url", value_parser = client_cli::parse_url)]
    url: Option<client_cli::Url>,
    /// Topic to filter out of the results; may be repeated.
    #[arg(short = 'T', long = "filter-out")]
    filter_out: Vec<String>,
    /// Unsubscribe from this topic; may be repeated.
    #[arg(short = 'U', long = "unsubscribe")]
    unsubscribe: Vec<String>,
    /// Do not print stale messages (those with retain set).
    #[arg(short = 'R', long = "no-retain")]
    no_retain: bool,
    /// Only handle messages with the retained flag set, and exit at the first
    /// non-retained message.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// Clear every retained message received (publish an empty retained
    /// message to its topic); -T keeps the ones it filters out.
    #[arg(long = "remove-retained")]
    remove_retained: bool,
    /// Exit once all subscriptions have been acknowledged by the broker.
    #[arg(short = 'E', long = "exit-after-subscribe")]
    exit_after_sub: bool,
    /// Output format (see below).
    #[arg(short = 'F', long = "format", value_parser = Format::parse)]
    format: Option<Format>,
    /// Print debug messages: the packets sent and received.
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Define an MQTT v5 property: -D command identifier value.
    #[arg(short = 'D', long = "property", num_args = 3..=4, value_names = ["COMMAND", "IDENTIFIER", "VALUE"])]
    properties: Vec<String>,
    /// Client id: this prefix followed by the process id.
    #[arg(short = 'I', long = "id-prefix", conflicts_with = "id")]
    id_prefix: Option<String>,
    /// Disable Nagle's algorithm (always done by this client).
    #[arg(long = "nodelay")]
    nodelay: bool,
    /// Print `topic payload` instead of just the payload.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// QoS of the subscriptions.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Client id (default: pi-subscriber_ followed by the process id).
    #[arg(short = 'i', long = "id")]
    id: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username")]
    username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw")]
    password: Option<String>,
    /// Keep alive in seconds.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    keepalive: u16,
    /// Disable clean session: a persistent session (needs -i).
    #[arg(short = 'c', long = "disable-clean-session")]
    persistent: bool,
    /// Exit after this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Exit with code 27 after this many seconds.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// Protocol version: mqttv311 (or 311), mqttv5 (or 5) or mqttv31 (or 31).
    #[arg(short = 'V', long = "protocol-version", default_value = "mqttv311", value_parser = parse_version)]
    version: ProtocolVersion,
    /// Do not print a newline after each payload.
    #[arg(short = 'N')]
    no_newline: bool,
    /// 5.0 session expiry interval in seconds; -1, 4294967295 or \u{221e}:
    /// never (default: never with -c, else 0).
    #[arg(short = 'x', long = "session-expiry-interval", allow_hyphen_values = true, value_parser = parse_session_expiry)]
    session_expiry: Option<u32>,
    #[command(flatten)]
    will: WillArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// `-x`: 0-4294967295, or -1 or \u{221e} for 4294967295 (never), as mosquitto_sub.
fn parse_session_expiry(s: &str) -> Result<u32, String> {
    if s == "\u{221e}" {
        return Ok(u32::MAX);
    }
    match s.parse::<i64>() {
        Ok(-1) => Ok(u32::MAX),
        Ok(n) => u32::try_from(n).map_err(|_| "session-expiry-interval out of range.".to_string()),
        Err(_) => Err("session-expiry-interval not a number.".to_string()),
    }
}

/// mosquitto_sub's checks of -c and -x against -i: a session that outlives
/// the connection needs a fixed client id, and -I's changes with every run.
fn check_client_id(args: &Args) -> Result<(), String> {
    let no_fixed_id = args.id_prefix.is_some() || args.id.is_none();
    if args.version.is_v5() {
        let expiry = args
            .session_expiry
            .unwrap_or(if args.persistent { u32::MAX } else { 0 });
        if expiry == u32::MAX && no_fixed_id {
            return Err("Error: You must provide a client id if you are using an infinite session expiry interval.".into());
        }
    } else if args.persistent && no_fixed_id {
        return Err("Error: You must provide a client id if you are using the -c option.".into());
    }
    Ok(())
}

fn options(
    args: &Args,
    props: &client_cli::V5Properties,
    precedence: client_cli::UrlPrecedence,
) -> Result<ClientOptions, String> {
    let o = client_cli::Connection {
        host: &args.host,
        port: args.port,
        url: args.url.as_ref(),
        id: &args.id,
        id_prefix: &args.id_prefix,
        default_id: "pi-subscriber",
        username: &args.username,
        password: &args.password,
        version: args.version,
        keepalive: args.keepalive,
        connect_user: &props.connect_user,
        will: &args.will,
        debug: args.debug,
        tls: &args.tls,
        precedence,
    }
    .options()?;
    Ok(o.clean_start(!args.persistent).session_expiry_interval(
        args.session_expiry
            .unwrap_or(if args.persistent { u32::MAX } else { 0 }),
    ))
}

/// Prints a message as mosquitto_sub's print_message: -F, -v or the payload.
fn print_message(args: &Args, message: &Publish) {
    let mut buf = Vec::new();
    let topic = message.topic.as_str();
    let payload = &message.payload[..];
    let eol = !args.no_newline;
    if let Some(format) = &args.format {
        if let Err(e) = format.write(&mut buf, message) {
            eprintln!("{e}");
        }
        if eol {
            buf.push(b'\n');
        }
    } else if args.verbose {
        if !payload.is_empty() {
            buf.extend_from_slice(topic.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(payload);
            if eol {
                buf.push(b'\n');
            }
        } else if eol {
            // mosquitto_sub prints an empty payload as (null) with -v.
            buf.extend_from_slice(format!("{topic} (null)\n").as_bytes());
        }
    } else if !payload.is_empty() {
        // mosquitto_sub prints nothing at all for an empty payload.
        buf.extend_from_slice(payload);
        if eol {
            buf.push(b'\n');
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&buf);
    let _ = out.flush();
}

/// The warnings for the client certificate (`--cert`) and the CAs it
/// trusts (`--cafile`, `--capath`) that expire within
/// [`mqtt_tls::expiry::WARN_WITHIN_DAYS`] days of `now`, or have expired,
/// each with the `gen-certs` command that re-issues it. Files that cannot
/// be read are left to the connection, which explains them.
fn expiry_warnings(tls: &TlsArgs, now: SystemTime) -> Vec<String> {
    let (found, _unreadable) = mqtt_tls::expiry::configured(
        tls.cert.as_deref(),
        tls.cafile.as_deref(),
        tls.capath.as_deref(),
    );
    found
        .iter()
        .filter(|c| {
            c.certificate
                .expires_within(now, mqtt_tls::expiry::WARN_WITHIN_DAYS)
        })
        .map(|c| {
            let flag = match c.role {
                mqtt_tls::expiry::Role::Certfile => "--cert",
                mqtt_tls::expiry::Role::Cafile => "--cafile",
                mqtt_tls::expiry::Role::Capath => "--capath",
            };
            format!(
                "Warning: {flag}: {}",
                c.certificate.warning(now, tls.cafile.as_deref())
            )
        })
        .collect()
}

/// Prints the expiry warnings now, then once a day while running.
fn warn_about_expiry(tls: &TlsArgs) {
    for w in expiry_warnings(tls, SystemTime::now()) {
        eprintln!("{w}");
    }
    if tls.cert.is_none() && tls.cafile.is_none() && tls.capath.is_none() {
        return;
    }
    let tls = tls.clone();
    tokio::spawn(async move {
        let mut day = tokio::time::interval_at(
            tokio::time::Instant::now() + EXPIRY_CHECK_EVERY,
            EXPIRY_CHECK_EVERY,
        );
        loop {
            day.tick().await;
            for w in expiry_warnings(&tls, SystemTime::now()) {
                eprintln!("{w}");
            }
        }
    });
}

/// How often the certificates are checked for expiry while running.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Whether `topic` matches the filter `filter` (for -T).
fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    if topic.starts_with('$') && (filter.starts_with('#') || filter.starts_with('+')) {
        return false;
    }
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

async fn run(args: Args, precedence: client_cli::UrlPrecedence) -> ExitCode {
    if let Err(e) = check_client_id(&args) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    if args.no_retain && args.retained_only {
        eprintln!("\nError: Combining '-R' and '--retained-only' makes no sense.");
        return ExitCode::from(1);
    }
    let props = match client_cli::parse_properties(&args.properties) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let qos = QoS::from_u8(args.qos).unwrap_or_default();
    let options = match options(&args, &props, precedence) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let mut topics = args.topics.clone();
    if let Some(u) = &args.url {
        topics.push(u.topic.clone());
    }
    let mut subscriptions = Vec::new();
    for t in &topics {
        match TopicFilter::new(t.as_str()) {
            Ok(filter) => subscriptions.push(Subscription {
                filter,
                options: SubscriptionOptions::qos(qos),
            }),
            Err(e) => {
                eprintln!("Error: Invalid subscription topic '{t}', are all '+' and '#' wildcards correct? ({e})");
                return ExitCode::from(1);
            }
        }
    }
    let mut unsubscribe = Vec::new();
    for t in &args.unsubscribe {
        match TopicFilter::new(t.as_str()) {
            Ok(f) => unsubscribe.push(f),
            Err(e) => {
                eprintln!("Error: Invalid unsubscribe topic '{t}', are all '+' and '#' wildcards correct? ({e})");
                return ExitCode::from(1);
            }
        }
    }
    let mut sub_props = Properties::default();
    let mut unsub_props = Properties::default();
    if args.version.is_v5() {
        sub_props
            .subscription_identifiers
            .extend(props.subscription_identifier);
        for (k, v) in &props.subscribe_user {
            sub_props.user_properties.push((k.into(), v.into()));
        }
        for (k, v) in &props.unsubscribe_user {
            unsub_props.user_properties.push((k.into(), v.into()));
        }
    }
    warn_about_expiry(&args.tls);
    let (client, mut messages) = match Client::connect(options).await {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return exit_code(&e, args.version);
        }
    };
    // One SUBSCRIBE for every topic, then the UNSUBSCRIBEs without waiting
    // for the SUBACK, as mosquitto_sub.
    let subscribed = {
        let c = client.clone();
        tokio::spawn(async move { c.subscribe_many(subscriptions, sub_props).await })
    };
    for filter in unsubscribe {
        let c = client.clone();
        let p = unsub_props.clone();
        tokio::spawn(async move { c.unsubscribe_many(vec![filter], p).await });
    }
    match subscribed.await {
        Ok(Ok(suback)) => {
            if let Some((i, rc)) = suback
                .reason_codes
                .iter()
                .enumerate()
                .find(|(_, rc)| rc.is_error())
            {
                report(&Error::SubscribeRefused {
                    filter: topics.get(i).cloned().unwrap_or_default(),
                    reason_code: *rc,
                    reason_string: suback.properties.reason_string.clone().map(String::from),
                });
                return ExitCode::from(1);
            }
        }
        Ok(Err(e)) => {
            report(&e);
            return ExitCode::from(1);
        }
        Err(_) => return ExitCode::from(1),
    }
    if args.exit_after_sub {
        let _ = client.disconnect().await;
        return ExitCode::SUCCESS;
    }
    // Report lost connections and retries on stderr; the client reconnects itself.
    let mut state = client.state();
    state.borrow_and_update();
    tokio::spawn(async move {
        let mut lost = false;
        while state.changed().await.is_ok() {
            let s = state.borrow_and_update().clone();
            match s {
                ConnectionState::Reconnecting {
                    last_error,
                    retry_in,
                    ..
                } => {
                    lost = true;
                    eprintln!(
                        "Connection lost: {}; reconnecting in {:.1} s",
                        client_cli::cli_words(&last_error.to_string()),
                        retry_in.as_secs_f64()
                    )
                }
                ConnectionState::Connected { .. } if lost => {
                    lost = false;
                    eprintln!("Reconnected.")
                }
                _ => {}
            }
        }
    });

    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut received = 0u64;
    // --remove-retained's publishes, completed before disconnecting.
    let mut removals = Vec::new();
    let finish = |client: Client, removals: Vec<tokio::task::JoinHandle<()>>| async move {
        for r in removals {
            let _ = r.await;
        }
        let _ = client.disconnect().await;
        client_cli::debug_flush();
    };
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, messages.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    eprintln!("Timed out");
                    let _ = client.disconnect().await;
                    client_cli::debug_flush();
                    return ExitCode::from(27);
                }
            },
            None => messages.recv().await,
        };
        let Some(message) = next else {
            let error = match &*client.state().borrow() {
                ConnectionState::Closed { error } => error.clone(),
                _ => None,
            };
            return match error {
                Some(e) => {
                    report(&e);
                    exit_code(&e, args.version)
                }
                None => ExitCode::SUCCESS,
            };
        };
        // mosquitto_sub's order: --retained-only, -R, -T, --remove-retained.
        if args.retained_only && !message.retain {
            client_cli::debug_after_message();
            finish(client, removals).await;
            return ExitCode::SUCCESS;
        }
        let filtered = args
            .filter_out
            .iter()
            .any(|f| matches(f, message.topic.as_str()));
        if (message.retain && args.no_retain) || filtered {
            client_cli::debug_after_message();
            continue;
        }
        client_cli::debug_before_message();
        if args.remove_retained && message.retain {
            let c = client.clone();
            let topic = message.topic.as_str().to_string();
            removals.push(tokio::spawn(async move {
                let _ = c.publish(&topic, QoS::AtLeastOnce, true, Vec::new()).await;
            }));
        }
        print_message(&args, &message);
        client_cli::debug_after_message();
        received += 1;
        if args.count.is_some_and(|c| received >= c) {
            finish(client, removals).await;
            return ExitCode::SUCCESS;
        }
    }
}

fn main() -> ExitCode {
    client_cli::main_with(run)
}
