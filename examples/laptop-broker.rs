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
//! SIGHUP re-reads the configuration file as Mosquitto does: certificates,
//! password and ACL files, limits and log types (docs/operations.md).
#![forbid(unsafe_code)]

use clap::Parser;
use mqtt_broker_core::config::{Config, ListenerConfig, LogType};
use mqtt_broker_core::driver::ServerBuilder;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
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
/// The filter reads `config` at each line, so a reload changes it.
fn init_logs(config: Arc<RwLock<Config>>) {
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
            let ours = tracing_subscriber::filter::filter_fn(move |meta| {
                let target = meta.target();
                (target.starts_with("mqtt_broker") || target.starts_with("laptop_broker"))
                    && config
                        .read()
                        .map(|c| c.log_enabled(target, *meta.level()))
                        .unwrap_or(true)
            });
            tracing_subscriber::registry()
                .with(fmt.with_filter(ours))
                .init()
        }
    }
}

/// The configuration file (or the default) with the command line applied.
fn load(args: &Args) -> Result<(Config, Vec<mqtt_broker_core::config::Warning>), String> {
    let (mut config, warnings) = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => (Config::default(), Vec::new()),
    };
    if args.verbose {
        // Mosquitto's -v: every log type.
        config.log_types.extend(LogType::ALL);
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
    Ok((config, warnings))
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Like `ulimit -n $(ulimit -Hn)`: every client is a file descriptor, and
    // the soft limit (often 1024) would refuse clients long before the hard
    // limit does. Raise it with LimitNOFILE= in a systemd unit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (config, warnings) = match load(&args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(3);
        }
    };
    let shared_config = Arc::new(RwLock::new(config.clone()));
    init_logs(shared_config.clone());
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
        while let Signal::Reload = wait_for_signal().await {
            reload(&args, &server, &shared_config);
        }
        tracing::info!(target: "mqtt_broker", "laptop-broker version {} terminating", env!("CARGO_PKG_VERSION"));
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP: read the file again and apply what can change while running; a
/// file that does not parse keeps the running configuration.
fn reload(args: &Args, server: &mqtt_broker_core::driver::Server, config: &RwLock<Config>) {
    tracing::info!(target: "mqtt_broker", "Reloading config.");
    if args.config.is_none() {
        tracing::info!(target: "mqtt_broker", "No configuration file (-c) to reload.");
        return;
    }
    let (new, warnings) = match load(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(target: "mqtt_broker", "Error: {e}; keeping the running configuration.");
            return;
        }
    };
    for w in &warnings {
        tracing::warn!(target: "mqtt_broker", "Warning: {}:{}: {}", w.file, w.line, w.message);
    }
    match server.reload(&new) {
        Ok(report) => {
            if let Ok(mut c) = config.write() {
                *c = new;
            }
            tracing::info!(
                target: "mqtt_broker",
                "Configuration reloaded: {} TLS listener(s) with new certificates, {} client(s) disconnected, {} change(s) waiting for a restart.",
                report.tls_reloaded,
                report.disconnected.len(),
                report.needs_restart.len()
            );
        }
        Err(e) => {
            tracing::error!(target: "mqtt_broker", "Error: {e}; keeping the running configuration.")
        }
    }
}

enum Signal {
    Stop,
    Reload,
}

async fn wait_for_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => Signal::Stop,
                    _ = term.recv() => Signal::Stop,
                    _ = hup.recv() => Signal::Reload,
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                Signal::Stop
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}
