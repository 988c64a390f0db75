//! The laptop broker: Mosquitto's command line over the workspace's broker.
//!
//! ```text
//! laptop-broker                       # no config: loopback port 1883 only, anonymous allowed
//! laptop-broker -c /etc/mosquitto/mosquitto.conf -v
//! laptop-broker -c ssl.conf           # listener 8883 + cafile/certfile/keyfile + require_certificate true
//! ```
//!
//! Log lines follow `mosquitto -v` (`1700000000: New client connected from …`).
//! Stop it with Ctrl-C (SIGINT) or SIGTERM: 5.0 clients get DISCONNECT 0x8B.
#![forbid(unsafe_code)]

use clap::Parser;
use mqtt_broker_core::config::{Config, ListenerConfig, LogType};
use mqtt_broker_core::driver::ServerBuilder;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// An MQTT 3.1.1 / 5.0 broker with Mosquitto's configuration file, flags and log lines.
#[derive(Parser, Debug)]
#[command(name = "laptop-broker", version, about, long_about = None)]
struct Args {
    /// Read the configuration from FILE (Mosquitto's mosquitto.conf syntax).
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on PORT as well (without -c: on loopback only, like Mosquitto 2). May be repeated.
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    port: Vec<u16>,
    /// Verbose: log every packet (Mosquitto's `log_type all`).
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Accepted for compatibility with `mosquitto -d`; run under systemd instead of daemonising.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
}

/// Mosquitto's log prefix: seconds since the epoch and a colon.
struct UnixSeconds;

impl FormatTime for UnixSeconds {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        write!(w, "{secs}:")
    }
}

/// Logs as Mosquitto does: the config's `log_type`s and
/// `connection_messages` (`-v`: every type), or `RUST_LOG` when it is set.
fn init_logs(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let fmt = tracing_subscriber::fmt::layer()
        .with_timer(UnixSeconds)
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    match tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        Ok(filter) => tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .init(),
        Err(_) => {
            let config = config.clone();
            let ours = tracing_subscriber::filter::filter_fn(move |meta| {
                let target = meta.target();
                (target.starts_with("mqtt_broker") || target.starts_with("laptop_broker"))
                    && config.log_enabled(target, *meta.level())
            });
            tracing_subscriber::registry()
                .with(fmt.with_filter(ours))
                .init()
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loaded = match &args.config {
        Some(path) => Config::load(path).map(Some),
        None => Ok(None),
    };
    let (mut config, warnings) = match loaded {
        Ok(Some((c, w))) => (c, w),
        Ok(None) => (Config::default(), Vec::new()),
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(3);
        }
    };
    if args.verbose {
        // Mosquitto's -v: every log type.
        config.log_types.extend(LogType::ALL);
    }
    init_logs(&config);
    tracing::info!(target: "mqtt_broker", "laptop-broker version {} starting", env!("CARGO_PKG_VERSION"));
    match &args.config {
        Some(path) => {
            tracing::info!(target: "mqtt_broker", "Config loaded from {}.", path.display())
        }
        None => tracing::info!(target: "mqtt_broker", "Using default config."),
    }
    for w in &warnings {
        tracing::warn!(target: "mqtt_broker", "Warning: {}:{}: {}", w.file, w.line, w.message);
    }
    if args.daemon {
        tracing::warn!(target: "mqtt_broker", "Warning: -d is ignored: run laptop-broker under systemd (docs/raspberry-pi.md) instead of daemonising.");
    }
    if !args.port.is_empty() {
        if config.local_only {
            config.listeners = args
                .port
                .iter()
                .flat_map(|&p| Config::local_only_listeners(p))
                .collect();
        } else {
            config
                .listeners
                .extend(args.port.iter().map(|&p| ListenerConfig::new(p, None)));
        }
    }
    // One thread, like Mosquitto's event loop: packets from different
    // clients are handled in the order their sockets became readable. On a
    // multi-threaded tokio runtime the connection woken last runs first, so
    // a PUBLISH could overtake a SUBSCRIBE another client sent just before
    // it (the Paho interoperability suite's test_subscribe_options and
    // test_request_response rely on that order). One thread also spent less
    // CPU per message than two in bench/compare.sh (docs/benchmarks.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match ServerBuilder::from_config(&config) {
            Ok(b) => b.start().await,
            Err(e) => Err(e),
        };
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(target: "mqtt_broker", "Error: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!(target: "mqtt_broker", "laptop-broker version {} terminating", env!("CARGO_PKG_VERSION"));
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
