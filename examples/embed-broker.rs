//! A broker inside your own tokio program, with your own rule for who may
//! connect.
//!
//! ```text
//! cargo run --example embed-broker
//! ```
//!
//! It starts a `Server` with `ServerBuilder` on a free loopback port and a
//! custom [`Authenticator`] (devices log in with their serial number as user
//! name and a per-device token as password), lets a device subscribe and
//! another publish with `mqtt-client`, shows a refused login, reads the
//! broker's statistics, and shuts the broker down gracefully. Exits 0 when
//! the message arrived and the bad login was refused.
#![forbid(unsafe_code)]

use mqtt_broker_core::driver::{Listener, ServerBuilder};
use mqtt_broker_core::mqtt_codec::ReasonCode;
use mqtt_broker_core::{AuthDecision, AuthRequest, Authenticator, BrokerConfig};
use mqtt_client::{Client, ClientOptions, QoS, ReconnectOptions};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

/// Your own rule: a user name must be a known device serial, and the
/// password that device's token. In a real program this could ask a
/// database, an HSM or a cloud IAM (keep it quick: it runs during CONNECT).
struct DeviceTokens {
    tokens: HashMap<String, Vec<u8>>,
}

impl Authenticator for DeviceTokens {
    fn authenticate(&self, req: &AuthRequest<'_>) -> AuthDecision {
        let known = req
            .username
            .and_then(|user| self.tokens.get(user))
            .zip(req.password)
            .is_some_and(|(token, password)| token.as_slice() == password);
        if known {
            AuthDecision::Allow
        } else {
            AuthDecision::Deny(ReasonCode::BadUserNameOrPassword)
        }
    }
}

fn device(port: u16, serial: &str, token: &str) -> ClientOptions {
    ClientOptions::new("127.0.0.1", port)
        .client_id(serial)
        .credentials(serial, token.as_bytes().to_vec())
        .reconnect(ReconnectOptions::disabled())
}

async fn run() -> Result<(), String> {
    let tokens = DeviceTokens {
        tokens: HashMap::from([
            ("pi-0001".to_string(), b"s3cret-1".to_vec()),
            ("laptop-0002".to_string(), b"s3cret-2".to_vec()),
        ]),
    };
    let config = BrokerConfig::default().allow_anonymous(false);
    let addr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let server = ServerBuilder::new(config)
        .authenticator(Box::new(tokens))
        .listener(Listener::tcp(addr))
        .start()
        .await
        .map_err(|e| format!("the broker did not start: {e}"))?;
    let port = server.local_addrs()[0].port();
    println!("[app] broker running inside this program on 127.0.0.1:{port}");

    let (pi, mut messages) = Client::connect(device(port, "pi-0001", "s3cret-1"))
        .await
        .map_err(|e| format!("pi-0001 could not connect: {e}"))?;
    pi.subscribe("ssltopic", QoS::AtLeastOnce)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let (laptop, _) = Client::connect(device(port, "laptop-0002", "s3cret-2"))
        .await
        .map_err(|e| format!("laptop-0002 could not connect: {e}"))?;
    laptop
        .publish("ssltopic", QoS::AtLeastOnce, false, "testing")
        .await
        .map_err(|e| format!("publish: {e}"))?;
    let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .ok()
        .flatten()
        .ok_or("pi-0001 received nothing within 5 s")?;
    let line = format!(
        "{} {}",
        message.topic,
        String::from_utf8_lossy(&message.payload)
    );
    println!("[pi-0001] {line}");
    if line != "ssltopic testing" {
        return Err(format!("pi-0001 got {line:?}"));
    }

    match Client::connect(device(port, "pi-0001", "wrong-token")).await {
        Ok(_) => return Err("a wrong token was accepted".into()),
        Err(e) => println!("[intruder] refused: {e}"),
    }

    let stats = server.stats();
    println!(
        "[app] statistics: {} clients connected, {} PUBLISH received, {} PUBLISH sent",
        stats.clients_connected, stats.publish_messages_received, stats.publish_messages_sent
    );
    let _ = laptop.disconnect().await;
    let _ = pi.disconnect().await;
    server.shutdown().await;
    println!("[app] broker stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // The broker logs Mosquitto's lines through `tracing`; route them as you like.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("mqtt_broker=info"))
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .without_time()
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed-broker failed: {e}");
            ExitCode::FAILURE
        }
    }
}
