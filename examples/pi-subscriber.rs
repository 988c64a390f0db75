//! `pi-subscriber`: subscribes like `mosquitto_sub`, with the same flags,
//! output and exit codes, over plain TCP, TLS or mutual TLS.
//!
//! ```text
//! cargo run --example pi-subscriber -- -t ssltopic -v -p 8883 -h 192.168.1.5 \
//!     --cafile ca.crt --cert client.crt --key client.key
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[path = "common/client_cli.rs"]
mod client_cli;
use client_cli::{exit_code, parse_version, report, TlsArgs};
use mqtt_client::{Client, ClientOptions, ConnectionState, Error, ProtocolVersion, QoS};

const AFTER_HELP: &str = "\
Port: as mosquitto_sub, -p defaults to 1883, or to 8883 when --cafile or --capath is given.
TLS: --cafile/--capath turn TLS on. --cert/--key add a client certificate and need --cafile
or --capath; without one this program stops with an error instead of silently using plain TCP.
Exit codes as mosquitto_sub: 0 after -C messages, 1 on errors, 27 when -W times out, and the
broker's CONNACK code when it refuses the connection (3.1.1: 1-5; 5.0: the reason code, e.g. 135).";

/// Subscribe to topics and print the messages, like mosquitto_sub.
#[derive(Parser, Debug)]
#[command(name = "pi-subscriber", after_help = AFTER_HELP, disable_help_flag = true)]
struct Args {
    /// MQTT host to connect to.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    host: String,
    /// Network port (default 1883, or 8883 with --cafile/--capath).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Topic filter to subscribe to; may be repeated.
    #[arg(short = 't', long = "topic", required = true)]
    topics: Vec<String>,
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
    /// 5.0 session expiry interval in seconds (default: never with -c, else 0).
    #[arg(short = 'x', long = "session-expiry-interval")]
    session_expiry: Option<u32>,
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
        .unwrap_or_else(|| format!("pi-subscriber_{}", std::process::id()));
    let mut o = ClientOptions::new(args.host.clone(), port)
        .protocol(args.version)
        .client_id(id)
        .keep_alive(Duration::from_secs(args.keepalive.into()))
        .clean_start(!args.persistent)
        .session_expiry_interval(args.session_expiry.unwrap_or(if args.persistent {
            u32::MAX
        } else {
            0
        }));
    if let Some(u) = &args.username {
        o.session.username = Some(u.clone());
    }
    if let Some(p) = &args.password {
        o.session.password = Some(p.clone().into_bytes().into());
    }
    if tls {
        o = o.tls_files(&args.tls.options())?;
    }
    Ok(o)
}

fn print_message(out: &mut impl Write, args: &Args, topic: &str, payload: &[u8]) {
    let _ = (|| -> std::io::Result<()> {
        if args.verbose {
            write!(out, "{topic} ")?;
            if payload.is_empty() {
                // mosquitto_sub prints an empty payload as (null) with -v.
                out.write_all(b"(null)")?;
            }
        }
        out.write_all(payload)?;
        if !args.no_newline {
            out.write_all(b"\n")?;
        }
        out.flush()
    })();
}

async fn run(args: Args) -> ExitCode {
    if args.persistent && args.id.is_none() {
        eprintln!("Error: You must provide a client id if you are using the -c option.");
        return ExitCode::from(1);
    }
    let qos = QoS::from_u8(args.qos).unwrap_or_default();
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            report(&e);
            return ExitCode::from(1);
        }
    };
    let (client, mut messages) = match Client::connect(options).await {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return exit_code(&e, args.version);
        }
    };
    for topic in &args.topics {
        if let Err(e) = client.subscribe(topic, qos).await {
            report(&e);
            return ExitCode::from(1);
        }
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
                        "Connection lost: {last_error}; reconnecting in {:.1} s",
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
    let mut stdout = std::io::stdout().lock();
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, messages.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    eprintln!("Timed out");
                    let _ = client.disconnect().await;
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
        print_message(&mut stdout, &args, message.topic.as_str(), &message.payload);
        received += 1;
        if args.count.is_some_and(|c| received >= c) {
            let _ = client.disconnect().await;
            return ExitCode::SUCCESS;
        }
    }
}

fn main() -> ExitCode {
    client_cli::main_with(run)
}
