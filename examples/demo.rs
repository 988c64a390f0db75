//! The whole guide in one command, on loopback:
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! 1. generates a CA, a server certificate for 127.0.0.1 and a client
//!    certificate (as `gen-certs` does) in a temporary directory;
//! 2. starts the laptop broker with a mutual-TLS listener
//!    (`require_certificate true`) on a free loopback port, with `-v` logs;
//! 3. subscribes as the "Pi" with the client certificate and publishes
//!    `testing` to `ssltopic` as the "laptop";
//! 4. shows the two failures the guide ran into and what you are told:
//!    a client without a certificate, and a server certificate made for
//!    192.168.1.5 while the client dials 127.0.0.1.
//!
//! Exits 0 when every step behaved as expected.
#![forbid(unsafe_code)]

use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::BrokerConfig;
use mqtt_client::{Client, ClientOptions, ClientTlsOptions, QoS, ReconnectOptions};
use mqtt_tls::gen::{write_set, CertificateAuthority};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Broker log lines as `mosquitto -v` prints them, marked as the broker's.
struct BrokerPrefix;

impl FormatTime for BrokerPrefix {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        write!(w, "  [broker] {secs}:")
    }
}

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn command(line: &str) {
    println!("  $ {line}");
}

type DemoResult<T> = Result<T, String>;

fn check(ok: bool, what: &str) -> DemoResult<()> {
    if ok {
        println!("  ok: {what}");
        Ok(())
    } else {
        Err(format!("unexpected: {what} did not happen"))
    }
}

fn client_tls(dir: &Path, with_cert: bool) -> ClientTlsOptions {
    let tls = ClientTlsOptions::new().cafile(dir.join("ca.crt"));
    if with_cert {
        tls.certfile(dir.join("client.crt"))
            .keyfile(dir.join("client.key"))
    } else {
        tls
    }
}

fn options(port: u16, id: &str, tls: &ClientTlsOptions) -> DemoResult<ClientOptions> {
    ClientOptions::new("127.0.0.1", port)
        .client_id(id)
        .reconnect(ReconnectOptions::disabled())
        .tls_files(tls)
        .map_err(|e| e.to_string())
}

async fn start_broker(dir: &Path, require_certificate: bool) -> DemoResult<Server> {
    let tls = mqtt_tls::ServerTlsOptions {
        cafile: Some(dir.join("ca.crt")),
        require_certificate,
        ..mqtt_tls::ServerTlsOptions::new(dir.join("server.crt"), dir.join("server.key"))
    };
    let listener = Listener::tls("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?, tls)
        .map_err(|e| e.to_string())?;
    // The guide's ssl.conf does not say allow_anonymous: Mosquitto 2 then
    // refuses anonymous clients, and a verified certificate is what
    // authenticates the Pi (docs/configuration.md, the anonymous rule).
    let config = BrokerConfig::default().allow_anonymous(false);
    ServerBuilder::new(config)
        .listener(listener)
        .start()
        .await
        .map_err(|e| e.to_string())
}

async fn run() -> DemoResult<()> {
    let tmp =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let dir = tmp.path();

    step(
        1,
        "Certificates: a CA, a server certificate for 127.0.0.1, a client certificate",
    );
    command(&format!(
        "cargo run --example gen-certs -- --out {} --server-name 127.0.0.1 --client-name pi",
        dir.display()
    ));
    let ca = CertificateAuthority::generate().map_err(|e| e.to_string())?;
    let server = ca
        .issue_server(&["127.0.0.1".to_string()])
        .map_err(|e| e.to_string())?;
    let client = ca.issue_client("pi").map_err(|e| e.to_string())?;
    let written =
        write_set(dir, &ca, &server, &[("pi".to_string(), client)]).map_err(|e| e.to_string())?;
    for f in &written.files {
        println!("  wrote {}", f.display());
    }

    step(2, "The laptop broker: mutual TLS, require_certificate true");
    let broker = start_broker(dir, true).await?;
    let port = broker.local_addrs()[0].port();
    println!("  (the same as `laptop-broker -v -c ssl.conf` with this ssl.conf:)");
    println!(
        "    listener {port} 127.0.0.1\n    cafile {}\n    certfile {}\n    keyfile {}\n    require_certificate true",
        dir.join("ca.crt").display(),
        dir.join("server.crt").display(),
        dir.join("server.key").display()
    );

    step(
        3,
        "The Pi subscribes to ssltopic; the laptop publishes `testing`",
    );
    let tls = client_tls(dir, true);
    let d = dir.display();
    command(&format!(
        "cargo run --example pi-subscriber -- -h 127.0.0.1 -p {port} -t ssltopic -v --cafile {d}/ca.crt --cert {d}/client.crt --key {d}/client.key"
    ));
    let (pi, mut messages) = Client::connect(options(port, "pi", &tls)?)
        .await
        .map_err(|e| format!("the Pi could not connect: {e}"))?;
    pi.subscribe("ssltopic", QoS::AtLeastOnce)
        .await
        .map_err(|e| format!("the Pi could not subscribe: {e}"))?;
    command(&format!(
        "cargo run --example publisher -- -h 127.0.0.1 -p {port} -t ssltopic -m testing --cafile {d}/ca.crt --cert {d}/client.crt --key {d}/client.key"
    ));
    let (laptop, _) = Client::connect(options(port, "laptop", &tls)?)
        .await
        .map_err(|e| format!("the laptop could not connect: {e}"))?;
    laptop
        .publish("ssltopic", QoS::AtLeastOnce, false, "testing")
        .await
        .map_err(|e| format!("the laptop could not publish: {e}"))?;
    let received = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .ok()
        .flatten();
    let Some(message) = received else {
        return Err("the Pi received nothing within 5 s".to_string());
    };
    let line = format!(
        "{} {}",
        message.topic,
        String::from_utf8_lossy(&message.payload)
    );
    println!("  [pi] {line}");
    check(
        line == "ssltopic testing",
        "the Pi printed `ssltopic testing`",
    )?;
    let _ = laptop.disconnect().await;
    let _ = pi.disconnect().await;

    step(
        4,
        "Failure 1: a client without a client certificate (require_certificate true)",
    );
    command(&format!(
        "cargo run --example pi-subscriber -- -h 127.0.0.1 -p {port} -t ssltopic --cafile {d}/ca.crt"
    ));
    println!("  (Mosquitto says \"Error: Protocol error\" on the client and \"peer did not return a certificate\" on the broker)");
    let refused = Client::connect(options(port, "no-cert", &client_tls(dir, false))?).await;
    let message = match refused {
        Ok(_) => return Err("a client without a certificate was let in".to_string()),
        Err(e) => e.to_string(),
    };
    println!("  [client] Error: {message}");
    check(
        message.contains("certificate"),
        "the client was told it needs a certificate",
    )?;
    broker.shutdown().await;

    step(
        5,
        "Failure 2: the server certificate was made for 192.168.1.5, the client dials 127.0.0.1",
    );
    let other = CertificateAuthority::from_pem_files(&dir.join("ca.crt"), &dir.join("ca.key"))
        .map_err(|e| e.to_string())?;
    let wrong = other
        .issue_server(&["192.168.1.5".to_string()])
        .map_err(|e| e.to_string())?;
    wrong
        .write(&dir.join("server.crt"), &dir.join("server.key"))
        .map_err(|e| e.to_string())?;
    let broker = start_broker(dir, true).await?;
    let port = broker.local_addrs()[0].port();
    command(&format!(
        "cargo run --example pi-subscriber -- -h 127.0.0.1 -p {port} -t ssltopic --cafile {d}/ca.crt --cert {d}/client.crt --key {d}/client.key"
    ));
    println!("  (Mosquitto's client says only that the certificate verify failed)");
    let refused = Client::connect(options(port, "pi", &tls)?).await;
    let message = match refused {
        Ok(_) => return Err("a certificate for 192.168.1.5 was accepted for 127.0.0.1".to_string()),
        Err(e) => e.to_string(),
    };
    println!("  [client] Error: {message}");
    check(
        message.contains("192.168.1.5") && message.contains("127.0.0.1"),
        "the client was told which name the certificate has and which one it dialled",
    )?;
    broker.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("mqtt_broker=debug"))
        .with_timer(BrokerPrefix)
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => {
            println!("\nAll steps behaved as expected: the Pi got the laptop's message over mutual TLS, and both failures were explained.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
