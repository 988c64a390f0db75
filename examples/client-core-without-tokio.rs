//! The sans-IO client core (`mqtt_client::proto`, which is all of
//! mqtt-client with `default-features = false`) driven by a blocking
//! `std::net::TcpStream` with TLS from rustls itself
//! (`rustls::ClientConnection` in a `rustls::StreamOwned`): no tokio, no
//! async, one thread.
//!
//! ```text
//! cargo run --example client-core-without-tokio -- -h 127.0.0.1 -p 8883 \
//!     --cafile ca.crt --cert client.crt --key client.key -t ssltopic -m testing
//! ```
//!
//! It subscribes to the topic, publishes the message at QoS 1, prints it
//! when it comes back (`[core-client] ssltopic testing`), disconnects and
//! exits 0; or prints why not and exits 1.
//!
//! The driver below is the whole contract of the core:
//! 1. open a transport, `connect(now)`;
//! 2. write whatever `poll_transmit(now)` returns;
//! 3. feed what was read to `handle_input(bytes, now)`;
//! 4. take `poll_event()` until `None`;
//! 5. at `poll_timeout()` call `handle_timeout(now)` (keep alive, CONNACK
//!    time-out): here the socket's read time-out wakes the loop for it;
//! 6. when the transport ends, `connection_lost(reason)`.
#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mqtt_client::proto::{ConnectOptions, Connection, ConnectionError, Event};
use mqtt_client::{
    Properties, ProtocolVersion, Publish, QoS, Subscription, SubscriptionOptions, TopicFilter,
    TopicName,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Parser, Debug)]
#[command(disable_help_flag = true)]
struct Args {
    /// Broker host (and the name its certificate must carry).
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Broker port (TLS).
    #[arg(short = 'p', long = "port", default_value_t = 8883)]
    port: u16,
    /// CA certificate(s) the broker's certificate is verified against.
    #[arg(long)]
    cafile: PathBuf,
    /// Client certificate (with --key), for brokers that require one.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Topic to subscribe and publish to.
    #[arg(short = 't', long = "topic", default_value = "ssltopic")]
    topic: String,
    /// Message to publish.
    #[arg(short = 'm', long = "message", default_value = "testing")]
    message: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

type BoxError = Box<dyn std::error::Error>;

/// A rustls client config from PEM files, with ring as the provider.
fn tls_config(args: &Args) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.cafile)
        .map_err(|e| format!("--cafile {}: {e}", args.cafile.display()))?
    {
        roots.add(cert.map_err(|e| format!("--cafile {}: {e}", args.cafile.display()))?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(Arc::new(config))
}

/// What the program is waiting for.
#[derive(Debug, PartialEq)]
enum Stage {
    Connecting,
    Subscribing,
    /// Published; waiting for the PUBACK and for the message to come back.
    Exchanging {
        acked: bool,
        received: bool,
    },
    Disconnecting,
}

fn run(args: &Args) -> Result<(), BoxError> {
    let config = tls_config(args)?;
    let name = ServerName::try_from(args.host.clone())
        .map_err(|e| format!("-h {}: not a host name or address: {e}", args.host))?;
    let tcp = TcpStream::connect((args.host.as_str(), args.port))
        .map_err(|e| format!("could not connect to {}:{}: {e}", args.host, args.port))?;
    tcp.set_nodelay(true)?;
    let mut tls = rustls::StreamOwned::new(rustls::ClientConnection::new(config, name)?, tcp);

    let topic = TopicName::try_from(args.topic.as_str())?;
    let filter = TopicFilter::new(args.topic.as_str())?;
    let mut core = Connection::new(ConnectOptions::new(
        ProtocolVersion::V5,
        "core-client-without-tokio",
    ));
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut stage = Stage::Connecting;
    let mut buf = vec![0u8; 16 * 1024];

    // Step 1.
    core.connect(Instant::now());
    loop {
        let now = Instant::now();
        if now > deadline {
            return Err(format!("gave up after {} s in stage {stage:?}", args.timeout).into());
        }
        // Step 2: one write for everything the core batched.
        while let Some(bytes) = core.poll_transmit(now) {
            tls.write_all(&bytes)?;
            tls.flush()?;
        }
        // Step 4.
        while let Some(event) = core.poll_event() {
            match event {
                Event::Connected { .. } => {
                    println!("[core-client] connected to {}:{}", args.host, args.port);
                    let subscription = Subscription {
                        filter: filter.clone(),
                        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                    };
                    core.subscribe(vec![subscription], Properties::default())
                        .ok_or("no packet identifier free")?;
                    stage = Stage::Subscribing;
                }
                Event::SubAck { suback, .. } => {
                    if let Some(rc) = suback.reason_codes.iter().find(|rc| rc.is_error()) {
                        return Err(format!("subscription to {} refused: {rc}", args.topic).into());
                    }
                    let mut publish = Publish::new(topic.clone(), args.message.clone());
                    publish.qos = QoS::AtLeastOnce;
                    core.publish(publish)?;
                    stage = Stage::Exchanging {
                        acked: false,
                        received: false,
                    };
                }
                Event::PubAck { reason_code, .. } => {
                    if reason_code.is_error() {
                        return Err(format!("the broker refused the message: {reason_code}").into());
                    }
                    if let Stage::Exchanging { acked, .. } = &mut stage {
                        *acked = true;
                    }
                }
                Event::Message(p) => {
                    println!(
                        "[core-client] {} {}",
                        p.topic,
                        String::from_utf8_lossy(&p.payload)
                    );
                    if let Stage::Exchanging { received, .. } = &mut stage {
                        *received = true;
                    }
                }
                Event::Disconnected { reason } => {
                    return match reason {
                        ConnectionError::Requested if stage == Stage::Disconnecting => {
                            let _ = tls.flush();
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                            Ok(())
                        }
                        reason => Err(reason.into()),
                    };
                }
                _ => {}
            }
        }
        if stage
            == (Stage::Exchanging {
                acked: true,
                received: true,
            })
        {
            core.disconnect();
            stage = Stage::Disconnecting;
            continue;
        }
        if core.wants_transmit() {
            continue;
        }
        // Step 3, waking for step 5: read until the core's next deadline
        // (at most 100 ms, to check ours).
        let now = Instant::now();
        let wake = core
            .poll_timeout()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        tls.sock.set_read_timeout(Some(wake))?;
        match tls.read(&mut buf) {
            // Step 6.
            Ok(0) => core.connection_lost(ConnectionError::Closed),
            Ok(n) => {
                // An error here is also reported as Event::Disconnected.
                let _ = core.handle_input(&buf[..n], Instant::now());
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => core.connection_lost(ConnectionError::Transport(e.to_string())),
        }
        // Step 5 (an error here is also reported as Event::Disconnected).
        if core.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            let _ = core.handle_timeout(Instant::now());
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => {
            println!("[core-client] disconnected");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client-core-without-tokio: {e}");
            ExitCode::FAILURE
        }
    }
}
