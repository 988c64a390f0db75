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
use client_cli::{exit_code, parse_version, report, TlsArgs};
use mqtt_client::{Client, ClientOptions, Error, ProtocolVersion, QoS, ReconnectOptions};

const AFTER_HELP: &str = "\
Give exactly one of -m, -f, -l, -n, -s.
Port: as mosquitto_pub, -p defaults to 1883, or to 8883 when --cafile or --capath is given.
TLS: --cafile/--capath turn TLS on. --cert/--key add a client certificate and need --cafile
or --capath; without one this program stops with an error instead of silently using plain TCP.
Exit codes as mosquitto_pub: 0 once every message is acknowledged (QoS 1: PUBACK, QoS 2:
PUBCOMP), 1 on errors, and the broker's CONNACK code when it refuses the connection
(3.1.1: 1-5; 5.0: the reason code, e.g. 135).";

/// Publish a message, like mosquitto_pub.
#[derive(Parser, Debug)]
#[command(name = "publisher", after_help = AFTER_HELP, disable_help_flag = true)]
struct Args {
    /// MQTT host to connect to.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    host: String,
    /// Network port (default 1883, or 8883 with --cafile/--capath).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic", required = true)]
    topic: String,
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
    tls: TlsArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn options(args: &Args) -> Result<ClientOptions, Error> {
    let tls = args.tls.enabled();
    let port = args.port.unwrap_or(if tls { 8883 } else { 1883 });
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("publisher_{}", std::process::id()));
    let mut o = ClientOptions::new(args.host.clone(), port)
        .protocol(args.version)
        .client_id(id)
        .keep_alive(Duration::from_secs(args.keepalive.into()))
        // One-shot, like mosquitto_pub: a lost connection is an error.
        .reconnect(ReconnectOptions::disabled());
    o.session.username = args.username.clone();
    o.session.password = args.password.clone().map(|p| p.into_bytes().into());
    if tls {
        o = o.tls_files(&args.tls.options())?;
    }
    Ok(o)
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

async fn run(args: Args) -> ExitCode {
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
    let qos = QoS::from_u8(args.qos).unwrap_or_default();
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            report(&e);
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
        Some(p) => client
            .publish(&args.topic, qos, args.retain, p)
            .await
            .map(drop),
        None => {
            let mut result = Ok(());
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                result = client
                    .publish(&args.topic, qos, args.retain, line.into_bytes())
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
