//! Embeds the broker, publishes in-process, receives with mqtt-client.
#![forbid(unsafe_code)]

use mqtt_broker_core::driver::{Listener, LocalOptions, ServerBuilder};
use mqtt_broker_core::mqtt_codec::QoS;
use mqtt_broker_core::BrokerConfig;
use mqtt_client::{Client, ClientOptions};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = ServerBuilder::new(BrokerConfig::default())
        .listener(Listener::tcp("127.0.0.1:0".parse()?))
        .start()
        .await?;
    let addr = server.local_addrs()[0];

    // A client over TCP, as a Pi would be.
    let options = ClientOptions::new(addr.ip().to_string(), addr.port()).client_id("pi");
    let (client, mut messages) = tokio::time::timeout(WAIT, Client::connect(options)).await??;
    client.subscribe("downstream/#", QoS::AtLeastOnce).await?;

    // The program itself, in process.
    let (app, _) = server.local_client(LocalOptions::new("app")).await?;
    app.publish("downstream/hello", "from the embedding program", QoS::AtLeastOnce, false)
        .await?;

    let m = tokio::time::timeout(WAIT, messages.recv())
        .await?
        .ok_or("the subscriber was disconnected")?;
    assert_eq!(m.topic.as_str(), "downstream/hello");
    assert_eq!(&m.payload[..], b"from the embedding program");
    client.disconnect().await?;
    app.disconnect().await;
    server.shutdown().await;
    println!("downstream: embedded broker, in-process publish and mqtt-client receive: ok");
    Ok(())
}
