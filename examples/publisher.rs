//! `publisher`: publishes like `mosquitto_pub`, with the same flags and exit
//! codes, over plain TCP, TLS or mutual TLS.
//!
//! ```text
//! cargo run --example publisher -- -t ssltopic -m testing -p 8883 -h 192.168.1.5 \
//!     --cafile ca.crt --cert client.crt --key client.key
//! ```

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[path = "common/client_cli.rs"]
mod client_cli;
use client_cli::{exit_code, parse_version, report, TlsArgs, WillArgs};
use mqtt_client::{
    Client, ClientOptions, ProtocolVersion, Publish, QoS, ReconnectOptions, TopicName,
};

/// `--help`: mosquitto_pub's text, grouping and order, with the flags this
/// program takes (long forms too) and nothing it does not.
pub(crate) fn help() -> String {
    use client_cli::help::*;
    let intro = concat!(
        "publisher is a simple mqtt client that will publish a message on a single topic and exit.\n",
        "publisher version ",
        env!("CARGO_PKG_VERSION"),
        ", with mosquitto_pub's flags and exit codes."
    );
    let usage = "\
Usage: publisher {[-h host] [-p port] [-u username] [-P password] -t topic | -L URL}
                 {-f file | -l | -n | -m message | -s}
                 [-k keepalive] [-q qos] [-r] [--repeat N] [--repeat-delay time]
                 [--nodelay]
                 [-i id] [-I id_prefix]
                 [-d]
                 [-u username [-P password]]
                 [--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]
                 [{--cafile file | --capath dir} [--cert file] [--key file]
                   [--insecure] [--tls-version version]
                   [--tls-use-os-certs]
                 [--property command identifier value]
                 [-D command identifier value]
       publisher --help";
    let own: &[(&str, &str)] = &[
        ("-d, --debug", "enable debug messages."),
        ("-D, --property", PROPERTY),
        ("-f, --file", "send the contents of a file as the message."),
        ("-h, --host", HOST),
        (
            "-i, --id",
            "id to use for this client. Defaults to publisher_ appended with the process id.",
        ),
        ("-I, --id-prefix", ID_PREFIX),
        ("-k, --keepalive", KEEPALIVE),
        ("-L, --url", URL),
        (
            "-l, --stdin-line",
            "read messages from stdin, sending a separate message for each line.",
        ),
        ("-m, --message", "message payload to send."),
        ("-n, --null-message", "send a null (zero length) message."),
        ("-p, --port", PORT),
        ("-P, --pw", PASSWORD),
        (
            "-q, --qos",
            "quality of service level to use for all messages. Defaults to 0.",
        ),
        ("-r, --retain", "message should be retained."),
        (
            "-s, --stdin-file",
            "read message from stdin, sending the entire input as a message.",
        ),
        ("-t, --topic", "mqtt topic to publish to."),
        ("-u, --username", USERNAME),
        ("-V, --protocol-version", VERSION),
        ("--help", HELP),
        ("--nodelay", NODELAY),
        (
            "--repeat",
            "if publish mode is -f, -m, -n or -s, then repeat the publish N times.",
        ),
        (
            "--repeat-delay",
            "if using --repeat, wait time seconds between publishes. Defaults to 0.",
        ),
    ];
    let outro = "\
mosquitto_pub options this program does not take: -A, -c, -M, -x, --unix, --quiet,
--keyform, --ciphers, --tls-alpn, --tls-engine, --tls-engine-kpass-sha1, --psk,
--psk-identity, --proxy.

Exit codes as mosquitto_pub: 0 once every message is acknowledged (QoS 1: PUBACK, QoS 2:
PUBCOMP), 1 on errors, and the broker's CONNACK code when it refuses the connection
(3.1.1: 1-5; 5.0: the reason code, e.g. 135).";
    let options = [own, WILL_AND_TLS].concat();
    client_cli::format_help(intro, usage, &options, outro)
}

/// Publish a message, like mosquitto_pub.
#[derive(Parser, Debug)]
#[command(name = "publisher", override_help = help(), disable_help_flag = true)]
pub(crate) struct Args {
    /// MQTT host to connect to.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    host: String,
    /// Network port (default 1883, or 8883 with --cafile/--capath).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic", required_unless_present = "url")]
    topic: Option<String>,
    /// Username, password, host, port and topic as a URL:
    /// mqtt(s)://[username[:password]@]host[:port]/topic.
    #[arg(short = 'L', long = "url", value_parser = client_cli::parse_url, conflicts_with = "topic")]
    url: Option<client_cli::Url>,
    /// With -m, -f, -s or -n: publish the message N times.
    #[arg(long = "repeat", default_value_t = 1)]
    repeat: u32,
    /// With --repeat: wait this many seconds between publishes (default 0).
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
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
    /// The message.
    #[arg(short = 'm', long = "message", group = "payload")]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", group = "payload")]
    file: Option<PathBuf>,
    /// Send each line of standard input as a message.
    #[arg(short = 'l', long = "stdin-line", group = "payload")]
    lines: bool,
    /// Send an empty message.
    #[arg(short = 'n', long = "null-message", group = "payload")]
    null: bool,
    /// Send all of standard input as one message.
    #[arg(short = 's', long = "stdin-file", group = "payload")]
    stdin: bool,
    /// QoS of the message.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Client id (default: publisher_ followed by the process id).
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
    /// Protocol version: mqttv311 (or 311), mqttv5 (or 5) or mqttv31 (or 31).
    #[arg(short = 'V', long = "protocol-version", default_value = "mqttv311", value_parser = parse_version)]
    version: ProtocolVersion,
    #[command(flatten)]
    will: WillArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
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
        default_id: "publisher",
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
    // One-shot, like mosquitto_pub: a lost connection is an error.
    Ok(o.reconnect(ReconnectOptions::disabled()))
}

/// The one message of -m, -f, -n or -s.
fn single_payload(args: &Args) -> Result<Vec<u8>, String> {
    if let Some(m) = &args.message {
        Ok(m.clone().into_bytes())
    } else if let Some(f) = &args.file {
        std::fs::read(f).map_err(|e| format!("Error: unable to read file {}: {e}.", f.display()))
    } else if args.stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("Error: unable to read standard input: {e}."))?;
        Ok(buf)
    } else {
        Ok(Vec::new())
    }
}

async fn run(args: Args, precedence: client_cli::UrlPrecedence) -> ExitCode {
    if args.message.is_none() && args.file.is_none() && !args.lines && !args.null && !args.stdin {
        eprintln!("Error: Both topic and message must be supplied (one of -m, -f, -l, -n, -s).");
        return ExitCode::from(1);
    }
    let payload = if args.lines {
        None
    } else {
        match single_payload(&args) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    };
    let props = match client_cli::parse_properties(&args.properties) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let topic = match (&args.topic, &args.url) {
        (Some(t), _) => t.clone(),
        (None, Some(u)) => u.topic.clone(),
        (None, None) => unreachable!("clap requires -t or -L"),
    };
    let topic = match TopicName::try_from(topic.as_str()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("Error: Invalid publish topic '{topic}', does it contain '+' or '#'? ({e})");
            return ExitCode::from(1);
        }
    };
    let qos = QoS::from_u8(args.qos).unwrap_or_default();
    let message = |payload: Vec<u8>| {
        let mut p = Publish::new(topic.clone(), payload);
        p.qos = qos;
        p.retain = args.retain;
        if args.version.is_v5() {
            p.properties = props.publish.clone();
        }
        p
    };
    let options = match options(&args, &props, precedence) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let (client, _messages) = match Client::connect(options).await {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return exit_code(&e, args.version);
        }
    };
    let result = match payload {
        Some(p) => {
            let mut result = Ok(());
            for i in 0..args.repeat.max(1) {
                if i > 0 && args.repeat_delay > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(args.repeat_delay)).await;
                }
                result = client.publish_message(message(p.clone())).await.map(drop);
                if result.is_err() {
                    break;
                }
            }
            result
        }
        None => {
            let mut result = Ok(());
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                result = client
                    .publish_message(message(line.into_bytes()))
                    .await
                    .map(drop);
                if result.is_err() {
                    break;
                }
            }
            result
        }
    };
    let _ = client.disconnect().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            exit_code(&e, args.version)
        }
    }
}

fn main() -> ExitCode {
    client_cli::main_with(run)
}
