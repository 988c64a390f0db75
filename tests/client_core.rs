//! examples/client-core-without-tokio.rs (mqtt-client's sans-IO core over
//! `std::net::TcpStream` and rustls, no tokio) against this workspace's
//! broker on loopback, with mutual TLS: the message it publishes comes back
//! through its own subscription, and a client without a certificate is
//! refused.

#[path = "support/examples.rs"]
mod examples;
use examples::example;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::BrokerConfig;
use mqtt_tls::gen::{write_set, CertificateAuthority};

/// Runs the example to its end, killing it after 30 s.
fn run(args: Vec<String>) -> Output {
    let mut child = Command::new(example("client-core-without-tokio"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("the example's output")
}

async fn start_broker(dir: &Path) -> Server {
    let tls = mqtt_tls::ServerTlsOptions::new(dir.join("server.crt"), dir.join("server.key"))
        .cafile(dir.join("ca.crt"))
        .require_certificate(true);
    let listener = Listener::tls("127.0.0.1:0".parse().expect("address"), tls).expect("listener");
    ServerBuilder::new(BrokerConfig::default())
        .listener(listener)
        .start()
        .await
        .expect("broker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_core_without_tokio_exchanges_a_message_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = CertificateAuthority::generate().expect("CA");
    let server = ca
        .issue_server(&["127.0.0.1".to_string()])
        .expect("server certificate");
    let client = ca.issue_client("core-client").expect("client certificate");
    write_set(
        dir.path(),
        &ca,
        &server,
        &[("core-client".to_string(), client)],
    )
    .expect("write");
    let broker = start_broker(dir.path()).await;
    let port = broker.local_addrs()[0].port().to_string();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (ca_file, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));

    let with_cert = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--cafile",
        &ca_file,
        "--cert",
        &cert,
        "--key",
        &key,
        "-t",
        "core/topic",
        "-m",
        "testing",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || run(with_cert))
        .await
        .expect("runner");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}:\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "[core-client] core/topic testing"),
        "the message did not come back:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("[core-client] disconnected"), "{stdout}");

    // Without a client certificate the broker (require_certificate) refuses.
    let without = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--cafile",
        &ca_file,
        "--timeout",
        "5",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || run(without))
        .await
        .expect("runner");
    assert!(
        !out.status.success(),
        "connected without a certificate:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // TLS 1.3: the broker's alert arrives on the first read after the handshake.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CertificateRequired"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("core/topic"),
        "no message may be exchanged without a certificate"
    );
    broker.shutdown().await;
}
