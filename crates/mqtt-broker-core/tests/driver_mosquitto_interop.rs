//! Mosquitto's own clients against this broker: `mosquitto_sub` and
//! `mosquitto_pub` at 3.1.1 and 5.0, QoS 0/1/2, retained, will, and mutual
//! TLS under `require_certificate true`. Skipped with a printed reason when
//! the tools are missing; required when `MQTT_INTEROP=1`.
#![cfg(feature = "tokio")]

mod driver_support;

use driver_support::*;
use mqtt_broker_core::driver::{Listener, Server, ServerBuilder};
use mqtt_broker_core::mqtt_codec::{ProtocolVersion, QoS};
use mqtt_broker_core::BrokerConfig;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

struct Tools {
    sub: PathBuf,
    publ: PathBuf,
}

fn tools() -> Option<Tools> {
    Some(Tools {
        sub: tool("mosquitto_sub")?,
        publ: tool("mosquitto_pub")?,
    })
}

async fn start(listener: Listener) -> Server {
    ServerBuilder::new(BrokerConfig::default())
        .listener(listener)
        .start()
        .await
        .expect("server starts")
}

/// Waits (bounded) until the broker holds `n` subscriptions.
async fn wait_subscriptions(server: &Server, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.stats().subscriptions < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spawn(cmd: &PathBuf, args: &[String]) -> Child {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tool starts")
}

async fn finish(child: Child) -> (bool, String, String) {
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("tool finishes in time")
        .expect("tool output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn mosquitto_clients_exchange_messages_at_every_qos_in_both_versions() {
    let Some(t) = tools() else { return };
    let server = start(Listener::tcp("127.0.0.1:0".parse().unwrap())).await;
    let port = server.local_addrs()[0].port().to_string();
    let mut expected_subs = 0;
    for version in ["mqttv311", "mqttv5"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("guide/{version}/{qos}");
            let sub = spawn(
                &t.sub,
                &args(&[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-V",
                    version,
                    "-q",
                    qos,
                    "-t",
                    &topic,
                    "-v",
                    "-C",
                    "1",
                    "-W",
                    "10",
                ]),
            );
            expected_subs += 1;
            wait_subscriptions(&server, expected_subs).await;
            let publ = spawn(
                &t.publ,
                &args(&[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-V",
                    version,
                    "-q",
                    qos,
                    "-t",
                    &topic,
                    "-m",
                    "testing",
                ]),
            );
            let (ok, _, err) = finish(publ).await;
            assert!(ok, "mosquitto_pub {version} q{qos} failed: {err}");
            let (ok, out, err) = finish(sub).await;
            assert!(ok, "mosquitto_sub {version} q{qos} failed: {err}");
            assert_eq!(out.trim(), format!("{topic} testing"));
            // The subscription goes away with the clean session.
            expected_subs -= 1;
            wait_subscriptions_at_most(&server, expected_subs).await;
        }
    }
    server.shutdown().await;
}

async fn wait_subscriptions_at_most(server: &Server, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.stats().subscriptions > n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription never went away"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn retained_message_from_mosquitto_pub_reaches_a_later_mosquitto_sub() {
    let Some(t) = tools() else { return };
    let server = start(Listener::tcp("127.0.0.1:0".parse().unwrap())).await;
    let port = server.local_addrs()[0].port().to_string();
    let publ = spawn(
        &t.publ,
        &args(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "status/pi",
            "-m",
            "online",
            "-r",
            "-q",
            "1",
        ]),
    );
    assert!(finish(publ).await.0);
    for version in ["mqttv311", "mqttv5"] {
        let sub = spawn(
            &t.sub,
            &args(&[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-t",
                "status/#",
                "-v",
                "-C",
                "1",
                "-W",
                "10",
            ]),
        );
        let (ok, out, err) = finish(sub).await;
        assert!(ok, "{err}");
        assert_eq!(out.trim(), "status/pi online");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn will_of_a_killed_mosquitto_sub_is_published() {
    let Some(t) = tools() else { return };
    let server = start(Listener::tcp("127.0.0.1:0".parse().unwrap())).await;
    let addr = server.local_addrs()[0];
    let port = addr.port().to_string();
    let (mut watcher, _) =
        RawClient::connect(tcp(addr).await, ProtocolVersion::V3_1_1, "watcher", |_| {}).await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut pi = spawn(
        &t.sub,
        &args(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "anything",
            "--will-topic",
            "wills/pi",
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
        ]),
    );
    wait_subscriptions(&server, 2).await;
    pi.kill().await.expect("kill mosquitto_sub");
    let p = watcher.expect_publish().await;
    assert_eq!(p.topic.as_str(), "wills/pi");
    assert_eq!(&p.payload[..], b"gone");
    server.shutdown().await;
}

#[tokio::test]
async fn mosquitto_clients_with_certificates_pass_require_certificate_and_without_are_refused() {
    let Some(t) = tools() else { return };
    let certs = Certs::generate();
    let server = start(
        Listener::tls("127.0.0.1:0".parse().unwrap(), certs.server_options(true))
            .expect("tls listener"),
    )
    .await;
    let port = server.local_addrs()[0].port().to_string();
    let path = |n: &str| certs.path(n).display().to_string();
    let tls_args = |extra: &[&str]| {
        let mut a = args(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cafile",
            &path("ca.crt"),
            "--cert",
            &path("client.crt"),
            "--key",
            &path("client.key"),
        ]);
        a.extend(args(extra));
        a
    };
    for version in ["mqttv311", "mqttv5"] {
        let sub = spawn(
            &t.sub,
            &tls_args(&["-V", version, "-t", "ssltopic", "-v", "-C", "1", "-W", "10"]),
        );
        wait_subscriptions(&server, 1).await;
        let publ = spawn(
            &t.publ,
            &tls_args(&["-V", version, "-t", "ssltopic", "-m", "testing"]),
        );
        let (ok, _, err) = finish(publ).await;
        assert!(ok, "mosquitto_pub over mutual TLS failed: {err}");
        let (ok, out, err) = finish(sub).await;
        assert!(ok, "mosquitto_sub over mutual TLS failed: {err}");
        assert_eq!(out.trim(), "ssltopic testing");
        wait_subscriptions_at_most(&server, 0).await;
    }
    // Without --cert: refused (Mosquitto's client prints its own error).
    let refused = spawn(
        &t.sub,
        &args(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cafile",
            &path("ca.crt"),
            "-t",
            "ssltopic",
            "-C",
            "1",
            "-W",
            "5",
        ]),
    );
    let (ok, out, _) = finish(refused).await;
    assert!(!ok, "a client without a certificate must not get in");
    assert!(out.is_empty());
    server.shutdown().await;
}
